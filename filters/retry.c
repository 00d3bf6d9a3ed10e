/* filters/retry.c: reopen the layers below and retry a request that
 * failed (nbdkit-retry-filter(1)).
 *
 * Owns the retry loop of each request, and what this filter knows of
 * the layers below: whether they are open, and their size and
 * capabilities since they were last opened.  As nbdkit's filter does:
 * a request that fails -- answered with an error, or refused here
 * because the layers below, as reopened, cannot take it (past their
 * new size, a write they no longer allow, FUA they no longer offer) --
 * waits retry-delay (a libev timer, never a sleep; doubled each time
 * unless retry-exponential=no), then the layers below are closed and
 * opened again (fnext_reopen), read-only with retry-readonly=yes, and
 * the request is sent again: at most retries= times.  A reopen that
 * fails counts as an attempt (its error is ESHUTDOWN) and leaves the
 * layers closed: the next attempt, of this request or a later one,
 * reopens them first.  After a reopen with retry-readonly=yes, writes,
 * trims and zeroes fail with EPERM (EROFS) at once.  A fast zero the
 * layers below cannot do fails with ENOTSUP at once.  The filter keeps
 * the client's request (and so a write's payload) until the last
 * answer, and sends a fresh copy of the payload with each attempt.
 *
 * Unlike nbdkit's filter, requests of a connection are not serialized:
 * while a reopen is under way, the connection's requests wait for it
 * here; a request that failed on layers that have been reopened since
 * it was sent is sent again without another reopen.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static unsigned retries = 5;
static double retry_delay = 2;
static bool exponential = true;
static bool force_readonly;

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
    return fparse_bool (key, value, &force_readonly);
  nbdkit_error ("%s: unknown parameter of the retry filter (see "
                "'nbdkit --filter=retry null --help')", key);
  return -1;
}

struct attempt;

/* Per connection. */
struct retry_handle {
  struct fnext *next;
  bool readonly;                /* as this filter was opened */
  bool open;                    /* the layers below are open */
  struct export_caps caps;      /* theirs (name, description: NULL) */
  unsigned reopens;             /* asked so far */
  uint64_t generation;          /* of the layers below: +1 each reopen */
  bool reopening;
  struct attempt *waiting, *waiting_tail;       /* for the reopen */
};

static void
keep_caps (struct retry_handle *h, const struct export_caps *caps)
{
  h->caps = *caps;
  h->caps.name = h->caps.description = NULL;
}

static void
retry_open (struct fopen *o)
{
  struct retry_handle *h = calloc (1, sizeof *h);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->next = o->next;
  h->readonly = o->readonly;
  h->open = true;
  keep_caps (h, o->caps);
  fopen_done (o, h);
}

static void
retry_close (void *handle)
{
  struct retry_handle *h = handle;

  nbdkit_debug ("retry filter: reopens needed: %u", h->reopens);
  free (h);
}

/* One request of the client, while it is being tried. */
struct attempt {
  ev_timer timer;               /* first: the timer's callback finds us */
  struct retry_handle *h;
  struct freq *r;
  unsigned retry;               /* retries done */
  unsigned tries;               /* sent below */
  double delay;                 /* before the next retry */
  uint64_t generation;          /* of the layers its last try was for */
  struct attempt *next;         /* waiting for a reopen */
};

static bool
is_write (uint16_t type)
{
  return type == HP_PWRITE || type == HP_TRIM || type == HP_ZERO;
}

static void
finish (struct attempt *a, uint32_t status, const char *msg)
{
  freq_reply_error (a->r, status, msg);
  free (a);
}

static void on_timer (struct ev_loop *l, ev_timer *t, int revents);

/* The attempt failed (status, msg): retry it later, or give up. */
static void
failed (struct attempt *a, uint32_t status, const char *msg)
{
  struct freq *r = a->r;

  if (a->retry >= retries) {
    nbdkit_debug ("retry filter: request %" PRIu64 " failed (%s) after "
                  "%u attempts", r->id, hp_error_name (status),
                  a->retry + 1);
    finish (a, status, msg);
    return;
  }
  nbdkit_debug ("retry filter: request %" PRIu64 " failed (%s): retry %u "
                "of %u in %g seconds", r->id, hp_error_name (status),
                a->retry + 1, retries, a->delay);
  ev_timer_init (&a->timer, on_timer, a->delay, 0);
  ev_timer_start (loop, &a->timer);
  if (exponential)
    a->delay *= 2;
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct attempt *a = opaque;
  char *msg;

  if (reply && reply->status == 0) {
    freq_reply_from (a->r, reply, payload, len);
    free (a);
    return;
  }
  msg = payload && len ? strndup (payload, len) : NULL;
  payload_free (payload);
  failed (a, reply ? reply->status : HP_EIO, msg);
  free (msg);
}

/* Can the layers below, as they are now, take r?  0, or why not. */
static uint32_t
check (const struct retry_handle *h, const struct freq *r,
       const char **msg)
{
  const struct export_caps *c = &h->caps;
  bool past_end = r->offset > c->size || r->count > c->size - r->offset;

  if (!h->open) {
    *msg = "the layers below are closed: reopening them failed";
    return HP_ESHUTDOWN;
  }
  *msg = "the request goes beyond the end of the reopened export";
  switch (r->type) {
  case HP_PREAD:
    if (past_end)
      return HP_EIO;
    break;
  case HP_PWRITE:
  case HP_TRIM:
  case HP_ZERO:
    if (past_end)
      return HP_ENOSPC;
    *msg = "the reopened export does not allow this request";
    if (!c->can_write ||
        (r->type == HP_TRIM && !c->can_trim) ||
        (r->type == HP_ZERO && !c->can_zero))
      return HP_EPERM;
    *msg = "the reopened export does not support FUA";
    if ((r->flags & HP_FLAG_FUA) && !c->can_fua)
      return HP_EIO;
    break;
  case HP_FLUSH:
    *msg = "the reopened export does not support flush";
    if (!c->can_flush)
      return HP_EIO;
    break;
  case HP_EXTENTS:
  case HP_CACHE:
    if (past_end)
      return HP_EIO;
    *msg = "the reopened export does not support this request";
    if (r->type == HP_EXTENTS ? !c->can_extents : !c->can_cache)
      return HP_EIO;
    break;
  }
  return 0;
}

/* Send the request below, unless a reopen is under way (it then waits
 * for it) or the layers below cannot take it.
 */
static void
try_send (struct attempt *a)
{
  struct retry_handle *h = a->h;
  struct freq *r = a->r;
  const char *msg;
  uint32_t status;
  void *data = NULL;

  if (h->reopening) {
    a->next = NULL;
    if (h->waiting_tail)
      h->waiting_tail->next = a;
    else
      h->waiting = a;
    h->waiting_tail = a;
    return;
  }
  if (force_readonly && h->reopens && is_write (r->type)) {
    finish (a, HP_EPERM, "the connection is read-only after a reopen "
            "(retry-readonly=yes)");
    return;
  }
  if (r->type == HP_ZERO && (r->flags & HP_FLAG_FAST_ZERO) &&
      (!h->open || !h->caps.can_fast_zero)) {
    finish (a, HP_ENOTSUP, "the reopened export cannot zero fast");
    return;
  }
  a->generation = h->generation;
  status = check (h, r, &msg);
  if (status) {
    failed (a, status, msg);
    return;
  }
  if (r->type == HP_PWRITE) {
    data = malloc (r->count);
    if (!data) {
      finish (a, HP_ENOMEM, "out of memory");
      return;
    }
    memcpy (data, r->data, r->count);
  }
  a->tries++;
  fnext_request (h->next, r->type, r->flags, r->offset, r->count, data,
                 on_reply, a);
}

static void
on_reopened (void *opaque, struct export_caps *caps, uint32_t status,
             const char *msg)
{
  struct retry_handle *h = opaque;
  struct attempt *a = h->waiting;

  h->reopening = false;
  h->waiting = h->waiting_tail = NULL;
  if (status) {
    nbdkit_debug ("retry filter: reopening failed: %s", msg);
    h->open = false;
  }
  else {
    h->open = true;
    keep_caps (h, caps);
  }
  while (a) {
    struct attempt *next = a->next;

    try_send (a);
    a = next;
  }
}

static void
on_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  struct attempt *a = (struct attempt *) t;
  struct retry_handle *h = a->h;

  a->retry++;
  /* Reopened since it was tried (or being reopened): no new reopen. */
  if (h->generation == a->generation && !h->reopening) {
    h->reopening = true;
    h->reopens++;
    h->generation++;
    nbdkit_debug ("retry filter: reopening the layers below%s",
                  h->readonly || force_readonly ? " read-only" : "");
    fnext_reopen (h->next, h->readonly || force_readonly, on_reopened, h);
  }
  try_send (a);
}

static void
retry_request (void *handle, struct freq *r)
{
  struct retry_handle *h = handle;
  struct attempt *a;

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
  try_send (a);
}

static const char *const keys[] = { "retries", "retry-*", NULL };

const struct filter retry_filter = {
  .name = "retry",
  .description = "reopen the layers below and retry requests that fail",
  .config_help =
    "retries=N                  retries of a failed request (default 5)\n"
    "retry-delay=SECS           wait before the first retry (default 2;\n"
    "                           also fractions or ms, e.g. 100ms)\n"
    "retry-exponential=yes|no   double the wait each time (default yes)\n"
    "retry-readonly=yes|no      reopen the layers below read-only after\n"
    "                           a failure (default no)",
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
