/* filters/retry.c: retry failed requests (nbdkit-retry-filter(1)).
 *
 * Owns the retry loop of each request: a request that the layers below
 * answer with an error is sent again, after a libev timer (never a
 * sleep), up to retries= times, the delay doubling each time unless
 * retry-exponential=no.  The filter keeps the client's request (and so
 * a write's payload) until the last answer, and sends a fresh copy of
 * the payload with each attempt.
 *
 * nbdkit's filter reopens the plugin before retrying.  Here the front
 * end already restarts a backend that dies and resends its idempotent
 * requests; this filter adds the retry of a request that failed, on
 * the same connection to the layers below, which cannot be reopened.
 * retry-readonly=yes makes the connection read-only after its first
 * failure: later writes, trims and zeroes fail with EPERM.
 *
 * A fast zero that fails with ENOTSUP is not retried: that is the
 * answer "not fast", not a failure.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static unsigned retries = 5;
static double retry_delay = 2;
static bool exponential = true;
static bool readonly_after_error;

static int
retry_config (const char *key, const char *value)
{
  if (strcmp (key, "retries") == 0)
    return fparse_uint (key, value, 1000, &retries);
  if (strcmp (key, "retry-delay") == 0) {
    if (fparse_delay (key, value, &retry_delay) == -1)
      return -1;
    if (retry_delay > 3600) {
      nbdkit_error ("%s=%s: at most one hour (3600 seconds) between "
                    "retries", key, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "retry-exponential") == 0)
    return fparse_bool (key, value, &exponential);
  if (strcmp (key, "retry-readonly") == 0)
    return fparse_bool (key, value, &readonly_after_error);
  nbdkit_error ("%s: unknown parameter of the retry filter (see "
                "'nbdkit --filter=retry null --help')", key);
  return -1;
}

/* Per connection. */
struct retry_handle {
  bool failed;                  /* a request has failed once */
};

static void
retry_open (struct fopen *o)
{
  struct retry_handle *h = calloc (1, sizeof *h);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  fopen_done (o, h);
}

static void
retry_close (void *handle)
{
  free (handle);
}

/* One request of the client, while it is being tried. */
struct attempt {
  ev_timer timer;               /* first: the timer's callback finds us */
  struct retry_handle *h;
  struct freq *r;
  unsigned tries;               /* attempts made */
  double delay;                 /* before the next attempt */
};

static bool
is_write (uint16_t type)
{
  return type == HP_PWRITE || type == HP_TRIM || type == HP_ZERO;
}

static void
refuse_write (struct freq *r)
{
  freq_reply_error (r, HP_EPERM, "the connection is read-only after an "
                    "error (retry-readonly=yes)");
}

static void send_attempt (struct attempt *a);

static void
on_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  struct attempt *a = (struct attempt *) t;

  if (readonly_after_error && is_write (a->r->type)) {
    refuse_write (a->r);
    free (a);
    return;
  }
  send_attempt (a);
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct attempt *a = opaque;
  struct freq *r = a->r;
  uint32_t status = reply ? reply->status : HP_EIO;

  if (status == 0 ||
      a->tries > retries ||
      (status == HP_ENOTSUP && (r->flags & HP_FLAG_FAST_ZERO))) {
    if (status)
      nbdkit_debug ("retry filter: request %" PRIu64 " failed (%s) after "
                    "%u attempts", r->id, hp_error_name (status), a->tries);
    freq_reply_from (r, reply, payload, len);
    free (a);
    return;
  }
  payload_free (payload);
  a->h->failed = true;
  nbdkit_debug ("retry filter: request %" PRIu64 " failed (%s): retry %u "
                "of %u in %g seconds", r->id, hp_error_name (status),
                a->tries, retries, a->delay);
  ev_timer_init (&a->timer, on_timer, a->delay, 0);
  ev_timer_start (loop, &a->timer);
  if (exponential)
    a->delay *= 2;
}

static void
send_attempt (struct attempt *a)
{
  struct freq *r = a->r;
  void *data = NULL;

  if (r->type == HP_PWRITE) {
    data = malloc (r->count);
    if (!data) {
      freq_reply_error (r, HP_ENOMEM, "out of memory");
      free (a);
      return;
    }
    memcpy (data, r->data, r->count);
  }
  a->tries++;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, a);
}

static void
retry_request (void *handle, struct freq *r)
{
  struct retry_handle *h = handle;
  struct attempt *a;

  if (h->failed && readonly_after_error && is_write (r->type)) {
    refuse_write (r);
    return;
  }
  if (retries == 0) {
    freq_next (r);
    return;
  }
  a = calloc (1, sizeof *a);
  if (!a) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  a->h = h;
  a->r = r;
  a->delay = retry_delay;
  send_attempt (a);
}

static const char *const keys[] = { "retries", "retry-*", NULL };

const struct filter retry_filter = {
  .name = "retry",
  .description = "retry requests that fail",
  .config_help =
    "retries=N                  retries of a failed request (default 5)\n"
    "retry-delay=SECS           wait before the first retry (default 2;\n"
    "                           also fractions or ms, e.g. 100ms)\n"
    "retry-exponential=yes|no   double the wait each time (default yes)\n"
    "retry-readonly=yes|no      after a failure, refuse writes on this\n"
    "                           connection (default no)",
  .keys = keys,
  .config = retry_config,
  .open = retry_open,
  .close = retry_close,
  .pread = retry_request,
  .pwrite = retry_request,
  .flush = retry_request,
  .trim = retry_request,
  .zero = retry_request,
  .cache = retry_request,
  .extents = retry_request,
};
