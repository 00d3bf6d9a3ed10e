# A disk kept in a file (file=PATH), so that what was written and
# flushed survives a restart of the backend process.
import os

import nbdkit

API_VERSION = 2

path = None


def config(key, value):
    global path
    if key != "file":
        raise ValueError("unknown parameter %r (use file=PATH)" % key)
    path = value


def config_complete():
    if path is None:
        raise ValueError("file=PATH is required")


def open(readonly):
    return os.open(path, os.O_RDONLY if readonly else os.O_RDWR)


def close(h):
    os.close(h)


def get_size(h):
    return os.fstat(h).st_size


def pread(h, buf, offset, flags):
    data = os.pread(h, len(buf), offset)
    if len(data) != len(buf):
        raise IOError("short read at %d" % offset)
    buf[:] = data


def pwrite(h, buf, offset, flags):
    os.pwrite(h, buf, offset)
    if flags & nbdkit.FLAG_FUA:
        os.fdatasync(h)


def can_fua(h):
    return nbdkit.FUA_NATIVE


def flush(h, flags):
    os.fdatasync(h)
