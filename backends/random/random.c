/* nbdkit random backend: a disk of pseudo-random bytes, reproducible
 * from seed=.  Each 8-byte word is a hash of the seed and the word's
 * index (SplitMix64's finalizer), so any range is computed directly
 * from its offset, with no state and no memory.
 *
 * Writes are accepted only when they write exactly what is already
 * there (anything else fails with EIO), so that copying the disk onto
 * itself tests a copying program.  Without seed=, a random seed is
 * chosen once and kept in the server's memfd, so that a restarted
 * backend serves the same bytes.  Not for cryptography.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit-backend.h"

static int64_t size = -1;
static uint64_t seed;
static bool seed_given;

static int
random_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  if (strcmp (key, "seed") == 0) {
    if (nbdkit_parse_uint64_t ("seed", value, &seed) == -1)
      return -1;
    seed_given = true;
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the random backend takes "
                "size=SIZE and seed=NUMBER)", key);
  return -1;
}

/* The seed when none was given: chosen once per server, kept in the
 * memfd (8 bytes, big-endian) that outlives this process.
 */
static int
choose_seed (void)
{
  int fd = nbdkit_memfd ();
  unsigned char b[8];
  struct stat st;

  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size == 8 &&
      pread (fd, b, 8, 0) == 8) {
    memcpy (&seed, b, 8);
    seed = be64toh (seed);
    return 0;
  }
  if (getrandom (&seed, sizeof seed, 0) != sizeof seed)
    seed = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);
  if (fd >= 0) {
    uint64_t be = htobe64 (seed);

    if (pwrite (fd, &be, 8, 0) != 8) {
      nbdkit_error ("cannot keep the random seed in the memfd: %m");
      return -1;
    }
  }
  return 0;
}

static int
random_config_complete (void)
{
  if (size == -1) {
    nbdkit_error ("the size of the disk is required, e.g. "
                  "'nbdkit random 1G' or size=1G");
    return -1;
  }
  if (!seed_given && choose_seed () == -1)
    return -1;
  nbdkit_debug ("random: seed=%" PRIu64, seed);
  return 0;
}

static void *
random_open (int readonly)
{
  return &size;
}

static int64_t
random_get_size (void *handle)
{
  return size;
}

static int random_yes (void *handle) { return 1; }
static int random_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

/* The word at index i (offset 8*i), stored little-endian. */
static uint64_t
word_at (uint64_t i)
{
  uint64_t z = seed + (i + 1) * UINT64_C (0x9e3779b97f4a7c15);

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void
fill (unsigned char *p, uint32_t count, uint64_t offset)
{
  while (count > 0) {
    uint64_t w = htole64 (word_at (offset / 8));
    uint32_t skip = offset % 8;
    uint32_t n = 8 - skip;

    if (n > count)
      n = count;
    memcpy (p, (unsigned char *) &w + skip, n);
    p += n;
    offset += n;
    count -= n;
  }
}

static int
random_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  fill (buf, count, offset);
  return 0;
}

/* A write must not change anything. */
static int
random_pwrite (void *handle, const void *buf, uint32_t count,
               uint64_t offset, uint32_t flags)
{
  const unsigned char *p = buf;
  unsigned char expect[4096];

  while (count > 0) {
    uint32_t n = count < sizeof expect ? count : sizeof expect;
    uint32_t i;

    fill (expect, n, offset);
    if (memcmp (p, expect, n) != 0) {
      for (i = 0; p[i] == expect[i]; i++)
        ;
      nbdkit_error ("write at offset %" PRIu64 " differs from the data "
                    "of the disk (the random disk cannot be changed)",
                    offset + i);
      nbdkit_set_error (EIO);
      return -1;
    }
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
random_flush (void *handle, uint32_t flags)
{
  return 0;
}

static int
random_noop (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static int
random_extents (void *handle, uint32_t count, uint64_t offset,
                uint32_t flags, struct nbdkit_extents *extents)
{
  return nbdkit_add_extent (extents, offset, count, 0);
}

static struct nbdkit_backend random_backend = {
  .name = "random",
  .longname = "nbdkit random backend",
  .version = PACKAGE_VERSION,
  .description = "A disk of pseudo-random data, reproducible from a seed.",
  .config_help = "size=<SIZE>     (required) The size of the disk, e.g. 1G.\n"
                 "seed=<NUMBER>   The random seed, for the same data on "
                 "every run.",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = random_config,
  .config_complete = random_config_complete,
  .open = random_open,
  .get_size = random_get_size,
  .can_multi_conn = random_yes,
  .can_cache = random_cache,
  .pread = random_pread,
  .pwrite = random_pwrite,
  .flush = random_flush,
  .cache = random_noop,
  .extents = random_extents,
};

NBDKIT_REGISTER_BACKEND (random_backend)
