# Two exports of different sizes, listed with descriptions; the default
# export is "alpha".  Any other name is refused.
import errno
import nbdkit

API_VERSION = 2

sizes = {"alpha": 1024 * 1024, "beta": 2 * 1024 * 1024}


def list_exports(readonly, is_tls):
    return [("alpha", "the first disk"), "beta"]


def default_export(readonly, is_tls):
    return "alpha"


def open(readonly):
    name = nbdkit.export_name()
    if name not in sizes:
        nbdkit.set_error(errno.EINVAL)
        raise KeyError("no export called %r" % name)
    return name


def get_size(h):
    return sizes[h]


def pread(h, buf, offset, flags):
    buf[:] = h.encode()[:1] * len(buf)
