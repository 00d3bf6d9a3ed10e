/* filters/partition.c: serve one partition of a partitioned disk
 * (nbdkit-partition-filter(1)): partition=N of an MBR (primary 1-4,
 * logical 5 and up in the extended partition) or GPT table.
 *
 * The table is read from the layer below when an export is opened, by
 * a chain of asynchronous reads (MBR, then the GPT header and entry or
 * the extended boot records one by one); from then on every request is
 * shifted to the partition, which becomes the export's size.
 */

#include <config.h>

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "byte-order.h"

/* A bound on extended boot records followed: a loop in a damaged or
 * hostile table must end.
 */
#define MAX_LOGICAL 1000
#define GPT_MAX_ENTRIES 128

static unsigned partnum;
static unsigned sector_size = 512;

/* The highest partition=N: the 4 primary MBR partitions and the
 * logical ones that may follow them, or a GPT entry.
 */
#define MAX_PARTNUM (4 + MAX_LOGICAL)

static int
partition_config (const char *key, const char *value)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = isdigit ((unsigned char) value[0]) ? strtoul (value, &end, 10) : 0;
  if (strcmp (key, "partition") == 0) {
    if (!isdigit ((unsigned char) value[0]) || errno || *end ||
        v < 1 || v > MAX_PARTNUM) {
      nbdkit_error ("partition=%s: use a partition number from 1 to %d "
                    "(1-4: primary MBR partitions, 5 and up: logical "
                    "ones; or the number of a GPT entry)", value,
                    MAX_PARTNUM);
      return -1;
    }
    partnum = (unsigned) v;
    return 0;
  }
  if (!isdigit ((unsigned char) value[0]) || errno || *end ||
      (v != 512 && v != 4096)) {
    nbdkit_error ("%s=%s: the sector size must be 512 or 4096", key, value);
    return -1;
  }
  sector_size = (unsigned) v;
  return 0;
}

static const char *
plural (uint64_t n, const char *one, const char *many)
{
  return n == 1 ? one : many;
}

static int
partition_config_complete (void)
{
  if (partnum == 0) {
    nbdkit_error ("the partition filter needs partition=N "
                  "(the number of the partition to serve)");
    return -1;
  }
  return 0;
}

struct part {
  uint64_t start, length;       /* in bytes */
};

/* Opening: the state of the walk through the table. */
struct walk {
  struct fopen *o;
  uint64_t disk_size;
  uint64_t ext_start;           /* extended partition (sectors) */
  uint64_t ebr;                 /* current EBR (sectors) */
  unsigned logical;             /* logical partitions seen */
};

static void
walk_fail (struct walk *w, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
walk_fail (struct walk *w, const char *fmt, ...)
{
  char msg[256];
  va_list args;

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  nbdkit_error ("partition filter: %s", msg);
  fopen_fail (w->o, HP_EINVAL, msg);
  free (w);
}

/* The partition is found: check it fits, then open. */
static void
walk_found (struct walk *w, uint64_t start_sector, uint64_t nr_sectors)
{
  struct part *p;
  uint64_t start = start_sector * sector_size;
  uint64_t length = nr_sectors * sector_size;

  if (start_sector > w->disk_size / sector_size ||
      nr_sectors > w->disk_size / sector_size ||
      start > w->disk_size || length > w->disk_size - start) {
    walk_fail (w, "partition %u (%" PRIu64 " %s from sector %" PRIu64
               ", %u bytes each) goes beyond the end of the disk "
               "(size %" PRIu64 ")", partnum, nr_sectors,
               plural (nr_sectors, "sector", "sectors"), start_sector,
               sector_size, w->disk_size);
    return;
  }
  if (length == 0) {
    walk_fail (w, "partition %u is empty", partnum);
    return;
  }
  p = malloc (sizeof *p);
  if (!p) {
    walk_fail (w, "out of memory");
    return;
  }
  p->start = start;
  p->length = length;
  w->o->caps->size = length;
  nbdkit_debug ("partition %u: offset %" PRIu64 ", size %" PRIu64,
                partnum, start, length);
  fopen_done (w->o, p);
  free (w);
}

static void walk_read (struct walk *w, uint64_t offset, uint32_t count,
                       backend_cb cb);

/* Reads that fail end the open. */
static bool
read_ok (struct walk *w, const struct hp_header *reply, void *payload,
         const char *what)
{
  if (!reply || reply->status) {
    walk_fail (w, "could not read the %s: %s", what,
               reply && payload ? (const char *) payload : "error");
    payload_free (payload);
    return false;
  }
  return true;
}

static bool
is_extended (unsigned char type)
{
  return type == 0x05 || type == 0x0f || type == 0x85;
}

static void
on_ebr (void *opaque, const struct hp_header *reply, void *payload,
        uint32_t len)
{
  struct walk *w = opaque;
  const unsigned char *b = payload;
  const unsigned char *e1, *e2;

  if (!read_ok (w, reply, payload, "extended boot record"))
    return;
  if (b[510] != 0x55 || b[511] != 0xaa) {
    payload_free (payload);
    walk_fail (w, "the extended boot record at sector %" PRIu64
               " has no boot signature", w->ebr);
    return;
  }
  e1 = b + 446;
  e2 = b + 446 + 16;
  w->logical++;
  if (w->logical + 4 == partnum) {
    uint64_t start = w->ebr + get_le32 (e1 + 8), n = get_le32 (e1 + 12);
    unsigned char type = e1[4];

    payload_free (payload);
    if (type == 0)
      walk_fail (w, "partition %u is empty", partnum);
    else
      walk_found (w, start, n);
    return;
  }
  if (!is_extended (e2[4]) || get_le32 (e2 + 8) == 0 ||
      w->logical >= MAX_LOGICAL) {
    payload_free (payload);
    if (w->logical == 1)
      walk_fail (w, "there is no partition %u (the disk has 1 logical "
                 "partition, number 5)", partnum);
    else
      walk_fail (w, "there is no partition %u (the disk has %u logical "
                 "partitions, numbered 5 to %u)", partnum, w->logical,
                 4 + w->logical);
    return;
  }
  w->ebr = w->ext_start + get_le32 (e2 + 8);
  payload_free (payload);
  walk_read (w, w->ebr * sector_size, 512, on_ebr);
}

static void
on_gpt_entry (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct walk *w = opaque;
  const unsigned char *e = payload;
  static const unsigned char unused[16];
  uint64_t first, last;

  if (!read_ok (w, reply, payload, "GPT partition entry"))
    return;
  if (memcmp (e, unused, 16) == 0) {
    payload_free (payload);
    walk_fail (w, "GPT partition %u is not in use", partnum);
    return;
  }
  first = get_le64 (e + 32);
  last = get_le64 (e + 40);
  payload_free (payload);
  if (last < first) {
    walk_fail (w, "GPT partition %u ends (LBA %" PRIu64 ") before it "
               "begins (LBA %" PRIu64 ")", partnum, last, first);
    return;
  }
  walk_found (w, first, last - first + 1);
}

static void
on_gpt_header (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct walk *w = opaque;
  const unsigned char *h = payload;
  uint64_t entries_lba;
  uint32_t nr_entries, entry_size;
  uint64_t at;

  if (!read_ok (w, reply, payload, "GPT header"))
    return;
  if (memcmp (h, "EFI PART", 8) != 0) {
    payload_free (payload);
    walk_fail (w, "the disk has a protective MBR but no GPT header");
    return;
  }
  entries_lba = get_le64 (h + 72);
  nr_entries = get_le32 (h + 80);
  entry_size = get_le32 (h + 84);
  payload_free (payload);
  if (entry_size < 128 || entry_size > 4096 || (entry_size & 7)) {
    walk_fail (w, "the GPT entry size %" PRIu32 " is not valid",
               entry_size);
    return;
  }
  if (partnum > nr_entries || partnum > GPT_MAX_ENTRIES) {
    walk_fail (w, "there is no partition %u (the GPT has %" PRIu32
               " %s%s)", partnum, nr_entries,
               plural (nr_entries, "entry", "entries"),
               nr_entries > GPT_MAX_ENTRIES ?
               ", of which this filter serves the first 128" : "");
    return;
  }
  if (entries_lba > w->disk_size / sector_size) {
    walk_fail (w, "the GPT entries are beyond the end of the disk");
    return;
  }
  at = entries_lba * sector_size + (uint64_t) (partnum - 1) * entry_size;
  if (at > w->disk_size || 128 > w->disk_size - at) {
    walk_fail (w, "the GPT entries are beyond the end of the disk");
    return;
  }
  walk_read (w, at, 128, on_gpt_entry);
}

static void
on_mbr (void *opaque, const struct hp_header *reply, void *payload,
        uint32_t len)
{
  struct walk *w = opaque;
  const unsigned char *b = payload;
  int i;

  if (!read_ok (w, reply, payload, "partition table"))
    return;
  if (b[510] != 0x55 || b[511] != 0xaa) {
    payload_free (payload);
    walk_fail (w, "the disk has no partition table (no MBR boot "
               "signature)");
    return;
  }
  /* A protective (or hybrid) MBR: an entry of type 0xEE, in any slot,
   * means the disk has a GPT.
   */
  for (i = 0; i < 4; ++i)
    if (b[446 + 16 * i + 4] == 0xee)
      break;
  if (i < 4) {
    payload_free (payload);
    if (w->disk_size < 2 * (uint64_t) sector_size) {
      walk_fail (w, "the disk is too small for a GPT");
      return;
    }
    walk_read (w, sector_size, 512, on_gpt_header);
    return;
  }
  if (partnum <= 4) {
    const unsigned char *e = b + 446 + 16 * (partnum - 1);
    uint64_t start = get_le32 (e + 8), n = get_le32 (e + 12);
    unsigned char type = e[4];

    payload_free (payload);
    if (type == 0)
      walk_fail (w, "MBR partition %u is not in use", partnum);
    else if (is_extended (type))
      walk_fail (w, "partition %u is the extended partition: serve one of "
                 "the logical partitions in it (5 and up)", partnum);
    else
      walk_found (w, start, n);
    return;
  }
  for (i = 0; i < 4; ++i) {
    const unsigned char *e = b + 446 + 16 * i;

    if (is_extended (e[4])) {
      w->ext_start = w->ebr = get_le32 (e + 8);
      payload_free (payload);
      walk_read (w, w->ebr * sector_size, 512, on_ebr);
      return;
    }
  }
  payload_free (payload);
  walk_fail (w, "there is no partition %u (the MBR has no extended "
             "partition)", partnum);
}

static void
walk_read (struct walk *w, uint64_t offset, uint32_t count, backend_cb cb)
{
  if (offset > w->disk_size || count > w->disk_size - offset) {
    walk_fail (w, "the partition table points beyond the end of the disk");
    return;
  }
  fnext_request (w->o->next, HP_PREAD, 0, offset, count, NULL, cb, w);
}

static void
partition_open (struct fopen *o)
{
  struct walk *w = calloc (1, sizeof *w);

  if (!w) {
    nbdkit_error ("partition filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "partition filter: out of memory");
    return;
  }
  w->o = o;
  w->disk_size = o->caps->size;
  if (w->disk_size < 512) {
    walk_fail (w, "the disk (%" PRIu64 " bytes) is too small to have a "
               "partition table", w->disk_size);
    return;
  }
  walk_read (w, 0, 512, on_mbr);
}

static void
partition_close (void *handle)
{
  free (handle);
}

static void
partition_shift (void *handle, struct freq *r)
{
  const struct part *p = handle;

  r->offset += p->start;
  freq_next (r);
}

static const char *const keys[] = {
  "partition", "partition-sectorsize", NULL
};

const struct filter partition_filter = {
  .name = "partition",
  .description = "serve one partition of an MBR or GPT disk",
  .config_help =
    "partition=N         the partition to serve (1-4 primary, 5 and up\n"
    "                    logical, or the GPT entry); required\n"
    "partition-sectorsize=512|4096  the disk's sector size (default 512)",
  .keys = keys,
  .config = partition_config,
  .config_complete = partition_config_complete,
  .open = partition_open,
  .close = partition_close,
  .pread = partition_shift,
  .pwrite = partition_shift,
  .trim = partition_shift,
  .zero = partition_shift,
  .cache = partition_shift,
  .extents = partition_shift,
};
