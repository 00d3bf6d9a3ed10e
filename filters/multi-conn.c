/* filters/multi-conn.c: enable, emulate or disable multi-conn
 * (nbdkit-multi-conn-filter(1)).
 *
 * multi-conn-mode= decides what the export advertises: emulate (and
 * auto over a layer without multi-conn) advertises it and makes it
 * true by replaying a client's flush, and the flush that stands for a
 * FUA write, on every connection of the export; plugin (and auto over
 * a layer with multi-conn) leaves it as below; disable hides it;
 * unsafe advertises it without doing anything.  multi-conn-track-dirty=
 * decides which flushes may be skipped because nothing they would
 * cover has happened; multi-conn-exportname= whether connections to
 * different export names are one export or several.
 *
 * Owns the groups of open connections (one for the server, or one per
 * export name) with their dirty state, and per connection its link to
 * the layer below, kept so that another connection's flush can be
 * replayed on it.  A replayed flush goes to one connection after the
 * other, oldest first, and the first failure fails the client's
 * request.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum mode { M_AUTO, M_EMULATE, M_PLUGIN, M_DISABLE, M_UNSAFE };
enum track { T_CONN, T_FAST, T_OFF };

static const char *const mode_names[] = {
  "auto", "emulate", "plugin", "disable", "unsafe",
};

static enum mode mode = M_AUTO;
static enum track track = T_CONN;
static bool by_exportname;

static int
mc_config (const char *key, const char *value)
{
  size_t i;

  if (strcmp (key, "multi-conn-mode") == 0) {
    for (i = 0; i < sizeof mode_names / sizeof mode_names[0]; ++i)
      if (strcmp (value, mode_names[i]) == 0) {
        mode = (enum mode) i;
        return 0;
      }
    nbdkit_error ("%s=%s: unknown multi-conn mode: use auto, emulate, "
                  "plugin, disable or unsafe", key, value);
    return -1;
  }
  if (strcmp (key, "multi-conn-track-dirty") == 0) {
    if (strcmp (value, "connection") == 0 || strcmp (value, "conn") == 0)
      track = T_CONN;
    else if (strcmp (value, "fast") == 0)
      track = T_FAST;
    else if (strcmp (value, "off") == 0)
      track = T_OFF;
    else {
      nbdkit_error ("%s=%s: unknown dirty tracking level: use connection "
                    "(or conn), fast or off", key, value);
      return -1;
    }
    return 0;
  }
  return fparse_bool (key, value, &by_exportname);
}

/* ---- connections and their groups ---- */

#define D_READ  1u              /* read (or cached) since its last flush */
#define D_WRITE 2u              /* written since its last flush */

struct group;

struct mc_conn {
  struct group *g;
  struct mc_conn *prev, *next;  /* in the group, oldest first */
  struct fnext *below;
  bool emulate;                 /* replay flushes on the whole group */
  bool below_multi_conn;
  bool can_flush;
  bool closed;                  /* below is gone: never use it again */
  unsigned refs;                /* the connection itself, replays */
  unsigned dirty;               /* D_* (track=conn) */
};

struct group {
  char *name;                   /* multi-conn-exportname=true: the name */
  struct mc_conn *head, *tail;
  bool dirty;                   /* written since the last flush */
  struct group *next;
};

static struct group *groups;

static struct group *
group_get (const char *name)
{
  struct group *g;

  for (g = groups; g; g = g->next)
    if (!by_exportname || strcmp (g->name, name) == 0)
      return g;
  g = calloc (1, sizeof *g);
  if (!g)
    return NULL;
  if (by_exportname && !(g->name = strdup (name))) {
    free (g);
    return NULL;
  }
  g->next = groups;
  groups = g;
  return g;
}

static void
group_put (struct group *g)
{
  struct group **p;

  if (g->head)
    return;
  for (p = &groups; *p; p = &(*p)->next)
    if (*p == g) {
      *p = g->next;
      break;
    }
  free (g->name);
  free (g);
}

static void
conn_put (struct mc_conn *c)
{
  if (--c->refs == 0)
    free (c);
}

static void
refuse (struct fopen *o, uint32_t status, const char *why)
{
  nbdkit_error ("%s", why);
  fopen_fail (o, status, why);
}

static void
mc_open (struct fopen *o)
{
  struct export_caps *caps = o->caps;
  struct mc_conn *c;
  enum mode m = mode;

  /* As nbdkit: a backend that serializes connections never has
   * multi-conn.
   */
  if (m == M_AUTO && server_thread_model () == 0)
    m = M_DISABLE;
  if (m == M_AUTO)
    m = caps->can_multi_conn ? M_PLUGIN : M_EMULATE;
  if (m == M_EMULATE && !caps->can_flush) {
    refuse (o, HP_EINVAL, "multi-conn filter: emulating multi-conn requires "
            "the layer below to support flush (use multi-conn-mode=plugin "
            "or disable)");
    return;
  }
  c = calloc (1, sizeof *c);
  if (!c || !(c->g = group_get (o->export))) {
    free (c);
    refuse (o, HP_ENOMEM, "multi-conn filter: out of memory");
    return;
  }
  c->below = o->next;
  c->emulate = m == M_EMULATE;
  c->below_multi_conn = caps->can_multi_conn;
  c->can_flush = caps->can_flush;
  c->refs = 1;
  c->prev = c->g->tail;
  if (c->g->tail)
    c->g->tail->next = c;
  else
    c->g->head = c;
  c->g->tail = c;

  switch (m) {
  case M_EMULATE:
  case M_UNSAFE:
    caps->can_multi_conn = true;
    break;
  case M_DISABLE:
    caps->can_multi_conn = false;
    break;
  case M_AUTO:
  case M_PLUGIN:
    break;
  }
  nbdkit_debug ("multi-conn filter: %s: export '%s': %s", o->peer, o->export,
                m == M_EMULATE ? "emulating multi-conn" :
                m == M_PLUGIN ? "multi-conn as the layer below" :
                m == M_DISABLE ? "multi-conn disabled" :
                "multi-conn advertised (unsafe)");
  fopen_done (o, c);
}

static void
mc_close (void *handle)
{
  struct mc_conn *c = handle;
  struct group *g = c->g;

  if (c->prev)
    c->prev->next = c->next;
  else
    g->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    g->tail = c->prev;
  c->closed = true;
  c->below = NULL;
  group_put (g);
  c->g = NULL;
  conn_put (c);
}

static void
mark (struct mc_conn *c, unsigned what)
{
  if (track == T_OFF)
    return;
  if (what & D_WRITE)
    c->g->dirty = true;
  if (track == T_CONN)
    c->dirty |= what;
}

/* ---- flushing ---- */

/* A flush made for r (a client's flush, or the flush that completes an
 * emulated FUA write): replayed on the connections in targets, one
 * after the other.
 */
struct replay {
  struct freq *r;
  struct mc_conn *self;
  size_t n, i;
  struct mc_conn **targets;     /* each holds a reference */
  unsigned *was;                /* their dirty bits before */
};

static void replay_next (struct replay *p);

static void
replay_free (struct replay *p)
{
  size_t i;

  for (i = 0; i < p->n; ++i)
    conn_put (p->targets[i]);
  free (p->targets);
  free (p->was);
  free (p);
}

static void
on_replayed (void *opaque, const struct hp_header *reply, void *payload,
             uint32_t len)
{
  struct replay *p = opaque;
  size_t i;

  if (!reply || reply->status) {
    /* What was not flushed stays dirty. */
    if (p->self->g)
      p->self->g->dirty = true;
    for (i = p->i - 1; i < p->n; ++i)
      p->targets[i]->dirty |= p->was[i] | D_WRITE;
    freq_reply_from (p->r, reply, payload, len);
    replay_free (p);
    return;
  }
  payload_free (payload);
  replay_next (p);
}

static void
replay_next (struct replay *p)
{
  /* A connection closed since the replay began has nothing left to
   * flush.
   */
  while (p->i < p->n && p->targets[p->i]->closed)
    p->i++;
  if (p->i == p->n) {
    freq_reply (p->r, NULL, 0, 0);
    replay_free (p);
    return;
  }
  p->i++;
  fnext_request (p->targets[p->i - 1]->below, HP_FLUSH, 0, 0, 0, NULL,
                 on_replayed, p);
}

/* Emulation: flush the connections of the group that need it. */
static void
flush_group (struct mc_conn *self, struct freq *r)
{
  struct group *g = self->g;
  struct replay *p;
  struct mc_conn *c;
  size_t n = 0;

  if (track != T_OFF && !g->dirty) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  for (c = g->head; c; c = c->next)
    n++;
  p = calloc (1, sizeof *p);
  if (!p || !(p->targets = calloc (n, sizeof *p->targets)) ||
      !(p->was = calloc (n, sizeof *p->was))) {
    if (p) {
      free (p->targets);
      free (p);
    }
    freq_reply_error (r, HP_ENOMEM, "multi-conn filter: out of memory");
    return;
  }
  p->r = r;
  p->self = self;
  if (track != T_OFF)
    g->dirty = false;
  for (c = g->head; c; c = c->next) {
    /* With track=conn a connection that neither wrote nor read since
     * its last flush has nothing to flush or forget.
     */
    if (!c->can_flush || (track == T_CONN && !c->dirty))
      continue;
    p->was[p->n] = c->dirty;
    c->dirty = 0;
    c->refs++;
    p->targets[p->n++] = c;
  }
  replay_next (p);
}

/* Without emulation: this connection's flush, unless nothing needs it. */
struct own_flush {
  struct freq *r;
  struct mc_conn *self;
  unsigned was;
};

static void
on_own_flush (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct own_flush *f = opaque;

  if ((!reply || reply->status) && f->self->g) {
    f->self->g->dirty = true;
    f->self->dirty |= f->was | D_WRITE;
  }
  freq_reply_from (f->r, reply, payload, len);
  conn_put (f->self);
  free (f);
}

static void
flush_own (struct mc_conn *self, struct freq *r)
{
  struct group *g = self->g;
  struct own_flush *f;
  struct mc_conn *c;

  if (track == T_OFF) {
    freq_next (r);
    return;
  }
  if (!g->dirty) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  f = malloc (sizeof *f);
  if (!f) {
    freq_reply_error (r, HP_ENOMEM, "multi-conn filter: out of memory");
    return;
  }
  f->r = r;
  f->self = self;
  f->was = self->dirty;
  self->refs++;
  if (track == T_FAST || self->below_multi_conn) {
    /* One flush covers every connection. */
    g->dirty = false;
    for (c = g->head; c; c = c->next)
      c->dirty = 0;
  }
  else
    /* Only this connection is clean after it: the export as a whole
     * stays dirty, so later flushes on any connection go down too.
     */
    self->dirty = 0;
  fnext_request (freq_below (r), HP_FLUSH, 0, 0, 0, NULL, on_own_flush, f);
}

static void
mc_flush (void *handle, struct freq *r)
{
  struct mc_conn *c = handle;

  if (c->emulate)
    flush_group (c, r);
  else
    flush_own (c, r);
}

/* ---- reads and writes: mark the connection dirty ---- */

struct tracked {
  struct freq *r;
  struct mc_conn *c;
  unsigned what;                /* D_* to mark on completion */
  bool then_flush;              /* an emulated FUA write */
};

static void
on_tracked (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct tracked *t = opaque;
  struct mc_conn *c = t->c;

  /* A write that failed may still have written some of its data. */
  if (c->g)
    mark (c, t->what);
  if (t->then_flush && reply && reply->status == 0 && c->g) {
    payload_free (payload);
    flush_group (c, t->r);
  }
  else
    freq_reply_from (t->r, reply, payload, len);
  conn_put (c);
  free (t);
}

/* Send r down as a sub-request and mark c with what on its reply. */
static void
send_tracked (struct mc_conn *c, struct freq *r, uint16_t flags,
              unsigned what, bool then_flush)
{
  struct tracked *t = malloc (sizeof *t);
  void *data;

  if (!t) {
    freq_reply_error (r, HP_ENOMEM, "multi-conn filter: out of memory");
    return;
  }
  t->r = r;
  t->c = c;
  t->what = what;
  t->then_flush = then_flush;
  c->refs++;
  data = r->data;
  r->data = NULL;               /* a write's payload goes with it */
  fnext_request (freq_below (r), r->type, flags, r->offset, r->count, data,
                 on_tracked, t);
}

/* pread and cache: data that the connection below may keep. */
static void
mc_read (void *handle, struct freq *r)
{
  struct mc_conn *c = handle;

  if (track != T_CONN) {
    freq_next (r);
    return;
  }
  mark (c, D_READ);
  send_tracked (c, r, r->flags, D_READ, false);
}

/* pwrite, trim and zero. */
static void
mc_write (void *handle, struct freq *r)
{
  struct mc_conn *c = handle;

  if (r->flags & HP_FLAG_FUA) {
    if (c->emulate)
      /* The write without FUA, then the flush of the group that FUA
       * stands for.
       */
      send_tracked (c, r, r->flags & ~HP_FLAG_FUA, D_WRITE, true);
    else
      /* Durable when answered: nothing left for a flush to do. */
      freq_next (r);
    return;
  }
  if (track == T_OFF)
    freq_next (r);
  else
    send_tracked (c, r, r->flags, D_WRITE, false);
}

static const char *const keys[] = {
  "multi-conn-mode", "multi-conn-track-dirty", "multi-conn-exportname", NULL
};

const struct filter multi_conn_filter = {
  .name = "multi-conn",
  .description = "enable, emulate or disable multi-conn",
  .config_help =
    "multi-conn-mode=MODE          auto (default), emulate, plugin,\n"
    "                              disable or unsafe\n"
    "multi-conn-track-dirty=LEVEL  connection (default, or conn), fast\n"
    "                              or off: which flushes may be skipped\n"
    "multi-conn-exportname=BOOL    replay flushes only on connections to\n"
    "                              the same export name (default false)",
  .keys = keys,
  .config = mc_config,
  .open = mc_open,
  .close = mc_close,
  .pread = mc_read,
  .cache = mc_read,
  .pwrite = mc_write,
  .trim = mc_write,
  .zero = mc_write,
  .flush = mc_flush,
};
