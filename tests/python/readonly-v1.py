# An old-style script (no API_VERSION: version 1, pread returns the
# data) without pwrite: a read-only 1 MiB disk whose every byte is the
# low byte of its offset divided by 512.


def open(readonly):
    return {}


def get_size(h):
    return 1024 * 1024


def pread(h, count, offset):
    return bytes((o // 512) & 0xff for o in range(offset, offset + count))
