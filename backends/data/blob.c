/* nbdkit data backend: blobs, sparse byte strings (see blob.h).  Owns
 * the chunk lists and their memory, and writing a blob into a file
 * with the page allocation of nbdkit's data plugin (blob_render).
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
#include "../sparse-file.h"
#include "blob.h"

/* Limits that turn a runaway expression into an error rather than an
 * out-of-memory kill: chunks in one blob, and bytes of data (not
 * counting runs of one byte) in one blob.  The fuzzing harness
 * (tests/fuzz/fuzz-data.c) builds this file with lower ones.
 */
#ifndef BLOB_MAX_CHUNKS
#define BLOB_MAX_CHUNKS (UINT64_C (1) << 26)
#endif
#ifndef BLOB_MAX_DATA
#define BLOB_MAX_DATA   (UINT64_C (1) << 34)     /* 16 GiB */
#endif
#define MAX_CHUNKS BLOB_MAX_CHUNKS
#define MAX_DATA BLOB_MAX_DATA

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

/* Does a new piece at off join the end of the last chunk?  (Literal
 * and other pieces never join.)
 */
static bool
joins_last (const struct blob *b, uint64_t off, bool literal)
{
  return b->n > 0 && b->v[b->n - 1].off + b->v[b->n - 1].len == off &&
    b->end == off && b->v[b->n - 1].literal == literal &&
    !b->v[b->n - 1].zero;
}

static int
put_data (struct blob *b, uint64_t off, const void *data, uint64_t len,
          bool literal)
{
  struct chunk *c;

  if (len == 0)
    return 0;
  if (too_long (off, len) || too_much (b->data, len))
    return -1;
  if (joins_last (b, off, literal) && last_as_data (b, len)) {
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
  c->literal = literal;
  c->zero = false;
  b->data += len;
  grow (b, off, len);
  return 0;
}

int
blob_put (struct blob *b, uint64_t off, const void *data, uint64_t len)
{
  return put_data (b, off, data, len, false);
}

int
blob_put_literal (struct blob *b, uint64_t off, const void *data,
                  uint64_t len)
{
  return put_data (b, off, data, len, true);
}

static int
put_fill (struct blob *b, uint64_t off, unsigned char byte, uint64_t len,
          bool literal)
{
  struct chunk *c;

  if (len == 0)
    return 0;
  if (too_long (off, len))
    return -1;
  if (joins_last (b, off, literal)) {
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
      b->data += len;
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
  c->literal = literal;
  c->zero = false;
  grow (b, off, len);
  return 0;
}

int
blob_put_fill (struct blob *b, uint64_t off, unsigned char byte, uint64_t len)
{
  return put_fill (b, off, byte, len, false);
}

/* Append the piece [from, to) of chunk s (offsets in its blob) at at. */
static int
put_part (struct blob *dst, uint64_t at, const struct chunk *s,
          uint64_t from, uint64_t to, bool literal)
{
  literal |= s->literal;
  if (s->zero) {
    struct chunk *c = new_chunk (dst);

    if (!c)
      return -1;
    *c = (struct chunk) { .off = at, .len = to - from, .fill = 0,
                          .zero = true };
    grow (dst, at, to - from);
    return 0;
  }
  if (s->fill >= 0)
    return put_fill (dst, at, s->fill, to - from, literal);
  return put_data (dst, at, s->data + (from - s->off), to - from, literal);
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

    if (put_part (dst, off + s->off, s, s->off, s->off + s->len,
                  false) == -1)
      return -1;
  }
  grow (dst, off, src->len);
  return 0;
}

/* The first offset from a on that a chunk of src covers, or src->len
 * if there is none: the bytes before it are a hole.
 */
static uint64_t
src_next (const struct blob *src, uint64_t a)
{
  uint64_t next = src->len;
  size_t i;

  for (i = 0; i < src->n; i++) {
    const struct chunk *c = &src->v[i];

    if (c->off + c->len > a) {
      uint64_t x = c->off > a ? c->off : a;

      if (x < next)
        next = x;
    }
  }
  return next;
}

/* Are the bytes [a, b) of src (at most a page) all zeroes?  Later
 * chunks overwrite earlier ones, so the piece is put together first,
 * from the last chunk that covers all of it (if any) on.
 */
static bool
src_zero (const struct blob *src, uint64_t a, uint64_t b)
{
  unsigned char buf[SPARSE_PAGE];
  size_t i, first = 0;

  for (i = src->n; i > 0; i--) {
    const struct chunk *c = &src->v[i - 1];

    if (c->off <= a && c->off + c->len >= b) {
      first = i - 1;
      break;
    }
  }
  memset (buf, 0, b - a);
  for (i = first; i < src->n; i++) {
    const struct chunk *c = &src->v[i];
    uint64_t x = c->off > a ? c->off : a;
    uint64_t y = c->off + c->len < b ? c->off + c->len : b;

    if (x >= y)
      continue;
    if (c->fill >= 0)
      memset (buf + (x - a), c->fill, y - x);
    else
      memcpy (buf + (x - a), c->data + (x - c->off), y - x);
  }
  return buf[0] == 0 && (b - a < 2 || memcmp (buf, buf + 1, b - a - 1) == 0);
}

int
blob_insert_blit (struct blob *dst, uint64_t off, const struct blob *src)
{
  uint64_t pos = off, end;
  size_t i;

  if (too_long (off, src->len) || too_much (dst->data, src->data))
    return -1;
  end = off + src->len;
  while (pos < end) {
    uint64_t pe = (pos | (SPARSE_PAGE - 1)) + 1;
    uint64_t next = off + src_next (src, pos - off);

    if (pe > end)
      pe = end;
    if (next >= pe) {
      /* The pages up to the one where src's next chunk starts are a
       * hole of src: zeroed in one go (as one per page would, but
       * '( @1T 1 )' is not 2^25 pieces).
       */
      uint64_t he = next >= end ? end : next & ~(uint64_t) (SPARSE_PAGE - 1);
      struct chunk *c;

      if (he < pe)
        he = pe;
      c = new_chunk (dst);
      if (!c)
        return -1;
      *c = (struct chunk) { .off = pos, .len = he - pos, .fill = 0,
                            .zero = true };
      grow (dst, pos, he - pos);
      pe = he;
    }
    else if (src_zero (src, pos - off, pe - off)) {
      struct chunk *c = new_chunk (dst);

      if (!c)
        return -1;
      *c = (struct chunk) { .off = pos, .len = pe - pos, .fill = 0,
                            .zero = true };
      grow (dst, pos, pe - pos);
    }
    else {
      /* Written whole, the holes of src as zeroes. */
      if (put_fill (dst, pos, 0, pe - pos, true) == -1)
        return -1;
      for (i = 0; i < src->n; i++) {
        const struct chunk *s = &src->v[i];
        uint64_t a = s->off > pos - off ? s->off : pos - off;
        uint64_t e = s->off + s->len < pe - off ? s->off + s->len : pe - off;

        if (a < e && put_part (dst, off + a, s, a, e, true) == -1)
          return -1;
      }
    }
    pos = pe;
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
    return put_fill (dst, 0, src->v[0].fill, src->len * n,
                     src->v[0].literal);
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
                          .data = d, .literal = src->v[0].literal };
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
                    s->off + s->len, false) == -1)
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
  /* nbdkit writes a slice as bytes read from its expression, holes
   * too, unless it is the whole of it.
   */
  bool literal = from > 0 || to < src->len;
  size_t i;

  if (literal && put_fill (dst, 0, 0, to - from, true) == -1)
    return -1;
  for (i = 0; i < src->n; i++) {
    const struct chunk *s = &src->v[i];
    uint64_t a = s->off > from ? s->off : from;
    uint64_t e = s->off + s->len < to ? s->off + s->len : to;

    if (a < e && put_part (dst, a - from, s, a, e, literal) == -1)
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

/* len copies of byte at off, written. */
static int
write_run (int fd, unsigned char byte, uint64_t len, uint64_t off)
{
  unsigned char buf[65536];

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

/* The byte all of a data chunk is made of, or -1. */
static int
same_byte (const struct chunk *c, uint64_t len)
{
  if (len > 1 && memcmp (c->data, c->data + 1, len - 1) != 0)
    return -1;
  return c->data[0];
}

int
blob_render (const struct blob *b, int fd, uint64_t size)
{
  size_t i;

  for (i = 0; i < b->n; i++) {
    const struct chunk *c = &b->v[i];
    uint64_t len = c->len;
    int byte = c->fill;

    if (c->off >= size)
      continue;
    if (len > size - c->off)
      len = size - c->off;
    if (byte < 0 && !c->literal && c->len > 1)
      byte = same_byte (c, c->len);         /* nbdkit: a run, not data */
    if (c->zero || (byte == 0 && !c->literal && c->len > 1)) {
      if (sparse_page_zero ("data", fd, size, len, c->off) == -1)
        return -1;
    }
    else if (c->fill >= 0 ? write_run (fd, c->fill, len, c->off)
                          : write_all (fd, c->data, len, c->off))
      return -1;
  }
  return 0;
}
