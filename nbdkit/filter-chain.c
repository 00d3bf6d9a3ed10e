/* nbdkit front end: the chain of layers of one open export.
 *
 * Owns struct chain (one per open export of a connection: each layer's
 * handle), struct freq (a request at one layer), the opening of the
 * layers and their reopening (fnext_reopen).  Layers are numbered from
 * the client down: layer 0 is the first --filter, the last layer
 * (nr_filters) is the backend process (backend-layer.c), and all are
 * a struct filter: there is no special case for "no filters".  A
 * request travels down with freq_next and completes back up exactly
 * once; filters may issue sub-requests to the layer below.  Export
 * listings and the filters' accept/closed are in filter-open.c.
 *
 * Completions that happen inside a filter's callback (a filter that
 * answers at once, or a channel that fails a request as it is sent)
 * are deferred to the loop's flush pass, run before the loop waits
 * again (loop_flush_queue): no callback ever sees its own work complete
 * before it returned, the stack stays flat however many requests a
 * client pipelines, and the reply still goes out in the same turn.
 *
 * A chain lives while it is referenced: by its owner until chain_close,
 * by every request in flight in any of its layers, and by every reopen
 * not yet finished.  The layers' close callbacks (the backend's:
 * CLOSE) run when the last goes.
 *
 * Reopening the layers below a filter (fnext_reopen) is done one reopen
 * at a time per chain: the requests entering those layers from above
 * are held, the ones already in them are waited for (busy[] counts the
 * requests at each layer), then the layers are closed from the top
 * down and opened again from the bottom up, with their capabilities
 * gathered in the reopen's own struct export_caps.  The held requests
 * then go on to the new layers -- or fail, if the reopen failed and
 * the layers stay closed.  A filter's opens_below may keep the layers
 * below it closed for a connection (kept_closed): they are never opened.
 *
 * Payload buffers come from the bottom layer's allocator
 * (chain_data_alloc) and are released with payload_free wherever they
 * end: whether they are shared memory is the bottom layer's business.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../filters/filter.h"

struct fnext {
  struct chain *ch;
  size_t layer;                 /* the layer below the link */
};

struct reopen;

struct chain {
  size_t n;                     /* layers: the filters, then the backend */
  struct backend_proc *bp;
  uint64_t connection;          /* its number, for -v */
  bool description;             /* the client asked for the description */
  void **handles;               /* each layer's handle */
  bool *opened;                 /* which layers are open now */
  bool *readonly;               /* asked of each layer */
  unsigned *busy;               /* busy[i]: requests at layer i now */
  struct fnext *links;          /* links[i]: below layer i */
  unsigned refs;
  bool owner_gone;              /* chain_close: the client let it go */
  char *peer;
  char *export;
  char **exports;               /* exports[i]: the name layer i opens */
  /* The first opening. */
  struct fopen o;
  chain_open_cb open_cb;
  void *open_opaque;
  struct export_caps caps;
  /* Reopening: the first of the queue is the one running. */
  struct reopen *reopens, *reopens_tail;
  size_t hold_from;             /* requests entering layers >= this wait */
  size_t closed_from;           /* layers >= this closed by a failed reopen */
  size_t kept_closed;           /* layers >= this never opened (opens_below) */
  struct freq_private *held, *held_tail;
};

/* Free requests, kept for the next ones. */
#define MAX_SPARE_FREQS 256
static struct freq_full *spare_freqs;
static size_t nr_spare_freqs;

struct freq_private {
  struct chain *ch;
  size_t layer;
  size_t entry;                 /* the layer it was sent to from above */
  bool counted;                 /* in ch->busy[layer] */
  backend_cb cb;
  void *opaque;
  /* A deferred completion, or the list of held requests. */
  struct freq_private *next_done;
  bool have_reply;
  struct hp_header reply;
  void *payload;
  uint32_t len;
};

struct freq_full {
  struct freq pub;
  struct freq_private priv;
};

/* One run of opening: layers top..n-1, from the bottom up. */
#define OPEN_FAILED ((size_t) -1)
struct fopen_private {
  struct chain *ch;
  struct fopen *o;
  size_t top;
  size_t opening;               /* layers >= this are open; OPEN_FAILED */
  bool in_call;
  bool done_early;              /* fopen_done inside the open call */
  void (*finished) (struct fopen_private *p, uint32_t status,
                    const char *msg);
};

enum reopen_state { RE_QUEUED, RE_DRAINING, RE_CLOSING, RE_OPENING,
                    RE_FINISHED };

struct reopen {
  ev_timer kick;                /* the next step, on the loop */
  struct reopen *next;
  struct chain *ch;
  size_t top;                   /* the first layer reopened */
  bool readonly;
  freopen_fn done;
  void *opaque;
  enum reopen_state state;
  struct fopen o;
  struct fopen_private p;
  struct export_caps caps;      /* as seen from the filter above top */
  uint32_t status;
  char *msg;
};

static unsigned depth;          /* inside a filter's callback */
static struct freq_private *done_head, *done_tail;
static void on_done_flush (struct loop_flush *f);
static struct loop_flush done_flush = { .fn = on_done_flush };
static uint64_t next_id = 1;

/* Layer i of every chain: a filter, or the backend at the bottom. */
static const struct filter *
layer_at (size_t i)
{
  return i < opt.nr_filters ? opt.filters[i] : &backend_layer;
}

static size_t
nr_layers (void)
{
  return opt.nr_filters + 1;
}

/* ---- chain lifetime ---- */

/* Close the open layers of from..n-1, from the client down, as the
 * layers were stacked.
 */
static void
close_layers (struct chain *ch, size_t from)
{
  size_t i;

  for (i = from; i < ch->n; ++i) {
    if (ch->opened[i] && chain_tracing (false))
      log_conn_debug (bproc_name (ch->bp), ch->connection, "%s: close",
                      chain_layer_name (ch->bp, i));
    if (ch->opened[i] && layer_at (i)->close)
      layer_at (i)->close (ch->handles[i]);
    ch->opened[i] = false;
    ch->handles[i] = NULL;
  }
}

static void
free_exports (struct chain *ch)
{
  size_t i;

  if (ch->exports)
    for (i = 0; i < ch->n; ++i)
      free (ch->exports[i]);
  free (ch->exports);
}

static void
chain_free (struct chain *ch)
{
  close_layers (ch, 0);
  caps_free (&ch->caps);
  free (ch->handles);
  free (ch->opened);
  free (ch->readonly);
  free (ch->busy);
  free (ch->links);
  free (ch->peer);
  free (ch->export);
  free_exports (ch);
  free (ch->o.priv);
  free (ch);
}

static void
chain_unref (struct chain *ch)
{
  if (--ch->refs == 0)
    chain_free (ch);
}

void
chain_close (struct chain *ch)
{
  if (ch) {
    ch->owner_gone = true;
    chain_unref (ch);
  }
}

/* ---- requests ---- */

static void region_check (struct chain *ch);

static freq_fn
entry_of (const struct filter *f, uint16_t type)
{
  switch (type) {
  case HP_PREAD: return f->pread;
  case HP_PWRITE: return f->pwrite;
  case HP_FLUSH: return f->flush;
  case HP_TRIM: return f->trim;
  case HP_ZERO: return f->zero;
  case HP_CACHE: return f->cache;
  case HP_EXTENTS: return f->extents;
  default: return NULL;
  }
}

static void
freq_release (struct freq_full *rf)
{
  if (nr_spare_freqs < MAX_SPARE_FREQS) {
    *(struct freq_full **) rf = spare_freqs;
    spare_freqs = rf;
    nr_spare_freqs++;
  }
  else
    free (rf);
}

static void
deliver (struct freq_full *rf, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct chain *ch = rf->priv.ch;
  backend_cb cb = rf->priv.cb;
  void *opaque = rf->priv.opaque;
  struct hp_header copy;

  /* A deferred reply lives in rf: keep it past the free. */
  if (reply) {
    copy = *reply;
    reply = &copy;
  }
  payload_free (rf->pub.data);
  freq_release (rf);
  cb (opaque, reply, payload, len);
  chain_unref (ch);
}

/* The completions deferred by complete(): run from the loop's flush
 * pass (loop_flush_queue), before the loop waits again, so that their
 * replies go out in the same turn, without another poll.
 */
static void
on_done_flush (struct loop_flush *f)
{
  while (done_head) {
    struct freq_private *p = done_head;
    struct freq_full *rf = (struct freq_full *)
      ((char *) p - offsetof (struct freq_full, priv));

    done_head = p->next_done;
    if (!done_head)
      done_tail = NULL;
    deliver (rf, p->have_reply ? &p->reply : NULL, p->payload, p->len);
  }
}

/* The request leaves its layer (completed, or passed down). */
static void
uncount (struct freq_full *rf)
{
  struct freq_private *p = &rf->priv;

  if (p->counted) {
    p->ch->busy[p->layer]--;
    p->counted = false;
    region_check (p->ch);
  }
}

/* Complete a request: at once, or after the current callback. */
static void
complete (struct freq_full *rf, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct freq_private *p = &rf->priv;

  uncount (rf);
  if (depth == 0) {
    deliver (rf, reply, payload, len);
    return;
  }
  p->have_reply = reply != NULL;
  if (reply)
    p->reply = *reply;
  p->payload = payload;
  p->len = len;
  p->next_done = NULL;
  if (done_tail)
    done_tail->next_done = p;
  else
    done_head = p;
  done_tail = p;
  loop_flush_queue (&done_flush);
}

/* Fail a request that cannot go on (status, msg), later. */
static void
fail_later (struct freq_full *rf, uint32_t status, const char *msg)
{
  struct hp_header reply = { .type = rf->pub.type, .status = status };
  char *m = strdup (msg);

  depth++;
  complete (rf, &reply, m, m ? (uint32_t) strlen (m) : 0);
  depth--;
}

/* Hand r to the layer it is at (or the first below it that handles
 * its type).  Entering layers being reopened, it waits; entering
 * layers left closed by a failed reopen, it fails.
 */
static void
dispatch (struct freq_full *rf)
{
  struct chain *ch = rf->priv.ch;
  size_t entry = rf->priv.entry;

  /* The bottom layer handles every type: the loop ends there. */
  for (;;) {
    size_t i = rf->priv.layer;
    freq_fn fn = entry_of (layer_at (i), rf->pub.type);

    if (chain_tracing (true))
      chain_trace_request (ch->bp, ch->connection, rf->priv.layer,
                           &rf->pub);
    if (fn) {
      if (i >= ch->hold_from && entry <= ch->hold_from) {
        rf->priv.next_done = NULL;
        if (ch->held_tail)
          ch->held_tail->next_done = &rf->priv;
        else
          ch->held = &rf->priv;
        ch->held_tail = &rf->priv;
        return;
      }
      if (i >= ch->closed_from && entry <= ch->closed_from) {
        fail_later (rf, HP_EIO, "the layers below are closed: reopening "
                    "them failed");
        return;
      }
      ch->busy[i]++;
      rf->priv.counted = true;
      depth++;
      fn (ch->handles[i], &rf->pub);
      depth--;
      return;
    }
    rf->priv.layer++;
  }
}

static struct freq_full *
freq_new (struct chain *ch, size_t layer, uint16_t type, uint16_t flags,
          uint64_t offset, uint32_t count, void *data, backend_cb cb,
          void *opaque)
{
  struct freq_full *rf = spare_freqs;

  if (rf) {
    spare_freqs = *(struct freq_full **) rf;
    nr_spare_freqs--;
    memset (rf, 0, sizeof *rf);
  }
  else if ((rf = calloc (1, sizeof *rf)) == NULL)
    return NULL;
  rf->pub.type = type;
  rf->pub.flags = flags;
  rf->pub.offset = offset;
  rf->pub.count = count;
  rf->pub.data = data;
  rf->pub.peer = ch->peer;
  rf->pub.id = next_id++;
  rf->pub.priv = &rf->priv;
  rf->priv.ch = ch;
  rf->priv.layer = layer;
  rf->priv.entry = layer;
  rf->priv.cb = cb;
  rf->priv.opaque = opaque;
  ch->refs++;
  return rf;
}

/* A request that could not even be made: answered ENOMEM, later. */
static void
fail_unmade (struct chain *ch, void *data, backend_cb cb, void *opaque)
{
  static const struct hp_header enomem = { .status = HP_ENOMEM };
  struct freq_full *rf = calloc (1, sizeof *rf);

  payload_free (data);
  if (!rf) {
    nbdkit_error ("out of memory: a request is lost");
    return;
  }
  rf->priv.ch = ch;
  rf->priv.cb = cb;
  rf->priv.opaque = opaque;
  rf->pub.priv = &rf->priv;
  ch->refs++;
  depth++;
  complete (rf, &enomem, NULL, 0);
  depth--;
}

void
chain_send (struct chain *ch, const struct hp_header *h, void *data,
            uint32_t len, backend_cb cb, void *opaque)
{
  struct freq_full *rf;

  rf = freq_new (ch, 0, h->type, h->flags, h->offset, h->count, data, cb,
                 opaque);
  if (!rf) {
    fail_unmade (ch, data, cb, opaque);
    return;
  }
  dispatch (rf);
}

void *
chain_data_alloc (struct chain *ch, size_t len)
{
  return bproc_payload_alloc (ch->bp, len);
}

bool
chain_write_in_place (struct chain *ch, uint16_t flags, uint64_t offset,
                      uint32_t count, struct in_place *ip)
{
  /* Only with no filter: a filter may change the data, or send it
   * somewhere else.
   */
  return ch->n == 1 && ch->opened[0] &&
    backend_layer_write_in_place (ch->handles[0], flags, offset, count, ip);
}

void
freq_next (struct freq *r)
{
  struct freq_full *rf = (struct freq_full *) r;

  uncount (rf);
  rf->priv.layer++;
  rf->priv.entry = rf->priv.layer;
  dispatch (rf);
}

bool
freq_unfiltered (const struct freq *r)
{
  const struct freq_full *rf = (const struct freq_full *) r;

  return rf->priv.ch->n == 1;
}

bool
freq_from_plain_client (const struct freq *r)
{
  const struct freq_full *rf = (const struct freq_full *) r;

  return rf->priv.ch->n == 1 && !rf->priv.ch->o.tls;
}

struct fnext *
freq_below (struct freq *r)
{
  struct freq_full *rf = (struct freq_full *) r;

  return &rf->priv.ch->links[rf->priv.layer];
}

void
freq_reply (struct freq *r, void *data, uint32_t len, uint16_t rflags)
{
  struct hp_header reply = { .type = r->type, .flags = rflags };

  complete ((struct freq_full *) r, &reply, data, len);
}

void
freq_reply_error (struct freq *r, uint32_t status, const char *msg)
{
  struct hp_header reply = { .type = r->type, .status = status };
  char *m = msg ? strdup (msg) : NULL;

  if (status == 0)
    reply.status = HP_EIO;
  complete ((struct freq_full *) r, &reply, m, m ? (uint32_t) strlen (m) : 0);
}

void
freq_reply_from (struct freq *r, const struct hp_header *reply,
                 void *payload, uint32_t len)
{
  struct hp_header copy;

  if (!reply) {
    payload_free (payload);
    freq_reply_error (r, HP_EIO, "the backend could not answer");
    return;
  }
  copy = *reply;
  copy.type = r->type;
  complete ((struct freq_full *) r, &copy, payload, len);
}

void
fnext_request (struct fnext *next, uint16_t type, uint16_t flags,
               uint64_t offset, uint32_t count, void *data, backend_cb cb,
               void *opaque)
{
  struct freq_full *rf = freq_new (next->ch, next->layer, type, flags,
                                   offset, count, data, cb, opaque);

  if (!rf) {
    fail_unmade (next->ch, data, cb, opaque);
    return;
  }
  dispatch (rf);
}

const char *
fnext_peer (const struct fnext *next)
{
  return next->ch->peer;
}

bool
fnext_closed (const struct fnext *next)
{
  return next->ch->owner_gone;
}

/* ---- opening ---- */

static void
open_next (struct fopen_private *p)
{
  struct chain *ch = p->ch;
  struct fopen *o = p->o;

  while (p->opening != OPEN_FAILED && p->opening > p->top) {
    size_t i = p->opening - 1;
    const struct filter *f = layer_at (i);
    bool early, failed;

    if (!f->open) {
      /* No state of its own: it offers what is below, read-only if so
       * asked.
       */
      if (ch->readonly[i])
        o->caps->can_write = false;
      p->opening--;
      continue;
    }
    o->readonly = ch->readonly[i];
    o->export = ch->exports[i];
    o->next = i + 1 < ch->n ? &ch->links[i] : NULL;
    p->in_call = true;
    p->done_early = false;
    ch->refs++;                 /* an fopen_fail in the call drops the owner's */
    depth++;
    f->open (o);
    depth--;
    p->in_call = false;
    early = p->done_early;
    failed = p->opening == OPEN_FAILED;
    chain_unref (ch);
    if (failed || !early)
      return;                   /* failed, or fopen_done will go on */
  }
  if (p->opening == p->top) {
    if (ch->readonly[p->top])
      o->caps->can_write = false;
    p->finished (p, 0, NULL);
  }
}

void
fopen_done (struct fopen *o, void *handle)
{
  struct fopen_private *p = o->priv;
  struct chain *ch = p->ch;
  size_t i = p->opening - 1;

  ch->handles[i] = handle;
  ch->opened[i] = true;
  p->opening--;
  if (p->in_call)
    p->done_early = true;
  else
    open_next (p);
}

void
fopen_fail (struct fopen *o, uint32_t status, const char *msg)
{
  struct fopen_private *p = o->priv;

  if (p->in_call)
    p->done_early = true;
  p->opening = OPEN_FAILED;     /* no more opening */
  p->finished (p, status ? status : HP_EIO, msg ? msg : "open failed");
}

struct backend_proc *
fopen_backend_proc (const struct fopen *o)
{
  return o->priv->ch->bp;
}

bool
fopen_wants_description (const struct fopen *o)
{
  return o->priv->ch->description;
}

/* The first opening is over. */
static void
open_finished (struct fopen_private *p, uint32_t status, const char *msg)
{
  struct chain *ch = p->ch;
  chain_open_cb cb = ch->open_cb;
  void *opaque = ch->open_opaque;

  if (status) {
    cb (opaque, NULL, NULL, status, msg);
    chain_unref (ch);           /* the owner's reference: none now */
  }
  else
    cb (opaque, ch, &ch->caps, 0, NULL);
}

/* The name each layer is opened with, from the top down: a filter's
 * export_below chooses the name of the layers below it.  -1 if one
 * refused the export or memory is short (the open has failed: the
 * callback has run and the chain is gone).
 */
static int
export_names (struct chain *ch)
{
  char msg[256];
  size_t i;

  ch->exports = calloc (ch->n, sizeof *ch->exports);
  if (!ch->exports || !(ch->exports[0] = strdup (ch->export)))
    goto nomem;
  for (i = 0; i + 1 < ch->n; ++i) {
    const struct filter *f = layer_at (i);
    const char *below = ch->exports[i];

    if (f->export_below) {
      depth++;
      below = f->export_below (ch->exports[i]);
      depth--;
      if (!below) {
        snprintf (msg, sizeof msg, "%s filter: export \"%.100s\" is not "
                  "permitted", f->name, ch->exports[i]);
        ch->open_cb (ch->open_opaque, NULL, NULL, HP_EINVAL, msg);
        chain_unref (ch);
        return -1;
      }
    }
    if (!(ch->exports[i + 1] = strdup (below)))
      goto nomem;
  }
  return 0;

 nomem:
  ch->open_cb (ch->open_opaque, NULL, NULL, HP_ENOMEM, "out of memory");
  chain_unref (ch);
  return -1;
}

void
chain_open (struct backend_proc *bp, uint64_t connection, const char *export,
            bool readonly, bool tls, bool description, const char *client,
            chain_open_cb cb, void *opaque)
{
  struct chain *ch = calloc (1, sizeof *ch);
  size_t i, n = nr_layers ();
  struct fopen_private *p;

  if (!ch || !(ch->handles = calloc (n, sizeof *ch->handles)) ||
      !(ch->opened = calloc (n, sizeof *ch->opened)) ||
      !(ch->readonly = calloc (n, sizeof *ch->readonly)) ||
      !(ch->busy = calloc (n, sizeof *ch->busy)) ||
      !(ch->links = calloc (n, sizeof *ch->links)) ||
      !(ch->peer = strdup (client)) ||
      !(ch->export = strdup (export)) ||
      !(ch->o.priv = calloc (1, sizeof *ch->o.priv))) {
    if (ch) {
      free (ch->handles);
      free (ch->opened);
      free (ch->readonly);
      free (ch->busy);
      free (ch->links);
      free (ch->peer);
      free (ch->export);
      free (ch);
    }
    cb (opaque, NULL, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  ch->n = n;
  ch->bp = bp;
  ch->refs = 1;
  ch->hold_from = ch->closed_from = n;
  ch->open_cb = cb;
  ch->open_opaque = opaque;
  ch->o.caps = &ch->caps;
  ch->o.export = ch->export;
  ch->o.peer = ch->peer;
  ch->o.tls = tls;
  ch->o.connection = connection;
  ch->connection = connection;
  ch->description = description;
  ch->readonly[0] = readonly;
  for (i = 0; i + 1 < n; ++i) {
    ch->links[i].ch = ch;
    ch->links[i].layer = i + 1;
    ch->readonly[i + 1] = layer_at (i)->readonly_below || ch->readonly[i];
  }
  if (export_names (ch) == -1)
    return;
  /* From the bottom (the backend) up; traced from the top down, as
   * nbdkit's layers call each other.
   */
  for (i = 0; i < n && chain_tracing (false); ++i)
    log_conn_debug (bproc_name (bp), connection,
                    "%s: open readonly=%d exportname=\"%s\" tls=%d",
                    chain_layer_name (ch->bp, i), ch->readonly[i], ch->exports[i],
                    tls);
  p = ch->o.priv;
  p->ch = ch;
  p->o = &ch->o;
  p->top = 0;
  p->opening = n;
  p->finished = open_finished;
  /* A filter may keep the layers below it closed for this connection
   * (tls-fallback, for a plaintext client): they are not opened, and a
   * request sent to them fails.
   */
  ch->kept_closed = n;
  for (i = 0; i + 1 < n; ++i)
    if (layer_at (i)->opens_below &&
        !layer_at (i)->opens_below (export, tls)) {
      if (chain_tracing (false))
        log_conn_debug (bproc_name (bp), connection, "%s: the layers below "
                        "are not opened", chain_layer_name (ch->bp, i));
      ch->kept_closed = ch->closed_from = p->opening = i + 1;
      break;
    }
  open_next (p);
}

/* ---- reopening the layers below a filter ---- */

static void
reopen_kick (struct reopen *re)
{
  if (!ev_is_active (&re->kick))
    ev_timer_start (loop, &re->kick);
}

/* Nothing in flight in layers top..n-1. */
static bool
drained (const struct chain *ch, size_t top)
{
  size_t i;

  for (i = top; i < ch->n; ++i)
    if (ch->busy[i])
      return false;
  return true;
}

/* A request left a layer: the running reopen may go on. */
static void
region_check (struct chain *ch)
{
  struct reopen *re = ch->reopens;

  if (re && re->state == RE_DRAINING && drained (ch, re->top))
    reopen_kick (re);
}

static void
reopen_start (struct reopen *re)
{
  re->state = RE_DRAINING;
  re->ch->hold_from = re->top;
  reopen_kick (re);
}

/* The open run of a reopen is over (inside a filter's open, perhaps):
 * the rest is done on the loop.
 */
static void
reopen_opened (struct fopen_private *p, uint32_t status, const char *msg)
{
  struct reopen *re = (struct reopen *)
    ((char *) p - offsetof (struct reopen, p));

  re->status = status;
  re->msg = status && msg ? strdup (msg) : NULL;
  re->state = RE_FINISHED;
  reopen_kick (re);
}

static void reopen_closed (void *opaque);

static void
reopen_open (struct reopen *re)
{
  struct chain *ch = re->ch;
  size_t bottom = ch->n - 1;
  void *handle = ch->handles[bottom];
  bool open = ch->opened[bottom];

  /* Top down, as always; the backend's CLOSE is answered before the
   * new OPEN goes, so that the backend sees them in that order.
   */
  ch->opened[bottom] = false;
  ch->handles[bottom] = NULL;
  close_layers (ch, re->top);
  re->state = RE_CLOSING;
  if (!open) {
    reopen_closed (re);
    return;
  }
  if (chain_tracing (false))
    log_conn_debug (bproc_name (ch->bp), ch->connection, "%s: close",
                    chain_layer_name (ch->bp, bottom));
  backend_layer_close_then (handle, reopen_closed, re);
}

/* The layers below the reopening filter are closed: open them again,
 * from the bottom up.
 */
static void
reopen_closed (void *opaque)
{
  struct reopen *re = opaque;
  struct chain *ch = re->ch;
  size_t i;

  ch->readonly[re->top] =
    re->readonly || layer_at (re->top - 1)->readonly_below;
  for (i = re->top; i + 1 < ch->n; ++i)
    ch->readonly[i + 1] = layer_at (i)->readonly_below || ch->readonly[i];
  re->state = RE_OPENING;
  re->o = ch->o;
  re->o.caps = &re->caps;
  re->o.priv = &re->p;
  re->p.ch = ch;
  re->p.o = &re->o;
  re->p.top = re->top;
  re->p.opening = ch->kept_closed > re->top ? ch->kept_closed : ch->n;
  re->p.finished = reopen_opened;
  open_next (&re->p);
}

static void
reopen_finish (struct reopen *re)
{
  struct chain *ch = re->ch;
  struct freq_private *held = ch->held;

  /* Completions made below are delivered after all this.  Requests
   * held from now on (by the next reopen) make a new list.
   */
  ch->held = ch->held_tail = NULL;
  depth++;
  if (re->status) {
    close_layers (ch, re->top);
    if (ch->closed_from > re->top)
      ch->closed_from = re->top;
  }
  else if (ch->closed_from >= re->top)
    ch->closed_from = ch->kept_closed;
  ch->reopens = re->next;
  if (!ch->reopens)
    ch->reopens_tail = NULL;
  ch->hold_from = ch->n;
  if (ch->reopens)
    reopen_start (ch->reopens);

  re->done (re->opaque, re->status ? NULL : &re->caps, re->status,
            re->msg ? re->msg : re->status ? "reopening failed" : NULL);

  /* The held requests go on (or wait for the next reopen). */
  while (held) {
    struct freq_private *p = held;
    struct freq_full *rf = (struct freq_full *)
      ((char *) p - offsetof (struct freq_full, priv));

    held = p->next_done;
    dispatch (rf);
  }
  depth--;
  ev_timer_stop (loop, &re->kick);
  caps_free (&re->caps);
  free (re->msg);
  free (re);
  chain_unref (ch);
}

static void
on_reopen_kick (struct ev_loop *l, ev_timer *w, int revents)
{
  struct reopen *re = (struct reopen *) w;

  switch (re->state) {
  case RE_DRAINING:
    if (drained (re->ch, re->top))
      reopen_open (re);
    break;
  case RE_FINISHED:
    reopen_finish (re);
    break;
  case RE_QUEUED:
  case RE_CLOSING:
  case RE_OPENING:
    break;
  }
}

void
fnext_reopen (struct fnext *next, bool readonly, freopen_fn done,
              void *opaque)
{
  struct chain *ch = next->ch;
  struct reopen *re = calloc (1, sizeof *re);

  if (!re) {
    done (opaque, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  ev_timer_init (&re->kick, on_reopen_kick, 0, 0);
  re->ch = ch;
  re->top = next->layer;
  re->readonly = readonly;
  re->done = done;
  re->opaque = opaque;
  re->state = RE_QUEUED;
  ch->refs++;
  if (ch->reopens_tail)
    ch->reopens_tail->next = re;
  else
    ch->reopens = re;
  ch->reopens_tail = re;
  if (ch->reopens == re)
    reopen_start (re);
}
