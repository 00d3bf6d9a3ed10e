/* nbdkit zero backend: a read-only disk of zeroes, of the given size
 * (default 0, the disk of no bytes that the old nbdkit-zero-plugin
 * served).  For a writable disk of zeroes that discards writes, see
 * the null backend.
 */

#include <config.h>

#include <string.h>

#include "nbdkit-backend.h"

static int64_t size = 0;

static int
zero_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  nbdkit_error ("unknown parameter '%s' (the zero backend takes only "
                "size=SIZE)", key);
  return -1;
}

static void *
zero_open (int readonly)
{
  return &size;
}

static int64_t
zero_get_size (void *handle)
{
  return size;
}

static int zero_yes (void *handle) { return 1; }
static int zero_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
zero_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  memset (buf, 0, count);
  return 0;
}

static int
zero_noop (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static struct nbdkit_backend zero_backend = {
  .name = "zero",
  .longname = "nbdkit zero backend",
  .version = PACKAGE_VERSION,
  .description = "A read-only disk of zeroes.",
  .config_help = "size=<SIZE>  The size of the disk (default 0), e.g. 1G.",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = zero_config,
  .open = zero_open,
  .get_size = zero_get_size,
  .can_multi_conn = zero_yes,
  .can_cache = zero_cache,
  .pread = zero_pread,
  .cache = zero_noop,
  /* No extents, as nbdkit's zero plugin: block status says data. */
};

NBDKIT_REGISTER_BACKEND (zero_backend)
