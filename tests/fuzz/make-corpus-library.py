#!/usr/bin/python3
"""Make the seed corpus of the fuzzing target "library"
(tests/fuzz/fuzz-library.c): what a server sends a backend on the
channel, as docs/nbdkit-helper-protocol.pod describes it.

    tests/fuzz/make-corpus-library.py DIR

Each seed's first byte is the harness's: bit 0 set = an arena is
attached (ATTACH_FD "shm") before the bytes that follow.
"""

import json
import os
import struct
import sys

MAGIC = 0x4E424B48
HELLO, CONFIG, CONFIG_COMPLETE, GET_READY, DUMP = 1, 2, 3, 4, 5
LIST_EXPORTS, DEFAULT_EXPORT, OPEN, CLOSE, SHUTDOWN = 6, 7, 8, 9, 10
ATTACH_FD, PING = 11, 12
PREAD, PWRITE, FLUSH, TRIM, ZERO, CACHE, EXTENTS = 16, 17, 18, 19, 20, 21, 22
FUA, MAY_TRIM, FAST_ZERO, REQ_ONE, ZEROS, SHM = 1, 2, 4, 8, 0x10, 0x20


class Frames:
    def __init__(self):
        self.out = b""
        self.id = 1

    def frame(self, type_, payload=b"", flags=0, handle=0, offset=0,
              count=0, status=0, id_=None):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        if id_ is None:
            self.id += 1
            id_ = self.id
        self.out += struct.pack(">IHHQIIQII", MAGIC, type_, flags, id_,
                                handle, status, offset, count,
                                len(payload)) + payload
        return self

    def startup(self, threads=4):
        self.frame(HELLO, {"protocol": 1, "threads": threads,
                           "verbose": False, "debug": {}})
        self.frame(CONFIG, {"key": "file", "value": "disk.img"})
        self.frame(CONFIG_COMPLETE)
        self.frame(GET_READY)
        return self

    def open(self, export="", readonly=False, connection=1):
        return self.frame(OPEN, {"export": export, "readonly": readonly,
                                 "tls": False, "connection": connection,
                                 "description": True})


def seeds():
    s = {}
    # Start-up alone, with every start-up message.
    f = Frames().frame(HELLO, {"protocol": 1, "threads": 2, "verbose": True,
                               "debug": {"fuzz.flag": 1}})
    f.frame(CONFIG, {"key": "magic", "value": "mkey"})
    f.frame(CONFIG, {"key": "fail", "value": "1"})
    f.frame(CONFIG, {"key": "size", "value": "1M"})
    f.frame(CONFIG_COMPLETE).frame(GET_READY).frame(PING)
    f.frame(SHUTDOWN)
    s["startup"] = b"\0" + f.out
    s["hello-wrong-version"] = b"\0" + Frames().frame(
        HELLO, {"protocol": 99}).out
    s["dump"] = b"\0" + Frames().frame(HELLO, {"protocol": 1}).frame(DUMP).out

    # Exports and opens.
    f = Frames().startup()
    f.frame(LIST_EXPORTS, {"readonly": False, "tls": False, "connection": 1})
    f.frame(DEFAULT_EXPORT, {"readonly": True, "tls": False,
                             "connection": 1})
    f.open("", True, 2).open("second", False, 3).open("fail", False, 4)
    f.frame(CLOSE, handle=1).frame(CLOSE, handle=2).frame(CLOSE, handle=9)
    s["exports-and-opens"] = b"\0" + f.out

    # A session: every data request on handle 1.
    f = Frames().startup().open()
    f.frame(PREAD, handle=1, offset=0, count=4096)
    f.frame(PWRITE, b"\xaa" * 512, handle=1, offset=512, count=512,
            flags=FUA)
    f.frame(PWRITE, b"\x01", handle=1, offset=0, count=1)
    f.frame(FLUSH, handle=1)
    f.frame(TRIM, handle=1, offset=4096, count=4096, flags=FUA)
    f.frame(ZERO, handle=1, offset=8192, count=8192, flags=MAY_TRIM)
    f.frame(ZERO, handle=1, offset=0, count=131072, flags=FAST_ZERO)
    f.frame(CACHE, handle=1, offset=0, count=65536)
    f.frame(EXTENTS, handle=1, offset=1000, count=200000)
    f.frame(EXTENTS, handle=1, offset=0, count=200000, flags=REQ_ONE)
    f.frame(PREAD, handle=1, offset=65536, count=512, flags=ZEROS)
    f.frame(PREAD, handle=1, offset=1048576 - 512, count=1024)
    f.frame(PREAD, handle=1, offset=1 << 62, count=512)
    f.frame(PING)
    f.frame(CLOSE, handle=1)
    s["session"] = b"\0" + f.out

    # The same over the shared-memory arena.
    f = Frames().startup().open()
    f.frame(PWRITE, struct.pack(">Q", 0), handle=1, offset=0, count=4096,
            flags=SHM)
    f.frame(PREAD, struct.pack(">Q", 4096), handle=1, offset=0, count=4096,
            flags=SHM)
    f.frame(PREAD, struct.pack(">Q", 1048576 - 100), handle=1, offset=0,
            count=4096, flags=SHM)
    f.frame(PREAD, struct.pack(">Q", 1 << 63), handle=1, offset=0,
            count=512, flags=SHM)
    f.frame(CLOSE, handle=1)
    s["session-shm"] = b"\1" + f.out
    s["shm-without-arena"] = b"\0" + Frames().startup().open().frame(
        PREAD, struct.pack(">Q", 0), handle=1, count=512, flags=SHM).out

    # Broken frames: each ends the input with a protocol error.
    s["bad-magic"] = b"\0" + Frames().startup().out + b"XXXX" + b"\0" * 36
    s["unknown-type"] = b"\0" + Frames().startup().frame(77).out
    s["json-not-object"] = b"\0" + Frames().frame(HELLO, b"[1,2]").out
    s["json-invalid"] = b"\0" + Frames().frame(HELLO, b"{\"protocol\":").out
    s["open-json-invalid"] = b"\0" + Frames().startup().frame(
        OPEN, b"{nope").out
    s["truncated-payload"] = b"\0" + Frames().startup().open().frame(
        PWRITE, b"\0" * 100, handle=1, count=4096).out[:-50]
    s["reply-bit-set"] = b"\0" + Frames().frame(HELLO | 0x8000).out
    s["huge-count"] = b"\0" + Frames().startup().open().frame(
        PREAD, handle=1, count=0xFFFFFFFF).out
    return s


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-corpus-library.py DIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(sys.argv[1], name), "wb") as fp:
            fp.write(data)


if __name__ == "__main__":
    main()
