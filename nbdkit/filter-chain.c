/* nbdkit front end: the filter chain of one open export.
 *
 * Owns struct chain (one per open export of a connection: the filters'
 * handles above the backend's handle) and struct freq (a request at
 * one layer).  Layers are numbered from the client down: filter 0 is
 * the first --filter, layer nr_filters is the backend.  A request
 * travels down with freq_next and completes back up exactly once;
 * filters may issue sub-requests to the layer below.
 *
 * Completions that happen inside a filter's callback (a filter that
 * answers at once, or a channel that fails a request as it is sent)
 * are deferred to a zero-delay timer, so no callback ever sees its own
 * work complete before it returned, and the stack stays flat however
 * many requests a client pipelines.
 *
 * A chain lives while it is referenced: by its owner until chain_close,
 * and by every request in flight in any of its layers.  The filters'
 * close callbacks and the backend's CLOSE run when the last goes.
 * Without filters chain_send is channel_send: nothing added.
 */

#include <config.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../filters/filter.h"

struct fnext {
  struct chain *ch;
  size_t layer;                 /* the layer below the link */
};

struct chain {
  size_t n;                     /* filters */
  struct bhandle *bh;           /* the backend's handle */
  void **handles;               /* each filter's handle */
  bool *opened;                 /* which filters' open succeeded */
  bool *readonly;               /* n + 1: asked of each layer */
  struct fnext *links;          /* links[i]: below filter i */
  unsigned refs;
  char *peer;
  /* Opening. */
  struct fopen o;
  size_t opening;               /* filters below this index are open */
  bool in_open_call;
  bool open_done_early;         /* fopen_done inside the open call */
  chain_open_cb open_cb;
  void *open_opaque;
  struct export_caps caps;
};

struct freq_private {
  struct chain *ch;
  size_t layer;
  backend_cb cb;
  void *opaque;
  /* A deferred completion. */
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

struct fopen_private {
  struct chain *ch;
};

static unsigned depth;          /* inside a filter's callback */
static struct freq_private *done_head, *done_tail;
static ev_timer done_timer;
static bool done_timer_init;
static uint64_t next_id = 1;

static size_t
nr_filters (void)
{
  return opt.nr_filters;
}

static const struct filter *
filter_at (size_t i)
{
  return opt.filters[i];
}

/* ---- chain lifetime ---- */

static void
chain_free (struct chain *ch)
{
  size_t i;

  /* Close from the client down, as the layers were stacked. */
  for (i = 0; i < ch->n; ++i)
    if (ch->opened[i] && filter_at (i)->close)
      filter_at (i)->close (ch->handles[i]);
  backend_close (ch->bh);
  caps_free (&ch->caps);
  free (ch->handles);
  free (ch->opened);
  free (ch->readonly);
  free (ch->links);
  free (ch->peer);
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
  if (ch)
    chain_unref (ch);
}

/* ---- requests ---- */

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
  free (rf->pub.data);
  free (rf);
  cb (opaque, reply, payload, len);
  chain_unref (ch);
}

static void
on_done_timer (struct ev_loop *l, ev_timer *w, int revents)
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

/* Complete a request: at once, or after the current callback. */
static void
complete (struct freq_full *rf, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct freq_private *p = &rf->priv;

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
  if (!done_timer_init) {
    ev_timer_init (&done_timer, on_done_timer, 0, 0);
    done_timer_init = true;
  }
  if (!ev_is_active (&done_timer))
    ev_timer_start (loop, &done_timer);
}

static void
on_backend_reply (void *opaque, const struct hp_header *reply, void *payload,
                  uint32_t len)
{
  complete (opaque, reply, payload, len);
}

/* Hand r to the layer it is at (or the first below it that handles
 * its type).
 */
static void
dispatch (struct freq_full *rf)
{
  struct chain *ch = rf->priv.ch;

  while (rf->priv.layer < ch->n) {
    freq_fn fn = entry_of (filter_at (rf->priv.layer), rf->pub.type);

    if (fn) {
      depth++;
      fn (ch->handles[rf->priv.layer], &rf->pub);
      depth--;
      return;
    }
    rf->priv.layer++;
  }

  {
    struct hp_header h = {
      .type = rf->pub.type,
      .flags = rf->pub.flags,
      .offset = rf->pub.offset,
      .count = rf->pub.count,
    };
    void *data = rf->pub.data;
    uint32_t len = rf->pub.type == HP_PWRITE ? rf->pub.count : 0;

    rf->pub.data = NULL;
    depth++;
    channel_send (&h, ch->bh, data, data ? len : 0, 0, on_backend_reply, rf);
    depth--;
  }
}

static struct freq_full *
freq_new (struct chain *ch, size_t layer, uint16_t type, uint16_t flags,
          uint64_t offset, uint32_t count, void *data, backend_cb cb,
          void *opaque)
{
  struct freq_full *rf = calloc (1, sizeof *rf);

  if (!rf)
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

  free (data);
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

  if (ch->n == 0) {
    channel_send (h, ch->bh, data, len, CH_DATA, cb, opaque);
    return;
  }
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
  /* Without filters the payload goes to the backend as it is, so it may
   * be an arena slot; filters get malloc'd buffers.
   */
  return ch->n == 0 ? data_alloc (len) : malloc (len ? len : 1);
}

void
freq_next (struct freq *r)
{
  struct freq_full *rf = (struct freq_full *) r;

  rf->priv.layer++;
  dispatch (rf);
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
    free (payload);
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

/* ---- opening ---- */

static void open_next (struct chain *ch);

static void
open_finished (struct chain *ch, uint32_t status, const char *msg)
{
  chain_open_cb cb = ch->open_cb;
  void *opaque = ch->open_opaque;

  if (status) {
    cb (opaque, NULL, NULL, status, msg);
    chain_unref (ch);           /* the owner's reference: none now */
  }
  else
    cb (opaque, ch, &ch->caps, 0, NULL);
}

void
fopen_done (struct fopen *o, void *handle)
{
  struct chain *ch = o->priv->ch;
  size_t i = ch->opening - 1;

  ch->handles[i] = handle;
  ch->opened[i] = true;
  ch->opening--;
  if (ch->in_open_call)
    ch->open_done_early = true;
  else
    open_next (ch);
}

void
fopen_fail (struct fopen *o, uint32_t status, const char *msg)
{
  struct chain *ch = o->priv->ch;

  if (ch->in_open_call)
    ch->open_done_early = true;
  ch->opening = (size_t) -1;    /* no more opening */
  open_finished (ch, status ? status : HP_EIO, msg ? msg : "open failed");
}

static void
open_next (struct chain *ch)
{
  while (ch->opening != (size_t) -1 && ch->opening > 0) {
    size_t i = ch->opening - 1;
    const struct filter *f = filter_at (i);
    bool early, failed;

    if (!f->open) {
      /* No state of its own: it offers what is below, read-only if so
       * asked.
       */
      if (ch->readonly[i])
        ch->caps.can_write = false;
      ch->opening--;
      continue;
    }
    ch->o.readonly = ch->readonly[i];
    ch->o.next = &ch->links[i];
    ch->in_open_call = true;
    ch->open_done_early = false;
    ch->refs++;                 /* an fopen_fail in the call drops the owner's */
    depth++;
    f->open (&ch->o);
    depth--;
    ch->in_open_call = false;
    early = ch->open_done_early;
    failed = ch->opening == (size_t) -1;
    chain_unref (ch);
    if (failed || !early)
      return;                   /* failed, or fopen_done will go on */
  }
  if (ch->opening == 0) {
    if (ch->readonly[0])
      ch->caps.can_write = false;
    open_finished (ch, 0, NULL);
  }
}

static void
on_backend_open (void *opaque, struct bhandle *bh, json_t *j,
                 uint32_t status, const char *msg)
{
  struct chain *ch = opaque;
  const char *why = NULL;

  if (!bh) {
    open_finished (ch, status ? status : HP_EIO, msg);
    return;
  }
  ch->bh = bh;
  if (caps_from_json (j, &ch->caps, &why) == -1) {
    open_finished (ch, HP_EIO, why);
    return;
  }
  ch->opening = ch->n;
  open_next (ch);
}

void
chain_open (const char *export, bool readonly, bool tls, const char *client,
            chain_open_cb cb, void *opaque)
{
  struct chain *ch = calloc (1, sizeof *ch);
  size_t i, n = nr_filters ();

  if (!ch || !(ch->handles = calloc (n + 1, sizeof *ch->handles)) ||
      !(ch->opened = calloc (n + 1, sizeof *ch->opened)) ||
      !(ch->readonly = calloc (n + 1, sizeof *ch->readonly)) ||
      !(ch->links = calloc (n + 1, sizeof *ch->links)) ||
      !(ch->peer = strdup (client)) ||
      !(ch->o.priv = malloc (sizeof *ch->o.priv))) {
    if (ch) {
      free (ch->handles);
      free (ch->opened);
      free (ch->readonly);
      free (ch->links);
      free (ch->peer);
      free (ch);
    }
    cb (opaque, NULL, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  ch->n = n;
  ch->refs = 1;
  ch->open_cb = cb;
  ch->open_opaque = opaque;
  ch->o.priv->ch = ch;
  ch->o.caps = &ch->caps;
  ch->o.export = export;
  ch->o.peer = ch->peer;
  ch->readonly[0] = readonly;
  for (i = 0; i < n; ++i) {
    ch->links[i].ch = ch;
    ch->links[i].layer = i + 1;
    ch->readonly[i + 1] = filter_at (i)->readonly_below || ch->readonly[i];
  }
  backend_open (export, ch->readonly[n], tls, client, on_backend_open, ch);
}

/* ---- connections ---- */

bool
chain_accept (int fd, const char *peer)
{
  size_t i, j;

  for (i = 0; i < nr_filters (); ++i) {
    const struct filter *f = filter_at (i);

    if (f->accept && !f->accept (fd, peer)) {
      /* Undo the accepts that counted this client; a filter that only
       * watches closes (exitlast) never saw it.
       */
      for (j = 0; j < i; ++j)
        if (filter_at (j)->accept && filter_at (j)->closed)
          filter_at (j)->closed ();
      return false;
    }
  }
  return true;
}

void
chain_closed (void)
{
  size_t i;

  for (i = 0; i < nr_filters (); ++i)
    if (filter_at (i)->closed)
      filter_at (i)->closed ();
}
