/* nbdkit file backend: serve a file or a block device, or with dir=
 * every regular file and block device of a directory, one export each
 * (the client picks one by its export name; NBD_OPT_LIST lists them).
 *
 * Each connection opens the file itself, read-write when it can and the
 * client may write, read-only otherwise.  Trim punches holes, zero uses
 * FALLOC_FL_ZERO_RANGE (or a hole when trimming is allowed), flush and
 * FUA are fdatasync, cache is posix_fadvise, extents come from
 * SEEK_DATA/SEEK_HOLE.  Because the data is in the file, a crash of this
 * backend loses nothing that was acknowledged.
 */

#include <config.h>

#include <dirent.h>
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

static char *filename;           /* file= */
static char *directory;          /* dir= */

struct handle {
  char *path;                   /* for messages */
  int fd;
  bool readonly;
  bool is_block;
  bool has_seek_data;
};

static void
file_unload (void)
{
  free (filename);
  free (directory);
}

static int
file_config (const char *key, const char *value)
{
  char **which;

  if (strcmp (key, "file") == 0)
    which = &filename;
  else if (strcmp (key, "dir") == 0)
    which = &directory;
  else {
    nbdkit_error ("unknown parameter '%s' (the file backend takes "
                  "file=FILE or dir=DIRECTORY)", key);
    return -1;
  }
  free (*which);
  *which = nbdkit_absolute_path (value);
  return *which ? 0 : -1;
}

static bool
is_disk (const struct stat *st)
{
  return S_ISREG (st->st_mode) || S_ISBLK (st->st_mode);
}

static int
file_config_complete (void)
{
  const char *what = filename ? "file" : "dir";
  const char *path = filename ? filename : directory;
  struct stat st;

  if (filename && directory) {
    nbdkit_error ("file=%s and dir=%s: give only one of them",
                  filename, directory);
    return -1;
  }
  if (!path) {
    nbdkit_error ("the file to serve is required, e.g. 'nbdkit file disk.img'"
                  " or file=disk.img (or dir=DIRECTORY for its files)");
    return -1;
  }
  if (stat (path, &st) == -1) {
    nbdkit_error ("%s=%s: %m", what, path);
    return -1;
  }
  if (filename && !is_disk (&st)) {
    nbdkit_error ("file=%s: not a regular file or a block device",
                  filename);
    return -1;
  }
  if (directory && !S_ISDIR (st.st_mode)) {
    nbdkit_error ("dir=%s: not a directory", directory);
    return -1;
  }
  if (access (path, directory ? R_OK | X_OK : R_OK) == -1) {
    nbdkit_error ("%s=%s: %m", what, path);
    return -1;
  }
  return 0;
}

/* dir=: the exports are the directory's regular files and block
 * devices (symbolic links followed), in name order.
 */
static int
file_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  struct dirent **names;
  int n, i, r = 0;

  if (!directory)
    return nbdkit_add_export (exports, "", NULL);
  n = scandir (directory, &names, NULL, alphasort);
  if (n == -1) {
    nbdkit_error ("dir=%s: %m", directory);
    return -1;
  }
  for (i = 0; i < n; ++i) {
    struct stat st;
    char *path;

    if (r == 0 && names[i]->d_name[0] != '.' &&
        asprintf (&path, "%s/%s", directory, names[i]->d_name) >= 0) {
      if (stat (path, &st) == 0 && is_disk (&st))
        r = nbdkit_add_export (exports, names[i]->d_name, NULL);
      free (path);
    }
    free (names[i]);
  }
  free (names);
  return r;
}

/* The file a connection serves: file=, or its export in dir=. */
static char *
export_path (void)
{
  const char *name = nbdkit_export_name ();
  char *path;

  if (!directory)
    return strdup (filename);
  if (!*name) {
    nbdkit_error ("dir=%s: there is no default export; ask for one of the "
                  "files by its name (NBD_OPT_LIST lists them)", directory);
    errno = ENOENT;
    return NULL;
  }
  if (strchr (name, '/') || strcmp (name, ".") == 0 ||
      strcmp (name, "..") == 0) {
    nbdkit_error ("dir=%s: export name '%s' is not a file name in the "
                  "directory", directory, name);
    errno = EINVAL;
    return NULL;
  }
  if (asprintf (&path, "%s/%s", directory, name) == -1)
    return NULL;
  return path;
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

  if (!h || !(h->path = export_path ())) {
    if (h && errno == ENOMEM)
      nbdkit_error ("out of memory");
    free (h);
    return NULL;
  }
  h->readonly = readonly;
  h->fd = -1;
  if (!readonly) {
    h->fd = open (h->path, O_RDWR | O_CLOEXEC);
    if (h->fd == -1 && (errno == EACCES || errno == EROFS ||
                        errno == EPERM)) {
      nbdkit_debug ("%s: not writable, serving it read-only", h->path);
      h->readonly = true;
    }
  }
  if (h->fd == -1)
    h->fd = open (h->path, O_RDONLY | O_CLOEXEC);
  if (h->fd == -1 || fstat (h->fd, &st) == -1 || !is_disk (&st)) {
    if (h->fd == -1)
      nbdkit_error ("%s: %m", h->path);
    else {
      nbdkit_error ("%s: not a regular file or a block device", h->path);
      close (h->fd);
      errno = EINVAL;
    }
    free (h->path);
    free (h);
    return NULL;
  }
  h->is_block = S_ISBLK (st.st_mode);
  h->has_seek_data = lseek (h->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO;
  return h;
}

static void
file_close (void *handle)
{
  struct handle *h = handle;

  close (h->fd);
  free (h->path);
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
      nbdkit_error ("%s: BLKGETSIZE64: %m", h->path);
      return -1;
    }
    return (int64_t) size;
  }
  if (fstat (h->fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", h->path);
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
    nbdkit_error ("%s: fdatasync: %m", h->path);
    return -1;
  }
  return 0;
}

static int
file_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct handle *h = handle;

  return sparse_pread (h->path, h->fd, buf, count, offset);
}

static int
file_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct handle *h = handle;

  if (sparse_pwrite (h->path, h->fd, buf, count, offset) == -1)
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
  if (sparse_punch (h->path, h->fd, count, offset) == -1 &&
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
    nbdkit_error ("%s: zeroing: %m", h->path);
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
    nbdkit_error ("%s: posix_fadvise: %m", h->path);
    return -1;
  }
  return 0;
}

static int
file_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  struct handle *h = handle;

  return sparse_extents (h->path, h->fd, count, offset, flags, extents);
}

static struct nbdkit_backend file = {
  .name = "file",
  .longname = "nbdkit file backend",
  .version = PACKAGE_VERSION,
  .description = "Serve a file or a block device.",
  .config_help = "file=<FILENAME>     The file or block device to serve.\n"
                 "dir=<DIRECTORY>     Or: serve each file of the directory "
                 "as an export.",
  .magic_config_key = "file",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = file_unload,
  .config = file_config,
  .config_complete = file_config_complete,
  .dump_plugin = file_dump_plugin,
  .list_exports = file_list_exports,
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
