/* filters/readahead.c: prefetch the data that follows a read
 * (nbdkit-readahead-filter(1)).
 *
 * If the layer below can cache (and the backend's thread model is
 * parallel), the filter does what nbdkit's does: every request is
 * passed on unchanged, and each read is followed by one cache request
 * (NBD_CMD_CACHE) for the window after it, sent in the background:
 * a connection's cache requests go down one at a time, in order, as
 * nbdkit's background thread of the connection sends them.  The
 * window is the server's (shared by all connections, as nbdkit's):
 * it starts at RA_MIN bytes; a read that starts beyond the end of the
 * last window asked for doubles it (up to RA_MAX), one that starts
 * after the last read's start keeps it, and any other (a read that
 * goes back, or the same place again) sets it back to RA_MIN.  Over a
 * backend whose thread model is not parallel the filter does nothing
 * but say so at each open, as nbdkit's.
 *
 * If the layer below cannot cache (where nbdkit's filter does
 * nothing), this one reads ahead itself, per connection: the window
 * starts at BUF_MIN bytes after a read that is not sequential and
 * doubles with each sequential read (one that starts where the
 * previous read of the connection ended), up to RA_MAX.  A read that
 * misses reads the window below instead, in one request, answers
 * with its first part and keeps the whole in a buffer of the
 * connection (at most RA_MAX bytes), from which the following reads
 * are answered.  Stale data is never served:
 *  - a write, trim or zero on any connection drops every buffer it
 *    overlaps, when it arrives;
 *  - a read below (a fill) that overlaps a write in flight, when it is
 *    sent or at any time until it is answered, is used for the read
 *    that caused it (which was concurrent with the write, so either
 *    data is right) but not kept.
 * Writes in flight are tracked for that, so writes, trims and zeroes
 * go down as sub-requests.  Owns: the window (static), the list of
 * open handles and of writes in flight (static), and each
 * connection's buffer and queue of cache requests.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define RA_MIN (32 * 1024)
#define RA_MAX (4 * 1024 * 1024)
#define BUF_MIN (64 * 1024)

/* nbdkit's window, shared by all connections. */
static uint64_t window = RA_MIN;
static uint64_t last_offset, last_readahead;

struct fill;

/* A cache request waiting for the connection's one in flight. */
struct cache_cmd {
  uint64_t offset;
  uint32_t count;
  struct cache_cmd *next;
};

struct ra_handle {
  struct fnext *next;
  uint64_t size;
  bool use_cache;               /* the layer below can cache */
  bool working;                 /* ... and the thread model is parallel */
  /* With cache below: the cache requests of the connection. */
  bool caching;                 /* one is in flight */
  struct cache_cmd *cmds, *cmds_tail;
  /* Without cache below: */
  uint64_t last_end;            /* where the last read ended */
  uint32_t window;
  unsigned char *buf;           /* NULL = none */
  uint64_t buf_off;
  uint32_t buf_len;
  struct fill *fill;            /* the fill in flight, or NULL */
  struct ra_handle *prev, *next_handle;
};

struct fill {
  struct ra_handle *h;
  struct freq *r;
  uint64_t off;
  uint32_t len;
  bool poisoned;                /* overlapped a write: do not keep */
};

struct inflight_write {
  struct freq *r;
  uint64_t off, end;
  struct inflight_write *prev, *next;
};

static struct ra_handle *handles;
static struct inflight_write *writes;

static bool
overlaps (uint64_t a_off, uint64_t a_end, uint64_t b_off, uint64_t b_end)
{
  return a_off < b_end && b_off < a_end;
}

static void
ra_open (struct fopen *o)
{
  struct ra_handle *h = calloc (1, sizeof *h);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->next = o->next;
  h->size = o->caps->size;
  h->use_cache = o->caps->can_cache;
  /* nbdkit's thread numbering: 3 is parallel. */
  h->working = h->use_cache && server_thread_model () == 3;
  if (h->use_cache && !h->working)
    nbdkit_error ("readahead: warning: the backend's thread model is not "
                  "parallel, so no prefetch can run beside the reads: "
                  "the filter does nothing");
  h->window = BUF_MIN;
  h->next_handle = handles;
  if (handles)
    handles->prev = h;
  handles = h;
  fopen_done (o, h);
}

static void
ra_close (void *handle)
{
  struct ra_handle *h = handle;

  if (h->prev)
    h->prev->next_handle = h->next_handle;
  else
    handles = h->next_handle;
  if (h->next_handle)
    h->next_handle->prev = h->prev;
  /* None is left: one waits only behind one in flight, which keeps
   * the connection's layers open until it is answered.
   */
  while (h->cmds) {
    struct cache_cmd *c = h->cmds;

    h->cmds = c->next;
    free (c);
  }
  payload_free (h->buf);
  free (h);
}

static void
drop_buffer (struct ra_handle *h)
{
  payload_free (h->buf);
  h->buf = NULL;
  h->buf_len = 0;
}

/* ---- reads ---- */

static void send_cache (struct ra_handle *h, uint64_t offset, uint32_t count);

/* A cache request is answered: send the next one of the connection. */
static void
on_cached (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct ra_handle *h = opaque;
  struct cache_cmd *c = h->cmds;

  payload_free (payload);       /* a prefetch only: errors do not matter */
  h->caching = false;
  if (c) {
    h->cmds = c->next;
    if (!h->cmds)
      h->cmds_tail = NULL;
    send_cache (h, c->offset, c->count);
    free (c);
  }
}

static void
send_cache (struct ra_handle *h, uint64_t offset, uint32_t count)
{
  h->caching = true;
  fnext_request (h->next, HP_CACHE, 0, offset, count, NULL, on_cached, h);
}

/* In the background: now if none of the connection's is in flight,
 * else after the ones before it.
 */
static void
queue_cache (struct ra_handle *h, uint64_t offset, uint32_t count)
{
  struct cache_cmd *c;

  if (!h->caching) {
    send_cache (h, offset, count);
    return;
  }
  c = malloc (sizeof *c);
  if (!c)
    return;                     /* a prefetch only */
  c->offset = offset;
  c->count = count;
  c->next = NULL;
  if (h->cmds_tail)
    h->cmds_tail->next = c;
  else
    h->cmds = c;
  h->cmds_tail = c;
}

/* nbdkit's rule: one cache request of the window after the read, then
 * the window adapts to where this read started.
 */
static void
prefetch (struct ra_handle *h, uint64_t offset, uint32_t count)
{
  uint64_t ra_offset = offset + count, ra_count = 0;

  if (ra_offset < h->size) {
    ra_count = h->size - ra_offset < window ? h->size - ra_offset : window;
    queue_cache (h, ra_offset, (uint32_t) ra_count);
  }
  if (last_readahead < offset)
    window = window * 2 < RA_MAX ? window * 2 : RA_MAX;
  else if (last_offset < offset)
    ;                           /* still going forward: keep it */
  else
    window = RA_MIN;
  last_offset = offset;
  last_readahead = ra_offset + ra_count;
}

static void
on_fill (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct fill *f = opaque;
  struct ra_handle *h = f->h;
  struct freq *r = f->r;
  unsigned char *part;

  h->fill = NULL;
  if (!reply || reply->status || len != f->len ||
      !(part = malloc (r->count))) {
    /* Leave it to the read itself (an error past its end is not its). */
    payload_free (payload);
    free (f);
    freq_next (r);
    return;
  }
  memcpy (part, payload, r->count);
  freq_reply (r, part, r->count, 0);
  if (f->poisoned)
    payload_free (payload);
  else {
    payload_free (h->buf);
    h->buf = payload;
    h->buf_off = f->off;
    h->buf_len = f->len;
  }
  free (f);
}

static void
ra_pread (void *handle, struct freq *r)
{
  struct ra_handle *h = handle;
  uint64_t end = r->offset + r->count;
  bool sequential = r->offset == h->last_end;
  struct inflight_write *w;
  struct fill *f;
  unsigned char *part;
  uint32_t len;

  if (h->use_cache) {
    uint64_t offset = r->offset;
    uint32_t count = r->count;

    /* The read first, then its prefetch. */
    freq_next (r);
    if (h->working)
      prefetch (h, offset, count);
    return;
  }

  /* No cache below: the buffer. */
  h->last_end = end;
  if (h->buf && r->offset >= h->buf_off &&
      end <= h->buf_off + h->buf_len &&
      (part = malloc (r->count ? r->count : 1))) {
    memcpy (part, h->buf + (r->offset - h->buf_off), r->count);
    freq_reply (r, part, r->count, 0);
    return;
  }
  if (sequential)
    h->window = h->window * 2 <= RA_MAX ? h->window * 2 : RA_MAX;
  else
    h->window = BUF_MIN;

  len = h->size - r->offset < h->window ? (uint32_t) (h->size - r->offset)
    : h->window;
  if (h->fill || len <= r->count || !(f = malloc (sizeof *f))) {
    freq_next (r);
    return;
  }
  f->h = h;
  f->r = r;
  f->off = r->offset;
  f->len = len;
  f->poisoned = false;
  for (w = writes; w; w = w->next)
    if (overlaps (w->off, w->end, f->off, f->off + len))
      f->poisoned = true;
  h->fill = f;
  /* Our own read: no zeros reply, so the data is always there. */
  fnext_request (h->next, HP_PREAD, 0, f->off, len, NULL, on_fill, f);
}

/* ---- writes, trims, zeroes ---- */

static void
on_written (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct inflight_write *w = opaque;

  if (w->prev)
    w->prev->next = w->next;
  else
    writes = w->next;
  if (w->next)
    w->next->prev = w->prev;
  freq_reply_from (w->r, reply, payload, len);
  free (w);
}

static void
ra_write (void *handle, struct freq *r)
{
  struct inflight_write *w = malloc (sizeof *w);
  uint64_t end = r->offset + r->count;
  struct ra_handle *h;
  void *data;

  if (!w) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  for (h = handles; h; h = h->next_handle) {
    if (h->buf && overlaps (h->buf_off, h->buf_off + h->buf_len,
                            r->offset, end))
      drop_buffer (h);
    if (h->fill && overlaps (h->fill->off, h->fill->off + h->fill->len,
                             r->offset, end))
      h->fill->poisoned = true;
  }
  w->r = r;
  w->off = r->offset;
  w->end = end;
  w->prev = NULL;
  w->next = writes;
  if (writes)
    writes->prev = w;
  writes = w;
  data = r->data;
  r->data = NULL;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_written, w);
}

const struct filter readahead_filter = {
  .name = "readahead",
  .description = "prefetch data ahead of sequential reads",
  .config_help =
    "(no parameters: after each read, a cache request of the window\n"
    " after it: 32K, doubled when a read starts past the last window,\n"
    " up to 4M, back to 32K when the reads go back)",
  .open = ra_open,
  .close = ra_close,
  .pread = ra_pread,
  .pwrite = ra_write,
  .trim = ra_write,
  .zero = ra_write,
};
