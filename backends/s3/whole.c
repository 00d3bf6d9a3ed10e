/* backends/s3/whole.c: the writable one-object disk of the s3 backend
 * (write-whole-object=true).  S3 cannot change part of an object: this
 * file keeps a local copy of the object, applies writes, zeroes and
 * trims to it, and PUTs the whole object back on flush (and FUA,
 * emulated by a flush) and when a connection closes.  It owns the
 * local copy, what of it is there, whether it has writes not yet PUT,
 * and the record that lets a restarted backend take it up again.
 *
 * The copy is a sparse file in $TMPDIR (or /var/tmp), made at the
 * first write.  Its first SIZE bytes are the object's; a block of
 * WBLOCK bytes is in it once written or fetched ("present"); a block
 * that is not is read from S3 with a byte range.  A write of part of a
 * block that is not present fetches the block first, under the lock of
 * that block (obj_lock), so that concurrent writes of one block do not
 * lose each other.  A flush fetches every block not yet present
 * (several ranges at once), computes the SHA-256 of the copy (which
 * the signature covers: S3 refuses a body that does not match) and
 * streams the PUT from the file: nothing is ever held whole in memory.
 * Writes wait while a flush runs (put_lock); reads do not.
 *
 * After the file's data, at TRAILER (SIZE rounded up to 4096): a
 * magic, the size, the dirty flag (writes not yet PUT) and the bitmap
 * of present blocks, written as they change (not synced: the file
 * outlives a crash of this process, not of the machine).  The path is
 * kept in the server's memory file for this backend (../secret.h), so
 * a backend restarted after a crash reopens the copy, with its
 * acknowledged writes, instead of serving the object's older bytes.
 * At an orderly stop the copy is PUT if needed and removed; if that
 * PUT fails the file is left, and the log says where.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "nbdkit-backend.h"
#include "s3defs.h"
#include "../secret.h"

/* The unit of "present": a write of part of a block not yet fetched
 * fetches this much.
 */
#define WBLOCK (256 * 1024)
/* S3's largest object of one PUT. */
#define MAX_PUT ((int64_t) 5 << 30)
#define MAGIC "NBDKS3W1"
#define KEEP_NAME "s3: write-whole-object copy"
#define HDR 24                  /* magic, size, dirty */

bool write_whole;

static int64_t size;
static uint64_t nblocks;
static uint64_t trailer;        /* offset of the trailer in the file */

static pthread_rwlock_t put_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
/* Under state_lock (fd and path are set once, under it too). */
static int fd = -1;
static char *path;
static unsigned char *present;
static bool dirty;

static uint64_t
block_end (uint64_t b)
{
  uint64_t e = (b + 1) * WBLOCK;

  return e < (uint64_t) size ? e : (uint64_t) size;
}

static bool
is_present (uint64_t b)
{
  bool r;

  pthread_mutex_lock (&state_lock);
  r = present && (present[b / 8] & (1 << (b % 8)));
  pthread_mutex_unlock (&state_lock);
  return r;
}

/* Under state_lock. */
static int
write_trailer (const void *p, size_t n, uint64_t off)
{
  if (pwrite (fd, p, n, trailer + off) != (ssize_t) n) {
    nbdkit_error ("%s: writing the state of the local copy: %m", path);
    return -1;
  }
  return 0;
}

static int
set_present (uint64_t first, uint64_t last)
{
  uint64_t b;
  int r = 0;

  pthread_mutex_lock (&state_lock);
  for (b = first; b <= last; b++)
    present[b / 8] |= 1 << (b % 8);
  r = write_trailer (present + first / 8, last / 8 - first / 8 + 1,
                     HDR + first / 8);
  pthread_mutex_unlock (&state_lock);
  return r;
}

static int
set_dirty (bool d)
{
  unsigned char c = d;
  int r = 0;

  pthread_mutex_lock (&state_lock);
  if (dirty != d) {
    r = write_trailer (&c, 1, 16);
    if (r == 0)
      dirty = d;
  }
  pthread_mutex_unlock (&state_lock);
  return r;
}

/* Make the local copy, at the first write. */
static int
make_copy (void)
{
  const char *dir = getenv ("TMPDIR");
  char hdr[HDR];
  uint64_t sz = size;
  int f, r = -1;

  pthread_mutex_lock (&state_lock);
  if (fd >= 0) {
    pthread_mutex_unlock (&state_lock);
    return 0;
  }
  if (dir == NULL || *dir == '\0')
    dir = "/var/tmp";
  if (asprintf (&path, "%s/nbdkit-s3-XXXXXX", dir) == -1) {
    nbdkit_error ("asprintf: %m");
    path = NULL;
    goto out;
  }
  present = calloc (1, (nblocks + 7) / 8 + 1);
  if (present == NULL) {
    nbdkit_error ("calloc: %m");
    goto out;
  }
  f = mkostemp (path, O_CLOEXEC);
  if (f == -1) {
    nbdkit_error ("write-whole-object: cannot make the local copy %s "
                  "(set TMPDIR to a directory with room for the object): %m",
                  path);
    goto out;
  }
  memcpy (hdr, MAGIC, 8);
  memcpy (hdr + 8, &sz, 8);
  memset (hdr + 16, 0, 8);
  if (ftruncate (f, trailer + HDR + (nblocks + 7) / 8) == -1 ||
      pwrite (f, hdr, HDR, trailer) != HDR) {
    nbdkit_error ("write-whole-object: the local copy %s: %m", path);
    close (f);
    unlink (path);
    goto out;
  }
  fd = f;
  secret_keep (KEEP_NAME, path);
  nbdkit_debug ("local copy of s3://%s/%s: %s", bucket, key, path);
  r = 0;
 out:
  if (r == -1) {
    free (path);
    path = NULL;
    free (present);
    present = NULL;
  }
  pthread_mutex_unlock (&state_lock);
  return r;
}

int
whole_get_ready (int64_t sz)
{
  char *kept, hdr[HDR];
  uint64_t ksize;
  int f;

  size = sz;
  nblocks = (size + WBLOCK - 1) / WBLOCK;
  trailer = (size + 4095) & ~(uint64_t) 4095;
  if (!write_whole)
    return 0;
  if (size > MAX_PUT) {
    nbdkit_error ("write-whole-object=true: s3://%s/%s has %" PRId64
                  " bytes, more than one PUT can write (5 GiB): serve it "
                  "read-only, or split the disk (size=, object-size=)",
                  bucket, key, size);
    return -1;
  }
  kept = secret_kept_find (KEEP_NAME);
  if (kept == NULL || *kept == '\0') {  /* none, or removed */
    free (kept);
    return 0;
  }
  /* An earlier incarnation of this backend made it: take it up. */
  f = open (kept, O_RDWR | O_CLOEXEC);
  if (f == -1) {
    nbdkit_error ("write-whole-object: the local copy %s, with the writes "
                  "not yet PUT to s3://%s/%s, is gone: %m", kept, bucket, key);
    free (kept);
    return -1;
  }
  present = calloc (1, (nblocks + 7) / 8 + 1);
  if (present == NULL ||
      pread (f, hdr, HDR, trailer) != HDR || memcmp (hdr, MAGIC, 8) != 0 ||
      (memcpy (&ksize, hdr + 8, 8), ksize != (uint64_t) size) ||
      pread (f, present, (nblocks + 7) / 8, trailer + HDR) !=
      (ssize_t) ((nblocks + 7) / 8)) {
    nbdkit_error ("write-whole-object: the local copy %s is not that of "
                  "s3://%s/%s of %" PRId64 " bytes", kept, bucket, key, size);
    free (present);
    present = NULL;
    close (f);
    free (kept);
    return -1;
  }
  dirty = hdr[16] != 0;
  fd = f;
  path = kept;
  nbdkit_debug ("took up the local copy %s (%s)", path,
                dirty ? "with writes not yet PUT" : "as PUT");
  return 0;
}

int
whole_pread (void *buf, uint32_t count, uint64_t offset)
{
  uint64_t pos = offset, end = offset + count;
  bool have_copy;

  pthread_mutex_lock (&state_lock);
  have_copy = fd >= 0;
  pthread_mutex_unlock (&state_lock);
  if (!have_copy)
    return one_read (buf, -1, count, offset);
  while (pos < end) {
    /* A run of blocks that are all present, or all not. */
    uint64_t b = pos / WBLOCK, run_end;
    bool p = is_present (b);
    for (run_end = block_end (b); run_end < end &&
           is_present (run_end / WBLOCK) == p; )
      run_end = block_end (run_end / WBLOCK);
    if (run_end > end)
      run_end = end;
    if (p) {
      uint64_t done = 0;
      while (done < run_end - pos) {
        ssize_t r = pread (fd, (char *) buf + (pos - offset) + done,
                           run_end - pos - done, pos + done);
        if (r <= 0) {
          nbdkit_error ("%s: reading the local copy: %m", path);
          errno = r == 0 ? EIO : errno;
          return -1;
        }
        done += r;
      }
    }
    else if (one_read ((char *) buf + (pos - offset), -1, run_end - pos,
                       pos) == -1)
      return -1;
    pos = run_end;
  }
  return 0;
}

/* Zeroes [off, off+len) of the copy. */
static int
zero_range (uint64_t off, uint64_t len)
{
  static const char zeroes[WBLOCK];

#ifdef FALLOC_FL_PUNCH_HOLE
  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
    return 0;
#endif
  while (len > 0) {
    size_t n = len < WBLOCK ? len : WBLOCK;
    if (pwrite (fd, zeroes, n, off) != (ssize_t) n) {
      nbdkit_error ("%s: writing the local copy: %m", path);
      return -1;
    }
    off += n;
    len -= n;
  }
  return 0;
}

/* Write data (NULL: zeroes) at [offset, offset+count) of the copy. */
static int
modify (const char *data, uint32_t count, uint64_t offset)
{
  uint64_t pos = offset, end = offset + count;
  int r = 0;

  pthread_rwlock_rdlock (&put_lock);
  if (make_copy () == -1 || set_dirty (true) == -1) {
    pthread_rwlock_unlock (&put_lock);
    return -1;
  }
  while (r == 0 && pos < end) {
    uint64_t b = pos / WBLOCK, bstart = b * WBLOCK, bend = block_end (b);
    uint64_t n = (bend < end ? bend : end) - pos;
    bool whole = pos == bstart && pos + n == bend;

    if (obj_lock (b) == -1) {
      r = -1;
      break;
    }
    /* Part of a block not fetched yet: fetch it first. */
    if (!whole && !is_present (b))
      r = one_read (NULL, fd, bend - bstart, bstart);
    if (r == 0 && data) {
      if (pwrite (fd, data + (pos - offset), n, pos) != (ssize_t) n) {
        nbdkit_error ("%s: writing the local copy: %m", path);
        r = -1;
      }
    }
    else if (r == 0)
      r = zero_range (pos, n);
    if (r == 0)
      r = set_present (b, b);
    obj_unlock (b);
    pos += n;
  }
  pthread_rwlock_unlock (&put_lock);
  return r;
}

int
whole_pwrite (const void *buf, uint32_t count, uint64_t offset)
{
  return modify (buf, count, offset);
}

int
whole_zero (uint32_t count, uint64_t offset)
{
  return modify (NULL, count, offset);
}

/* Under the write lock: fetch every block not present. */
static int
fill (void)
{
  uint64_t b = 0;

  while (b < nblocks) {
    uint64_t e;
    if (is_present (b)) {
      b++;
      continue;
    }
    for (e = b + 1; e < nblocks && !is_present (e); e++)
      ;
    if (one_read (NULL, fd, block_end (e - 1) - b * WBLOCK, b * WBLOCK) == -1 ||
        set_present (b, e - 1) == -1)
      return -1;
    b = e;
  }
  return 0;
}

/* The SHA-256 of the copy's data, in hex. */
static int
hash_copy (char out[65])
{
  gnutls_hash_hd_t h;
  unsigned char d[32], *buf;
  uint64_t off = 0;
  int i;

  buf = malloc (1 << 20);
  if (buf == NULL || gnutls_hash_init (&h, GNUTLS_DIG_SHA256) != 0) {
    nbdkit_error ("write-whole-object: cannot hash the local copy: "
                  "out of memory");
    free (buf);
    return -1;
  }
  while (off < (uint64_t) size) {
    size_t n = (uint64_t) size - off < (1 << 20) ? size - off : 1 << 20;
    ssize_t r = pread (fd, buf, n, off);
    if (r <= 0) {
      nbdkit_error ("%s: reading the local copy: %m", path);
      gnutls_hash_deinit (h, NULL);
      free (buf);
      return -1;
    }
    gnutls_hash (h, buf, r);
    off += r;
  }
  gnutls_hash_deinit (h, d);
  free (buf);
  for (i = 0; i < 32; i++)
    sprintf (out + 2 * i, "%02x", d[i]);
  return 0;
}

int
whole_flush (void)
{
  char sum[65];
  struct s3_request q = { .method = "PUT", .object = key, .use_fd = true,
                          .body_len = size, .body_sha256 = sum };
  struct s3_response r;
  int ret = -1;

  pthread_rwlock_wrlock (&put_lock);
  if (fd == -1 || !dirty) {
    pthread_rwlock_unlock (&put_lock);
    return 0;
  }
  q.fd = fd;
  if (fill () == -1 || hash_copy (sum) == -1)
    goto out;
  if (s3_perform (&q, &r) == -1)
    goto out;
  if (r.status != 200) {
    s3_fail ("PUT", key, &r);
    goto out;
  }
  nbdkit_debug ("PUT s3://%s/%s: %" PRId64 " bytes from the local copy",
                bucket, key, size);
  ret = set_dirty (false);
 out:
  pthread_rwlock_unlock (&put_lock);
  return ret;
}

void
whole_unload (void)
{
  if (fd == -1)
    return;
  if (whole_flush () == 0) {
    secret_keep (KEEP_NAME, "");
    unlink (path);
  }
  else
    nbdkit_error ("write-whole-object: the writes not PUT to s3://%s/%s "
                  "are kept in %s (its first %" PRId64 " bytes are the "
                  "disk)", bucket, key, path, size);
  close (fd);
  fd = -1;
  free (path);
  path = NULL;
  free (present);
  present = NULL;
}
