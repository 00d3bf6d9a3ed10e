/* nbdkit front end: the chain of layers of one open export.
 *
 * Owns struct chain (one per open export of a connection: each layer's
 * handle), struct freq (a request at one layer) and struct flist (an
 * export listing on its way through the layers).  Layers are numbered
 * from the client down: layer 0 is the first --filter, the last layer
 * (nr_filters) is the backend process (backend-layer.c), and all are
 * a struct filter: there is no special case for "no filters".  A
 * request travels down with freq_next and completes back up exactly
 * once; filters may issue sub-requests to the layer below.
 *
 * Completions that happen inside a filter's callback (a filter that
 * answers at once, or a channel that fails a request as it is sent)
 * are deferred to a zero-delay timer, so no callback ever sees its own
 * work complete before it returned, and the stack stays flat however
 * many requests a client pipelines.
 *
 * A chain lives while it is referenced: by its owner until chain_close,
 * and by every request in flight in any of its layers.  The layers'
 * close callbacks (the backend's: CLOSE) run when the last goes.
 *
 * Payload buffers come from the bottom layer's allocator
 * (chain_data_alloc) and are released with payload_free wherever they
 * end: whether they are shared memory is the bottom layer's business.
 */

#include <config.h>

#include <inttypes.h>
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
  size_t n;                     /* layers: the filters, then the backend */
  struct backend_proc *bp;
  uint64_t connection;          /* its number, for -v */
  bool description;             /* the client asked for the description */
  void **handles;               /* each layer's handle */
  bool *opened;                 /* which layers' open succeeded */
  bool *readonly;               /* asked of each layer */
  struct fnext *links;          /* links[i]: below layer i */
  unsigned refs;
  char *peer;
  char *export;
  /* Opening. */
  struct fopen o;
  size_t opening;               /* filters below this index are open */
  bool in_open_call;
  bool open_done_early;         /* fopen_done inside the open call */
  chain_open_cb open_cb;
  void *open_opaque;
  struct export_caps caps;
};

/* Free requests, kept for the next ones. */
#define MAX_SPARE_FREQS 256
static struct freq_full *spare_freqs;
static size_t nr_spare_freqs;

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
static uint64_t listings;       /* so far */

/* ---- -v: every call at every layer, as nbdkit traces them ---- */

/* -D nbdkit.backend.controlpath=0 and -D nbdkit.backend.datapath=0
 * silence the two classes.
 */
static bool
tracing (bool datapath)
{
  static int control = -1, data = -1;

  if (!opt.verbose)
    return false;
  if (control == -1) {
    control = server_debug_flag ("backend.controlpath", 1);
    data = server_debug_flag ("backend.datapath", 1);
  }
  return datapath ? data : control;
}

static const char *
layer_name (const struct chain *ch, size_t i)
{
  return i < opt.nr_filters ? opt.filters[i]->name : bproc_name (ch->bp);
}

static void
trace_request (const struct chain *ch, size_t layer, const struct freq *r)
{
  const char *name = layer_name (ch, layer), *conn = bproc_name (ch->bp);
  uint64_t c = ch->connection;
  int fua = !!(r->flags & HP_FLAG_FUA);

  switch (r->type) {
  case HP_PREAD:
    log_conn_debug (conn, c, "%s: pread count=%" PRIu32 " offset=%" PRIu64,
                    name, r->count, r->offset);
    break;
  case HP_PWRITE:
    log_conn_debug (conn, c, "%s: pwrite count=%" PRIu32 " offset=%" PRIu64
                    " fua=%d", name, r->count, r->offset, fua);
    break;
  case HP_FLUSH:
    log_conn_debug (conn, c, "%s: flush", name);
    break;
  case HP_TRIM:
    log_conn_debug (conn, c, "%s: trim count=%" PRIu32 " offset=%" PRIu64
                    " fua=%d", name, r->count, r->offset, fua);
    break;
  case HP_ZERO:
    log_conn_debug (conn, c, "%s: zero count=%" PRIu32 " offset=%" PRIu64
                    " may_trim=%d fua=%d fast=%d", name, r->count,
                    r->offset, !!(r->flags & HP_FLAG_MAY_TRIM), fua,
                    !!(r->flags & HP_FLAG_FAST_ZERO));
    break;
  case HP_CACHE:
    log_conn_debug (conn, c, "%s: cache count=%" PRIu32 " offset=%" PRIu64,
                    name, r->count, r->offset);
    break;
  case HP_EXTENTS:
    log_conn_debug (conn, c, "%s: extents count=%" PRIu32 " offset=%" PRIu64
                    " req_one=%d", name, r->count, r->offset,
                    !!(r->flags & HP_FLAG_REQ_ONE));
    break;
  }
}

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

static void
chain_free (struct chain *ch)
{
  size_t i;

  /* Close from the client down, as the layers were stacked. */
  for (i = 0; i < ch->n; ++i) {
    if (ch->opened[i] && tracing (false))
      log_conn_debug (bproc_name (ch->bp), ch->connection, "%s: close",
                      layer_name (ch, i));
    if (ch->opened[i] && layer_at (i)->close)
      layer_at (i)->close (ch->handles[i]);
  }
  caps_free (&ch->caps);
  free (ch->handles);
  free (ch->opened);
  free (ch->readonly);
  free (ch->links);
  free (ch->peer);
  free (ch->export);
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

/* Hand r to the layer it is at (or the first below it that handles
 * its type).
 */
static void
dispatch (struct freq_full *rf)
{
  struct chain *ch = rf->priv.ch;

  /* The bottom layer handles every type: the loop ends there. */
  for (;;) {
    freq_fn fn = entry_of (layer_at (rf->priv.layer), rf->pub.type);

    if (tracing (true))
      trace_request (ch, rf->priv.layer, &rf->pub);
    if (fn) {
      depth++;
      fn (ch->handles[rf->priv.layer], &rf->pub);
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
    const struct filter *f = layer_at (i);
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
    ch->o.next = i + 1 < ch->n ? &ch->links[i] : NULL;
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

void
chain_open (struct backend_proc *bp, uint64_t connection, const char *export,
            bool readonly, bool tls, bool description, const char *client,
            chain_open_cb cb, void *opaque)
{
  struct chain *ch = calloc (1, sizeof *ch);
  size_t i, n = nr_layers ();

  if (!ch || !(ch->handles = calloc (n, sizeof *ch->handles)) ||
      !(ch->opened = calloc (n, sizeof *ch->opened)) ||
      !(ch->readonly = calloc (n, sizeof *ch->readonly)) ||
      !(ch->links = calloc (n, sizeof *ch->links)) ||
      !(ch->peer = strdup (client)) ||
      !(ch->export = strdup (export)) ||
      !(ch->o.priv = malloc (sizeof *ch->o.priv))) {
    if (ch) {
      free (ch->handles);
      free (ch->opened);
      free (ch->readonly);
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
  ch->open_cb = cb;
  ch->open_opaque = opaque;
  ch->o.priv->ch = ch;
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
  /* From the bottom (the backend) up; traced from the top down, as
   * nbdkit's layers call each other.
   */
  for (i = 0; i < n && tracing (false); ++i)
    log_conn_debug (bproc_name (bp), connection,
                    "%s: open readonly=%d exportname=\"%s\" tls=%d",
                    layer_name (ch, i), ch->readonly[i], export, tls);
  ch->opening = n;
  open_next (ch);
}

/* ---- listing the exports ---- */

struct flist_private {
  struct backend_proc *bp;
  size_t layer;                 /* where the listing is */
  flist_fn *dones;              /* dones[i]: layer i asked below */
  chain_list_cb cb;
  void *opaque;
};

struct flist_full {
  struct flist pub;
  struct flist_private priv;
};

int
flist_add (struct flist *l, const char *name, const char *desc)
{
  struct fexport *e;

  if (l->nr_exports % 16 == 0) {
    e = realloc (l->exports, (l->nr_exports + 16) * sizeof *e);
    if (!e)
      return -1;
    l->exports = e;
  }
  e = &l->exports[l->nr_exports];
  e->name = strdup (name);
  e->description = desc ? strdup (desc) : NULL;
  if (!e->name || (desc && !e->description)) {
    free (e->name);
    free (e->description);
    return -1;
  }
  l->nr_exports++;
  return 0;
}

void
flist_clear (struct flist *l)
{
  size_t i;

  for (i = 0; i < l->nr_exports; ++i) {
    free (l->exports[i].name);
    free (l->exports[i].description);
  }
  free (l->exports);
  l->exports = NULL;
  l->nr_exports = 0;
}

/* Back up to the nearest layer above that asked below, or to the
 * caller at the top.
 */
static void
list_up (struct flist_full *lf, uint32_t status, const char *msg)
{
  struct flist_private *p = &lf->priv;

  while (p->layer > 0) {
    flist_fn done = p->dones[--p->layer];

    if (done) {
      p->dones[p->layer] = NULL;
      done (&lf->pub, status, msg);
      return;
    }
  }
  p->cb (p->opaque, status, msg, lf->pub.exports, lf->pub.nr_exports);
  flist_clear (&lf->pub);
  free (p->dones);
  free (lf);
}

static void
on_backend_list (void *opaque, const struct hp_header *reply,
                 void *payload, uint32_t len)
{
  struct flist_full *lf = opaque;
  const char *why = "the backend is not running";
  uint32_t status = HP_ESHUTDOWN;
  json_t *j = NULL, *exports, *e;
  size_t i;

  if (reply && reply->status) {
    status = reply->status;
    why = payload ? (const char *) payload : hp_error_name (reply->status);
  }
  else if (reply && (j = bproc_parse_json (payload, len, &why)) != NULL &&
           json_is_array (exports = json_object_get (j, "exports"))) {
    status = 0;
    json_array_foreach (exports, i, e) {
      const char *name = json_string_value (json_object_get (e, "name"));
      const char *desc =
        json_string_value (json_object_get (e, "description"));

      if (name && flist_add (&lf->pub, name, desc) == -1) {
        status = HP_ENOMEM;
        why = "out of memory";
        break;
      }
    }
  }
  else if (reply) {
    status = HP_EIO;
    if (j)
      why = "the backend's export list is not valid";
  }
  list_up (lf, status, status ? why : NULL);
  json_decref (j);
  payload_free (payload);
}

/* Down to the next layer that lists, or the backend. */
static void
list_down (struct flist_full *lf)
{
  struct flist_private *p = &lf->priv;

  while (p->layer < opt.nr_filters) {
    const struct filter *f = layer_at (p->layer);

    if (tracing (false))
      log_conn_debug (bproc_name (p->bp), lf->pub.connection,
                      "%s: list_exports readonly=%d tls=%d",
                      f->name, lf->pub.readonly, lf->pub.tls);
    if (f->list_exports) {
      f->list_exports (&lf->pub);
      return;
    }
    p->layer++;
  }
  if (tracing (false))
    log_conn_debug (bproc_name (p->bp), lf->pub.connection,
                    "%s: list_exports readonly=%d tls=%d",
                    bproc_name (p->bp), lf->pub.readonly, lf->pub.tls);
  bproc_list_exports (p->bp, lf->pub.connection, lf->pub.readonly,
                      lf->pub.tls, on_backend_list, lf);
}

void
flist_next (struct flist *l, flist_fn done)
{
  struct flist_full *lf = (struct flist_full *) l;

  lf->priv.dones[lf->priv.layer++] = done;
  list_down (lf);
}

void
flist_done (struct flist *l)
{
  list_up ((struct flist_full *) l, 0, NULL);
}

void
flist_fail (struct flist *l, uint32_t status, const char *msg)
{
  list_up ((struct flist_full *) l, status ? status : HP_EIO,
           msg ? msg : "listing the exports failed");
}

void
chain_list_exports (struct backend_proc *bp, uint64_t connection,
                    bool readonly, bool tls, const char *peer,
                    chain_list_cb cb, void *opaque)
{
  struct flist_full *lf = calloc (1, sizeof *lf);

  if (!lf || !(lf->priv.dones = calloc (nr_layers (), sizeof (flist_fn)))) {
    free (lf);
    cb (opaque, HP_ENOMEM, "out of memory", NULL, 0);
    return;
  }
  lf->pub.readonly = readonly;
  lf->pub.tls = tls;
  lf->pub.peer = peer;
  lf->pub.connection = connection;
  lf->pub.id = ++listings;
  lf->pub.priv = &lf->priv;
  lf->priv.bp = bp;
  lf->priv.cb = cb;
  lf->priv.opaque = opaque;
  list_down (lf);
}

/* ---- connections ---- */

bool
chain_accept (int fd, const char *peer)
{
  size_t i, j;

  for (i = 0; i < opt.nr_filters; ++i) {
    const struct filter *f = layer_at (i);

    if (f->accept && !f->accept (fd, peer)) {
      /* Undo the accepts that counted this client; a filter that only
       * watches closes (exitlast) never saw it.
       */
      for (j = 0; j < i; ++j)
        if (layer_at (j)->accept && layer_at (j)->closed)
          layer_at (j)->closed ();
      return false;
    }
  }
  return true;
}

void
chain_stopping (void)
{
  size_t i;

  for (i = 0; i < opt.nr_filters; ++i)
    if (layer_at (i)->stopping)
      layer_at (i)->stopping ();
}

void
chain_closed (void)
{
  size_t i;

  for (i = 0; i < opt.nr_filters; ++i)
    if (layer_at (i)->closed)
      layer_at (i)->closed ();
}
