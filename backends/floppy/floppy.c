/* nbdkit floppy backend: a read-only disk with one FAT32 partition
 * made on the fly from a host directory (nbdkit-floppy-plugin(1)).
 *
 * Owns the parameters, the life cycle and the serving of reads: the
 * directory is read once, in get_ready (scan.c, names.c), and laid out
 * (layout.c) as a sorted table of regions; a read finds its first
 * region by binary search and is assembled piece by piece from memory,
 * zeroes, computed FAT entries and the host files, which are opened
 * and read only when a client reads them.  Nothing changes after
 * get_ready, so requests run in parallel.  There is no pwrite: every
 * connection is read-only and writes fail with EPERM.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "floppy.h"

#define DEFAULT_LABEL "NBDKITFLOPY"

static char *dir;                       /* dir= */
static char label[11];                  /* label=, space padded */
static uint64_t requested_size;         /* size=; 0: just large enough */
static char *size_str;                  /* size= as given */

static struct tree tree;
static struct disk disk;

static void
floppy_load (void)
{
  memset (label, ' ', sizeof label);
  memcpy (label, DEFAULT_LABEL, strlen (DEFAULT_LABEL));
}

static void
floppy_unload (void)
{
  free_disk (&disk);
  free_tree (&tree);
  free (dir);
  free (size_str);
}

/* Volume labels hold what short names hold, and spaces (not first). */
static int
set_label (const char *value)
{
  size_t i, len = strlen (value);

  if (len > sizeof label) {
    nbdkit_error ("label=%s: too long: a FAT volume label has at most "
                  "11 characters", value);
    return -1;
  }
  if (value[0] == ' ') {
    nbdkit_error ("label=%s: a FAT volume label cannot start with a space",
                  value);
    return -1;
  }
  memset (label, ' ', sizeof label);
  for (i = 0; i < len; ++i) {
    int c = (unsigned char) value[i];

    if (c >= 'a' && c <= 'z')
      c = c - 'a' + 'A';        /* labels are upper case, as mlabel does */
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          (c && strchr (" !#$%&'()-@^_`{}~", c)))) {
      if (c >= 0x80)
        nbdkit_error ("label=%s: not ASCII: a FAT volume label can hold "
                      "letters, digits, spaces and ! # $ %% & ' ( ) - @ ^ "
                      "_ ` { } ~", value);
      else
        nbdkit_error ("label=%s: '%c' cannot be in a FAT volume label "
                      "(use letters, digits, spaces and ! # $ %% & ' ( ) - "
                      "@ ^ _ ` { } ~)", value, c);
      return -1;
    }
    label[i] = (char) c;
  }
  return 0;
}

static int
floppy_config (const char *key, const char *value)
{
  if (strcmp (key, "dir") == 0) {
    if (dir) {
      nbdkit_error ("dir=%s: a directory was already given (%s): the floppy "
                    "backend serves one directory", value, dir);
      return -1;
    }
    dir = nbdkit_absolute_path (value);
    return dir ? 0 : -1;
  }
  if (strcmp (key, "label") == 0)
    return set_label (value);
  if (strcmp (key, "size") == 0) {
    int64_t r = nbdkit_parse_size (value);

    if (r == -1)
      return -1;
    if (r == 0) {
      nbdkit_error ("size=%s: a disk of 0 bytes cannot hold a FAT32 file "
                    "system (leave out size= for a disk just large enough)",
                    value);
      return -1;
    }
    requested_size = (uint64_t) r;
    free (size_str);
    size_str = strdup (value);
    if (!size_str) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the floppy backend takes "
                "dir=DIRECTORY, label=LABEL and size=SIZE)", key);
  return -1;
}

static int
floppy_config_complete (void)
{
  struct stat st;

  if (!dir) {
    nbdkit_error ("the directory to serve is required, e.g. "
                  "'nbdkit floppy /path/to/dir' or dir=/path/to/dir");
    return -1;
  }
  if (stat (dir, &st) == -1) {
    nbdkit_error ("dir=%s: %m", dir);
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    nbdkit_error ("dir=%s: not a directory (the floppy backend serves the "
                  "files of a directory)", dir);
    return -1;
  }
  if (access (dir, R_OK | X_OK) == -1) {
    nbdkit_error ("dir=%s: %m", dir);
    return -1;
  }
  return 0;
}

static int
floppy_get_ready (void)
{
  if (scan_tree (dir, &tree) == -1)
    return -1;
  if (build_disk (&tree, dir, requested_size, size_str, label, &disk) == -1)
    return -1;
  nbdkit_debug ("dir=%s: %" PRIu64 " files in %zu directories, disk of %"
                PRIu64 " bytes", dir, tree.nr_files,
                tree.nr_nodes - (size_t) tree.nr_files, disk.size);
  return 0;
}

static void *
floppy_open (int readonly)
{
  return &disk;
}

static int64_t
floppy_get_size (void *handle)
{
  return (int64_t) disk.size;
}

static int floppy_yes (void *handle) { return 1; }

/* The region holding offset (which is below the size of the disk). */
static const struct region *
find_region (uint64_t offset)
{
  size_t lo = 0, hi = disk.nr_regions;

  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;

    if (disk.regions[mid].start <= offset)
      lo = mid;
    else
      hi = mid;
  }
  return &disk.regions[lo];
}

static void
read_fat (unsigned char *buf, uint32_t count, uint64_t offset)
{
  while (count > 0) {
    uint32_t e = fat_entry (&disk, offset / 4);
    unsigned char le[4] = {
      (unsigned char) e, (unsigned char) (e >> 8),
      (unsigned char) (e >> 16), (unsigned char) (e >> 24),
    };
    uint32_t skip = offset % 4, n = 4 - skip < count ? 4 - skip : count;

    memcpy (buf, le + skip, n);
    buf += n;
    count -= n;
    offset += n;
  }
}

/* Bytes of the clusters of a file: its data, then zeroes to the end
 * of its last cluster.
 */
static int
read_file (const struct node *file, unsigned char *buf, uint32_t count,
           uint64_t offset)
{
  uint32_t n = 0;
  int fd;

  if (offset < file->size) {
    n = file->size - offset < count ? (uint32_t) (file->size - offset)
      : count;
    fd = open (file->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1) {
      nbdkit_error ("%s: %m (leave the directory alone while it is served)",
                    file->path);
      return -1;
    }
    for (uint32_t done = 0; done < n; ) {
      ssize_t r = pread (fd, buf + done, n - done, (off_t) (offset + done));

      if (r == -1 && errno == EINTR)
        continue;
      if (r <= 0) {
        if (r == 0) {
          nbdkit_error ("%s: shorter than the %" PRIu64 " bytes it had when "
                        "the server started (leave the directory alone "
                        "while it is served)", file->path, file->size);
          errno = EIO;
        }
        else
          nbdkit_error ("%s: pread: %m", file->path);
        close (fd);
        return -1;
      }
      done += (uint32_t) r;
    }
    close (fd);
  }
  memset (buf + n, 0, count - n);
  return 0;
}

static int
floppy_pread (void *handle, void *vbuf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  unsigned char *buf = vbuf;

  while (count > 0) {
    const struct region *r = find_region (offset);
    uint64_t off = offset - r->start;
    uint32_t n = r->len - off < count ? (uint32_t) (r->len - off) : count;

    switch (r->type) {
    case REGION_DATA:
      memcpy (buf, r->data + off, n);
      break;
    case REGION_ZERO:
      memset (buf, 0, n);
      break;
    case REGION_FAT:
      read_fat (buf, n, off);
      break;
    case REGION_FILE:
      if (read_file (r->file, buf, n, off) == -1)
        return -1;
      break;
    }
    buf += n;
    count -= n;
    offset += n;
  }
  return 0;
}

static struct nbdkit_backend floppy = {
  .name = "floppy",
  .longname = "nbdkit floppy backend",
  .version = PACKAGE_VERSION,
  .description = "A read-only FAT32 disk made from a directory.",
  .config_help =
    "[dir=]<DIRECTORY>  (required) The directory to serve, with its\n"
    "                   subdirectories, as a FAT32 file system.\n"
    "label=<LABEL>      The volume label (at most 11 characters;\n"
    "                   default " DEFAULT_LABEL ").\n"
    "size=<SIZE>        The size of the disk (default: just large enough).",
  .magic_config_key = "dir",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .load = floppy_load,
  .unload = floppy_unload,
  .config = floppy_config,
  .config_complete = floppy_config_complete,
  .get_ready = floppy_get_ready,
  .open = floppy_open,
  .get_size = floppy_get_size,
  .can_multi_conn = floppy_yes,
  /* No extents, as nbdkit's floppy plugin: block status says data. */
  .pread = floppy_pread,
};

NBDKIT_REGISTER_BACKEND (floppy)
