#!/usr/bin/env python3
# Write the seed corpus of the fuzzing target "frames" (the front end
# reading a backend's frames; tests/fuzz/fuzz-frames.c says what one
# input is) into the directory given, default tests/fuzz/corpus-frames:
#
#   tests/fuzz/make-corpus-frames.py [DIR]
#
# Each seed is two bytes of options, then chunks (a 16-bit length and
# that many bytes, or an operation), each chunk written by the fake
# backend in one turn of the loop.  The frames follow
# docs/nbdkit-helper-protocol.pod; request ids are 1, 2, 3 ... in the
# order the harness makes its requests.  The ok-* seeds are correct
# conversations (a backend that answers everything), the others break
# the protocol, fail requests, or die and come back.

import json
import os
import struct
import sys

MAGIC = 0x4E424B48
REPLY = 0x8000
HELLO, CONFIG, CONFIG_COMPLETE, GET_READY = 1, 2, 3, 4
LIST_EXPORTS, DEFAULT_EXPORT, OPEN, CLOSE, SHUTDOWN, ATTACH_FD, PING = \
    6, 7, 8, 9, 10, 11, 12
PREAD, PWRITE, FLUSH, TRIM, ZERO, CACHE, EXTENTS = 16, 17, 18, 19, 20, 21, 22
FUA, MAY_TRIM, FAST_ZERO, REQ_ONE, ZEROS, SHM, DISCONNECT = \
    1, 2, 4, 8, 0x10, 0x20, 0x40
EIO, EINVAL, ENOTSUP, ESHUTDOWN = 5, 22, 95, 108
OP_EXIT, OP_HUNG, OP_PING, OP_NOSPAWN, OP_WAIT = \
    0xFFF0, 0xFFF1, 0xFFF2, 0xFFF3, 0xFFFF

# Options, byte 0.
PARAMS = lambda n: n                   # noqa: E731
RESTARTS = lambda n: n << 2            # noqa: E731
FAIL_ERROR, LIVENESS, READONLY, NO_SHM = 0x10, 0x20, 0x40, 0x80
# Byte 1.
EXPORT_DISK, IGNORE_TERM = 1, 2

SIZE = 1 << 20
FULL_CAPS = {
    "size": SIZE, "can_write": True, "can_flush": True, "can_trim": True,
    "can_zero": True, "can_fast_zero": True, "can_extents": True,
    "can_multi_conn": True, "is_rotational": False, "can_fua": "native",
    "can_cache": "emulate",
    "block_size": {"minimum": 1, "preferred": 4096, "maximum": 33554432},
    "description": "a fuzzed disk", "name": "disk",
}


def frame(typ, ident, payload=b"", status=0, flags=0, handle=0, offset=0,
          count=0, length=None):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":")).encode()
    return struct.pack(">IHHQIIQII", MAGIC, typ | REPLY, flags, ident,
                       handle, status, offset, count,
                       len(payload) if length is None else length) + payload


def data_requests(caps, readonly=False):
    """The data requests queue_data makes for these capabilities:
    (type, flags, offset, count)."""
    size = caps.get("size", 0)
    t = lambda k: caps.get(k) is True      # noqa: E731
    lvl = lambda k: caps.get(k) not in (None, False, "none")  # noqa: E731
    can_write = t("can_write") and not readonly
    can_zero = t("can_zero") and can_write
    small, big = min(size, 512), min(size, 65536)
    r = []
    if size:
        r.append((PREAD, 0, 0, small))
        if t("can_extents"):
            r.append((PREAD, ZEROS, size - big, big))
        if can_write:
            r.append((PWRITE, FUA if lvl("can_fua") else 0, 0, small))
        if can_zero:
            r.append((ZERO, MAY_TRIM | (FAST_ZERO if t("can_fast_zero")
                                        else 0), 0, big))
        if t("can_trim") and can_write:
            r.append((TRIM, 0, size - small, small))
    if t("can_flush"):
        r.append((FLUSH, 0, 0, 0))
    if size:
        if lvl("can_cache"):
            r.append((CACHE, 0, 0, big))
        if t("can_extents"):
            r.append((EXTENTS, 0, 0, min(size, 0xFFFFFFFF)))
            r.append((EXTENTS, REQ_ONE, 0, big))
    return r


def good_reply(ident, req, shm=False):
    typ, flags, offset, count = req
    if typ == PREAD and flags & ZEROS:
        return frame(PREAD, ident, flags=ZEROS, offset=offset, count=count)
    if typ == PREAD and shm:
        return frame(PREAD, ident, flags=SHM, offset=offset, count=count)
    if typ == PREAD:
        return frame(PREAD, ident, bytes([ident & 0xFF]) * count,
                     offset=offset, count=count)
    if typ == EXTENTS:
        ext = struct.pack(">QI", 65536, 0) + struct.pack(">QI", SIZE, 3)
        return frame(EXTENTS, ident, ext, offset=offset, count=count)
    return frame(typ, ident, offset=offset, count=count)


class Conv:
    """A conversation: the chunks a backend writes, and the ids the
    front end gives its requests."""

    def __init__(self, o0=0, o1=0):
        self.o0, self.o1 = o0, o1
        self.chunks = []
        self.next_id = 1

    def id(self):
        self.next_id += 1
        return self.next_id - 1

    def send(self, data):
        self.chunks.append(struct.pack(">H", len(data)) + data)

    def op(self, word):
        self.chunks.append(struct.pack(">H", word))

    def startup(self, hello=None, features=(), reopen=None):
        if hello is None:
            hello = {"protocol": 1, "name": "fuzz", "version": "1.0",
                     "thread_model": "parallel", "magic_config_key": "size",
                     "features": list(features), "fd_keys": ["fd"],
                     "callbacks": ["pread", "pwrite"]}
        self.send(frame(HELLO, self.id(), hello))
        if "memfd" in features:
            self.send(frame(ATTACH_FD, self.id(), {}))
        if "shm" in features and not self.o0 & NO_SHM:
            self.send(frame(ATTACH_FD, self.id(), {}))
        for _ in range(self.o0 & 3):
            self.send(frame(CONFIG, self.id(), {}))
        self.send(frame(CONFIG_COMPLETE, self.id(), {}))
        self.send(frame(GET_READY, self.id(), {}))
        if reopen is not None:
            self.send(frame(OPEN, self.id(), reopen, handle=7))

    def control(self, caps=FULL_CAPS, handle=1):
        """OPEN, LIST_EXPORTS, DEFAULT_EXPORT, PING: their ids."""
        ids = [self.id() for _ in range(4)]
        self.send(frame(OPEN, ids[0], caps, handle=handle))
        self.send(frame(LIST_EXPORTS, ids[1],
                        {"exports": [{"name": "", "description": "d"},
                                     {"name": "disk"}]}))
        self.send(frame(DEFAULT_EXPORT, ids[2], {"name": ""}))
        self.send(frame(PING, ids[3]))
        return ids

    def data(self, caps=FULL_CAPS, shm=False, answer=True):
        reqs = [(self.id(), r) for r in data_requests(
            caps, bool(self.o0 & READONLY))]
        if answer:
            for ident, r in reqs:
                self.send(good_reply(ident, r, shm))
        return reqs

    def stop(self, opened=True):
        if opened:
            self.send(frame(CLOSE, self.id(), {}))
        self.send(frame(SHUTDOWN, self.id(), {}))

    def bytes(self):
        return bytes([self.o0, self.o1]) + b"".join(self.chunks)


def seeds():
    s = {}

    c = Conv()
    c.startup()
    c.control(caps={"size": SIZE})
    c.data(caps={"size": SIZE})
    c.stop()
    s["ok-minimal"] = c

    c = Conv(PARAMS(2), EXPORT_DISK)
    c.startup()
    c.control()
    c.data()
    c.stop()
    s["ok-full"] = c

    c = Conv(PARAMS(3) | READONLY)
    c.startup()
    c.control()
    c.data()
    c.stop()
    s["ok-readonly"] = c

    c = Conv(PARAMS(1))
    c.startup(features=["shm"])
    c.control()
    c.data(shm=True)
    c.stop()
    s["ok-shm"] = c

    c = Conv(PARAMS(1) | NO_SHM)
    c.startup(features=["shm"])
    c.control()
    c.data()
    c.stop()
    s["ok-shm-off"] = c

    c = Conv(PARAMS(1) | LIVENESS)
    c.startup(features=["memfd", "ping"])
    ids = [c.id() for _ in range(4)]
    c.op(OP_PING)
    c.send(frame(PING, c.id()))
    c.send(frame(OPEN, ids[0], FULL_CAPS, handle=3))
    c.send(frame(LIST_EXPORTS, ids[1], {"exports": []}))
    c.send(frame(DEFAULT_EXPORT, ids[2], {"name": "disk"}))
    c.send(frame(PING, ids[3]))
    c.data()
    c.stop()
    s["ok-memfd-ping"] = c

    # Replies out of order, split across chunks, several in one chunk.
    c = Conv(PARAMS(2))
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    replies = [good_reply(i, r) for i, r in reversed(reqs)]
    blob = b"".join(replies)
    c.send(blob[:7])
    c.op(OP_WAIT)
    c.send(blob[7:100])
    c.send(blob[100:])
    c.stop()
    s["ok-reordered"] = c

    # A backend that dies in the middle and comes back: the handle is
    # opened again and the requests in flight are sent again.
    c = Conv(PARAMS(1) | RESTARTS(1))
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    c.send(good_reply(reqs[0][0], reqs[0][1]))
    c.op(OP_EXIT)
    c.startup(reopen=FULL_CAPS)
    for _, r in reqs[1:]:
        c.send(good_reply(c.id(), r))
    c.stop()
    s["restart"] = c

    # The same after a hang (a request timeout).
    c = Conv(PARAMS(1) | RESTARTS(2), IGNORE_TERM)
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    c.op(OP_HUNG)
    c.startup(reopen=FULL_CAPS)
    for _, r in reqs:
        c.send(good_reply(c.id(), r))
    c.stop()
    s["hung"] = c

    # Restarts that fail, then give up (EIO for everything).
    c = Conv(RESTARTS(2) | FAIL_ERROR)
    c.startup()
    c.control()
    c.data(answer=False)
    c.op(OP_EXIT)
    c.op(OP_NOSPAWN)
    c.send(frame(HELLO, 99, {"protocol": 1}))
    s["give-up"] = c

    # Errors, as a backend may answer them.
    c = Conv(PARAMS(1))
    c.startup()
    ids = [c.id() for _ in range(4)]
    c.send(frame(OPEN, ids[0], b"no such export", status=EINVAL))
    c.send(frame(LIST_EXPORTS, ids[1], b"cannot list", status=EIO))
    c.send(frame(DEFAULT_EXPORT, ids[2], status=ESHUTDOWN))
    c.send(frame(PING, ids[3]))
    c.stop(opened=False)
    s["control-errors"] = c

    c = Conv(PARAMS(1))
    c.startup()
    c.control()
    for ident, r in c.data(answer=False):
        c.send(frame(r[0], ident, b"it failed: " + bytes([65 + ident % 26]),
                     status=[EIO, EINVAL, ENOTSUP][ident % 3],
                     offset=r[2], count=r[3]))
    c.stop()
    s["data-errors"] = c

    c = Conv(PARAMS(1))
    c.startup()
    c.control(caps={"size": SIZE, "block_size": {"minimum": 3}})
    c.stop()
    s["open-bad-block-size"] = c

    c = Conv()
    c.startup()
    c.control(caps={"can_write": True})
    c.stop()
    s["open-no-size"] = c

    c = Conv()
    c.startup()
    c.control(handle=0)
    c.stop(opened=False)
    s["open-handle-0"] = c

    # Start-up failures (the first start: the server would exit).
    for name, hello in [
            ("hello-version-2", {"protocol": 2}),
            ("hello-thread-model", {"protocol": 1, "thread_model": "x"}),
            ("hello-not-json", b"{\"protocol\": 1"),
            ("hello-array", b"[1, 2]")]:
        c = Conv(PARAMS(2))
        c.send(frame(HELLO, c.id(), hello))
        s[name] = c
    c = Conv(PARAMS(2))
    c.send(frame(HELLO, 1, {"protocol": 1}))
    c.send(frame(CONFIG, 2, b"could not parse size", status=EINVAL))
    s["config-error"] = c
    c = Conv(PARAMS(3))
    c.send(frame(HELLO, 1, {"protocol": 1, "magic_config_key": "size"}))
    c.send(frame(CONFIG, 2, {"magic_config_key": "file"}))
    c.send(frame(CONFIG, 3, {"magic_config_key": 7}))
    s["config-magic-key"] = c

    # Protocol violations, after a good start (restarts allowed).
    bad = {
        "bad-magic": b"XXXX" + frame(OPEN, 10)[4:],
        "bad-type": frame(0x7F, 10),
        "bad-id": frame(OPEN, 1234, {}),
        "bad-flags": frame(OPEN, 10, {}, flags=DISCONNECT),
        "bad-status": frame(OPEN, 10, b"x", status=4),
        "bad-payload-len": frame(OPEN, 10, length=(64 << 20) + 1),
        "ping-with-status": frame(PING, 13, status=EIO),
    }
    for name, f in bad.items():
        c = Conv(PARAMS(0) | RESTARTS(1))
        c.startup()
        c.next_id += 4          # OPEN ... PING, sent again after the restart
        c.send(f)
        c.startup()
        c.control()
        c.data()
        c.stop()
        s[name] = c

    # Bad data replies: the first data request is a PREAD of 512.
    # (a protocol error kills the backend; the others need an exit).
    bad = {
        "pread-short": (lambda i: frame(PREAD, i, b"x" * 511), False),
        "pread-zeros-unasked": (lambda i: frame(PREAD, i, flags=ZEROS),
                                False),
        "pread-shm-unasked": (lambda i: frame(PREAD, i, flags=SHM), False),
        "pread-truncated": (lambda i: frame(PREAD, i, b"x" * 100,
                                            length=512), True),
        "pread-as-pwrite": (lambda i: frame(PWRITE, i), False),
    }
    for name, (f, exits) in bad.items():
        c = Conv(RESTARTS(1))
        c.startup()
        c.control()
        reqs = c.data(answer=False)
        c.send(f(reqs[0][0]))
        if exits:
            c.op(OP_EXIT)
        c.startup(reopen=FULL_CAPS)
        for _, r in reqs:
            c.send(good_reply(c.id(), r))
        c.stop()
        s[name] = c

    c = Conv()
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    for ident, r in reqs:
        c.send(frame(r[0], ident, b"disconnect", status=ESHUTDOWN,
                     flags=DISCONNECT))
    c.stop()
    s["data-disconnect"] = c

    c = Conv()
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    for ident, r in reqs:
        if r[0] == EXTENTS:
            c.send(frame(EXTENTS, ident, b"\0" * 13))
        else:
            c.send(good_reply(ident, r))
    s["extents-13-bytes"] = c

    c = Conv()
    c.startup()
    c.control()
    reqs = c.data(answer=False)
    for ident, r in reqs:
        if r[0] == EXTENTS:
            ext = struct.pack(">QI", 0, 0) + struct.pack(">QI", 1 << 63, 7)
            c.send(frame(EXTENTS, ident, ext))
        else:
            c.send(good_reply(ident, r))
    c.stop()
    s["extents-odd"] = c

    # A reply before its request was sent, and the end mid-frame.
    c = Conv(RESTARTS(3))
    c.send(frame(HELLO, 1, {"protocol": 1}) + frame(CONFIG_COMPLETE, 2, {}))
    s["reply-too-early"] = c
    c = Conv()
    c.startup()
    c.send(frame(OPEN, 5, FULL_CAPS, handle=1)[:30])
    s["eof-mid-header"] = c
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(here, "corpus-frames")
    os.makedirs(out, exist_ok=True)
    for name, c in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(c.bytes())


if __name__ == "__main__":
    main()
