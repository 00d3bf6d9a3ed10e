/* nbdkit pattern backend: a read-only disk whose every 8-byte word
 * holds its own byte offset as a 64-bit big-endian integer, so that any
 * byte read says where it came from.  No state: everything is computed
 * from the offset.  (A size that is not a multiple of 8 cuts the last
 * word short.)  No extents callback, as nbdkit's pattern plugin has
 * none: the server reports the whole disk as data.
 */

#include <config.h>

#include <endian.h>
#include <string.h>

#include "nbdkit-backend.h"

static int64_t size = -1;

static int
pattern_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  nbdkit_error ("unknown parameter '%s' (the pattern backend takes only "
                "size=SIZE)", key);
  return -1;
}

static int
pattern_config_complete (void)
{
  if (size == -1) {
    nbdkit_error ("the size of the disk is required, e.g. "
                  "'nbdkit pattern 1G' or size=1G");
    return -1;
  }
  return 0;
}

static void *
pattern_open (int readonly)
{
  return &size;
}

static int64_t
pattern_get_size (void *handle)
{
  return size;
}

static int pattern_yes (void *handle) { return 1; }
static int pattern_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
pattern_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
               uint32_t flags)
{
  unsigned char *p = buf;

  while (count > 0) {
    uint64_t word = offset & ~UINT64_C (7);
    uint64_t be = htobe64 (word);
    uint32_t skip = offset - word;
    uint32_t n = 8 - skip;

    if (n > count)
      n = count;
    memcpy (p, (unsigned char *) &be + skip, n);
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
pattern_noop (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static struct nbdkit_backend pattern = {
  .name = "pattern",
  .longname = "nbdkit pattern backend",
  .version = PACKAGE_VERSION,
  .description = "A read-only disk whose 8-byte words hold their own "
                 "offsets (big-endian).",
  .config_help = "[size=]<SIZE>  (required) The size of the disk, e.g. 1G "
                 "(suffixes k, M, G, T, P, E).",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = pattern_config,
  .config_complete = pattern_config_complete,
  .open = pattern_open,
  .get_size = pattern_get_size,
  .can_multi_conn = pattern_yes,
  .can_cache = pattern_cache,
  .pread = pattern_pread,
  .cache = pattern_noop,
};

NBDKIT_REGISTER_BACKEND (pattern)
