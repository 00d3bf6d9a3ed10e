/* nbdkit linuxdisk backend: writing the GPT around the file system (see
 * gpt.h).  Pure computation on two buffers.
 */

#include <config.h>

#include <string.h>

#include "gpt.h"

#define NR_ENTRIES 128
#define ENTRY_SIZE 128
#define HEADER_SIZE 92

/* Linux file system data, 0FC63DAF-8483-4772-8E79-3D69D8477DE4, in its
 * on-disk (mixed-endian) order.
 */
static const unsigned char linux_fs_guid[16] = {
  0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
  0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

/* CRC-32 (IEEE 802.3, reflected), as the UEFI specification uses. */
static uint32_t
crc32 (const unsigned char *p, size_t len)
{
  uint32_t c = 0xffffffff;

  while (len--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320 & -(c & 1));
  }
  return c ^ 0xffffffff;
}

static void
le32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static void
le64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

/* A GUID made from seed and salt, marked as version 4 (random). */
static void
seeded_guid (unsigned char g[16], const unsigned char seed[16],
             unsigned char salt)
{
  for (int i = 0; i < 16; i++)
    g[i] = seed[i] ^ (unsigned char) (salt * (i + 1) * 0x3b);
  g[7] = (g[7] & 0x0f) | 0x40;          /* version, in the LE third field */
  g[8] = (g[8] & 0x3f) | 0x80;          /* variant */
}

static void
header (unsigned char *h, uint64_t my_lba, uint64_t alt_lba,
        uint64_t last_usable, const unsigned char disk_guid[16],
        uint64_t entries_lba, uint32_t entries_crc)
{
  memcpy (h, "EFI PART", 8);
  le32 (h + 8, 0x00010000);             /* revision 1.0 */
  le32 (h + 12, HEADER_SIZE);
  le64 (h + 24, my_lba);
  le64 (h + 32, alt_lba);
  le64 (h + 40, GPT_PRIMARY_SECTORS);   /* first usable LBA */
  le64 (h + 48, last_usable);
  memcpy (h + 56, disk_guid, 16);
  le64 (h + 72, entries_lba);
  le32 (h + 80, NR_ENTRIES);
  le32 (h + 84, ENTRY_SIZE);
  le32 (h + 88, entries_crc);
  le32 (h + 16, crc32 (h, HEADER_SIZE));        /* with 16..19 zero */
}

void
gpt_make (uint64_t part_sectors, const unsigned char seed[16],
          unsigned char primary[GPT_PRIMARY_SECTORS * GPT_SECTOR],
          unsigned char backup[GPT_BACKUP_SECTORS * GPT_SECTOR])
{
  uint64_t total = GPT_PART_START + part_sectors + GPT_BACKUP_SECTORS;
  uint64_t last = total - 1, last_usable = total - GPT_BACKUP_SECTORS - 1;
  unsigned char disk_guid[16];
  unsigned char *mbr = primary, *entries = primary + 2 * GPT_SECTOR;
  uint32_t entries_crc;

  memset (primary, 0, GPT_PRIMARY_SECTORS * GPT_SECTOR);
  memset (backup, 0, GPT_BACKUP_SECTORS * GPT_SECTOR);

  /* Protective MBR: one partition of type 0xEE over the whole disk. */
  mbr[446 + 2] = 0x02;                  /* CHS of LBA 1 */
  mbr[446 + 4] = 0xee;
  mbr[446 + 5] = mbr[446 + 6] = mbr[446 + 7] = 0xff;
  le32 (mbr + 446 + 8, 1);
  le32 (mbr + 446 + 12, total - 1 > 0xffffffff ? 0xffffffff
        : (uint32_t) (total - 1));
  mbr[510] = 0x55;
  mbr[511] = 0xaa;

  /* The one partition entry. */
  memcpy (entries, linux_fs_guid, 16);
  seeded_guid (entries + 16, seed, 1);
  le64 (entries + 32, GPT_PART_START);
  le64 (entries + 40, GPT_PART_START + part_sectors - 1);
  le64 (entries + 48, UINT64_C (1) << 2);       /* legacy BIOS bootable */
  entries_crc = crc32 (entries, NR_ENTRIES * ENTRY_SIZE);

  seeded_guid (disk_guid, seed, 2);
  header (primary + GPT_SECTOR, 1, last, last_usable, disk_guid, 2,
          entries_crc);
  memcpy (backup, entries, NR_ENTRIES * ENTRY_SIZE);
  header (backup + GPT_ENTRIES_SECTORS * GPT_SECTOR, last, 1, last_usable,
          disk_guid, last - GPT_ENTRIES_SECTORS, entries_crc);
}
