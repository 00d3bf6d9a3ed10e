/* nbdkit random backend: a disk of pseudo-random bytes, the same bytes
 * as nbdkit's random plugin for the same seed= (a 32-bit number).  The
 * byte at offset i is the low byte of the third output of a
 * xoshiro256** generator whose state is filled by SplitMix64 from
 * seed + i, so any range is computed directly from its offset, with no
 * state and no memory.
 *
 * Writes are accepted only when they write exactly what is already
 * there (anything else fails with EIO), so that copying the disk onto
 * itself tests a copying program; trim and zero always fail with EIO,
 * and there is no flush, FUA or block status (all data), as in nbdkit.
 * Without seed=, a random seed is chosen once and kept in the server's
 * memfd, so that a restarted backend serves the same bytes.  Not for
 * cryptography.
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
static uint32_t seed;
static bool seed_given;

static int
random_config (const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  if (strcmp (key, "seed") == 0) {
    unsigned u;

    if (nbdkit_parse_unsigned ("seed", value, &u) == -1)
      return -1;
    seed = u;
    seed_given = true;
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the random backend takes "
                "size=SIZE and seed=NUMBER)", key);
  return -1;
}

/* The seed when none was given: chosen once per server, kept in the
 * memfd (4 bytes, big-endian) that outlives this process.
 */
static int
choose_seed (void)
{
  int fd = nbdkit_memfd ();
  unsigned char b[4];
  struct stat st;

  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size == 4 &&
      pread (fd, b, 4, 0) == 4) {
    memcpy (&seed, b, 4);
    seed = be32toh (seed);
    return 0;
  }
  if (getrandom (&seed, sizeof seed, 0) != sizeof seed)
    seed = (uint32_t) time (NULL) ^ (uint32_t) getpid ();
  if (fd >= 0) {
    uint32_t be = htobe32 (seed);

    if (pwrite (fd, &be, 4, 0) != 4) {
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
  nbdkit_debug ("random: seed=%" PRIu32, seed);
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

/* SplitMix64: the next output from *x. */
static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: the next output from state s. */
static uint64_t
xoshiro256ss (uint64_t s[4])
{
  const uint64_t r = rotl (s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;

  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return r;
}

/* The byte at offset i. */
static unsigned char
byte_at (uint64_t i)
{
  uint64_t x = (uint64_t) seed + i, s[4];
  int k;

  for (k = 0; k < 4; k++)
    s[k] = splitmix64 (&x);
  xoshiro256ss (s);
  xoshiro256ss (s);
  return xoshiro256ss (s) & 0xff;
}

static void
fill (unsigned char *p, uint32_t count, uint64_t offset)
{
  uint32_t i;

  for (i = 0; i < count; i++)
    p[i] = byte_at (offset + i);
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

/* Trim and zero would change the disk. */
static int
random_trim_zero (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  nbdkit_error ("cannot trim or zero the random disk (it is not sparse "
                "and cannot be changed)");
  nbdkit_set_error (EIO);
  return -1;
}

static int
random_noop (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static struct nbdkit_backend random_backend = {
  .name = "random",
  .longname = "nbdkit random backend",
  .version = PACKAGE_VERSION,
  .description = "A disk of pseudo-random data, reproducible from a seed.",
  .config_help = "[size=]<SIZE>   (required) The size of the disk, e.g. 1G.\n"
                 "seed=<NUMBER>   The random seed (0 to 4294967295), for "
                 "the same data\n"
                 "                on every run, the same as nbdkit random's.",
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
  .trim = random_trim_zero,
  .zero = random_trim_zero,
  .cache = random_noop,
};

NBDKIT_REGISTER_BACKEND (random_backend)
