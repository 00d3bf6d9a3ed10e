/* nbdkit linuxdisk backend: the GPT that wraps the file system -- a
 * protective MBR, the primary header and partition entries at the start
 * of the disk, their backup at the end, and one partition (Linux file
 * system data, legacy BIOS bootable) from 1 MiB on.
 */

#ifndef NBDKIT_LINUXDISK_GPT_H
#define NBDKIT_LINUXDISK_GPT_H

#include <stdint.h>

#define GPT_SECTOR 512
#define GPT_PART_START 2048             /* LBA of the partition: 1 MiB */
#define GPT_ENTRIES_SECTORS 32          /* 128 entries of 128 bytes */
#define GPT_PRIMARY_SECTORS (2 + GPT_ENTRIES_SECTORS)  /* MBR, header, entries */
#define GPT_BACKUP_SECTORS (GPT_ENTRIES_SECTORS + 1)   /* entries, header */

/* The sectors of a disk whose partition has part_sectors sectors:
 * primary gets GPT_PRIMARY_SECTORS, backup GPT_BACKUP_SECTORS (the last
 * ones of the disk).  The disk has GPT_PART_START + part_sectors +
 * GPT_BACKUP_SECTORS sectors.  The GUIDs are made from seed, so that
 * the same seed makes the same disk.
 */
extern void gpt_make (uint64_t part_sectors, const unsigned char seed[16],
                      unsigned char primary[GPT_PRIMARY_SECTORS * GPT_SECTOR],
                      unsigned char backup[GPT_BACKUP_SECTORS * GPT_SECTOR]);

#endif /* NBDKIT_LINUXDISK_GPT_H */
