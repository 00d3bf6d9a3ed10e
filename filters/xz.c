/* filters/xz.c: serve the uncompressed contents of an xz file
 * (nbdkit-xz-filter(1)), read-only, with random access by block.
 *
 * Opening an export walks the file from its end, with asynchronous
 * reads from the layer below: stream padding, the stream footer, the
 * index it points to, the stream header; then the stream before it,
 * until the start of the file.  liblzma decodes each index and joins
 * them into one, which maps disk offsets to compressed blocks.
 *
 * A read finds the blocks it touches in a small per-connection cache
 * (least recently used first out, xz-max-depth blocks).  A block that
 * is not there is read from below in chunks, then decompressed on a
 * worker thread (worker_submit), never on the loop; every read that
 * wants the block while this happens waits for the same result.  A
 * read is answered once all its parts are there, or with the first
 * error.  Writes of every kind are refused: the export is read-only.
 *
 * Without liblzma (HAVE_LIBLZMA undefined) the filter exists but
 * refuses to start, saying why.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_LIBLZMA
#include <lzma.h>
#endif

#include "filter.h"
#include "lru.h"

/* The most a block may hold (uncompressed), and how many blocks each
 * connection keeps, as in nbdkit.
 */
#define DEFAULT_MAX_BLOCK (512 * 1024 * 1024)
#define DEFAULT_MAX_DEPTH 8
/* Reads from below at most this much at a time: well under the
 * protocol's HP_MAX_DATA.
 */
#define CHUNK (8u * 1024 * 1024)
/* An index bigger than this is refused rather than read into memory:
 * it would describe millions of blocks.
 */
#define MAX_INDEX_SIZE (256u * 1024 * 1024)
/* Bytes read at a time while looking back for a stream footer over
 * stream padding (multiples of 4 zero bytes).
 */
#define TAIL_READ 4096
/* The smallest xz stream: header, empty index, footer. */
#define XZ_HEADER_SIZE 12
#define XZ_MIN_FILE 32

static int64_t max_block = DEFAULT_MAX_BLOCK;
static unsigned max_depth = DEFAULT_MAX_DEPTH;

static int
xz_config (const char *key, const char *value)
{
  if (strcmp (key, "xz-max-block") == 0 || strcmp (key, "maxblock") == 0) {
    if (fparse_size (key, value, &max_block) == -1)
      return -1;
    if (max_block < 1) {
      nbdkit_error ("%s=%s: the block size limit must be at least 1 byte",
                    key, value);
      return -1;
    }
    return 0;
  }
  /* xz-max-depth, maxdepth */
  if (fparse_uint (key, value, 1000000, &max_depth) == -1)
    return -1;
  if (max_depth == 0) {
    nbdkit_error ("%s=%s: the cache must hold at least 1 block", key, value);
    return -1;
  }
  return 0;
}

#ifndef HAVE_LIBLZMA

static int
xz_config_complete (void)
{
  nbdkit_error ("the xz filter is not available: this nbdkit was built "
                "without liblzma (install liblzma-dev, then run configure "
                "and make again)");
  return -1;
}

#else /* HAVE_LIBLZMA */

static int
xz_config_complete (void)
{
  return 0;
}

static const char *
lzma_message (lzma_ret ret)
{
  switch (ret) {
  case LZMA_OK: return "no error";
  case LZMA_STREAM_END: return "unexpected end of stream";
  case LZMA_MEM_ERROR: return "out of memory";
  case LZMA_MEMLIMIT_ERROR: return "memory limit reached";
  case LZMA_FORMAT_ERROR: return "not in xz format";
  case LZMA_OPTIONS_ERROR: return "unsupported compression options";
  case LZMA_DATA_ERROR: return "the compressed data is corrupt";
  case LZMA_BUF_ERROR: return "the compressed data is truncated";
  case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check type";
  default: return "liblzma error";
  }
}

/* ---- per-connection state ---- */

struct xz_handle;
struct readop;

/* A part of a read that waits for a block being loaded. */
struct waiter {
  struct waiter *next;
  struct readop *op;
  uint64_t src;                 /* offset in the block */
  uint64_t dst;                 /* offset in the read's buffer */
  uint32_t len;
};

/* One compressed block, loading or loaded. */
struct block {
  struct lru_link lru;          /* in h->lru, most recently used first */
  struct xz_handle *h;
  uint64_t uoff, usize;         /* where it is on the disk */
  uint64_t coff, csize;         /* where it is in the file (whole block) */
  lzma_vli unpadded;            /* its unpadded size, from the index */
  lzma_check check;             /* its stream's check type */
  bool ready;
  unsigned char *data;          /* usize bytes, once ready */
  struct waiter *waiters;       /* while loading */
  unsigned char *cbuf;          /* the compressed bytes, while loading */
  uint64_t cdone;               /* of them, read so far */
  /* Set by the worker thread only (the loop reads them after). */
  unsigned char *wout;
  lzma_ret wret;
  const char *wwhat;
};

struct xz_handle {
  lzma_index *idx;
  uint64_t size;                /* uncompressed */
  struct fnext *next;
  struct lru lru;               /* the blocks */
};

/* A client's read (or cache) in progress: done when pending is 0. */
struct readop {
  struct freq *r;
  unsigned char *buf;           /* NULL for cache */
  unsigned pending;
  uint32_t status;              /* the first error, 0 = none */
  char *msg;
};

static void
block_free (struct block *b)
{
  free (b->data);
  payload_free (b->cbuf);
  free (b->wout);
  free (b);
}

/* Drop loaded blocks, least recently used first, while there are too
 * many.  Blocks being loaded stay: reads wait for them.
 */
static void
cache_trim (struct xz_handle *h)
{
  struct block *b = LRU_ENTRY (h->lru.tail, struct block, lru);

  while (b && h->lru.n > max_depth) {
    struct block *prev = LRU_ENTRY (b->lru.prev, struct block, lru);

    if (b->ready) {
      lru_unlink (&h->lru, &b->lru);
      block_free (b);
    }
    b = prev;
  }
}

static void
op_error (struct readop *op, uint32_t status, const char *msg)
{
  if (op->status)
    return;                     /* the first error is the answer */
  op->status = status ? status : HP_EIO;
  op->msg = msg ? strdup (msg) : NULL;
}

/* One part of op is finished. */
static void
op_put (struct readop *op)
{
  struct freq *r = op->r;

  if (--op->pending > 0)
    return;
  if (op->status) {
    freq_reply_error (r, op->status, op->msg);
    free (op->buf);
  }
  else if (op->buf)
    freq_reply (r, op->buf, r->count, 0);
  else
    freq_reply (r, NULL, 0, 0);
  free (op->msg);
  free (op);
}

/* Loading failed: every waiting read gets the error, and the block goes
 * (a later read tries again).
 */
static void
block_fail (struct block *b, uint32_t status, const char *msg)
{
  struct waiter *w, *next;

  nbdkit_error ("xz: the block at uncompressed offset %" PRIu64
                " (compressed offset %" PRIu64 ", %" PRIu64 " bytes): %s",
                b->uoff, b->coff, b->csize, msg);
  lru_unlink (&b->h->lru, &b->lru);
  for (w = b->waiters; w; w = next) {
    next = w->next;
    op_error (w->op, status, msg);
    op_put (w->op);
    free (w);
  }
  block_free (b);
}

/* Runs on a worker thread: decompress b->cbuf into b->wout.  Touches
 * nothing but the block's compressed bytes, sizes and w* fields.
 */
static void
decompress_work (void *arg)
{
  struct block *b = arg;
  lzma_filter filters[LZMA_FILTERS_MAX + 1];
  lzma_block blk;
  size_t in_pos, out_pos = 0, i;
  lzma_ret ret;

  b->wout = NULL;
  b->wret = LZMA_OK;
  b->wwhat = NULL;
  if (b->csize < 8 || b->cbuf[0] == 0) {
    b->wret = LZMA_DATA_ERROR;
    b->wwhat = "the block header is missing";
    return;
  }
  memset (&blk, 0, sizeof blk);
  blk.version = 0;
  blk.check = b->check;
  blk.filters = filters;
  blk.header_size = lzma_block_header_size_decode (b->cbuf[0]);
  if (blk.header_size > b->csize) {
    b->wret = LZMA_DATA_ERROR;
    b->wwhat = "the block header is longer than the block";
    return;
  }
  ret = lzma_block_header_decode (&blk, NULL, b->cbuf);
  if (ret != LZMA_OK) {
    b->wret = ret;
    b->wwhat = "the block header";
    return;
  }
  ret = lzma_block_compressed_size (&blk, b->unpadded);
  if (ret != LZMA_OK ||
      (blk.uncompressed_size != LZMA_VLI_UNKNOWN &&
       blk.uncompressed_size != b->usize)) {
    b->wret = LZMA_DATA_ERROR;
    b->wwhat = "the block header does not match the index";
    goto out;
  }
  blk.uncompressed_size = b->usize;
  b->wout = malloc (b->usize ? b->usize : 1);
  if (!b->wout) {
    b->wret = LZMA_MEM_ERROR;
    b->wwhat = "the uncompressed block";
    goto out;
  }
  in_pos = blk.header_size;
  ret = lzma_block_buffer_decode (&blk, NULL, b->cbuf, &in_pos, b->csize,
                                  b->wout, &out_pos, b->usize);
  if (ret == LZMA_OK && (out_pos != b->usize || in_pos != b->csize))
    ret = LZMA_DATA_ERROR;
  if (ret != LZMA_OK) {
    b->wret = ret;
    b->wwhat = "decompressing";
    free (b->wout);
    b->wout = NULL;
  }
 out:
  for (i = 0; filters[i].id != LZMA_VLI_UNKNOWN; ++i)
    free (filters[i].options);
}

/* Back on the loop: the block is ready (or not). */
static void
decompress_done (void *arg)
{
  struct block *b = arg;
  struct waiter *w, *next;

  payload_free (b->cbuf);
  b->cbuf = NULL;
  if (b->wret != LZMA_OK) {
    char msg[256];

    snprintf (msg, sizeof msg, "%s: %s", b->wwhat, lzma_message (b->wret));
    block_fail (b, b->wret == LZMA_MEM_ERROR ? HP_ENOMEM : HP_EIO, msg);
    return;
  }
  b->data = b->wout;
  b->wout = NULL;
  b->ready = true;
  nbdkit_debug ("xz: decompressed the block at uncompressed offset %" PRIu64
                " (%" PRIu64 " bytes)", b->uoff, b->usize);
  for (w = b->waiters; w; w = next) {
    next = w->next;
    if (w->op->buf)
      memcpy (w->op->buf + w->dst, b->data + w->src, w->len);
    op_put (w->op);
    free (w);
  }
  b->waiters = NULL;
  cache_trim (b->h);
}

static void read_chunk (struct block *b);

static void
on_chunk (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct block *b = opaque;
  uint64_t want = b->csize - b->cdone < CHUNK ? b->csize - b->cdone : CHUNK;

  if (!reply || reply->status) {
    char msg[256];

    snprintf (msg, sizeof msg, "reading the compressed data: %s",
              reply && payload && len ? (const char *) payload : "error");
    payload_free (payload);
    block_fail (b, reply && reply->status ? reply->status : HP_EIO, msg);
    return;
  }
  if (len != want) {
    payload_free (payload);
    block_fail (b, HP_EIO, "a short read from the layer below");
    return;
  }
  if (!b->cbuf && want == b->csize)
    b->cbuf = payload;          /* all of it at once: keep the buffer */
  else {
    if (!b->cbuf && !(b->cbuf = malloc (b->csize))) {
      payload_free (payload);
      block_fail (b, HP_ENOMEM, "out of memory");
      return;
    }
    memcpy (b->cbuf + b->cdone, payload, len);
    payload_free (payload);
  }
  b->cdone += len;
  if (b->cdone < b->csize)
    read_chunk (b);
  else
    worker_submit (decompress_work, decompress_done, b);
}

static void
read_chunk (struct block *b)
{
  uint64_t n = b->csize - b->cdone < CHUNK ? b->csize - b->cdone : CHUNK;

  fnext_request (b->h->next, HP_PREAD, 0, b->coff + b->cdone, (uint32_t) n,
                 NULL, on_chunk, b);
}

/* The block holding disk offset pos: cached, loading, or started now.
 * NULL (with *status set) if there is none or no memory.
 */
static struct block *
block_get (struct xz_handle *h, uint64_t pos, uint32_t *status)
{
  lzma_index_iter it;
  struct block *b;

  for (b = LRU_ENTRY (h->lru.head, struct block, lru); b;
       b = LRU_ENTRY (b->lru.next, struct block, lru))
    if (pos >= b->uoff && pos - b->uoff < b->usize) {
      lru_touch (&h->lru, &b->lru);
      return b;
    }

  lzma_index_iter_init (&it, h->idx);
  if (lzma_index_iter_locate (&it, pos)) {
    *status = HP_EIO;
    return NULL;
  }
  b = calloc (1, sizeof *b);
  if (!b) {
    *status = HP_ENOMEM;
    return NULL;
  }
  b->h = h;
  b->uoff = it.block.uncompressed_file_offset;
  b->usize = it.block.uncompressed_size;
  b->coff = it.block.compressed_file_offset;
  b->csize = it.block.total_size;
  b->unpadded = it.block.unpadded_size;
  b->check = it.stream.flags->check;
  lru_push (&h->lru, &b->lru);
  cache_trim (h);
  read_chunk (b);
  return b;
}

/* pread and cache: gather the blocks of [offset, offset+count). */
static void
xz_read (void *handle, struct freq *r)
{
  struct xz_handle *h = handle;
  struct readop *op;
  uint64_t pos = r->offset, end = r->offset + r->count;

  if (r->offset > h->size || r->count > h->size - r->offset) {
    freq_reply_error (r, HP_EINVAL, "the read goes beyond the end of the "
                      "uncompressed disk");
    return;
  }
  op = calloc (1, sizeof *op);
  if (!op || (r->type == HP_PREAD && !(op->buf = malloc (r->count ?
                                                          r->count : 1)))) {
    free (op);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  op->r = r;
  op->pending = 1;              /* ours, until every part is asked for */
  while (pos < end) {
    uint32_t status = 0;
    struct block *b = block_get (h, pos, &status);
    uint64_t bend, len;

    if (!b) {
      op_error (op, status, status == HP_ENOMEM ? "out of memory"
                : "the offset is not in the xz index");
      break;
    }
    bend = b->uoff + b->usize;
    len = (end < bend ? end : bend) - pos;
    if (b->ready) {
      if (op->buf)
        memcpy (op->buf + (pos - r->offset), b->data + (pos - b->uoff), len);
    }
    else {
      struct waiter *w = malloc (sizeof *w);

      if (!w) {
        op_error (op, HP_ENOMEM, "out of memory");
        break;
      }
      w->op = op;
      w->src = pos - b->uoff;
      w->dst = pos - r->offset;
      w->len = (uint32_t) len;
      w->next = b->waiters;
      b->waiters = w;
      op->pending++;
    }
    pos += len;
  }
  op_put (op);
}

static void
xz_readonly (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EPERM, "the xz filter is read-only");
}

static void
xz_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* nothing is ever written */
}

static void
xz_extents (void *handle, struct freq *r)
{
  unsigned char *ext = malloc (HP_EXTENT_SIZE);

  if (!ext) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  hp_encode_extent (ext, r->count, 0);  /* all data */
  freq_reply (r, ext, HP_EXTENT_SIZE, 0);
}

static void
xz_close (void *handle)
{
  struct xz_handle *h = handle;
  struct block *b, *next;

  /* Every block's loading is done by now: each had a waiting request,
   * and close comes once no request is in flight.
   */
  for (b = LRU_ENTRY (h->lru.head, struct block, lru); b; b = next) {
    next = LRU_ENTRY (b->lru.next, struct block, lru);
    block_free (b);
  }
  lzma_index_end (h->idx, NULL);
  free (h);
}

/* ---- opening: walking the streams from the end ---- */

struct walk {
  struct fopen *o;
  uint64_t file_size;
  uint64_t pos;                 /* the file before pos is still to walk */
  uint64_t padding;             /* stream padding seen after pos */
  lzma_stream_flags footer;     /* of the stream being read */
  lzma_index *cur;              /* its index */
  lzma_index *later;            /* the streams after it, joined */
  unsigned streams;
  /* The read in progress. */
  unsigned char *buf;
  uint64_t off, len, done;
  void (*then) (struct walk *w);
};

static void
walk_free (struct walk *w)
{
  if (w->cur)
    lzma_index_end (w->cur, NULL);
  if (w->later)
    lzma_index_end (w->later, NULL);
  free (w->buf);
  free (w);
}

static void
walk_fail (struct walk *w, uint32_t status, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
walk_fail (struct walk *w, uint32_t status, const char *fmt, ...)
{
  char msg[512];
  va_list args;

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  nbdkit_error ("xz filter: %s", msg);
  fopen_fail (w->o, status, msg);
  walk_free (w);
}

static void walk_read_more (struct walk *w);

static void
on_walk_read (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct walk *w = opaque;

  if (!reply || reply->status) {
    char why[256];

    snprintf (why, sizeof why, "%s",
              reply && payload && len ? (const char *) payload : "error");
    payload_free (payload);
    walk_fail (w, HP_EIO, "could not read the xz file at offset %" PRIu64
               ": %s", w->off + w->done, why);
    return;
  }
  if (len != (w->len - w->done < CHUNK ? w->len - w->done : CHUNK)) {
    payload_free (payload);
    walk_fail (w, HP_EIO, "a short read of the xz file at offset %" PRIu64,
               w->off + w->done);
    return;
  }
  memcpy (w->buf + w->done, payload, len);
  payload_free (payload);
  w->done += len;
  if (w->done < w->len)
    walk_read_more (w);
  else
    w->then (w);
}

static void
walk_read_more (struct walk *w)
{
  uint64_t n = w->len - w->done < CHUNK ? w->len - w->done : CHUNK;

  fnext_request (w->o->next, HP_PREAD, 0, w->off + w->done, (uint32_t) n,
                 NULL, on_walk_read, w);
}

/* Read [off, off+len) of the file into w->buf, then call then. */
static void
walk_read (struct walk *w, uint64_t off, uint64_t len,
           void (*then) (struct walk *w))
{
  free (w->buf);
  w->buf = malloc (len ? len : 1);
  if (!w->buf) {
    walk_fail (w, HP_ENOMEM, "out of memory reading %" PRIu64 " bytes of "
               "the xz file", len);
    return;
  }
  w->off = off;
  w->len = len;
  w->done = 0;
  w->then = then;
  walk_read_more (w);
}

static void walk_tail (struct walk *w);

/* All streams are read: check the blocks and open. */
static void
walk_finish (struct walk *w)
{
  struct fopen *o = w->o;
  struct xz_handle *h;
  lzma_index_iter it;
  uint64_t biggest = 0, biggest_c = 0, blocks = 0;
  uint64_t max_c = (uint64_t) max_block + (uint64_t) max_block / 64 + 65536;

  lzma_index_iter_init (&it, w->later);
  while (!lzma_index_iter_next (&it, LZMA_INDEX_ITER_BLOCK)) {
    blocks++;
    if (it.block.uncompressed_size > biggest)
      biggest = it.block.uncompressed_size;
    if (it.block.total_size > biggest_c)
      biggest_c = it.block.total_size;
  }
  if (biggest > (uint64_t) max_block) {
    walk_fail (w, HP_EINVAL, "the xz file has a block of %" PRIu64
               " bytes (uncompressed), more than xz-max-block=%" PRIi64
               ": recompress it with smaller blocks (e.g. xz "
               "--block-size=16MiB) or raise xz-max-block",
               biggest, max_block);
    return;
  }
  if (biggest_c > max_c) {
    walk_fail (w, HP_EINVAL, "the xz file has a block of %" PRIu64
               " compressed bytes, more than xz-max-block=%" PRIi64
               " allows: recompress it with smaller blocks (e.g. xz "
               "--block-size=16MiB)", biggest_c, max_block);
    return;
  }
  h = calloc (1, sizeof *h);
  if (!h) {
    walk_fail (w, HP_ENOMEM, "out of memory");
    return;
  }
  h->idx = w->later;
  w->later = NULL;
  h->size = lzma_index_uncompressed_size (h->idx);
  h->next = o->next;
  nbdkit_debug ("xz: %u stream(s), %" PRIu64 " block(s), largest %" PRIu64
                " bytes, uncompressed size %" PRIu64,
                w->streams, blocks, biggest, h->size);

  o->caps->size = h->size;
  o->caps->can_write = false;
  o->caps->can_flush = false;
  o->caps->can_trim = false;
  o->caps->can_zero = false;
  o->caps->can_fast_zero = false;
  o->caps->can_fua = false;
  o->caps->can_extents = false;
  o->caps->can_cache = true;    /* loads the blocks into the cache */
  o->caps->can_multi_conn = true;
  o->caps->block_min = o->caps->block_pref = o->caps->block_max = 0;
  fopen_done (o, h);
  walk_free (w);
}

/* The stream header of the stream whose index we have. */
static void
on_stream_header (struct walk *w)
{
  lzma_stream_flags header;
  lzma_ret ret;

  ret = lzma_stream_header_decode (&header, w->buf);
  if (ret != LZMA_OK) {
    walk_fail (w, HP_EINVAL, "the xz stream header at offset %" PRIu64
               " is damaged: %s", w->off, lzma_message (ret));
    return;
  }
  if (lzma_stream_flags_compare (&header, &w->footer) != LZMA_OK) {
    walk_fail (w, HP_EINVAL, "the xz stream at offset %" PRIu64 " has a "
               "header and a footer that do not agree", w->off);
    return;
  }
  if (lzma_index_stream_flags (w->cur, &w->footer) != LZMA_OK ||
      lzma_index_stream_padding (w->cur, w->padding) != LZMA_OK) {
    walk_fail (w, HP_EINVAL, "the xz stream at offset %" PRIu64 " is "
               "damaged (bad flags or padding)", w->off);
    return;
  }
  if (w->later) {
    ret = lzma_index_cat (w->cur, w->later, NULL);
    if (ret != LZMA_OK) {
      walk_fail (w, HP_EINVAL, "the xz file is too large to index: %s",
                 lzma_message (ret));
      return;
    }
  }
  w->later = w->cur;
  w->cur = NULL;
  w->streams++;
  w->pos = w->off;
  w->padding = 0;
  if (w->pos == 0)
    walk_finish (w);
  else
    walk_tail (w);
}

static void
on_index (struct walk *w)
{
  uint64_t memlimit = UINT64_MAX;
  size_t in_pos = 0;
  lzma_vli stream_size;
  lzma_ret ret;
  uint64_t footer_at = w->off + w->len;

  ret = lzma_index_buffer_decode (&w->cur, &memlimit, NULL, w->buf, &in_pos,
                                  w->len);
  if (ret != LZMA_OK || in_pos != w->len) {
    if (ret == LZMA_OK) {
      lzma_index_end (w->cur, NULL);
      w->cur = NULL;
      ret = LZMA_DATA_ERROR;
    }
    walk_fail (w, HP_EINVAL, "the xz index at offset %" PRIu64 " is "
               "damaged: %s", w->off, lzma_message (ret));
    return;
  }
  stream_size = lzma_index_stream_size (w->cur);
  if (stream_size > footer_at + LZMA_STREAM_HEADER_SIZE) {
    walk_fail (w, HP_EINVAL, "the xz index at offset %" PRIu64 " describes "
               "a stream larger than the file (%" PRIu64 " bytes)", w->off,
               (uint64_t) stream_size);
    return;
  }
  walk_read (w, footer_at + LZMA_STREAM_HEADER_SIZE - stream_size,
             XZ_HEADER_SIZE, on_stream_header);
}

/* The end of the unwalked part: stream padding, then a footer. */
static void
on_tail (struct walk *w)
{
  uint64_t start = w->off, p = w->pos;
  const unsigned char *fb;
  lzma_ret ret;

  while (p - start >= 4 && memcmp (w->buf + (p - 4 - start),
                                   "\0\0\0\0", 4) == 0)
    p -= 4;
  w->padding += w->pos - p;
  w->pos = p;
  if (p < XZ_MIN_FILE) {
    walk_fail (w, HP_EINVAL, "not an xz file: no xz stream ends at offset "
               "%" PRIu64 " (the file is too short or damaged)", p);
    return;
  }
  if (p - start < LZMA_STREAM_HEADER_SIZE) {
    walk_tail (w);              /* the footer is before this read */
    return;
  }
  fb = w->buf + (p - LZMA_STREAM_HEADER_SIZE - start);
  ret = lzma_stream_footer_decode (&w->footer, fb);
  if (ret != LZMA_OK) {
    walk_fail (w, HP_EINVAL, "%s at offset %" PRIu64 ": %s",
               ret == LZMA_FORMAT_ERROR ? "not an xz file: there is no xz "
               "stream footer" : "the xz stream footer is damaged",
               p - LZMA_STREAM_HEADER_SIZE, lzma_message (ret));
    return;
  }
  if (w->footer.backward_size > MAX_INDEX_SIZE) {
    walk_fail (w, HP_EINVAL, "the xz index (%" PRIu64 " bytes) is too "
               "large: recompress the file with bigger blocks",
               (uint64_t) w->footer.backward_size);
    return;
  }
  if (w->footer.backward_size + 2 * LZMA_STREAM_HEADER_SIZE > p) {
    walk_fail (w, HP_EINVAL, "the xz stream footer at offset %" PRIu64
               " points before the start of the file",
               p - LZMA_STREAM_HEADER_SIZE);
    return;
  }
  walk_read (w, p - LZMA_STREAM_HEADER_SIZE - w->footer.backward_size,
             w->footer.backward_size, on_index);
}

static void
walk_tail (struct walk *w)
{
  uint64_t n = w->pos < TAIL_READ ? w->pos : TAIL_READ;

  walk_read (w, w->pos - n, n, on_tail);
}

/* The start of the file: is it xz at all? */
static void
on_magic (struct walk *w)
{
  lzma_stream_flags flags;
  lzma_ret ret = lzma_stream_header_decode (&flags, w->buf);

  if (ret != LZMA_OK) {
    walk_fail (w, HP_EINVAL, "%s", ret == LZMA_FORMAT_ERROR
               ? "not an xz file (it does not start with the xz magic "
               "bytes)"
               : "the xz stream header at the start of the file is damaged "
               "or uses unsupported options");
    return;
  }
  w->pos = w->file_size;
  walk_tail (w);
}

static void
xz_open (struct fopen *o)
{
  struct walk *w = calloc (1, sizeof *w);

  if (!w) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  w->o = o;
  w->file_size = o->caps->size;
  if (w->file_size < XZ_MIN_FILE) {
    walk_fail (w, HP_EINVAL, "not an xz file: %" PRIu64 " bytes is too "
               "short", w->file_size);
    return;
  }
  walk_read (w, 0, XZ_HEADER_SIZE, on_magic);
}

#endif /* HAVE_LIBLZMA */

static const char *const keys[] = {
  "xz-max-block", "xz-max-depth", "maxblock", "maxdepth", NULL
};

const struct filter xz_filter = {
  .name = "xz",
  .description = "serve the uncompressed contents of an xz file "
                 "(read-only)",
  .config_help =
    "xz-max-block=SIZE   refuse files with bigger blocks (default 512M)\n"
    "xz-max-depth=N      blocks kept uncompressed per connection "
    "(default 8)",
  .keys = keys,
  .config = xz_config,
  .config_complete = xz_config_complete,
#ifdef HAVE_LIBLZMA
  .readonly_below = true,
  .open = xz_open,
  .close = xz_close,
  .pread = xz_read,
  .pwrite = xz_readonly,
  .flush = xz_flush,
  .trim = xz_readonly,
  .zero = xz_readonly,
  .cache = xz_read,
  .extents = xz_extents,
#endif
};
