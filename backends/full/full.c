/* nbdkit full backend: a disk that is always full.  It reads as
 * zeroes, and every write, trim and zero request fails with ENOSPC, as
 * a disk with no space left would; flush succeeds (there is nothing to
 * flush).  For testing how clients handle ENOSPC.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "nbdkit-backend.h"

static int64_t size = -1;

static int
full_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  nbdkit_error ("unknown parameter '%s' (the full backend takes only "
                "size=SIZE)", key);
  return -1;
}

static int
full_config_complete (void)
{
  if (size == -1) {
    nbdkit_error ("the size of the disk is required, e.g. "
                  "'nbdkit full 1G' or size=1G");
    return -1;
  }
  return 0;
}

static void *
full_open (int readonly)
{
  return &size;
}

static int64_t
full_get_size (void *handle)
{
  return size;
}

static int full_yes (void *handle) { return 1; }
static int full_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int full_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
full_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  memset (buf, 0, count);
  return 0;
}

static int
full_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  nbdkit_error ("write of %" PRIu32 " bytes at offset %" PRIu64
                ": no space left on device", count, offset);
  nbdkit_set_error (ENOSPC);
  return -1;
}

static int
full_nospace (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  nbdkit_error ("%" PRIu32 " bytes at offset %" PRIu64
                ": no space left on device", count, offset);
  nbdkit_set_error (ENOSPC);
  return -1;
}

static int
full_flush (void *handle, uint32_t flags)
{
  return 0;
}

static int
full_noop (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static int
full_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  return nbdkit_add_extent (extents, offset, count,
                            NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
}

static struct nbdkit_backend full = {
  .name = "full",
  .longname = "nbdkit full backend",
  .version = PACKAGE_VERSION,
  .description = "A disk that reads as zeroes and is always full: "
                 "writes fail with ENOSPC.",
  .config_help = "size=<SIZE>  (required) The size of the disk, e.g. 1G.",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = full_config,
  .config_complete = full_config_complete,
  .open = full_open,
  .get_size = full_get_size,
  .can_multi_conn = full_yes,
  .can_fast_zero = full_yes,
  .can_fua = full_fua,
  .can_cache = full_cache,
  .pread = full_pread,
  .pwrite = full_pwrite,
  .flush = full_flush,
  .trim = full_nospace,
  .zero = full_nospace,
  .cache = full_noop,
  .extents = full_extents,
};

NBDKIT_REGISTER_BACKEND (full)
