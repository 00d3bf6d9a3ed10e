/* nbdkit backends: I/O on a (possibly sparse) file descriptor (see
 * sparse-file.h).  Short reads and writes are retried; reading past the
 * end of a file gives zeroes.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

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

/* Extents on tmpfs (and so of a memfd).  There SEEK_HOLE walks every
 * page of the data run it starts in to the run's end, so over a large
 * written disk each call costs milliseconds.  But on tmpfs a page is
 * allocated exactly when it is in the page cache or swapped out: the
 * pages of a bounded window come from mincore(2), and only those it
 * calls absent are checked with SEEK_DATA, which skips holes quickly
 * and counts a swapped-out page as data.  Returns 0, -1 after an
 * error, or 1 if mincore cannot be used here (the caller seeks).
 */
#define WINDOW_PAGES 4096
#define REQ_ONE_WINDOW_PAGES 64

static int
tmpfs_extents (const char *name, int fd, uint64_t offset, uint64_t end,
               uint32_t flags, struct nbdkit_extents *extents)
{
  const uint64_t page = (uint64_t) sysconf (_SC_PAGESIZE);
  const uint64_t window = flags & NBDKIT_FLAG_REQ_ONE
    ? REQ_ONE_WINDOW_PAGES : WINDOW_PAGES;
  unsigned char vec[WINDOW_PAGES];
  uint64_t pos = offset & ~(page - 1), run_start = offset;
  uint32_t run_type = 0;
  bool in_run = false, emitted = false;

  while (pos < end) {
    uint64_t wlen = (end - pos + page - 1) & ~(page - 1), i, n;
    void *m;
    int r;

    if (wlen > window * page)
      wlen = window * page;
    m = mmap (NULL, wlen, PROT_READ, MAP_SHARED, fd, (off_t) pos);
    r = m == MAP_FAILED ? -1 : mincore (m, wlen, vec);
    if (m != MAP_FAILED)
      munmap (m, wlen);
    if (r == -1) {
      if (!emitted)
        return 1;
      nbdkit_error ("%s: mapping for mincore: %m", name);
      return -1;
    }

    n = wlen / page;
    for (i = 0; i < n; ) {
      uint64_t p = pos + i * page, next, seg;
      uint32_t type;

      if (vec[i] & 1) {
        type = 0;
        next = p + page;
      }
      else {
        off_t d = lseek (fd, (off_t) p, SEEK_DATA);

        if (d == -1 && errno != ENXIO) {
          nbdkit_error ("%s: lseek SEEK_DATA: %m", name);
          return -1;
        }
        if (d == (off_t) p) {
          type = 0;
          next = p + page;
        }
        else {
          type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
          next = d == -1 || (uint64_t) d > end ? end
            : (uint64_t) d & ~(page - 1);
          if (next <= p)
            next = p + page;
        }
      }
      seg = p > offset ? p : offset;
      if (in_run && type != run_type) {
        if (nbdkit_add_extent (extents, run_start, seg - run_start,
                               run_type) == -1)
          return -1;
        if (flags & NBDKIT_FLAG_REQ_ONE)
          return 0;
        emitted = true;
        run_start = seg;
      }
      run_type = type;
      in_run = true;
      if (next >= end || next >= pos + wlen) {
        pos = next;
        break;
      }
      i = (next - pos) / page;
    }
    /* One extent is asked for: one window is enough to report one. */
    if ((flags & NBDKIT_FLAG_REQ_ONE) && pos < end)
      return nbdkit_add_extent (extents, run_start, pos - run_start,
                                run_type);
  }
  return nbdkit_add_extent (extents, run_start, end - run_start, run_type);
}

static bool
on_tmpfs (int fd)
{
  struct statfs sb;

  return fstatfs (fd, &sb) == 0 && sb.f_type == TMPFS_MAGIC;
}

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

  if ((flags & NBDKIT_FLAG_REQ_ONE) && count > 0) {
    /* A hole at the start needs one cheap SEEK_DATA to report. */
    off_t data = lseek (fd, (off_t) pos, SEEK_DATA);

    if (data == -1 && errno != ENXIO) {
      nbdkit_error ("%s: lseek SEEK_DATA: %m", name);
      return -1;
    }
    if (data == -1 || (uint64_t) data > pos)
      return nbdkit_add_extent (extents, pos,
                                (data == -1 || (uint64_t) data > end
                                 ? end : (uint64_t) data) - pos,
                                NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
  }

  if (count > 0 && on_tmpfs (fd)) {
    int r = tmpfs_extents (name, fd, offset, end, flags, extents);

    if (r <= 0)
      return r;
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
