/* filters/qcow2dec/qcow2dec.c: serve a qcow2 image, read-only, as a
 * raw disk (nbdkit-qcow2dec-filter(1)).  The filter glue: the format
 * itself (header, L1/L2 entries, bounds checks, decompression) is in
 * qcow2.c, as pure functions.
 *
 * Opening an export reads the header from below (fnext_request), then
 * the part of the L1 table that maps the virtual size, and keeps it.
 * L2 tables are read on demand into a per-connection cache of at most
 * qcow2dec-l2-cache tables (least recently used first out), converted
 * to host byte order on a worker thread; every request that wants a
 * table being loaded waits for the same load.
 *
 * A read walks its clusters: unallocated and zero clusters are left as
 * zeros, data clusters are read from below (neighbours that are
 * contiguous in the file in one read), compressed clusters are read
 * and then decompressed on a worker thread (worker_submit), never on
 * the loop.  A read is answered once all its parts are in, or with
 * the first error.  Extents come from the L1 and L2 entries.  Writes
 * of every kind are refused: the export is read-only.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../filter.h"
#include "../lru.h"
#include "qcow2.h"

/* Tables kept per connection unless qcow2dec-l2-cache says otherwise:
 * with 64 KiB clusters each maps 512 MiB of the disk.
 */
#define DEFAULT_L2_CACHE 64
/* The most one read from below asks for: well under HP_MAX_DATA. */
#define CHUNK (8u * 1024 * 1024)
/* The header is read from the first bytes of the image: enough for the
 * fixed header, its extensions and usually the backing file name.
 */
#define HEADER_READ 65536

static unsigned l2_cache = DEFAULT_L2_CACHE;

static int
qcow2dec_config (const char *key, const char *value)
{
  /* qcow2dec-l2-cache */
  if (fparse_uint (key, value, 1000000, &l2_cache) == -1)
    return -1;
  if (l2_cache == 0) {
    nbdkit_error ("%s=%s: the cache must hold at least 1 L2 table", key,
                  value);
    return -1;
  }
  return 0;
}

/* ---- per-connection state ---- */

struct qh;

/* Someone waiting for an L2 table: resume runs once it is loaded
 * (status 0) or failed.
 */
struct l2wait {
  struct l2wait *next;
  void (*resume) (struct l2wait *w, uint32_t status, const char *msg);
};

struct l2table {
  struct lru_link lru;          /* in h->lru, most recently used first */
  struct qh *h;
  uint64_t l1_index;
  uint64_t offset;              /* in the image */
  bool ready;
  uint64_t *entries;            /* host order, once ready */
  void *raw;                    /* as read (a payload), while converted */
  uint32_t raw_len;
  struct l2wait *waiters;       /* while loading */
};

struct qh {
  struct qcow2_header hdr;
  uint64_t file_size;
  uint64_t *l1;                 /* hdr.l1_needed entries, host order */
  struct fnext *next;
  struct lru lru;               /* the L2 tables */
};

static void
table_free (struct l2table *t)
{
  free (t->entries);
  free (t);
}

/* Drop loaded tables, least recently used first, while there are too
 * many.  Tables being loaded stay: requests wait for them.
 */
static void
cache_trim (struct qh *h)
{
  struct l2table *t = LRU_ENTRY (h->lru.tail, struct l2table, lru);

  while (t && h->lru.n > l2_cache) {
    struct l2table *prev = LRU_ENTRY (t->lru.prev, struct l2table, lru);

    if (t->ready) {
      lru_unlink (&h->lru, &t->lru);
      table_free (t);
    }
    t = prev;
  }
}

static void
table_finish (struct l2table *t, uint32_t status, const char *msg)
{
  struct l2wait *w = t->waiters, *next;
  struct qh *h = t->h;

  t->waiters = NULL;
  if (status) {
    nbdkit_error ("qcow2dec: the L2 table at offset %" PRIu64 ": %s",
                  t->offset, msg);
    lru_unlink (&h->lru, &t->lru);
    table_free (t);
  }
  else
    t->ready = true;
  /* The waiters use the table before the cache is trimmed, so that
   * each makes progress however small the cache.  They find it again
   * by its L1 index: none holds a pointer to it.
   */
  for (; w; w = next) {
    next = w->next;
    w->resume (w, status, msg);
  }
  cache_trim (h);
}

/* Runs on a worker thread: the table's entries in host order (a big
 * table is 2 MiB, too much to convert on the loop).  Touches only the
 * table's raw bytes and entries.
 */
static void
table_work (void *arg)
{
  struct l2table *t = arg;
  const unsigned char *p = t->raw;
  uint64_t i;

  t->entries = malloc (t->raw_len);
  if (!t->entries)
    return;
  for (i = 0; i < t->raw_len / 8; ++i)
    t->entries[i] = qcow2_be64 (p + i * 8);
}

static void
table_done (void *arg)
{
  struct l2table *t = arg;

  payload_free (t->raw);
  t->raw = NULL;
  if (!t->entries)
    table_finish (t, HP_ENOMEM, "out of memory");
  else
    table_finish (t, 0, NULL);
}

static void
on_table (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct l2table *t = opaque;

  if (!reply || reply->status || len != t->h->hdr.cluster_size) {
    payload_free (payload);
    table_finish (t, reply && reply->status ? reply->status : HP_EIO,
                  "could not read it from the layer below");
    return;
  }
  t->raw = payload;
  t->raw_len = len;
  worker_submit (table_work, table_done, t);
}

/* The L2 table of L1 entry l1_index, at l2_offset: cached, loading, or
 * started now (NULL if there is no memory).
 */
static struct l2table *
table_get (struct qh *h, uint64_t l1_index, uint64_t l2_offset)
{
  struct l2table *t;

  for (t = LRU_ENTRY (h->lru.head, struct l2table, lru); t;
       t = LRU_ENTRY (t->lru.next, struct l2table, lru))
    if (t->l1_index == l1_index) {
      lru_touch (&h->lru, &t->lru);
      return t;
    }
  t = calloc (1, sizeof *t);
  if (!t)
    return NULL;
  t->h = h;
  t->l1_index = l1_index;
  t->offset = l2_offset;
  lru_push (&h->lru, &t->lru);
  cache_trim (h);
  fnext_request (h->next, HP_PREAD, 0, l2_offset, (uint32_t)
                 h->hdr.cluster_size, NULL, on_table, t);
  return t;
}

/* The L2 table mapping virtual offset pos: 1 with *t (perhaps still
 * loading), 0 if that part of the disk has no L2 table, -1 with a
 * status and message.
 */
static int
lookup (struct qh *h, uint64_t pos, struct l2table **t, uint32_t *status,
        char *msg, size_t msglen)
{
  uint64_t l1_index = pos >> (h->hdr.cluster_bits + h->hdr.l2_bits);
  uint64_t l2_offset;

  if (qcow2_decode_l1 (&h->hdr, h->file_size, h->l1[l1_index], &l2_offset,
                       msg, msglen) == -1) {
    nbdkit_error ("qcow2dec: %s", msg);
    *status = HP_EIO;
    return -1;
  }
  if (l2_offset == 0)
    return 0;
  *t = table_get (h, l1_index, l2_offset);
  if (!*t) {
    *status = HP_ENOMEM;
    snprintf (msg, msglen, "out of memory");
    return -1;
  }
  return 1;
}

/* ---- reads ---- */

struct readop {
  struct l2wait wait;           /* first: the waiter is the op */
  struct freq *r;
  struct qh *h;
  unsigned char *buf;
  uint64_t pos, end;            /* still to resolve */
  unsigned pending;             /* parts in flight, +1 while resolving */
  uint32_t status;              /* the first error, 0 = none */
  char *msg;
  /* Data clusters resolved but not yet asked for, to read at once. */
  uint64_t run_src, run_dst, run_len;
};

/* One data read from below. */
struct dread {
  struct readop *op;
  uint64_t dst;
  uint32_t len;
};

/* One compressed cluster: read, then decompressed on a worker. */
struct cjob {
  struct readop *op;
  struct qcow2_header hdr;      /* a copy, for the worker */
  uint64_t coff, csize;
  uint64_t src, dst, len;       /* what of the cluster the read wants */
  void *cbuf;                   /* the compressed bytes (a payload) */
  unsigned char *out;
  int rc;                       /* set by the worker */
  char err[256];
};

static void
op_error (struct readop *op, uint32_t status, const char *msg)
{
  if (op->status)
    return;                     /* the first error is the answer */
  op->status = status ? status : HP_EIO;
  op->msg = msg ? strdup (msg) : NULL;
}

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
  else
    freq_reply (r, op->buf, r->count, 0);
  free (op->msg);
  free (op);
}

static void
on_data (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct dread *d = opaque;
  struct readop *op = d->op;

  if (!reply || reply->status)
    op_error (op, reply && reply->status ? reply->status : HP_EIO,
              reply && payload && len ? (const char *) payload :
              "could not read a data cluster from the layer below");
  else if (len != d->len)
    op_error (op, HP_EIO, "a short read from the layer below");
  else
    memcpy (op->buf + d->dst, payload, len);
  payload_free (payload);
  free (d);
  op_put (op);
}

/* Ask for the run of data clusters gathered so far. */
static void
run_flush (struct readop *op)
{
  struct dread *d;

  if (op->run_len == 0)
    return;
  d = malloc (sizeof *d);
  if (!d)
    op_error (op, HP_ENOMEM, "out of memory");
  else {
    d->op = op;
    d->dst = op->run_dst;
    d->len = (uint32_t) op->run_len;
    op->pending++;
    fnext_request (op->h->next, HP_PREAD, 0, op->run_src, d->len, NULL,
                   on_data, d);
  }
  op->run_len = 0;
}

static void
run_add (struct readop *op, uint64_t src, uint64_t dst, uint64_t len)
{
  if (op->run_len && op->run_src + op->run_len == src &&
      op->run_dst + op->run_len == dst && op->run_len + len <= CHUNK) {
    op->run_len += len;
    return;
  }
  run_flush (op);
  op->run_src = src;
  op->run_dst = dst;
  op->run_len = len;
}

/* Runs on a worker thread: touches only the job. */
static void
decompress_work (void *arg)
{
  struct cjob *j = arg;

  j->out = malloc (j->hdr.cluster_size);
  if (!j->out) {
    j->rc = -1;
    snprintf (j->err, sizeof j->err, "out of memory");
    return;
  }
  j->rc = qcow2_decompress (&j->hdr, j->cbuf, j->csize, j->out, j->err,
                            sizeof j->err);
}

static void
decompress_done (void *arg)
{
  struct cjob *j = arg;
  struct readop *op = j->op;

  if (j->rc == -1) {
    nbdkit_error ("qcow2dec: the compressed cluster at offset %" PRIu64
                  " (%" PRIu64 " bytes): %s", j->coff, j->csize, j->err);
    op_error (op, j->out ? HP_EIO : HP_ENOMEM, j->err);
  }
  else
    memcpy (op->buf + j->dst, j->out + j->src, j->len);
  payload_free (j->cbuf);
  free (j->out);
  free (j);
  op_put (op);
}

static void
on_compressed (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct cjob *j = opaque;
  struct readop *op = j->op;

  if (!reply || reply->status || len != j->csize) {
    op_error (op, reply && reply->status ? reply->status : HP_EIO,
              "could not read a compressed cluster from the layer below");
    payload_free (payload);
    free (j);
    op_put (op);
    return;
  }
  j->cbuf = payload;
  worker_submit (decompress_work, decompress_done, j);
}

static void
compressed_add (struct readop *op, const struct qcow2_cluster *c,
                uint64_t src, uint64_t dst, uint64_t len)
{
  struct cjob *j = calloc (1, sizeof *j);

  if (!j) {
    op_error (op, HP_ENOMEM, "out of memory");
    return;
  }
  j->op = op;
  j->hdr = op->h->hdr;
  j->coff = c->offset;
  j->csize = c->csize;
  j->src = src;
  j->dst = dst;
  j->len = len;
  op->pending++;
  fnext_request (op->h->next, HP_PREAD, 0, c->offset, (uint32_t) c->csize,
                 NULL, on_compressed, j);
}

static void read_resolve (struct readop *op);

/* A read of many small clusters (32 MiB of 512-byte clusters is 65536
 * of them, each perhaps a read from below) is resolved a slice at a
 * time, each on its own turn of the loop: a no-op job on the worker
 * pool brings the next slice back on the loop.
 */
#define CLUSTERS_PER_TURN 1024

static void
nop_work (void *arg)
{
}

static void
read_continue (void *arg)
{
  read_resolve (arg);
}

/* Resolve the clusters of the read from op->pos on, until the end, an
 * error, or an L2 table that is still loading (then resumed by it).
 */
static void
read_resolve (struct readop *op)
{
  struct qh *h = op->h;
  uint64_t cs = h->hdr.cluster_size;
  unsigned done = 0;
  char msg[256];

  while (op->pos < op->end && !op->status) {
    uint64_t in = op->pos & (cs - 1);
    uint64_t len = cs - in < op->end - op->pos ? cs - in : op->end - op->pos;
    uint64_t dst = op->pos - op->r->offset;
    struct l2table *t = NULL;
    struct qcow2_cluster c;
    uint32_t status = 0;
    uint64_t l2_index;
    int rc = lookup (h, op->pos, &t, &status, msg, sizeof msg);

    if (rc == -1) {
      op_error (op, status, msg);
      break;
    }
    if (rc == 1 && !t->ready) {
      run_flush (op);
      op->wait.next = t->waiters;
      t->waiters = &op->wait;
      return;
    }
    if (++done > CLUSTERS_PER_TURN) {
      run_flush (op);
      worker_submit (nop_work, read_continue, op);
      return;
    }
    c.kind = QCOW2_UNALLOCATED;         /* no L2 table */
    if (rc == 1) {
      l2_index = (op->pos >> h->hdr.cluster_bits) &
        ((UINT64_C(1) << h->hdr.l2_bits) - 1);
      if (qcow2_decode_l2 (&h->hdr, h->file_size, t->entries[l2_index], &c,
                           msg, sizeof msg) == -1) {
        nbdkit_error ("qcow2dec: %s", msg);
        op_error (op, HP_EIO, msg);
        break;
      }
    }
    switch (c.kind) {
    case QCOW2_DATA:
      run_add (op, c.offset + in, dst, len);
      break;
    case QCOW2_COMPRESSED:
      run_flush (op);
      compressed_add (op, &c, in, dst, len);
      break;
    case QCOW2_UNALLOCATED:
    case QCOW2_ZERO:
      memset (op->buf + dst, 0, len);
      break;
    }
    op->pos += len;
  }
  run_flush (op);
  op_put (op);                  /* the resolver's part */
}

static void
read_resume (struct l2wait *w, uint32_t status, const char *msg)
{
  struct readop *op = (struct readop *) w;

  if (status) {
    op_error (op, status, msg);
    op_put (op);
    return;
  }
  read_resolve (op);
}

static void
qcow2dec_pread (void *handle, struct freq *r)
{
  struct qh *h = handle;
  struct readop *op;

  if (r->offset > h->hdr.size || r->count > h->hdr.size - r->offset) {
    freq_reply_error (r, HP_EINVAL, "the read goes beyond the end of the "
                      "disk");
    return;
  }
  op = calloc (1, sizeof *op);
  /* Not zeroed: every part is written, as zeros or data, or the read
   * fails.
   */
  if (!op || !(op->buf = malloc (r->count ? r->count : 1))) {
    free (op);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  op->wait.resume = read_resume;
  op->r = r;
  op->h = h;
  op->pos = r->offset;
  op->end = r->offset + r->count;
  op->pending = 1;
  read_resolve (op);
}

/* ---- extents ---- */

struct extop {
  struct l2wait wait;           /* first: the waiter is the op */
  struct freq *r;
  struct qh *h;
  uint64_t pos, end;
  unsigned char *ext;           /* encoded so far */
  size_t n, alloc;
  uint64_t cur_len;             /* the extent being built */
  uint32_t cur_type;
};

static void
ext_free (struct extop *e)
{
  free (e->ext);
  free (e);
}

/* Add len bytes of type to the extents; false if out of memory. */
static bool
ext_add (struct extop *e, uint64_t len, uint32_t type)
{
  if (e->cur_len && e->cur_type == type) {
    e->cur_len += len;
    return true;
  }
  if (e->cur_len) {
    if (e->n == e->alloc) {
      size_t alloc = e->alloc ? e->alloc * 2 : 16;
      unsigned char *p = realloc (e->ext, alloc * HP_EXTENT_SIZE);

      if (!p)
        return false;
      e->ext = p;
      e->alloc = alloc;
    }
    hp_encode_extent (e->ext + e->n * HP_EXTENT_SIZE, e->cur_len,
                      e->cur_type);
    e->n++;
  }
  e->cur_len = len;
  e->cur_type = type;
  return true;
}

static void
ext_reply (struct extop *e)
{
  if (!ext_add (e, 0, UINT32_MAX)) {    /* push the last one */
    freq_reply_error (e->r, HP_ENOMEM, "out of memory");
    ext_free (e);
    return;
  }
  if (e->r->flags & HP_FLAG_REQ_ONE)
    e->n = 1;
  freq_reply (e->r, e->ext, (uint32_t) (e->n * HP_EXTENT_SIZE), 0);
  e->ext = NULL;
  ext_free (e);
}

/* Describe from e->pos on: whole regions without an L2 table, then at
 * most one table's clusters (loaded first if need be), then answer.
 */
static void
ext_resolve (struct extop *e)
{
  struct qh *h = e->h;
  uint64_t cs = h->hdr.cluster_size;
  uint64_t cover = UINT64_C(1) << (h->hdr.cluster_bits + h->hdr.l2_bits);
  char msg[256];

  while (e->pos < e->end) {
    uint64_t tend = (e->pos | (cover - 1)) + 1;  /* this table's end */
    struct l2table *t = NULL;
    uint32_t status = 0;
    int rc = lookup (h, e->pos, &t, &status, msg, sizeof msg);

    if (tend > e->end)
      tend = e->end;
    if (rc == -1) {
      freq_reply_error (e->r, status, msg);     /* lookup logged it */
      ext_free (e);
      return;
    }
    if (rc == 0) {
      if (!ext_add (e, tend - e->pos, HP_EXTENT_HOLE | HP_EXTENT_ZERO))
        goto nomem;
      e->pos = tend;
      continue;
    }
    if (!t->ready) {
      e->wait.next = t->waiters;
      t->waiters = &e->wait;
      return;
    }
    while (e->pos < tend) {
      uint64_t in = e->pos & (cs - 1);
      uint64_t len = cs - in < tend - e->pos ? cs - in : tend - e->pos;
      uint64_t l2_index = (e->pos >> h->hdr.cluster_bits) &
        ((UINT64_C(1) << h->hdr.l2_bits) - 1);
      struct qcow2_cluster c;

      if (qcow2_decode_l2 (&h->hdr, h->file_size, t->entries[l2_index], &c,
                           msg, sizeof msg) == -1) {
        nbdkit_error ("qcow2dec: %s", msg);
        freq_reply_error (e->r, HP_EIO, msg);
        ext_free (e);
        return;
      }
      if (!ext_add (e, len, c.kind == QCOW2_UNALLOCATED ||
                    c.kind == QCOW2_ZERO ?
                    HP_EXTENT_HOLE | HP_EXTENT_ZERO : 0))
        goto nomem;
      e->pos += len;
    }
    break;                      /* one table per request is enough */
  }
  ext_reply (e);
  return;

 nomem:
  freq_reply_error (e->r, HP_ENOMEM, "out of memory");
  ext_free (e);
}

static void
ext_resume (struct l2wait *w, uint32_t status, const char *msg)
{
  struct extop *e = (struct extop *) w;

  if (status) {
    freq_reply_error (e->r, status, msg);
    ext_free (e);
    return;
  }
  ext_resolve (e);
}

static void
qcow2dec_extents (void *handle, struct freq *r)
{
  struct qh *h = handle;
  struct extop *e;

  if (r->count == 0 || r->offset >= h->hdr.size ||
      r->count > h->hdr.size - r->offset) {
    freq_reply_error (r, HP_EINVAL, "the extents request goes beyond the "
                      "end of the disk");
    return;
  }
  e = calloc (1, sizeof *e);
  if (!e) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  e->wait.resume = ext_resume;
  e->r = r;
  e->h = h;
  e->pos = r->offset;
  e->end = r->offset + r->count;
  ext_resolve (e);
}

/* ---- the rest of the requests ---- */

static void
qcow2dec_readonly (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EPERM, "the qcow2dec filter is read-only");
}

static void
qcow2dec_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* nothing is ever written */
}

static void
qcow2dec_close (void *handle)
{
  struct qh *h = handle;
  struct l2table *t, *next;

  /* Every table's load is done by now: each had a waiting request,
   * and close comes once no request is in flight.
   */
  for (t = LRU_ENTRY (h->lru.head, struct l2table, lru); t; t = next) {
    next = LRU_ENTRY (t->lru.next, struct l2table, lru);
    table_free (t);
  }
  free (h->l1);
  free (h);
}

/* ---- opening: the header, then the L1 table ---- */

struct opening {
  struct fopen *o;
  struct qh *h;
  unsigned char *l1raw;         /* the L1 table, as read */
  uint64_t l1_bytes, l1_done;
};

static void
opening_fail (struct opening *s, uint32_t status, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
opening_fail (struct opening *s, uint32_t status, const char *fmt, ...)
{
  char msg[768];
  va_list args;

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  nbdkit_error ("qcow2dec: %s", msg);
  fopen_fail (s->o, status, msg);
  if (s->h)
    free (s->h->l1);
  free (s->h);
  free (s->l1raw);
  free (s);
}

/* Runs on a worker thread (an L1 table may have millions of entries):
 * the table in host order.  Touches only the opening's table.
 */
static void
l1_work (void *arg)
{
  struct opening *s = arg;
  struct qh *h = s->h;
  uint64_t i;

  h->l1 = malloc (h->hdr.l1_needed ? h->hdr.l1_needed * 8 : 1);
  if (!h->l1)
    return;
  for (i = 0; i < h->hdr.l1_needed; ++i)
    h->l1[i] = qcow2_be64 (s->l1raw + i * 8);
}

static void
opening_done (void *arg)
{
  struct opening *s = arg;
  struct fopen *o = s->o;
  struct qh *h = s->h;

  if (!h->l1) {
    opening_fail (s, HP_ENOMEM, "out of memory for the L1 table");
    return;
  }
  h->next = o->next;
  nbdkit_debug ("qcow2dec: qcow2 version %" PRIu32 ", cluster size %"
                PRIu64 ", virtual size %" PRIu64 ", %" PRIu64 " L1 "
                "entries used, compression %s%s", h->hdr.version,
                h->hdr.cluster_size, h->hdr.size, h->hdr.l1_needed,
                h->hdr.compression_type == QCOW2_COMPRESSION_ZSTD ?
                "zstd" : "deflate",
                qcow2_can_decompress (&h->hdr) ? "" :
                " (not built in: compressed clusters will fail)");
  o->caps->size = h->hdr.size;
  o->caps->can_write = false;
  o->caps->can_flush = false;
  o->caps->can_trim = false;
  o->caps->can_zero = false;
  o->caps->can_fast_zero = false;
  o->caps->can_fua = false;
  o->caps->can_extents = true;
  o->caps->can_cache = false;
  o->caps->can_multi_conn = true;
  o->caps->block_min = o->caps->block_pref = o->caps->block_max = 0;
  fopen_done (o, h);
  s->h = NULL;
  free (s->l1raw);
  free (s);
}

static void l1_read_more (struct opening *s);

static void
on_l1 (void *opaque, const struct hp_header *reply, void *payload,
       uint32_t len)
{
  struct opening *s = opaque;
  uint64_t want = s->l1_bytes - s->l1_done < CHUNK ?
    s->l1_bytes - s->l1_done : CHUNK;

  if (!reply || reply->status || len != want) {
    payload_free (payload);
    opening_fail (s, HP_EIO, "could not read the qcow2 L1 table at offset "
                  "%" PRIu64, s->h->hdr.l1_offset + s->l1_done);
    return;
  }
  memcpy (s->l1raw + s->l1_done, payload, len);
  payload_free (payload);
  s->l1_done += len;
  if (s->l1_done < s->l1_bytes)
    l1_read_more (s);
  else
    worker_submit (l1_work, opening_done, s);
}

static void
l1_read_more (struct opening *s)
{
  uint64_t n = s->l1_bytes - s->l1_done < CHUNK ?
    s->l1_bytes - s->l1_done : CHUNK;

  fnext_request (s->o->next, HP_PREAD, 0, s->h->hdr.l1_offset + s->l1_done,
                 (uint32_t) n, NULL, on_l1, s);
}

static void
on_header (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct opening *s = opaque;
  struct qcow2_header hdr;
  char msg[512], name[256];

  if (!reply || reply->status) {
    payload_free (payload);
    opening_fail (s, HP_EIO, "could not read the qcow2 header from the "
                  "layer below");
    return;
  }
  if (qcow2_parse_header (payload, len, s->o->caps->size, &hdr, msg,
                          sizeof msg) == -1) {
    if (hdr.backing_file_offset &&
        qcow2_backing_name (payload, len, &hdr, name, sizeof name)) {
      payload_free (payload);
      opening_fail (s, HP_EINVAL, "%s (backing file: %s)", msg, name);
      return;
    }
    payload_free (payload);
    opening_fail (s, HP_EINVAL, "%s", msg);
    return;
  }
  payload_free (payload);
  s->h = calloc (1, sizeof *s->h);
  s->l1_bytes = hdr.l1_needed * 8;
  s->l1raw = malloc (s->l1_bytes ? s->l1_bytes : 1);
  if (!s->h || !s->l1raw) {
    opening_fail (s, HP_ENOMEM, "out of memory for the L1 table");
    return;
  }
  s->h->hdr = hdr;
  s->h->file_size = s->o->caps->size;
  if (s->l1_bytes == 0)
    worker_submit (l1_work, opening_done, s);
  else
    l1_read_more (s);
}

static void
qcow2dec_open (struct fopen *o)
{
  struct opening *s = calloc (1, sizeof *s);
  uint64_t n = o->caps->size < HEADER_READ ? o->caps->size : HEADER_READ;

  if (!s) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  s->o = o;
  if (n < QCOW2_V2_HEADER_SIZE) {
    opening_fail (s, HP_EINVAL, "not a qcow2 image: %" PRIu64 " bytes is "
                  "too short for a qcow2 header", o->caps->size);
    return;
  }
  fnext_request (o->next, HP_PREAD, 0, 0, (uint32_t) n, NULL, on_header, s);
}

static const char *const keys[] = { "qcow2dec-l2-cache", NULL };

const struct filter qcow2dec_filter = {
  .name = "qcow2dec",
  .description = "serve a qcow2 image as a raw disk (read-only)",
  .config_help =
    "qcow2dec-l2-cache=N  L2 tables cached per connection (default 64)",
  .keys = keys,
  .config = qcow2dec_config,
  .readonly_below = true,
  .open = qcow2dec_open,
  .close = qcow2dec_close,
  .pread = qcow2dec_pread,
  .pwrite = qcow2dec_readonly,
  .flush = qcow2dec_flush,
  .trim = qcow2dec_readonly,
  .zero = qcow2dec_readonly,
  .extents = qcow2dec_extents,
};
