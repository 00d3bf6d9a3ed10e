/* nbdkit front end: the backend process as the last layer of a chain.
 *
 * A struct filter like any other, at the bottom of every chain: open
 * sends OPEN to the chain's backend_proc and takes the capabilities
 * from the reply (caps_from_json: the backend's JSON, checked member by
 * member); each request becomes one data message on the open
 * handle, and its reply completes the request; close sends CLOSE.
 * Every request type has an entry here, so every request ends in this
 * layer or above it.  When the backend handed over the descriptor of
 * the handle's data at open, the data requests are done on it by
 * passthrough.c instead, without a message to the backend.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the capabilities of the export, from the OPEN reply ---- */

static bool
get_bool (json_t *j, const char *key)
{
  return json_is_true (json_object_get (j, key));
}

/* can_fua / can_cache: "none", "emulate", "native" (or a boolean). */
static bool
get_level (json_t *j, const char *key)
{
  json_t *v = json_object_get (j, key);

  if (json_is_string (v))
    return strcmp (json_string_value (v), "none") != 0;
  return json_is_true (v);
}

static bool
is_power_of_2 (uint64_t v)
{
  return v && !(v & (v - 1));
}

int
caps_from_json (json_t *j, struct export_caps *caps, const char **why)
{
  json_t *size = json_object_get (j, "size");
  json_t *bs = json_object_get (j, "block_size");
  const char *desc, *name;

  memset (caps, 0, sizeof *caps);
  if (!json_is_integer (size) || json_integer_value (size) < 0) {
    *why = "the backend's OPEN reply has no valid size";
    return -1;
  }
  caps->size = (uint64_t) json_integer_value (size);
  caps->can_write = get_bool (j, "can_write") && !opt.readonly;
  caps->can_flush = get_bool (j, "can_flush");
  caps->can_trim = get_bool (j, "can_trim") && caps->can_write;
  caps->can_zero = get_bool (j, "can_zero") && caps->can_write;
  caps->can_fast_zero = get_bool (j, "can_fast_zero") && caps->can_zero;
  caps->can_extents = get_bool (j, "can_extents");
  caps->can_multi_conn = get_bool (j, "can_multi_conn");
  caps->is_rotational = get_bool (j, "is_rotational");
  caps->can_fua = get_level (j, "can_fua") && caps->can_write;
  caps->fua_emulated = caps->can_fua &&
    json_is_string (json_object_get (j, "can_fua")) &&
    strcmp (json_string_value (json_object_get (j, "can_fua")),
            "emulate") == 0;
  caps->can_cache = get_level (j, "can_cache");

  if (json_is_object (bs)) {
    json_int_t min = json_integer_value (json_object_get (bs, "minimum"));
    json_int_t pref = json_integer_value (json_object_get (bs, "preferred"));
    json_int_t max = json_integer_value (json_object_get (bs, "maximum"));

    if (min || pref || max) {
      /* The constraints of the NBD specification. */
      if (!is_power_of_2 (min) || min > 65536 ||
          !is_power_of_2 (pref) || pref < min || pref > 32 * 1024 * 1024 ||
          max < pref || max > UINT32_MAX || max % min != 0) {
        *why = "the backend's block size constraints are not valid "
               "(minimum and preferred must be powers of 2, "
               "minimum <= preferred <= maximum)";
        return -1;
      }
      caps->block_min = (uint32_t) min;
      caps->block_pref = (uint32_t) pref;
      caps->block_max = (uint32_t) max;
    }
  }

  desc = json_string_value (json_object_get (j, "description"));
  if (desc && *desc && strlen (desc) <= NBD_MAX_STRING)
    caps->description = strdup (desc);
  name = json_string_value (json_object_get (j, "name"));
  if (name && strlen (name) <= NBD_MAX_STRING)
    caps->name = strdup (name);
  return 0;
}


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

bool
backend_layer_write_in_place (void *handle, uint16_t flags, uint64_t offset,
                              uint32_t count, struct in_place *ip)
{
  struct bhandle *bh = handle;

  return bh && bh->pt &&
    passthrough_write_in_place (bh->pt, flags, offset, count, ip);
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
