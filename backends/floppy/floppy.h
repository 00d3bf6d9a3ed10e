/* nbdkit floppy backend: the types shared by its files.
 *
 * scan.c walks the host directory into a tree of nodes (struct tree),
 * names.c gives each node its VFAT names, layout.c turns the tree into
 * a disk (struct disk: a sorted table of regions) and floppy.c serves
 * reads from that table.  Everything here is built once at start-up
 * and only read afterwards, so any number of threads may read it.
 */

#ifndef NBDKIT_FLOPPY_H
#define NBDKIT_FLOPPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* FAT32 limits. */
#define FAT_MAX_FILE_SIZE   UINT64_C(0xffffffff)  /* 4 GiB - 1 */
#define FAT_MAX_DIR_ENTRIES 65536       /* 32-byte entries, incl. LFN */
#define FAT_MAX_LFN_UNITS   255         /* UTF-16 units in a long name */
#define FAT_DIRENT_SIZE     32

/* One file or directory of the served tree. */
struct node {
  char *path;                   /* host path: for open() and messages */
  char *name;                   /* UTF-8 name in its parent; "" for root */
  bool is_dir;
  uint64_t size;                /* file: its size; dir: bytes of entries */
  struct timespec mtime, atime;

  /* VFAT names (names.c). */
  char short_name[11];          /* space padded 8.3, no dot */
  uint16_t *lfn;                /* UTF-16 long name, NULL if none needed */
  size_t lfn_len;               /* in UTF-16 units */

  /* Directory: the indexes of its children in tree.nodes. */
  size_t *children;
  size_t nr_children;
  size_t parent;                /* index of the parent (root: itself) */

  /* Placement (layout.c). */
  uint32_t first_cluster;       /* 0 for an empty file */
  uint32_t nr_clusters;
  unsigned char *dir_data;      /* dir: its clusters' contents */
};

struct tree {
  struct node *nodes;           /* nodes[0] is the root */
  size_t nr_nodes;
  uint64_t nr_files;
};

/* scan.c: read DIR recursively.  -1 after nbdkit_error. */
extern int scan_tree (const char *dir, struct tree *tree);
extern void free_tree (struct tree *tree);

/* names.c */
extern int utf8_to_lfn (const char *path, const char *name,
                        uint16_t **lfn, size_t *len);
extern int assign_short_names (struct tree *tree, size_t dir);
extern uint8_t short_name_checksum (const char short_name[11]);
extern size_t lfn_entries (const struct node *n);
extern void write_lfn_entries (const struct node *n, unsigned char *p);

/* What a region of the disk reads as. */
enum region_type {
  REGION_DATA,                  /* bytes in memory */
  REGION_ZERO,                  /* zeroes (unallocated space) */
  REGION_FAT,                   /* a copy of the FAT, computed on read */
  REGION_FILE,                  /* the clusters of a host file */
};

struct region {
  uint64_t start, len;          /* on the disk */
  enum region_type type;
  const unsigned char *data;    /* REGION_DATA */
  const struct node *file;      /* REGION_FILE */
};

/* A chain of clusters (a file or a directory), in cluster order. */
struct chain {
  uint32_t first, count;
};

struct disk {
  uint64_t size;
  struct region *regions;       /* sorted, contiguous, cover [0, size) */
  size_t nr_regions;
  struct chain *chains;         /* sorted by first cluster */
  size_t nr_chains;
  uint32_t nr_clusters;         /* data clusters (numbered from 2) */
  uint32_t sectors_per_cluster;
  unsigned char *mbr;           /* sector 0 */
  unsigned char *reserved;      /* the partition's reserved sectors */
};

/* layout.c: lay out the tree on a disk of requested_size bytes (0: just
 * large enough; size_str: the size= given, for messages) with this
 * volume label (11 bytes, space padded; all spaces: none).
 */
extern int build_disk (struct tree *tree, const char *dir,
                       uint64_t requested_size, const char *size_str,
                       const char label[11], struct disk *disk);
extern void free_disk (struct disk *disk);
extern uint32_t fat_entry (const struct disk *disk, uint64_t index);

#endif /* NBDKIT_FLOPPY_H */
