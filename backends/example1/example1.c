/* nbdkit example1 backend: the disk of nbdkit's example1 plugin, a
 * minimal read-only disk for probing and for trying clients out.  It
 * is 100 MiB of zeroes but for its first sector, an MBR (a small boot
 * loader, a disk signature and one empty Linux partition from sector
 * 128 to the end), byte for byte what nbdkit's example1 serves.  It
 * takes no parameters, and like the plugin it has no write, flush,
 * trim, zero, cache or extents callback, no multi-conn, and the
 * serialize_all_requests thread model.
 */

#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <string.h>

#include "nbdkit-backend.h"

#define SECTOR 512
#define DISK_SIZE (INT64_C (100) * 1024 * 1024)

/* The boot loader at the start of the MBR (75 bytes of x86 code that
 * copies itself away and boots the active partition).
 */
static const unsigned char boot_code[] = {
  0xfa, 0xb8, 0x00, 0x10, 0x8e, 0xd0, 0xbc, 0x00, 0xb0, 0xb8, 0x00, 0x00,
  0x8e, 0xd8, 0x8e, 0xc0, 0xfb, 0xbe, 0x00, 0x7c, 0xbf, 0x00, 0x06, 0xb9,
  0x00, 0x02, 0xf3, 0xa4, 0xea, 0x21, 0x06, 0x00, 0x00, 0xbe, 0xbe, 0x07,
  0x38, 0x04, 0x75, 0x0b, 0x83, 0xc6, 0x10, 0x81, 0xfe, 0xfe, 0x07, 0x75,
  0xf3, 0xeb, 0x16, 0xb4, 0x02, 0xb0, 0x01, 0xbb, 0x00, 0x7c, 0xb2, 0x80,
  0x8a, 0x74, 0x01, 0x8b, 0x4c, 0x02, 0xcd, 0x13, 0xea, 0x00, 0x7c, 0x00,
  0x00, 0xeb, 0xfe,
};

static unsigned char mbr[SECTOR];

static void
put_le32 (unsigned char *p, uint32_t v)
{
  v = htole32 (v);
  memcpy (p, &v, 4);
}

static int
example1_get_ready (void)
{
  unsigned char *e = mbr + 0x1be;       /* the first partition entry */

  memcpy (mbr, boot_code, sizeof boot_code);
  put_le32 (mbr + 0x1b8, 0x00025be1);   /* disk signature */
  e[0] = 0x00;                          /* not active */
  e[1] = 0x02; e[2] = 0x03; e[3] = 0x00;        /* CHS of the start */
  e[4] = 0x83;                          /* Linux */
  e[5] = 0xbc; e[6] = 0x31; e[7] = 0x0c;        /* CHS of the end */
  put_le32 (e + 8, 128);                /* first sector */
  put_le32 (e + 12, 204545);            /* sectors */
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return 0;
}

static void *
example1_open (int readonly)
{
  return mbr;
}

static int64_t
example1_get_size (void *handle)
{
  return DISK_SIZE;
}

static int
example1_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  memset (buf, 0, count);
  if (offset < SECTOR) {
    uint32_t n = SECTOR - offset < count ? SECTOR - offset : count;

    memcpy (buf, mbr + offset, n);
  }
  return 0;
}

static struct nbdkit_backend example1 = {
  .name = "example1",
  .longname = "nbdkit example1 backend",
  .version = PACKAGE_VERSION,
  .description = "A 100M read-only disk with one empty partition, as "
                 "nbdkit's example1 plugin.",
  .thread_model = NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS,
  .get_ready = example1_get_ready,
  .open = example1_open,
  .get_size = example1_get_size,
  .pread = example1_pread,
};

NBDKIT_REGISTER_BACKEND (example1)
