/* nbdkit partitioning backend: where each partition goes, and the
 * bytes of the partition tables.
 *
 * Owns the layout of the disk, made once at start-up from the files'
 * sizes and the parameters: an MBR (with an extended partition and one
 * EBR per logical partition when there are more than 4 files) or a GPT
 * (protective MBR, primary header and entries, the partitions, then
 * the secondary entries and header), with the real CRC-32.  The
 * partitions start on their alignment and are whole sectors; what lies
 * between is zero.  GUIDs are derived from the files' names, so that
 * the same command line gives the same table, also to a restarted
 * backend.  Everything here is in memory: no I/O.
 */

#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdkit-backend.h"
#include "partitioning.h"

#define MBR_MAX_SECTORS UINT32_MAX

/* ---- CRC-32 (reflected, polynomial 0x04C11DB7) ---- */

uint32_t
crc32_ieee (const void *buf, size_t len)
{
  static uint32_t table[256];
  static bool ready;            /* set at start-up, single-threaded */
  const uint8_t *p = buf;
  uint32_t crc = 0xffffffff;
  size_t i;

  if (!ready) {
    for (i = 0; i < 256; i++) {
      uint32_t c = i;
      int k;

      for (k = 0; k < 8; k++)
        c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  for (i = 0; i < len; i++)
    crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffff;
}

/* ---- GUIDs ---- */

static int
hexval (int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int
parse_guid (const char *s, uint8_t out[16])
{
  /* The text's bytes in order, then the first three fields swapped to
   * little-endian as GPT stores them.
   */
  static const int order[16] = { 3, 2, 1, 0, 5, 4, 7, 6,
                                 8, 9, 10, 11, 12, 13, 14, 15 };
  uint8_t b[16];
  size_t i, j = 0;

  if (strlen (s) != 36)
    return -1;
  for (i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return -1;
      continue;
    }
    if (hexval (s[i]) == -1 || hexval (s[i + 1]) == -1)
      return -1;
    b[j++] = hexval (s[i]) << 4 | hexval (s[i + 1]);
    i++;
  }
  for (i = 0; i < 16; i++)
    out[i] = b[order[i]];
  return 0;
}

static uint64_t
mix64 (uint64_t x)
{
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

static uint64_t
hash_str (uint64_t h, const char *s)
{
  for (; *s; s++)
    h = (h ^ (unsigned char) *s) * 0x100000001b3;
  return mix64 (h);
}

/* A version 4 (random-looking) GUID from a hash. */
static void
make_guid (uint64_t h, uint8_t out[16])
{
  uint64_t a = mix64 (h), b = mix64 (a);

  memcpy (out, &a, 8);
  memcpy (out + 8, &b, 8);
  out[7] = (out[7] & 0x0f) | 0x40;      /* time_hi_and_version, LE */
  out[8] = (out[8] & 0x3f) | 0x80;      /* variant 10 */
}

/* ---- Regions ---- */

static int
add_region (struct layout *l, uint64_t start, uint64_t end,
            enum region_type type, const uint8_t *data, size_t file)
{
  uint64_t cur = l->nr_regions ? l->regions[l->nr_regions - 1].end : 0;
  struct region *r;

  if (start > cur && add_region (l, cur, start, REGION_ZERO, NULL, 0) == -1)
    return -1;
  if (end == start)
    return 0;
  r = realloc (l->regions, (l->nr_regions + 1) * sizeof *r);
  if (!r) {
    nbdkit_error ("out of memory");
    return -1;
  }
  l->regions = r;
  l->regions[l->nr_regions++] = (struct region) {
    .start = start, .end = end, .type = type, .data = data, .file = file,
  };
  return 0;
}

static uint64_t
round_up (uint64_t v, uint64_t a)
{
  return (v + a - 1) & ~(a - 1);
}

/* Place the partitions from first_lba on: their start on their
 * alignment, whole sectors; logical ones (index >= first_logical) after
 * an EBR sector.  Returns the sector after the last, or 0 on overflow.
 */
static uint64_t
place (struct part *parts, size_t n, uint64_t first_lba, size_t first_logical)
{
  uint64_t off = first_lba;
  size_t i;

  for (i = 0; i < n; i++) {
    struct part *p = &parts[i];

    if (i >= first_logical)
      p->ebr_lba = off++;
    p->start_lba = round_up (off, p->alignment / SECTOR);
    p->nr_sectors = (p->size + SECTOR - 1) / SECTOR;
    off = p->start_lba + p->nr_sectors;
    if (off > (UINT64_MAX >> 10))
      return 0;
  }
  return off;
}

static void
mbr_entry (uint8_t *e, uint8_t status, uint8_t type, uint32_t start,
           uint32_t count)
{
  static const uint8_t chs_lba[3] = { 0xfe, 0xff, 0xff };
  uint32_t s = htole32 (start), c = htole32 (count);

  e[0] = status;
  memcpy (e + 1, chs_lba, 3);
  e[4] = type;
  memcpy (e + 5, chs_lba, 3);
  memcpy (e + 8, &s, 4);
  memcpy (e + 12, &c, 4);
}

static int
make_mbr (struct part *parts, size_t n, struct layout *l)
{
  bool logical = n > 4;
  size_t nr_primary = logical ? 3 : n, i;
  uint64_t end = place (parts, n, 1, logical ? 3 : n);
  uint8_t *mbr;

  if (end == 0 || end > MBR_MAX_SECTORS) {
    nbdkit_error ("the partitions need %" PRIu64 " sectors, more than an "
                  "MBR can address (2^32-1 sectors of 512 bytes): use "
                  "partition-type=gpt", end);
    return -1;
  }
  if (!(mbr = l->buffers[0] = calloc (1, SECTOR)) ||
      (logical && !(l->ebrs = calloc (n, sizeof *l->ebrs)))) {
    nbdkit_error ("out of memory");
    return -1;
  }
  for (i = 0; i < nr_primary; i++)
    mbr_entry (mbr + 446 + 16 * i, i == 0 ? 0x80 : 0, parts[i].mbr_id,
               parts[i].start_lba, parts[i].nr_sectors);
  if (logical)
    mbr_entry (mbr + 446 + 48, 0, 0x0f, parts[3].ebr_lba,
               end - parts[3].ebr_lba);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  if (add_region (l, 0, SECTOR, REGION_DATA, mbr, 0) == -1)
    return -1;

  for (i = 0; i < n; i++) {
    struct part *p = &parts[i];

    if (logical && i >= 3) {
      uint8_t *ebr = l->ebrs[i] = calloc (1, SECTOR);

      if (!ebr) {
        nbdkit_error ("out of memory");
        return -1;
      }
      /* Its partition, relative to this EBR; the next EBR, relative
       * to the extended partition's start.
       */
      mbr_entry (ebr + 446, 0, p->mbr_id, p->start_lba - p->ebr_lba,
                 p->nr_sectors);
      if (i + 1 < n)
        mbr_entry (ebr + 462, 0, 0x05, parts[i + 1].ebr_lba - parts[3].ebr_lba,
                   parts[i + 1].start_lba + parts[i + 1].nr_sectors
                   - parts[i + 1].ebr_lba);
      ebr[510] = 0x55;
      ebr[511] = 0xaa;
      if (add_region (l, p->ebr_lba * SECTOR, (p->ebr_lba + 1) * SECTOR,
                      REGION_DATA, ebr, 0) == -1)
        return -1;
    }
    if (add_region (l, p->start_lba * SECTOR,
                    p->start_lba * SECTOR + p->size, REGION_FILE, NULL,
                    i) == -1)
      return -1;
  }
  l->size = end * SECTOR;
  return add_region (l, l->size, l->size, REGION_ZERO, NULL, 0);
}

/* The partition's name for GPT: the file's base name in UTF-16LE, at
 * most 36 code units (bytes that are not UTF-8 become '?').
 */
static void
gpt_name (uint8_t *out, const char *path)
{
  const char *base = strrchr (path, '/');
  const unsigned char *s = (const unsigned char *) (base ? base + 1 : path);
  size_t units = 0;

  while (*s && units < 36) {
    uint32_t c = *s++;
    int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;

    if (c >= 0x80 && c < 0xc0)
      c = '?';
    else if (more) {
      c &= 0x3f >> more;
      while (more-- > 0) {
        if ((*s & 0xc0) != 0x80) {
          c = '?';
          break;
        }
        c = c << 6 | (*s++ & 0x3f);
      }
    }
    if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
      c = '?';
    if (c >= 0x10000) {
      if (units + 2 > 36)
        break;
      c -= 0x10000;
      out[2 * units] = (0xd800 | (c >> 10)) & 0xff;
      out[2 * units + 1] = (0xd800 | (c >> 10)) >> 8;
      units++;
      c = 0xdc00 | (c & 0x3ff);
    }
    out[2 * units] = c & 0xff;
    out[2 * units + 1] = c >> 8;
    units++;
  }
}

static void
put64 (uint8_t *p, uint64_t v)
{
  v = htole64 (v);
  memcpy (p, &v, 8);
}

static void
put32 (uint8_t *p, uint32_t v)
{
  v = htole32 (v);
  memcpy (p, &v, 4);
}

static void
gpt_header (uint8_t *h, uint64_t my_lba, uint64_t alt_lba, uint64_t first,
            uint64_t last, const uint8_t guid[16], uint64_t entries_lba,
            uint32_t nr_entries, uint32_t entries_crc)
{
  memcpy (h, "EFI PART", 8);
  put32 (h + 8, 0x00010000);
  put32 (h + 12, 92);
  put64 (h + 24, my_lba);
  put64 (h + 32, alt_lba);
  put64 (h + 40, first);
  put64 (h + 48, last);
  memcpy (h + 56, guid, 16);
  put64 (h + 72, entries_lba);
  put32 (h + 80, nr_entries);
  put32 (h + 84, 128);
  put32 (h + 88, entries_crc);
  put32 (h + 16, crc32_ieee (h, 92));
}

static int
make_gpt (struct part *parts, size_t n, struct layout *l)
{
  /* At least 128 entries, as the specification asks; whole sectors. */
  uint32_t nr_entries = n < 128 ? 128 : round_up (n, SECTOR / 128);
  uint64_t es = (uint64_t) nr_entries * 128 / SECTOR;
  uint64_t end = place (parts, n, 2 + es, n), disk, last;
  uint8_t *prim, *sec, *entries, disk_guid[16], *pm;
  uint32_t crc;
  uint64_t h = 0xcbf29ce484222325;
  size_t i;

  if (end == 0 || end + es + 1 > (uint64_t) INT64_MAX / SECTOR) {
    nbdkit_error ("the partitions add up to more than 2^63-1 bytes");
    return -1;
  }
  disk = end + es + 1;
  last = disk - 1;
  prim = l->buffers[0] = calloc (2 + es, SECTOR);
  sec = l->buffers[1] = calloc (es + 1, SECTOR);
  if (!prim || !sec) {
    nbdkit_error ("out of memory");
    return -1;
  }
  entries = prim + 2 * SECTOR;
  for (i = 0; i < n; i++)
    h = hash_str (h, parts[i].path);
  make_guid (h, disk_guid);
  for (i = 0; i < n; i++) {
    uint8_t *e = entries + 128 * i;

    memcpy (e, parts[i].type_guid, 16);
    make_guid (hash_str (h + i + 1, parts[i].path), e + 16);
    put64 (e + 32, parts[i].start_lba);
    put64 (e + 40, parts[i].start_lba + parts[i].nr_sectors - 1);
    put64 (e + 48, i == 0 ? 1 << 2 : 0);    /* legacy BIOS bootable */
    gpt_name (e + 56, parts[i].path);
  }
  crc = crc32_ieee (entries, nr_entries * 128);
  memcpy (sec, entries, es * SECTOR);

  /* The protective MBR: one partition of type 0xee over the disk. */
  pm = prim + 446;
  pm[1] = 0x00; pm[2] = 0x02; pm[3] = 0x00;
  pm[4] = 0xee;
  pm[5] = 0xff; pm[6] = 0xff; pm[7] = 0xff;
  put32 (pm + 8, 1);
  put32 (pm + 12, disk - 1 > MBR_MAX_SECTORS ? MBR_MAX_SECTORS : disk - 1);
  prim[510] = 0x55;
  prim[511] = 0xaa;

  gpt_header (prim + SECTOR, 1, last, 2 + es, end - 1, disk_guid, 2,
              nr_entries, crc);
  gpt_header (sec + es * SECTOR, last, 1, 2 + es, end - 1, disk_guid,
              last - es, nr_entries, crc);

  if (add_region (l, 0, (2 + es) * SECTOR, REGION_DATA, prim, 0) == -1)
    return -1;
  for (i = 0; i < n; i++)
    if (add_region (l, parts[i].start_lba * SECTOR,
                    parts[i].start_lba * SECTOR + parts[i].size,
                    REGION_FILE, NULL, i) == -1)
      return -1;
  if (add_region (l, end * SECTOR, disk * SECTOR, REGION_DATA, sec, 0) == -1)
    return -1;
  l->size = disk * SECTOR;
  return 0;
}

int
layout_make (struct part *parts, size_t n, enum table_type type,
             struct layout *l)
{
  memset (l, 0, sizeof *l);
  if (type == TABLE_DEFAULT) {
    /* As nbdkit: GPT for more than 4 files or more than an MBR can
     * address, else MBR, which every client understands.
     */
    uint64_t end = place (parts, n, 1, n);

    type = n > 4 || end == 0 || end > MBR_MAX_SECTORS ? TABLE_GPT
                                                      : TABLE_MBR;
  }
  l->type = type;
  return type == TABLE_MBR ? make_mbr (parts, n, l) : make_gpt (parts, n, l);
}

void
layout_free (struct layout *l, size_t n)
{
  size_t i;

  for (i = 0; i < 4; i++)
    free (l->buffers[i]);
  if (l->ebrs)
    for (i = 0; i < n; i++)
      free (l->ebrs[i]);
  free (l->ebrs);
  free (l->regions);
}
