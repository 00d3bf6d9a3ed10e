/* nbdkit front end, filter framework: the temporary files of the
 * filters that keep data of their own (cow's overlay, cache's cache):
 * made in $TMPDIR (or /var/tmp) and unlinked at once, and whole-range
 * I/O on them.
 *
 * Never on the loop's thread: every read, write, hole punched and
 * resize of such a file is a job of the worker pool (worker_submit):
 * the worker does the system calls and nothing else, and the caller's
 * done callback runs back on the loop.  Only tmpfile_create is
 * synchronous: filters call it at get_ready, before the server
 * serves.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../filters/filter.h"

int
tmpfile_create (const char *filter, const char *what)
{
  const char *dir = getenv ("TMPDIR");
  char *path;
  int fd;

  if (!dir || !*dir)
    dir = "/var/tmp";
  if (asprintf (&path, "%s/nbdkit-%s-XXXXXX", dir, filter) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  fd = mkostemp (path, O_CLOEXEC);
  if (fd == -1)
    nbdkit_error ("%s filter: cannot create the %s in %s: %m "
                  "(set TMPDIR to a writable directory)", filter, what, dir);
  else
    unlink (path);
  free (path);
  return fd;
}

/* On a worker thread: whole-range I/O (reads past the end give zeros);
 * -1 with errno.
 */
static int
whole_io (int fd, bool write, void *buf, uint64_t n, uint64_t off)
{
  while (n > 0) {
    /* never-blocks: whole_io runs on a worker thread (job_work) */
    ssize_t r = write ? pwrite (fd, buf, n, (off_t) off)
      : pread (fd, buf, n, (off_t) off);  /* never-blocks: as above */

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      if (write)
        return -1;
      memset (buf, 0, n);       /* beyond what was written: zeros */
      return 0;
    }
    buf = (char *) buf + r;
    n -= (uint64_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

/* On a worker thread: zeros, as a hole where the file system can punch
 * one, else written.
 */
static int
whole_zero (int fd, uint64_t n, uint64_t off)
{
  static const unsigned char zeros[4096];

  /* never-blocks: whole_zero runs on a worker thread (job_work) */
  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) off, (off_t) n) == 0)
    return 0;
  while (n > 0) {
    uint64_t k = n < sizeof zeros ? n : sizeof zeros;

    if (whole_io (fd, true, (void *) zeros, k, off) == -1)
      return -1;
    off += k;
    n -= k;
  }
  return 0;
}

enum tmpfile_op { OP_READ, OP_WRITE, OP_ZERO, OP_TRUNCATE };

struct tmpfile_job {
  enum tmpfile_op op;
  int fd;
  void *buf;
  uint64_t n, off;
  int err;                      /* set by the worker */
  tmpfile_done_fn done;
  void *opaque;
};

/* Jobs whose done has not run (the loop's thread only). */
static unsigned in_flight;

static void
job_work (void *arg)
{
  struct tmpfile_job *j = arg;
  int r;

  switch (j->op) {
  case OP_READ: r = whole_io (j->fd, false, j->buf, j->n, j->off); break;
  case OP_WRITE: r = whole_io (j->fd, true, j->buf, j->n, j->off); break;
  case OP_ZERO: r = whole_zero (j->fd, j->n, j->off); break;
  default: r = ftruncate (j->fd, (off_t) j->n); break;
  }
  j->err = r == -1 ? (errno ? errno : EIO) : 0;
}

static void
job_done (void *arg)
{
  struct tmpfile_job *j = arg;

  in_flight--;
  j->done (j->opaque, j->err);
  free (j);
}

static void
submit (enum tmpfile_op op, int fd, void *buf, uint64_t n, uint64_t off,
        tmpfile_done_fn done, void *opaque)
{
  struct tmpfile_job *j = malloc (sizeof *j);

  if (!j) {
    done (opaque, ENOMEM);      /* the only synchronous completion */
    return;
  }
  j->op = op;
  j->fd = fd;
  j->buf = buf;
  j->n = n;
  j->off = off;
  j->err = 0;
  j->done = done;
  j->opaque = opaque;
  in_flight++;
  worker_submit (job_work, job_done, j);
}

void
tmpfile_io_async (int fd, bool write, void *buf, uint64_t n, uint64_t off,
                  tmpfile_done_fn done, void *opaque)
{
  submit (write ? OP_WRITE : OP_READ, fd, buf, n, off, done, opaque);
}

void
tmpfile_zero_async (int fd, uint64_t n, uint64_t off, tmpfile_done_fn done,
                    void *opaque)
{
  submit (OP_ZERO, fd, NULL, n, off, done, opaque);
}

void
tmpfile_truncate_async (int fd, uint64_t size, tmpfile_done_fn done,
                        void *opaque)
{
  submit (OP_TRUNCATE, fd, NULL, size, 0, done, opaque);
}

void
tmpfile_close (int fd)
{
  /* At unload the loop has stopped: a job still in flight would never
   * report, and its worker may not have done its I/O yet.  Its fd must
   * not be closed (and its number reused) under it: the exit closes it.
   */
  if (fd >= 0 && in_flight == 0)
    close (fd);
}
