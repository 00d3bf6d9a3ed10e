/* nbdkit front end: the shared-memory arena of the data path.
 *
 * Owns one memfd, sealed against resizing and mapped here for the life
 * of the server, that every incarnation of a backend which offers the
 * "shm" feature maps too (docs/nbdkit-helper-protocol.pod).  Request
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
 * data_alloc / data_free are what the rest of the front end uses for
 * payloads: a slot when the arena can give one, else malloc.
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

static int fd = -1;
static unsigned char *base;
static size_t size, nr_pages;
static uint64_t *used;          /* bitmap, 1 = in use */
static uint16_t *run_pages;     /* at a run's first page: its length */
static size_t hint;             /* no free page below this one */
static size_t pages_in_use;
static bool active;

static void **quarantine;
static size_t nr_quarantine, quarantine_cap;

int
arena_create (size_t bytes)
{
  if (fd >= 0)
    return 0;
  size = bytes & ~(size_t) (PAGE - 1);
  nr_pages = size >> PAGE_SHIFT;
  if (nr_pages == 0 || nr_pages % WORD_BITS != 0 ||
      HP_MAX_DATA / PAGE > UINT16_MAX) {
    errno = EINVAL;
    return -1;
  }
  fd = memfd_create ("nbdkit-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd == -1)
    return -1;
  if (ftruncate (fd, size) == -1 ||
      fcntl (fd, F_ADD_SEALS,
             F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == -1)
    goto err;
  base = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    goto err;
  used = calloc (nr_pages / WORD_BITS, sizeof *used);
  run_pages = calloc (nr_pages, sizeof *run_pages);
  if (!used || !run_pages) {
    munmap (base, size);
    errno = ENOMEM;
    goto err;
  }
  return 0;

 err:
  {
    int e = errno;

    free (used);
    free (run_pages);
    used = NULL;
    run_pages = NULL;
    base = NULL;
    close (fd);
    fd = -1;
    errno = e;
    return -1;
  }
}

int
arena_fd (void)
{
  return fd;
}

size_t
arena_size (void)
{
  return size;
}

void
arena_set_active (bool on)
{
  active = on && fd >= 0;
}

bool
arena_is_active (void)
{
  return active;
}

bool
arena_contains (const void *p)
{
  return base && (const unsigned char *) p >= base &&
         (const unsigned char *) p < base + size;
}

uint64_t
arena_offset (const void *p)
{
  return (const unsigned char *) p - base;
}

size_t
arena_pages_in_use (void)
{
  return pages_in_use;
}

static inline bool
page_used (size_t i)
{
  return used[i / WORD_BITS] >> (i % WORD_BITS) & 1;
}

/* The first page at or after i whose state is want (true: used), or
 * limit if there is none before it.
 */
static size_t
next_page (size_t i, bool want, size_t limit)
{
  while (i < limit) {
    uint64_t w = used[i / WORD_BITS];

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
mark (size_t first, size_t n, bool on)
{
  size_t i;

  for (i = first; i < first + n; ++i) {
    if (on)
      used[i / WORD_BITS] |= UINT64_C(1) << (i % WORD_BITS);
    else
      used[i / WORD_BITS] &= ~(UINT64_C(1) << (i % WORD_BITS));
  }
}

void *
arena_alloc (size_t len)
{
  size_t n, i;

  if (!active || len == 0 || len > HP_MAX_DATA)
    return NULL;
  n = (len + PAGE - 1) >> PAGE_SHIFT;
  i = next_page (hint, false, nr_pages);
  hint = i;
  while (i + n <= nr_pages) {
    size_t end = next_page (i, true, i + n);

    if (end >= i + n) {
      mark (i, n, true);
      run_pages[i] = (uint16_t) n;
      pages_in_use += n;
      if (i == hint)
        hint = i + n;
      return base + ((size_t) i << PAGE_SHIFT);
    }
    i = next_page (end, false, nr_pages);
  }
  return NULL;
}

void
arena_free (void *p)
{
  size_t i, n;

  if (!p)
    return;
  i = arena_offset (p) >> PAGE_SHIFT;
  n = run_pages[i];
  if (n == 0 || (arena_offset (p) & (PAGE - 1)))
    abort ();                   /* not a slot: a bug here */
  run_pages[i] = 0;
  mark (i, n, false);
  pages_in_use -= n;
  if (i < hint)
    hint = i;
}

void
arena_quarantine (void *p)
{
  if (!p)
    return;
  if (nr_quarantine == quarantine_cap) {
    size_t cap = quarantine_cap ? quarantine_cap * 2 : 64;
    void **q = realloc (quarantine, cap * sizeof *q);

    if (!q)
      return;                   /* leaked until exit rather than reused */
    quarantine = q;
    quarantine_cap = cap;
  }
  quarantine[nr_quarantine++] = p;
}

void
arena_release_quarantine (void)
{
  size_t i;

  for (i = 0; i < nr_quarantine; ++i)
    arena_free (quarantine[i]);
  nr_quarantine = 0;
}

void *
data_alloc (size_t len)
{
  void *p = arena_alloc (len);

  return p ? p : malloc (len ? len : 1);
}

void
data_free (void *p)
{
  if (arena_contains (p))
    arena_free (p);
  else
    free (p);
}
