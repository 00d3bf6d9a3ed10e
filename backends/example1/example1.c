/* nbdkit example1 backend: a small fixed read-only disk, for probing and
 * for trying clients out.  The disk is 1 MiB: an MBR partition table
 * with one Linux partition (sectors 64 to the end), and every other
 * sector filled with a line of text naming the sector, so that a dump
 * of any part of it shows where it came from.  It takes no parameters.
 */

#include <config.h>

#include <stdio.h>
#include <endian.h>
#include <inttypes.h>
#include <string.h>

#include "nbdkit-backend.h"

#define SECTOR 512
#define NR_SECTORS 2048                 /* 1 MiB */
#define PART_START 64

static void
mbr (unsigned char *s)
{
  unsigned char *e = s + 0x1be;         /* the first partition entry */
  uint32_t start = PART_START, len = NR_SECTORS - PART_START;

  memset (s, 0, SECTOR);
  memcpy (s + 3, "nbdkit example1", 15);
  e[4] = 0x83;                          /* Linux */
  memcpy (e + 8, &(uint32_t) { htole32 (start) }, 4);
  memcpy (e + 12, &(uint32_t) { htole32 (len) }, 4);
  e[1] = 0xfe; e[2] = 0xff; e[3] = 0xff;    /* CHS: use LBA */
  e[5] = 0xfe; e[6] = 0xff; e[7] = 0xff;
  s[510] = 0x55;
  s[511] = 0xaa;
}

static void
sector (uint64_t n, unsigned char *s)
{
  char line[64];
  int len;
  size_t i;

  if (n == 0) {
    mbr (s);
    return;
  }
  len = snprintf (line, sizeof line, "nbdkit example1: sector %" PRIu64 "\n",
                  n);
  for (i = 0; i < SECTOR; ++i)
    s[i] = line[i % len];
}

static void *
example1_open (int readonly)
{
  return (void *) "example1";
}

static int64_t
example1_get_size (void *handle)
{
  return (int64_t) NR_SECTORS * SECTOR;
}

static int
example1_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  unsigned char *p = buf, s[SECTOR];

  while (count > 0) {
    uint64_t n = offset / SECTOR;
    uint32_t skip = offset % SECTOR, len = SECTOR - skip;

    if (len > count)
      len = count;
    sector (n, s);
    memcpy (p, s + skip, len);
    p += len;
    offset += len;
    count -= len;
  }
  return 0;
}

static int example1_yes (void *handle) { return 1; }

static struct nbdkit_backend example1 = {
  .name = "example1",
  .longname = "nbdkit example1 backend",
  .version = PACKAGE_VERSION,
  .description = "A small fixed read-only disk with one partition.",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .open = example1_open,
  .get_size = example1_get_size,
  .can_multi_conn = example1_yes,
  .pread = example1_pread,
};

NBDKIT_REGISTER_BACKEND (example1)
