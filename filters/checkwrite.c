/* filters/checkwrite.c: turn writes into checks that the layer below
 * already holds what is written (nbdkit-checkwrite-filter(1)), to test
 * copying tools.  The layers below are opened read-only and never
 * written; the export is writable.  A write succeeds if the bytes
 * below are the same, a zero or trim if they read as zeros (holes or
 * not: only the data counts); otherwise EIO.  Flush has nothing to do.
 */

#include <config.h>

#include <inttypes.h>

#include "filter.h"
#include "readcheck.h"

static void
checkwrite_open (struct fopen *o)
{
  struct export_caps *c = o->caps;

  /* Every write-like request is answered here, so all can be. */
  c->can_write = !o->readonly;
  c->can_flush = c->can_fua = true;
  c->fua_emulated = false;
  c->can_trim = c->can_zero = c->can_fast_zero = true;
  c->can_multi_conn = true;
  fopen_done (o, NULL);
}

static void
on_checked (void *opaque, bool differs, uint32_t status, const char *msg)
{
  struct freq *r = opaque;

  if (status)
    freq_reply_error (r, status, msg);
  else if (differs) {
    const char *why = r->type == HP_PWRITE
      ? "checkwrite: the data written differs from the data below"
      : "checkwrite: the range zeroed or trimmed is not zero below";

    nbdkit_error ("%s (%s, offset %" PRIu64 ", count %" PRIu32 ")",
                  why, r->peer, r->offset, r->count);
    freq_reply_error (r, HP_EIO, why);
  }
  else
    freq_reply (r, NULL, 0, 0);
}

static void
checkwrite_check (void *handle, struct freq *r)
{
  if (r->count == 0) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  readcheck (freq_below (r), r->offset, r->count,
             r->type == HP_PWRITE ? r->data : NULL, on_checked, r);
}

static void
checkwrite_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);
}

const struct filter checkwrite_filter = {
  .name = "checkwrite",
  .description = "check that writes match the data below",
  .readonly_below = true,
  .open = checkwrite_open,
  .pwrite = checkwrite_check,
  .trim = checkwrite_check,
  .zero = checkwrite_check,
  .flush = checkwrite_flush,
};
