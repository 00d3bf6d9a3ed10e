/* filters/readahead.c: prefetch the data that follows a read
 * (nbdkit-readahead-filter(1)).
 *
 * The window of prefetch starts at RA_MIN bytes after a read that is
 * not sequential and doubles with each sequential read (one that
 * starts where the previous read of the connection ended), up to
 * RA_MAX.
 *
 * If the layer below can cache, the filter asks it to (CACHE requests
 * for the window after each read, never twice for the same bytes of a
 * sequential run) and passes every request on unchanged: the data is
 * always the layer below's.
 *
 * If it cannot, a read that misses reads the window below instead, in
 * one request, answers with its first part and keeps the whole in a
 * buffer of the connection (at most RA_MAX bytes), from which the
 * following reads are answered.  Stale data is never served:
 *  - a write, trim or zero on any connection drops every buffer it
 *    overlaps, when it arrives;
 *  - a read below (a fill) that overlaps a write in flight, when it is
 *    sent or at any time until it is answered, is used for the read
 *    that caused it (which was concurrent with the write, so either
 *    data is right) but not kept.
 * Writes in flight are tracked for that, so writes, trims and zeroes
 * go down as sub-requests.  Owns: the list of open handles and of
 * writes in flight (static), and each connection's buffer.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define RA_MIN (64 * 1024)
#define RA_MAX (4 * 1024 * 1024)

struct fill;

struct ra_handle {
  struct fnext *next;
  uint64_t size;
  bool use_cache;               /* the layer below can cache */
  uint64_t last_end;            /* where the last read ended */
  uint32_t window;
  uint64_t cached_end;          /* CACHE asked up to here */
  /* Without cache below: */
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
  h->window = RA_MIN;
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

static void
on_cached (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  payload_free (payload);               /* a prefetch only: errors do not matter */
}

static void
prefetch (struct ra_handle *h, uint64_t end, bool sequential)
{
  uint64_t start, stop;

  if (!sequential || h->cached_end < end)
    h->cached_end = end;
  start = h->cached_end;
  stop = end + h->window < h->size ? end + h->window : h->size;
  while (start < stop) {
    uint32_t n = stop - start > HP_MAX_DATA ? HP_MAX_DATA
      : (uint32_t) (stop - start);

    fnext_request (h->next, HP_CACHE, 0, start, n, NULL, on_cached, NULL);
    start += n;
  }
  if (stop > h->cached_end)
    h->cached_end = stop;
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
    h->window = RA_MIN;

  if (h->use_cache) {
    freq_next (r);
    prefetch (h, end, sequential);
    return;
  }

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
    "(no parameters: the window adapts to sequential reads, up to 4M)",
  .open = ra_open,
  .close = ra_close,
  .pread = ra_pread,
  .pwrite = ra_write,
  .trim = ra_write,
  .zero = ra_write,
};
