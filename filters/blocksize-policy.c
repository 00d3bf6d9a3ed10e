/* filters/blocksize-policy.c: set the block size constraints the
 * export advertises, and what to do with requests that break them
 * (nbdkit-blocksize-policy-filter(1)).
 *
 * blocksize-minimum/preferred/maximum replace those of the layer below
 * (or the defaults 1, 4096, 4294967295 if it has none).  With
 * blocksize-error-policy=allow (the default) they are advice: requests
 * that break them go down unchanged, as nbdkit passes them to its
 * plugin.  With error, such a request fails here with EINVAL.
 * blocksize-write-disconnect=N drops the client on a write longer
 * than N bytes.  The filter marks its constraints advisory
 * (block_advisory) so that the front end leaves all of this to it.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static bool policy_error;
static uint32_t cfg_min, cfg_pref, cfg_max;     /* 0 = not given */
static uint32_t cfg_disconnect;

static bool
is_power_of_2 (uint64_t v)
{
  return v && (v & (v - 1)) == 0;
}

static int
policy_config (const char *key, const char *value)
{
  int64_t v;

  if (strcmp (key, "blocksize-error-policy") == 0) {
    if (strcmp (value, "allow") == 0)
      policy_error = false;
    else if (strcmp (value, "error") == 0)
      policy_error = true;
    else {
      nbdkit_error ("blocksize-error-policy=%s: use allow or error", value);
      return -1;
    }
    return 0;
  }
  if (fparse_size (key, value, &v) == -1)
    return -1;
  if (strcmp (key, "blocksize-minimum") == 0) {
    if (!is_power_of_2 (v) || v > 65536) {
      nbdkit_error ("%s=%s: the minimum must be a power of 2 from 1 to 64K",
                    key, value);
      return -1;
    }
    cfg_min = (uint32_t) v;
  }
  else if (strcmp (key, "blocksize-preferred") == 0) {
    if (!is_power_of_2 (v) || v < 512 || v > 32 * 1024 * 1024) {
      nbdkit_error ("%s=%s: the preferred size must be a power of 2 from "
                    "512 to 32M", key, value);
      return -1;
    }
    cfg_pref = (uint32_t) v;
  }
  else {
    if (v < 1 || v > UINT32_MAX) {
      nbdkit_error ("%s=%s: use a size from 1 to 4294967295", key, value);
      return -1;
    }
    if (strcmp (key, "blocksize-maximum") == 0)
      cfg_max = (uint32_t) v;
    else
      cfg_disconnect = (uint32_t) v;
  }
  return 0;
}

static int
policy_config_complete (void)
{
  if (cfg_min && cfg_pref && cfg_min > cfg_pref) {
    nbdkit_error ("blocksize-minimum=%" PRIu32 " is larger than "
                  "blocksize-preferred=%" PRIu32 ": the minimum must be "
                  "at most the preferred size", cfg_min, cfg_pref);
    return -1;
  }
  if (cfg_pref && cfg_max && cfg_pref > cfg_max) {
    nbdkit_error ("blocksize-preferred=%" PRIu32 " is larger than "
                  "blocksize-maximum=%" PRIu32 ": the preferred size must "
                  "be at most the maximum", cfg_pref, cfg_max);
    return -1;
  }
  if (cfg_min && cfg_max && cfg_max != UINT32_MAX && cfg_max % cfg_min) {
    nbdkit_error ("blocksize-maximum=%" PRIu32 " is not a multiple of "
                  "blocksize-minimum=%" PRIu32, cfg_max, cfg_min);
    return -1;
  }
  return 0;
}

/* A connection's constraints, as advertised. */
struct limits {
  uint32_t min, max;
};

static void
policy_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  uint32_t min = 1, pref = 4096, max = UINT32_MAX;
  struct limits *l;
  char msg[200];

  if (c->block_min) {
    min = c->block_min;
    pref = c->block_pref;
    max = c->block_max;
  }
  if (cfg_min)
    min = cfg_min;
  if (cfg_pref)
    pref = cfg_pref;
  if (cfg_max)
    max = cfg_max;
  else if (cfg_disconnect && cfg_disconnect < max)
    /* Clients that obey the maximum are never dropped. */
    max = cfg_disconnect - cfg_disconnect % min;
  if (min > pref || pref > max || max < min ||
      (max != UINT32_MAX && max % min)) {
    snprintf (msg, sizeof msg, "blocksize-policy: the block sizes are not "
              "valid: minimum %" PRIu32 ", preferred %" PRIu32 ", maximum %"
              PRIu32 " (set blocksize-minimum, -preferred or -maximum so that "
              "minimum <= preferred <= maximum)", min, pref, max);
    nbdkit_error ("%s", msg);
    fopen_fail (o, HP_EINVAL, msg);
    return;
  }
  l = malloc (sizeof *l);
  if (!l) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  l->min = min;
  l->max = max;
  c->block_min = min;
  c->block_pref = pref;
  c->block_max = max;
  c->block_advisory = true;     /* this filter decides */
  fopen_done (o, l);
}

static void
policy_close (void *handle)
{
  free (handle);
}

/* Does r break the constraints?  EINVAL then, with the error policy. */
static bool
refused (const struct limits *l, struct freq *r, bool check_max)
{
  if (!policy_error)
    return false;
  if ((r->offset | r->count) & (l->min - 1)) {
    freq_reply_error (r, HP_EINVAL, "blocksize-policy: the request is not "
                      "aligned to the minimum block size");
    return true;
  }
  if (check_max && r->count > l->max) {
    freq_reply_error (r, HP_EINVAL, "blocksize-policy: the request is "
                      "longer than the maximum block size");
    return true;
  }
  return false;
}

static void
policy_data (void *handle, struct freq *r)
{
  if (!refused (handle, r, true))
    freq_next (r);
}

static void
policy_pwrite (void *handle, struct freq *r)
{
  if (cfg_disconnect && r->count > cfg_disconnect) {
    nbdkit_error ("blocksize-policy: disconnecting %s: a write of %" PRIu32
                  " bytes, more than blocksize-write-disconnect=%" PRIu32,
                  r->peer, r->count, cfg_disconnect);
    freq_reply (r, NULL, 0, HP_FLAG_DISCONNECT);
    return;
  }
  policy_data (handle, r);
}

static void
policy_other (void *handle, struct freq *r)
{
  if (!refused (handle, r, false))
    freq_next (r);
}

static const char *const keys[] = {
  "blocksize-error-policy", "blocksize-minimum", "blocksize-preferred",
  "blocksize-maximum", "blocksize-write-disconnect", NULL
};

const struct filter blocksize_policy_filter = {
  .name = "blocksize-policy",
  .description = "set the advertised block sizes and their error policy",
  .config_help =
    "blocksize-error-policy=allow|error  requests that break the block "
    "sizes:\n"
    "                    passed down (default) or failed with EINVAL\n"
    "blocksize-minimum=SIZE    the minimum block size to advertise\n"
    "blocksize-preferred=SIZE  the preferred block size to advertise\n"
    "blocksize-maximum=SIZE    the maximum block size to advertise\n"
    "blocksize-write-disconnect=SIZE  drop clients that write more",
  .keys = keys,
  .config = policy_config,
  .config_complete = policy_config_complete,
  .open = policy_open,
  .close = policy_close,
  .pread = policy_data,
  .pwrite = policy_pwrite,
  .trim = policy_other,
  .zero = policy_other,
  .cache = policy_other,
  .extents = policy_other,
};
