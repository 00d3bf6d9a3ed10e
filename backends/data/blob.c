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

/* What a blob shows: where later chunks cover earlier ones only the
 * later bytes are seen.  The visible pieces of src are listed in order
 * of offset, without overlaps and without the holes, each with the
 * chunk it shows, so that a blit walks them once, page after page
 * (rather than every chunk for every page: '(1 @+1T)*100000' blitted
 * would be quadratic).
 */
struct piece {
  uint64_t off, end;            /* [off, end) of src */
  size_t chunk;                 /* the index of the chunk seen there */
};

struct view {
  struct piece *v;
  size_t n;
};

/* Chunk indices by offset (then index, to be deterministic). */
static int
by_offset (const void *a, const void *b, void *arg)
{
  const struct blob *src = arg;
  size_t i = *(const size_t *) a, j = *(const size_t *) b;

  if (src->v[i].off != src->v[j].off)
    return src->v[i].off < src->v[j].off ? -1 : 1;
  return i < j ? -1 : i > j;
}

/* A max-heap of chunk indices: the latest chunk covering a point is
 * the one seen there.
 */
static void
heap_push (size_t *h, size_t *n, size_t x)
{
  size_t k = (*n)++;

  while (k > 0 && h[(k - 1) / 2] < x) {
    h[k] = h[(k - 1) / 2];
    k = (k - 1) / 2;
  }
  h[k] = x;
}

static void
heap_pop (size_t *h, size_t *n)
{
  size_t x = h[--*n], k = 0;

  for (;;) {
    size_t c = 2 * k + 1;

    if (c >= *n)
      break;
    if (c + 1 < *n && h[c + 1] > h[c])
      c++;
    if (h[c] <= x)
      break;
    h[k] = h[c];
    k = c;
  }
  h[k] = x;
}

static int
view_make (struct view *w, const struct blob *src)
{
  size_t *order = NULL, *heap = NULL, nh = 0, i = 0;
  uint64_t pos = 0;

  w->n = 0;
  w->v = NULL;
  if (src->n == 0)
    return 0;
  order = malloc (src->n * sizeof *order);
  heap = malloc (src->n * sizeof *heap);
  /* Each piece ends where a chunk starts or ends: at most 2n. */
  w->v = malloc (2 * src->n * sizeof *w->v);
  if (!order || !heap || !w->v) {
    nbdkit_error ("out of memory building the disk: %m");
    free (order);
    free (heap);
    free (w->v);
    w->v = NULL;
    return -1;
  }
  for (i = 0; i < src->n; i++)
    order[i] = i;
  qsort_r (order, src->n, sizeof *order, by_offset, (void *) src);

  i = 0;
  while (i < src->n || nh > 0) {
    const struct chunk *top;
    uint64_t next;

    if (nh == 0 && pos < src->v[order[i]].off)
      pos = src->v[order[i]].off;
    while (i < src->n && src->v[order[i]].off <= pos)
      heap_push (heap, &nh, order[i++]);
    while (nh > 0 && src->v[heap[0]].off + src->v[heap[0]].len <= pos)
      heap_pop (heap, &nh);
    if (nh == 0)
      continue;
    top = &src->v[heap[0]];
    next = top->off + top->len;
    if (i < src->n && src->v[order[i]].off < next)
      next = src->v[order[i]].off;
    if (w->n > 0 && w->v[w->n - 1].chunk == heap[0] &&
        w->v[w->n - 1].end == pos)
      w->v[w->n - 1].end = next;
    else
      w->v[w->n++] = (struct piece) { .off = pos, .end = next,
                                      .chunk = heap[0] };
    pos = next;
  }
  free (order);
  free (heap);
  return 0;
}

/* Are the visible bytes [a, b) of src, from piece p on, all zeroes? */
static bool
view_zero (const struct blob *src, const struct view *w, size_t p,
           uint64_t a, uint64_t b)
{
  for (; p < w->n && w->v[p].off < b; p++) {
    const struct chunk *c = &src->v[w->v[p].chunk];
    uint64_t x = w->v[p].off > a ? w->v[p].off : a;
    uint64_t y = w->v[p].end < b ? w->v[p].end : b;
    const unsigned char *d;

    if (x >= y)
      continue;
    if (c->fill >= 0) {
      if (c->fill != 0)
        return false;
      continue;
    }
    d = c->data + (x - c->off);
    if (d[0] != 0 || (y - x > 1 && memcmp (d, d + 1, y - x - 1) != 0))
      return false;
  }
  return true;
}

/* A zeroing chunk (unallocated pages) over [pos, pos+len) of dst. */
static int
put_zeroing (struct blob *dst, uint64_t pos, uint64_t len)
{
  struct chunk *c = new_chunk (dst);

  if (!c)
    return -1;
  *c = (struct chunk) { .off = pos, .len = len, .fill = 0, .zero = true };
  grow (dst, pos, len);
  return 0;
}

int
blob_insert_blit (struct blob *dst, uint64_t off, const struct blob *src)
{
  struct view w;
  uint64_t pos = off, end;
  size_t p = 0;
  int r = -1;

  if (too_long (off, src->len) || too_much (dst->data, src->data))
    return -1;
  if (view_make (&w, src) == -1)
    return -1;
  end = off + src->len;
  while (pos < end) {
    uint64_t pe = (pos | (SPARSE_PAGE - 1)) + 1;
    uint64_t next;

    if (pe > end)
      pe = end;
    /* The first visible byte from pos on. */
    while (p < w.n && w.v[p].end <= pos - off)
      p++;
    next = p < w.n ? off + (w.v[p].off > pos - off ? w.v[p].off : pos - off)
                   : end;
    if (next >= pe) {
      /* The pages up to the one where src's next piece starts are a
       * hole of src: zeroed in one go (as one per page would, but
       * '( @1T 1 )' is not 2^25 pieces).
       */
      uint64_t he = next >= end ? end : next & ~(uint64_t) (SPARSE_PAGE - 1);

      if (he < pe)
        he = pe;
      if (put_zeroing (dst, pos, he - pos) == -1)
        goto out;
      pe = he;
    }
    else if (view_zero (src, &w, p, pos - off, pe - off)) {
      if (put_zeroing (dst, pos, pe - pos) == -1)
        goto out;
    }
    else {
      size_t q;

      /* Written whole, the holes of src as zeroes. */
      if (put_fill (dst, pos, 0, pe - pos, true) == -1)
        goto out;
      for (q = p; q < w.n && w.v[q].off < pe - off; q++) {
        uint64_t a = w.v[q].off > pos - off ? w.v[q].off : pos - off;
        uint64_t e = w.v[q].end < pe - off ? w.v[q].end : pe - off;

        if (a < e && put_part (dst, off + a, &src->v[w.v[q].chunk], a, e,
                               true) == -1)
          goto out;
      }
    }
    pos = pe;
  }
  grow (dst, off, src->len);
  r = 0;
 out:
  free (w.v);
  return r;
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
