/* nbdkit front end: the chain's work outside an open export --
 * listing the exports (NBD_OPT_LIST) through the layers, and the
 * filters' accept, closed and stopping callbacks.
 *
 * Owns struct flist (an export listing on its way through the layers).
 * A listing goes down the layers' list_exports, nearest the client
 * first; a filter that asks below (flist_next) is called back on the
 * way up, and the backend process answers at the bottom.  The chain of
 * an open export, its requests and its reopening are in filter-chain.c.
 */

#include <config.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../filters/filter.h"

static uint64_t listings;       /* so far */

/* Layer i: a filter, or the backend at the bottom. */
static const struct filter *
layer_at (size_t i)
{
  return i < opt.nr_filters ? opt.filters[i] : &backend_layer;
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

    if (chain_tracing (false))
      log_conn_debug (bproc_name (p->bp), lf->pub.connection,
                      "%s: list_exports readonly=%d tls=%d",
                      f->name, lf->pub.readonly, lf->pub.tls);
    if (f->list_exports) {
      f->list_exports (&lf->pub);
      return;
    }
    p->layer++;
  }
  if (chain_tracing (false))
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

/* flist_default_export: the backend's DEFAULT_EXPORT. */
struct default_ask {
  struct flist *l;
  flist_default_fn done;
};

static void
on_backend_default (void *opaque, const struct hp_header *reply,
                    void *payload, uint32_t len)
{
  struct default_ask *a = opaque;
  const char *why = "the backend is not running", *name = NULL;
  uint32_t status = HP_ESHUTDOWN;
  json_t *j = NULL;

  if (reply && reply->status) {
    status = reply->status;
    why = payload ? (const char *) payload : hp_error_name (reply->status);
  }
  else if (reply && (j = bproc_parse_json (payload, len, &why)) != NULL &&
           (name = json_string_value (json_object_get (j, "name"))) != NULL)
    status = 0;
  else if (reply) {
    status = HP_EIO;
    if (j)
      why = "the backend's default export is not valid";
  }
  a->done (a->l, status ? NULL : name, status, status ? why : NULL);
  json_decref (j);
  payload_free (payload);
  free (a);
}

void
flist_default_export (struct flist *l, flist_default_fn done)
{
  struct default_ask *a = malloc (sizeof *a);

  if (!a) {
    done (l, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  a->l = l;
  a->done = done;
  bproc_default_export (l->priv->bp, l->connection, l->readonly, l->tls,
                        on_backend_default, a);
}

void
chain_list_exports (struct backend_proc *bp, uint64_t connection,
                    bool readonly, bool tls, const char *peer,
                    chain_list_cb cb, void *opaque)
{
  struct flist_full *lf = calloc (1, sizeof *lf);

  if (!lf || !(lf->priv.dones = calloc (opt.nr_filters + 1, sizeof (flist_fn)))) {
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
