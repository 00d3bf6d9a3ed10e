/* nbdkit sparse-random backend: a sparse test disk of runs of random
 * data and runs of holes, as nbdkit's sparse-random plugin.
 *
 * Owns the shape of the disk and its bytes.  The disk is cut in blocks
 * of 4 KiB; at start-up the runs of data blocks are drawn from the seed
 * (run lengths geometric, of mean runlength= for data and of the mean
 * that makes percent= of the disk data for holes) and kept as a sorted
 * list.  A data block holds one non-zero byte repeated, or with
 * random-content=true random bytes, each computed from the seed and its
 * offset, so nothing is stored but the list of runs.  Block status
 * reports the runs; a write must write what is there, a trim or zero
 * must cover only holes (else EIO), as in nbdkit, so a copy of the disk
 * onto itself tests a copying program.  Without seed=, a seed is chosen
 * once and kept in the server's memfd, so that a restarted backend
 * serves the same disk.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit-backend.h"

#define BLOCK 4096
/* The most data runs the list may hold (16 bytes each: 128 MiB). */
#define MAX_RUNS (8 * 1024 * 1024)

static int64_t size = -1;
static uint32_t seed;
static bool seed_given;
static double percent = 10;
static int64_t runlength = 16 * 1024 * 1024;
static bool random_content;

/* The data runs, in blocks: [start[i], end[i]), sorted, disjoint. */
static uint64_t *run_start, *run_end;
static size_t nr_runs;

static int
sparse_random_config (const char *key, const char *value)
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
  if (strcmp (key, "percent") == 0) {
    char *end;

    errno = 0;
    percent = strtod (value, &end);
    if (errno || end == value || *end || !isfinite (percent) ||
        percent < 0 || percent > 100) {
      nbdkit_error ("percent=%s: the percentage of data must be a number "
                    "from 0 to 100 (e.g. 10 or 2.5)", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "runlength") == 0) {
    runlength = nbdkit_parse_size (value);
    if (runlength == -1)
      return -1;
    if (runlength == 0) {
      nbdkit_error ("runlength=%s: the average length of a run of data "
                    "must be more than 0 bytes (e.g. 16M)", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "random-content") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    random_content = r;
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the sparse-random backend takes "
                "size=, seed=, percent=, runlength= and random-content=)",
                key);
  return -1;
}

/* The seed when none was given: chosen once per server, kept in the
 * memfd (4 bytes, big-endian) that outlives this process.
 */
static int
choose_seed (void)
{
  int fd = nbdkit_memfd ();
  uint32_t be;
  struct stat st;

  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size == 4 &&
      pread (fd, &be, 4, 0) == 4) {
    seed = be32toh (be);
    return 0;
  }
  if (getrandom (&seed, sizeof seed, 0) != sizeof seed)
    seed = (uint32_t) time (NULL) ^ (uint32_t) getpid ();
  be = htobe32 (seed);
  if (fd >= 0 && pwrite (fd, &be, 4, 0) != 4) {
    nbdkit_error ("cannot keep the random seed in the memfd: %m");
    return -1;
  }
  return 0;
}

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* A run length in blocks, geometric with the given mean (>= 1). */
static uint64_t
draw_run (uint64_t *state, double mean)
{
  double u, len;

  if (mean <= 1)
    return 1;
  u = ((splitmix64 (state) >> 11) + 1) * 0x1.0p-53;    /* (0, 1] */
  len = 1 + floor (log (u) / log1p (-1 / mean));
  return len >= 0x1p62 ? UINT64_C (1) << 62 : (uint64_t) len;
}

static int
add_run (uint64_t start, uint64_t end, size_t *alloc)
{
  if (nr_runs == *alloc) {
    size_t n = *alloc ? *alloc * 2 : 64;
    uint64_t *s, *e;

    if (nr_runs >= MAX_RUNS) {
      nbdkit_error ("the disk would have more than %d runs of data: use a "
                    "larger runlength= (it is %" PRId64 ") or a smaller "
                    "size=", MAX_RUNS, runlength);
      return -1;
    }
    if (!(s = realloc (run_start, n * sizeof *s))) {
      nbdkit_error ("out of memory");
      return -1;
    }
    run_start = s;
    if (!(e = realloc (run_end, n * sizeof *e))) {
      nbdkit_error ("out of memory");
      return -1;
    }
    run_end = e;
    *alloc = n;
  }
  run_start[nr_runs] = start;
  run_end[nr_runs++] = end;
  return 0;
}

/* Draw the runs: alternately data and holes, starting with data with
 * the probability of data.
 */
static int
make_runs (void)
{
  uint64_t nblocks = ((uint64_t) size + BLOCK - 1) / BLOCK, b = 0;
  uint64_t state = UINT64_C (0x5eed000000000000) | seed;
  double mean_data = (double) runlength / BLOCK;
  double mean_hole = percent > 0 ? mean_data * (100 - percent) / percent : 0;
  size_t alloc = 0;
  bool data;

  if (mean_data < 1)
    mean_data = 1;
  if (percent == 0)
    return 0;
  if (percent == 100)
    return nblocks ? add_run (0, nblocks, &alloc) : 0;
  /* Refuse at once a disk whose expected number of runs is too many. */
  if (mean_hole >= 1 && nblocks / (mean_data + mean_hole) > MAX_RUNS) {
    nbdkit_error ("the disk would have about %.0f runs of data, more than "
                  "%d: use a larger runlength= (it is %" PRId64 ") or a "
                  "smaller size=", nblocks / (mean_data + mean_hole),
                  MAX_RUNS, runlength);
    return -1;
  }
  data = (splitmix64 (&state) >> 11) * 0x1.0p-53 * 100 < percent;
  while (b < nblocks) {
    uint64_t n = draw_run (&state, data ? mean_data : mean_hole);

    if (n > nblocks - b)
      n = nblocks - b;
    if (data && add_run (b, b + n, &alloc) == -1)
      return -1;
    b += n;
    data = !data;
  }
  return 0;
}

static int
sparse_random_config_complete (void)
{
  if (size == -1) {
    nbdkit_error ("the size of the disk is required, e.g. "
                  "'nbdkit sparse-random 1G' or size=1G");
    return -1;
  }
  if (!seed_given && choose_seed () == -1)
    return -1;
  nbdkit_debug ("sparse-random: seed=%" PRIu32, seed);
  if (make_runs () == -1)
    return -1;
  nbdkit_debug ("sparse-random: %zu runs of data", nr_runs);
  return 0;
}

static void
sparse_random_unload (void)
{
  free (run_start);
  free (run_end);
}

static void *
sparse_random_open (int readonly)
{
  return &size;
}

static int64_t
sparse_random_get_size (void *handle)
{
  return size;
}

static int sparse_random_yes (void *handle) { return 1; }
static int sparse_random_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int sparse_random_cache_level (void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

/* The first run that ends after block b. */
static size_t
find_run (uint64_t b)
{
  size_t lo = 0, hi = nr_runs;

  while (lo < hi) {
    size_t mid = (lo + hi) / 2;

    if (run_end[mid] <= b)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The data of [offset, offset+n), all inside one data run. */
static void
fill_data (unsigned char *p, uint32_t n, uint64_t offset)
{
  uint32_t i = 0;

  if (!random_content) {
    while (i < n) {
      uint64_t blk = (offset + i) / BLOCK, x = ((uint64_t) seed << 32) ^ blk;
      uint32_t k = BLOCK - (offset + i) % BLOCK;

      if (k > n - i)
        k = n - i;
      memset (p + i, 1 + splitmix64 (&x) % 255, k);
      i += k;
    }
    return;
  }
  while (i < n) {
    uint64_t word = (offset + i) / 8;
    uint64_t x = ((uint64_t) seed << 32) ^ (word * UINT64_C (0x9e3779b97f4a7c15));
    uint64_t v = htole64 (splitmix64 (&x));
    uint32_t at = (offset + i) % 8, k = 8 - at;

    if (k > n - i)
      k = n - i;
    memcpy (p + i, (unsigned char *) &v + at, k);
    i += k;
  }
}

/* Call fn on each piece of [offset, offset+count): data or hole. */
typedef int (*piece_fn) (unsigned char *p, uint32_t n, uint64_t offset,
                         bool data, void *opaque);

static int
for_each_piece (uint32_t count, uint64_t offset, unsigned char *buf,
                piece_fn fn, void *opaque)
{
  uint64_t end = offset + count;
  size_t i = find_run (offset / BLOCK);

  while (offset < end) {
    uint64_t ds = i < nr_runs ? run_start[i] * BLOCK : end;
    uint64_t de = i < nr_runs ? run_end[i] * BLOCK : end;
    uint64_t stop;
    bool data = ds <= offset;

    stop = data ? (de < end ? de : end) : (ds < end ? ds : end);
    if (fn (buf ? buf + (count - (end - offset)) : NULL, stop - offset,
            offset, data, opaque) == -1)
      return -1;
    offset = stop;
    if (data)
      i++;
  }
  return 0;
}

static int
piece_read (unsigned char *p, uint32_t n, uint64_t offset, bool data,
            void *opaque)
{
  if (data)
    fill_data (p, n, offset);
  else
    memset (p, 0, n);
  return 0;
}

static int
sparse_random_pread (void *handle, void *buf, uint32_t count,
                     uint64_t offset, uint32_t flags)
{
  return for_each_piece (count, offset, buf, piece_read, NULL);
}

static int
piece_check (unsigned char *p, uint32_t n, uint64_t offset, bool data,
             void *opaque)
{
  unsigned char expect[BLOCK];
  uint32_t done = 0, i;

  while (done < n) {
    uint32_t k = n - done < BLOCK ? n - done : BLOCK;

    piece_read (expect, k, offset + done, data, NULL);
    if (memcmp (p + done, expect, k) != 0) {
      for (i = 0; p[done + i] == expect[i]; i++)
        ;
      nbdkit_error ("write at offset %" PRIu64 " differs from the data of "
                    "the disk: data written does not match expected (the "
                    "sparse-random disk cannot be changed)",
                    offset + done + i);
      nbdkit_set_error (EIO);
      return -1;
    }
    done += k;
  }
  return 0;
}

static int
sparse_random_pwrite (void *handle, const void *buf, uint32_t count,
                      uint64_t offset, uint32_t flags)
{
  return for_each_piece (count, offset, (unsigned char *) buf, piece_check,
                         NULL);
}

static int
piece_hole_only (unsigned char *p, uint32_t n, uint64_t offset, bool data,
                 void *opaque)
{
  if (data) {
    nbdkit_error ("%s at offset %" PRIu64 ": trying to trim or zero "
                  "non-hole in disk (the sparse-random disk cannot be "
                  "changed)", (const char *) opaque, offset);
    nbdkit_set_error (EIO);
    return -1;
  }
  return 0;
}

static int
sparse_random_trim (void *handle, uint32_t count, uint64_t offset,
                    uint32_t flags)
{
  return for_each_piece (count, offset, NULL, piece_hole_only,
                         (void *) "trim");
}

static int
sparse_random_zero (void *handle, uint32_t count, uint64_t offset,
                    uint32_t flags)
{
  return for_each_piece (count, offset, NULL, piece_hole_only,
                         (void *) "zero");
}

static int
sparse_random_flush (void *handle, uint32_t flags)
{
  return 0;                     /* nothing is ever changed */
}

static int
sparse_random_cache (void *handle, uint32_t count, uint64_t offset,
                     uint32_t flags)
{
  return 0;                     /* computed: nothing to fetch */
}

static int
piece_extent (unsigned char *p, uint32_t n, uint64_t offset, bool data,
              void *opaque)
{
  return nbdkit_add_extent (opaque, offset, n,
                            data ? 0
                                 : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
}

static int
sparse_random_extents (void *handle, uint32_t count, uint64_t offset,
                       uint32_t flags, struct nbdkit_extents *extents)
{
  return for_each_piece (count, offset, NULL, piece_extent, extents);
}

static struct nbdkit_backend sparse_random = {
  .name = "sparse-random",
  .longname = "nbdkit sparse-random backend",
  .version = PACKAGE_VERSION,
  .description = "A sparse test disk of runs of random data and holes.",
  .config_help =
    "size=<SIZE>  (required) The size of the disk.\n"
    "seed=<SEED>             Random number generator seed.\n"
    "percent=<PERCENT>       Percentage of data (default 10).\n"
    "runlength=<BYTES>       Average length of a run of data (default 16M).\n"
    "random-content=true     Fully random content in each block.",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = sparse_random_config,
  .config_complete = sparse_random_config_complete,
  .unload = sparse_random_unload,
  .open = sparse_random_open,
  .get_size = sparse_random_get_size,
  .can_multi_conn = sparse_random_yes,
  .can_fua = sparse_random_fua,
  .can_cache = sparse_random_cache_level,
  .pread = sparse_random_pread,
  .pwrite = sparse_random_pwrite,
  .flush = sparse_random_flush,
  .trim = sparse_random_trim,
  .zero = sparse_random_zero,
  .cache = sparse_random_cache,
  .extents = sparse_random_extents,
};

NBDKIT_REGISTER_BACKEND (sparse_random)
