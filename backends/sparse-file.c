/* nbdkit backends: I/O on a (possibly sparse) file descriptor, and the
 * model of nbdkit's 32 KiB-page sparse array on a memfd (see
 * sparse-file.h).  Short reads and writes are retried; reading past the
 * end of a file gives zeroes.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
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

/* The sparse-array model (sparse-file.h).  A zero that leaves a page
 * all zeroes frees the whole page: checking and freeing must not let
 * a write to another part of the page slip in between, so writes share
 * this lock and zeroes take it alone.
 */
static pthread_rwlock_t page_lock = PTHREAD_RWLOCK_INITIALIZER;

#define PAGE_DOWN(x) ((x) & ~(uint64_t) (SPARSE_PAGE - 1))

/* 1 if the bytes [a, b) of fd are all zero, 0 if not, -1 on error. */
static int
range_is_zero (const char *name, int fd, uint64_t a, uint64_t b)
{
  unsigned char buf[4096];

  while (a < b) {
    size_t n = b - a < sizeof buf ? b - a : sizeof buf;

    if (sparse_pread (name, fd, buf, n, a) == -1)
      return -1;
    if (buf[0] != 0 || (n > 1 && memcmp (buf, buf + 1, n - 1) != 0))
      return 0;
    a += n;
  }
  return 1;
}

/* Is the page [ps, pe) allocated?  If not, *next is the start of the
 * next page that may be (at most size).  Near 2^63, where tmpfs cannot
 * seek (SEEK_SAFE_END), a page counts as allocated when it holds
 * anything but zeroes.
 */
static int
page_state (const char *name, int fd, uint64_t size, uint64_t ps,
            uint64_t pe, bool *alloc, uint64_t *next)
{
  off_t d;
  int z;

  if (ps >= SEEK_SAFE_END) {
    z = range_is_zero (name, fd, ps, pe);
    if (z == -1)
      return -1;
    *alloc = !z;
    *next = pe;
    return 0;
  }
  d = lseek (fd, (off_t) ps, SEEK_DATA);
  if (d == -1) {
    if (errno != ENXIO) {
      nbdkit_error ("%s: lseek SEEK_DATA: %m", name);
      return -1;
    }
    d = (off_t) size;
  }
  if ((uint64_t) d < pe) {
    *alloc = true;
    return 0;
  }
  *alloc = false;
  *next = PAGE_DOWN ((uint64_t) d);
  if (*next > SEEK_SAFE_END)
    *next = SEEK_SAFE_END;
  if (*next > size)
    *next = size;
  if (*next < pe)
    *next = pe;
  return 0;
}

int
sparse_page_pwrite (const char *name, int fd, const void *buf,
                    uint32_t count, uint64_t offset)
{
  int r;

  pthread_rwlock_rdlock (&page_lock);
  r = sparse_pwrite (name, fd, buf, count, offset);
  pthread_rwlock_unlock (&page_lock);
  return r;
}

static int
punch (const char *name, int fd, uint64_t count, uint64_t offset)
{
  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) offset, (off_t) count) == -1) {
    nbdkit_error ("%s: punching a hole: %m", name);
    return -1;
  }
  return 0;
}

/* Free the page [ps, pe) if it is allocated and all zeroes. */
static int
free_if_zero (const char *name, int fd, uint64_t size, uint64_t ps,
              uint64_t pe)
{
  bool alloc;
  uint64_t next;
  int z;

  if (page_state (name, fd, size, ps, pe, &alloc, &next) == -1)
    return -1;
  if (!alloc)
    return 0;
  z = range_is_zero (name, fd, ps, pe);
  if (z == 1)                   /* whole, past the end of the file too */
    return punch (name, fd, INT64_MAX - ps < SPARSE_PAGE
                  ? pe - ps : SPARSE_PAGE, ps);
  return z;
}

int
sparse_page_zero (const char *name, int fd, uint64_t size, uint64_t count,
                  uint64_t offset)
{
  uint64_t end, ps, pe, ls, le;
  int r = -1;

  if (offset >= size || count == 0)
    return 0;
  if (count > size - offset)
    count = size - offset;
  end = offset + count;
  pthread_rwlock_wrlock (&page_lock);
  /* To the end of the disk: the part of the last page past the end of
   * the file goes too, or tmpfs keeps it allocated.
   */
  if (punch (name, fd, end == size && size <= INT64_MAX - SPARSE_PAGE
             ? count + SPARSE_PAGE : count, offset) == -1)
    goto out;
  /* Pages covered in part: freed if what is left of them is zeroes. */
  ps = PAGE_DOWN (offset);
  pe = ps + SPARSE_PAGE < size ? ps + SPARSE_PAGE : size;
  if ((offset > ps || end < pe) &&
      free_if_zero (name, fd, size, ps, pe) == -1)
    goto out;
  ls = PAGE_DOWN (end - 1);
  le = ls + SPARSE_PAGE < size ? ls + SPARSE_PAGE : size;
  if (ls != ps && end < le && free_if_zero (name, fd, size, ls, le) == -1)
    goto out;
  r = 0;
 out:
  pthread_rwlock_unlock (&page_lock);
  return r;
}

int
sparse_page_extents (const char *name, int fd, uint64_t size, uint32_t count,
                     uint64_t offset, uint32_t flags,
                     struct nbdkit_extents *extents)
{
  uint64_t end = offset + count, pos = offset, limit;
  uint32_t first_type = 0;
  bool first = true;

  if (end > size)
    end = size;
  /* The last page is reported whole, as nbdkit does. */
  limit = PAGE_DOWN (end + SPARSE_PAGE - 1);
  if (limit > size || limit < end)
    limit = size;
  while (pos < end) {
    uint64_t ps = PAGE_DOWN (pos), pe, next = 0, ext_end;
    uint32_t type;
    bool alloc;

    pe = ps + SPARSE_PAGE < size ? ps + SPARSE_PAGE : size;
    if (page_state (name, fd, size, ps, pe, &alloc, &next) == -1)
      return -1;
    if (!alloc) {
      type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
      ext_end = next < limit ? next : limit;
    }
    else {
      /* As nbdkit: zero if the part of the page asked about is. */
      int z = range_is_zero (name, fd, pos, pe);

      if (z == -1)
        return -1;
      type = z ? NBDKIT_EXTENT_ZERO : 0;
      ext_end = pe;
    }
    if (ext_end <= pos)
      ext_end = pe;
    if (nbdkit_add_extent (extents, pos, ext_end - pos, type) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE) {
      if (!first && type != first_type)
        return 0;               /* the first extent is complete */
      first = false;
      first_type = type;
    }
    pos = ext_end;
  }
  return 0;
}

int
sparse_write_zeroes (const char *name, int fd, uint64_t count,
                     uint64_t offset)
{
  static const unsigned char zeroes[65536];

  pthread_rwlock_rdlock (&page_lock);
  while (count > 0) {
    uint32_t n = count < sizeof zeroes ? count : sizeof zeroes;

    if (sparse_pwrite (name, fd, zeroes, n, offset) == -1) {
      pthread_rwlock_unlock (&page_lock);
      return -1;
    }
    count -= n;
    offset += n;
  }
  pthread_rwlock_unlock (&page_lock);
  return 0;
}

int
sparse_mlock (const char *name, int fd, uint64_t size)
{
  void *p;

  if (size == 0)
    return 0;
  p = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    nbdkit_error ("allocator=malloc,mlock=true: mapping %" PRIu64
                  " bytes of %s: %m", size, name);
    return -1;
  }
  if (mlock (p, size) == -1) {
    nbdkit_error ("allocator=malloc,mlock=true: mlock of %" PRIu64
                  " bytes of %s: %m (raise ulimit -l, or run as root)",
                  size, name);
    munmap (p, size);
    return -1;
  }
  return 0;                     /* kept mapped and locked */
}

/* Whether the machine could give malloc a flat array of size bytes:
 * not more than its RAM and swap together.
 */
int
sparse_malloc_fits (const char *name, uint64_t size)
{
  struct sysinfo si;
  uint64_t have;

  if (sysinfo (&si) == -1)
    return 0;
  have = ((uint64_t) si.totalram + si.totalswap) * si.mem_unit;
  if (size > have) {
    nbdkit_debug ("%s: %" PRIu64 " bytes asked for", name, size);
    nbdkit_error ("allocator=malloc: cannot allocate %" PRIu64 " bytes: "
                  "the machine has %" PRIu64 " bytes of RAM and swap "
                  "(allocator=malloc is not sparse; use allocator=sparse)",
                  size, have);
    return -1;
  }
  return 0;
}

int
sparse_parse_allocator (const char *value, enum sparse_allocator *alloc,
                        bool *mlock)
{
  static const char valid[] =
    "valid: allocator=sparse, allocator=malloc, allocator=malloc,mlock=true";
  size_t len = strcspn (value, ",");
  const char *opts = value[len] == ',' ? value + len + 1 : NULL;

  *mlock = false;
  if (len == 6 && strncmp (value, "sparse", 6) == 0) {
    if (opts) {
      nbdkit_error ("allocator=%s: allocator=sparse takes no options "
                    "(%s)", value, valid);
      return -1;
    }
    *alloc = ALLOC_SPARSE;
    return 0;
  }
  if (len == 6 && strncmp (value, "malloc", 6) == 0) {
    *alloc = ALLOC_MALLOC;
    while (opts && *opts) {
      size_t olen = strcspn (opts, ",");
      char opt[64];
      int b;

      if (olen > 6 && olen < sizeof opt && strncmp (opts, "mlock=", 6) == 0) {
        memcpy (opt, opts + 6, olen - 6);
        opt[olen - 6] = '\0';
        b = nbdkit_parse_bool (opt);
        if (b == -1)
          return -1;
        *mlock = b;
      }
      else {
        nbdkit_error ("allocator=%s: unknown option '%.*s' (allocator=malloc "
                      "takes only mlock=true or mlock=false)", value,
                      (int) olen, opts);
        return -1;
      }
      opts += olen;
      if (*opts == ',')
        opts++;
    }
    return 0;
  }
  if (len == 4 && strncmp (value, "zstd", 4) == 0) {
    nbdkit_error ("allocator=%s: allocator=zstd (compressed pages) is not "
                  "supported by this nbdkit (--dump-plugin says zstd=no); "
                  "%s", value, valid);
    return -1;
  }
  nbdkit_error ("allocator=%s: unknown allocator \"%.*s\" (%s)", value,
                (int) len, value, valid);
  return -1;
}
