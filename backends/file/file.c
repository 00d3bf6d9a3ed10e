/* nbdkit file backend: serve a file or a block device (file=, or fd=
 * for a descriptor the server inherited), or every regular file and
 * block device of a directory (dir= or directory=, or dirfd=), one
 * export each: the client picks one by its export name, NBD_OPT_LIST
 * lists them in the directory's order.  Also owns cache= (cache=none:
 * drop from the page cache what was read or written) and fadvise= (a
 * posix_fadvise hint for each connection's file).
 *
 * Each connection opens the file itself (or a duplicate of the fd=
 * descriptor), read-write when it can and the client may write,
 * read-only otherwise.  Trim punches holes, zero uses
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"

/* What is served: exactly one of file=, dir= (directory=), fd=, dirfd=. */
enum mode { MODE_NONE, MODE_FILE, MODE_DIR, MODE_FD, MODE_DIRFD };

static const struct {
  const char *key;
  enum mode mode;
} mode_keys[] = {
  { "file", MODE_FILE },
  { "dir", MODE_DIR },
  { "directory", MODE_DIR },
  { "fd", MODE_FD },
  { "dirfd", MODE_DIRFD },
};

static enum mode mode;
static char *what;              /* that parameter, for messages: "fd=3" */
static char *path;              /* file= and dir=: made absolute */
static int srcfd = -1;          /* fd= and dirfd=: the server's descriptor */

static bool cache_none;         /* cache=none */
static uint64_t page_size;      /* for cache=none, set by config_complete */
static int advice = -1;         /* fadvise=: POSIX_FADV_*, -1 if not given */

/* cache=none: the ranges written last, whose write-back was started
 * but not waited for.  The oldest is waited for and dropped from the
 * page cache when a newer write needs its place, all of them on flush
 * and on close.  Waiting a few writes behind keeps writes streaming.
 */
#define EVICT_WINDOW 8

struct range {
  uint64_t offset;
  uint32_t count;
};

struct handle {
  char *path;                   /* for messages */
  int fd;
  bool readonly;
  bool is_block;
  bool has_seek_data;
  pthread_mutex_t lock;         /* cache=none: of the window */
  struct range window[EVICT_WINDOW];
  unsigned first, nr;           /* the window's oldest entry, how many */
};

static void
file_unload (void)
{
  free (what);
  free (path);
  if (srcfd >= 0)
    close (srcfd);
}

static bool
is_disk (const struct stat *st)
{
  return S_ISREG (st->st_mode) || S_ISBLK (st->st_mode);
}

/* file=, dir=, directory=, fd=, dirfd=.  The same one again replaces
 * the earlier (the last counts); two different ones are an error.
 */
static int
config_mode (const char *key, enum mode m, const char *value)
{
  char *new_what, *new_path = NULL;
  int fd = -1;

  if (mode != MODE_NONE && mode != m) {
    nbdkit_error ("%s and %s=%s: give only one of them (the file backend "
                  "serves one of file=, dir=, fd= and dirfd=)",
                  what, key, value);
    return -1;
  }
  if (m == MODE_FD || m == MODE_DIRFD) {
    fd = nbdkit_config_fd ();
    if (fd == -1) {
      nbdkit_error ("%s=%s: no file descriptor came with the parameter "
                    "(the nbdkit server passes the one it inherited)",
                    key, value);
      return -1;
    }
  }
  else if ((new_path = nbdkit_absolute_path (value)) == NULL)
    return -1;
  if (asprintf (&new_what, "%s=%s", key, new_path ? new_path : value) == -1) {
    nbdkit_error ("out of memory");
    free (new_path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  free (what);
  free (path);
  if (srcfd >= 0)
    close (srcfd);
  mode = m;
  what = new_what;
  path = new_path;
  srcfd = fd;
  return 0;
}

static int
file_config (const char *key, const char *value)
{
  size_t i;

  for (i = 0; i < sizeof mode_keys / sizeof mode_keys[0]; ++i)
    if (strcmp (key, mode_keys[i].key) == 0)
      return config_mode (key, mode_keys[i].mode, value);

  if (strcmp (key, "cache") == 0) {
    if (strcmp (value, "default") == 0)
      cache_none = false;
    else if (strcmp (value, "none") == 0)
      cache_none = true;
    else {
      nbdkit_error ("cache=%s: unknown cache mode (use cache=default or "
                    "cache=none)", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "fadvise") == 0) {
    if (strcmp (value, "normal") == 0)
      advice = POSIX_FADV_NORMAL;
    else if (strcmp (value, "random") == 0)
      advice = POSIX_FADV_RANDOM;
    else if (strcmp (value, "sequential") == 0)
      advice = POSIX_FADV_SEQUENTIAL;
    else {
      nbdkit_error ("fadvise=%s: unknown fadvise mode (use fadvise=normal, "
                    "fadvise=random or fadvise=sequential)", value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the file backend takes file=, "
                "dir=, fd= or dirfd=, and cache= and fadvise=)", key);
  return -1;
}

static int
file_config_complete (void)
{
  struct stat st;
  long p = sysconf (_SC_PAGESIZE);
  int fl;

  page_size = p > 0 ? (uint64_t) p : 4096;
  switch (mode) {
  case MODE_NONE:
    nbdkit_error ("the file to serve is required, e.g. 'nbdkit file disk.img'"
                  " or file=disk.img (or dir=DIRECTORY for its files, or "
                  "fd=N or dirfd=N for a descriptor the server inherited)");
    return -1;

  case MODE_FILE:
  case MODE_DIR:
    if (stat (path, &st) == -1) {
      nbdkit_error ("%s: %m", what);
      return -1;
    }
    if (mode == MODE_FILE && !is_disk (&st)) {
      nbdkit_error ("%s: not a regular file or a block device", what);
      return -1;
    }
    if (mode == MODE_DIR && !S_ISDIR (st.st_mode)) {
      nbdkit_error ("%s: not a directory", what);
      return -1;
    }
    if (access (path, mode == MODE_DIR ? R_OK | X_OK : R_OK) == -1) {
      nbdkit_error ("%s: %m", what);
      return -1;
    }
    return 0;

  case MODE_FD:
  case MODE_DIRFD:
    if (fstat (srcfd, &st) == -1 || (fl = fcntl (srcfd, F_GETFL)) == -1) {
      nbdkit_error ("%s: %m", what);
      return -1;
    }
    if (mode == MODE_FD && !is_disk (&st)) {
      nbdkit_error ("%s: the descriptor is not a regular file or a block "
                    "device", what);
      return -1;
    }
    if (mode == MODE_DIRFD && !S_ISDIR (st.st_mode)) {
      nbdkit_error ("%s: the descriptor is not a directory", what);
      return -1;
    }
    if (mode == MODE_FD &&
        ((fl & O_ACCMODE) == O_WRONLY || (fl & O_PATH))) {
      nbdkit_error ("%s: the descriptor is not open for reading (open it "
                    "with N< or N<>, not N>)", what);
      return -1;
    }
    return 0;
  }
  return -1;
}

/* A fresh descriptor of the directory (dir= or dirfd=), with its own
 * reading position, or -1 after nbdkit_error.
 */
static int
open_directory (void)
{
  int fd;

  if (mode == MODE_DIRFD)
    fd = openat (srcfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else
    fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    nbdkit_error ("%s: %m", what);
  return fd;
}

/* dir= and dirfd=: the exports are the directory's regular files and
 * block devices (symbolic links followed), in the order the directory
 * gives them, as nbdkit does.
 */
static int
file_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  struct dirent *e;
  DIR *d;
  int fd, r = 0;

  if (mode != MODE_DIR && mode != MODE_DIRFD)
    return nbdkit_add_export (exports, "", NULL);
  if ((fd = open_directory ()) == -1)
    return -1;
  d = fdopendir (fd);
  if (!d) {
    nbdkit_error ("%s: %m", what);
    close (fd);
    return -1;
  }
  errno = 0;
  while (r == 0 && (e = readdir (d)) != NULL) {
    struct stat st;

    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0 &&
        fstatat (fd, e->d_name, &st, 0) == 0 && is_disk (&st))
      r = nbdkit_add_export (exports, e->d_name, NULL);
    errno = 0;
  }
  if (r == 0 && errno) {
    nbdkit_error ("%s: reading the directory: %m", what);
    r = -1;
  }
  closedir (d);
  return r;
}

/* dir= and dirfd=: the connection's export name, if it names a file of
 * the directory, else NULL after nbdkit_error with errno set.
 */
static const char *
export_file_name (void)
{
  const char *name = nbdkit_export_name ();

  if (!*name) {
    nbdkit_error ("%s: there is no default export; ask for one of the "
                  "files by its name (NBD_OPT_LIST lists them)", what);
    errno = ENOENT;
    return NULL;
  }
  if (strchr (name, '/') || strcmp (name, ".") == 0 ||
      strcmp (name, "..") == 0) {
    nbdkit_error ("%s: export name '%s' is not a file name in the "
                  "directory", what, name);
    errno = EINVAL;
    return NULL;
  }
  return name;
}

/* Open the connection's file in h: h->path and h->fd.  Returns 0, or -1
 * after nbdkit_error with errno set.
 */
static int
open_file (struct handle *h)
{
  const char *name = NULL;
  int dfd = AT_FDCWD;

  switch (mode) {
  case MODE_FD:
    /* A duplicate: the same open file, and its access mode decides. */
    if ((h->path = strdup (what)) == NULL) {
      nbdkit_error ("out of memory");
      return -1;
    }
    if (!h->readonly) {
      int fl = fcntl (srcfd, F_GETFL);

      if (fl == -1 || (fl & O_ACCMODE) != O_RDWR || (fl & O_APPEND)) {
        nbdkit_debug ("%s: the descriptor is not open for writing in "
                      "place, serving it read-only", what);
        h->readonly = true;
      }
    }
    h->fd = fcntl (srcfd, F_DUPFD_CLOEXEC, 3);
    if (h->fd == -1) {
      nbdkit_error ("%s: %m", what);
      return -1;
    }
    return 0;

  case MODE_FILE:
    h->path = strdup (path);
    name = h->path;
    break;

  case MODE_DIR:
    if ((name = export_file_name ()) == NULL)
      return -1;
    if (asprintf (&h->path, "%s/%s", path, name) == -1)
      h->path = NULL;
    name = h->path;
    break;

  case MODE_DIRFD:
    if ((name = export_file_name ()) == NULL)
      return -1;
    if (asprintf (&h->path, "%s: %s", what, name) == -1)
      h->path = NULL;
    dfd = srcfd;
    break;

  case MODE_NONE:
    errno = EINVAL;
    return -1;
  }
  if (!h->path) {
    nbdkit_error ("out of memory");
    errno = ENOMEM;
    return -1;
  }
  /* O_NONBLOCK: a pipe in a directory must not hang the open (it is
   * refused after); it means nothing to files and block devices.
   */
  if (!h->readonly) {
    h->fd = openat (dfd, name, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (h->fd == -1 && (errno == EACCES || errno == EROFS ||
                        errno == EPERM)) {
      nbdkit_debug ("%s: not writable, serving it read-only", h->path);
      h->readonly = true;
    }
  }
  if (h->fd == -1)
    h->fd = openat (dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (h->fd == -1) {
    nbdkit_error ("%s: %m", h->path);
    return -1;
  }
  fcntl (h->fd, F_SETFL, fcntl (h->fd, F_GETFL) & ~O_NONBLOCK);
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
  if (open_file (h) == -1)
    goto fail;
  if (fstat (h->fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", h->path);
    goto fail;
  }
  if (!is_disk (&st)) {
    nbdkit_error ("%s: not a regular file or a block device", h->path);
    errno = EINVAL;
    goto fail;
  }
  h->is_block = S_ISBLK (st.st_mode);
  h->has_seek_data = lseek (h->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO;
  if (advice >= 0) {
    int err = posix_fadvise (h->fd, 0, 0, advice);

    if (err)
      nbdkit_debug ("%s: posix_fadvise: %s", h->path, strerror (err));
  }
  /* Passthrough (the server does the I/O on this descriptor itself),
   * unless cache=none, which must follow every read and write with its
   * evictions.  fadvise= is kept: the server gets the same open file,
   * and the hint is the open file's.  Not an fd= descriptor opened
   * O_APPEND (served read-only here; pwrite would append).
   */
  if (!cache_none && !(fcntl (h->fd, F_GETFL) & O_APPEND) &&
      nbdkit_passthrough_fd (h->fd, 0, 0) == -1)
    goto fail;
  pthread_mutex_init (&h->lock, NULL);
  return h;

 fail:
  {
    int err = errno;

    if (h->fd >= 0)
      close (h->fd);
    free (h->path);
    free (h);
    errno = err;
  }
  return NULL;
}

/* ---- cache=none ---- */

/* Drop the pages of the range from the page cache (rounded out to whole
 * pages, so that no page of it is kept).  Advisory: pages still dirty
 * stay, and errors are ignored.
 */
static void
drop_pages (struct handle *h, uint64_t offset, uint64_t count)
{
  uint64_t start = offset & ~(page_size - 1);
  uint64_t end = (offset + count + page_size - 1) & ~(page_size - 1);

  posix_fadvise (h->fd, (off_t) start, (off_t) (end - start),
                 POSIX_FADV_DONTNEED);
}

/* Wait until the range is written back, then drop it. */
static void
evict_range (struct handle *h, const struct range *r)
{
  sync_file_range (h->fd, (off_t) r->offset, r->count,
                   SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                   SYNC_FILE_RANGE_WAIT_AFTER);
  drop_pages (h, r->offset, r->count);
}

/* After a write: start writing the range back and put it in the
 * window; the oldest range, when the window is full, is evicted.
 */
static void
evict_written (struct handle *h, uint64_t offset, uint32_t count)
{
  struct range r = { .offset = offset, .count = count }, old;
  bool full;

  sync_file_range (h->fd, (off_t) offset, count, SYNC_FILE_RANGE_WRITE);
  pthread_mutex_lock (&h->lock);
  full = h->nr == EVICT_WINDOW;
  if (full) {
    old = h->window[h->first];
    h->window[h->first] = r;
    h->first = (h->first + 1) % EVICT_WINDOW;
  }
  else
    h->window[(h->first + h->nr++) % EVICT_WINDOW] = r;
  pthread_mutex_unlock (&h->lock);
  if (full)
    evict_range (h, &old);
}

/* Evict every range of the window (after a flush, the wait is short). */
static void
evict_all (struct handle *h)
{
  struct range w[EVICT_WINDOW];
  unsigned i, n;

  pthread_mutex_lock (&h->lock);
  n = h->nr;
  for (i = 0; i < n; ++i)
    w[i] = h->window[(h->first + i) % EVICT_WINDOW];
  h->first = h->nr = 0;
  pthread_mutex_unlock (&h->lock);
  for (i = 0; i < n; ++i)
    evict_range (h, &w[i]);
}

/* ---- connections ---- */

static void
file_close (void *handle)
{
  struct handle *h = handle;

  if (cache_none)
    evict_all (h);
  pthread_mutex_destroy (&h->lock);
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
  if (cache_none)
    evict_all (h);
  return 0;
}

static int
file_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct handle *h = handle;

  if (sparse_pread (h->path, h->fd, buf, count, offset) == -1)
    return -1;
  if (cache_none)
    drop_pages (h, offset, count);
  return 0;
}

static int
file_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct handle *h = handle;

  if (sparse_pwrite (h->path, h->fd, buf, count, offset) == -1)
    return -1;
  if (flags & NBDKIT_FLAG_FUA) {
    if (file_flush (h, 0) == -1)
      return -1;
    if (cache_none)
      drop_pages (h, offset, count);        /* written back already */
    return 0;
  }
  if (cache_none)
    evict_written (h, offset, count);
  return 0;
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
  .config_help =
    "file=<FILENAME>         The file or block device to serve.\n"
    "dir=<DIRECTORY>         Or: serve each file of the directory as an\n"
    "                        export (directory= is the same).\n"
    "fd=<N>                  Or: serve the file or device open on the\n"
    "                        server's inherited descriptor N.\n"
    "dirfd=<N>               Or: serve each file of the directory open on\n"
    "                        the server's inherited descriptor N.\n"
    "cache=default|none      none: keep what was read or written out of\n"
    "                        the page cache.\n"
    "fadvise=normal|random|sequential\n"
    "                        Access hint for the kernel (posix_fadvise).",
  .magic_config_key = "file",
  .fd_config_keys = (const char *const[]) { "fd", "dirfd", NULL },
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
