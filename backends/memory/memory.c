/* nbdkit memory backend: a sparse RAM disk of up to 2^63-1 bytes.
 *
 * The data lives in a memfd (a file in memory: sparse, holes read as
 * zeroes).  The memfd belongs to the server, which hands the same one
 * to every incarnation of this backend (wants_memfd), so a crash or a
 * SIGKILL of the backend loses nothing.  Trimming and zeroing punch
 * holes; extents come from SEEK_DATA and SEEK_HOLE.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"

static int64_t size = -1;
static int fd = -1;

static int
memory_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  nbdkit_error ("unknown parameter '%s' (the memory backend takes size=SIZE)",
                key);
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
  return 0;
}

static void *
memory_open (int readonly)
{
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
  return sparse_pwrite ("memory", fd, buf, count, offset);
}

static int
memory_flush (void *handle, uint32_t flags)
{
  return 0;                     /* memory is as durable as it gets */
}

static int
memory_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return sparse_punch ("memory", fd, count, offset);
}

static int
memory_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return sparse_punch ("memory", fd, count, offset);
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
  return sparse_extents ("memory", fd, count, offset, flags, extents);
}

static struct nbdkit_backend memory = {
  .name = "memory",
  .longname = "nbdkit memory backend",
  .version = PACKAGE_VERSION,
  .description = "A sparse RAM disk that survives restarts of the backend.",
  .config_help = "size=<SIZE>  (required) The size of the RAM disk, "
                 "e.g. 1G (suffixes k, M, G, T, P, E).",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = memory_config,
  .config_complete = memory_config_complete,
  .open = memory_open,
  .get_size = memory_get_size,
  .can_multi_conn = memory_yes,
  .can_fast_zero = memory_yes,
  .can_fua = memory_fua,
  .can_cache = memory_cache,
  .pread = memory_pread,
  .pwrite = memory_pwrite,
  .flush = memory_flush,
  .trim = memory_trim,
  .zero = memory_zero,
  .cache = memory_cache_cb,
  .extents = memory_extents,
};

NBDKIT_REGISTER_BACKEND (memory)
