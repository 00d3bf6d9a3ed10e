/* nbdkit floppy backend: laying out the disk.
 *
 * Owns struct disk: the geometry (an MBR with one FAT32 partition,
 * type 0x0c, at 1 MiB), the sectors kept in memory (MBR, boot sector,
 * FSInfo and their backups, every directory's clusters) and the sorted
 * table of regions that says what each byte of the disk reads as.  The
 * FAT is never stored: every file and directory occupies one run of
 * consecutive clusters, so an entry of the FAT is computed from the
 * sorted list of runs (fat_entry).  File data stays in the host files.
 *
 * Disk layout (sectors of 512 bytes):
 *
 *   0            MBR
 *   1..2047      unused (zeroes)
 *   2048         partition: reserved sectors (boot sector, FSInfo,
 *                backups at 6 and 7, padding so that clusters are
 *                aligned), FAT 1, FAT 2, clusters 2, 3, ...: the
 *                directories (root first, pre-order), then the files
 *                in the same order, then free clusters (zeroes).
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byte-order.h"
#include "nbdkit-backend.h"
#include "floppy.h"

#define SECTOR              512
#define PART_START          2048        /* sectors: 1 MiB */
#define MIN_RESERVED        32          /* sectors, as mkfs.fat */
#define BACKUP_BOOT_SECTOR  6
#define FSINFO_SECTOR       1
/* Fewer clusters than this make a FAT16 by Microsoft's definition,
 * and mtools, Windows and others then misread the disk: every disk gets
 * at least this many (so it is at least about 33.5 MB).
 */
#define FAT32_MIN_CLUSTERS  65525
#define FAT32_MAX_CLUSTERS  UINT32_C(0x0ffffff5)    /* 2 .. 0x0ffffff6 */
#define MBR_MAX_SECTORS     UINT64_C(0xffffffff)
#define FAT_EOC             UINT32_C(0x0fffffff)

#define ATTR_VOLUME_ID      0x08
#define ATTR_DIRECTORY      0x10
#define ATTR_ARCHIVE        0x20

/* ---- geometry ---- */

struct geometry {
  uint32_t spc;                 /* sectors per cluster */
  uint32_t reserved;            /* sectors */
  uint32_t fat;                 /* sectors per FAT */
  uint32_t clusters;
  uint64_t part;                /* sectors in the partition */
};

/* Microsoft's default cluster sizes for FAT32, by partition size. */
static uint32_t
spc_for (uint64_t part)
{
  if (part <= 532480)           /* 260 MiB */
    return 1;
  if (part <= 16777216)         /* 8 GiB */
    return 8;
  if (part <= 33554432)         /* 16 GiB */
    return 16;
  if (part <= 67108864)         /* 32 GiB */
    return 32;
  return 64;                    /* 32 KiB clusters */
}

/* Reserved sectors: at least 32, padded so clusters start aligned. */
static uint32_t
reserved_for (uint32_t spc, uint32_t fat)
{
  uint64_t data = MIN_RESERVED + 2 * (uint64_t) fat;

  return MIN_RESERVED + (uint32_t) ((spc - data % spc) % spc);
}

static uint32_t
fat_sectors (uint64_t clusters)
{
  return (uint32_t) (((clusters + 2) * 4 + SECTOR - 1) / SECTOR);
}

static void
geometry_for_clusters (uint32_t spc, uint64_t clusters, struct geometry *g)
{
  g->spc = spc;
  g->clusters = (uint32_t) clusters;
  g->fat = fat_sectors (clusters);
  g->reserved = reserved_for (spc, g->fat);
  g->part = g->reserved + 2 * (uint64_t) g->fat + clusters * spc;
}

/* As many clusters as fit in part sectors; false if not even one.
 * The sectors a geometry takes grow with its clusters, so search.
 */
static bool
geometry_for_size (uint32_t spc, uint64_t part, struct geometry *g)
{
  uint64_t lo = 0, hi = part / spc;     /* lo fits (or is 0) */

  if (hi > FAT32_MAX_CLUSTERS)
    hi = FAT32_MAX_CLUSTERS;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo + 1) / 2;

    geometry_for_clusters (spc, mid, g);
    if (g->part <= part)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0)
    return false;
  geometry_for_clusters (spc, lo, g);
  g->part = part;               /* sectors after the last cluster: unused */
  return true;
}

/* The clusters the tree needs with clusters of spc sectors. */
static uint64_t
clusters_needed (const struct tree *tree, uint32_t spc)
{
  uint64_t cs = (uint64_t) spc * SECTOR, n = 0;
  size_t i;

  for (i = 0; i < tree->nr_nodes; ++i) {
    const struct node *nd = &tree->nodes[i];
    uint64_t c = (nd->size + cs - 1) / cs;

    n += (nd->is_dir && c == 0) ? 1 : c;
  }
  return n;
}

/* The smallest disk with at least min_clusters clusters that holds the
 * tree.  Larger disks get larger clusters, and larger clusters need a
 * little more space, so go on until the cluster size is stable.
 */
static void
smallest_geometry (const struct tree *tree, uint64_t min_clusters,
                   struct geometry *g)
{
  uint32_t spc = 1;

  for (;;) {
    uint64_t n = clusters_needed (tree, spc);

    if (n < min_clusters)
      n = min_clusters;
    geometry_for_clusters (spc, n, g);
    if (n > FAT32_MAX_CLUSTERS || spc_for (g->part) <= spc)
      return;
    spc = spc_for (g->part);
  }
}

static int
choose_geometry (const struct tree *tree, const char *dir,
                 uint64_t requested_size, const char *size_str,
                 struct geometry *g)
{
  struct geometry smallest;
  uint64_t total;
  uint32_t spc;

  if (requested_size == 0) {
    smallest_geometry (tree, FAT32_MIN_CLUSTERS, g);
    if (g->clusters > FAT32_MAX_CLUSTERS ||
        PART_START + g->part > MBR_MAX_SECTORS) {
      nbdkit_error ("dir=%s: the files need more than 2 TiB, the largest "
                    "disk an MBR partition table can describe", dir);
      return -1;
    }
    return 0;
  }

  total = requested_size / SECTOR;
  if (total > MBR_MAX_SECTORS) {
    nbdkit_error ("size=%s: too large: an MBR partition table can "
                  "describe at most 2^32-1 sectors of 512 bytes (just "
                  "under 2 TiB)", size_str);
    return -1;
  }
  /* Fewer clusters would not be read as FAT32 by mtools or Windows. */
  smallest_geometry (tree, FAT32_MIN_CLUSTERS, &smallest);
  if (total < PART_START + smallest.part) {
    nbdkit_error ("size=%s: too small for a FAT32 file system with the "
                  "files of %s: the disk needs at least %" PRIu64 " bytes "
                  "(or leave out size= for a disk just large enough)",
                  size_str, dir, (PART_START + smallest.part) * SECTOR);
    return -1;
  }
  /* The usual cluster size for this size if the files fit with it,
   * else smaller ones (many small files waste less).
   */
  for (spc = spc_for (total - PART_START); spc >= 1; spc /= 2)
    if (geometry_for_size (spc, total - PART_START, g) &&
        g->clusters >= FAT32_MIN_CLUSTERS &&
        g->clusters >= clusters_needed (tree, spc))
      return 0;
  /* Not reached: the smallest geometry's cluster size fits. */
  nbdkit_error ("size=%s: no cluster size fits (a bug)", size_str);
  return -1;
}

/* ---- directories ---- */

/* FAT times are local times, from 1980 to 2107, in 2-second steps
 * (the creation time adds hundredths); earlier and later times are
 * clamped to those years.
 */
static void
fat_time (const struct timespec *ts, uint16_t *date, uint16_t *time_,
          uint8_t *centis)
{
  struct tm tm;
  time_t t = ts->tv_sec;
  long ns = ts->tv_nsec;

  if (!localtime_r (&t, &tm) || tm.tm_year < 80) {
    tm = (struct tm) { .tm_year = 80, .tm_mon = 0, .tm_mday = 1 };
    ns = 0;
  }
  else if (tm.tm_year > 207) {
    tm = (struct tm) { .tm_year = 207, .tm_mon = 11, .tm_mday = 31,
                       .tm_hour = 23, .tm_min = 59, .tm_sec = 59 };
    ns = 0;
  }
  if (tm.tm_sec > 59)           /* a leap second */
    tm.tm_sec = 59;
  *date = (uint16_t) (((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) |
                      tm.tm_mday);
  *time_ = (uint16_t) ((tm.tm_hour << 11) | (tm.tm_min << 5) |
                       (tm.tm_sec / 2));
  *centis = (uint8_t) ((tm.tm_sec % 2) * 100 + ns / 10000000);
}

static void
write_short_entry (unsigned char *p, const char name[11], uint8_t attr,
                   uint32_t cluster, uint32_t size, const struct node *n)
{
  uint16_t date, time_, adate, atime;
  uint8_t centis, acentis;

  fat_time (&n->mtime, &date, &time_, &centis);
  fat_time (&n->atime, &adate, &atime, &acentis);
  memset (p, 0, FAT_DIRENT_SIZE);
  memcpy (p, name, 11);
  p[11] = attr;
  p[13] = centis;               /* created: we only know the mtime */
  put_le16 (p + 14, time_);
  put_le16 (p + 16, date);
  put_le16 (p + 18, adate);
  put_le16 (p + 20, cluster >> 16);
  put_le16 (p + 22, time_);
  put_le16 (p + 24, date);
  put_le16 (p + 26, cluster & 0xffff);
  put_le32 (p + 28, size);
}

static bool
has_label (const char label[11])
{
  return memcmp (label, "           ", 11) != 0;
}

/* Count each directory's entries (LFN entries included) into its size,
 * checking the limit of a FAT directory.
 */
static int
size_directories (struct tree *tree, const char label[11])
{
  size_t i, j;

  for (i = 0; i < tree->nr_nodes; ++i) {
    struct node *d = &tree->nodes[i];
    uint64_t entries;

    if (!d->is_dir)
      continue;
    entries = i == 0 ? (has_label (label) ? 1 : 0) : 2;  /* label; . .. */
    for (j = 0; j < d->nr_children; ++j)
      entries += 1 + lfn_entries (&tree->nodes[d->children[j]]);
    if (entries > FAT_MAX_DIR_ENTRIES) {
      nbdkit_error ("%s: its %zu files need %" PRIu64 " directory entries "
                    "(long names take several), more than the %d a FAT "
                    "directory can hold: move some into subdirectories",
                    d->path, d->nr_children, entries, FAT_MAX_DIR_ENTRIES);
      return -1;
    }
    d->size = entries * FAT_DIRENT_SIZE;
  }
  return 0;
}

static void
fill_directory (const struct tree *tree, size_t idx, const char label[11])
{
  const struct node *d = &tree->nodes[idx];
  unsigned char *p = d->dir_data;
  size_t j;

  if (idx == 0) {
    if (has_label (label)) {
      write_short_entry (p, label, ATTR_VOLUME_ID, 0, 0, d);
      p += FAT_DIRENT_SIZE;
    }
  }
  else {
    const struct node *parent = &tree->nodes[d->parent];

    write_short_entry (p, ".          ", ATTR_DIRECTORY,
                       d->first_cluster, 0, d);
    p += FAT_DIRENT_SIZE;
    /* ".." of a directory in the root names cluster 0. */
    write_short_entry (p, "..         ", ATTR_DIRECTORY,
                       d->parent == 0 ? 0 : parent->first_cluster, 0,
                       parent);
    p += FAT_DIRENT_SIZE;
  }
  for (j = 0; j < d->nr_children; ++j) {
    const struct node *c = &tree->nodes[d->children[j]];

    write_lfn_entries (c, p);
    p += lfn_entries (c) * FAT_DIRENT_SIZE;
    write_short_entry (p, c->short_name,
                       c->is_dir ? ATTR_DIRECTORY : ATTR_ARCHIVE,
                       c->first_cluster, c->is_dir ? 0 : (uint32_t) c->size,
                       c);
    p += FAT_DIRENT_SIZE;
  }
}

/* ---- the fixed sectors ---- */

/* A volume serial number that is the same on every start with the
 * same files (a restarted backend must serve the same disk).
 */
static uint32_t
volume_id (const struct tree *tree, const char label[11])
{
  uint32_t h = 2166136261u;
  size_t i, k;

  for (k = 0; k < 11; ++k)
    h = (h ^ (unsigned char) label[k]) * 16777619u;
  for (i = 0; i < tree->nr_nodes; ++i) {
    const struct node *n = &tree->nodes[i];
    uint64_t v[2] = { n->size, (uint64_t) n->mtime.tv_sec };

    for (k = 0; n->name[k]; ++k)
      h = (h ^ (unsigned char) n->name[k]) * 16777619u;
    for (k = 0; k < sizeof v; ++k)
      h = (h ^ ((const unsigned char *) v)[k]) * 16777619u;
  }
  return h;
}

/* CHS address of an LBA for the MBR (255 heads, 63 sectors/track). */
static void
put_chs (unsigned char *p, uint64_t lba)
{
  uint64_t c = lba / (255 * 63);
  unsigned h = (unsigned) (lba / 63 % 255), s = (unsigned) (lba % 63 + 1);

  if (c > 1023) {
    c = 1023;
    h = 254;
    s = 63;
  }
  p[0] = (unsigned char) h;
  p[1] = (unsigned char) (s | ((c >> 2) & 0xc0));
  p[2] = (unsigned char) (c & 0xff);
}

static void
fill_mbr (unsigned char *mbr, const struct geometry *g, uint32_t id)
{
  unsigned char *e = mbr + 446;

  put_le32 (mbr + 440, id);        /* disk signature */
  e[0] = 0x00;                  /* not bootable */
  put_chs (e + 1, PART_START);
  e[4] = 0x0c;                  /* FAT32 with LBA */
  put_chs (e + 5, PART_START + g->part - 1);
  put_le32 (e + 8, PART_START);
  put_le32 (e + 12, (uint32_t) g->part);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
}

static void
fill_boot_sector (unsigned char *b, const struct geometry *g, uint32_t id,
                  const char label[11])
{
  b[0] = 0xeb; b[1] = 0x58; b[2] = 0x90;        /* jmp to offset 90 */
  memcpy (b + 3, "NBDKIT  ", 8);
  put_le16 (b + 11, SECTOR);
  b[13] = (unsigned char) g->spc;
  put_le16 (b + 14, g->reserved);
  b[16] = 2;                    /* FATs */
  b[21] = 0xf8;                 /* media: fixed disk */
  put_le16 (b + 24, 63);           /* sectors per track */
  put_le16 (b + 26, 255);          /* heads */
  put_le32 (b + 28, PART_START);   /* hidden sectors */
  put_le32 (b + 32, (uint32_t) g->part);
  put_le32 (b + 36, g->fat);
  put_le32 (b + 44, 2);            /* root directory cluster */
  put_le16 (b + 48, FSINFO_SECTOR);
  put_le16 (b + 50, BACKUP_BOOT_SECTOR);
  b[64] = 0x80;                 /* drive number */
  b[66] = 0x29;                 /* extended boot signature */
  put_le32 (b + 67, id);
  memcpy (b + 71, has_label (label) ? label : "NO NAME    ", 11);
  memcpy (b + 82, "FAT32   ", 8);
  /* Not bootable: int 18h asks the BIOS for the next boot device. */
  b[90] = 0xcd; b[91] = 0x18;
  b[510] = 0x55;
  b[511] = 0xaa;
}

static void
fill_fsinfo (unsigned char *f, uint32_t free_clusters, uint32_t next_free)
{
  put_le32 (f, 0x41615252);
  put_le32 (f + 484, 0x61417272);
  put_le32 (f + 488, free_clusters);
  put_le32 (f + 492, next_free);
  put_le32 (f + 508, 0xaa550000);
}

/* ---- regions ---- */

static int
add_region (struct disk *disk, uint64_t len, enum region_type type,
            const unsigned char *data, const struct node *file)
{
  struct region *r;
  uint64_t start = disk->nr_regions ?
    disk->regions[disk->nr_regions-1].start +
    disk->regions[disk->nr_regions-1].len : 0;

  if (len == 0)
    return 0;
  r = realloc (disk->regions, (disk->nr_regions + 1) * sizeof *r);
  if (!r) {
    nbdkit_error ("out of memory");
    return -1;
  }
  disk->regions = r;
  disk->regions[disk->nr_regions++] = (struct region) {
    .start = start, .len = len, .type = type, .data = data, .file = file,
  };
  return 0;
}

static int
add_chain (struct disk *disk, struct node *n, uint32_t *next)
{
  uint64_t cs = (uint64_t) disk->sectors_per_cluster * SECTOR;
  uint64_t count = (n->size + cs - 1) / cs;

  if (n->is_dir && count == 0)
    count = 1;
  if (count == 0) {
    n->first_cluster = 0;       /* an empty file has no cluster */
    return 0;
  }
  n->first_cluster = *next;
  n->nr_clusters = (uint32_t) count;
  *next += (uint32_t) count;
  disk->chains[disk->nr_chains++] = (struct chain) {
    .first = n->first_cluster, .count = n->nr_clusters,
  };
  if (n->is_dir) {
    n->dir_data = calloc (count, cs);
    if (!n->dir_data) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return add_region (disk, count * cs, REGION_DATA, n->dir_data, NULL);
  }
  return add_region (disk, count * cs, REGION_FILE, NULL, n);
}

int
build_disk (struct tree *tree, const char *dir, uint64_t requested_size,
            const char *size_str, const char label[11], struct disk *disk)
{
  struct geometry g;
  uint64_t cs, used;
  uint32_t next = 2, id;
  size_t i;
  int pass;

  memset (disk, 0, sizeof *disk);
  if (size_directories (tree, label) == -1 ||
      choose_geometry (tree, dir, requested_size, size_str, &g) == -1)
    return -1;
  disk->sectors_per_cluster = g.spc;
  disk->nr_clusters = g.clusters;
  cs = (uint64_t) g.spc * SECTOR;
  disk->size = requested_size ? requested_size / SECTOR * SECTOR
    : (PART_START + g.part) * SECTOR;
  nbdkit_debug ("disk of %" PRIu64 " bytes: %" PRIu32 " clusters of %"
                PRIu64 " bytes, FATs of %" PRIu32 " sectors, %" PRIu32
                " reserved sectors", disk->size, g.clusters, cs, g.fat,
                g.reserved);

  disk->mbr = calloc (1, SECTOR);
  disk->reserved = calloc (g.reserved, SECTOR);
  disk->chains = calloc (tree->nr_nodes, sizeof *disk->chains);
  if (!disk->mbr || !disk->reserved || !disk->chains) {
    nbdkit_error ("out of memory");
    goto err;
  }

  if (add_region (disk, SECTOR, REGION_DATA, disk->mbr, NULL) == -1 ||
      add_region (disk, (PART_START - 1) * SECTOR, REGION_ZERO,
                  NULL, NULL) == -1 ||
      add_region (disk, (uint64_t) g.reserved * SECTOR, REGION_DATA,
                  disk->reserved, NULL) == -1 ||
      add_region (disk, (uint64_t) g.fat * SECTOR, REGION_FAT,
                  NULL, NULL) == -1 ||
      add_region (disk, (uint64_t) g.fat * SECTOR, REGION_FAT,
                  NULL, NULL) == -1)
    goto err;

  /* Clusters: the directories, root first, then the files.  The nodes
   * are in pre-order, so both passes go up in cluster numbers.
   */
  for (pass = 0; pass < 2; ++pass)
    for (i = 0; i < tree->nr_nodes; ++i)
      if (tree->nodes[i].is_dir == (pass == 0) &&
          add_chain (disk, &tree->nodes[i], &next) == -1)
        goto err;
  used = next - 2;
  if (add_region (disk, disk->size - (disk->regions[disk->nr_regions-1].start
                                      + disk->regions[disk->nr_regions-1].len),
                  REGION_ZERO, NULL, NULL) == -1)
    goto err;

  for (i = 0; i < tree->nr_nodes; ++i)
    if (tree->nodes[i].is_dir)
      fill_directory (tree, i, label);

  id = volume_id (tree, label);
  fill_mbr (disk->mbr, &g, id);
  fill_boot_sector (disk->reserved, &g, id, label);
  fill_fsinfo (disk->reserved + FSINFO_SECTOR * SECTOR,
               (uint32_t) (g.clusters - used),
               used < g.clusters ? (uint32_t) (2 + used) : UINT32_C(0xffffffff));
  memcpy (disk->reserved + BACKUP_BOOT_SECTOR * SECTOR, disk->reserved,
          2 * SECTOR);          /* backup boot sector and FSInfo */
  return 0;

 err:
  free_disk (disk);
  return -1;
}

void
free_disk (struct disk *disk)
{
  free (disk->regions);
  free (disk->chains);
  free (disk->mbr);
  free (disk->reserved);
  memset (disk, 0, sizeof *disk);
}

/* Entry index of the FAT: chains are contiguous, ending in EOC. */
uint32_t
fat_entry (const struct disk *disk, uint64_t index)
{
  size_t lo = 0, hi = disk->nr_chains;

  if (index == 0)
    return UINT32_C(0x0ffffff8);        /* media byte 0xf8 */
  if (index == 1)
    return FAT_EOC;                     /* clean, no errors */
  while (lo < hi) {                     /* last chain with first <= index */
    size_t mid = lo + (hi - lo) / 2;

    if (disk->chains[mid].first <= index)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0) {
    const struct chain *c = &disk->chains[lo - 1];

    if (index < (uint64_t) c->first + c->count)
      return index == (uint64_t) c->first + c->count - 1
        ? FAT_EOC : (uint32_t) index + 1;
  }
  return 0;                             /* free */
}
