/* filters/delay.c: slow requests down (nbdkit-delay-filter(1)), with
 * libev timers: a delayed request waits on its own timer and nothing
 * else waits with it.
 *
 * rdelay= / delay-read= (reads), delay-write= (writes), delay-zero=,
 * delay-trim=, wdelay= (writes, zeroes and trims at once: it sets the
 * three when it is given, as nbdkit's does, so a later delay-zero= or
 * delay-trim= overrides it and an earlier one is overridden),
 * delay-extents=, delay-cache=, delay-flush=, delay-open= (opening an
 * export), and nbdkit's other spellings (delay-reads, delay-writes,
 * delay-zeroes, delay-trims, delay-discard(s), delay-extent).  Values
 * in seconds (optionally with s), or with ms or us.  delay-fast-zero=
 * false answers fast zero requests at once with ENOTSUP instead of
 * waiting (and so offers fast zero).  A request is never passed on
 * undelayed: without memory for its timer it fails with ENOMEM.
 *
 * Shutdown: like nbdkit's sleeps, every wait ends at once when the
 * server begins to stop (the stopping callback: a signal, or
 * exitwhen/exitlast): the request fails with ESHUTDOWN, an open fails,
 * and the server does not wait for the rest of the delay; the waits
 * are kept in a list for it.  delay-close= cannot be done: a filter
 * has no hold on a client's disconnection (it is refused with a
 * message saying so).
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum { D_READ, D_WRITE, D_TRIM, D_ZERO, D_EXTENTS, D_CACHE, D_FLUSH,
       D_OPEN, NR_D };

static double delays[NR_D];
static bool fast_zero_delayed = true;

/* The waits in progress, and whether the server is stopping. */
struct wait {
  ev_timer timer;               /* first */
  struct freq *r;
  struct fopen *o;
  struct wait *prev, *next;
};
static struct wait *waits;
static bool stopping;

static int
delay_config (const char *key, const char *value)
{
  static const struct { const char *key; int d; } names[] = {
    { "rdelay", D_READ }, { "delay-read", D_READ }, { "delay-reads", D_READ },
    { "delay-write", D_WRITE }, { "delay-writes", D_WRITE },
    { "delay-trim", D_TRIM }, { "delay-trims", D_TRIM },
    { "delay-discard", D_TRIM }, { "delay-discards", D_TRIM },
    { "delay-zero", D_ZERO }, { "delay-zeroes", D_ZERO },
    { "delay-extents", D_EXTENTS }, { "delay-extent", D_EXTENTS },
    { "delay-cache", D_CACHE }, { "delay-flush", D_FLUSH },
    { "delay-open", D_OPEN },
  };
  size_t i;

  if (strcmp (key, "delay-fast-zero") == 0)
    return fparse_bool (key, value, &fast_zero_delayed);
  if (strcmp (key, "wdelay") == 0) {
    /* Writes, zeroes and trims, as given now. */
    if (fparse_delay (key, value, &delays[D_WRITE]) == -1)
      return -1;
    delays[D_ZERO] = delays[D_TRIM] = delays[D_WRITE];
    return 0;
  }
  if (strcmp (key, "delay-close") == 0) {
    nbdkit_error ("delay-close=%s: not supported by this server: a filter "
                  "cannot hold back a client's disconnection", value);
    return -1;
  }
  for (i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (strcmp (key, names[i].key) == 0)
      return fparse_delay (key, value, &delays[names[i].d]);
  nbdkit_error ("%s: unknown parameter of the delay filter (see "
                "'nbdkit --filter=delay null --help')", key);
  return -1;
}

/* ---- waiting ---- */

static void
unlink_wait (struct wait *w)
{
  if (w->prev)
    w->prev->next = w->next;
  else
    waits = w->next;
  if (w->next)
    w->next->prev = w->prev;
}

static void
on_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  struct wait *w = (struct wait *) t;

  unlink_wait (w);
  if (w->r)
    freq_next (w->r);
  else
    fopen_done (w->o, NULL);
  free (w);
}

/* The wait ends now, unserved: the server is stopping. */
static void
abort_wait (struct freq *r, struct fopen *o)
{
  static const char msg[] = "delay filter: the wait was cut short: the "
    "server is shutting down";

  nbdkit_error ("%s", msg);
  if (r)
    freq_reply_error (r, HP_ESHUTDOWN, msg);
  else
    fopen_fail (o, HP_ESHUTDOWN, msg);
}

static void
delay_stopping (void)
{
  struct wait *w;

  stopping = true;
  while ((w = waits) != NULL) {
    unlink_wait (w);
    ev_timer_stop (loop, &w->timer);
    abort_wait (w->r, w->o);
    free (w);
  }
}

static void
wait_then (double secs, struct freq *r, struct fopen *o)
{
  struct wait *w;

  if (secs <= 0) {
    if (r)
      freq_next (r);
    else
      fopen_done (o, NULL);
    return;
  }
  if (stopping) {
    abort_wait (r, o);
    return;
  }
  w = calloc (1, sizeof *w);
  if (!w) {
    /* Passing it on undelayed would hide that the delay was lost. */
    nbdkit_error ("delay filter: out of memory");
    if (r)
      freq_reply_error (r, HP_ENOMEM, "delay filter: out of memory");
    else
      fopen_fail (o, HP_ENOMEM, "delay filter: out of memory");
    return;
  }
  w->r = r;
  w->o = o;
  w->next = waits;
  if (waits)
    waits->prev = w;
  waits = w;
  ev_timer_init (&w->timer, on_timer, secs, 0);
  ev_timer_start (loop, &w->timer);
}

static void
delay_open (struct fopen *o)
{
  /* Fast zeroes that would wait fail at once: that is fast. */
  if (delays[D_ZERO] > 0 && !fast_zero_delayed && o->caps->can_zero)
    o->caps->can_fast_zero = true;
  wait_then (delays[D_OPEN], NULL, o);
}

static void d_read (void *h, struct freq *r) { wait_then (delays[D_READ], r, NULL); }
static void d_write (void *h, struct freq *r) { wait_then (delays[D_WRITE], r, NULL); }
static void d_trim (void *h, struct freq *r) { wait_then (delays[D_TRIM], r, NULL); }
static void d_extents (void *h, struct freq *r) { wait_then (delays[D_EXTENTS], r, NULL); }
static void d_cache (void *h, struct freq *r) { wait_then (delays[D_CACHE], r, NULL); }
static void d_flush (void *h, struct freq *r) { wait_then (delays[D_FLUSH], r, NULL); }

static void
d_zero (void *h, struct freq *r)
{
  if ((r->flags & HP_FLAG_FAST_ZERO) && !fast_zero_delayed &&
      delays[D_ZERO] > 0) {
    freq_reply_error (r, HP_ENOTSUP, "a fast zero would be delayed");
    return;
  }
  wait_then (delays[D_ZERO], r, NULL);
}

static const char *const keys[] = {
  "rdelay", "wdelay", "delay-*", NULL
};

const struct filter delay_filter = {
  .name = "delay",
  .description = "delay requests, for testing",
  .config_help =
    "rdelay=SECS, delay-read=SECS    delay reads (e.g. 2, 0.5, 100ms, 250us)\n"
    "delay-write=SECS                delay writes\n"
    "delay-zero=SECS                 delay zeroes\n"
    "delay-trim=SECS                 delay trims\n"
    "wdelay=SECS                     delay writes, zeroes and trims\n"
    "delay-extents=, delay-cache=,\n"
    "delay-flush=, delay-open=       delay one kind of request, or the open\n"
    "delay-fast-zero=false           fail fast zero requests (ENOTSUP)\n"
    "                                rather than delay them\n"
    "(every wait ends at once when the server is stopped)",
  .keys = keys,
  .config = delay_config,
  .stopping = delay_stopping,
  .open = delay_open,
  .pread = d_read,
  .pwrite = d_write,
  .trim = d_trim,
  .zero = d_zero,
  .extents = d_extents,
  .cache = d_cache,
  .flush = d_flush,
};
