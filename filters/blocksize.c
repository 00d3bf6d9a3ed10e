/* filters/blocksize.c: meet the block size limits of the layer below
 * (nbdkit-blocksize-filter(1)).
 *
 * Owns the translation of a client's request, of any alignment and
 * size, into requests that the layer below accepts: aligned to the
 * minimum block (minblock=, or the layer below's minimum if larger)
 * and no longer than maxdata= (reads, writes, cache) or maxlen= (trim,
 * zero).  As nbdkit's filter does, a request is cut into an unaligned
 * head (one whole block), an aligned middle (pieces of at most
 * maxdata/maxlen from the first aligned offset) and an unaligned tail
 * (one whole block).  A read reads the head and tail blocks and keeps
 * the part asked for; a write or zero read-modify-writes them (read
 * the block, patch it, write it back); a trim drops them; a cache
 * rounds them out.  Extents are asked from the aligned offset and
 * answered in whole blocks: a first extent shorter than a block is
 * merged with the next ones (asking below again if needed) into one
 * block whose type is what all of them share.
 *
 * Read-modify-writes lock their block exclusively; the aligned middles
 * of writes, zeroes and trims take a shared lock on their range, so
 * they run in parallel with one another but never land between the
 * read and the write of a read-modify-write of their blocks.  The
 * locks are shared by every connection, and granted in the order
 * asked.  Reads take no lock.
 *
 * When the layer below does FUA by a flush (fua_emulated), the pieces
 * of a FUA request are sent without FUA and followed by one flush.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "filter.h"

/* Pieces of one middle in flight at a time. */
#define WINDOW 16

/* The largest request with data that the server takes from a client:
 * the default maximum.
 */
#define DATA_LIMIT HP_MAX_DATA

static int64_t minblock = 1;
static int64_t maxdata;         /* 0 = not given */
static int64_t maxlen;          /* 0 = not given */

static bool
is_power_of_2 (uint64_t v)
{
  return v && !(v & (v - 1));
}

static int
blocksize_config (const char *key, const char *value)
{
  int64_t v;

  if (fparse_size (key, value, &v) == -1)
    return -1;
  if (strcmp (key, "minblock") == 0) {
    if (!is_power_of_2 ((uint64_t) v) || v > 65536) {
      nbdkit_error ("%s=%s: the minimum block size must be a power of 2 "
                    "from 1 to 64k", key, value);
      return -1;
    }
    minblock = v;
  }
  else if (strcmp (key, "maxdata") == 0) {
    if (v < 1 || v > DATA_LIMIT) {
      nbdkit_error ("%s=%s: the largest read or write must be from 1 "
                    "byte to 32M", key, value);
      return -1;
    }
    maxdata = v;
  }
  else {
    if (v < 1 || v > UINT32_MAX) {
      nbdkit_error ("%s=%s: the longest trim or zero must be from 1 byte "
                    "to 4294967295 (4G-1)", key, value);
      return -1;
    }
    maxlen = v;
  }
  return 0;
}

static int
blocksize_config_complete (void)
{
  if (maxdata && maxdata % minblock) {
    nbdkit_error ("maxdata=%" PRId64 ": must be a multiple of minblock=%"
                  PRId64, maxdata, minblock);
    return -1;
  }
  if (maxlen && maxlen % minblock) {
    nbdkit_error ("maxlen=%" PRId64 ": must be a multiple of minblock=%"
                  PRId64, maxlen, minblock);
    return -1;
  }
  return 0;
}

/* Per connection: the limits in force, from ours and those below. */
struct bs_handle {
  uint32_t mb;                  /* minimum block, alignment */
  uint32_t maxdata;             /* reads, writes, cache: multiple of mb */
  uint32_t maxlen;              /* trim, zero: multiple of mb */
  bool fua_emulated;            /* below does FUA by a flush */
};

static void
blocksize_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct bs_handle *h;
  uint64_t mb = (uint64_t) minblock;
  uint64_t md, ml;
  uint32_t pref;

  /* Below's own constraints, if it has any, are obeyed too. */
  if (c->block_min > mb)
    mb = c->block_min;
  if (maxdata)
    md = (uint64_t) maxdata;
  else if (maxlen && maxlen < DATA_LIMIT)
    md = (uint64_t) maxlen;
  else
    md = DATA_LIMIT;
  if (c->block_max && c->block_max < md)
    md = c->block_max;
  md -= md % mb;
  ml = maxlen ? (uint64_t) maxlen : UINT32_MAX;
  ml -= ml % mb;
  if (md == 0 || ml == 0) {
    fopen_fail (o, HP_EINVAL, "blocksize filter: maxdata or maxlen is "
                "smaller than the layer below's minimum block size");
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->mb = (uint32_t) mb;
  h->maxdata = (uint32_t) md;
  h->maxlen = (uint32_t) ml;
  h->fua_emulated = c->can_fua && c->fua_emulated;
  nbdkit_debug ("blocksize filter: minblock=%" PRIu32 " maxdata=%" PRIu32
                " maxlen=%" PRIu32, h->mb, h->maxdata, h->maxlen);
  /* An unaligned tail cannot be served: the disk ends at a block. */
  c->size -= c->size % mb;
  /* What clients may send now: anything; best in whole blocks. */
  pref = c->block_pref > 4096 ? c->block_pref : 4096;
  if (pref < mb)
    pref = (uint32_t) mb;
  c->block_min = 1;
  c->block_pref = pref;
  c->block_max = UINT32_MAX;
  fopen_done (o, h);
}

static void
blocksize_close (void *handle)
{
  free (handle);
}

/* ---- locks: shared (aligned middles), exclusive (read-modify-write) ---- */

struct bs_lock {
  uint64_t lo, hi;              /* bytes, [lo, hi) */
  bool exclusive;
  void (*start) (struct bs_lock *l);
  struct bs_lock *next, *start_next;
};

static struct bs_lock *held, *waiting;

static bool
clash (const struct bs_lock *a, const struct bs_lock *b)
{
  return a->lo < b->hi && b->lo < a->hi && (a->exclusive || b->exclusive);
}

static bool
blocked (const struct bs_lock *l, const struct bs_lock *list,
         const struct bs_lock *stop)
{
  for (; list && list != stop; list = list->next)
    if (clash (l, list))
      return true;
  return false;
}

/* start runs once no lock held or asked before this one clashes. */
static void
lock_acquire (struct bs_lock *l)
{
  struct bs_lock **p;

  if (!blocked (l, held, NULL) && !blocked (l, waiting, NULL)) {
    l->next = held;
    held = l;
    l->start (l);
    return;
  }
  for (p = &waiting; *p; p = &(*p)->next)
    ;
  l->next = NULL;
  *p = l;
}

static void
lock_release (struct bs_lock *l)
{
  struct bs_lock **p, *w, *start = NULL, **tail = &start;

  for (p = &held; *p != l; p = &(*p)->next)
    ;
  *p = l->next;
  /* Grant the waiters that clash with nothing held and no earlier
   * waiter; start them once the lists are consistent.
   */
  p = &waiting;
  while ((w = *p) != NULL) {
    if (!blocked (w, held, NULL) && !blocked (w, waiting, w)) {
      *p = w->next;
      w->next = held;
      held = w;
      w->start_next = NULL;
      *tail = w;
      tail = &w->start_next;
    }
    else
      p = &w->next;
  }
  while (start) {
    w = start;
    start = w->start_next;
    w->start (w);
  }
}

/* ---- one request, as the parts it makes ---- */

enum part_kind {
  MIDDLE,                       /* aligned pieces */
  EDGE_READ,                    /* read a block, keep part of it */
  EDGE_RMW,                     /* read a block, patch it, write it */
};

struct op;

struct part {
  struct bs_lock lk;            /* first: the lock's start finds us */
  bool locked;
  enum part_kind kind;
  struct op *o;
  uint64_t lo, hi;              /* MIDDLE: the range; else the block */
  uint64_t next_off;            /* MIDDLE: the next piece */
  unsigned in_flight;
  unsigned char *block;         /* EDGE_*: mb bytes */
};

struct op {
  struct freq *r;
  const struct bs_handle *h;
  struct fnext *next;
  uint16_t flags;               /* of the pieces (FUA off if emulated) */
  bool need_flush;
  struct part parts[3];
  unsigned nr_parts, parts_left;
  unsigned char *buf;           /* PREAD: the reply */
  uint32_t error;
  char *msg;
};

static void
op_free (struct op *o)
{
  unsigned i;

  for (i = 0; i < o->nr_parts; ++i)
    free (o->parts[i].block);
  free (o->buf);
  free (o->msg);
  free (o);
}

static void
op_error (struct op *o, uint32_t status, const void *payload, uint32_t len)
{
  if (o->error)
    return;
  o->error = status ? status : HP_EIO;
  if (payload && len)
    o->msg = strndup (payload, len);
}

static void
on_flushed (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct op *o = opaque;

  freq_reply_from (o->r, reply, payload, len);
  op_free (o);
}

/* Every part is over. */
static void
op_finish (struct op *o)
{
  struct freq *r = o->r;

  if (o->error)
    freq_reply_error (r, o->error, o->msg);
  else if (o->need_flush) {
    fnext_request (o->next, HP_FLUSH, 0, 0, 0, NULL, on_flushed, o);
    return;
  }
  else if (r->type == HP_PREAD) {
    freq_reply (r, o->buf, r->count, 0);
    o->buf = NULL;
  }
  else
    freq_reply (r, NULL, 0, 0);
  op_free (o);
}

static void
part_done (struct part *p)
{
  struct op *o = p->o;

  if (p->locked) {
    p->locked = false;
    lock_release (&p->lk);
  }
  if (--o->parts_left == 0)
    op_finish (o);
}

static uint32_t
piece_max (const struct op *o)
{
  switch (o->r->type) {
  case HP_TRIM:
  case HP_ZERO:
    return o->h->maxlen;
  default:                      /* PREAD, PWRITE, CACHE */
    return o->h->maxdata;
  }
}

static void send_pieces (struct part *p);

/* A read piece: where its data goes. */
struct read_ctx {
  struct part *p;
  unsigned char *dst;
  uint32_t count;
};

static void
on_piece (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct part *p = opaque;

  if (!reply || reply->status)
    op_error (p->o, reply ? reply->status : HP_EIO, payload, len);
  payload_free (payload);
  p->in_flight--;
  send_pieces (p);
}

static void
on_read_piece (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct read_ctx *rc = opaque;
  struct part *p = rc->p;

  if (!reply || reply->status)
    op_error (p->o, reply ? reply->status : HP_EIO, payload, len);
  else if (reply->flags & HP_FLAG_ZEROS)
    memset (rc->dst, 0, rc->count);
  else
    memcpy (rc->dst, payload, rc->count);
  payload_free (payload);
  free (rc);
  p->in_flight--;
  send_pieces (p);
}

/* The middle: pieces of at most piece_max from p->lo, a few at a
 * time.
 */
static void
send_pieces (struct part *p)
{
  struct op *o = p->o;
  struct freq *r = o->r;
  uint32_t max = piece_max (o);

  while (!o->error && p->next_off < p->hi && p->in_flight < WINDOW) {
    uint64_t off = p->next_off;
    uint32_t n = p->hi - off < max ? (uint32_t) (p->hi - off) : max;
    void *data = NULL;

    p->next_off += n;
    if (r->type == HP_PREAD) {
      struct read_ctx *rc = malloc (sizeof *rc);

      if (!rc) {
        o->error = HP_ENOMEM;
        break;
      }
      rc->p = p;
      rc->dst = o->buf + (off - r->offset);
      rc->count = n;
      p->in_flight++;
      fnext_request (o->next, HP_PREAD, r->flags, off, n, NULL,
                     on_read_piece, rc);
      continue;
    }
    if (r->type == HP_PWRITE) {
      data = malloc (n);
      if (!data) {
        o->error = HP_ENOMEM;
        break;
      }
      memcpy (data, (unsigned char *) r->data + (off - r->offset), n);
    }
    p->in_flight++;
    fnext_request (o->next, r->type, o->flags, off, n, data, on_piece, p);
  }
  if (p->in_flight == 0 && (o->error || p->next_off >= p->hi))
    part_done (p);
}

/* An edge block: the bytes of the request in it. */
static void
edge_span (const struct part *p, uint64_t *s, uint64_t *t)
{
  const struct freq *r = p->o->r;
  uint64_t end = r->offset + r->count;

  *s = p->lo > r->offset ? p->lo : r->offset;
  *t = p->hi < end ? p->hi : end;
}

static void
on_edge_written (void *opaque, const struct hp_header *reply, void *payload,
                 uint32_t len)
{
  struct part *p = opaque;

  if (!reply || reply->status)
    op_error (p->o, reply ? reply->status : HP_EIO, payload, len);
  payload_free (payload);
  part_done (p);
}

static void
on_edge_read (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct part *p = opaque;
  struct op *o = p->o;
  struct freq *r = o->r;
  uint64_t s, t;

  if (!reply || reply->status) {
    op_error (o, reply ? reply->status : HP_EIO, payload, len);
    payload_free (payload);
    part_done (p);
    return;
  }
  edge_span (p, &s, &t);
  if (p->kind == EDGE_READ) {
    /* A read's flags may let below answer zeros without data. */
    if (reply->flags & HP_FLAG_ZEROS)
      memset (o->buf + (s - r->offset), 0, t - s);
    else
      memcpy (o->buf + (s - r->offset),
              (unsigned char *) payload + (s - p->lo), t - s);
    payload_free (payload);
    part_done (p);
    return;
  }
  /* Read-modify-write: patch the block and write it back. */
  memcpy (p->block, payload, o->h->mb);
  payload_free (payload);
  if (r->type == HP_PWRITE)
    memcpy (p->block + (s - p->lo),
            (unsigned char *) r->data + (s - r->offset), t - s);
  else
    memset (p->block + (s - p->lo), 0, t - s);
  fnext_request (o->next, HP_PWRITE, o->flags & HP_FLAG_FUA, p->lo,
                 o->h->mb, p->block, on_edge_written, p);
  p->block = NULL;              /* the write has it */
}

/* The part may start (its lock is held, or it needs none). */
static void
part_start (struct part *p)
{
  struct op *o = p->o;

  if (p->kind == MIDDLE) {
    send_pieces (p);
    return;
  }
  if (p->kind == EDGE_RMW && !(p->block = malloc (o->h->mb))) {
    o->error = HP_ENOMEM;
    part_done (p);
    return;
  }
  fnext_request (o->next, HP_PREAD, p->kind == EDGE_READ ? o->r->flags : 0,
                 p->lo, o->h->mb, NULL, on_edge_read, p);
}

static void
part_locked (struct bs_lock *l)
{
  part_start ((struct part *) l);
}

static void
add_part (struct op *o, enum part_kind kind, uint64_t lo, uint64_t hi)
{
  struct part *p = &o->parts[o->nr_parts++];

  p->kind = kind;
  p->o = o;
  p->lo = lo;
  p->hi = hi;
  p->next_off = lo;
}

static void
blocksize_request (void *handle, struct freq *r)
{
  const struct bs_handle *h = handle;
  uint32_t mb = h->mb;
  uint64_t off = r->offset, end = r->offset + r->count;
  uint64_t mid_lo = (off + mb - 1) / mb * mb;
  uint64_t mid_hi = end / mb * mb;
  bool aligned = (off | r->count) % mb == 0;
  bool need_flush = false;
  bool locks = mb > 1;
  struct op *o;
  unsigned i;

  switch (r->type) {
  case HP_PWRITE:
  case HP_TRIM:
  case HP_ZERO:
    if (r->type == HP_ZERO && (r->flags & HP_FLAG_FAST_ZERO) &&
        (!aligned || r->count > h->maxlen)) {
      /* The pieces would not all be fast. */
      freq_reply_error (r, HP_ENOTSUP, "a fast zero that must be split "
                        "is not fast");
      return;
    }
    need_flush = (r->flags & HP_FLAG_FUA) && h->fua_emulated;
    if (!need_flush && !locks &&
        r->count <= (r->type == HP_PWRITE ? h->maxdata : h->maxlen)) {
      freq_next (r);
      return;
    }
    break;
  case HP_PREAD:
  case HP_CACHE:
    if (aligned && r->count <= h->maxdata) {
      freq_next (r);
      return;
    }
    break;
  }

  o = calloc (1, sizeof *o);
  if (!o) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  o->r = r;
  o->h = h;
  o->next = freq_below (r);
  o->flags = r->flags;
  o->need_flush = need_flush;
  if (need_flush)
    o->flags &= ~HP_FLAG_FUA;
  if (r->type == HP_PREAD && !(o->buf = malloc (r->count))) {
    free (o);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }

  switch (r->type) {
  case HP_CACHE:
    /* Rounded out to whole blocks. */
    add_part (o, MIDDLE, off - off % mb, (end + mb - 1) / mb * mb);
    locks = false;
    break;
  case HP_TRIM:
    /* The unaligned head and tail are left alone. */
    if (mid_lo < mid_hi)
      add_part (o, MIDDLE, mid_lo, mid_hi);
    break;
  default: {                    /* PREAD, PWRITE, ZERO */
    enum part_kind edge = r->type == HP_PREAD ? EDGE_READ : EDGE_RMW;
    uint64_t pos = off;

    /* The head block (which may hold the whole request), the whole
     * blocks after it, the tail block.
     */
    if (off % mb) {
      add_part (o, edge, off - off % mb, off - off % mb + mb);
      pos = mid_lo < end ? mid_lo : end;
    }
    if (end - pos >= mb) {
      add_part (o, MIDDLE, pos, mid_hi);
      pos = mid_hi;
    }
    if (pos < end)
      add_part (o, edge, pos, pos + mb);
    if (r->type == HP_PREAD)
      locks = false;
    break;
  }
  }

  o->parts_left = o->nr_parts + 1;      /* and this call's */
  for (i = 0; i < o->nr_parts; ++i) {
    struct part *p = &o->parts[i];

    if (locks) {
      p->lk.lo = p->lo;
      p->lk.hi = p->hi;
      p->lk.exclusive = p->kind == EDGE_RMW;
      p->lk.start = part_locked;
      p->locked = true;
      lock_acquire (&p->lk);
    }
    else
      part_start (p);
  }
  if (--o->parts_left == 0)
    op_finish (o);
}

/* ---- extents: whole blocks from the aligned offset ---- */

struct ext_op {
  struct freq *r;
  const struct bs_handle *h;
  uint64_t lo;                  /* the aligned offset asked */
  uint64_t clip;                /* below's answer is cut here */
  /* Merging the first block: its length so far and shared type. */
  uint64_t merged;
  uint32_t type;
};

static void ext_reply (struct ext_op *x, const unsigned char *e, size_t n);

/* Decode below's extents from off, cut at x->clip: n entries into
 * *len, *type arrays.  Returns the number, -1 when memory is short.
 */
static ssize_t
ext_decode (const struct ext_op *x, uint64_t off, const unsigned char *p,
            uint32_t plen, uint64_t **lens, uint32_t **types)
{
  size_t n = plen / HP_EXTENT_SIZE, i, k = 0;

  *lens = malloc ((n ? n : 1) * sizeof **lens);
  *types = malloc ((n ? n : 1) * sizeof **types);
  if (!*lens || !*types) {
    free (*lens);
    free (*types);
    return -1;
  }
  for (i = 0; i < n && off < x->clip; ++i) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (p + i * HP_EXTENT_SIZE, &length, &type);
    if (length == 0)
      continue;
    if (length > x->clip - off)
      length = x->clip - off;
    (*lens)[k] = length;
    (*types)[k] = type;
    k++;
    off += length;
  }
  return (ssize_t) k;
}

static void
ext_fail (struct ext_op *x, uint32_t status, const char *msg)
{
  freq_reply_error (x->r, status, msg);
  free (x);
}

static void on_ext_more (void *opaque, const struct hp_header *reply,
                         void *payload, uint32_t len);

/* Merge the extents (from lo + merged) into the first block; ask below
 * for more if they do not reach its end.
 */
static void
ext_merge (struct ext_op *x, const uint64_t *lens, const uint32_t *types,
           size_t n)
{
  uint32_t mb = x->h->mb;
  unsigned char e[HP_EXTENT_SIZE];
  size_t i;

  for (i = 0; i < n && x->merged < mb; ++i) {
    x->merged += lens[i];
    x->type &= types[i];
  }
  if (x->merged >= mb) {
    hp_encode_extent (e, mb, x->type);
    ext_reply (x, e, 1);
    return;
  }
  if (n == 0) {
    ext_fail (x, HP_EIO, "the layer below answered extents that do not "
              "cover the block asked");
    return;
  }
  x->clip = x->lo + mb;
  fnext_request (freq_below (x->r), HP_EXTENTS,
                 x->r->flags & ~HP_FLAG_REQ_ONE, x->lo + x->merged,
                 (uint32_t) (mb - x->merged), NULL, on_ext_more, x);
}

static void
on_ext_more (void *opaque, const struct hp_header *reply, void *payload,
             uint32_t len)
{
  struct ext_op *x = opaque;
  uint64_t *lens;
  uint32_t *types;
  ssize_t n;

  if (!reply || reply->status) {
    freq_reply_from (x->r, reply, payload, len);
    free (x);
    return;
  }
  n = ext_decode (x, x->lo + x->merged, payload, len, &lens, &types);
  payload_free (payload);
  if (n == -1) {
    ext_fail (x, HP_ENOMEM, "out of memory");
    return;
  }
  ext_merge (x, lens, types, (size_t) n);
  free (lens);
  free (types);
}

/* The aligned extents e (n entries, from x->lo): answer from the
 * request's offset.
 */
static void
ext_reply (struct ext_op *x, const unsigned char *e, size_t n)
{
  struct freq *r = x->r;
  uint64_t skip = r->offset - x->lo;
  unsigned char *out = malloc (n * HP_EXTENT_SIZE);
  size_t i, k = 0;

  if (!out) {
    ext_fail (x, HP_ENOMEM, "out of memory");
    return;
  }
  for (i = 0; i < n; ++i) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (e + i * HP_EXTENT_SIZE, &length, &type);
    if (length <= skip) {
      skip -= length;
      continue;
    }
    hp_encode_extent (out + k++ * HP_EXTENT_SIZE, length - skip, type);
    skip = 0;
  }
  if (k == 0) {
    free (out);
    ext_fail (x, HP_EIO, "the layer below answered extents that do not "
              "reach the offset asked");
    return;
  }
  freq_reply (r, out, (uint32_t) (k * HP_EXTENT_SIZE), 0);
  free (x);
}

static void
on_extents (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct ext_op *x = opaque;
  uint32_t mb = x->h->mb;
  uint64_t *lens, off = x->lo;
  uint32_t *types;
  unsigned char *out;
  ssize_t n;
  size_t i, k;

  if (!reply || reply->status) {
    freq_reply_from (x->r, reply, payload, len);
    free (x);
    return;
  }
  n = ext_decode (x, x->lo, payload, len, &lens, &types);
  payload_free (payload);
  if (n == -1 || !(out = malloc ((n ? n : 1) * HP_EXTENT_SIZE))) {
    if (n != -1) {
      free (lens);
      free (types);
    }
    ext_fail (x, HP_ENOMEM, "out of memory");
    return;
  }
  /* Whole blocks up to the first extent that is not; that one is cut
   * down to whole blocks -- unless it is the first, shorter than a
   * block: it is then merged with the next ones into one block.
   */
  for (i = k = 0; i < (size_t) n; ++i) {
    if (lens[i] % mb == 0) {
      hp_encode_extent (out + k++ * HP_EXTENT_SIZE, lens[i], types[i]);
      off += lens[i];
      continue;
    }
    if (off + lens[i] > x->lo + mb) {
      if (lens[i] >= mb)
        hp_encode_extent (out + k++ * HP_EXTENT_SIZE, lens[i] / mb * mb,
                          types[i]);
      break;
    }
    x->merged = 0;
    x->type = HP_EXTENT_HOLE | HP_EXTENT_ZERO;
    ext_merge (x, lens, types, (size_t) n);
    free (lens);
    free (types);
    free (out);
    return;
  }
  free (lens);
  free (types);
  if (k == 0) {
    free (out);
    ext_fail (x, HP_EIO, "the layer below answered no extents");
    return;
  }
  ext_reply (x, out, k);
  free (out);
}

static void
blocksize_extents (void *handle, struct freq *r)
{
  const struct bs_handle *h = handle;
  uint32_t mb = h->mb;
  uint64_t count = (r->count + (uint64_t) mb - 1) / mb * mb;
  struct ext_op *x;

  if (count > h->maxlen)
    count = h->maxlen;
  if (mb == 1) {
    r->count = (uint32_t) count;
    freq_next (r);
    return;
  }
  x = calloc (1, sizeof *x);
  if (!x) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  x->r = r;
  x->h = h;
  x->lo = r->offset - r->offset % mb;
  x->clip = (r->offset + r->count + mb - 1) / mb * mb;
  fnext_request (freq_below (r), HP_EXTENTS, r->flags, x->lo,
                 (uint32_t) count, NULL, on_extents, x);
}

static const char *const keys[] = { "minblock", "maxdata", "maxlen", NULL };

const struct filter blocksize_filter = {
  .name = "blocksize",
  .description = "meet the block size limits of the layer below",
  .config_help =
    "minblock=SIZE   alignment the layer below needs, a power of 2\n"
    "                up to 64k (default 1, or the layer below's minimum)\n"
    "maxdata=SIZE    longest read, write or cache sent below\n"
    "                (default 32M, or maxlen if smaller)\n"
    "maxlen=SIZE     longest trim or zero sent below\n"
    "                (default 4G-1, rounded down to minblock)",
  .keys = keys,
  .config = blocksize_config,
  .config_complete = blocksize_config_complete,
  .open = blocksize_open,
  .close = blocksize_close,
  .pread = blocksize_request,
  .pwrite = blocksize_request,
  .trim = blocksize_request,
  .zero = blocksize_request,
  .cache = blocksize_request,
  .extents = blocksize_extents,
};
