/* nbdkit backends: I/O on a (possibly sparse) file descriptor (see
 * sparse-file.h).  Short reads and writes are retried; reading past the
 * end of a file gives zeroes.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "sparse-file.h"

int
sparse_pread (const char *name, int fd, void *buf, uint32_t count, uint64_t offset)
{
  unsigned char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("%s: pread: %m", name);
      return -1;
    }
    if (r == 0) {               /* past the end: zeroes */
      memset (p, 0, count);
      return 0;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
sparse_pwrite (const char *name, int fd, const void *buf, uint32_t count, uint64_t offset)
{
  const unsigned char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("%s: pwrite: %m", name);
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
sparse_punch (const char *name, int fd, uint32_t count, uint64_t offset)
{
  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) offset, count) == -1) {
    if (errno != EOPNOTSUPP)
      nbdkit_error ("%s: punching a hole: %m", name);
    return -1;
  }
  return 0;
}

/* Linux (tmpfs, seen on 6.x) does not find data in the last page below
 * 2^63 with SEEK_DATA: the page's end overflows off_t.  The last 64K
 * (the largest page size) is therefore always reported as data, which
 * is never wrong, only less precise.
 */
#define SEEK_SAFE_END ((uint64_t) INT64_MAX & ~(uint64_t) 0xffff)

int
sparse_extents (const char *name, int fd, uint32_t count, uint64_t offset,
                uint32_t flags, struct nbdkit_extents *extents)
{
  uint64_t end = offset + count, pos = offset;

  if (end > SEEK_SAFE_END) {
    if (pos >= SEEK_SAFE_END)
      return nbdkit_add_extent (extents, pos, end - pos, 0);
    end = SEEK_SAFE_END;
    if (sparse_extents (name, fd, (uint32_t) (end - pos), pos, flags,
                        extents) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      return 0;
    return nbdkit_add_extent (extents, end, offset + count - end, 0);
  }

  while (pos < end) {
    off_t data = lseek (fd, (off_t) pos, SEEK_DATA), hole;

    if (data == -1 && errno != ENXIO) {
      nbdkit_error ("%s: lseek SEEK_DATA: %m", name);
      return -1;
    }
    if (data == -1 || (uint64_t) data >= end) {
      /* A hole to the end of the range (ENXIO: to the end of file). */
      return nbdkit_add_extent (extents, pos, end - pos,
                                NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
    }
    if ((uint64_t) data > pos) {
      if (nbdkit_add_extent (extents, pos, data - pos,
                             NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
        return -1;
      pos = data;
      if (flags & NBDKIT_FLAG_REQ_ONE)
        return 0;
      continue;
    }
    hole = lseek (fd, (off_t) pos, SEEK_HOLE);
    if (hole == -1) {
      nbdkit_error ("%s: lseek SEEK_HOLE: %m", name);
      return -1;
    }
    if ((uint64_t) hole > end)
      hole = end;
    if (nbdkit_add_extent (extents, pos, hole - pos, 0) == -1)
      return -1;
    pos = hole;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      return 0;
  }
  return 0;
}
