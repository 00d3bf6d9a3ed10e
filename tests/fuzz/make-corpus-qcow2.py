#!/usr/bin/python3
# Make the seed corpus of the fuzzing target "qcow2"
# (tests/fuzz/fuzz-qcow2.c): each file is a small qcow2 image, written
# here byte by byte after qemu's docs/interop/qcow2.txt (not by qemu-img,
# so that the bytes never change with its version): versions 2 and 3,
# 512-byte clusters, data, zero, unallocated and compressed clusters
# (deflate stored blocks, zstd raw and RLE blocks, so that no
# compressor's version matters either), and the images the filter
# refuses or fails on: backing files, encryption, feature bits, bad
# header fields, entries past the end, reserved bits, bad compressed
# data.
#
#   tests/fuzz/make-corpus-qcow2.py [DIRECTORY]   (default: corpus-qcow2)
#
# Every image fits in 4096 bytes (contrib/fuzz's default -max_len).
# The files are made the same way every time; run this again after
# changing it and commit the result.  The crash-* reproducers in the
# directory are kept by hand, not made here.

import os
import struct
import sys

CLUSTER_BITS = 9
CS = 1 << CLUSTER_BITS
COPIED = 1 << 63
COMPRESSED = 1 << 62


def deflate_stored(data):
    """A raw deflate stream of one stored (uncompressed) final block."""
    return struct.pack("<BHH", 1, len(data), len(data) ^ 0xffff) + data


def zstd_raw(data):
    """A zstd frame of one raw block, single segment, 2-byte size."""
    assert 256 <= len(data) < 65536 + 256
    return (b"\x28\xb5\x2f\xfd" + bytes([0x60]) +
            struct.pack("<H", len(data) - 256) +
            (1 | (0 << 1) | (len(data) << 3)).to_bytes(3, "little") + data)


def zstd_rle(byte, n):
    """A zstd frame of one RLE block: n copies of byte."""
    return (b"\x28\xb5\x2f\xfd" + bytes([0x60]) +
            struct.pack("<H", n - 256) +
            (1 | (1 << 1) | (n << 3)).to_bytes(3, "little") + bytes([byte]))


def compressed_entry(offset, sectors):
    x = 62 - (CLUSTER_BITS - 8)
    return COMPRESSED | (sectors << x) | offset


def image(version=3, size=2 * 32768, l1=None, l2=None, clusters=None,
          compressed=None, incompat=0, compression_type=0,
          backing=None, crypt=0, cluster_bits=CLUSTER_BITS,
          l1_size=None, l1_offset=CS, header_length=None, magic=0x514649fb,
          truncate=None, extra=b""):
    """Header in cluster 0, L1 table in cluster 1, refcount table in
    cluster 2, the L2 table in cluster 3, data clusters from 4 on, and
    the compressed bytes after them."""
    l1 = [COPIED | 3 * CS, 0] if l1 is None else l1
    l2 = l2 or []
    clusters = clusters or []
    buf = bytearray(4 * CS + len(clusters) * CS)
    if l1_size is None:
        l1_size = len(l1)
    if header_length is None:
        header_length = 72 if version == 2 else 112
    backing_off = backing_len = 0
    if backing is not None:
        backing_off, backing_len = 200, len(backing)
        buf[200:200 + len(backing)] = backing
    struct.pack_into(">IIQIIQIIQQII", buf, 0, magic, version, backing_off,
                     backing_len, cluster_bits, size, crypt, l1_size,
                     l1_offset, 2 * CS, 1, 0)
    struct.pack_into(">Q", buf, 64, 0)          # snapshots_offset
    if version >= 3:
        struct.pack_into(">QQQII", buf, 72, incompat, 0, 0, 4,
                         header_length)
        buf[104] = compression_type
    for i, e in enumerate(l1):
        struct.pack_into(">Q", buf, CS + i * 8, e)
    for i, e in enumerate(l2):
        struct.pack_into(">Q", buf, 3 * CS + i * 8, e)
    for i, c in enumerate(clusters):
        buf[(4 + i) * CS:(5 + i) * CS] = c
    buf += extra
    if compressed is not None:
        buf += compressed
    if truncate is not None:
        buf = buf[:truncate]
    assert len(buf) <= 4096, len(buf)
    return bytes(buf)


PATTERN = bytes((i * 7 + 3) & 0xff for i in range(CS))
AFTER = 4 * CS + CS     # where compressed bytes start with one data cluster
GOOD_L2 = [COPIED | 4 * CS, 1, 0]


def with_compressed(stream, version=3, **kw):
    """An image whose L2 entry 3 is a compressed cluster holding stream,
    starting 7 bytes into a sector."""
    off = AFTER + 7
    sectors = (7 + len(stream) - 1) // 512
    l2 = (GOOD_L2 if version >= 3 else [COPIED | 4 * CS, 0, 0]) + \
        [compressed_entry(off, sectors)]
    return image(version=version, l2=l2, clusters=[PATTERN],
                 compressed=b"\0" * 7 + stream, **kw)


ZSTD = dict(incompat=1 << 3, compression_type=1)

SEEDS = {
    "v3-data-zero-hole": image(l2=GOOD_L2, clusters=[PATTERN]),
    "v2-data-hole": image(version=2, l2=[COPIED | 4 * CS, 0],
                          clusters=[PATTERN]),
    "v3-empty": image(size=0, l1=[], l1_size=0, l1_offset=0),
    "v3-no-l2": image(l1=[0, 0]),
    "v3-deflate": with_compressed(deflate_stored(PATTERN)),
    "v2-deflate": with_compressed(deflate_stored(PATTERN), version=2),
    "v3-zstd-raw": with_compressed(zstd_raw(PATTERN), **ZSTD),
    "v3-zstd-rle": with_compressed(zstd_rle(0x5a, CS), **ZSTD),
    "v3-deflate-truncated": with_compressed(deflate_stored(PATTERN)[:-100]),
    "v3-deflate-garbage": with_compressed(b"\xff" * 600),
    "v3-zstd-garbage": with_compressed(b"\x28\xb5\x2f\xfd" + b"\xff" * 600,
                                       **ZSTD),
    "v3-deflate-short": with_compressed(deflate_stored(PATTERN[:300])),
    "v3-zstd-not-built-type": with_compressed(zstd_raw(PATTERN),
                                              incompat=1 << 3,
                                              compression_type=2),
    "v3-compressed-past-end": image(
        l2=[compressed_entry(1 << 40, 1)], clusters=[PATTERN]),
    "v3-compressed-in-header": image(
        l2=[compressed_entry(100, 1)], clusters=[PATTERN]),
    "v3-compressed-copied": image(
        l2=[COPIED | compressed_entry(AFTER, 0)], clusters=[PATTERN],
        compressed=deflate_stored(PATTERN)),
    "v3-data-past-end": image(l2=[COPIED | (1 << 40)], clusters=[PATTERN]),
    "v3-data-unaligned": image(l2=[COPIED | 4 * CS + 256],
                               clusters=[PATTERN]),
    "v3-data-reserved": image(l2=[COPIED | 4 * CS | 0x2],
                              clusters=[PATTERN]),
    "v2-zero-flag": image(version=2, l2=[1], clusters=[PATTERN]),
    "v3-l1-past-end": image(l1=[COPIED | (1 << 40), 0]),
    "v3-l1-unaligned": image(l1=[COPIED | 3 * CS + 0x100, 0]),
    "v3-l1-reserved": image(l1=[COPIED | 3 * CS | 1, 0]),
    "v3-l1-shared": image(size=8 * 32768, l1=[COPIED | 3 * CS] * 8,
                          l2=GOOD_L2, clusters=[PATTERN]),
    "refuse-backing": image(backing=b"base.qcow2"),
    "refuse-backing-long": image(backing=b"b" * 300),
    "refuse-encrypted": image(crypt=2),
    "refuse-dirty": image(incompat=1),
    "refuse-corrupt": image(incompat=2),
    "refuse-data-file": image(incompat=4),
    "refuse-extended-l2": image(incompat=16),
    "refuse-unknown-feature": image(incompat=1 << 40),
    "refuse-compression-type-bit-missing": image(compression_type=1),
    "refuse-version-1": image(version=1),
    "refuse-version-4": image(version=4),
    "refuse-magic": image(magic=0x514649fc),
    "refuse-cluster-bits-30": image(cluster_bits=30),
    "refuse-cluster-bits-8": image(cluster_bits=8),
    "refuse-l1-too-small": image(size=10 * 32768),
    "refuse-l1-offset-zero": image(l1_offset=0),
    "refuse-l1-offset-unaligned": image(l1_offset=CS + 8),
    "refuse-l1-past-end": image(l1_offset=1 << 40),
    "refuse-size-huge": image(size=1 << 63),
    "refuse-l1-too-big": image(size=1 << 62, l1_size=0xffffffff),
    "refuse-header-length": image(header_length=1 << 20),
    "refuse-header-length-short": image(header_length=100),
    "refuse-truncated-v3": image(truncate=90),
    "refuse-truncated-tiny": image(truncate=20),
    "refuse-empty-file": b"",
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "corpus-qcow2")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(SEEDS), outdir))


if __name__ == "__main__":
    main()
