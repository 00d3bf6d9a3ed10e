#!/usr/bin/python3
# Make the seed corpus of the fuzzing target "luks"
# (tests/fuzz/fuzz-luks.c): each file is the size of the disk (8 bytes,
# little-endian), then the start of a disk: LUKS1 headers as qemu-img
# and cryptsetup write them (aes-xts-plain64 and others), and damaged
# ones (LUKS2, bad slots, payload beyond the disk, unknown ciphers).
#
#   tests/fuzz/make-corpus-luks.py [DIRECTORY]   (default: corpus-luks)
#
# The files are made the same way every time; run this again after
# changing it and commit the result.  The crash-* reproducers in the
# directory are kept by hand, not made here.

import os
import struct
import sys

ACTIVE, INACTIVE = 0x00AC71F3, 0x0000DEAD
MiB = 1024 * 1024


def text(s, n=32):
    b = s.encode()
    return b + bytes(n - len(b))


def header(cipher="aes", mode="xts-plain64", hash_="sha256", key_bytes=64,
           payload=4096, slots=None, version=1, iterations=1000,
           magic=b"LUKS\xba\xbe"):
    if slots is None:
        slots = [(ACTIVE, 1000, 8, 4000)] + [(INACTIVE, 0, 0, 0)] * 7
    h = magic + struct.pack(">H", version)
    h += text(cipher) + text(mode) + text(hash_)
    h += struct.pack(">II", payload, key_bytes)
    h += bytes(range(20))                       # master key digest
    h += bytes(range(32, 64))                   # its salt
    h += struct.pack(">I", iterations)
    h += text("6cd534fa-d279-4e5f-8a91-2f2253088572", 40)
    for (state, iters, offset, stripes) in slots:
        h += struct.pack(">II", state, iters) + bytes(32)
        h += struct.pack(">II", offset, stripes)
    assert len(h) == 592, len(h)
    return h


def seed(disk_size, data):
    return struct.pack("<Q", disk_size) + data


def slots_at(*entries):
    s = list(entries) + [(INACTIVE, 0, 0, 0)] * (8 - len(entries))
    return s


SEEDS = {
    "qemu-default": seed(10 * MiB + 2 * MiB, header()),
    "xts-128-sha1": seed(10 * MiB, header(key_bytes=32, hash_="sha1",
                                          payload=2048)),
    "cbc-essiv-sha256": seed(10 * MiB, header(mode="cbc-essiv:sha256",
                                              key_bytes=32, hash_="sha512",
                                              payload=2048)),
    "cbc-plain-md5": seed(10 * MiB, header(mode="cbc-plain", key_bytes=16,
                                           hash_="md5", payload=2048)),
    "cbc-192": seed(10 * MiB, header(mode="cbc-plain64", key_bytes=24,
                                     payload=2048)),
    "two-slots": seed(20 * MiB, header(slots=slots_at(
        (ACTIVE, 1000, 8, 4000), (ACTIVE, 2000, 520, 4000)))),
    "cryptsetup-style": seed(20 * MiB, header(hash_="sha256",
                                              payload=4096, slots=slots_at(
        (INACTIVE, 0, 0, 0), (ACTIVE, 1000, 512, 4000)))),
    "luks2": seed(20 * MiB, header(version=2)),
    "version-3": seed(20 * MiB, header(version=3)),
    "not-luks": seed(10 * MiB, bytes(592)),
    "truncated": seed(10 * MiB, header()[:300]),
    "magic-only": seed(10 * MiB, b"LUKS\xba\xbe"),
    "disk-too-small": seed(1 * MiB, header()),
    "payload-zero": seed(10 * MiB, header(payload=0)),
    "no-active-slot": seed(10 * MiB, header(slots=slots_at())),
    "slot-overlaps-payload": seed(10 * MiB, header(slots=slots_at(
        (ACTIVE, 1000, 4000, 4000)))),
    "slot-in-header": seed(10 * MiB, header(slots=slots_at(
        (ACTIVE, 1000, 1, 4000)))),
    "slot-bad-state": seed(10 * MiB, header(slots=slots_at(
        (0x12345678, 1000, 8, 4000)))),
    "slot-many-stripes": seed(10 * MiB, header(slots=slots_at(
        (ACTIVE, 1000, 8, 0xffffffff)))),
    "slot-zero-iterations": seed(10 * MiB, header(slots=slots_at(
        (ACTIVE, 0, 8, 4000)))),
    "twofish": seed(10 * MiB, header(cipher="twofish")),
    "ctr-mode": seed(10 * MiB, header(mode="ctr-plain64")),
    "ecb-no-iv": seed(10 * MiB, header(mode="ecb")),
    "essiv-sha1": seed(10 * MiB, header(mode="cbc-essiv:sha1",
                                        key_bytes=32)),
    "ripemd160": seed(10 * MiB, header(hash_="ripemd160")),
    "xts-192": seed(10 * MiB, header(key_bytes=48)),
    "unterminated-name": seed(10 * MiB, header()[:8] + b"a" * 32 +
                              header()[40:]),
    "zero-digest-iterations": seed(10 * MiB, header(iterations=0)),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "corpus-luks")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(SEEDS), outdir))


if __name__ == "__main__":
    main()
