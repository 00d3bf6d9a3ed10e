/* filters/nozero.c: change how zeroing is done (nbdkit-nozero-filter(1)).
 *
 * zeromode=none (the default) says the export cannot zero, so clients
 * write zeros themselves; emulate answers zero requests by writing
 * zeros below; notrim zeroes without punching holes; plain passes zero
 * requests on as they are.  fastzeromode=default|none|slow|ignore:
 * none hides fast zero; slow fails every fast zero with ENOTSUP;
 * ignore drops the flag and zeroes normally.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

/* Emulated zeroing writes at most this much at a time. */
#define ZERO_CHUNK (1024 * 1024)

enum { Z_NONE, Z_EMULATE, Z_NOTRIM, Z_PLAIN } zeromode = Z_NONE;
enum { F_DEFAULT, F_NONE, F_SLOW, F_IGNORE } fastzeromode = F_DEFAULT;

static int
nozero_config (const char *key, const char *value)
{
  static const char *const zm[] = { "none", "emulate", "notrim", "plain" };
  static const char *const fm[] = { "default", "none", "slow", "ignore" };
  int i;

  if (strcmp (key, "zeromode") == 0) {
    for (i = 0; i < 4; ++i)
      if (strcmp (value, zm[i]) == 0) {
        zeromode = i;
        return 0;
      }
    nbdkit_error ("zeromode=%s: use none, emulate, notrim or plain", value);
    return -1;
  }
  for (i = 0; i < 4; ++i)
    if (strcmp (value, fm[i]) == 0) {
      fastzeromode = i;
      return 0;
    }
  nbdkit_error ("fastzeromode=%s: use default, none, slow or ignore",
                value);
  return -1;
}

static void
nozero_open (struct fopen *o)
{
  struct export_caps *c = o->caps;

  if (zeromode == Z_NONE)
    c->can_zero = false;
  else if (zeromode == Z_EMULATE)
    c->can_zero = c->can_write;
  if (!c->can_zero || fastzeromode == F_NONE)
    c->can_fast_zero = false;
  else if (fastzeromode == F_SLOW || fastzeromode == F_IGNORE)
    c->can_fast_zero = true;
  fopen_done (o, NULL);
}

/* Emulation: write zeros, a chunk at a time. */
struct zeroing {
  struct freq *r;
  uint64_t done;
};

static void zero_next_chunk (struct zeroing *z);

static void
on_chunk (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct zeroing *z = opaque;

  if (!reply || reply->status) {
    freq_reply_from (z->r, reply, payload, len);
    free (z);
    return;
  }
  payload_free (payload);
  zero_next_chunk (z);
}

static void
zero_next_chunk (struct zeroing *z)
{
  struct freq *r = z->r;
  uint32_t n;
  void *buf;

  if (z->done == r->count) {
    freq_reply (r, NULL, 0, 0);
    free (z);
    return;
  }
  n = r->count - z->done > ZERO_CHUNK ? ZERO_CHUNK
    : (uint32_t) (r->count - z->done);
  buf = calloc (1, n);
  if (!buf) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    free (z);
    return;
  }
  z->done += n;
  /* FUA covers the whole request: every chunk must be durable when the
   * reply goes out, not only the last.
   */
  fnext_request (freq_below (r), HP_PWRITE, r->flags & HP_FLAG_FUA,
                 r->offset + z->done - n, n, buf, on_chunk, z);
}

static void
nozero_zero (void *handle, struct freq *r)
{
  struct zeroing *z;

  if (r->flags & HP_FLAG_FAST_ZERO) {
    if (fastzeromode == F_SLOW) {
      freq_reply_error (r, HP_ENOTSUP, "fast zero is not supported");
      return;
    }
    if (fastzeromode == F_IGNORE)
      r->flags &= ~HP_FLAG_FAST_ZERO;
  }
  if (zeromode == Z_NOTRIM)
    r->flags &= ~HP_FLAG_MAY_TRIM;
  if (zeromode != Z_EMULATE) {
    freq_next (r);
    return;
  }
  if (r->flags & HP_FLAG_FAST_ZERO) {
    freq_reply_error (r, HP_ENOTSUP, "zeroing is emulated: not fast");
    return;
  }
  z = calloc (1, sizeof *z);
  if (!z) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  z->r = r;
  zero_next_chunk (z);
}

static const char *const keys[] = { "zeromode", "fastzeromode", NULL };

const struct filter nozero_filter = {
  .name = "nozero",
  .description = "change or disable zeroing",
  .config_help =
    "zeromode=none|emulate|notrim|plain  how zero requests are handled\n"
    "                    (default none: the export cannot zero)\n"
    "fastzeromode=default|none|slow|ignore  how fast zero requests are",
  .keys = keys,
  .config = nozero_config,
  .open = nozero_open,
  .zero = nozero_zero,
};
