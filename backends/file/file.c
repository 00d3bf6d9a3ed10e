/* nbdkit file backend: serve a file or a block device.
 *
 * Each connection opens the file itself, read-write when it can and the
 * client may write, read-only otherwise.  Trim punches holes, zero uses
 * FALLOC_FL_ZERO_RANGE (or a hole when trimming is allowed), flush and
 * FUA are fdatasync, cache is posix_fadvise, extents come from
 * SEEK_DATA/SEEK_HOLE.  Because the data is in the file, a crash of this
 * backend loses nothing that was acknowledged.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"

static char *filename;

struct handle {
  int fd;
  bool readonly;
  bool is_block;
  bool has_seek_data;
};

static void
file_unload (void)
{
  free (filename);
}

static int
file_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (filename);
    filename = nbdkit_absolute_path (value);
    return filename ? 0 : -1;
  }
  nbdkit_error ("unknown parameter '%s' (the file backend takes file=FILE)",
                key);
  return -1;
}

static int
file_config_complete (void)
{
  struct stat st;

  if (!filename) {
    nbdkit_error ("the file to serve is required, e.g. 'nbdkit file disk.img'"
                  " or file=disk.img");
    return -1;
  }
  if (stat (filename, &st) == -1) {
    nbdkit_error ("file=%s: %m", filename);
    return -1;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    nbdkit_error ("file=%s: not a regular file or a block device",
                  filename);
    return -1;
  }
  if (access (filename, R_OK) == -1) {
    nbdkit_error ("file=%s: %m", filename);
    return -1;
  }
  return 0;
}

static void
file_dump_plugin (void)
{
  printf ("file_extents=yes\n");
}

static void *
file_open (int readonly)
{
  struct handle *h = calloc (1, sizeof *h);
  struct stat st;

  if (!h) {
    nbdkit_error ("out of memory");
    return NULL;
  }
  h->readonly = readonly;
  h->fd = -1;
  if (!readonly) {
    h->fd = open (filename, O_RDWR | O_CLOEXEC);
    if (h->fd == -1 && (errno == EACCES || errno == EROFS ||
                        errno == EPERM)) {
      nbdkit_debug ("%s: not writable, serving it read-only", filename);
      h->readonly = true;
    }
  }
  if (h->fd == -1)
    h->fd = open (filename, O_RDONLY | O_CLOEXEC);
  if (h->fd == -1) {
    nbdkit_error ("%s: %m", filename);
    free (h);
    return NULL;
  }
  h->is_block = fstat (h->fd, &st) == 0 && S_ISBLK (st.st_mode);
  h->has_seek_data = lseek (h->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO;
  return h;
}

static void
file_close (void *handle)
{
  struct handle *h = handle;

  close (h->fd);
  free (h);
}

static int64_t
file_get_size (void *handle)
{
  struct handle *h = handle;
  struct stat st;

  if (h->is_block) {
    uint64_t size;

    if (ioctl (h->fd, BLKGETSIZE64, &size) == -1) {
      nbdkit_error ("%s: BLKGETSIZE64: %m", filename);
      return -1;
    }
    return (int64_t) size;
  }
  if (fstat (h->fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", filename);
    return -1;
  }
  return st.st_size;
}

static int
file_can_write (void *handle)
{
  return !((struct handle *) handle)->readonly;
}

static int file_yes (void *handle) { return 1; }
static int file_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int file_cache_native (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
file_can_extents (void *handle)
{
  return ((struct handle *) handle)->has_seek_data;
}

static int
file_flush (void *handle, uint32_t flags)
{
  struct handle *h = handle;

  if (fdatasync (h->fd) == -1) {
    nbdkit_error ("%s: fdatasync: %m", filename);
    return -1;
  }
  return 0;
}

static int
file_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct handle *h = handle;

  return sparse_pread (filename, h->fd, buf, count, offset);
}

static int
file_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct handle *h = handle;

  if (sparse_pwrite (filename, h->fd, buf, count, offset) == -1)
    return -1;
  return (flags & NBDKIT_FLAG_FUA) ? file_flush (h, 0) : 0;
}

static int
file_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;

  /* Trimming is advisory: if the file system cannot punch holes, the
   * data simply stays.
   */
  if (sparse_punch (filename, h->fd, count, offset) == -1 &&
      errno != EOPNOTSUPP)
    return -1;
  return (flags & NBDKIT_FLAG_FUA) ? file_flush (h, 0) : 0;
}

static int
file_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  int r;

  r = fallocate (h->fd, FALLOC_FL_ZERO_RANGE, (off_t) offset, count);
  if (r == -1 && errno == EOPNOTSUPP && (flags & NBDKIT_FLAG_MAY_TRIM))
    r = fallocate (h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   (off_t) offset, count);
  if (r == -1) {
    if (errno == EOPNOTSUPP || errno == ENODEV) {
      /* No fast way: the library writes zeroes, or fails a fast zero. */
      nbdkit_set_error (ENOTSUP);
      return -1;
    }
    nbdkit_error ("%s: zeroing: %m", filename);
    return -1;
  }
  return (flags & NBDKIT_FLAG_FUA) ? file_flush (h, 0) : 0;
}

static int
file_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct handle *h = handle;
  int err = posix_fadvise (h->fd, (off_t) offset, count, POSIX_FADV_WILLNEED);

  if (err) {
    errno = err;
    nbdkit_error ("%s: posix_fadvise: %m", filename);
    return -1;
  }
  return 0;
}

static int
file_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  struct handle *h = handle;

  return sparse_extents (filename, h->fd, count, offset, flags, extents);
}

static struct nbdkit_backend file = {
  .name = "file",
  .longname = "nbdkit file backend",
  .version = PACKAGE_VERSION,
  .description = "Serve a file or a block device.",
  .config_help = "file=<FILENAME>  (required) The file or block device "
                 "to serve.",
  .magic_config_key = "file",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = file_unload,
  .config = file_config,
  .config_complete = file_config_complete,
  .dump_plugin = file_dump_plugin,
  .open = file_open,
  .close = file_close,
  .get_size = file_get_size,
  .can_write = file_can_write,
  .can_multi_conn = file_yes,
  .can_fast_zero = file_yes,
  .can_extents = file_can_extents,
  .can_fua = file_fua,
  .can_cache = file_cache_native,
  .pread = file_pread,
  .pwrite = file_pwrite,
  .flush = file_flush,
  .trim = file_trim,
  .zero = file_zero,
  .cache = file_cache,
  .extents = file_extents,
};

NBDKIT_REGISTER_BACKEND (file)
