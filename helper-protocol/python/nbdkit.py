# nbdkit: the helper protocol in pure Python, for nbdkit-python-backend.
#
# This module owns two things:
#
#  * the backend side of the helper protocol (docs/nbdkit-helper-protocol.pod):
#    the frame codec, one dispatch on the message type, and the replies;
#  * the "nbdkit" module that plugin scripts written for nbdkit's python
#    plugin import (debug, set_error, parse_size, the FLAG_* constants ...),
#    so that those scripts run unchanged.
#
# It uses the standard library only.  Requests are served one at a time,
# in the order they arrive (thread model serialize_all_requests): a script
# never sees two callbacks at once.  The channel is read through a buffer
# (many frames per recvmsg), and replies are collected and sent together
# when no more requests are waiting.  It offers the shared-memory data
# path ("shm"): a PREAD or PWRITE may name a slot of an arena that the
# server shares, and the script then reads from or writes into the arena
# directly.  Nothing here writes to standard output, which is /dev/null;
# diagnostics go to standard error, which the server logs.

import errno as _errno
import io as _io
import json as _json
import mmap as _mmap
import os as _os
import signal as _signal
import socket as _socket
import struct as _struct
import sys as _sys
import traceback as _traceback
import types as _types

# ---- the API of nbdkit's python plugin (what scripts use) ----

# Thread models (as returned by a script's thread_model()).
THREAD_MODEL_SERIALIZE_CONNECTIONS = 0
THREAD_MODEL_SERIALIZE_ALL_REQUESTS = 1
THREAD_MODEL_SERIALIZE_REQUESTS = 2
THREAD_MODEL_PARALLEL = 3

# Flags passed to pwrite, trim, zero, extents (API_VERSION 2).
FLAG_MAY_TRIM = 1 << 0
FLAG_FUA = 1 << 1
FLAG_REQ_ONE = 1 << 2
FLAG_FAST_ZERO = 1 << 3

# Return values of can_fua and can_cache.
FUA_NONE = 0
FUA_EMULATE = 1
FUA_NATIVE = 2
CACHE_NONE = 0
CACHE_EMULATE = 1
CACHE_NATIVE = 2

# Extent types (bits), in the tuples that extents returns.
EXTENT_HOLE = 1 << 0
EXTENT_ZERO = 1 << 1


def debug(msg):
    """Print a debug message in the server log (only with nbdkit -v)."""
    if _state.verbose:
        _log("debug: %s" % (msg,))


def set_error(err):
    """Record ERR (an errno value) as the error of the exception that the
    callback is about to raise; the client receives it."""
    _state.err = int(err)


def export_name():
    """The export name the client asked for (in open and later)."""
    return _state.export_name


def is_tls():
    """True if the client of the current connection negotiated TLS."""
    return _state.tls


_SIZE_SUFFIXES = "bkmgtpe"


def parse_size(s):
    """Parse a size such as '1G' or '512' into a number of bytes."""
    text = str(s).strip()
    digits = text.rstrip("bBkKmMgGtTpPeE")
    suffix = text[len(digits):]
    if not digits.isdigit():
        raise ValueError("%r: not a size: use a number of bytes with an "
                         "optional suffix b, k, M, G, T, P or E (e.g. 1G)"
                         % (s,))
    if len(suffix) > 1:
        raise ValueError("%r: unknown size suffix %r (use b, k, M, G, T, P "
                         "or E)" % (s, suffix))
    shift = 10 * _SIZE_SUFFIXES.index(suffix.lower()) if suffix else 0
    value = int(digits) << shift
    if value > 2**63 - 1:
        raise ValueError("%r: too large (the largest size is 2^63-1 bytes, "
                         "just under 8E)" % (s,))
    return value


def parse_bool(s):
    """Parse a boolean such as 'on', 'yes', '1', 'false'."""
    v = str(s).strip().lower()
    if v in ("1", "true", "t", "yes", "y", "on"):
        return True
    if v in ("0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError("%r: not a boolean: use true/false, yes/no, on/off "
                     "or 1/0" % (s,))


def shutdown():
    """Ask for the backend to stop: this backend cannot stop the server,
    so it only logs the request."""
    _log("shutdown requested by the script (the server keeps running; "
         "stop it with SIGTERM)")


def disconnect(force=False):
    """Not available over the helper protocol: logged and ignored."""
    debug("disconnect(force=%r) requested by the script: ignored" % (force,))


# ---- the wire format ----

_MAGIC = 0x4E424B48
_HEADER = _struct.Struct(">IHHQIIQII")
_HEADER_SIZE = 40
_REPLY = 0x8000
_MAX_PAYLOAD = 64 * 1024 * 1024
_MAX_DATA = 32 * 1024 * 1024
_PROTOCOL_VERSION = 1

HELLO, CONFIG, CONFIG_COMPLETE, GET_READY, DUMP = 1, 2, 3, 4, 5
LIST_EXPORTS, DEFAULT_EXPORT, OPEN, CLOSE, SHUTDOWN, ATTACH_FD = \
    6, 7, 8, 9, 10, 11
PING = 12
PREAD, PWRITE, FLUSH, TRIM, ZERO, CACHE, EXTENTS = \
    16, 17, 18, 19, 20, 21, 22

_HP_FUA, _HP_MAY_TRIM, _HP_FAST_ZERO, _HP_REQ_ONE, _HP_ZEROS, _HP_SHM = \
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20
_ALLOWED_FLAGS = {
    PWRITE: _HP_FUA | _HP_SHM, TRIM: _HP_FUA,
    ZERO: _HP_FUA | _HP_MAY_TRIM | _HP_FAST_ZERO,
    EXTENTS: _HP_REQ_ONE, PREAD: _HP_ZEROS | _HP_SHM,
}
_SHM_REF = _struct.Struct(">Q")      # payload of a request with _HP_SHM
_CONTROL = range(HELLO, ATTACH_FD + 1)
_DATA = range(PREAD, EXTENTS + 1)

# Portable error codes (those of NBD) and the host errnos that map to them.
_EPERM, _EIO, _ENOMEM, _EINVAL, _ENOSPC, _EOVERFLOW, _ENOTSUP, \
    _ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108
_WIRE_ERROR = {
    _errno.EPERM: _EPERM, _errno.EROFS: _EPERM, _errno.EIO: _EIO,
    _errno.ENOMEM: _ENOMEM, _errno.EINVAL: _EINVAL, _errno.ENOSPC: _ENOSPC,
    _errno.EDQUOT: _ENOSPC, _errno.EFBIG: _ENOSPC,
    _errno.EOVERFLOW: _EOVERFLOW, _errno.ENOTSUP: _ENOTSUP,
    _errno.EOPNOTSUPP: _ENOTSUP, _errno.ESHUTDOWN: _ESHUTDOWN,
}

_FUA_NAMES = {FUA_NONE: "none", FUA_EMULATE: "emulate", FUA_NATIVE: "native"}


def _log(line):
    try:
        _sys.stderr.write(line.rstrip("\n") + "\n")
        _sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _Violation(Exception):
    """A frame from the front end that breaks the protocol."""


class _Failure(Exception):
    """A request that fails with an error code and a message."""

    def __init__(self, code, msg):
        Exception.__init__(self, msg)
        self.code = code
        self.msg = msg


class _State:
    verbose = False
    err = 0               # set by set_error during a callback
    export_name = ""
    tls = False


_state = _State()


# Reading: the buffer, and when a payload is read straight into its own
# buffer instead.  Writing: replies are sent once no whole request is
# waiting in the buffer, or once this many bytes are waiting to go.
_RBUF_SIZE = 256 * 1024
_DIRECT_READ = 64 * 1024
_FLUSH_AT = 1024 * 1024
_MAX_FDS = 4
_IOV_MAX = 1024


class _Channel:
    """Reading and writing whole frames on the channel."""

    def __init__(self, fd):
        self.sock = _socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self.buf = bytearray(_RBUF_SIZE)
        self.view = memoryview(self.buf)
        self.start = self.end = 0   # unread bytes are buf[start:end]
        self.pos = 0                # bytes received on the channel so far
        self.fds = []               # [(stream position, fd)] not yet taken
        self.frame_start = self.frame_end = 0
        self.out = []               # replies not yet sent
        self.out_len = 0
        self.ancsize = _socket.CMSG_SPACE(_MAX_FDS * 4)

    def _recv_into(self, view):
        """One recvmsg into VIEW; keep the descriptors that come with it,
        noting the stream position of the last byte read (the kernel ends
        a read after the bytes that carry descriptors).  Returns the
        number of bytes, 0 at EOF."""
        self.flush()                # about to block: send what is ready
        n, anc, _flags, _addr = self.sock.recvmsg_into(
            [view], self.ancsize, getattr(_socket, "MSG_CMSG_CLOEXEC", 0))
        for level, typ, data in anc:
            if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                for (fd,) in _struct.iter_unpack("=i", data[:usable]):
                    if len(self.fds) < _MAX_FDS:
                        self.fds.append((self.pos + n - 1, fd))
                    else:
                        _os.close(fd)
        self.pos += n
        return n

    def _fill(self, want):
        """Make at least WANT bytes available in the buffer; False at EOF."""
        while self.end - self.start < want:
            if self.start:
                left = self.end - self.start
                self.buf[:left] = self.view[self.start:self.end]
                self.start, self.end = 0, left
            n = self._recv_into(self.view[self.end:])
            if n == 0:
                return False
            self.end += n
        return True

    def _read_payload(self, n):
        """Exactly N bytes, as a bytearray."""
        out = bytearray(n)
        oview = memoryview(out)
        take = min(n, self.end - self.start)
        oview[:take] = self.view[self.start:self.start + take]
        self.start += take
        got = take
        while got < n:              # the buffer is empty here
            if n - got >= _DIRECT_READ:
                r = self._recv_into(oview[got:])
            else:
                self.start = self.end = 0
                r = self._recv_into(self.view)
                self.end = r
                r = min(r, n - got)
                oview[got:got + r] = self.view[:r]
                self.start = r
            if r == 0:
                raise _Violation("the channel ended in the middle of a frame")
            got += r
        return out

    def take_fd(self):
        """The descriptor that came with the frame just read, or None.
        Descriptors that came before it belong to no ATTACH_FD: closed."""
        fd, keep = None, []
        for pos, f in self.fds:
            if pos < self.frame_start:
                _os.close(f)
            elif fd is None and pos < self.frame_end:
                fd = f
            else:
                keep.append((pos, f))
        self.fds = keep
        return fd

    def read_frame(self):
        """The next request as (header tuple, payload), or None at EOF."""
        if not self._fill(_HEADER_SIZE):
            if self.end != self.start:
                raise _Violation("the channel ended in the middle of a frame")
            return None
        self.frame_start = self.pos - (self.end - self.start)
        hdr = _HEADER.unpack_from(self.buf, self.start)
        self.start += _HEADER_SIZE
        magic, typ, flags, _id, handle, status, offset, count, plen = hdr
        if magic != _MAGIC:
            raise _Violation("bad magic 0x%08x" % magic)
        if typ & _REPLY:
            raise _Violation("a reply (type 0x%04x) from the front end" % typ)
        if typ not in _CONTROL and typ not in _DATA and typ != PING:
            raise _Violation("unknown message type %d" % typ)
        if typ == PING and (plen or handle or offset or count):
            raise _Violation("PING with a payload, handle, offset or count")
        if flags & ~_ALLOWED_FLAGS.get(typ, 0):
            raise _Violation("flags 0x%04x not allowed on type %d"
                             % (flags, typ))
        if status != 0:
            raise _Violation("a request with status %d" % status)
        if plen > _MAX_PAYLOAD:
            raise _Violation("payload of %d bytes is over the limit" % plen)
        if offset > 2**63 - 1 or offset + count > 2**63 - 1:
            raise _Violation("offset %d + count %d is out of range"
                             % (offset, count))
        if typ in (PREAD, PWRITE) and count > _MAX_DATA:
            raise _Violation("count %d is over 32 MiB" % count)
        if flags & _HP_SHM:
            if plen != _SHM_REF.size:
                raise _Violation("a shared-memory request with a payload of "
                                 "%d bytes, not a slot offset" % plen)
        elif typ == PWRITE and plen != count:
            raise _Violation("PWRITE payload of %d bytes for count %d"
                             % (plen, count))
        elif typ in _DATA and typ != PWRITE and plen != 0:
            raise _Violation("a payload on data request type %d" % typ)
        if typ == FLUSH and (offset or count):
            raise _Violation("FLUSH with a non-zero offset or count")
        self.frame_end = self.frame_start + _HEADER_SIZE + plen
        if not plen:
            return hdr, bytearray()
        if self.end - self.start >= plen:
            payload = self.buf[self.start:self.start + plen]
            self.start += plen
            return hdr, payload
        return hdr, self._read_payload(plen)

    def reply(self, hdr, status=0, payload=b"", handle=0, flags=0):
        """Queue a reply; it is sent by flush, before the next read that
        would wait.  PAYLOAD must not change until then."""
        _magic, typ, _flags, rid, _h, _s, offset, count, _p = hdr
        plen = len(payload)
        self.out.append(_HEADER.pack(_MAGIC, typ | _REPLY, flags, rid, handle,
                                     status, offset, count, plen))
        if plen:
            self.out.append(payload)
        self.out_len += _HEADER_SIZE + plen
        if self.out_len >= _FLUSH_AT:
            self.flush()

    def flush(self):
        """Send every queued reply, with as few sendmsg calls as can be."""
        out = self.out
        i = 0
        while i < len(out):
            sent = self.sock.sendmsg(out[i:i + _IOV_MAX])
            while i < len(out) and sent >= len(out[i]):
                sent -= len(out[i])
                i += 1
            if sent:
                out[i] = memoryview(out[i])[sent:]
        self.out = []
        self.out_len = 0


# ---- the script and its callbacks ----

class _Script:
    """The loaded plugin script: a module named __main__, as in nbdkit."""

    def __init__(self, path):
        self.path = path
        self.module = None
        self.api_version = 1

    def load(self):
        with open(self.path, "rb") as f:
            source = f.read()
        code = compile(source, self.path, "exec")
        module = _types.ModuleType("__main__")
        module.__file__ = self.path
        module.__builtins__ = __builtins__
        _sys.modules["__main__"] = module
        self.module = module
        exec(code, module.__dict__)
        v = getattr(module, "API_VERSION", None)
        if v is None and callable(getattr(module, "api_version", None)):
            v = module.api_version()
        v = 1 if v is None else v
        if v not in (1, 2):
            raise _Failure(_EINVAL, "%s: API_VERSION %r is not supported "
                           "(use 1 or 2)" % (self.path, v))
        self.api_version = v

    def fn(self, name):
        f = getattr(self.module, name, None) if self.module else None
        return f if callable(f) else None

    def has(self, name):
        return self.fn(name) is not None


def _errno_of(exc):
    """The host errno an exception stands for: set_error's, else an
    OSError's, else 0."""
    if _state.err:
        return _state.err
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return 0


def _summary(exc):
    """An exception on one line: 'Type: message', or for a syntax error
    'FILE, line N: SyntaxError: message'."""
    if isinstance(exc, SyntaxError):
        return "%s, line %s: %s: %s" % (exc.filename, exc.lineno,
                                          type(exc).__name__, exc.msg)
    lines = _traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__


def _log_traceback(exc, skip=1):
    """The traceback of EXC in the log, without the first SKIP frames
    (those of this module), indented under the error line."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    if tb is None or isinstance(exc, SyntaxError):
        lines = _traceback.format_exception_only(type(exc), exc)
    else:
        lines = _traceback.format_exception(type(exc), exc, tb)
    for line in "".join(lines).rstrip("\n").split("\n"):
        _log("  " + line)


def _call(where, f, *args, default_error=_EIO):
    """Run a script callback; turn an exception into a _Failure carrying
    the error code, and log it with its traceback."""
    _state.err = 0
    try:
        return f(*args)
    except _Failure:
        raise
    except Exception as exc:
        host = _errno_of(exc)
        code = _WIRE_ERROR.get(host, _EIO) if host else default_error
        msg = "%s: %s" % (where, _summary(exc))
        _log("error: " + msg)
        _log_traceback(exc)
        fail = _Failure(code, msg)
        fail.host_errno = host
        raise fail


class _Handle:
    def __init__(self, h, export, tls, readonly):
        self.h = h
        self.export = export
        self.tls = tls
        self.readonly = readonly


class _Backend:
    """One incarnation of the backend: its state and one handler per
    message type."""

    CALLBACKS = ["load", "unload", "config", "config_complete",
                 "thread_model", "get_ready", "after_fork", "cleanup",
                 "dump_plugin", "list_exports", "default_export",
                 "preconnect", "open", "close", "get_size",
                 "export_description", "block_size", "can_write",
                 "can_flush", "is_rotational", "can_trim", "can_zero",
                 "can_fast_zero", "can_extents", "can_fua",
                 "can_multi_conn", "can_cache", "pread", "pwrite", "flush",
                 "trim", "zero", "cache", "extents"]

    def __init__(self, channel, version):
        self.ch = channel
        self.version = version
        self.script = None
        self.handles = {}
        self.next_handle = 1
        self.thread_model = THREAD_MODEL_SERIALIZE_ALL_REQUESTS
        self.arena = None           # the shared-memory arena (mmap)
        self.arena_view = None      # memoryview of all of it
        self.ops = {
            HELLO: self.op_hello, CONFIG: self.op_config,
            CONFIG_COMPLETE: self.op_config_complete,
            GET_READY: self.op_get_ready, DUMP: self.op_dump,
            LIST_EXPORTS: self.op_list_exports,
            DEFAULT_EXPORT: self.op_default_export, OPEN: self.op_open,
            CLOSE: self.op_close, SHUTDOWN: self.op_shutdown,
            ATTACH_FD: self.op_attach_fd,
            PREAD: self.op_pread, PWRITE: self.op_pwrite,
            FLUSH: self.op_flush, TRIM: self.op_trim, ZERO: self.op_zero,
            CACHE: self.op_cache, EXTENTS: self.op_extents,
        }

    # -- the loop --

    def run(self):
        while True:
            frame = self.ch.read_frame()
            if frame is None:
                self.finish()
                return 0
            hdr, payload = frame
            typ = hdr[1]
            if typ == PING:
                # Answered as soon as read.  Requests run here, one at a
                # time, so none is read during a callback: this backend
                # does not offer "ping" (the front end never sends it),
                # but answers one all the same.
                self.ch.reply(hdr)
                self.ch.flush()
                continue
            req = None
            if typ in _CONTROL:
                try:
                    req = _json.loads(bytes(payload).decode("utf-8")) \
                        if payload else {}
                except (ValueError, UnicodeDecodeError):
                    req = None
                if not isinstance(req, dict):
                    raise _Violation("the payload of control message %d is "
                                     "not a JSON object" % typ)
            try:
                self.ops[typ](hdr, req if req is not None else payload)
            except _Failure as f:
                self.ch.reply(hdr, f.code, f.msg.encode("utf-8", "replace"))
            if typ == SHUTDOWN:
                self.ch.flush()
                self.finish()
                return 0

    def reply_json(self, hdr, obj, handle=0):
        self.ch.reply(hdr, 0, _json.dumps(obj).encode("utf-8"), handle)

    def finish(self):
        """End of the channel: close every handle, then unload."""
        for hid in list(self.handles):
            self.close_handle(hid)
        for name in ("cleanup", "unload"):
            if self.script and self.script.has(name):
                try:
                    _call(name, self.script.fn(name))
                except _Failure:
                    pass

    # -- start-up --

    def op_hello(self, hdr, req):
        if req.get("protocol") != _PROTOCOL_VERSION:
            raise _Failure(_EINVAL, "this backend speaks helper protocol "
                           "version %d only" % _PROTOCOL_VERSION)
        _state.verbose = req.get("verbose") is True
        self.reply_json(hdr, {
            "protocol": _PROTOCOL_VERSION,
            "name": "python",
            "version": self.version,
            "longname": "nbdkit python backend",
            "description": "Serve a disk from a Python script written for "
                           "nbdkit's python plugin (API_VERSION 1 or 2).",
            "thread_model": "serialize_all_requests",
            "magic_config_key": "script",
            "config_help":
                "script=<FILENAME>     (required) The Python script to run.\n"
                "[other arguments may be used by the script]",
            "features": ["shm"],
            "callbacks": self.CALLBACKS,
        })

    def op_config(self, hdr, req):
        key, value = req.get("key"), req.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            raise _Failure(_EINVAL, "CONFIG without a key and a value")
        if key == "script" and self.script is None:
            self.load_script(value)
        elif self.script is None:
            raise _Failure(_EINVAL, "'%s=%s': the first parameter must be "
                           "the script (nbdkit python /path/to/plugin.py "
                           "[key=value ...])" % (key, value))
        elif self.script.has("config"):
            _call("config", self.script.fn("config"), key, value,
                  default_error=_EINVAL)
        elif key == "script":
            raise _Failure(_EINVAL, "script=%s: a script is already loaded "
                           "(%s); give only one" % (value, self.script.path))
        else:
            raise _Failure(_EINVAL, "'%s=%s': %s takes no parameters (it has "
                           "no config function)"
                           % (key, value, self.script.path))
        self.reply_json(hdr, {})

    def load_script(self, path):
        if not path:
            raise _Failure(_EINVAL, "script=: give the path of a Python "
                           "script")
        path = _os.path.abspath(path)
        script = _Script(path)
        try:
            script.load()
        except _Failure:
            raise
        except OSError as exc:
            raise _Failure(_EINVAL, "script=%s: cannot read the script: %s"
                           % (path, exc.strerror or exc))
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                msg = "the script called exit(%s) while loading" % (exc.code,)
            elif isinstance(exc, SyntaxError) and exc.filename == path:
                msg = "line %s: SyntaxError: %s" % (exc.lineno, exc.msg)
            else:
                msg = _summary(exc)
            _log("error: %s: %s" % (path, msg))
            _log_traceback(exc, skip=2)
            raise _Failure(_EINVAL, "script=%s: cannot load the script: %s"
                           % (path, msg))
        self.script = script
        if script.has("load"):
            _call("load", script.fn("load"), default_error=_EINVAL)

    def op_config_complete(self, hdr, req):
        s = self.script
        if s is None:
            raise _Failure(_EINVAL, "no script given: use nbdkit python "
                           "/path/to/plugin.py [key=value ...]")
        missing = [n for n in ("open", "get_size", "pread") if not s.has(n)]
        if missing:
            raise _Failure(_EINVAL, "%s: the script has no %s function%s "
                           "(open, get_size and pread are required)"
                           % (s.path, " or ".join(missing),
                              "s" if len(missing) > 1 else ""))
        if s.has("config_complete"):
            _call("config_complete", s.fn("config_complete"),
                  default_error=_EINVAL)
        if s.has("thread_model"):
            m = _call("thread_model", s.fn("thread_model"),
                      default_error=_EINVAL)
            if m not in (0, 1, 2, 3):
                raise _Failure(_EINVAL, "thread_model returned %r: use one "
                               "of the nbdkit.THREAD_MODEL_* constants"
                               % (m,))
            self.thread_model = m
        self.reply_json(hdr, {})

    def op_get_ready(self, hdr, req):
        for name in ("get_ready", "after_fork"):
            if self.script and self.script.has(name):
                _call(name, self.script.fn(name), default_error=_EINVAL)
        names = ["serialize_connections", "serialize_all_requests",
                 "serialize_all_requests", "serialize_all_requests"]
        self.reply_json(hdr, {"thread_model": names[self.thread_model]})

    def op_attach_fd(self, hdr, req):
        fd = self.ch.take_fd()
        if fd is None:
            raise _Failure(_EINVAL, "ATTACH_FD without a file descriptor")
        if req.get("purpose") != "shm":
            _os.close(fd)               # not asked for: ignored
            self.reply_json(hdr, {})
            return
        try:
            self.attach_arena(fd, req.get("size"))
        finally:
            _os.close(fd)               # the mapping keeps the file
        self.reply_json(hdr, {})

    def attach_arena(self, fd, size):
        """Map the shared-memory arena, replacing any earlier one.  On
        failure there is no arena: requests naming a slot get EINVAL."""
        self.drop_arena()
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise _Failure(_EINVAL, "ATTACH_FD \"shm\" needs the arena's "
                           "size as a positive integer \"size\" (got %r)"
                           % (size,))
        try:
            fsize = _os.fstat(fd).st_size
            if fsize < size:
                raise _Failure(_EINVAL, "ATTACH_FD \"shm\": the arena of %d "
                               "bytes is larger than the file passed (%d "
                               "bytes)" % (size, fsize))
            self.arena = _mmap.mmap(fd, size, _mmap.MAP_SHARED,
                                    _mmap.PROT_READ | _mmap.PROT_WRITE)
        except (OSError, ValueError, OverflowError) as exc:
            code = _WIRE_ERROR.get(getattr(exc, "errno", 0) or 0, _EINVAL)
            raise _Failure(code, "ATTACH_FD \"shm\": cannot map the arena "
                           "of %d bytes: %s" % (size, exc))
        self.arena_view = memoryview(self.arena)

    def drop_arena(self):
        if self.arena_view is not None:
            try:
                self.arena_view.release()
            except BufferError:
                pass                    # a script kept a slot: left to GC
        if self.arena is not None:
            try:
                self.arena.close()
            except BufferError:
                pass
        self.arena = self.arena_view = None

    def slot(self, hdr, payload):
        """The arena slot a request with _HP_SHM names, as a memoryview
        of count bytes."""
        (off,) = _SHM_REF.unpack(payload)
        count = hdr[7]
        name = "pread" if hdr[1] == PREAD else "pwrite"
        if self.arena is None:
            raise _Failure(_EINVAL, "%s names a shared-memory slot, but no "
                           "arena is attached" % name)
        if off + count > len(self.arena):
            raise _Failure(_EINVAL, "%s names a shared-memory slot of %d "
                           "bytes at offset %d, outside the arena of %d "
                           "bytes" % (name, count, off, len(self.arena)))
        return self.arena_view[off:off + count]

    def op_dump(self, hdr, req):
        out = {"python_version": "%d.%d.%d" % _sys.version_info[:3]}
        if self.script and self.script.has("dump_plugin"):
            saved, buf = _sys.stdout, _io.StringIO()
            _sys.stdout = buf
            try:
                _call("dump_plugin", self.script.fn("dump_plugin"))
            except _Failure:
                pass
            finally:
                _sys.stdout = saved
            for line in buf.getvalue().splitlines():
                key, eq, value = line.partition("=")
                if eq and key:
                    out[key] = value
        self.reply_json(hdr, out)

    def op_shutdown(self, hdr, req):
        self.reply_json(hdr, {})

    # -- exports and handles --

    def default_export(self, readonly, tls):
        s = self.script
        if not s or not s.has("default_export"):
            return ""
        name = _call("default_export", s.fn("default_export"), readonly, tls,
                     default_error=_EINVAL)
        if not isinstance(name, str):
            raise _Failure(_EINVAL, "default_export returned %r, not a "
                           "string" % (name,))
        if len(name.encode("utf-8")) > 4096:
            raise _Failure(_EINVAL, "default_export returned a name longer "
                           "than 4096 bytes")
        return name

    def op_list_exports(self, hdr, req):
        readonly = req.get("readonly") is True
        tls = req.get("tls") is True
        _state.tls = tls
        s = self.script
        exports = []
        if s and s.has("list_exports"):
            result = _call("list_exports", s.fn("list_exports"), readonly,
                           tls, default_error=_EINVAL)
            for e in result or []:
                if isinstance(e, str):
                    exports.append({"name": e})
                elif (isinstance(e, (tuple, list)) and len(e) == 2 and
                      isinstance(e[0], str) and
                      (e[1] is None or isinstance(e[1], str))):
                    item = {"name": e[0]}
                    if e[1] is not None:
                        item["description"] = e[1]
                    exports.append(item)
                else:
                    raise _Failure(_EINVAL, "list_exports returned %r: each "
                                   "export must be a name or a (name, "
                                   "description) tuple" % (e,))
        else:
            exports.append({"name": self.default_export(readonly, tls)})
        self.reply_json(hdr, {"exports": exports})

    def op_default_export(self, hdr, req):
        name = self.default_export(req.get("readonly") is True,
                                   req.get("tls") is True)
        self.reply_json(hdr, {"name": name})

    def op_open(self, hdr, req):
        s = self.script
        if s is None:
            raise _Failure(_EINVAL, "no script is loaded")
        export = req.get("export") or ""
        readonly = req.get("readonly") is True
        tls = req.get("tls") is True
        _state.export_name, _state.tls = export, tls
        if export == "":
            export = self.default_export(readonly, tls)
            _state.export_name = export
        if s.has("preconnect"):
            _call("preconnect", s.fn("preconnect"), readonly,
                  default_error=_EPERM)
        h = _call("open", s.fn("open"), readonly, default_error=_EINVAL)
        hd = _Handle(h, export, tls, readonly)
        try:
            caps = self.capabilities(hd)
        except _Failure:
            if s.has("close"):
                try:
                    _call("close", s.fn("close"), h)
                except _Failure:
                    pass
            raise
        hid = self.new_handle_id()
        self.handles[hid] = hd
        self.reply_json(hdr, caps, handle=hid)

    def new_handle_id(self):
        while True:
            hid = self.next_handle
            self.next_handle = self.next_handle % 0xFFFFFFFF + 1
            if hid not in self.handles:
                return hid

    def ask(self, hd, name, default):
        """A can_* answer: the script's, else the default."""
        f = self.script.fn(name)
        if f is None:
            return default
        return _call(name, f, hd.h, default_error=_EINVAL)

    def capabilities(self, hd):
        s = self.script
        size = _call("get_size", s.fn("get_size"), hd.h,
                     default_error=_EINVAL)
        if isinstance(size, bool) or not isinstance(size, int) or \
           not 0 <= size <= 2**63 - 1:
            raise _Failure(_EINVAL, "get_size returned %r: the size must be "
                           "an integer from 0 to 2^63-1" % (size,))
        has = s.has
        can_write = bool(self.ask(hd, "can_write", has("pwrite"))) and \
            has("pwrite") and not hd.readonly
        can_flush = has("flush") and bool(self.ask(hd, "can_flush", True))
        can_trim = can_write and has("trim") and \
            bool(self.ask(hd, "can_trim", True))
        # Zeroing is always possible on a writable export: natively if the
        # script has zero and can_zero does not say no, else by writing.
        native_zero = can_write and has("zero") and \
            bool(self.ask(hd, "can_zero", True))
        can_zero = can_write
        can_fast_zero = can_zero and \
            bool(self.ask(hd, "can_fast_zero", not native_zero))
        can_extents = has("extents") and \
            bool(self.ask(hd, "can_extents", True))
        if can_write:
            fua = self.ask(hd, "can_fua",
                           FUA_EMULATE if can_flush else FUA_NONE)
        else:
            fua = FUA_NONE
        cache = self.ask(hd, "can_cache",
                         CACHE_NATIVE if has("cache") else CACHE_NONE)
        for what, v in (("can_fua", fua), ("can_cache", cache)):
            if isinstance(v, bool) or v not in (0, 1, 2):
                raise _Failure(_EINVAL, "%s returned %r: use one of the "
                               "nbdkit.%s_* constants"
                               % (what, v, "FUA" if what == "can_fua"
                                  else "CACHE"))
        if fua == FUA_EMULATE and not can_flush:
            fua = FUA_NONE
        if cache == CACHE_NATIVE and not has("cache"):
            cache = CACHE_EMULATE
        multi_conn = bool(self.ask(hd, "can_multi_conn", False))
        rotational = bool(self.ask(hd, "is_rotational", False))
        hd.can_write, hd.can_flush, hd.can_trim = can_write, can_flush, \
            can_trim
        hd.can_zero, hd.native_zero = can_zero, native_zero
        hd.can_fast_zero, hd.can_extents = can_fast_zero, can_extents
        hd.fua, hd.cache = fua, cache
        caps = {
            "size": size, "can_write": can_write, "can_flush": can_flush,
            "can_trim": can_trim, "can_zero": can_zero,
            "can_fast_zero": can_fast_zero, "can_extents": can_extents,
            "can_multi_conn": multi_conn, "is_rotational": rotational,
            "can_fua": _FUA_NAMES[fua], "can_cache": _FUA_NAMES[cache],
            "name": hd.export,
        }
        if has("block_size"):
            caps["block_size"] = self.block_size(hd)
        if has("export_description"):
            d = _call("export_description", s.fn("export_description"), hd.h,
                      default_error=_EINVAL)
            if d is not None:
                if not isinstance(d, str):
                    raise _Failure(_EINVAL, "export_description returned "
                                   "%r, not a string" % (d,))
                caps["description"] = d
        return caps

    def block_size(self, hd):
        r = _call("block_size", self.script.fn("block_size"), hd.h,
                  default_error=_EINVAL)
        try:
            mn, pref, mx = (int(x) for x in r)
        except (TypeError, ValueError):
            raise _Failure(_EINVAL, "block_size returned %r: return a tuple "
                           "(minimum, preferred, maximum)" % (r,))

        def pow2(v):
            return v > 0 and v & (v - 1) == 0
        if (mn, pref, mx) != (0, 0, 0) and \
           (not pow2(mn) or mn > 65536 or not pow2(pref) or pref < 512 or
            pref < mn or pref > 32 * 1024 * 1024 or mx < pref or
            mx > 0xFFFFFFFF or (mx != 0xFFFFFFFF and mx % mn != 0)):
            raise _Failure(_EINVAL, "block_size returned minimum=%d "
                           "preferred=%d maximum=%d: the minimum must be a "
                           "power of 2 up to 64K, the preferred a power of 2 "
                           "from max(512, minimum) to 32M, and the maximum a "
                           "multiple of the minimum not below the preferred "
                           "(or 0xffffffff)" % (mn, pref, mx))
        return {"minimum": mn, "preferred": pref, "maximum": mx}

    def close_handle(self, hid):
        hd = self.handles.pop(hid, None)
        if hd and self.script.has("close"):
            _state.export_name, _state.tls = hd.export, hd.tls
            try:
                _call("close", self.script.fn("close"), hd.h)
            except _Failure:
                pass

    def op_close(self, hdr, req):
        self.close_handle(hdr[4])
        self.reply_json(hdr, {})

    # -- data --

    def handle(self, hdr):
        hd = self.handles.get(hdr[4])
        if hd is None:
            raise _Failure(_EINVAL, "unknown handle %d" % hdr[4])
        _state.export_name, _state.tls = hd.export, hd.tls
        return hd

    def v2(self):
        return self.script.api_version >= 2

    def do_pread(self, hd, count, offset):
        f = self.script.fn("pread")
        if self.v2():
            buf = bytearray(count)
            _call("pread", f, hd.h, memoryview(buf), offset, 0)
            return buf
        r = _call("pread", f, hd.h, count, offset)
        try:
            view = memoryview(r)
        except TypeError:
            raise _Failure(_EIO, "pread returned %s, not a buffer (bytes or "
                           "bytearray)" % type(r).__name__)
        if view.nbytes < count:
            raise _Failure(_EIO, "pread returned %d bytes, fewer than the %d "
                           "asked for" % (view.nbytes, count))
        view = view.cast("B")[:count]
        # The reply goes out later: keep a copy of anything the script
        # could still change.
        return view if isinstance(r, bytes) else bytes(view)

    def do_pwrite(self, hd, buf, offset, flags):
        f = self.script.fn("pwrite")
        if self.v2():
            _call("pwrite", f, hd.h, buf, offset, flags)
        else:
            _call("pwrite", f, hd.h, buf, offset)

    def do_flush(self, hd):
        f = self.script.fn("flush")
        if self.v2():
            _call("flush", f, hd.h, 0)
        else:
            _call("flush", f, hd.h)

    def down_flags(self, hd, hp_flags):
        """Helper protocol flags to nbdkit flags; emulated FUA is not
        passed down (the flush after it does the work)."""
        flags = 0
        if hp_flags & _HP_FUA and hd.fua == FUA_NATIVE:
            flags |= FLAG_FUA
        if hp_flags & _HP_MAY_TRIM:
            flags |= FLAG_MAY_TRIM
        if hp_flags & _HP_FAST_ZERO:
            flags |= FLAG_FAST_ZERO
        if hp_flags & _HP_REQ_ONE:
            flags |= FLAG_REQ_ONE
        return flags

    def finish_fua(self, hd, hp_flags):
        if hp_flags & _HP_FUA and hd.fua == FUA_EMULATE:
            self.do_flush(hd)

    def op_pread(self, hdr, payload):
        hd = self.handle(hdr)
        count, offset = hdr[7], hdr[6]
        if not hdr[2] & _HP_SHM:
            self.ch.reply(hdr, 0, self.do_pread(hd, count, offset))
            return
        slot = self.slot(hdr, payload)
        try:
            if self.v2():
                # The script fills the slot itself, as it would a buffer.
                _call("pread", self.script.fn("pread"), hd.h, slot, offset,
                      0)
            else:
                slot[:] = self.do_pread(hd, count, offset)
        finally:
            _release(slot)
        self.ch.reply(hdr, flags=_HP_SHM)

    def op_pwrite(self, hdr, payload):
        hd = self.handle(hdr)
        if not hd.can_write:
            raise _Failure(_EPERM, "pwrite: the export is read-only")
        view = self.slot(hdr, payload) if hdr[2] & _HP_SHM \
            else memoryview(payload)
        ro = _readonly(view)
        try:
            self.do_pwrite(hd, ro, hdr[6], self.down_flags(hd, hdr[2]))
        finally:
            _release(ro)
            _release(view)
        self.finish_fua(hd, hdr[2])
        self.ch.reply(hdr)

    def op_flush(self, hdr, payload):
        hd = self.handle(hdr)
        if not hd.can_flush:
            raise _Failure(_EINVAL, "flush: the export cannot flush")
        self.do_flush(hd)
        self.ch.reply(hdr)

    def op_trim(self, hdr, payload):
        hd = self.handle(hdr)
        if not hd.can_trim:
            raise _Failure(_EINVAL if hd.can_write else _EPERM,
                           "trim: not supported by this export")
        f = self.script.fn("trim")
        if self.v2():
            _call("trim", f, hd.h, hdr[7], hdr[6],
                  self.down_flags(hd, hdr[2]))
        else:
            _call("trim", f, hd.h, hdr[7], hdr[6])
        self.finish_fua(hd, hdr[2])
        self.ch.reply(hdr)

    def op_zero(self, hdr, payload):
        hd = self.handle(hdr)
        if not hd.can_zero:
            raise _Failure(_EINVAL if hd.can_write else _EPERM,
                           "zero: not supported by this export")
        count, offset, hp_flags = hdr[7], hdr[6], hdr[2]
        fast = bool(hp_flags & _HP_FAST_ZERO)
        done = False
        if hd.native_zero:
            f = self.script.fn("zero")
            try:
                if self.v2():
                    _call("zero", f, hd.h, count, offset,
                          self.down_flags(hd, hp_flags))
                else:
                    _call("zero", f, hd.h, count, offset,
                          bool(hp_flags & _HP_MAY_TRIM))
                done = True
            except _Failure as fail:
                if fast or getattr(fail, "host_errno", 0) not in \
                   (_errno.ENOTSUP, _errno.EOPNOTSUPP):
                    raise
                debug("zero: not supported here, writing zeroes instead")
        if not done:
            if fast:
                raise _Failure(_ENOTSUP, "zero: fast zeroing is not "
                               "supported")
            chunk = bytes(min(count, 1024 * 1024))
            while count > 0:
                n = min(count, len(chunk))
                self.do_pwrite(hd, memoryview(chunk)[:n], offset, 0)
                count -= n
                offset += n
            if hp_flags & _HP_FUA and hd.fua == FUA_NATIVE and \
               self.script.has("flush"):
                self.do_flush(hd)
        self.finish_fua(hd, hp_flags)
        self.ch.reply(hdr)

    def op_cache(self, hdr, payload):
        hd = self.handle(hdr)
        count, offset = hdr[7], hdr[6]
        if hd.cache == CACHE_NONE:
            raise _Failure(_EINVAL, "cache: not supported by this export")
        if hd.cache == CACHE_NATIVE:
            f = self.script.fn("cache")
            if self.v2():
                _call("cache", f, hd.h, count, offset, 0)
            else:
                _call("cache", f, hd.h, count, offset)
        else:
            while count > 0:
                n = min(count, 1024 * 1024)
                self.do_pread(hd, n, offset)
                count -= n
                offset += n
        self.ch.reply(hdr)

    def op_extents(self, hdr, payload):
        hd = self.handle(hdr)
        if not hd.can_extents:
            raise _Failure(_EINVAL, "extents: not supported by this export")
        count, offset = hdr[7], hdr[6]
        req_one = bool(hdr[2] & _HP_REQ_ONE)
        r = _call("extents", self.script.fn("extents"), hd.h, count, offset,
                  self.down_flags(hd, hdr[2]))
        self.ch.reply(hdr, 0, self.encode_extents(r, offset, count, req_one))

    @staticmethod
    def encode_extents(result, offset, count, req_one):
        """The script's (offset, length, type) tuples as the wire's
        contiguous 12-byte entries from OFFSET on, merged and clipped."""
        end = offset + count
        out = []             # [length, type]
        pos = None           # where the next extent must start
        try:
            items = list(result or [])
        except TypeError:
            raise _Failure(_EIO, "extents returned %r, not a list of "
                           "(offset, length, type) tuples" % (result,))
        for item in items:
            try:
                eoff, elen, etype = (int(x) for x in item)
            except (TypeError, ValueError):
                raise _Failure(_EIO, "extents returned %r: each extent "
                               "must be an (offset, length, type) tuple"
                               % (item,))
            if elen <= 0 or eoff + elen <= offset:
                continue
            if pos is None:
                if eoff > offset:
                    raise _Failure(_EIO, "extents: the first extent starts "
                                   "at %d, after the offset %d asked for"
                                   % (eoff, offset))
                elen -= offset - eoff
                eoff = offset
            elif eoff != pos:
                raise _Failure(_EIO, "extents: the extent at %d does not "
                               "follow the previous one, which ends at %d"
                               % (eoff, pos))
            etype &= EXTENT_HOLE | EXTENT_ZERO
            if out and out[-1][1] == etype:
                out[-1][0] += elen
            else:
                out.append([elen, etype])
            pos = eoff + elen
            if pos >= end or (req_one and out):
                break
        if not out:
            raise _Failure(_EIO, "extents returned no extent for offset %d"
                           % offset)
        if req_one:
            out = out[:1]
        return b"".join(_struct.pack(">QI", l, t) for l, t in out)


def _readonly(view):
    return view.toreadonly() if hasattr(view, "toreadonly") else view


def _release(view):
    """A buffer handed to a callback is valid during the call only."""
    try:
        view.release()
    except BufferError:
        pass


def main(version="1.0.0"):
    """Run the backend on the channel named by $NBDKIT_HELPER_FD."""
    fdstr = _os.environ.get("NBDKIT_HELPER_FD")
    if "--help" in _sys.argv[1:] or not fdstr:
        _sys.stderr.write(
            "nbdkit-python-backend: the python backend of nbdkit, which runs "
            "plugin scripts\nwritten for nbdkit's python plugin.  It is "
            "started by the server, not by hand:\n\n"
            "  nbdkit python /path/to/plugin.py [key=value ...]\n\n"
            "See nbdkit-python-backend(1).\n")
        return 0 if "--help" in _sys.argv[1:] else 1
    try:
        fd = int(fdstr)
        channel = _Channel(fd)
    except (ValueError, OSError) as exc:
        _sys.stderr.write("nbdkit-python-backend: NBDKIT_HELPER_FD=%s: not "
                          "a usable channel: %s\n" % (fdstr, exc))
        return 1
    # The server stops a backend with SIGTERM, and sends it when the
    # server dies (PR_SET_PDEATHSIG): its default action, to die at once,
    # is the one wanted; never ignore or catch it.
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    backend = _Backend(channel, version)
    try:
        return backend.run()
    except _Violation as v:
        _log("error: protocol violation from the front end: %s" % v)
        return 1
    except (BrokenPipeError, ConnectionResetError):
        backend.finish()
        return 0
