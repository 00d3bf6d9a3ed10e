#!/usr/bin/python3
# Make the seed corpus of the fuzzing target "sh-output"
# (tests/fuzz/fuzz-sh-output.c): each file is the number of a parser
# (one byte), for extents the request (count, 4 bytes, and offset, 8
# bytes, little-endian), for stderr one byte of options, then what a
# script prints, as nbdkit-sh-plugin(3) and tests/sh.bats have it: the
# right answers and wrong ones.
#
#   tests/fuzz/make-corpus-sh-output.py [DIRECTORY]
#                                         (default: corpus-sh-output)
#
# The files are made the same way every time; run this again after
# changing it and commit the result.  The crash-* reproducers in the
# directory are kept by hand, not made here.

import os
import struct
import sys

# The parsers, in the order of the harness's PARSE_*.
(HANDLE, THREAD_MODEL, SIZE, BLOCK_SIZE, CAN_FUA, CAN_CACHE, LIST_EXPORTS,
 DEFAULT_EXPORT, EXTENTS, MAGIC_CONFIG_KEY, STDERR, DESCRIPTION) = range(12)


def seed(parser, text):
    return bytes([parser]) + (text.encode() if isinstance(text, str)
                              else text)


def extents(count, offset, text):
    return seed(EXTENTS, struct.pack("<IQ", count, offset) + text.encode())


def stderr(opts, text):
    return seed(STDERR, bytes([opts]) + text.encode())


SEEDS = {
    "handle": seed(HANDLE, "h1\n"),
    "handle-two-newlines": seed(HANDLE, "h1\n\n"),
    "handle-empty": seed(HANDLE, ""),
    "description": seed(DESCRIPTION, "  the large one \r\n\n"),
    "thread-model": seed(THREAD_MODEL, "parallel\n"),
    "thread-model-blanks": seed(THREAD_MODEL, " serialize_requests \n"),
    "thread-model-unknown": seed(THREAD_MODEL, "serialise_everything\n"),
    "size": seed(SIZE, "1048576\n"),
    "size-suffix": seed(SIZE, " 8M\n"),
    "size-bytes": seed(SIZE, "512b"),
    "size-max": seed(SIZE, "9223372036854775807"),
    "size-too-large": seed(SIZE, "8E"),
    "size-negative": seed(SIZE, "-1\n"),
    "size-junk": seed(SIZE, "12 parsecs"),
    "block-size": seed(BLOCK_SIZE, "512 4096 32M\n"),
    "block-size-lines": seed(BLOCK_SIZE, "1\n4k\n\t4294967295\n"),
    "block-size-short": seed(BLOCK_SIZE, "512 4096"),
    "block-size-too-large": seed(BLOCK_SIZE, "512 4096 4G"),
    "can-fua-native": seed(CAN_FUA, "native\n"),
    "can-fua-emulate": seed(CAN_FUA, " Emulate "),
    "can-fua-bad": seed(CAN_FUA, "sometimes"),
    "can-cache-none": seed(CAN_CACHE, "NONE\n"),
    "can-cache-bad": seed(CAN_CACHE, "native please"),
    "exports-names": seed(LIST_EXPORTS, "disk\nother\n"),
    "exports-names-mode": seed(LIST_EXPORTS, "NAMES\na\nb\n\n"),
    "exports-interleaved": seed(
        LIST_EXPORTS,
        "INTERLEAVED\nsmall\nthe small one\nlarge\nthe large one\n"),
    "exports-interleaved-odd": seed(LIST_EXPORTS, "INTERLEAVED\na\nda\nb"),
    "exports-names-descriptions": seed(
        LIST_EXPORTS, "NAMES+DESCRIPTIONS\na\nb\nthe a one\nthe b one\n"),
    "exports-names-descriptions-odd": seed(
        LIST_EXPORTS, "NAMES+DESCRIPTIONS\na\nb\nthe a one\n"),
    "exports-empty": seed(LIST_EXPORTS, ""),
    "exports-mode-only": seed(LIST_EXPORTS, "INTERLEAVED"),
    "exports-long-name": seed(LIST_EXPORTS, "ok\n" + "n" * 4097 + "\n"),
    "exports-utf8": seed(LIST_EXPORTS, b"caf\xc3\xa9\n\xff\xfe\n"),
    "default-export": seed(DEFAULT_EXPORT, "disk\nother\n"),
    "default-export-mode": seed(DEFAULT_EXPORT, "NAMES\n"),
    "default-export-empty": seed(DEFAULT_EXPORT, ""),
    "extents": extents(8 << 20, 0,
                       "0 1048576 hole,zero\n1048576 65536\n"
                       "1114112 7274496 3\n"),
    "extents-types": extents(4096, 4096,
                             "0 4096 0\n4096 1024 hole\n5120 1024 zero\n"
                             "6144 1024 0x3\n7168 1k 2\n"),
    "extents-blank-lines": extents(512, 0, "\n0 256\r\n\n256\t256 data\n"),
    "extents-past-end": extents(512, 1024, "0 2048 3\n2048 512 0\n"),
    "extents-gap": extents(4096, 0, "0 512\n1024 512\n"),
    "extents-after-start": extents(4096, 0, "512 512\n"),
    "extents-bad-type": extents(4096, 0, "0 4096 hole,sparse\n"),
    "extents-big-type": extents(4096, 0, "0 4096 4294967296\n"),
    "extents-too-many-words": extents(4096, 0, "0 4096 3 4\n"),
    "extents-one-word": extents(4096, 0, "0\n"),
    "extents-overflow": extents(4096, 0, "0 9223372036854775807\n"
                                "9223372036854775807 9223372036854775807\n"),
    "extents-high-offset": extents(1, (1 << 63) - 2, "9223372036854775806 1\n"),
    "magic-config-key": seed(MAGIC_CONFIG_KEY, "  disk \n"),
    "magic-config-key-two": seed(MAGIC_CONFIG_KEY, "file\tsize\n"),
    "magic-config-key-empty": seed(MAGIC_CONFIG_KEY, " \n"),
    "stderr-errno": stderr(0, "EIO pwrite must not be called\n"),
    "stderr-lowercase": stderr(1, "enospc no room here\n"),
    "stderr-name-only": stderr(2, "Eperm\n"),
    "stderr-not-a-name": stderr(3, "EINVALID is not a name\n"),
    "stderr-blank-first": stderr(4, " EROFS after a blank\n"),
    "stderr-later-line": stderr(8, "warning: something\nEPERM writes are "
                                "not allowed today\nmore\n"),
    "stderr-empty": stderr(12, ""),
    "stderr-blank-lines": stderr(9, "\n\n  \r\n\t\n"),
    "stderr-no-errno": stderr(0, "the backing store went away\n"),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "corpus-sh-output")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(SEEDS), outdir))


if __name__ == "__main__":
    main()
