#!/usr/bin/python3
# Make the seed corpus of the fuzzing harness (tests/fuzz/fuzz-server.c):
# each file is what a client sends to the server, from its handshake
# flags to its last request.  The exports named are those of the
# stand-in backend (tests/fuzz/fuzz-backend.c).
#
#   tests/fuzz/make-corpus.py [DIRECTORY]     (default: tests/fuzz/corpus)
#
# The files are made the same way every time; run this again after
# changing it and commit the result.

import os
import struct
import sys

OPTS_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513

FLAG_FIXED, FLAG_NO_ZEROES = 1, 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7

F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO = 1, 2, 4, 8, 16

KiB, MiB = 1024, 1024 * 1024

# The harness's mode prefix (tests/fuzz/fuzz-server.c): how one input
# runs.
MODE_OLDSTYLE, MODE_READONLY, MODE_NO_SR = 0x01, 0x02, 0x04
MODE_TLS_OFF, MODE_TLS_REQUIRE = 0x08, 0x10
MODE_NO_FIXED, MODE_NO_NO_ZEROES, MODE_DRAIN = 0x20, 0x40, 0x80
MODE_HANGUP, MODE_NO_DEFAULT = 0x100, 0x200


def mode(bits):
    return b"\xffFZ" + struct.pack(">H", bits)


def flags(f=FLAG_FIXED | FLAG_NO_ZEROES):
    return struct.pack(">I", f)


def option(opt, data=b"", length=None):
    if length is None:
        length = len(data)
    return struct.pack(">QII", OPTS_MAGIC, opt, length) + data


def go_data(name, infos=()):
    return (struct.pack(">I", len(name)) + name +
            struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))


def go(name=b"", infos=(), opt=OPT_GO):
    return option(opt, go_data(name, infos))


def meta(opt, name, queries):
    data = struct.pack(">I", len(name)) + name
    data += struct.pack(">I", len(queries))
    for q in queries:
        data += struct.pack(">I", len(q)) + q
    return option(opt, data)


def req(cmd, offset=0, count=0, fl=0, data=b"", cookie=None, magic=REQ_MAGIC):
    if cookie is None:
        req.cookie += 1
        cookie = req.cookie
    return struct.pack(">IHHQQI", magic, fl, cmd, cookie, offset,
                       count) + data


req.cookie = 0


def payload(n, seed=1):
    return bytes((i * 13 + seed) & 0xFF for i in range(n))


def disc():
    return req(CMD_DISC)


def structured_base_allocation(name=b"disk"):
    return (option(OPT_STRUCTURED_REPLY) +
            meta(OPT_SET_META_CONTEXT, name, [b"base:allocation"]))


SEEDS = {}


def seed(name):
    def register(fn):
        req.cookie = 0
        SEEDS[name] = fn()
        return fn
    return register


@seed("go-simple-requests")
def _():
    return (flags() + go(b"disk", [INFO_NAME, INFO_DESCRIPTION,
                                   INFO_BLOCK_SIZE]) +
            req(CMD_READ, 0, 4096) +
            req(CMD_WRITE, 4096, 512, data=payload(512)) +
            req(CMD_READ, 4096, 512) +
            req(CMD_WRITE, 8192, 16, F_FUA, data=payload(16, 7)) +
            req(CMD_FLUSH) +
            req(CMD_TRIM, 64 * KiB, 8192) +
            req(CMD_WRITE_ZEROES, 0, 4096) +
            req(CMD_WRITE_ZEROES, 4096, 4096, F_NO_HOLE | F_FAST_ZERO) +
            req(CMD_CACHE, 0, 64 * KiB) +
            req(CMD_BLOCK_STATUS, 0, MiB) +          # not negotiated
            req(CMD_READ, 256 * KiB, 128 * KiB) +    # a hole: zeros
            disc())


@seed("structured-block-status")
def _():
    return (flags() + structured_base_allocation() +
            meta(OPT_LIST_META_CONTEXT, b"disk", [b"base:"]) +
            meta(OPT_LIST_META_CONTEXT, b"disk", []) +
            go(b"disk") +
            req(CMD_BLOCK_STATUS, 0, 960 * KiB) +
            req(CMD_BLOCK_STATUS, 100 * KiB, 300 * KiB, F_REQ_ONE) +
            req(CMD_READ, 0, 8192, F_DF) +
            req(CMD_READ, 256 * KiB, 128 * KiB) +    # OFFSET_HOLE
            req(CMD_READ, 640 * KiB, 64 * KiB) +     # allocated zeros
            req(CMD_READ, MiB - 64 * KiB, 4096) +    # EIO
            req(CMD_READ, MiB - 4096, 4096) +        # the backend is lost
            req(CMD_WRITE_ZEROES, 0, 4096, F_FAST_ZERO) +   # ENOTSUP
            req(CMD_WRITE, 1, 3, data=b"abc") +
            req(CMD_READ, 0, 4096, F_FUA) +          # EINVAL chunk
            req(CMD_BLOCK_STATUS, MiB - 64 * KiB, 4096) +
            disc())


@seed("list-and-info")
def _():
    out = flags()
    for _ in range(7):                  # every kind of LIST answer
        out += option(OPT_LIST)
    for name in (b"ro", b"aligned", b"empty", b"huge", b"denied",
                 b"broken", b"nosize", b"nosuch", b"flaky", b"flaky",
                 b"flaky", b""):
        out += go(name, [INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE],
                  OPT_INFO)
    # Ends with a bad option magic.
    return out + struct.pack(">QII", 0x1122334455667788, OPT_GO, 0)


@seed("export-name")
def _():
    # A client that is not fixed newstyle, and wants the zeroes.
    return (flags(0) + option(OPT_EXPORT_NAME, b"disk") +
            req(CMD_READ, 0, 512) + req(CMD_WRITE, 0, 1, data=b"x") +
            disc())


@seed("bad-request-magic")
def _():
    return (flags() + go(b"disk") + req(CMD_READ, 0, 512) +
            req(CMD_READ, 0, 512, magic=0x25609514))


@seed("huge-lengths")
def _():
    # Ends with a WRITE whose payload never comes.
    return (flags() +
            option(OPT_GO, struct.pack(">I", 0xFFFFFFF0) + b"x" * 8) +
            option(OPT_INFO, go_data(b"x" * 5000)) +
            go(b"huge", [INFO_BLOCK_SIZE]) +
            req(CMD_READ, 0, 64 * MiB) +             # EOVERFLOW
            req(CMD_READ, 2**63 - 4096, 4096) +      # the last block
            req(CMD_READ, 2**63 - 4096, 8192) +      # beyond the end
            req(CMD_READ, 2**64 - 512, 1024) +       # wraps around
            req(CMD_READ, 0, 128 * KiB) +            # over block max
            req(CMD_WRITE_ZEROES, 2**62, 0xFFFFFFFF) +
            req(CMD_TRIM, 2**62, 0xFFFFFFFF) +
            req(CMD_WRITE, 2**40, 0xFFFFFFFF) + payload(64))


@seed("long-names")
def _():
    # Ends with an option too long to keep, cut short.
    return (flags() + option(OPT_STRUCTURED_REPLY) +
            meta(OPT_SET_META_CONTEXT, b"m" * 4097, [b"base:allocation"]) +
            option(OPT_LIST, length=0x00100000) + b"\0" * 64)


@seed("bad-options")
def _():
    return (flags() +
            option(99, b"unknown") +
            option(OPT_STRUCTURED_REPLY, b"x") +
            option(OPT_LIST, b"x") +
            meta(OPT_SET_META_CONTEXT, b"disk", [b"base:allocation"]) +
            option(OPT_STRUCTURED_REPLY) +
            option(OPT_SET_META_CONTEXT, struct.pack(">II", 4, 1) + b"disk") +
            option(OPT_LIST_META_CONTEXT,
                   struct.pack(">I", 0) + struct.pack(">II", 2, 100) + b"ab") +
            option(OPT_GO, struct.pack(">I", 2) + b"ab" +
                   struct.pack(">H", 3) + b"\0\1") +
            go(b"\xff\xfe") +                       # not UTF-8
            go(b"a\0b") +                           # a NUL
            go(b"x" * 4097) +                       # too long
            option(OPT_STARTTLS, b"x") +
            option(OPT_ABORT))


@seed("too-many-options")
def _():
    return flags() + option(OPT_STRUCTURED_REPLY) * 40


@seed("read-only-export")
def _():
    return (flags() + structured_base_allocation(b"ro") + go(b"ro") +
            req(CMD_WRITE, 0, 512, data=payload(512)) +   # EPERM
            req(CMD_TRIM, 0, 512) +
            req(CMD_WRITE_ZEROES, 0, 512) +
            req(CMD_READ, 1, 512) +                       # unaligned
            req(CMD_READ, 0, 128 * KiB) +                 # over the max
            req(CMD_FLUSH) + req(CMD_CACHE, 0, 512) +
            req(CMD_BLOCK_STATUS, 0, 8192) +              # no extents
            req(CMD_READ, 0, 512, F_DF) + disc())


@seed("aligned-export")
def _():
    return (flags() + go(b"aligned", [INFO_BLOCK_SIZE]) +
            req(CMD_READ, 0, 4096) + req(CMD_READ, 512, 4096) +
            req(CMD_WRITE, 4096, 4096, F_FUA, data=payload(4096, 9)) +
            req(CMD_TRIM, 0, 4096) +
            req(CMD_WRITE_ZEROES, 0, 8192, F_FAST_ZERO) +
            req(CMD_WRITE_ZEROES, 256 * KiB, 8192, F_FAST_ZERO) +
            req(CMD_CACHE, 0, 512 * KiB) +
            req(CMD_FLUSH, 0, 1) + disc())


@seed("empty-export")
def _():
    return (flags() + go(b"empty") + req(CMD_READ, 0, 1) +
            req(CMD_READ, 0, 0) + req(CMD_WRITE, 0, 0) +
            req(CMD_FLUSH) + req(99, 0, 1) + disc())


@seed("pipelined-reads")
def _():
    # More requests than the server keeps in flight: it pauses reading
    # (the export "stall" answers nothing while the client sends).
    out = flags() + go(b"stall")
    for i in range(270):
        out += req(CMD_READ, (i * 4096) % (960 * KiB), 512)
    return out


@seed("disc-with-requests-in-flight")
def _():
    # The client hangs up at once, reading none of the replies.
    return (mode(MODE_HANGUP) + flags() + structured_base_allocation() +
            go(b"disk") +
            req(CMD_FLUSH) + req(CMD_BLOCK_STATUS, 0, 4096) +
            req(CMD_WRITE, 0, 8, F_FUA, data=b"12345678") + disc() +
            req(CMD_READ, 0, 512))


@seed("starttls")
def _():
    # STARTTLS, then something that is not a TLS ClientHello.
    return (flags() + option(OPT_STRUCTURED_REPLY) + option(OPT_STARTTLS) +
            b"\x16\x03\x01\x00\x05hello" + go(b"disk"))


@seed("mode-oldstyle")
def _():
    return (mode(MODE_OLDSTYLE) + req(CMD_READ, 0, 4096) +
            req(CMD_WRITE, 512, 512, data=payload(512, 3)) +
            req(CMD_READ, 0, 512, F_DF) +                 # no DF: EINVAL
            req(CMD_FLUSH) + req(CMD_READ, MiB - 40 * KiB, 1024) + disc())


@seed("mode-oldstyle-no-default")
def _():
    # Oldstyle, and the default export cannot be opened.
    return mode(MODE_OLDSTYLE | MODE_NO_DEFAULT) + req(CMD_READ, 0, 512)


@seed("mode-tls-require")
def _():
    return (mode(MODE_TLS_REQUIRE) + flags() + option(OPT_LIST) +
            go(b"disk") + option(OPT_STRUCTURED_REPLY) +
            option(OPT_EXPORT_NAME, b"disk"))


@seed("mode-plain-newstyle")
def _():
    # The server offers neither fixed newstyle nor no zeroes.
    return (mode(MODE_NO_FIXED | MODE_NO_NO_ZEROES) + flags(0) +
            option(OPT_EXPORT_NAME, b"") + req(CMD_READ, 0, 512) + disc())


@seed("mode-readonly-no-sr-drain")
def _():
    # TLS off, read-only, no structured replies, and the server shuts
    # down once the client has sent this.
    return (mode(MODE_TLS_OFF | MODE_READONLY | MODE_NO_SR | MODE_DRAIN) +
            flags() + option(OPT_STARTTLS) + option(OPT_STRUCTURED_REPLY) +
            go(b"disk") + req(CMD_WRITE, 0, 512, data=payload(512)) +
            req(CMD_READ, 0, 512) + req(CMD_FLUSH) +
            req(CMD_BLOCK_STATUS, 0, 512) + req(CMD_READ, 4096, 512))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here,
                                                                "corpus")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(SEEDS), outdir))


if __name__ == "__main__":
    main()
