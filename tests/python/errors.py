# A 4 MiB RAM disk whose callbacks fail on purpose, to check how errors
# reach the client: reads from 3 MiB raise a plain exception (EIO),
# writes from 2 MiB fail with set_error(ENOSPC), trims raise an OSError
# (EROFS, which travels as EPERM), and zero always asks for the
# fallback to writing zeroes (set_error(EOPNOTSUPP)).
import errno
import nbdkit

API_VERSION = 2

disk = bytearray(4 * 1024 * 1024)


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def pread(h, buf, offset, flags):
    if offset + len(buf) > 3 * 1024 * 1024:
        raise ValueError("the sector at %d is unreadable" % offset)
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    if offset + len(buf) > 2 * 1024 * 1024:
        nbdkit.set_error(errno.ENOSPC)
        raise RuntimeError("the disk is full beyond 2 MiB")
    disk[offset:offset + len(buf)] = buf


def trim(h, count, offset, flags):
    raise OSError(errno.EROFS, "trimming is forbidden here")


def zero(h, count, offset, flags):
    nbdkit.set_error(errno.EOPNOTSUPP)
    raise NotImplementedError("write the zeroes yourself")
