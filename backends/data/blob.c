/* nbdkit data backend: blobs, sparse byte strings (see blob.h).  Owns
 * the chunk lists and their memory, and writing a blob into a file.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "blob.h"

/* Limits that turn a runaway expression into an error rather than an
 * out-of-memory kill: chunks in one blob, and bytes of data (not
 * counting runs of one byte) in one blob.
 */
#define MAX_CHUNKS (UINT64_C (1) << 26)
#define MAX_DATA   (UINT64_C (1) << 34)          /* 16 GiB */

/* Runs of one byte shorter than this are stored as bytes when that
 * lets them join their neighbour, so that '(0x55 0xAA)*N' becomes one
 * chunk of 2N bytes rather than 2N chunks.
 */
#define SMALL_FILL 64

void
blob_reset (struct blob *b)
{
  size_t i;

  for (i = 0; i < b->n; i++)
    free (b->v[i].data);
  free (b->v);
  *b = (struct blob) BLOB_INIT;
}

static int
too_long (uint64_t off, uint64_t len)
{
  if (off > (uint64_t) INT64_MAX || len > (uint64_t) INT64_MAX - off) {
    nbdkit_error ("the data would go past 2^63-1 bytes, the largest "
                  "disk there can be");
    return 1;
  }
  return 0;
}

/* Would the blob hold more than MAX_DATA bytes of data? */
static int
too_much (uint64_t have, uint64_t more)
{
  if (more > MAX_DATA || have > MAX_DATA - more) {
    nbdkit_error ("the data has more than %" PRIu64 " bytes that are not "
                  "runs of one byte: too much to build in memory",
                  MAX_DATA);
    return 1;
  }
  return 0;
}

static struct chunk *
new_chunk (struct blob *b)
{
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    struct chunk *v;

    if (cap > MAX_CHUNKS) {
      nbdkit_error ("the data is too fragmented (more than %" PRIu64
                    " separate pieces); simplify the expression",
                    MAX_CHUNKS);
      return NULL;
    }
    v = realloc (b->v, cap * sizeof *v);
    if (!v) {
      nbdkit_error ("out of memory building the disk: %m");
      return NULL;
    }
    b->v = v;
    b->cap = cap;
  }
  return &b->v[b->n++];
}

static void
grow (struct blob *b, uint64_t off, uint64_t len)
{
  if (off + len > b->len)
    b->len = off + len;
  if (off + len > b->end)
    b->end = off + len;
}

/* The last chunk as bytes, with room for more bytes after it; false if
 * it is a long run (or memory is short: then the caller just makes a
 * new chunk).
 */
static bool
last_as_data (struct blob *b, uint64_t more)
{
  struct chunk *c = &b->v[b->n - 1];
  unsigned char *d;

  if (c->fill >= 0 && c->len >= SMALL_FILL)
    return false;
  if (c->len + more > SIZE_MAX)
    return false;
  d = realloc (c->data, c->len + more);
  if (!d)
    return false;
  if (c->fill >= 0) {
    memset (d, c->fill, c->len);
    c->fill = -1;
    b->data += c->len;
  }
  c->data = d;
  return true;
}

/* Does a new piece at off join the end of the last chunk? */
static bool
joins_last (const struct blob *b, uint64_t off)
{
  return b->n > 0 && b->v[b->n - 1].off + b->v[b->n - 1].len == off &&
    b->end == off;
}

int
blob_put (struct blob *b, uint64_t off, const void *data, uint64_t len)
{
  struct chunk *c;

  if (len == 0)
    return 0;
  if (too_long (off, len) || too_much (b->data, len))
    return -1;
  if (joins_last (b, off) && last_as_data (b, len)) {
    c = &b->v[b->n - 1];
    memcpy (c->data + c->len, data, len);
    c->len += len;
    b->data += len;
    grow (b, off, len);
    return 0;
  }
  c = new_chunk (b);
  if (!c)
    return -1;
  c->data = malloc (len);
  if (!c->data) {
    b->n--;
    nbdkit_error ("out of memory building the disk (%" PRIu64 " bytes): %m",
                  len);
    return -1;
  }
  memcpy (c->data, data, len);
  c->off = off;
  c->len = len;
  c->fill = -1;
  b->data += len;
  grow (b, off, len);
  return 0;
}

int
blob_put_fill (struct blob *b, uint64_t off, unsigned char byte, uint64_t len)
{
  struct chunk *c;

  if (len == 0)
    return 0;
  if (too_long (off, len))
    return -1;
  if (joins_last (b, off)) {
    c = &b->v[b->n - 1];
    if (c->fill == byte) {                  /* a longer run */
      c->len += len;
      grow (b, off, len);
      return 0;
    }
    if (len < SMALL_FILL && last_as_data (b, len)) {
      c = &b->v[b->n - 1];
      memset (c->data + c->len, byte, len);
      c->len += len;
      grow (b, off, len);
      return 0;
    }
  }
  c = new_chunk (b);
  if (!c)
    return -1;
  c->off = off;
  c->len = len;
  c->fill = byte;
  c->data = NULL;
  grow (b, off, len);
  return 0;
}

/* Append the piece [from, to) of chunk s (offsets in its blob) at at. */
static int
put_part (struct blob *dst, uint64_t at, const struct chunk *s,
          uint64_t from, uint64_t to)
{
  if (s->fill >= 0)
    return blob_put_fill (dst, at, s->fill, to - from);
  return blob_put (dst, at, s->data + (from - s->off), to - from);
}

int
blob_insert (struct blob *dst, uint64_t off, const struct blob *src)
{
  size_t i;

  if (too_long (off, src->len) || too_much (dst->data, src->data))
    return -1;
  /* The holes of src replace what was there before. */
  if (dst->end > off && blob_put_fill (dst, off, 0, src->len) == -1)
    return -1;
  for (i = 0; i < src->n; i++) {
    const struct chunk *s = &src->v[i];

    if (put_part (dst, off + s->off, s, s->off, s->off + s->len) == -1)
      return -1;
  }
  grow (dst, off, src->len);
  return 0;
}

int
blob_repeat (struct blob *dst, const struct blob *src, uint64_t n)
{
  uint64_t k;

  if (n == 0 || src->len == 0)
    return 0;
  if (src->len > (uint64_t) INT64_MAX / n) {
    nbdkit_error ("repeating %" PRIu64 " bytes %" PRIu64 " times would go "
                  "past 2^63-1 bytes, the largest disk there can be",
                  src->len, n);
    return -1;
  }
  /* A run of one byte (or nothing) repeated is a longer run. */
  if (src->n == 0)
    goto done;
  if (src->n == 1 && src->v[0].fill >= 0 &&
      src->v[0].off == 0 && src->v[0].len == src->len)
    return blob_put_fill (dst, 0, src->v[0].fill, src->len * n);
  if (src->data > MAX_DATA / n) {
    nbdkit_error ("repeating %" PRIu64 " bytes of data %" PRIu64 " times "
                  "is too much to build in memory", src->data, n);
    return -1;
  }
  /* Dense bytes repeated: one allocation. */
  if (src->n == 1 && src->v[0].fill == -1 &&
      src->v[0].off == 0 && src->v[0].len == src->len) {
    struct chunk *c;
    unsigned char *d;

    if (too_much (dst->data, src->len * n))
      return -1;
    d = malloc (src->len * n);
    if (!d || !(c = new_chunk (dst))) {
      free (d);
      if (!d)
        nbdkit_error ("out of memory building the disk: %m");
      return -1;
    }
    for (k = 0; k < n; k++)
      memcpy (d + k * src->len, src->v[0].data, src->len);
    *c = (struct chunk) { .off = 0, .len = src->len * n, .fill = -1,
                          .data = d };
    dst->data += c->len;
    grow (dst, 0, c->len);
    return 0;
  }
  /* src's chunks do not overlap from one copy to the next, so they are
   * just appended, without the zero fill of blob_insert.
   */
  for (k = 0; k < n; k++) {
    size_t i;

    for (i = 0; i < src->n; i++) {
      const struct chunk *s = &src->v[i];

      if (put_part (dst, k * src->len + s->off, s, s->off,
                    s->off + s->len) == -1)
        return -1;
    }
  }
 done:
  dst->len = src->len * n;
  return 0;
}

int
blob_slice (struct blob *dst, const struct blob *src,
            uint64_t from, uint64_t to)
{
  size_t i;

  for (i = 0; i < src->n; i++) {
    const struct chunk *s = &src->v[i];
    uint64_t a = s->off > from ? s->off : from;
    uint64_t e = s->off + s->len < to ? s->off + s->len : to;

    if (a < e && put_part (dst, a - from, s, a, e) == -1)
      return -1;
  }
  dst->len = to - from;
  return 0;
}

static int
write_all (int fd, const unsigned char *p, uint64_t len, uint64_t off)
{
  while (len > 0) {
    size_t n = len > (1 << 30) ? (1 << 30) : len;
    ssize_t r = pwrite (fd, p, n, off);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("writing the initial data into memory at offset %"
                    PRIu64 ": %m", off);
      return -1;
    }
    p += r;
    len -= r;
    off += r;
  }
  return 0;
}

static int
write_run (int fd, unsigned char byte, uint64_t len, uint64_t off)
{
  unsigned char buf[65536];

  if (byte == 0) {                      /* zeroes: a hole */
    if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   (off_t) off, (off_t) len) == -1) {
      nbdkit_error ("punching a hole of %" PRIu64 " bytes at offset %"
                    PRIu64 ": %m", len, off);
      return -1;
    }
    return 0;
  }
  memset (buf, byte, sizeof buf);
  while (len > 0) {
    uint64_t n = len < sizeof buf ? len : sizeof buf;

    if (write_all (fd, buf, n, off) == -1)
      return -1;
    len -= n;
    off += n;
  }
  return 0;
}

int
blob_render (const struct blob *b, int fd, uint64_t size)
{
  size_t i;

  for (i = 0; i < b->n; i++) {
    const struct chunk *c = &b->v[i];
    uint64_t len = c->len;

    if (c->off >= size)
      continue;
    if (len > size - c->off)
      len = size - c->off;
    if (c->fill >= 0 ? write_run (fd, c->fill, len, c->off)
                     : write_all (fd, c->data, len, c->off))
      return -1;
  }
  return 0;
}
