/* filters/fua.c: change how Forced Unit Access and flush are handled
 * (nbdkit-fua-filter(1)).
 *
 * fuamode=none (the default) hides FUA, so clients flush instead;
 * emulate offers FUA and does it with a flush after the write; native
 * offers FUA and passes the flag down (the layer below must do FUA);
 * force adds FUA to every write, trim and zero and answers flush at
 * once; pass changes nothing; discard (unsafe) offers FUA and flush
 * but drops the flag and answers flush at once without flushing.
 *
 * All state is the mode; the filter keeps nothing per connection.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum fuamode { M_NONE, M_EMULATE, M_NATIVE, M_FORCE, M_PASS, M_DISCARD };

static const char *const mode_names[] = {
  "none", "emulate", "native", "force", "pass", "discard",
};

static enum fuamode mode = M_NONE;

static int
fua_config (const char *key, const char *value)
{
  size_t i;

  for (i = 0; i < sizeof mode_names / sizeof mode_names[0]; ++i)
    if (strcmp (value, mode_names[i]) == 0) {
      mode = (enum fuamode) i;
      return 0;
    }
  nbdkit_error ("%s=%s: use none, emulate, native, force, pass or discard",
                key, value);
  return -1;
}

/* An export this mode cannot serve: say why in the log and to the
 * client.
 */
static void
refuse (struct fopen *o, const char *why)
{
  nbdkit_error ("%s", why);
  fopen_fail (o, HP_EINVAL, why);
}

static void
fua_open (struct fopen *o)
{
  struct export_caps *c = o->caps;

  switch (mode) {
  case M_NONE:
    c->can_fua = false;
    c->fua_emulated = false;
    break;
  case M_EMULATE:
    if (c->can_write && !c->can_flush) {
      refuse (o, "fuamode=emulate: the layer below cannot flush, so FUA "
              "cannot be emulated (use fuamode=none)");
      return;
    }
    c->can_fua = c->can_write;
    c->fua_emulated = true;
    break;
  case M_NATIVE:
  case M_FORCE:
    if (c->can_write && !c->can_fua) {
      refuse (o, mode == M_NATIVE
              ? "fuamode=native: the layer below does not support FUA "
                "(use fuamode=emulate)"
              : "fuamode=force: the layer below does not support FUA "
                "(use fuamode=emulate)");
      return;
    }
    break;
  case M_PASS:
    break;
  case M_DISCARD:
    c->can_fua = c->can_write;
    c->fua_emulated = false;
    c->can_flush = true;
    break;
  }
  fopen_done (o, NULL);
}

/* Emulation: the request without FUA, then a flush. */

static void
on_flushed (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  freq_reply_from (opaque, reply, payload, len);
}

static void
on_written (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct freq *r = opaque;

  if (!reply || reply->status) {
    freq_reply_from (r, reply, payload, len);
    return;
  }
  payload_free (payload);
  fnext_request (freq_below (r), HP_FLUSH, 0, 0, 0, NULL, on_flushed, r);
}

/* pwrite, trim and zero. */
static void
fua_write (void *handle, struct freq *r)
{
  void *data;

  switch (mode) {
  case M_NONE:
  case M_NATIVE:
  case M_PASS:
    break;
  case M_FORCE:
    r->flags |= HP_FLAG_FUA;
    break;
  case M_DISCARD:
    r->flags &= ~HP_FLAG_FUA;
    break;
  case M_EMULATE:
    if (r->flags & HP_FLAG_FUA) {
      data = r->data;
      r->data = NULL;
      fnext_request (freq_below (r), r->type, r->flags & ~HP_FLAG_FUA,
                     r->offset, r->count, data, on_written, r);
      return;
    }
    break;
  }
  freq_next (r);
}

static void
fua_flush (void *handle, struct freq *r)
{
  if (mode == M_FORCE || mode == M_DISCARD)
    freq_reply (r, NULL, 0, 0);
  else
    freq_next (r);
}

static const char *const keys[] = { "fuamode", NULL };

const struct filter fua_filter = {
  .name = "fua",
  .description = "change how FUA and flush are handled",
  .config_help =
    "fuamode=MODE        none (default: FUA not offered), emulate (FUA by\n"
    "                    a flush), native (pass FUA down), force (FUA on\n"
    "                    every write, flush a no-op), pass (unchanged),\n"
    "                    discard (drop FUA and flush: unsafe)",
  .keys = keys,
  .config = fua_config,
  .open = fua_open,
  .pwrite = fua_write,
  .trim = fua_write,
  .zero = fua_write,
  .flush = fua_flush,
};
