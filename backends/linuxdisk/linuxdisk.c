/* nbdkit linuxdisk backend: a read-only disk with one GPT partition
 * holding an ext2, ext3 or ext4 file system made from a host directory
 * (nbdkit-linuxdisk-plugin(1)).
 *
 * Owns the parameters and the making of the disk: in get_ready the
 * directory is measured, mke2fs -d copies it into a file system image
 * in $TMPDIR (or /var/tmp), whose name is removed as soon as mke2fs is
 * done (the open descriptor keeps it until the process ends), and the
 * GPT around it is computed (gpt.c).  Reads are served from the two GPT
 * buffers and the image; nothing changes after get_ready, so requests
 * run in parallel.  There is no pwrite: writes fail with EPERM.
 */

#include <config.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "gpt.h"
#include "../run-tool.h"

#define MAX_LABEL 16            /* bytes of an ext2 volume label */
#define MAX_TRIES 6             /* of mke2fs, growing a too small guess */

static char *dir;                       /* dir= */
static char *label;                     /* label= */
static const char *type = "ext2";       /* type= */
static int64_t size;                    /* size=, 0: just large enough */
static bool size_add;                   /* size=+SIZE */

static int image_fd = -1;               /* the file system */
static uint64_t image_size;             /* bytes */
static uint64_t part_sectors;           /* image_size in sectors */
static uint64_t disk_size;
static unsigned char primary[GPT_PRIMARY_SECTORS * GPT_SECTOR];
static unsigned char backup[GPT_BACKUP_SECTORS * GPT_SECTOR];

/* The UUIDs of the disk come from this seed, which depends only on the
 * server and dir=, and the times mke2fs writes are the server's start:
 * so a restarted backend makes the same disk again, byte for byte, for
 * the clients it re-opens.
 */
static unsigned char seed[16];
static char fs_uuid[37];

static void
make_seed (void)
{
  uint64_t h[2] = { UINT64_C (0xcbf29ce484222325), UINT64_C (0x84222325cbf29ce4) };
  uint64_t id = tool_server_id ();

  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < 8; i++)
      h[k] = (h[k] ^ ((id >> (8 * i)) & 0xff)) * UINT64_C (0x100000001b3);
    for (const char *p = dir; *p; p++)
      h[k] = (h[k] ^ (unsigned char) *p) * UINT64_C (0x100000001b3);
  }
  for (int i = 0; i < 16; i++)
    seed[i] = (unsigned char) (h[i / 8] >> (8 * (i % 8)));
  snprintf (fs_uuid, sizeof fs_uuid,
            "%02x%02x%02x%02x-%02x%02x-4%x%02x-%x%x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5],
            seed[6] & 0xf, seed[7], 8 | (seed[8] & 3), seed[8] >> 4,
            seed[9], seed[10], seed[11], seed[12], seed[13], seed[14],
            seed[15]);
}

static void
linuxdisk_unload (void)
{
  if (image_fd >= 0)
    close (image_fd);
  free (dir);
  free (label);
}

static int
linuxdisk_config (const char *key, const char *value)
{
  if (strcmp (key, "dir") == 0) {
    if (dir) {
      nbdkit_error ("dir=%s: a directory was already given (%s): the "
                    "linuxdisk backend serves one directory", value, dir);
      return -1;
    }
    dir = nbdkit_realpath (value);
    return dir ? 0 : -1;
  }
  if (strcmp (key, "label") == 0) {
    if (strlen (value) > MAX_LABEL) {
      nbdkit_error ("label=%s: too long: an ext2/3/4 label has at most %d "
                    "bytes", value, MAX_LABEL);
      return -1;
    }
    free (label);
    label = strdup (value);
    if (!label) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "type") == 0) {
    if (strcmp (value, "ext2") && strcmp (value, "ext3") &&
        strcmp (value, "ext4")) {
      nbdkit_error ("type=%s: not a file system this backend makes "
                    "(use ext2, ext3 or ext4)", value);
      return -1;
    }
    type = strcmp (value, "ext2") == 0 ? "ext2"
      : strcmp (value, "ext3") == 0 ? "ext3" : "ext4";
    return 0;
  }
  if (strcmp (key, "size") == 0) {
    size_add = value[0] == '+';
    size = nbdkit_parse_size (value + size_add);
    if (size == -1)
      return -1;
    if (!size_add && size < 65536) {
      nbdkit_error ("size=%s: too small for an ext2/3/4 file system "
                    "(give at least 64K, size=+SIZE for free space, or "
                    "leave out size= for just large enough)", value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the linuxdisk backend takes "
                "dir=DIRECTORY, label=LABEL, type=ext2|ext3|ext4 and "
                "size=[+]SIZE)", key);
  return -1;
}

static int
linuxdisk_config_complete (void)
{
  struct stat st;

  if (!dir) {
    nbdkit_error ("the directory to serve is required, e.g. "
                  "'nbdkit linuxdisk /path/to/dir' or dir=/path/to/dir");
    return -1;
  }
  if (stat (dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    nbdkit_error ("dir=%s: not a directory (the linuxdisk backend copies "
                  "the files of a directory)", dir);
    return -1;
  }
  if (!tool_found ("mke2fs")) {
    nbdkit_error ("mke2fs is not on $PATH: the linuxdisk backend makes the "
                  "file system with it (install e2fsprogs)");
    return -1;
  }
  return 0;
}

/* Measuring the directory: data blocks of 4K and an inode each. */
static uint64_t tree_bytes, tree_inodes;

static int
measure (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  /* mke2fs copies the access times, which its own reading may change
   * (with relatime, the first read after a write does): read a byte of
   * each file and each link first, as nftw reads the directories, so
   * that the times mke2fs copies are the same in a restarted backend.
   */
  if (S_ISREG (st->st_mode)) {
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    char c;

    if (fd >= 0) {
      if (read (fd, &c, 1) == -1)
        nbdkit_debug ("%s: read: %m", path);
      close (fd);
    }
  }
  else if (S_ISLNK (st->st_mode)) {
    char target[1];

    if (readlink (path, target, sizeof target) == -1)
      nbdkit_debug ("%s: readlink: %m", path);
  }
  tree_inodes++;
  if (S_ISREG (st->st_mode) || S_ISDIR (st->st_mode) ||
      S_ISLNK (st->st_mode))
    tree_bytes += ((uint64_t) st->st_size + 4095) / 4096 * 4096;
  return 0;
}

/* Make the image of bytes (rounded to 4K) with mke2fs -d.  0, or -1
 * after nbdkit_error.
 */
static int
make_image (uint64_t bytes)
{
  char *path, *script, *qdir, *qlabel = NULL, *qpath;
  char what[] = "mke2fs";
  char fake_time[64];
  char *env[] = { fake_time, NULL };
  int fd, r;

  if (asprintf (&path, "%s/linuxdisk-XXXXXX", tool_tmpdir ()) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  fd = mkostemp (path, O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("cannot make a temporary file %s: %m (set TMPDIR to a "
                  "writable directory)", path);
    free (path);
    return -1;
  }
  bytes = (bytes + 4095) / 4096 * 4096;
  if (ftruncate (fd, (off_t) bytes) == -1) {
    nbdkit_error ("%s: ftruncate to %" PRIu64 " bytes: %m", path, bytes);
    goto fail_unlink;
  }
  qdir = tool_shell_quote (dir);
  qpath = tool_shell_quote (path);
  if (label)
    qlabel = tool_shell_quote (label);
  r = qdir && qpath && (!label || qlabel) &&
    asprintf (&script, "exec mke2fs -q -F -t %s -U %s "
              "-E root_owner=%ld:%ld,hash_seed=%s %s%s -d %s %s",
              type, fs_uuid, (long) getuid (), (long) getgid (), fs_uuid,
              label ? "-L " : "", label ? qlabel : "", qdir, qpath) != -1;
  free (qdir);
  free (qpath);
  free (qlabel);
  if (!r) {
    nbdkit_error ("out of memory");
    goto fail_unlink;
  }
  snprintf (fake_time, sizeof fake_time, "E2FSPROGS_FAKE_TIME=%" PRIi64,
            tool_server_start ());
  r = run_tool (what, script, env, -1);
  free (script);
  if (r == -1)
    goto fail_unlink;
  unlink (path);
  free (path);
  if (image_fd >= 0)
    close (image_fd);
  image_fd = fd;
  image_size = bytes;
  return 0;

 fail_unlink:
  unlink (path);
  free (path);
  close (fd);
  return -1;
}

static int
linuxdisk_get_ready (void)
{
  uint64_t guess;
  int tries;

  make_seed ();
  if (nftw (dir, measure, 64, FTW_PHYS) == -1) {
    nbdkit_error ("dir=%s: cannot read the whole directory: %m", dir);
    return -1;
  }
  /* Metadata: an inode of 256 bytes and a directory entry each, the
   * group tables, and the journal of ext3/4.
   */
  guess = tree_bytes + tree_inodes * 512;
  if (size_add)
    guess += (uint64_t) size;
  guess += guess / 8 + 1024 * 1024;
  if (strcmp (type, "ext2") != 0)
    guess += 4 * 1024 * 1024;

  if (size && !size_add) {
    if ((uint64_t) size < tree_bytes) {
      nbdkit_error ("size=%" PRIi64 ": smaller than the %" PRIu64 " bytes "
                    "of the files of dir=%s (give a larger size, size=+SIZE "
                    "for free space, or leave out size=)", size, tree_bytes,
                    dir);
      return -1;
    }
    if (make_image ((uint64_t) size) == -1)
      return -1;
  }
  else {
    for (tries = 1; ; tries++) {
      if (make_image (guess) == 0)
        break;
      if (tries == MAX_TRIES)
        return -1;
      guess += guess / 2;
      nbdkit_debug ("linuxdisk: retrying with %" PRIu64 " bytes", guess);
    }
  }
  part_sectors = image_size / GPT_SECTOR;
  gpt_make (part_sectors, seed, primary, backup);
  disk_size = (GPT_PART_START + part_sectors + GPT_BACKUP_SECTORS)
    * GPT_SECTOR;
  nbdkit_debug ("linuxdisk: dir=%s: %" PRIu64 " inodes, %s of %" PRIu64
                " bytes, disk of %" PRIu64 " bytes", dir, tree_inodes, type,
                image_size, disk_size);
  return 0;
}

static void *
linuxdisk_open (int readonly)
{
  return &image_fd;
}

static int64_t
linuxdisk_get_size (void *handle)
{
  return (int64_t) disk_size;
}

static int linuxdisk_yes (void *handle) { return 1; }

static int
linuxdisk_can_cache (void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

static int
read_image (unsigned char *buf, uint32_t count, uint64_t offset)
{
  while (count > 0) {
    ssize_t r = pread (image_fd, buf, count, (off_t) offset);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      nbdkit_error ("linuxdisk: reading the file system image: %m");
      return -1;
    }
    if (r == 0) {                       /* cannot happen: it is ours */
      memset (buf, 0, count);
      return 0;
    }
    buf += r;
    count -= (uint32_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

static int
linuxdisk_pread (void *handle, void *vbuf, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  const uint64_t part = GPT_PART_START * GPT_SECTOR;
  const uint64_t end = part + image_size;
  unsigned char *buf = vbuf;

  while (count > 0) {
    uint32_t n;

    if (offset < part) {
      n = part - offset < count ? (uint32_t) (part - offset) : count;
      if (offset >= sizeof primary)
        memset (buf, 0, n);
      else {
        uint32_t m = sizeof primary - offset < n
          ? (uint32_t) (sizeof primary - offset) : n;

        memcpy (buf, primary + offset, m);
        memset (buf + m, 0, n - m);
      }
    }
    else if (offset < end) {
      n = end - offset < count ? (uint32_t) (end - offset) : count;
      if (read_image (buf, n, offset - part) == -1)
        return -1;
    }
    else {
      n = count;                /* the library keeps us inside the disk */
      memcpy (buf, backup + (offset - end), n);
    }
    buf += n;
    count -= n;
    offset += n;
  }
  return 0;
}

static struct nbdkit_backend linuxdisk = {
  .name = "linuxdisk",
  .longname = "nbdkit linuxdisk backend",
  .version = PACKAGE_VERSION,
  .description = "A read-only GPT disk with an ext2/3/4 file system "
                 "made from a directory.",
  .config_help =
    "[dir=]<DIRECTORY>  (required) The directory to copy into the file\n"
    "                   system.\n"
    "label=<LABEL>      The file system label.\n"
    "type=ext2|ext3|ext4  The file system type (default ext2).\n"
    "size=[+]<SIZE>     The size of the file system (default: just large\n"
    "                   enough); +SIZE: at least SIZE free.",
  .magic_config_key = "dir",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = linuxdisk_unload,
  .config = linuxdisk_config,
  .config_complete = linuxdisk_config_complete,
  .get_ready = linuxdisk_get_ready,
  .open = linuxdisk_open,
  .get_size = linuxdisk_get_size,
  .can_multi_conn = linuxdisk_yes,
  .can_cache = linuxdisk_can_cache,
  .pread = linuxdisk_pread,
};

NBDKIT_REGISTER_BACKEND (linuxdisk)
