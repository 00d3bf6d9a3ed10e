#!/usr/bin/python3
# Make the seed corpus of the fuzzing target "tar"
# (tests/fuzz/fuzz-tar.c): each file is the name of the entry to find,
# a newline, then a tar file.  The tar files are written by python's
# tarfile module in each format GNU tar reads (GNU, POSIX ustar and
# pax, v7), with long names, large sizes, links and directories, and
# some damaged on purpose (checksums, sizes, pax records, truncation)
# for the parser's error paths.
#
#   tests/fuzz/make-corpus-tar.py [DIRECTORY]  (default: corpus-tar)
#
# The files are made the same way every time (fixed times, owners and
# contents); run this again after changing it and commit the result.
# The crash-* reproducers in the directory are kept by hand, not made
# here.

import io
import os
import sys
import tarfile

FORMATS = {
    "gnu": tarfile.GNU_FORMAT,
    "pax": tarfile.PAX_FORMAT,
    "ustar": tarfile.USTAR_FORMAT,
}

LONG = "/".join("directory-number-%02d-with-a-long-name" % i
                for i in range(1, 5)) + "/disk.img"
DEEP = "/".join("d%02d-padding-to-make-a-long-path" % i
                for i in range(1, 10)) + "/disk.img"


def info(name, size=0, type=tarfile.REGTYPE, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = type
    ti.linkname = linkname
    ti.mtime = 1000000000
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def archive(fmt, entries):
    """entries: (name, bytes) for files, or TarInfo for the rest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                t.addfile(e)
            else:
                name, data = e
                t.addfile(info(name, len(data)), io.BytesIO(data))
    # tarfile pads to 10 KiB records: keep only the two end blocks.
    data = buf.getvalue().rstrip(b"\0")
    return data + bytes(-len(data) % 512 + 1024)


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xff for i in range(n))


def header_only(fmt, ti):
    """Headers (and pax/long name blocks) of ti, without data."""
    return ti.tobuf(fmt, "utf-8", "surrogateescape")


def fix_checksum(block):
    b = bytearray(block)
    b[148:156] = b" " * 8
    s = sum(b)
    b[148:156] = b"%06o\0 " % s
    return bytes(b)


def seeds():
    s = {}
    files = [("README", b"read me\n"), ("disk.img", pattern(3000, 1)),
             ("other", pattern(700, 2))]
    for fname, fmt in FORMATS.items():
        s["%s-three" % fname] = b"disk.img\n" + archive(fmt, files)
        s["%s-first" % fname] = b"README\n" + archive(fmt, files)
        s["%s-missing" % fname] = b"nothere\n" + archive(fmt, files)
        s["%s-dir-link" % fname] = b"sub/\n" + archive(fmt, [
            info("sub/", type=tarfile.DIRTYPE),
            info("link", type=tarfile.SYMTYPE, linkname="disk.img"),
            info("hard", type=tarfile.LNKTYPE, linkname="disk.img"),
            ("disk.img", b"x" * 10)])
    for fname in ("gnu", "pax", "ustar"):
        s["%s-long" % fname] = (LONG.encode() + b"\n" +
                                archive(FORMATS[fname],
                                        [("a", b"1"), (LONG, pattern(600, 3))]))
    for fname in ("gnu", "pax"):
        s["%s-deep" % fname] = (DEEP.encode() + b"\n" +
                                archive(FORMATS[fname],
                                        [(DEEP, pattern(100, 4)),
                                         ("disk.img", b"z")]))
        # A size of 9 GiB: pax size= or base-256, without the data.
        big = info("big.img", 9 * 1024 ** 3 + 5)
        s["%s-9G" % fname] = (b"big.img\n" + archive(FORMATS[fname], [("a", b"1")])[:1024]
                              + header_only(FORMATS[fname], big))
        s["%s-9G-skip" % fname] = (b"disk.img\n" +
                                   header_only(FORMATS[fname], big))
    # v7: no magic, the old checksum.
    v7 = bytearray(archive(tarfile.USTAR_FORMAT, files))
    for off in range(0, len(v7), 512):
        if v7[off + 257:off + 263] == b"ustar\0":
            v7[off + 257:off + 265] = bytes(8)
            v7[off + 265:off + 500] = bytes(235)
            v7[off:off + 512] = fix_checksum(v7[off:off + 512])
    s["v7-three"] = b"disk.img\n" + bytes(v7)
    good = archive(tarfile.GNU_FORMAT, files)
    # Damaged: checksum, size field, typeflag, truncation.
    bad = bytearray(good)
    bad[5] ^= 0x20
    s["bad-checksum"] = b"disk.img\n" + bytes(bad)
    bad = bytearray(good)
    bad[124:136] = b"99999999999\0"
    s["bad-size-digits"] = b"disk.img\n" + fix_checksum(bad[:512]) + bytes(bad[512:])
    bad = bytearray(good)
    bad[124:136] = b"\xff" * 12
    s["bad-size-negative"] = b"disk.img\n" + fix_checksum(bad[:512]) + bytes(bad[512:])
    bad = bytearray(good)
    bad[124:136] = b"\x80" + b"\xff" * 11
    s["bad-size-huge"] = b"disk.img\n" + fix_checksum(bad[:512]) + bytes(bad[512:])
    s["truncated-data"] = b"disk.img\n" + good[:2000]
    s["truncated-header"] = b"disk.img\n" + good[:1024 + 300]
    s["no-end-blocks"] = b"other\n" + good[:512 + 512 + 512 + 3072 + 512 + 1024]
    # pax records: good ones and broken ones.
    pax = archive(tarfile.PAX_FORMAT, [(LONG, pattern(50, 5))])
    i = pax.index(b" path=", 512)
    for name, change in [("pax-bad-length", (512, b"999")),
                         ("pax-zero-length", (512, b"000")),
                         ("pax-no-equals", (i + 5, b" ")),
                         ("pax-no-newline", (1023, b"x"))]:
        bad = bytearray(pax)
        off, rep = change
        bad[off:off + len(rep)] = rep
        s[name] = LONG.encode() + b"\n" + bytes(bad)
    rec = b"size=18446744073709551616\n"
    rec = b"%d " % (len(rec) + 3) + rec
    ph = info("././@PaxHeader", len(rec), type=tarfile.XHDTYPE)
    body = header_only(tarfile.USTAR_FORMAT, ph) + rec + bytes(512 - len(rec))
    s["pax-size-overflow"] = (b"disk.img\n" + body +
                              header_only(tarfile.USTAR_FORMAT, info("disk.img", 1)) +
                              b"x" + bytes(511 + 1024))
    # A GNU long name that is empty, and one of 2 MiB (over the limit).
    ln = info("././@LongLink", 0, type=tarfile.GNUTYPE_LONGNAME)
    s["gnu-longname-empty"] = (b"disk.img\n" +
                               header_only(tarfile.USTAR_FORMAT, ln) + bytes(1024))
    ln = info("././@LongLink", 2 * 1024 * 1024, type=tarfile.GNUTYPE_LONGNAME)
    s["gnu-longname-huge"] = (b"disk.img\n" +
                              header_only(tarfile.USTAR_FORMAT, ln) + bytes(1024))
    s["no-newline-zeros"] = bytes(1024)
    s["empty"] = b""
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus-tar")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
