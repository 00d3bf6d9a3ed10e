/* filters/noparallel.c: serialize requests or connections
 * (nbdkit-noparallel-filter(1)).
 *
 * serialize=requests (the default): each connection has at most one
 * request in flight below this filter; the others wait in order.
 * serialize=all-requests: at most one request in flight below the
 * filter across all connections.  serialize=connections: one open
 * export at a time (a later client's open waits until the current one
 * is closed), requests serialized within it, and no multi-conn.
 *
 * Owns the queues of waiting requests (one per connection, or one for
 * the server) and, for serialize=connections, the connection holding
 * the server and the queue of opens waiting for it.  A request is
 * sent down as a sub-request so that its reply, which completes it,
 * also starts the next one.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum serialize { S_REQUESTS, S_ALL_REQUESTS, S_CONNECTIONS };

static const char *const mode_names[] = {
  "requests", "all-requests", "connections",
};

static enum serialize mode = S_REQUESTS;

static int
noparallel_config (const char *key, const char *value)
{
  size_t i;

  for (i = 0; i < sizeof mode_names / sizeof mode_names[0]; ++i)
    if (strcmp (value, mode_names[i]) == 0) {
      mode = (enum serialize) i;
      return 0;
    }
  nbdkit_error ("%s=%s: unknown serialize mode: use requests, all-requests "
                "or connections", key, value);
  return -1;
}

/* ---- request queues ---- */

struct waiting {
  struct freq *r;
  struct queue *q;
  struct waiting *next;
};

struct queue {
  bool busy;                    /* a request is in flight below */
  struct waiting *head, *tail;
};

/* serialize=all-requests: the one queue. */
static struct queue server_queue;

struct np_handle {
  struct queue q;               /* requests and connections modes */
};

static void send_down (struct waiting *w);

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct waiting *w = opaque;
  struct queue *q = w->q;
  struct freq *r = w->r;

  free (w);
  /* Start the next one before answering: a request the client sends on
   * seeing this reply then queues behind those already waiting.
   */
  if (q->head) {
    struct waiting *next = q->head;

    q->head = next->next;
    if (!q->head)
      q->tail = NULL;
    send_down (next);
  }
  else
    q->busy = false;
  freq_reply_from (r, reply, payload, len);
}

static void
send_down (struct waiting *w)
{
  struct freq *r = w->r;
  void *data = r->data;

  r->data = NULL;               /* a write's payload goes with it */
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, w);
}

static void
np_request (void *handle, struct freq *r)
{
  struct np_handle *h = handle;
  struct queue *q = mode == S_ALL_REQUESTS ? &server_queue : &h->q;
  struct waiting *w = malloc (sizeof *w);

  if (!w) {
    freq_reply_error (r, HP_ENOMEM, "noparallel filter: out of memory");
    return;
  }
  w->r = r;
  w->q = q;
  w->next = NULL;
  if (!q->busy) {
    q->busy = true;
    send_down (w);
    return;
  }
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
}

/* ---- serialize=connections: one open export at a time ---- */

struct pending_open {
  struct fopen *o;
  struct pending_open *next;
};

static bool held;               /* an export is open */
static struct pending_open *pending_head, *pending_tail;
/* The next waiting open is let in from a timer, not from inside the
 * close of the one before (which runs while its chain is being freed).
 */
static ev_timer admit_timer;
static bool admit_timer_init;

static struct np_handle *
handle_new (void)
{
  return calloc (1, sizeof (struct np_handle));
}

static void
admit (struct fopen *o)
{
  struct np_handle *h = handle_new ();

  if (!h) {
    nbdkit_error ("noparallel filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "noparallel filter: out of memory");
    return;
  }
  held = true;
  fopen_done (o, h);
}

static void
on_admit_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  (void) l;
  (void) t;
  (void) revents;
  /* One at a time: a failed admission frees the server again. */
  while (!held && pending_head) {
    struct pending_open *p = pending_head;

    pending_head = p->next;
    if (!pending_head)
      pending_tail = NULL;
    nbdkit_debug ("noparallel filter: %s: the server is free, opening",
                  p->o->peer);
    admit (p->o);
    free (p);
  }
}

static void
schedule_admit (void)
{
  if (!admit_timer_init) {
    ev_timer_init (&admit_timer, on_admit_timer, 0, 0);
    admit_timer_init = true;
  }
  if (!ev_is_active (&admit_timer))
    ev_timer_start (loop, &admit_timer);
}

static void
noparallel_open (struct fopen *o)
{
  struct np_handle *h;
  struct pending_open *p;

  if (mode != S_CONNECTIONS) {
    h = handle_new ();
    if (!h) {
      nbdkit_error ("noparallel filter: out of memory");
      fopen_fail (o, HP_ENOMEM, "noparallel filter: out of memory");
      return;
    }
    fopen_done (o, h);
    return;
  }

  /* Connections one at a time: multi-conn would be no use. */
  o->caps->can_multi_conn = false;
  if (!held && !pending_head) {
    admit (o);
    return;
  }
  p = malloc (sizeof *p);
  if (!p) {
    nbdkit_error ("noparallel filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "noparallel filter: out of memory");
    return;
  }
  nbdkit_debug ("noparallel filter: %s: waiting until the client being "
                "served is gone (serialize=connections)", o->peer);
  p->o = o;
  p->next = NULL;
  if (pending_tail)
    pending_tail->next = p;
  else
    pending_head = p;
  pending_tail = p;
}

static void
noparallel_close (void *handle)
{
  free (handle);
  if (mode == S_CONNECTIONS) {
    held = false;
    if (pending_head)
      schedule_admit ();
  }
}

static const char *const keys[] = { "serialize", NULL };

const struct filter noparallel_filter = {
  .name = "noparallel",
  .description = "serialize requests or connections",
  .config_help =
    "serialize=MODE      requests (default: one request at a time per\n"
    "                    connection), all-requests (one at a time in all),\n"
    "                    connections (one client at a time)",
  .keys = keys,
  .config = noparallel_config,
  .open = noparallel_open,
  .close = noparallel_close,
  .pread = np_request,
  .pwrite = np_request,
  .flush = np_request,
  .trim = np_request,
  .zero = np_request,
  .cache = np_request,
  .extents = np_request,
};
