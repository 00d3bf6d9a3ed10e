/* backends/rbd/rbd.c: the rbd backend, a Ceph RBD image served through
 * librbd.  This file owns the parameters, the cluster connection (one
 * per process, made in get_ready), the image handles (one per client
 * connection) and the data callbacks.
 *
 * Every request is one librbd asynchronous operation (rbd_aio_*): the
 * thread model is parallel, so as many requests are in flight as the
 * library has worker threads, each waiting on its own completion.
 * librbd's client-side cache is turned off, so that a write is in the
 * cluster when it is answered: every connection, of this process or
 * of another server on another machine, then reads what the others
 * wrote, which is what advertising multi-conn promises.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "nbdkit-backend.h"

static char *pool = NULL;               /* pool= (default "rbd") */
static char *image_name = NULL;         /* image= (magic) */
static char *nspace = NULL;             /* namespace= */
static char *snap = NULL;               /* snap=: read-only */
static char *conf = NULL;               /* conf= */
static char *id = NULL;                 /* id= (default "admin") */
static char *keyring = NULL;            /* keyring= */
static char *cluster_name = NULL;       /* cluster= (default "ceph") */
static bool create = false;             /* create=true */
static int64_t create_size = -1;        /* size= */

static rados_t cluster;
static rados_ioctx_t ioctx;
static bool connected = false;

struct rbd_handle {
  rbd_image_t image;
  bool readonly;
};

/* Ceph's names: no NUL, not empty, no '/' or '@' in pool and image
 * names (the rbd(8) spec separators).
 */
static int
set_name (const char *key, const char *value, char **r, bool no_sep)
{
  if (*value == '\0') {
    nbdkit_error ("%s=: the value must not be empty", key);
    return -1;
  }
  if (no_sep && strpbrk (value, "/@") != NULL) {
    nbdkit_error ("%s=%s: a Ceph %s name cannot contain '/' or '@'",
                  key, value, key);
    return -1;
  }
  free (*r);
  *r = strdup (value);
  if (*r == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

static int
rbdbe_config (const char *key, const char *value)
{
  if (strcmp (key, "pool") == 0)
    return set_name (key, value, &pool, true);
  if (strcmp (key, "image") == 0)
    return set_name (key, value, &image_name, true);
  if (strcmp (key, "namespace") == 0)
    return set_name (key, value, &nspace, true);
  if (strcmp (key, "snap") == 0)
    return set_name (key, value, &snap, false);
  if (strcmp (key, "id") == 0)
    return set_name (key, value, &id, false);
  if (strcmp (key, "cluster") == 0)
    return set_name (key, value, &cluster_name, false);
  if (strcmp (key, "conf") == 0 || strcmp (key, "keyring") == 0) {
    char **r = key[0] == 'c' ? &conf : &keyring;
    if (*value == '\0') {
      nbdkit_error ("%s=: the value must not be empty", key);
      return -1;
    }
    free (*r);
    *r = nbdkit_realpath (value);
    return *r == NULL ? -1 : 0;
  }
  if (strcmp (key, "create") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    create = r;
    return 0;
  }
  if (strcmp (key, "size") == 0) {
    create_size = nbdkit_parse_size (value);
    if (create_size == -1)
      return -1;
    if (create_size == 0) {
      nbdkit_error ("size=%s: an RBD image must not be empty (use a size "
                    "of 1 byte or more, e.g. size=1G)", value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the rbd backend takes pool=, "
                "image=, namespace=, snap=, conf=, id=, keyring=, "
                "cluster=, create= and size=; see nbdkit rbd --help)", key);
  return -1;
}

static int
rbdbe_config_complete (void)
{
  if (image_name == NULL) {
    nbdkit_error ("the image is required: [image=]IMAGE, e.g. "
                  "'nbdkit rbd pool=rbd disk1'");
    return -1;
  }
  if (create && create_size == -1) {
    nbdkit_error ("create=true needs the size of the new image: size=SIZE");
    return -1;
  }
  if (!create && create_size != -1) {
    nbdkit_error ("size=%" PRId64 " is only used with create=true "
                  "(an existing image has its own size)", create_size);
    return -1;
  }
  if (create && snap) {
    nbdkit_error ("create=true and snap=%s do not go together: a new image "
                  "has no snapshots", snap);
    return -1;
  }
  if (pool == NULL && (pool = strdup ("rbd")) == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

/* A message for a librados/librbd error code (negative errno). */
static const char *
cerr (int r)
{
  return strerror (r < 0 ? -r : r);
}

static int
rbdbe_get_ready (void)
{
  int r;
  char user[256];

  snprintf (user, sizeof user, "client.%s", id ? id : "admin");
  r = rados_create2 (&cluster, cluster_name ? cluster_name : "ceph", user, 0);
  if (r < 0) {
    nbdkit_error ("rados_create2 (%s): %s", user, cerr (r));
    return -1;
  }
  /* conf=: that file; without it, librados's own search (CEPH_CONF,
   * /etc/ceph/$cluster.conf, ~/.ceph/$cluster.conf, ./$cluster.conf).
   */
  r = rados_conf_read_file (cluster, conf);
  if (r < 0) {
    if (conf)
      nbdkit_error ("conf=%s: cannot read the Ceph configuration: %s",
                    conf, cerr (r));
    else
      nbdkit_error ("cannot find a Ceph configuration (/etc/ceph/%s.conf, "
                    "or $CEPH_CONF): %s; name one with conf=FILE",
                    cluster_name ? cluster_name : "ceph", cerr (r));
    goto err;
  }
  rados_conf_parse_env (cluster, NULL);
  if (keyring && (r = rados_conf_set (cluster, "keyring", keyring)) < 0) {
    nbdkit_error ("keyring=%s: %s", keyring, cerr (r));
    goto err;
  }
  /* See the top of the file: no client cache, for multi-conn. */
  rados_conf_set (cluster, "rbd_cache", "false");
  r = rados_connect (cluster);
  if (r < 0) {
    nbdkit_error ("cannot connect to the Ceph cluster as %s: %s%s", user,
                  cerr (r),
                  r == -ENOENT || r == -EACCES || r == -EPERM ?
                  " (check id= and keyring=)" : "");
    goto err;
  }
  r = rados_ioctx_create (cluster, pool, &ioctx);
  if (r < 0) {
    nbdkit_error ("pool=%s: %s%s", pool, cerr (r),
                  r == -ENOENT ? " (no such pool in the cluster)" : "");
    rados_shutdown (cluster);
    return -1;
  }
  if (nspace)
    rados_ioctx_set_namespace (ioctx, nspace);
  connected = true;

  if (create) {
    int order = 0;
    r = rbd_create (ioctx, image_name, create_size, &order);
    if (r == -EEXIST) {
      /* Created by an earlier incarnation of this backend, or by
       * another server of a scale-out set: use it if the size fits.
       */
      rbd_image_t im;
      uint64_t size;
      r = rbd_open (ioctx, image_name, &im, NULL);
      if (r < 0) {
        nbdkit_error ("image=%s: %s", image_name, cerr (r));
        return -1;
      }
      r = rbd_get_size (im, &size);
      rbd_close (im);
      if (r < 0) {
        nbdkit_error ("image=%s: rbd_get_size: %s", image_name, cerr (r));
        return -1;
      }
      if (size != (uint64_t) create_size) {
        nbdkit_error ("create=true: image %s/%s already exists with "
                      "%" PRIu64 " bytes, not size=%" PRId64,
                      pool, image_name, size, create_size);
        return -1;
      }
      nbdkit_debug ("image %s/%s exists already with the size asked",
                    pool, image_name);
    }
    else if (r < 0) {
      nbdkit_error ("create=true: cannot create image %s/%s of %" PRId64
                    " bytes: %s", pool, image_name, create_size, cerr (r));
      return -1;
    }
  }
  return 0;

 err:
  rados_shutdown (cluster);
  return -1;
}

static void
rbdbe_unload (void)
{
  if (connected) {
    rados_ioctx_destroy (ioctx);
    rados_shutdown (cluster);
  }
  free (pool);
  free (image_name);
  free (nspace);
  free (snap);
  free (conf);
  free (id);
  free (keyring);
  free (cluster_name);
}

static void
rbdbe_dump_plugin (void)
{
  int major, minor, extra;

  rbd_version (&major, &minor, &extra);
  printf ("librbd_version=%d.%d.%d\n", major, minor, extra);
  rados_version (&major, &minor, &extra);
  printf ("librados_version=%d.%d.%d\n", major, minor, extra);
  fflush (stdout);
}

static void *
rbdbe_open (int readonly)
{
  struct rbd_handle *h;
  int r;

  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  h->readonly = readonly || snap != NULL;
  if (h->readonly)
    r = rbd_open_read_only (ioctx, image_name, &h->image, snap);
  else
    r = rbd_open (ioctx, image_name, &h->image, NULL);
  if (r < 0) {
    if (r == -ENOENT && snap)
      nbdkit_error ("image %s/%s or its snapshot %s does not exist",
                    pool, image_name, snap);
    else if (r == -ENOENT)
      nbdkit_error ("image %s/%s%s%s does not exist (create it with "
                    "create=true size=SIZE, or rbd create)", pool,
                    nspace ? nspace : "", nspace ? "/" : "", image_name);
    else
      nbdkit_error ("cannot open image %s/%s: %s", pool, image_name,
                    cerr (r));
    free (h);
    return NULL;
  }
  return h;
}

static void
rbdbe_close (void *handle)
{
  struct rbd_handle *h = handle;

  rbd_close (h->image);
  free (h);
}

static int64_t
rbdbe_get_size (void *handle)
{
  struct rbd_handle *h = handle;
  uint64_t size;
  int r;

  r = rbd_get_size (h->image, &size);
  if (r < 0) {
    nbdkit_error ("rbd_get_size: %s", cerr (r));
    return -1;
  }
  return size;
}

static int
rbdbe_can_write (void *handle)
{
  struct rbd_handle *h = handle;

  return !h->readonly;
}

static int rbdbe_yes (void *handle) { return 1; }
static int rbdbe_fua (void *handle) { return NBDKIT_FUA_EMULATE; }

/* One asynchronous operation: submit (through the callback), wait for
 * its completion, and map its result to 0 or -1 with errno.
 */
enum aio_op { OP_READ, OP_WRITE, OP_DISCARD, OP_ZERO, OP_FLUSH };

static int
rbdbe_do (struct rbd_handle *h, enum aio_op op, void *buf, uint32_t count,
        uint64_t offset)
{
  rbd_completion_t c;
  ssize_t ret;
  int r;

  r = rbd_aio_create_completion (NULL, NULL, &c);
  if (r < 0) {
    nbdkit_error ("rbd_aio_create_completion: %s", cerr (r));
    errno = -r;
    return -1;
  }
  switch (op) {
  case OP_READ: r = rbd_aio_read (h->image, offset, count, buf, c); break;
  case OP_WRITE: r = rbd_aio_write (h->image, offset, count, buf, c); break;
  case OP_DISCARD: r = rbd_aio_discard (h->image, offset, count, c); break;
  case OP_ZERO:
    r = rbd_aio_write_zeroes (h->image, offset, count, c, 0, 0);
    break;
  case OP_FLUSH: r = rbd_aio_flush (h->image, c); break;
  }
  if (r < 0) {
    rbd_aio_release (c);
    goto fail;
  }
  rbd_aio_wait_for_complete (c);
  ret = rbd_aio_get_return_value (c);
  rbd_aio_release (c);
  if (ret < 0) {
    r = ret;
    goto fail;
  }
  /* A read past the end of the image is short: the NBD layer never asks
   * for one, but zero the rest rather than return stale memory.
   */
  if (op == OP_READ && (uint64_t) ret < count)
    memset ((char *) buf + ret, 0, count - ret);
  return 0;

 fail:
  {
    static const char *const names[] =
      { "read", "write", "discard", "write_zeroes", "flush" };
    nbdkit_error ("rbd_aio_%s at %" PRIu64 " (%" PRIu32 " bytes): %s",
                  names[op], offset, count, cerr (r));
  }
  errno = -r;
  return -1;
}

static int
rbdbe_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  return rbdbe_do (handle, OP_READ, buf, count, offset);
}

static int
rbdbe_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  return rbdbe_do (handle, OP_WRITE, (void *) buf, count, offset);
}

static int
rbdbe_flush (void *handle, uint32_t flags)
{
  return rbdbe_do (handle, OP_FLUSH, NULL, 0, 0);
}

static int
rbdbe_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return rbdbe_do (handle, OP_DISCARD, NULL, count, offset);
}

/* librbd's write_zeroes deallocates whole objects and writes zeroes at
 * the unaligned ends: the range reads as zeroes either way.
 */
static int
rbdbe_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return rbdbe_do (handle, OP_ZERO, NULL, count, offset);
}

/* Extents: rbd_diff_iterate2 from the beginning of the image (no
 * snapshot to start from) lists what is allocated, in order.  The gaps
 * between are holes that read as zeroes.
 */
struct extents_walk {
  struct nbdkit_extents *extents;
  uint64_t pos;                 /* end of what was added */
  uint64_t end;
  int err;
};

static int
add_until (struct extents_walk *w, uint64_t off, uint32_t type)
{
  if (off > w->end)
    off = w->end;
  if (off > w->pos) {
    if (nbdkit_add_extent (w->extents, w->pos, off - w->pos, type) == -1)
      return -1;
    w->pos = off;
  }
  return 0;
}

static int
diff_cb (uint64_t offs, size_t len, int exists, void *opaque)
{
  struct extents_walk *w = opaque;
  uint32_t type = exists ? 0 : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;

  if (offs < w->pos) {          /* overlaps what was added: the tail */
    if (offs + len <= w->pos)
      return 0;
    len -= w->pos - offs;
    offs = w->pos;
  }
  if (add_until (w, offs, NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1 ||
      add_until (w, offs + len, type) == -1) {
    w->err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

static int
rbdbe_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
             struct nbdkit_extents *extents)
{
  struct rbd_handle *h = handle;
  struct extents_walk w = { .extents = extents, .pos = offset,
                            .end = offset + count };
  int r;

  r = rbd_diff_iterate2 (h->image, NULL, offset, count, 1, 0, diff_cb, &w);
  if (r < 0 && w.err == 0) {
    nbdkit_error ("rbd_diff_iterate2 at %" PRIu64 ": %s", offset, cerr (r));
    errno = -r;
    return -1;
  }
  if (w.err) {
    errno = w.err;
    return -1;
  }
  if (add_until (&w, w.end, NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) == -1)
    return -1;
  return 0;
}

static struct nbdkit_backend rbd_backend = {
  .name = "rbd",
  .longname = "nbdkit rbd backend",
  .version = PACKAGE_VERSION,
  .description = "Serve a Ceph RBD image (librbd).",
  .config_help =
    "[image=]<IMAGE>     (required) The RBD image.\n"
    "pool=<POOL>         The pool of the image (rbd).\n"
    "namespace=<NS>      The RADOS namespace of the image in the pool.\n"
    "snap=<SNAP>         Serve this snapshot of the image, read-only.\n"
    "conf=<FILE>         The Ceph configuration (/etc/ceph/CLUSTER.conf).\n"
    "cluster=<NAME>      The cluster name (ceph).\n"
    "id=<ID>             The client id to connect as (admin).\n"
    "keyring=<FILE>      The keyring holding the client's key.\n"
    "create=true         Create the image if it does not exist.\n"
    "size=<SIZE>         With create=true: the size of the new image.",
  .magic_config_key = "image",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = rbdbe_config,
  .config_complete = rbdbe_config_complete,
  .get_ready = rbdbe_get_ready,
  .unload = rbdbe_unload,
  .dump_plugin = rbdbe_dump_plugin,
  .open = rbdbe_open,
  .close = rbdbe_close,
  .get_size = rbdbe_get_size,
  .can_write = rbdbe_can_write,
  .can_flush = rbdbe_yes,
  .can_trim = rbdbe_can_write,
  .can_zero = rbdbe_can_write,
  .can_extents = rbdbe_yes,
  .can_multi_conn = rbdbe_yes,
  .can_fua = rbdbe_fua,
  .pread = rbdbe_pread,
  .pwrite = rbdbe_pwrite,
  .flush = rbdbe_flush,
  .trim = rbdbe_trim,
  .zero = rbdbe_zero,
  .extents = rbdbe_extents,
};

NBDKIT_REGISTER_BACKEND (rbd_backend)
