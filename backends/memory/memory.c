/* nbdkit memory backend: a sparse RAM disk of up to 2^63-1 bytes.
 *
 * The data lives in a memfd (a file in memory: sparse, holes read as
 * zeroes).  The memfd belongs to the server, which hands the same one
 * to every incarnation of this backend (wants_memfd), so a crash or a
 * SIGKILL of the backend loses nothing.  This file owns the parameters
 * (size=, allocator=) and the callbacks; how pages are allocated,
 * freed and reported follows nbdkit's allocators, in ../sparse-file.c.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"

static int64_t size = -1;
static enum sparse_allocator allocator = ALLOC_SPARSE;
static bool locked;                     /* allocator=malloc,mlock=true */
static int fd = -1;

static int
memory_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  if (strcmp (key, "allocator") == 0)
    return sparse_parse_allocator (value, &allocator, &locked);
  nbdkit_error ("unknown parameter '%s' (the memory backend takes size=SIZE "
                "and allocator=sparse|malloc[,mlock=true])", key);
  return -1;
}

static int
memory_config_complete (void)
{
  struct stat st;

  if (size == -1) {
    nbdkit_error ("the size of the disk is required, e.g. 'nbdkit memory 1G' "
                  "or size=1G");
    return -1;
  }
  if (allocator == ALLOC_MALLOC && sparse_malloc_fits ("memory", size) == -1)
    return -1;
  fd = nbdkit_memfd ();
  if (fd == -1)                 /* run without the server's memfd */
    fd = memfd_create ("nbdkit-memory", MFD_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("memfd_create: %m");
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("fstat: %m");
    return -1;
  }
  /* After a restart the memfd already has the size and the data. */
  if (st.st_size != size && ftruncate (fd, size) == -1) {
    nbdkit_error ("cannot make a memory disk of %" PRId64 " bytes: %m", size);
    return -1;
  }
  /* The size never changes: sealed, the server may map the memfd and
   * answer reads from it without a copy (passthrough).  A memfd that
   * does not allow sealing is simply not sealed.
   */
  if (allocator == ALLOC_SPARSE)
    fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
  if (locked && sparse_mlock ("memory", fd, size) == -1)
    return -1;
  return 0;
}

static void
memory_dump_plugin (void)
{
  printf ("mlock=yes\n");
  printf ("zstd=no\n");
}

/* allocator=sparse: the data is exactly the memfd, holes are zeroes
 * and the sparse array's pages are SPARSE_PAGE, so the server may do
 * the I/O on it itself (passthrough), zeroing as sparse_page_zero
 * does.  Not with allocator=malloc, whose zeroes (written when locked)
 * and extents (all data) are its own.
 */
static void *
memory_open (int readonly)
{
  if (allocator == ALLOC_SPARSE &&
      nbdkit_passthrough_fd (fd, NBDKIT_PASSTHROUGH_ZERO_PUNCH,
                             SPARSE_PAGE) == -1)
    return NULL;
  return &fd;
}

static int64_t
memory_get_size (void *handle)
{
  return size;
}

static int memory_yes (void *handle) { return 1; }
static int memory_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int memory_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
memory_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  return sparse_pread ("memory", fd, buf, count, offset);
}

static int
memory_pwrite (void *handle, const void *buf, uint32_t count,
               uint64_t offset, uint32_t flags)
{
  return sparse_page_pwrite ("memory", fd, buf, count, offset);
}

static int
memory_flush (void *handle, uint32_t flags)
{
  return 0;                     /* memory is as durable as it gets */
}

/* Trim is zero, as in nbdkit: the range reads as zeroes afterwards. */
static int
memory_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (locked)                   /* keep the locked memory */
    return sparse_write_zeroes ("memory", fd, count, offset);
  return sparse_page_zero ("memory", fd, size, count, offset);
}

static int
memory_cache_cb (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  return 0;
}

static int
memory_extents (void *handle, uint32_t count, uint64_t offset,
                uint32_t flags, struct nbdkit_extents *extents)
{
  if (allocator == ALLOC_MALLOC)        /* a flat array: all data */
    return nbdkit_add_extent (extents, offset, count, 0);
  return sparse_page_extents ("memory", fd, size, count, offset, flags,
                              extents);
}

static struct nbdkit_backend memory = {
  .name = "memory",
  .longname = "nbdkit memory backend",
  .version = PACKAGE_VERSION,
  .description = "A sparse RAM disk that survives restarts of the backend.",
  .config_help =
    "size=<SIZE>      (required) The size of the RAM disk, e.g. 1G\n"
    "                 (suffixes k, M, G, T, P, E).\n"
    "allocator=sparse (the default) Sparse, in pages of 32K.\n"
    "allocator=malloc[,mlock=true]\n"
    "                 Not sparse: the whole disk is data; mlock=true\n"
    "                 locks it into RAM.  (allocator=zstd is refused.)",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = memory_config,
  .config_complete = memory_config_complete,
  .dump_plugin = memory_dump_plugin,
  .open = memory_open,
  .get_size = memory_get_size,
  .can_multi_conn = memory_yes,
  .can_fast_zero = memory_yes,
  .can_fua = memory_fua,
  .can_cache = memory_cache,
  .pread = memory_pread,
  .pwrite = memory_pwrite,
  .flush = memory_flush,
  .trim = memory_zero,
  .zero = memory_zero,
  .cache = memory_cache_cb,
  .extents = memory_extents,
};

NBDKIT_REGISTER_BACKEND (memory)
