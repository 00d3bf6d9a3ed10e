/* nbdkit split backend: several files concatenated into one disk, as
 * nbdkit's split plugin.
 *
 * Owns the list of files (file=, repeated or bare) and, per connection,
 * their descriptors and where each starts in the disk.  A request is
 * cut at the files' boundaries and each piece goes to its file: reads
 * and writes with pread/pwrite, trim as a punched hole, zero as
 * FALLOC_FL_ZERO_RANGE (or a hole when the client allows it, else the
 * library writes zeroes), flush as fdatasync of every file, block
 * status from SEEK_DATA/SEEK_HOLE of each file.  The files are opened
 * at each open (read-only with -r), so a restarted backend finds them
 * as they were: the data is in the files.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"

static char **files;
static size_t nr_files;

struct file {
  const char *path;
  int fd;
  uint64_t offset;              /* where the file starts in the disk */
  uint64_t size;
  bool can_extents;             /* SEEK_DATA works on it */
};

struct handle {
  struct file *f;               /* nr_files of them */
  uint64_t size;
};

static int
split_config (const char *key, const char *value)
{
  char **p, *path;

  if (strcmp (key, "file") != 0) {
    nbdkit_error ("unknown parameter '%s' (the split backend takes "
                  "file=FILENAME, repeated, or the file names alone)", key);
    return -1;
  }
  if (*value == '\0') {
    nbdkit_error ("file=: the file name is empty (give the path of a file)");
    return -1;
  }
  if (!(path = nbdkit_realpath (value)))
    return -1;
  if (!(p = realloc (files, (nr_files + 1) * sizeof *files))) {
    nbdkit_error ("out of memory");
    free (path);
    return -1;
  }
  files = p;
  files[nr_files++] = path;
  return 0;
}

static int
split_config_complete (void)
{
  if (nr_files == 0) {
    nbdkit_error ("no files given: name one or more files to concatenate "
                  "(nbdkit split file1 file2 ...)");
    return -1;
  }
  return 0;
}

static void
split_unload (void)
{
  size_t i;

  for (i = 0; i < nr_files; i++)
    free (files[i]);
  free (files);
}

static void
split_close (void *handle)
{
  struct handle *h = handle;
  size_t i;

  for (i = 0; i < nr_files; i++)
    if (h->f[i].fd >= 0)
      close (h->f[i].fd);
  free (h->f);
  free (h);
}

static void *
split_open (int readonly)
{
  struct handle *h = calloc (1, sizeof *h);
  size_t i;

  if (!h || !(h->f = calloc (nr_files, sizeof *h->f))) {
    nbdkit_error ("out of memory");
    free (h);
    return NULL;
  }
  for (i = 0; i < nr_files; i++)
    h->f[i].fd = -1;
  for (i = 0; i < nr_files; i++) {
    struct file *f = &h->f[i];
    struct stat st;

    f->path = files[i];
    f->fd = open (f->path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (f->fd == -1) {
      nbdkit_error ("%s: %m%s", f->path,
                    !readonly && (errno == EACCES || errno == EROFS)
                    ? " (use -r to serve read-only files)" : "");
      goto err;
    }
    if (fstat (f->fd, &st) == -1) {
      nbdkit_error ("%s: fstat: %m", f->path);
      goto err;
    }
    if (!S_ISREG (st.st_mode)) {
      nbdkit_error ("%s: not a regular file (the split backend "
                    "concatenates regular files)", f->path);
      nbdkit_set_error (EINVAL);
      goto err;
    }
    f->size = st.st_size;
    f->offset = h->size;
    if (h->size + f->size < h->size || h->size + f->size > INT64_MAX) {
      nbdkit_error ("%s: the files add up to more than 2^63-1 bytes",
                    f->path);
      nbdkit_set_error (EINVAL);
      goto err;
    }
    h->size += f->size;
    f->can_extents = lseek (f->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO;
  }
  return h;

err:
  split_close (h);
  return NULL;
}

static int64_t
split_get_size (void *handle)
{
  struct handle *h = handle;

  return h->size;
}

static int
split_can_multi_conn (void *handle)
{
  return 1;                     /* every connection uses the same files */
}

/* A fast zero: FALLOC_FL_ZERO_RANGE, or ENOTSUP at once (piece_zero). */
static int
split_can_fast_zero (void *handle)
{
  return 1;
}

static int
split_can_fua (void *handle)
{
  return NBDKIT_FUA_EMULATE;
}

static int
split_can_cache (void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

/* The file holding byte offset of the disk (binary search). */
static size_t
find_file (struct handle *h, uint64_t offset)
{
  size_t lo = 0, hi = nr_files;

  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;

    if (h->f[mid].offset <= offset)
      lo = mid;
    else
      hi = mid;
  }
  /* Skip empty files that start at the same offset. */
  while (lo + 1 < nr_files && h->f[lo].offset + h->f[lo].size <= offset)
    lo++;
  return lo;
}

/* Cut [offset, offset+count) at file boundaries: call fn for each
 * piece with the file, the offset in the file, the length and the
 * offset of the piece in the request.
 */
typedef int (*piece_fn) (struct handle *h, struct file *f, uint64_t foff,
                         uint32_t n, uint32_t done, void *opaque);

static int
for_each_piece (struct handle *h, uint32_t count, uint64_t offset,
                piece_fn fn, void *opaque)
{
  uint32_t done = 0;
  size_t i = find_file (h, offset);

  while (done < count && i < nr_files) {
    struct file *f = &h->f[i];
    uint64_t foff = offset + done - f->offset;
    uint64_t avail = f->size - foff;
    uint32_t n = count - done < avail ? count - done : (uint32_t) avail;

    if (n > 0 && fn (h, f, foff, n, done, opaque) == -1)
      return -1;
    done += n;
    i++;
  }
  return 0;
}

static int
piece_pread (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
             uint32_t done, void *buf)
{
  return sparse_pread (f->path, f->fd, (char *) buf + done, n, foff);
}

static int
split_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  return for_each_piece (handle, count, offset, piece_pread, buf);
}

static int
piece_pwrite (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
              uint32_t done, void *buf)
{
  return sparse_pwrite (f->path, f->fd, (const char *) buf + done, n, foff);
}

static int
split_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  return for_each_piece (handle, count, offset, piece_pwrite, (void *) buf);
}

static int
split_flush (void *handle, uint32_t flags)
{
  struct handle *h = handle;
  size_t i;

  for (i = 0; i < nr_files; i++)
    if (fdatasync (h->f[i].fd) == -1) {
      nbdkit_error ("%s: fdatasync: %m", h->f[i].path);
      return -1;
    }
  return 0;
}

static int
piece_trim (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
            uint32_t done, void *opaque)
{
  /* Advisory: a file system that cannot punch keeps the data. */
  if (sparse_punch (f->path, f->fd, n, foff) == -1 && errno != EOPNOTSUPP)
    return -1;
  return 0;
}

static int
split_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return for_each_piece (handle, count, offset, piece_trim, NULL);
}

static int
piece_zero (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
            uint32_t done, void *opaque)
{
  uint32_t flags = *(uint32_t *) opaque;
  int r;

  r = fallocate (f->fd, FALLOC_FL_ZERO_RANGE, (off_t) foff, n);
  if (r == -1 && errno == EOPNOTSUPP && (flags & NBDKIT_FLAG_MAY_TRIM))
    r = fallocate (f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   (off_t) foff, n);
  if (r == -1) {
    if (errno == EOPNOTSUPP || errno == ENODEV) {
      /* No fast way: the library writes zeroes (or fails a fast zero);
       * pieces already zeroed are zeroed again, which is harmless.
       */
      nbdkit_set_error (ENOTSUP);
      return -1;
    }
    nbdkit_error ("%s: zeroing: %m", f->path);
    return -1;
  }
  return 0;
}

static int
split_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return for_each_piece (handle, count, offset, piece_zero, &flags);
}

static int
piece_cache (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
             uint32_t done, void *opaque)
{
  int err = posix_fadvise (f->fd, (off_t) foff, n, POSIX_FADV_WILLNEED);

  if (err) {
    errno = err;
    nbdkit_error ("%s: posix_fadvise: %m", f->path);
    return -1;
  }
  return 0;
}

static int
split_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return for_each_piece (handle, count, offset, piece_cache, NULL);
}

/* Block status of one piece, at disk offsets. */
static int
piece_extents (struct handle *h, struct file *f, uint64_t foff, uint32_t n,
               uint32_t done, void *opaque)
{
  struct nbdkit_extents *extents = opaque;
  uint64_t end = foff + n;

  if (!f->can_extents)
    return nbdkit_add_extent (extents, f->offset + foff, n, 0);
  while (foff < end) {
    off_t data = lseek (f->fd, foff, SEEK_DATA), hole;

    if (data == -1 && errno != ENXIO) {
      nbdkit_error ("%s: lseek SEEK_DATA: %m", f->path);
      return -1;
    }
    if (data == -1 || (uint64_t) data >= end)
      data = end;               /* a hole to the end of the piece */
    if ((uint64_t) data > foff) {
      if (nbdkit_add_extent (extents, f->offset + foff, data - foff,
                             NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
        return -1;
      foff = data;
      if (foff >= end)
        break;
    }
    hole = lseek (f->fd, foff, SEEK_HOLE);
    if (hole == -1) {
      nbdkit_error ("%s: lseek SEEK_HOLE: %m", f->path);
      return -1;
    }
    if ((uint64_t) hole > end)
      hole = end;
    if ((uint64_t) hole <= foff)   /* the file changed under us */
      hole = end;
    if (nbdkit_add_extent (extents, f->offset + foff, hole - foff, 0) == -1)
      return -1;
    foff = hole;
  }
  return 0;
}

static int
split_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents)
{
  return for_each_piece (handle, count, offset, piece_extents, extents);
}

static struct nbdkit_backend split = {
  .name = "split",
  .longname = "nbdkit split backend",
  .version = PACKAGE_VERSION,
  .description = "Concatenate several files into one disk.",
  .config_help =
    "[file=]<FILENAME>  (required) A file; repeat it for each file, in "
    "order.",
  .magic_config_key = "file",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = split_config,
  .config_complete = split_config_complete,
  .unload = split_unload,
  .open = split_open,
  .close = split_close,
  .get_size = split_get_size,
  .can_multi_conn = split_can_multi_conn,
  .can_fast_zero = split_can_fast_zero,
  .can_fua = split_can_fua,
  .can_cache = split_can_cache,
  .pread = split_pread,
  .pwrite = split_pwrite,
  .flush = split_flush,
  .trim = split_trim,
  .zero = split_zero,
  .cache = split_cache,
  .extents = split_extents,
};

NBDKIT_REGISTER_BACKEND (split)
