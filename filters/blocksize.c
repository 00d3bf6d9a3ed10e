/* filters/blocksize.c: meet the block size limits of the layer below
 * (nbdkit-blocksize-filter(1)).
 *
 * Owns the translation of a client's request, of any alignment and
 * size, into requests that the layer below accepts: aligned to
 * minblock= and no longer than maxdata= (reads, writes) or maxlen=
 * (trim, zero, cache).  Reads are widened to whole blocks; the
 * unaligned head and tail of a write or zero are read-modify-written
 * (read the block, patch it, write it back); the unaligned head and
 * tail of a trim are dropped; long requests are cut into pieces, a few
 * in flight at a time.
 *
 * Writes, zeroes and trims lock the blocks they touch (a range lock
 * shared by every connection), and a request waits for the locks of
 * those before it that overlap: so two unaligned writes of one block
 * never write back each other's stale copy.  Reads take no lock.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

/* Sub-requests of one request in flight at a time. */
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
  uint32_t maxdata;             /* reads, writes: multiple of mb */
  uint32_t maxlen;              /* trim, zero, cache: multiple of mb */
};

static void
blocksize_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct bs_handle *h;
  uint64_t mb = (uint64_t) minblock;
  uint64_t md = maxdata ? (uint64_t) maxdata : DATA_LIMIT;
  uint64_t ml = maxlen ? (uint64_t) maxlen : UINT32_MAX;
  uint32_t pref;

  /* Below's own constraints, if it has any, are obeyed too. */
  if (c->block_min > mb)
    mb = c->block_min;
  if (c->block_max && c->block_max < md)
    md = c->block_max;
  md -= md % mb;
  ml -= ml % mb;
  if (md == 0 || ml == 0) {
    fopen_fail (o, HP_EINVAL, "blocksize filter: maxdata or maxlen is "
                "smaller than the layer below's minimum block size");
    return;
  }
  if (c->size < mb) {
    fopen_fail (o, HP_EINVAL, "blocksize filter: the disk is smaller "
                "than one block of minblock");
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
  /* An unaligned tail cannot be served: the disk ends at a block. */
  c->size -= c->size % mb;
  /* What clients may send now: anything; best in whole blocks. */
  pref = c->block_pref > 4096 ? c->block_pref : 4096;
  if (pref < mb)
    pref = (uint32_t) mb;
  while (pref > md && pref > 1)
    pref /= 2;
  if (!is_power_of_2 (pref))
    pref = 4096;
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

/* ---- one request, as the work it makes ---- */

struct piece {
  uint16_t type;
  uint64_t offset;
  uint32_t count;
  const unsigned char *src;     /* PWRITE: the data, copied when sent */
  unsigned char *dst;           /* PREAD: where the data goes */
};

struct op {
  struct frange_lock lk;        /* first: writes, zeroes, trims */
  bool locking;
  struct freq *r;
  const struct bs_handle *h;
  struct fnext *next;
  uint64_t off, end;            /* what the client asked */
  /* Read-modify-write of the unaligned edge blocks. */
  unsigned nr_edges;
  uint64_t edge_off[2];
  unsigned char *edge[2];
  /* The pieces to send below. */
  struct piece *pieces;
  size_t nr_pieces, next_piece;
  unsigned in_flight;
  unsigned char *buf;           /* PREAD: the aligned data */
  uint64_t buf_off;
  uint32_t error;
  char *msg;
};

/* The range lock, in bytes. */
static struct frange_locks locks;

static void op_start (struct op *o);

static void
op_locked (struct frange_lock *l)
{
  op_start ((struct op *) l);
}

static void
op_free (struct op *o)
{
  free (o->edge[0]);
  free (o->edge[1]);
  free (o->pieces);
  free (o->buf);
  free (o->msg);
  free (o);
}

static void
op_finish (struct op *o)
{
  struct freq *r = o->r;

  if (o->locking)
    frange_release (&locks, &o->lk);
  if (o->error)
    freq_reply_error (r, o->error, o->msg);
  else if (r->type == HP_PREAD) {
    unsigned char *data = o->buf;

    /* The part asked for, to the front. */
    if (o->buf_off != o->off)
      memmove (data, data + (o->off - o->buf_off), r->count);
    o->buf = NULL;
    freq_reply (r, data, r->count, 0);
  }
  else
    freq_reply (r, NULL, 0, 0);
  op_free (o);
}

static void
op_error (struct op *o, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  if (o->error)
    return;
  o->error = reply && reply->status ? reply->status : HP_EIO;
  if (payload && len)
    o->msg = strndup (payload, len);
}

static void send_pieces (struct op *o);

static void
on_piece (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct op *o = opaque;

  if (!reply || reply->status)
    op_error (o, reply, payload, len);
  payload_free (payload);
  o->in_flight--;
  send_pieces (o);
}

/* A read piece needs to know its destination: a small context. */
struct read_ctx {
  struct op *o;
  unsigned char *dst;
  uint32_t count;
};

static void
on_read_piece (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct read_ctx *rc = opaque;
  struct op *o = rc->o;

  if (!reply || reply->status)
    op_error (o, reply, payload, len);
  else
    memcpy (rc->dst, payload, rc->count);
  payload_free (payload);
  free (rc);
  o->in_flight--;
  send_pieces (o);
}

static void
send_pieces (struct op *o)
{
  while (!o->error && o->next_piece < o->nr_pieces &&
         o->in_flight < WINDOW) {
    struct piece *pc = &o->pieces[o->next_piece++];
    uint16_t flags = o->r->flags & HP_FLAG_FUA;
    void *data = NULL;

    if (pc->type == HP_PREAD) {
      struct read_ctx *rc = malloc (sizeof *rc);

      if (!rc) {
        o->error = HP_ENOMEM;
        break;
      }
      rc->o = o;
      rc->dst = pc->dst;
      rc->count = pc->count;
      o->in_flight++;
      fnext_request (o->next, HP_PREAD, 0, pc->offset, pc->count, NULL,
                     on_read_piece, rc);
      continue;
    }
    if (pc->type == HP_PWRITE) {
      data = malloc (pc->count);
      if (!data) {
        o->error = HP_ENOMEM;
        break;
      }
      memcpy (data, pc->src, pc->count);
    }
    else if (pc->type == HP_ZERO)
      flags |= o->r->flags & (HP_FLAG_MAY_TRIM | HP_FLAG_FAST_ZERO);
    o->in_flight++;
    fnext_request (o->next, pc->type, flags, pc->offset, pc->count, data,
                   on_piece, o);
  }
  if (o->in_flight == 0 &&
      (o->error || o->next_piece == o->nr_pieces))
    op_finish (o);
}

/* Cut [lo, hi) into pieces of at most max bytes. */
static int
add_pieces (struct op *o, uint16_t type, uint64_t lo, uint64_t hi,
            uint32_t max, const unsigned char *src, unsigned char *dst)
{
  size_t n = (size_t) ((hi - lo + max - 1) / max), i;
  struct piece *p;

  if (lo >= hi)
    return 0;
  p = realloc (o->pieces, (o->nr_pieces + n) * sizeof *p);
  if (!p)
    return -1;
  o->pieces = p;
  for (i = 0; i < n; ++i) {
    struct piece *pc = &p[o->nr_pieces++];
    uint64_t s = lo + (uint64_t) i * max;

    pc->type = type;
    pc->offset = s;
    pc->count = (uint32_t) (hi - s < max ? hi - s : max);
    pc->src = src ? src + (s - lo) : NULL;
    pc->dst = dst ? dst + (s - lo) : NULL;
  }
  return 0;
}

/* The edges have been read (or there were none): patch them and send
 * everything.
 */
static void
write_edges_and_rest (struct op *o)
{
  struct freq *r = o->r;
  uint32_t mb = o->h->mb;
  uint64_t mid_lo = o->off + (mb - o->off % mb) % mb;
  uint64_t mid_hi = o->end - o->end % mb;
  unsigned i;

  for (i = 0; i < o->nr_edges; ++i) {
    uint64_t e = o->edge_off[i];
    uint64_t s = e > o->off ? e : o->off;
    uint64_t t = e + mb < o->end ? e + mb : o->end;

    if (r->type == HP_PWRITE)
      memcpy (o->edge[i] + (s - e), (unsigned char *) r->data + (s - o->off),
              t - s);
    else
      memset (o->edge[i] + (s - e), 0, t - s);
    if (add_pieces (o, HP_PWRITE, e, e + mb, mb, o->edge[i], NULL) == -1)
      goto enomem;
  }
  if (mid_lo < mid_hi) {
    if (r->type == HP_PWRITE) {
      if (add_pieces (o, HP_PWRITE, mid_lo, mid_hi, o->h->maxdata,
                      (unsigned char *) r->data + (mid_lo - o->off), NULL)
          == -1)
        goto enomem;
    }
    else if (add_pieces (o, HP_ZERO, mid_lo, mid_hi, o->h->maxlen, NULL,
                         NULL) == -1)
      goto enomem;
  }
  send_pieces (o);
  return;

 enomem:
  o->error = HP_ENOMEM;
  send_pieces (o);
}

static void
on_edge (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct read_ctx *rc = opaque;
  struct op *o = rc->o;

  if (!reply || reply->status)
    op_error (o, reply, payload, len);
  else
    memcpy (rc->dst, payload, rc->count);
  payload_free (payload);
  free (rc);
  if (--o->in_flight > 0)
    return;
  if (o->error)
    op_finish (o);
  else
    write_edges_and_rest (o);
}

/* The lock is ours (or none was needed): do the work. */
static void
op_start (struct op *o)
{
  struct freq *r = o->r;
  uint32_t mb = o->h->mb;
  unsigned i;

  switch (r->type) {
  case HP_PREAD:
    if (add_pieces (o, HP_PREAD, o->buf_off,
                    o->buf_off + (o->end - o->buf_off + mb - 1) / mb * mb,
                    o->h->maxdata, NULL, o->buf) == -1)
      o->error = HP_ENOMEM;
    send_pieces (o);
    return;

  case HP_TRIM: {
    uint64_t lo = o->off + (mb - o->off % mb) % mb;
    uint64_t hi = o->end - o->end % mb;

    if (lo < hi && add_pieces (o, HP_TRIM, lo, hi, o->h->maxlen, NULL, NULL)
        == -1)
      o->error = HP_ENOMEM;
    send_pieces (o);
    return;
  }

  case HP_CACHE:
    if (add_pieces (o, HP_CACHE, o->off - o->off % mb,
                    o->end + (mb - o->end % mb) % mb, o->h->maxlen, NULL,
                    NULL) == -1)
      o->error = HP_ENOMEM;
    send_pieces (o);
    return;

  default:                      /* HP_PWRITE, HP_ZERO */
    break;
  }

  /* The edge blocks that the request covers only in part. */
  if (o->off % mb)
    o->edge_off[o->nr_edges++] = o->off - o->off % mb;
  if (o->end % mb &&
      (o->nr_edges == 0 || o->edge_off[0] != o->end - o->end % mb))
    o->edge_off[o->nr_edges++] = o->end - o->end % mb;
  if (o->nr_edges == 0) {
    write_edges_and_rest (o);
    return;
  }
  for (i = 0; i < o->nr_edges; ++i) {
    struct read_ctx *rc = malloc (sizeof *rc);

    o->edge[i] = malloc (mb);
    if (!rc || !o->edge[i]) {
      free (rc);
      o->error = HP_ENOMEM;
      break;
    }
    rc->o = o;
    rc->dst = o->edge[i];
    rc->count = mb;
    o->in_flight++;
    fnext_request (o->next, HP_PREAD, 0, o->edge_off[i], mb, NULL, on_edge,
                   rc);
  }
  if (o->in_flight == 0)
    op_finish (o);
}

static void
blocksize_request (void *handle, struct freq *r)
{
  const struct bs_handle *h = handle;
  uint32_t mb = h->mb;
  bool aligned = (r->offset | r->count) % mb == 0;
  struct op *o;

  /* What needs no change goes down as it is. */
  switch (r->type) {
  case HP_PREAD:
    if (aligned && r->count <= h->maxdata) {
      freq_next (r);
      return;
    }
    break;
  case HP_PWRITE:
    if (mb == 1 && r->count <= h->maxdata) {
      freq_next (r);
      return;
    }
    break;
  case HP_TRIM:
  case HP_ZERO:
    if (mb == 1 && r->count <= h->maxlen) {
      freq_next (r);
      return;
    }
    if (r->type == HP_ZERO && !aligned && (r->flags & HP_FLAG_FAST_ZERO)) {
      freq_reply_error (r, HP_ENOTSUP, "an unaligned zero is written, "
                        "not fast");
      return;
    }
    break;
  case HP_CACHE:
    if (aligned && r->count <= h->maxlen) {
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
  o->off = r->offset;
  o->end = r->offset + r->count;
  if (r->type == HP_PREAD) {
    o->buf_off = o->off - o->off % mb;
    o->buf = malloc (o->end + (mb - o->end % mb) % mb - o->buf_off);
    if (!o->buf) {
      free (o);
      freq_reply_error (r, HP_ENOMEM, "out of memory");
      return;
    }
    op_start (o);
    return;
  }
  if (r->type == HP_CACHE || mb == 1) {
    op_start (o);
    return;
  }
  o->lk.lo = o->off - o->off % mb;
  o->lk.hi = o->end + (mb - o->end % mb) % mb;
  o->lk.start = op_locked;
  o->locking = true;
  frange_acquire (&locks, &o->lk);
}

/* Extents: asked from an aligned offset; the head is then cut off. */

struct ext_ctx {
  struct freq *r;
  uint64_t skew;                /* r->offset - the aligned offset */
};

static void
on_extents (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct ext_ctx *x = opaque;
  struct freq *r = x->r;
  unsigned char *p = payload;
  uint64_t skip = x->skew;
  uint32_t i;

  free (x);
  if (!reply || reply->status) {
    freq_reply_from (r, reply, payload, len);
    return;
  }
  for (i = 0; i + HP_EXTENT_SIZE <= len; i += HP_EXTENT_SIZE) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (p + i, &length, &type);
    if (length > skip) {
      hp_encode_extent (p + i, length - skip, type);
      memmove (p, p + i, len - i);
      freq_reply (r, p, len - i, 0);
      return;
    }
    skip -= length;
  }
  payload_free (payload);
  freq_reply_error (r, HP_EIO, "the layer below answered extents that "
                    "do not reach the offset asked");
}

static void
blocksize_extents (void *handle, struct freq *r)
{
  const struct bs_handle *h = handle;
  uint32_t mb = h->mb;
  uint64_t lo = r->offset - r->offset % mb;
  uint64_t hi = r->offset + r->count + (mb - (r->offset + r->count) % mb) % mb;
  struct ext_ctx *x;

  if (hi - lo > h->maxlen)
    hi = lo + h->maxlen;
  if (lo == r->offset) {
    r->count = (uint32_t) (hi - lo);
    freq_next (r);
    return;
  }
  x = malloc (sizeof *x);
  if (!x) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  x->r = r;
  x->skew = r->offset - lo;
  fnext_request (freq_below (r), HP_EXTENTS, r->flags, lo,
                 (uint32_t) (hi - lo), NULL, on_extents, x);
}

static const char *const keys[] = { "minblock", "maxdata", "maxlen", NULL };

const struct filter blocksize_filter = {
  .name = "blocksize",
  .description = "meet the block size limits of the layer below",
  .config_help =
    "minblock=SIZE   alignment the layer below needs, a power of 2\n"
    "                up to 64k (default 1)\n"
    "maxdata=SIZE    longest read or write sent below (default 32M)\n"
    "maxlen=SIZE     longest trim, zero or cache sent below\n"
    "                (default 4G-1)",
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
