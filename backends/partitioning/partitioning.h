/* nbdkit partitioning backend: what its files share.
 *
 * The disk is a list of regions, in order and contiguous from byte 0 to
 * the end: the partition table's bytes (made once, at start-up, by
 * layout.c), zero padding, and the files.  partitioning.c serves them.
 */

#ifndef NBDKIT_PARTITIONING_H
#define NBDKIT_PARTITIONING_H

#include <stdbool.h>
#include <stdint.h>

#define SECTOR 512
#define MAX_ALIGNMENT (1024 * 1024)
#define DEFAULT_MBR_ID 0x83
/* The default type GUID: Linux filesystem data. */
#define DEFAULT_TYPE_GUID "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

enum table_type { TABLE_DEFAULT, TABLE_MBR, TABLE_GPT };

/* One file= and the parameters in force when it was given. */
struct part {
  char *path;                   /* absolute */
  uint64_t size;                /* bytes, at start-up */
  uint64_t alignment;           /* bytes, a power of 2 */
  uint8_t mbr_id;
  uint8_t type_guid[16];        /* as stored on disk (mixed endian) */
  /* Set by the layout: */
  uint64_t start_lba, nr_sectors;
  uint64_t ebr_lba;             /* MBR logical partitions: its EBR */
};

enum region_type { REGION_DATA, REGION_ZERO, REGION_FILE };

struct region {
  uint64_t start, end;          /* bytes, [start, end) */
  enum region_type type;
  const uint8_t *data;          /* REGION_DATA: end - start bytes */
  size_t file;                  /* REGION_FILE: index in parts */
};

struct layout {
  enum table_type type;
  uint64_t size;                /* bytes */
  struct region *regions;
  size_t nr_regions;
  uint8_t *buffers[4];          /* what REGION_DATA points into */
  uint8_t **ebrs;               /* one sector each, MBR logical */
};

/* layout.c: place the partitions and make the tables.  Returns 0, or
 * -1 after nbdkit_error.
 */
extern int layout_make (struct part *parts, size_t n, enum table_type type,
                        struct layout *l);
extern void layout_free (struct layout *l, size_t n);
/* "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" into its on-disk bytes. */
extern int parse_guid (const char *s, uint8_t out[16]);
/* CRC-32 of IEEE 802.3 / zlib, as GPT uses. */
extern uint32_t crc32_ieee (const void *buf, size_t len);

#endif /* NBDKIT_PARTITIONING_H */
