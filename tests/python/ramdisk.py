# A RAM disk in the style of nbdkit's python plugin examples (API_VERSION 2):
# a bytearray, with every data callback, extents from a set of written
# 64 KiB blocks, and a size= parameter.
import errno
import nbdkit

API_VERSION = 2

BLOCK = 65536
size = 20 * 1024 * 1024
disk = None
written = set()          # blocks that may hold data
seen_config = []


def config(key, value):
    global size
    seen_config.append((key, value))
    if key == "size":
        size = nbdkit.parse_size(value)
    elif key == "note":
        nbdkit.debug("note=%s" % value)
    else:
        raise RuntimeError("unknown parameter %s=%s" % (key, value))


def config_complete():
    global disk
    disk = bytearray(size)


def thread_model():
    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS


def open(readonly):
    return {"readonly": readonly, "export": nbdkit.export_name()}


def get_size(h):
    return len(disk)


def can_multi_conn(h):
    return True


def can_fua(h):
    return nbdkit.FUA_NATIVE


def export_description(h):
    return "a python RAM disk configured with %r" % (seen_config,)


def mark(offset, count):
    for b in range(offset // BLOCK, (offset + count + BLOCK - 1) // BLOCK):
        written.add(b)


def pread(h, buf, offset, flags):
    end = offset + len(buf)
    buf[:] = disk[offset:end]


def pwrite(h, buf, offset, flags):
    end = offset + len(buf)
    disk[offset:end] = buf
    mark(offset, len(buf))


def flush(h, flags):
    pass


def trim(h, count, offset, flags):
    disk[offset:offset + count] = bytearray(count)


def zero(h, count, offset, flags):
    disk[offset:offset + count] = bytearray(count)


def extents(h, count, offset, flags):
    out = []
    b = offset // BLOCK
    while b * BLOCK < offset + count:
        kind = 0 if b in written else nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO
        out.append((b * BLOCK, BLOCK, kind))
        b += 1
    return out
