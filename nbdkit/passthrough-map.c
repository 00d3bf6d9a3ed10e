/* nbdkit front end: the shared mappings of files in memory.
 *
 * Owns struct pt_map: one mapping of each file in memory that
 * passthrough.c was handed (a memfd, or a file on tmpfs), shared by
 * every handle on the file and counted by them, by each reply written
 * from it and by each write received into it; payload_free of a
 * pointer into it drops a reference (payload_range_add).  It is
 * writable when a handle that may write mapped it first, and has a
 * descriptor of its own, for pwrite and for replies sent from the file.
 * A memfd sealed against shrinking (the memory backend's) may be read
 * through the mapping: no one can shrink the file under it.  A file
 * without the seal (the file backend's, on tmpfs) is only touched by
 * the kernel: writes received into it, and replies sent from the file
 * by sendfile (payload_in_file), for which a pointer into the mapping
 * only names the bytes (an error or a short count, never a SIGBUS, if
 * the file was shrunk).
 *
 * A mapping no one uses any more is kept SPARE_SECONDS (the spare, one
 * at a time): a client that comes back finds its pages mapped instead
 * of taking a page fault for each page of the file again.  Taking one
 * down is a worker's job.
 */

#include <config.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "internal.h"
#include "passthrough-map.h"

static struct pt_map *maps;

/* Taking down a large mapping whose pages were faulted in takes
 * milliseconds of page-table work: a worker's job.
 */
static void
unmap_work (void *arg)
{
  struct pt_map *m = arg;

  munmap (m->base, m->len);
  if (m->fd >= 0)
    close (m->fd);
}

static void
map_destroy (struct pt_map *m)
{
  struct pt_map **pp;

  for (pp = &maps; *pp; pp = &(*pp)->next)
    if (*pp == m) {
      *pp = m->next;
      break;
    }
  payload_range_remove (m->base);
  worker_submit (unmap_work, free, m);
}

/* The mapping no one uses any more is kept for SPARE_SECONDS: a client
 * that comes back (a copy, then a check; a benchmark's next job) finds
 * its pages mapped, instead of taking a page fault for each page of
 * the file again.  One at a time: the next one takes its place.
 */
#define SPARE_SECONDS 5.0
static struct pt_map *spare;
static ev_timer spare_timer;

static void
spare_expired (struct ev_loop *l, ev_timer *w, int revents)
{
  if (spare) {
    map_destroy (spare);
    spare = NULL;
  }
}

void
pt_map_put (void *opaque)
{
  struct pt_map *m = opaque;

  if (--m->refs > 0)
    return;
  if (spare)
    map_destroy (spare);
  spare = m;
  ev_timer_stop (loop, &spare_timer);
  ev_timer_init (&spare_timer, spare_expired, SPARE_SECONDS, 0);
  ev_timer_start (loop, &spare_timer);
}

/* Can fd be sent with sendfile?  tmpfs (a memfd is one) splices its
 * pages; hugetlbfs does not.
 */
static bool
fd_splices (int fd)
{
  struct statfs fs;

  return fstatfs (fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

struct pt_map *
pt_map_get (int fd, uint64_t size, bool write)
{
  int seals = fcntl (fd, F_GET_SEALS);
  struct pt_map *m;
  struct stat st;
  void *base;
  bool sealed = seals != -1 && (seals & F_SEAL_SHRINK);
  bool sendfile = !sealed && fd_splices (fd);

  if (size == 0 || size > SIZE_MAX ||
      fstat (fd, &st) == -1 || (uint64_t) st.st_size < size)
    return NULL;
  for (m = maps; m; m = m->next)
    if (m->dev == st.st_dev && m->ino == st.st_ino && m->len >= size &&
        (m->writable || !write) && m->sealed == sealed) {
      if (m == spare) {
        spare = NULL;
        ev_timer_stop (loop, &spare_timer);
      }
      m->refs++;
      return m;
    }
  base = MAP_FAILED;
  if (write)
    base = mmap (NULL, (size_t) size, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  if (base == MAP_FAILED) {
    write = false;
    base = mmap (NULL, (size_t) size, PROT_READ, MAP_SHARED, fd, 0);
  }
  if (base == MAP_FAILED)
    return NULL;
  m = malloc (sizeof *m);
  if (m)
    m->fd = fcntl (fd, F_DUPFD_CLOEXEC, 3);
  if (!m || m->fd == -1 ||
      payload_range_add (base, (size_t) size, pt_map_put, m,
                         sendfile ? m->fd : -1) == -1) {
    if (m && m->fd >= 0)
      close (m->fd);
    free (m);
    munmap (base, (size_t) size);
    return NULL;
  }
  m->writable = write;
  m->sealed = sealed;
  m->sendfile = sendfile;
  m->base = base;
  m->len = (size_t) size;
  m->refs = 1;
  m->dev = st.st_dev;
  m->ino = st.st_ino;
  m->next = maps;
  maps = m;
  return m;
}

int
pt_map_pages_in_memory (const struct pt_map *m, uint64_t off, uint32_t count)
{
  static unsigned char vec[(32 << 20) / 4096 + 2];
  const uint64_t page = 4096;
  uint64_t start = off & ~(page - 1);
  size_t n = (size_t) ((off + count - start + page - 1) / page), i, in = 0;

  if (n > sizeof vec || mincore (m->base + start, n * page, vec) == -1)
    return -1;
  for (i = 0; i < n; ++i)
    in += vec[i] & 1;
  return in == n ? 1 : in == 0 ? 0 : -1;
}

