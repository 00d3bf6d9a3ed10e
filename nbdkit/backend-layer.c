/* nbdkit front end: the backend process as the last layer of a chain.
 *
 * A struct filter like any other, at the bottom of every chain: open
 * sends OPEN to the chain's backend_proc and takes the capabilities
 * from the reply; each request becomes one data message on the open
 * handle, and its reply completes the request; close sends CLOSE.
 * Every request type has an entry here, so every request ends in this
 * layer or above it.  When the backend handed over the descriptor of
 * the handle's data at open, the data requests are done on it by
 * passthrough.c instead, without a message to the backend.
 */

#include <config.h>

#include <stdlib.h>

#include "internal.h"

static void
on_open (void *opaque, struct bhandle *bh, json_t *j, uint32_t status,
         const char *msg)
{
  struct fopen *o = opaque;
  const char *why = NULL;

  if (!bh) {
    fopen_fail (o, status ? status : HP_EIO, msg);
    return;
  }
  if (caps_from_json (j, o->caps, &why) == -1) {
    backend_close (bh);
    fopen_fail (o, HP_EIO, why);
    return;
  }
  fopen_done (o, bh);
}

static void
layer_open (struct fopen *o)
{
  backend_open (fopen_backend_proc (o), o->connection, o->export,
                o->readonly, o->tls, fopen_wants_description (o), o->peer,
                on_open, o);
}

static void
layer_close (void *handle)
{
  backend_close (handle);
}

void
backend_layer_close_then (void *handle, void (*done) (void *opaque),
                          void *opaque)
{
  backend_close_then (handle, done, opaque);
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  freq_reply_from (opaque, reply, payload, len);
}

static void
layer_request (void *handle, struct freq *r)
{
  struct bhandle *bh = handle;
  void *data;

  /* Passthrough: the I/O on the backend's descriptor, here. */
  if (bh->pt && passthrough_request (bh->pt, r))
    return;
  data = r->data;
  r->data = NULL;               /* the channel has it now */
  bproc_data (bh->bp, bh, r->type, r->flags, r->offset, r->count, data,
              on_reply, r);
}

const struct filter backend_layer = {
  .name = "backend",
  .description = "the backend process",
  .open = layer_open,
  .close = layer_close,
  .pread = layer_request,
  .pwrite = layer_request,
  .flush = layer_request,
  .trim = layer_request,
  .zero = layer_request,
  .cache = layer_request,
  .extents = layer_request,
};
