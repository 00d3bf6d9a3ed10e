/* nbdkit front end: the passthrough data path (in the spirit of Linux
 * FUSE passthrough).
 *
 * Owns struct passthrough: a descriptor that a backend handed over
 * with its OPEN reply (docs/nbdkit-helper-protocol.pod, "passthrough"),
 * because the data of that handle is exactly that file, block device
 * or memfd.  The bottom layer (backend-layer.c) then does PREAD,
 * PWRITE, ZERO, TRIM, FLUSH and CACHE on it here, instead of sending
 * them to the backend; the backend keeps open, size, capabilities,
 * extents and close.  Filters see every request as before: this is
 * only how the last layer does its I/O.
 *
 * /dev/zero (the null backend's) is a descriptor whose reads are zeroes
 * and whose writes are thrown away: the front end knows it by its
 * device number and answers every request on it at once, without a
 * system call.
 *
 * Where: a descriptor whose data lives in memory -- a memfd or a file
 * on tmpfs or hugetlbfs, on a machine without swap -- never waits for
 * a device: a small PREAD, PWRITE, ZERO, TRIM or FLUSH on it (up to
 * -D nbdkit.passthrough_inline=BYTES, 256 KiB by default, and four
 * such per turn of the loop) is done right away on the loop's thread,
 * as a memcpy would be, saving the two thread hand-offs that cost more
 * than the copy itself.  Every other request, any that would have to
 * wait for page_lock, and any change to the file while a worker may be
 * changing it (and so hold its inode lock), is a job of the worker
 * pool (worker_submit); the job touches nothing but its own struct,
 * and its completion runs back on the loop.  (The backend process
 * could hold that lock too, with a long write of its own to the file:
 * docs/nbdkit-security.pod, LIMITS.)
 *
 * Without a copy: a file in memory is also mapped here
 * (passthrough-map.c).  A read of at least ZERO_COPY_MIN bytes, from a
 * client with no filter in between (nothing can change the buffer), is
 * answered with a pointer into the mapping.
 * - A memfd sealed against shrinking (the memory backend seals the
 *   server's) is read through the mapping: the reply is written to
 *   the client straight from it, one copy less.  The seal is what makes
 *   that safe (a mapping past the end of a file faults), and mincore
 *   that no page is made for a hole: every page must be there.
 * - A file without the seal (the file backend's, on tmpfs) is never
 *   read through the mapping.  For a plain (not TLS) client the
 *   pointer only names the bytes: the stream sends them from the file
 *   with sendfile (payload_in_file), the kernel handing the file's
 *   pages to the socket, no copy here at all; past the end of a file
 *   shrunk meanwhile, zeroes (buffer.c).  Not for the sealed memfd:
 *   its writev from the mapping fills the socket with large pieces that
 *   the client copies out faster than spliced 4 KiB pages (one
 *   connection read 1.3x faster that way on 2026-12-08).
 * The mapping is counted by the replies in flight (payload_range_add):
 * it goes when the last of them is written.  The bytes are read when
 * the reply is written (with sendfile: when the client reads them),
 * not when the request was handled: a write to the same range in
 * between is one the client sent before it had the read's reply, or
 * another client's at the same time, which NBD lets the read see or
 * not.  -D nbdkit.passthrough_sendfile=0: never sendfile.
 * One mapping serves every handle on the file (its pages are faulted
 * in once); it is taken down on a worker.  No read is answered from it
 * while a worker changes a file: a tmpfs punch makes page faults in its
 * range wait, and the loop faults in the mapping's pages when it writes
 * the reply (punches are also cut into MiB pieces, see punch_at).
 * -D nbdkit.passthrough_mmap=0 turns it off.
 *
 * Writes received in place: when the handle may write, the mapping is
 * writable, and the payload of a PWRITE from a plain (not TLS) client
 * with no filter in between is received straight into it
 * (passthrough_write_in_place, then conn.c's conn_read_in_place); the
 * PWRITE is done when it gets here (written_in_place).  Only the
 * kernel writes to the mapping -- recv, or a pwrite of the bytes the
 * connection had buffered -- so a page the file cannot provide is an
 * error, not a SIGBUS.  Not while a worker may change a file
 * (in_place_ready): page_zero's look at a page and its punch must see
 * no byte land in between, and page_lock is only the workers'.  A
 * mapping no one uses is kept a few seconds (passthrough-map.c), so
 * that the next client does not fault in every page again.
 *
 * Lifetime: a struct passthrough is counted -- one reference for the
 * handle (struct bhandle's pt), one per job in flight -- so that a
 * descriptor replaced after a backend restart (supervisor.c takes the
 * new incarnation's) or released at close is closed only once no
 * worker can still use it: its number is never reused under a job.
 * The descriptor stays valid whatever happens to the backend process,
 * which is why a crash or a restart does not interrupt this path.
 *
 * Durability: FUA is fdatasync before the reply, FLUSH is fdatasync;
 * nothing is acknowledged before the kernel said it was done.
 *
 * Pages: a backend that stores zeroes as holes in pages of its own
 * (the memory backend's sparse array, 32 KiB) says so ("page"); a zero
 * or trim then also punches a page it leaves all zeroes, as the
 * backend does.  Checking that a page is all zeroes and punching it
 * must not let a write to that page slip in between, so those zeroes
 * hold page_lock for writing and every write to such a descriptor
 * holds it for reading (one lock for all: handles may share a file).
 *
 * The front end never opens anything here: it uses only the
 * descriptor the backend opened, with the access the backend gave it
 * (docs/nbdkit-security.pod).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "internal.h"
#include "options.h"
#include "passthrough-map.h"

/* The smallest read answered from the mapping: below it a copy costs
 * less than the mincore that must come first.
 */
#define ZERO_COPY_MIN (64 * 1024)

struct passthrough {
  int fd;
  unsigned refs;
  struct backend_proc *bp;      /* whose arena holds the reads' buffers */
  bool zero_punch;              /* zero may always punch a hole */
  uint32_t page;                /* zero_punch: the backend's page, or 0 */
  uint64_t size;                /* of the export */
  /* What the handle accepts (from the OPEN reply): a request it does
   * not is sent to the backend, which refuses it as before.
   */
  bool can_write, can_flush, can_trim, can_zero, can_fua, can_cache;
  bool in_memory;               /* memfd, tmpfs or hugetlbfs */
  bool dev_zero;                /* /dev/zero: zeroes, writes discarded */
  uint64_t served;              /* requests done here */
  uint64_t served_inline;       /* of which on the loop's thread */
  uint64_t served_mapped;       /* of which reads without a copy */
  uint64_t served_in_place;     /* and writes received in place */
  struct pt_map *map;           /* or NULL */
};

/* See "Pages" above; only worker threads take it. */
static pthread_rwlock_t page_lock = PTHREAD_RWLOCK_INITIALIZER;

/* Jobs on the worker threads that change a file (PWRITE, ZERO, TRIM):
 * while one runs, it may hold the file's inode lock (a tmpfs write
 * or fallocate does, for as long as it takes), and a change made on
 * the loop would wait for it.  So changes go to the workers then too.
 * Only the loop touches it.
 */
static unsigned changes_on_workers;

static bool
changes_file (uint16_t type)
{
  return type == HP_PWRITE || type == HP_ZERO || type == HP_TRIM;
}

bool
passthrough_enabled (void)
{
  static int enabled = -1;

  if (enabled == -1)
    enabled = server_debug_flag ("passthrough", 1) != 0;
  return enabled;
}

/* -D nbdkit.passthrough_inline=BYTES: the largest request done on the
 * loop's thread (0: none).
 */
static uint32_t
inline_max (void)
{
  static int max = -1;

  if (max == -1) {
    max = server_debug_flag ("passthrough_inline", 256 * 1024);
    if (max < 0)
      max = 0;
    if (max > 32 * 1024 * 1024)
      max = 32 * 1024 * 1024;
  }
  return (uint32_t) max;
}

/* What one turn of the loop may do here: four of the largest
 * requests, counting each as at least 4 KiB; the rest of that turn's
 * requests go to the worker pool.  So a burst of requests never holds
 * the loop long (tests/loop-watchdog's "worked too long").
 */
static bool
inline_budget (uint32_t count)
{
  static unsigned int turn;
  static uint64_t spent;
  unsigned int now = ev_iteration (loop);
  uint64_t cost = count < 4096 ? 4096 : count;

  if (now != turn) {
    turn = now;
    spent = 0;
  }
  if (spent + cost > 4 * (uint64_t) inline_max ())
    return false;
  spent += cost;
  return true;
}

/* Is the data of fd in memory that no device backs?  A file on tmpfs
 * or hugetlbfs (a memfd is one), unless the machine has swap.
 */
static bool
fd_in_memory (int fd)
{
  struct statfs fs;

  if (fstatfs (fd, &fs) == -1)
    return false;
  return fs.f_type == TMPFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC;
}

/* Is fd /dev/zero (character device 1:5)? */
static bool
fd_is_dev_zero (int fd)
{
  struct stat st;

  return fstat (fd, &st) == 0 && S_ISCHR (st.st_mode) &&
    major (st.st_rdev) == 1 && minor (st.st_rdev) == 5;
}

/* Swap can be turned on at any time: looked at again once a second. */
static bool
swap_on (void)
{
  static ev_tstamp checked = -1;
  static bool on = true;
  ev_tstamp now = ev_now (loop);

  if (checked < 0 || now - checked >= 1.0) {
    struct sysinfo si;

    on = sysinfo (&si) == -1 || si.totalswap > 0;
    checked = now;
  }
  return on;
}

static bool
level_on (json_t *v)
{
  if (json_is_string (v))
    return strcmp (json_string_value (v), "none") != 0;
  return json_is_true (v);
}

struct passthrough *
passthrough_from_open (struct backend_proc *bp, json_t *j, bool readonly)
{
  json_t *p = json_object_get (j, "passthrough");
  const char *zero = json_string_value (json_object_get (p, "zero"));
  struct passthrough *pt;
  int fd, fl;

  if (!json_is_object (p))
    return NULL;                /* its descriptor, if any, is closed */
  fd = channel_take_reply_fd (bp);
  if (fd == -1) {
    nbdkit_debug ("%s: passthrough: the OPEN reply came without a "
                  "descriptor; the backend does the I/O",
                  bproc_name (bp));
    return NULL;
  }
  /* Only as the backend opened it: reading in place, and writing when
   * the handle may write.
   */
  fl = fcntl (fd, F_GETFL);
  if (fl == -1 || (fl & O_PATH) || (fl & O_APPEND) ||
      (fl & O_ACCMODE) == O_WRONLY) {
    nbdkit_debug ("%s: passthrough: the descriptor is not open for "
                  "reading in place; the backend does the I/O",
                  bproc_name (bp));
    close (fd);
    return NULL;
  }
  pt = calloc (1, sizeof *pt);
  if (!pt) {
    close (fd);
    return NULL;
  }
  pt->fd = fd;
  pt->refs = 1;
  pt->bp = bp;
  pt->zero_punch = zero && strcmp (zero, "punch") == 0;
  if (pt->zero_punch && json_is_integer (json_object_get (p, "page"))) {
    json_int_t page = json_integer_value (json_object_get (p, "page"));

    if (page > 0 && page <= (1 << 24) && !(page & (page - 1)))
      pt->page = (uint32_t) page;
  }
  pt->size = (uint64_t) json_integer_value (json_object_get (j, "size"));
  pt->can_write = !readonly && (fl & O_ACCMODE) == O_RDWR &&
    json_is_true (json_object_get (j, "can_write"));
  pt->can_flush = json_is_true (json_object_get (j, "can_flush"));
  pt->can_trim = pt->can_write &&
    json_is_true (json_object_get (j, "can_trim"));
  pt->can_zero = pt->can_write &&
    json_is_true (json_object_get (j, "can_zero"));
  pt->can_fua = pt->can_write && level_on (json_object_get (j, "can_fua"));
  pt->can_cache = level_on (json_object_get (j, "can_cache"));
  pt->dev_zero = fd_is_dev_zero (fd);
  pt->in_memory = pt->dev_zero || fd_in_memory (fd);
  /* Not under --swap: mlockall's MCL_FUTURE would fault in (and for
   * holes, allocate) every page of the mapping at once.
   */
  if (pt->in_memory && !pt->dev_zero && !want_swap &&
      server_debug_flag ("passthrough_mmap", 1))
    pt->map = pt_map_get (fd, pt->size, pt->can_write);
  nbdkit_debug ("%s: passthrough: the front end does the I/O on the "
                "backend's descriptor (%s%s%s%s)", bproc_name (bp),
                pt->dev_zero ? "/dev/zero: zeroes, writes discarded"
                : pt->zero_punch ? "zero by punching holes"
                : "zero by zeroing in place",
                pt->in_memory ? "; in memory: small requests on the loop"
                : "", !pt->map ? ""
                : pt->map->sealed ? "; reads without a copy"
                : pt->map->sendfile && payload_sendfile ()
                ? "; reads without a copy for plain clients (sendfile)" : "",
                pt->map && pt->map->writable
                ? "; writes received in place" : "");
  return pt;
}

void
passthrough_put (struct passthrough *pt)
{
  if (pt && --pt->refs == 0) {
    nbdkit_debug ("passthrough: %" PRIu64 " requests were done in the "
                  "front end on this descriptor, %" PRIu64 " of them on "
                  "the loop's thread (%" PRIu64 " reads without a copy, "
                  "%" PRIu64 " writes received in place)",
                  pt->served, pt->served_inline, pt->served_mapped,
                  pt->served_in_place);
    if (pt->map)
      pt_map_put (pt->map);
    close (pt->fd);
    free (pt);
  }
}

int
passthrough_fd (const struct passthrough *pt)
{
  return pt->fd;
}

/* ---- on a worker thread ---- */

struct pt_job {
  struct passthrough *pt;
  struct freq *r;
  int fd;                       /* pt->fd: the job reads nothing of pt */
  bool zero_punch;
  uint32_t page;
  uint64_t size;
  uint16_t type, flags;
  uint64_t offset;
  uint32_t count;
  void *buf;                    /* PREAD: an arena slot (or malloc'd, as
                                 * bproc_payload_alloc gives); PWRITE:
                                 * r's data; payload_free releases both */
  int err;                      /* errno, set by the worker */
  const char *what;             /* the call that failed */
  bool zeros;                   /* PREAD: a hole, answered HP_FLAG_ZEROS */
  bool locked;                  /* on the loop: page_lock is held already */
  bool dev_zero;                /* pt->dev_zero */
};

/* Does job j count in changes_on_workers?  /dev/zero changes nothing. */
static bool
job_changes_file (const struct pt_job *j)
{
  return changes_file (j->type) && !j->dev_zero;
}

/* A PREAD that may be answered as zeros without data (HP_FLAG_ZEROS,
 * as the backend library does for a hole): is the range a hole of the
 * descriptor?  One lseek; a file system without SEEK_DATA says no.
 */
static bool
range_is_hole (int fd, uint64_t off, uint32_t count)
{
  off_t d = lseek (fd, (off_t) off, SEEK_DATA);

  if (d == -1)
    return errno == ENXIO;      /* no data from off to the end */
  return (uint64_t) d >= off + count;
}

/* Whole-range reads and writes; reads past the end give zeros. */
static int
whole_io (struct pt_job *j, bool write, void *buf, uint64_t n,
          uint64_t off)
{
  while (n > 0) {
    /* never-blocks: whole_io runs on a worker thread (job_work) */
    ssize_t r = write ? pwrite (j->fd, buf, n, (off_t) off)
      : pread (j->fd, buf, n, (off_t) off); /* never-blocks: as above */

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      j->what = write ? "pwrite" : "pread";
      return -1;
    }
    if (r == 0) {
      if (write) {
        errno = ENOSPC;
        j->what = "pwrite";
        return -1;
      }
      memset (buf, 0, n);
      return 0;
    }
    buf = (char *) buf + r;
    n -= (uint64_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

/* A tmpfs punch makes every page fault in its range wait until it is
 * over -- the loop's too, writing a reply from the mapping: so a large
 * range is punched a MiB at a time.
 */
#define PUNCH_CHUNK (1 << 20)

static int
punch_at (struct pt_job *j, uint64_t off, uint64_t len)
{
  while (len > 0) {
    uint64_t n = len < PUNCH_CHUNK ? len : PUNCH_CHUNK;

    /* never-blocks: on a worker thread (job_work) */
    if (fallocate (j->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   (off_t) off, (off_t) n) == -1)
      return -1;
    off += n;
    len -= n;
  }
  return 0;
}

static int
punch (struct pt_job *j)
{
  return punch_at (j, j->offset, j->count);
}

/* Punch the page [ps, pe) whole if it is all zeroes (under page_lock). */
static int
free_if_zero (struct pt_job *j, uint64_t ps, uint64_t pe)
{
  unsigned char *buf = malloc (pe - ps);
  uint64_t i;
  int r = 0;

  if (!buf)
    return -1;
  if (whole_io (j, false, buf, pe - ps, ps) == -1)
    r = -1;
  else {
    for (i = 0; i < pe - ps && !buf[i]; ++i)
      ;
    /* Past the end of the file too, or tmpfs keeps its tail. */
    if (i == pe - ps &&
        punch_at (j, ps, INT64_MAX - ps < j->page ? pe - ps : j->page) == -1)
      r = -1;
  }
  free (buf);
  return r;
}

/* Zero or trim with pages, as the memory backend's sparse_page_zero:
 * the range becomes a hole, then the pages it covers in part are
 * punched whole if what is left of them is zeroes.
 */
static int
page_zero (struct pt_job *j)
{
  uint64_t page = j->page, off = j->offset, count = j->count;
  uint64_t end, ps, pe, ls, le;
  int r = -1;

  if (off >= j->size || count == 0)
    return 0;
  if (count > j->size - off)
    count = j->size - off;
  end = off + count;
  if (!j->locked)      /* never-blocks: on a worker thread (job_work) */
    pthread_rwlock_wrlock (&page_lock);
  if (punch_at (j, off, end == j->size && j->size <= INT64_MAX - page
                ? count + page : count) == -1)
    goto out;
  ps = off & ~(page - 1);
  pe = ps + page < j->size ? ps + page : j->size;
  if ((off > ps || end < pe) && free_if_zero (j, ps, pe) == -1)
    goto out;
  ls = (end - 1) & ~(page - 1);
  le = ls + page < j->size ? ls + page : j->size;
  if (ls != ps && end < le && free_if_zero (j, ls, le) == -1)
    goto out;
  r = 0;
 out:
  if (!j->locked)
    pthread_rwlock_unlock (&page_lock);
  if (r == -1 && !j->what)
    j->what = "punching a hole";
  return r;
}

static int
write_zeroes (struct pt_job *j)
{
  static const unsigned char zeros[65536];
  uint64_t n = j->count, off = j->offset;

  while (n > 0) {
    uint64_t k = n < sizeof zeros ? n : sizeof zeros;

    if (whole_io (j, true, (void *) zeros, k, off) == -1)
      return -1;
    off += k;
    n -= k;
  }
  return 0;
}

/* ZERO: a hole (zero_punch: always; else with MAY_TRIM, when zeroing in
 * place cannot be done), FALLOC_FL_ZERO_RANGE, or zeroes written --
 * except for a fast zero, which fails with ENOTSUP then.
 */
static int
do_zero (struct pt_job *j)
{
  int r;

  if (j->zero_punch && j->page)
    return page_zero (j);
  if (j->zero_punch)
    r = punch (j);
  else {
    /* never-blocks: on a worker thread (job_work) */
    r = fallocate (j->fd, FALLOC_FL_ZERO_RANGE, (off_t) j->offset,
                   (off_t) j->count);
    if (r == -1 && (errno == EOPNOTSUPP || errno == ENODEV) &&
        (j->flags & HP_FLAG_MAY_TRIM))
      r = punch (j);
  }
  if (r == 0)
    return 0;
  if (errno != EOPNOTSUPP && errno != ENODEV && errno != EINVAL) {
    j->what = "fallocate";
    return -1;
  }
  if (j->flags & HP_FLAG_FAST_ZERO) {
    errno = ENOTSUP;
    j->what = "fast zero";
    return -1;
  }
  return write_zeroes (j);
}

static int
sync_data (struct pt_job *j)
{
  /* never-blocks: on a worker thread (job_work) */
  if (fdatasync (j->fd) == -1 && errno != EINVAL) {
    j->what = "fdatasync";
    return -1;
  }
  return 0;
}

/* /dev/zero: reads are holes, the rest is done as soon as asked. */
static void
dev_zero_work (struct pt_job *j)
{
  if (j->type == HP_PREAD) {
    if (j->flags & HP_FLAG_ZEROS)
      j->zeros = true;
    else
      memset (j->buf, 0, j->count);
  }
  j->err = 0;
}

static void
job_work (void *arg)
{
  struct pt_job *j = arg;
  int r = 0;

  if (j->dev_zero) {
    dev_zero_work (j);
    return;
  }
  switch (j->type) {
  case HP_PREAD:
    if ((j->flags & HP_FLAG_ZEROS) && range_is_hole (j->fd, j->offset,
                                                     j->count)) {
      j->zeros = true;
      break;
    }
    r = whole_io (j, false, j->buf, j->count, j->offset);
    break;
  case HP_PWRITE:
    if (j->page && !j->locked)  /* never-blocks: on a worker thread */
      pthread_rwlock_rdlock (&page_lock);
    r = whole_io (j, true, j->buf, j->count, j->offset);
    if (j->page && !j->locked)
      pthread_rwlock_unlock (&page_lock);
    break;
  case HP_ZERO:
    r = do_zero (j);
    break;
  case HP_TRIM:
    if (j->zero_punch && j->page) {
      r = page_zero (j);
      break;
    }
    /* Advisory, as in the file backend: no holes, the data stays. */
    if (punch (j) == -1 && errno != EOPNOTSUPP && errno != ENODEV) {
      j->what = "punching a hole";
      r = -1;
    }
    break;
  case HP_FLUSH:
    r = sync_data (j);
    break;
  case HP_CACHE:
    r = posix_fadvise (j->fd, (off_t) j->offset, (off_t) j->count,
                       POSIX_FADV_WILLNEED);
    if (r) {
      errno = r;
      j->what = "posix_fadvise";
      r = -1;
    }
    break;
  }
  if (r == 0 && (j->flags & HP_FLAG_FUA) &&
      (j->type == HP_PWRITE || j->type == HP_ZERO || j->type == HP_TRIM))
    r = sync_data (j);
  j->err = r == -1 ? (errno ? errno : EIO) : 0;
}

/* ---- back on the loop ---- */

/* The reply to j's request, and j's buffers released. */
static void
job_reply (struct pt_job *j)
{
  if (j->type == HP_PWRITE)
    payload_free (j->buf);
  if (j->err) {
    char msg[256];

    snprintf (msg, sizeof msg, "passthrough: %s: %s",
              j->what ? j->what : hp_type_name (j->type), strerror (j->err));
    if (j->type == HP_PREAD)
      payload_free (j->buf);
    freq_reply_error (j->r, hp_error_from_errno (j->err), msg);
  }
  else if (j->type == HP_PREAD && j->zeros) {
    payload_free (j->buf);
    freq_reply (j->r, NULL, 0, HP_FLAG_ZEROS);
  }
  else if (j->type == HP_PREAD)
    freq_reply (j->r, j->buf, j->count, 0);
  else
    freq_reply (j->r, NULL, 0, 0);
}

static void
job_done (void *arg)
{
  struct pt_job *j = arg;

  if (job_changes_file (j))
    changes_on_workers--;
  job_reply (j);
  passthrough_put (j->pt);
  free (j);
}

/* Fill in j for r. */
static void
job_init (struct pt_job *j, struct passthrough *pt, struct freq *r)
{
  j->pt = pt;
  j->r = r;
  j->fd = pt->fd;
  j->zero_punch = pt->zero_punch;
  j->page = pt->page;
  j->size = pt->size;
  j->dev_zero = pt->dev_zero;
  j->type = r->type;
  j->flags = r->flags;
  j->offset = r->offset;
  j->count = r->count;
  if (r->type == HP_PWRITE) {
    j->buf = r->data;           /* released in job_reply */
    r->data = NULL;
  }
}

/* A PREAD answered from the mapping (see "Without a copy"), or as a
 * hole; false if it must be read.
 */
static bool
read_mapped (struct passthrough *pt, struct freq *r)
{
  struct pt_map *m = pt->map;
  bool zeros = r->flags & HP_FLAG_ZEROS;
  int in = 1;

  if (!m || r->type != HP_PREAD || r->count < ZERO_COPY_MIN ||
      r->offset > m->len || r->count > m->len - r->offset ||
      changes_on_workers > 0 || swap_on () || !freq_unfiltered (r))
    return false;
  /* Without the seal, only ever sent from the file (sendfile). */
  if (!m->sealed && !(m->sendfile && payload_sendfile () &&
                      freq_from_plain_client (r)))
    return false;
  /* Holes may be answered as zeroes; the mapping itself is only read
   * where every page is there (mincore).
   */
  if (m->sealed || zeros)
    in = pt_map_pages_in_memory (m, r->offset, r->count);
  if (m->sealed && (in == -1 || (in == 0 && !zeros)))
    return false;
  pt->served++;
  pt->served_inline++;
  if (in == 0)                  /* all hole */
    freq_reply (r, NULL, 0, HP_FLAG_ZEROS);
  else {
    m->refs++;                  /* payload_free of the reply: pt_map_put */
    pt->served_mapped++;
    freq_reply (r, m->base + r->offset, r->count, 0);
  }
  return true;
}

/* On the loop's thread (see "Where" above): r done here and now, if
 * its data is in memory, it is small and page_lock is free.  False if
 * it must be a job; true when it was done (or failed).
 */
static bool
run_inline (struct passthrough *pt, struct freq *r)
{
  struct pt_job j = { .locked = false };
  bool lock = false;

  if (pt->dev_zero && (r->type != HP_PREAD || (r->flags & HP_FLAG_ZEROS)) &&
      inline_max () > 0)
    ;                           /* nothing to copy, whatever the size */
  else if (!pt->in_memory || inline_max () == 0 ||
           r->count > inline_max () || swap_on () ||
           (changes_file (r->type) && changes_on_workers > 0) ||
           !inline_budget (r->count))
    return false;
  switch (r->type) {
  case HP_PWRITE:
    lock = pt->page != 0;
    if (lock && pthread_rwlock_tryrdlock (&page_lock) != 0)
      return false;
    break;
  case HP_ZERO:
  case HP_TRIM:
    lock = pt->zero_punch && pt->page != 0;
    if (lock && pthread_rwlock_trywrlock (&page_lock) != 0)
      return false;
    break;
  default:
    break;
  }
  if (r->type == HP_PREAD && r->count > 0 &&
      !(pt->dev_zero && (r->flags & HP_FLAG_ZEROS)) &&
      !(j.buf = bproc_payload_alloc (pt->bp, r->count))) {
    if (lock)
      pthread_rwlock_unlock (&page_lock);
    freq_reply_error (r, HP_ENOMEM, "passthrough: out of memory");
    return true;
  }
  job_init (&j, pt, r);
  j.locked = lock;
  pt->served++;
  pt->served_inline++;
  /* never-blocks: the data is in memory no device backs (run_inline) */
  job_work (&j);
  if (lock)
    pthread_rwlock_unlock (&page_lock);
  job_reply (&j);
  return true;
}

/* ---- writes received in place ---- */

/* -D nbdkit.passthrough_in_place=0 turns it off. */
static bool
in_place_enabled (void)
{
  static int enabled = -1;

  if (enabled == -1)
    enabled = server_debug_flag ("passthrough_in_place", 1) != 0;
  return enabled;
}

/* May a write received in place go on now?  Not while a worker may
 * change a file: a zero of a page (page_zero) reads it and punches it
 * if it is all zeroes, and bytes landing in between would be lost; a
 * worker's write or fallocate holds the inode lock that a pwrite here
 * would wait for, and its punch the page faults in its range.
 */
static bool
in_place_ready (void)
{
  return changes_on_workers == 0;
}

bool
passthrough_write_in_place (struct passthrough *pt, uint16_t flags,
                            uint64_t offset, uint32_t count,
                            struct in_place *ip)
{
  struct pt_map *m = pt->map;

  if (!m || !m->writable || !pt->can_write || count == 0 ||
      ((flags & HP_FLAG_FUA) && !pt->can_fua) ||
      offset > m->len || count > m->len - offset ||
      !in_place_enabled () || swap_on () || !in_place_ready ())
    return false;
  m->refs++;                    /* payload_free of the buffer: pt_map_put */
  ip->buf = m->base + offset;
  ip->fd = m->fd;
  ip->offset = offset;
  ip->ready = in_place_ready;
  return true;
}

/* A PWRITE whose payload was received in place, in pt's file: done. */
static bool
written_in_place (struct passthrough *pt, struct freq *r)
{
  struct pt_map *m = pt->map;

  if (r->type != HP_PWRITE || !m || !m->writable ||
      r->data != m->base + r->offset)
    return false;
  payload_free (r->data);
  r->data = NULL;
  pt->served++;
  pt->served_inline++;
  pt->served_in_place++;
  /* A file in memory (pt_map_get): its fdatasync has nothing to write.
   * never-blocks: as said */
  if ((r->flags & HP_FLAG_FUA) && fdatasync (pt->fd) == -1 &&
      errno != EINVAL) {
    char msg[256];

    snprintf (msg, sizeof msg, "passthrough: fdatasync: %s",
              strerror (errno));
    freq_reply_error (r, hp_error_from_errno (errno), msg);
  }
  else
    freq_reply (r, NULL, 0, 0);
  return true;
}

bool
passthrough_request (struct passthrough *pt, struct freq *r)
{
  struct pt_job *j;
  bool ok;

  switch (r->type) {
  case HP_PREAD: ok = true; break;
  case HP_PWRITE: ok = pt->can_write; break;
  case HP_ZERO: ok = pt->can_zero; break;
  case HP_TRIM: ok = pt->can_trim; break;
  case HP_FLUSH: ok = pt->can_flush; break;
  case HP_CACHE: ok = pt->can_cache; break;
  default: ok = false;          /* EXTENTS: the backend's */
  }
  if (!ok || ((r->flags & HP_FLAG_FUA) && !pt->can_fua))
    return false;
  if (written_in_place (pt, r) || read_mapped (pt, r) ||
      run_inline (pt, r))
    return true;
  /* Out of memory: an error, not the backend (whose writes would not
   * be ordered with the zeroes done here).
   */
  j = calloc (1, sizeof *j);
  /* A read's buffer comes from the arena, as the backend's replies do:
   * its pages are the arena's to keep or give back, not malloc's.
   */
  if (!j || (r->type == HP_PREAD && r->count > 0 &&
             !(j->buf = bproc_payload_alloc (pt->bp, r->count)))) {
    free (j);
    freq_reply_error (r, HP_ENOMEM, "passthrough: out of memory");
    return true;
  }
  job_init (j, pt, r);
  pt->refs++;
  pt->served++;
  if (job_changes_file (j))
    changes_on_workers++;
  worker_submit (job_work, job_done, j);
  return true;
}
