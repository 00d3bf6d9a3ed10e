/* nbdkit null backend: a disk of a given size that reads as zeroes and
 * throws writes away.  Useful for testing and benchmarking clients and
 * the server itself.
 *
 * Those are the semantics of /dev/zero, so each handle offers the
 * server /dev/zero as its passthrough descriptor: the server then
 * answers data requests itself, without a message to this process
 * (docs/nbdkit-performance.pod, PASSTHROUGH).  The callbacks below
 * still serve every request when the server does not take it.
 */

#include <config.h>

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "nbdkit-backend.h"

static int64_t size = 0;

static int
null_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  nbdkit_error ("unknown parameter '%s' (the null backend takes size=SIZE)",
                key);
  return -1;
}

static int zero_fd = -1;        /* /dev/zero, or -1: no passthrough */

static int
null_get_ready (void)
{
  zero_fd = open ("/dev/zero", O_RDWR | O_CLOEXEC);
  if (zero_fd == -1)
    nbdkit_debug ("/dev/zero: %m: no passthrough");
  return 0;
}

static void *
null_open (int readonly)
{
  if (zero_fd >= 0)
    nbdkit_passthrough_fd (zero_fd, 0, 0);
  return &size;
}

static int64_t
null_get_size (void *handle)
{
  return size;
}

static int null_yes (void *handle) { return 1; }
static int null_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int null_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
null_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  memset (buf, 0, count);
  return 0;
}

static int
null_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  return 0;
}

static int
null_flush (void *handle, uint32_t flags)
{
  return 0;
}

static int
null_discard (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static int
null_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  return nbdkit_add_extent (extents, offset, count,
                            NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
}

static struct nbdkit_backend null_backend = {
  .name = "null",
  .longname = "nbdkit null backend",
  .version = PACKAGE_VERSION,
  .description = "A disk that reads as zeroes and discards writes.",
  .config_help = "size=<SIZE>  The size of the disk (default 0), "
                 "e.g. 1G.",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = null_config,
  .get_ready = null_get_ready,
  .open = null_open,
  .get_size = null_get_size,
  .can_multi_conn = null_yes,
  .can_fast_zero = null_yes,
  .can_fua = null_fua,
  .can_cache = null_cache,
  .pread = null_pread,
  .pwrite = null_pwrite,
  .flush = null_flush,
  .trim = null_discard,
  .zero = null_discard,
  .cache = null_discard,
  .extents = null_extents,
};

NBDKIT_REGISTER_BACKEND (null_backend)
