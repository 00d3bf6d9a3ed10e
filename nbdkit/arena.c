/* nbdkit front end: the shared-memory arena of the data path.
 *
 * Owns struct arena: one memfd, sealed against resizing and mapped here
 * for the life of the server, that every incarnation of one backend
 * process (struct backend_proc) which offers the "shm" feature maps
 * too (docs/nbdkit-helper-protocol.pod).  Request
 * payloads live in slots of it: a client's write is read straight into
 * a slot and the backend reads it from there; a backend fills a read's
 * slot and the client's reply is written from it.  No byte is copied
 * through the channel.
 *
 * The allocator hands out runs of pages, first fit from the lowest
 * address (so that the pages a busy server touches stay few), with a
 * bitmap of used pages and the length of each run at its first page.
 * Everything runs on the loop thread.
 *
 * Slots that a dead or dying backend may still write are quarantined:
 * they return to the free pool only once that process has exited.
 *
 * Pages once touched stay in memory (in the memfd, counted in both
 * processes' RSS) until given back: the lowest ARENA_KEEP bytes, where
 * first fit keeps a steady load, stay; the pages of a slot freed above
 * them are given back at once (MADV_REMOVE), so a burst of large
 * requests does not leave the server holding the burst's memory.
 *
 * Every arena is listed here, so that payload_free releases any payload
 * -- a slot of whichever arena, or malloc'd memory -- without its
 * caller knowing which: the arena is a property of how the bottom
 * layer of the chain allocates buffers, invisible above it.  So are
 * the other ranges a payload may point into without being a buffer of
 * its own (payload_range_add: passthrough.c's mappings of files):
 * payload_free then tells the owner of the range (release) instead,
 * and payload_in_file tells a stream that such a payload can be sent
 * from the file itself (sendfile).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define PAGE_SHIFT 12
#define PAGE (1u << PAGE_SHIFT)
#define WORD_BITS 64
#define ARENA_KEEP ((size_t) 32 << 20)

struct arena {
  struct arena *next;           /* every arena, for payload_free */
  int fd;
  unsigned char *base;
  size_t size, nr_pages;
  uint64_t *used;               /* bitmap, 1 = in use */
  uint16_t *run_pages;          /* at a run's first page: its length */
  size_t hint;                  /* no free page below this one */
  size_t pages_in_use;
  bool active;
  void **quarantine;
  size_t nr_quarantine, quarantine_cap;
};

static struct arena *arenas;

struct payload_range {
  struct payload_range *next;
  const char *lo, *hi;
  void (*release) (void *opaque);
  void *opaque;
  int fd;                       /* the file mapped, or -1 */
};
static struct payload_range *ranges;

int
payload_range_add (const void *lo, size_t len, void (*release) (void *),
                   void *opaque, int fd)
{
  struct payload_range *r = malloc (sizeof *r);

  if (!r)
    return -1;
  r->lo = lo;
  r->hi = (const char *) lo + len;
  r->release = release;
  r->opaque = opaque;
  r->fd = fd;
  r->next = ranges;
  ranges = r;
  return 0;
}

bool
payload_sendfile (void)
{
  static int enabled = -1;

  if (enabled == -1)
    enabled = server_debug_flag ("passthrough_sendfile", 1) != 0;
  return enabled;
}

bool
payload_in_file (const void *p, int *fd, uint64_t *offset)
{
  struct payload_range *r;

  if (!payload_sendfile ())
    return false;
  for (r = ranges; r; r = r->next)
    if ((const char *) p >= r->lo && (const char *) p < r->hi) {
      if (r->fd == -1)
        return false;
      *fd = r->fd;
      *offset = (uint64_t) ((const char *) p - r->lo);
      return true;
    }
  return false;
}

void
payload_range_remove (const void *lo)
{
  struct payload_range **pp, *r;

  for (pp = &ranges; (r = *pp) != NULL; pp = &r->next)
    if (r->lo == lo) {
      *pp = r->next;
      free (r);
      return;
    }
}

struct arena *
arena_create (size_t bytes)
{
  struct arena *a;
  int e;

  bytes &= ~(size_t) (PAGE - 1);
  if (bytes == 0 || (bytes >> PAGE_SHIFT) % WORD_BITS != 0 ||
      HP_MAX_DATA / PAGE > UINT16_MAX) {
    errno = EINVAL;
    return NULL;
  }
  a = calloc (1, sizeof *a);
  if (!a)
    return NULL;
  a->size = bytes;
  a->nr_pages = bytes >> PAGE_SHIFT;
  a->base = MAP_FAILED;
  a->fd = memfd_create ("nbdkit-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (a->fd == -1)
    goto err;
  if (ftruncate (a->fd, a->size) == -1 ||
      fcntl (a->fd, F_ADD_SEALS,
             F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == -1)
    goto err;
  a->base = mmap (NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd,
                  0);
  if (a->base == MAP_FAILED)
    goto err;
  a->used = calloc (a->nr_pages / WORD_BITS, sizeof *a->used);
  a->run_pages = calloc (a->nr_pages, sizeof *a->run_pages);
  if (!a->used || !a->run_pages) {
    errno = ENOMEM;
    goto err;
  }
  a->next = arenas;
  arenas = a;
  return a;

 err:
  e = errno;
  if (a->base != MAP_FAILED)
    munmap (a->base, a->size);
  if (a->fd >= 0)
    close (a->fd);
  free (a->used);
  free (a->run_pages);
  free (a);
  errno = e;
  return NULL;
}

int
arena_fd (const struct arena *a)
{
  return a ? a->fd : -1;
}

size_t
arena_size (const struct arena *a)
{
  return a ? a->size : 0;
}

void
arena_set_active (struct arena *a, bool on)
{
  if (a)
    a->active = on;
}

bool
arena_is_active (const struct arena *a)
{
  return a && a->active;
}

bool
arena_contains (const struct arena *a, const void *p)
{
  return a && (const unsigned char *) p >= a->base &&
         (const unsigned char *) p < a->base + a->size;
}

uint64_t
arena_offset (const struct arena *a, const void *p)
{
  return (const unsigned char *) p - a->base;
}

size_t
arena_pages_in_use (const struct arena *a)
{
  return a ? a->pages_in_use : 0;
}

/* The first page at or after i whose state is want (true: used), or
 * limit if there is none before it.
 */
static size_t
next_page (const struct arena *a, size_t i, bool want, size_t limit)
{
  while (i < limit) {
    uint64_t w = a->used[i / WORD_BITS];

    if (!want)
      w = ~w;
    w &= ~UINT64_C(0) << (i % WORD_BITS);
    if (w) {
      i = (i & ~(size_t) (WORD_BITS - 1)) + __builtin_ctzll (w);
      return i < limit ? i : limit;
    }
    i = (i | (WORD_BITS - 1)) + 1;
  }
  return limit;
}

static void
mark (struct arena *a, size_t first, size_t n, bool on)
{
  size_t i;

  for (i = first; i < first + n; ++i) {
    if (on)
      a->used[i / WORD_BITS] |= UINT64_C(1) << (i % WORD_BITS);
    else
      a->used[i / WORD_BITS] &= ~(UINT64_C(1) << (i % WORD_BITS));
  }
}

void *
arena_alloc (struct arena *a, size_t len)
{
  size_t n, i;

  if (!a || !a->active || len == 0 || len > HP_MAX_DATA)
    return NULL;
  n = (len + PAGE - 1) >> PAGE_SHIFT;
  i = next_page (a, a->hint, false, a->nr_pages);
  a->hint = i;
  while (i + n <= a->nr_pages) {
    size_t end = next_page (a, i, true, i + n);

    if (end >= i + n) {
      mark (a, i, n, true);
      a->run_pages[i] = (uint16_t) n;
      a->pages_in_use += n;
      if (i == a->hint)
        a->hint = i + n;
      return a->base + ((size_t) i << PAGE_SHIFT);
    }
    i = next_page (a, end, false, a->nr_pages);
  }
  return NULL;
}

void
arena_free (struct arena *a, void *p)
{
  size_t i, n;

  if (!p)
    return;
  i = arena_offset (a, p) >> PAGE_SHIFT;
  n = a->run_pages[i];
  if (n == 0 || (arena_offset (a, p) & (PAGE - 1)))
    abort ();                   /* not a slot: a bug here */
  a->run_pages[i] = 0;
  mark (a, i, n, false);
  a->pages_in_use -= n;
  if (i < a->hint)
    a->hint = i;
  if (((i + n) << PAGE_SHIFT) > ARENA_KEEP) {
    size_t first = i > (ARENA_KEEP >> PAGE_SHIFT) ? i
                   : ARENA_KEEP >> PAGE_SHIFT;

    /* Give the pages back (failure only leaves them in memory). */
    madvise (a->base + (first << PAGE_SHIFT), (i + n - first) << PAGE_SHIFT,
             MADV_REMOVE);
  }
}

void
arena_quarantine (struct arena *a, void *p)
{
  if (!p || !a)
    return;
  if (a->nr_quarantine == a->quarantine_cap) {
    size_t cap = a->quarantine_cap ? a->quarantine_cap * 2 : 64;
    void **q = realloc (a->quarantine, cap * sizeof *q);

    if (!q)
      return;                   /* leaked until exit rather than reused */
    a->quarantine = q;
    a->quarantine_cap = cap;
  }
  a->quarantine[a->nr_quarantine++] = p;
}

void
arena_release_quarantine (struct arena *a)
{
  size_t i;

  if (!a)
    return;
  for (i = 0; i < a->nr_quarantine; ++i)
    arena_free (a, a->quarantine[i]);
  a->nr_quarantine = 0;
}

void *
arena_payload_alloc (struct arena *a, size_t len)
{
  void *p = arena_alloc (a, len);

  return p ? p : malloc (len ? len : 1);
}

void
payload_free (void *p)
{
  struct arena *a;

  struct payload_range *r;

  if (!p)
    return;
  for (r = ranges; r; r = r->next)
    if ((const char *) p >= r->lo && (const char *) p < r->hi) {
      r->release (r->opaque);
      return;
    }
  for (a = arenas; a; a = a->next)
    if (arena_contains (a, p)) {
      arena_free (a, p);
      return;
    }
  free (p);
}
