#!/usr/bin/python3
# tests/shm-driver.py: a minimal front end of the helper protocol that
# drives a real backend program over the shared-memory data path, for
# tests/shm-backend.bats.  It owns nothing the server uses: it makes the
# socketpair, starts the backend with NBDKIT_HELPER_FD, does the start-up
# sequence of docs/nbdkit-helper-protocol.pod (HELLO, ATTACH_FD, CONFIG,
# CONFIG_COMPLETE, GET_READY), opens the export and sends data requests,
# many at once, with the data inline or in slots of an arena (a sealed
# memfd, as the server makes it), checking every byte against a model.
#
#   shm-driver.py CHECK [--memfd] -- BACKEND-COMMAND... -- KEY=VALUE...
#
# CHECK is one of the names in CHECKS below.  --memfd also attaches a
# "memfd" (for the memory backend).  Exit status 0 when the check
# passed; else a message on stderr and status 1.

import fcntl
import json
import mmap
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading

HEADER = struct.Struct(">IHHQIIQII")
MAGIC = 0x4E424B48
REPLY = 0x8000
HELLO, CONFIG, CONFIG_COMPLETE, GET_READY = 1, 2, 3, 4
OPEN, CLOSE, ATTACH_FD = 8, 9, 11
PREAD, PWRITE, FLUSH = 16, 17, 18
FLAG_ZEROS, FLAG_SHM = 0x10, 0x20
EINVAL = 22

SLOT = 256 * 1024             # bytes per arena slot
IN_FLIGHT = 64                # requests sent at once
ARENA_SIZE = SLOT * IN_FLIGHT


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def make_arena(size):
    """A memfd of SIZE bytes sealed against resizing, as the server's."""
    fd = os.memfd_create("shm-driver-arena",
                         os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK |
                fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd, mmap.mmap(fd, size, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE)


class Backend:
    """One incarnation of a backend program and its channel."""

    def __init__(self, argv):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env["NBDKIT_HELPER_FD"] = str(theirs.fileno())
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     pass_fds=(theirs.fileno(),))
        theirs.close()
        self.sock = ours
        # A safety net against a hung backend, not a measurement.
        self.sock.settimeout(120)
        self.next_id = 1
        self.rbuf = bytearray()

    def frame(self, typ, payload=b"", flags=0, handle=0, offset=0, count=0):
        rid = self.next_id
        self.next_id += 1
        return rid, HEADER.pack(MAGIC, typ, flags, rid, handle, 0, offset,
                                count, len(payload)) + bytes(payload)

    def recv_exact(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(max(n - len(self.rbuf), 65536))
            if not chunk:
                raise Failed("the backend closed the channel (exit status "
                             "%s)" % self.proc.poll())
            self.rbuf += chunk
        out = bytes(self.rbuf[:n])
        del self.rbuf[:n]
        return out

    def read_reply(self):
        """(header fields, payload) of the next reply."""
        h = HEADER.unpack(self.recv_exact(HEADER.size))
        magic, typ, flags, rid, handle, status, offset, count, plen = h
        check(magic == MAGIC, "reply with bad magic 0x%x" % magic)
        check(typ & REPLY, "a frame without the reply bit")
        return h, self.recv_exact(plen)

    def call(self, typ, obj=None, fd=None, handle=0):
        """A control request; returns (status, JSON or message, handle)."""
        payload = json.dumps(obj if obj is not None else {}).encode()
        rid, data = self.frame(typ, payload, handle=handle)
        if fd is None:
            self.sock.sendall(data)
        else:
            # As the server does: the fd with the first byte, then the rest.
            self.sock.sendmsg([data[:1]], [(socket.SOL_SOCKET,
                                            socket.SCM_RIGHTS,
                                            struct.pack("i", fd))])
            self.sock.sendall(data[1:])
        h, body = self.read_reply()
        check(h[1] == typ | REPLY and h[3] == rid,
              "reply of type 0x%x id %d to request %d of type %d"
              % (h[1], h[3], rid, typ))
        if h[5]:
            return h[5], body.decode("utf-8", "replace"), h[4]
        return 0, json.loads(body) if body else {}, h[4]

    def must(self, typ, obj=None, fd=None, handle=0):
        status, result, h = self.call(typ, obj, fd, handle)
        check(status == 0, "request type %d failed with status %d: %s"
              % (typ, status, result))
        return result, h

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.sock.close()

    def stop(self):
        """Close the channel: the backend must exit 0."""
        self.sock.close()
        check(self.proc.wait(timeout=60) == 0,
              "the backend exited with status %s" % self.proc.returncode)


class Session:
    """A started backend with one export open, and a model of its data."""

    def __init__(self, argv, params, memfd=None, arena=None, attach=True,
                 model=None):
        self.b = Backend(argv)
        hello, _ = self.b.must(HELLO, {"protocol": 1, "server": "shm-driver",
                                       "server_version": "1", "name": "x",
                                       "verbose": False, "threads": 0,
                                       "debug": {}})
        self.features = hello.get("features", [])
        if memfd is not None and "memfd" in self.features:
            self.b.must(ATTACH_FD, {"purpose": "memfd"}, fd=memfd)
        self.arena_fd, self.arena = arena if arena else (None, None)
        if attach and self.arena is not None:
            self.b.must(ATTACH_FD, {"purpose": "shm",
                                    "size": len(self.arena)},
                        fd=self.arena_fd)
        for p in params:
            key, _, value = p.partition("=")
            self.b.must(CONFIG, {"key": key, "value": value})
        self.b.must(CONFIG_COMPLETE)
        self.b.must(GET_READY)
        caps, self.h = self.b.must(OPEN, {"export": "", "readonly": False,
                                          "tls": False, "client": "unix:"})
        check(self.h != 0, "OPEN replied with handle 0")
        self.size = caps["size"]
        self.can_extents = caps.get("can_extents", False)
        self.model = model if model is not None else bytearray(self.size)

    # -- pipelined data requests --

    def run(self, reqs):
        """Send REQS (dicts: op, offset, count, shm, data) all at once from
        another thread, collect the replies in whatever order they come,
        check each and update the model.  Returns the replies by index."""
        frames, by_id = [], {}
        for i, r in enumerate(reqs):
            flags, payload = 0, b""
            if r["op"] == PWRITE:
                if r["shm"] is not None:
                    self.arena[r["shm"]:r["shm"] + r["count"]] = r["data"]
                else:
                    payload = r["data"]
            if r["shm"] is not None:
                flags |= FLAG_SHM
                payload = struct.pack(">Q", r["shm"])
            flags |= r.get("flags", 0)
            rid, data = self.b.frame(r["op"], payload, flags, self.h,
                                     r["offset"], r["count"])
            frames.append(data)
            by_id[rid] = i
        errors = []

        def send():
            try:
                self.b.sock.sendall(b"".join(frames))
            except OSError as exc:
                errors.append(exc)
        t = threading.Thread(target=send)
        t.start()
        out = [None] * len(reqs)
        try:
            for _ in reqs:
                h, body = self.b.read_reply()
                rid = h[3]
                check(rid in by_id, "a reply to unknown id %d" % rid)
                i = by_id.pop(rid)
                out[i] = (h, body)
        finally:
            t.join()
        check(not errors, "sending failed: %s" % errors)
        for r, (h, body) in zip(reqs, out):
            self.verify(r, h, body)
        return out

    def verify(self, r, h, body):
        _m, typ, flags, _rid, _hd, status, _o, _c, _plen = h
        what = "%s of %d bytes at %d%s" % (
            "PREAD" if r["op"] == PREAD else "PWRITE", r["count"],
            r["offset"], " via slot %d" % r["shm"] if r["shm"] is not None
            else " inline")
        check(typ == r["op"] | REPLY, "%s: reply type 0x%x" % (what, typ))
        if r.get("expect_error"):
            check(status == r["expect_error"], "%s: status %d, expected %d"
                  % (what, status, r["expect_error"]))
            return
        check(status == 0, "%s failed: status %d: %s"
              % (what, status, body.decode("utf-8", "replace")))
        lo, hi = r["offset"], r["offset"] + r["count"]
        if r["op"] == PWRITE:
            check(flags == 0 and not body, "%s: flags or payload in the "
                  "reply" % what)
            self.model[lo:hi] = r["data"]
            return
        if flags == FLAG_ZEROS:
            check(r.get("flags", 0) & FLAG_ZEROS, "%s: unasked-for zeros"
                  % what)
            check(not body, "%s: zeros reply with a payload" % what)
            got = bytes(r["count"])
        elif flags == FLAG_SHM:
            check(r["shm"] is not None, "%s: SHM reply to an inline read"
                  % what)
            check(not body, "%s: SHM reply with a payload" % what)
            got = self.arena[r["shm"]:r["shm"] + r["count"]]
        else:
            check(flags == 0, "%s: reply flags 0x%x" % (what, flags))
            check(r["shm"] is None, "%s: inline reply to a slot read (allowed,"
                  " but this library always fills the slot)" % what)
            got = body
        check(len(got) == r["count"], "%s: %d bytes back" % (what, len(got)))
        check(got == self.model[lo:hi], "%s: the data differs" % what)

    def mixed_round(self, rng, ops=(PREAD, PWRITE), shm_share=0.5,
                    max_count=SLOT):
        """IN_FLIGHT requests on disjoint regions, a random mix of reads and
        writes, in slots and inline, of random lengths and alignments."""
        region = self.size // IN_FLIGHT
        reqs = []
        for k in range(IN_FLIGHT):
            count = rng.randint(1, min(max_count, region))
            offset = k * region + rng.randint(0, region - count)
            op = rng.choice(ops)
            shm = k * SLOT if rng.random() < shm_share else None
            r = {"op": op, "offset": offset, "count": count, "shm": shm}
            if op == PWRITE:
                r["data"] = rng.randbytes(count)
            elif shm is not None:
                # Garbage in the slot: the backend must overwrite it all.
                self.arena[shm:shm + count] = b"\xa5" * count
            reqs.append(r)
        self.run(reqs)

    def read_all_back(self, shm_share=0.5, rng=None):
        """Read the whole disk, in slots and inline, against the model."""
        rng = rng or random.Random(1)
        pos = 0
        while pos < self.size:
            reqs = []
            for k in range(IN_FLIGHT):
                if pos >= self.size:
                    break
                count = min(SLOT, self.size - pos)
                shm = k * SLOT if rng.random() < shm_share else None
                reqs.append({"op": PREAD, "offset": pos, "count": count,
                             "shm": shm})
                pos += count
            self.run(reqs)


# ---- the checks ----

def c_hello(argv, params, opts):
    """HELLO lists "shm" among the features."""
    b = Backend(argv)
    hello, _ = b.must(HELLO, {"protocol": 1, "server": "shm-driver",
                              "verbose": False, "threads": 0, "debug": {}})
    check("shm" in hello.get("features", []),
          "\"shm\" is not among the features %r" % hello.get("features"))
    b.stop()


def c_roundtrip(argv, params, opts):
    """Pipelined reads and writes in slots and inline match a model."""
    rng = random.Random(4242)
    s = Session(argv, params, opts.get("memfd"), make_arena(ARENA_SIZE))
    for _ in range(12):
        s.mixed_round(rng)
    # Only slots, only inline.
    s.mixed_round(rng, shm_share=1.0)
    s.mixed_round(rng, shm_share=0.0)
    s.read_all_back(rng=rng)
    s.b.stop()


def c_zeros(argv, params, opts):
    """A slot read that welcomes zeros of an unwritten range is answered
    with zeros, or with the slot filled with zeros."""
    s = Session(argv, params, opts.get("memfd"), make_arena(ARENA_SIZE))
    s.arena[0:SLOT] = b"\xff" * SLOT
    s.run([{"op": PREAD, "offset": 0, "count": SLOT, "shm": 0,
            "flags": FLAG_ZEROS if s.can_extents else 0}])
    s.b.stop()


def c_large(argv, params, opts):
    """Writes and reads of 8 MiB, inline and in one big slot."""
    big = 8 << 20
    rng = random.Random(7)
    s = Session(argv, params, opts.get("memfd"), make_arena(big))
    check(s.size >= 2 * big, "the disk is too small for this check")
    a, b = rng.randbytes(big), rng.randbytes(big)
    s.run([{"op": PWRITE, "offset": 0, "count": big, "shm": None, "data": a},
           {"op": PWRITE, "offset": big, "count": big, "shm": 0, "data": b}])
    s.run([{"op": PREAD, "offset": 0, "count": big, "shm": 0}])
    s.run([{"op": PREAD, "offset": big, "count": big, "shm": None}])
    s.b.stop()


def c_flood(argv, params, opts):
    """Thousands of small requests written in one go are each answered
    exactly once, with the right data."""
    rng = random.Random(99)
    s = Session(argv, params, opts.get("memfd"), make_arena(ARENA_SIZE))
    n = 2000
    size = 512
    check(s.size >= n * size, "the disk is too small for this check")
    writes = [{"op": PWRITE, "offset": i * size, "count": size,
               "shm": (i % IN_FLIGHT) * SLOT if i % 2 else None,
               "data": rng.randbytes(size)} for i in range(n)]
    # Slots are shared by several writes here: give each its own.
    for i, w in enumerate(writes):
        if w["shm"] is not None:
            w["shm"] = i * size
    s.run(writes)
    reads = [{"op": PREAD, "offset": i * size, "count": size,
              "shm": i * size if i % 3 == 0 else None} for i in range(n)]
    s.run(reads)
    s.b.stop()


def c_outside(argv, params, opts):
    """A slot outside the arena gets EINVAL, and nothing is changed."""
    s = Session(argv, params, opts.get("memfd"), make_arena(ARENA_SIZE))
    data = os.urandom(4096)
    s.run([{"op": PWRITE, "offset": 0, "count": 4096, "shm": None,
            "data": data}])
    bad = [ARENA_SIZE - 100, ARENA_SIZE, ARENA_SIZE + 4096, 2**64 - 1,
           2**64 - 4096]
    _run_errors(s, [{"op": op, "offset": 0, "count": 4096, "shm": off}
                    for off in bad for op in (PREAD, PWRITE)])
    # The last byte of the arena is a valid slot of one byte.
    s.arena[ARENA_SIZE - 1:ARENA_SIZE] = b"Z"
    s.run([{"op": PWRITE, "offset": 5, "count": 1, "shm": ARENA_SIZE - 1,
            "data": b"Z"}])
    s.run([{"op": PREAD, "offset": 0, "count": 4096, "shm": 0}])
    s.b.stop()


def _run_errors(s, reqs):
    """Send requests whose slot is invalid (no arena write on our side)."""
    frames, by_id = [], {}
    for i, r in enumerate(reqs):
        rid, data = s.b.frame(r["op"], struct.pack(">Q", r["shm"]),
                              FLAG_SHM, s.h, r["offset"], r["count"])
        frames.append(data)
        by_id[rid] = i
    s.b.sock.sendall(b"".join(frames))
    for _ in reqs:
        h, body = s.b.read_reply()
        r = reqs[by_id.pop(h[3])]
        check(h[5] == EINVAL, "a slot at %d: status %d, expected EINVAL (%s)"
              % (r["shm"], h[5], body))
        check(b"outside the arena" in body,
              "the EINVAL message does not say why: %r" % body)


def c_no_arena(argv, params, opts):
    """A slot request without an attached arena gets EINVAL."""
    s = Session(argv, params, opts.get("memfd"), None)
    frames = []
    for op in (PREAD, PWRITE):
        _rid, data = s.b.frame(op, struct.pack(">Q", 0), FLAG_SHM, s.h, 0,
                               512)
        frames.append(data)
    s.b.sock.sendall(b"".join(frames))
    for _ in frames:
        h, body = s.b.read_reply()
        check(h[5] == EINVAL, "status %d, expected EINVAL" % h[5])
        check(b"no arena" in body, "unexpected message %r" % body)
    # Inline still works.
    s.arena = None
    s.run([{"op": PWRITE, "offset": 0, "count": 3, "shm": None,
            "data": b"abc"}])
    s.run([{"op": PREAD, "offset": 0, "count": 3, "shm": None}])
    s.b.stop()


def c_bad_attach(argv, params, opts):
    """An arena larger than its file is refused with EINVAL."""
    b = Backend(argv)
    b.must(HELLO, {"protocol": 1, "verbose": False, "threads": 0,
                   "debug": {}})
    fd, _mm = make_arena(4096)
    status, msg, _ = b.call(ATTACH_FD, {"purpose": "shm", "size": 8192},
                            fd=fd)
    check(status == EINVAL, "status %d, expected EINVAL" % status)
    check("larger than the file" in msg, "unexpected message %r" % msg)
    status, msg, _ = b.call(ATTACH_FD, {"purpose": "shm"}, fd=fd)
    check(status == EINVAL and "size" in msg,
          "an arena without size: status %d: %r" % (status, msg))
    status, msg, _ = b.call(ATTACH_FD, {"purpose": "shm", "size": 4096})
    check(status == EINVAL, "ATTACH_FD without a descriptor: status %d"
          % status)
    b.stop()


def c_reattach(argv, params, opts):
    """A second ATTACH_FD "shm" replaces the first arena."""
    first = make_arena(ARENA_SIZE)
    second = make_arena(ARENA_SIZE)
    first[1][0:4096] = b"1" * 4096
    second[1][0:4096] = b"2" * 4096
    b = Backend(argv)
    b.must(HELLO, {"protocol": 1, "verbose": False, "threads": 0,
                   "debug": {}})
    b.must(ATTACH_FD, {"purpose": "shm", "size": ARENA_SIZE}, fd=first[0])
    b.sock.close()
    b.proc.wait()
    s = Session(argv, params, opts.get("memfd"), first)
    # Re-attach on the running session (sent when nothing is in flight).
    s.b.must(ATTACH_FD, {"purpose": "shm", "size": ARENA_SIZE},
             fd=second[0])
    s.arena_fd, s.arena = second
    s.run([{"op": PWRITE, "offset": 0, "count": 4096, "shm": 0,
            "data": b"2" * 4096}])
    check(first[1][0:4096] == b"1" * 4096, "the old arena was written")
    s.run([{"op": PREAD, "offset": 0, "count": 4096, "shm": 4096}])
    s.b.stop()


def c_restart(argv, params, opts):
    """What one incarnation wrote through slots, a second one started
    with the same memfd and arena after kill -9 reads back."""
    rng = random.Random(31337)
    memfd = os.memfd_create("shm-driver-memfd", os.MFD_CLOEXEC)
    arena = make_arena(ARENA_SIZE)
    s = Session(argv, params, memfd, arena)
    check("memfd" in s.features, "this check needs a memfd backend")
    for _ in range(4):
        s.mixed_round(rng, ops=(PWRITE,), shm_share=0.75)
    model = s.model
    s.b.kill()
    s2 = Session(argv, params, memfd, arena, model=model)
    s2.read_all_back(rng=rng)
    s2.mixed_round(rng)
    s2.b.stop()


def c_readonly_v1(argv, params, opts):
    """Slot reads from tests/python/readonly-v1.py (pread returns the
    data, API_VERSION 1) match its pattern; a slot write gets EPERM."""
    s = Session(argv, params, None, make_arena(ARENA_SIZE))
    s.model = bytearray((o // 512) & 0xff for o in range(s.size))
    s.read_all_back(shm_share=0.75)
    _rid, data = s.b.frame(PWRITE, struct.pack(">Q", 0), FLAG_SHM, s.h, 0,
                           512)
    s.b.sock.sendall(data)
    h, body = s.b.read_reply()
    check(h[5] == 1, "a slot write on a read-only export: status %d, "
          "expected EPERM" % h[5])
    s.b.stop()


CHECKS = {
    "readonly-v1": c_readonly_v1,
    "hello": c_hello, "roundtrip": c_roundtrip, "zeros": c_zeros,
    "large": c_large, "flood": c_flood, "outside": c_outside,
    "no-arena": c_no_arena, "bad-attach": c_bad_attach,
    "reattach": c_reattach, "restart": c_restart,
}


def main(args):
    if len(args) < 3 or args[0] not in CHECKS or "--" not in args:
        sys.stderr.write("usage: shm-driver.py CHECK [--memfd] -- BACKEND... "
                         "[-- KEY=VALUE...]\nchecks: %s\n"
                         % " ".join(sorted(CHECKS)))
        return 2
    name, rest = args[0], args[1:]
    opts = {}
    i = rest.index("--")
    for o in rest[:i]:
        if o == "--memfd":
            opts["memfd"] = os.memfd_create("shm-driver-memfd",
                                            os.MFD_CLOEXEC)
        else:
            sys.stderr.write("unknown option %s\n" % o)
            return 2
    rest = rest[i + 1:]
    if "--" in rest:
        j = rest.index("--")
        argv, params = rest[:j], rest[j + 1:]
    else:
        argv, params = rest, []
    try:
        CHECKS[name](argv, params, opts)
    except (Failed, OSError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write("shm-driver %s: FAILED: %s\n" % (name, exc))
        return 1
    print("shm-driver %s: ok" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
