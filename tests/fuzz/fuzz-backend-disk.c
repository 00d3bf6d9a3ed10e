/* The fuzzing harness's disk and exports: the data the stand-in
 * backend (tests/fuzz/fuzz-backend.c) serves, its block states for
 * EXTENTS, and the exports table.  See fuzz-backend-disk.h.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "helper-protocol.h"
#include "fuzz-backend-disk.h"

enum block_state { DATA = 0, HOLE = 1, ZEROS = 2 };

static unsigned char disk[DISK_SIZE], disk0[DISK_SIZE];
static unsigned char state[NR_BLOCKS], state0[NR_BLOCKS];
static bool dirty;

void
disk_init (void)
{
  size_t b, i;

  for (b = 0; b < NR_BLOCKS; ++b) {
    if (b < 64 || (b >= 128 && b < 160) || b >= 240)
      state0[b] = DATA;
    else if (b >= 160 && b < 192)
      state0[b] = ZEROS;
    else
      state0[b] = HOLE;
    if (state0[b] == DATA)
      for (i = 0; i < BLOCK; ++i)
        disk0[b * BLOCK + i] = (unsigned char) (i * 7 + b + 1);
  }
  dirty = true;
}

static uint32_t
extent_type (unsigned char s)
{
  switch (s) {
  case HOLE: return HP_EXTENT_HOLE | HP_EXTENT_ZERO;
  case ZEROS: return HP_EXTENT_ZERO;
  default: return 0;
  }
}

bool
overlaps (uint64_t off, uint64_t cnt, uint64_t start, uint64_t end)
{
  return off < end && off + cnt > start;
}

/* Does [off, off+cnt) read as zeros?  Past the disk is a hole. */
bool
reads_as_zeros (uint64_t off, uint64_t cnt)
{
  uint64_t b;

  if (off >= DISK_SIZE)
    return true;
  for (b = off / BLOCK; b < NR_BLOCKS && b * BLOCK < off + cnt; ++b)
    if (!(extent_type (state[b]) & HP_EXTENT_ZERO))
      return false;
  return true;
}

void
disk_read (unsigned char *buf, uint64_t off, uint64_t cnt)
{
  if (off < DISK_SIZE)
    memcpy (buf, disk + off, cnt < DISK_SIZE - off ? cnt : DISK_SIZE - off);
}

void
disk_write (const unsigned char *buf, uint64_t off, uint64_t cnt)
{
  uint64_t b, n;

  if (off >= DISK_SIZE)
    return;
  n = cnt < DISK_SIZE - off ? cnt : DISK_SIZE - off;
  dirty = true;
  if (buf)
    memcpy (disk + off, buf, n);
  for (b = off / BLOCK; b * BLOCK < off + n; ++b)
    state[b] = DATA;
}

/* Zero a range; blocks wholly inside become HOLE (punch) or ZEROS. */
void
disk_zero (uint64_t off, uint64_t cnt, bool punch)
{
  uint64_t b, n;

  if (off >= DISK_SIZE)
    return;
  n = cnt < DISK_SIZE - off ? cnt : DISK_SIZE - off;
  dirty = true;
  memset (disk + off, 0, n);
  for (b = off / BLOCK; b * BLOCK < off + n; ++b)
    if (b * BLOCK >= off && (b + 1) * BLOCK <= off + n)
      state[b] = punch ? HOLE : ZEROS;
}

bool
any_data (uint64_t off, uint64_t cnt)
{
  return !reads_as_zeros (off, cnt);
}

/* The EXTENTS reply: runs of blocks from off, the last one running on
 * past the end asked for, as real backends answer.
 */
unsigned char *
disk_extents (uint64_t off, uint64_t cnt, uint64_t size, bool req_one,
              uint32_t *len)
{
  unsigned char *buf = malloc ((NR_BLOCKS + 2) * HP_EXTENT_SIZE + 1);
  uint64_t pos = off, end = off + cnt;
  size_t n = 0;

  if (!buf)
    abort ();
  while (pos < end) {
    uint64_t run_end;
    unsigned char s;

    if (pos >= DISK_SIZE) {
      hp_encode_extent (buf + n++ * HP_EXTENT_SIZE, size - pos,
                        HP_EXTENT_HOLE | HP_EXTENT_ZERO);
      break;
    }
    s = state[pos / BLOCK];
    run_end = (pos / BLOCK + 1) * BLOCK;
    while (run_end < DISK_SIZE && state[run_end / BLOCK] == s)
      run_end += BLOCK;
    if (run_end == DISK_SIZE && s == HOLE)
      run_end = size;
    if (run_end > size)
      run_end = size;
    hp_encode_extent (buf + n++ * HP_EXTENT_SIZE, run_end - pos,
                      extent_type (s));
    pos = run_end;
    if (req_one)
      break;
  }
  *len = (uint32_t) (n * HP_EXTENT_SIZE);
  return buf;
}

/* ---- the exports ---- */



#define DISK_CAPS DISK_SIZE, true, true, true, true, true, true, true, false, \
    "native", "emulate", 0, 0, 0, "an in-memory disk"

const struct fx_export exports[] = {
  { "", "disk", DISK_CAPS, OPEN_OK },
  { "disk", "disk", DISK_CAPS, OPEN_OK },
  { "ro", "ro", DISK_SIZE, false, false, false, false, false,
    false, false, true, "false", "none", 512, 4096, 65536, NULL, OPEN_OK },
  { "aligned", "aligned", DISK_SIZE, true, true, false, true, true,
    true, false, false, "emulate", "native", 4096, 65536, 262144,
    "block size constraints", OPEN_OK },
  { "empty", "empty", 0, true, true, true, true, false,
    true, false, false, "none", "none", 0, 0, 0, NULL, OPEN_OK },
  { "huge", "huge", INT64_MAX, true, false, true, false, false,
    true, false, false, "none", "native", 1, 4096, 65536,
    "mostly a hole", OPEN_OK },
  { "denied", "denied", DISK_CAPS, OPEN_DENIED },
  { "broken", "broken", DISK_CAPS, OPEN_BAD_BLOCK_SIZE },
  { "nosize", "nosize", DISK_CAPS, OPEN_NO_SIZE },
  { "flaky", "flaky", DISK_CAPS, OPEN_FLAKY },
  { "stall", "stall", DISK_CAPS, OPEN_OK },
};

const size_t nr_exports = sizeof exports / sizeof exports[0];

const struct fx_export *
find_export (const char *name)
{
  size_t i;

  for (i = 0; i < nr_exports; ++i)
    if (strcmp (exports[i].name, name) == 0)
      return &exports[i];
  return NULL;
}

/* can_fua, can_cache: "none", "emulate", "native", or a boolean
 * written "false" or "true".
 */
bool
level (const char *l)
{
  return strcmp (l, "none") != 0 && strcmp (l, "false") != 0;
}

json_t *
level_json (const char *l)
{
  if (strcmp (l, "false") == 0 || strcmp (l, "true") == 0)
    return json_boolean (l[0] == 't');
  return json_string (l);
}

void
disk_reset (void)
{
  if (dirty) {
    memcpy (disk, disk0, sizeof disk);
    memcpy (state, state0, sizeof state);
    dirty = false;
  }
}
