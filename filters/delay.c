/* filters/delay.c: slow requests down (nbdkit-delay-filter(1)), with
 * libev timers: a delayed request waits on its own timer and nothing
 * else waits with it.
 *
 * rdelay= / delay-read= (reads), wdelay= / delay-write= (writes, and
 * trim, zero unless given their own), delay-trim=, delay-zero=,
 * delay-extents=, delay-cache=, delay-flush=, delay-open= (opening an
 * export).  Values in seconds (optionally with s), or with ms or us.
 * delay-fast-zero=false answers fast zero requests at once with ENOTSUP
 * instead of waiting.  A request is never passed on undelayed: without
 * memory for its timer it fails with ENOMEM.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum { D_READ, D_WRITE, D_TRIM, D_ZERO, D_EXTENTS, D_CACHE, D_FLUSH,
       D_OPEN, NR_D };

static double delays[NR_D];
static bool given[NR_D];
static bool fast_zero_delayed = true;

static int
delay_config (const char *key, const char *value)
{
  static const struct { const char *key; int d; } names[] = {
    { "rdelay", D_READ }, { "delay-read", D_READ },
    { "wdelay", D_WRITE }, { "delay-write", D_WRITE },
    { "delay-trim", D_TRIM }, { "delay-zero", D_ZERO },
    { "delay-extents", D_EXTENTS }, { "delay-cache", D_CACHE },
    { "delay-flush", D_FLUSH }, { "delay-open", D_OPEN },
  };
  size_t i;

  if (strcmp (key, "delay-fast-zero") == 0)
    return fparse_bool (key, value, &fast_zero_delayed);
  for (i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (strcmp (key, names[i].key) == 0) {
      given[names[i].d] = true;
      return fparse_delay (key, value, &delays[names[i].d]);
    }
  nbdkit_error ("%s: unknown parameter of the delay filter (see "
                "'nbdkit --filter=delay null --help')", key);
  return -1;
}

static int
delay_config_complete (void)
{
  /* Trim and zero are writes unless given their own delay. */
  if (!given[D_TRIM])
    delays[D_TRIM] = delays[D_WRITE];
  if (!given[D_ZERO])
    delays[D_ZERO] = delays[D_WRITE];
  return 0;
}

struct wait {
  ev_timer timer;
  struct freq *r;
  struct fopen *o;
};

static void
on_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  struct wait *w = (struct wait *) t;

  if (w->r)
    freq_next (w->r);
  else
    fopen_done (w->o, NULL);
  free (w);
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
  ev_timer_init (&w->timer, on_timer, secs, 0);
  ev_timer_start (loop, &w->timer);
}

static void
delay_open (struct fopen *o)
{
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
    "wdelay=SECS, delay-write=SECS   delay writes (and trim, zero)\n"
    "delay-trim=, delay-zero=, delay-extents=, delay-cache=,\n"
    "delay-flush=, delay-open=       delay one kind of request\n"
    "delay-fast-zero=false           fail fast zero requests (ENOTSUP)\n"
    "                                rather than delay them",
  .keys = keys,
  .config = delay_config,
  .config_complete = delay_config_complete,
  .open = delay_open,
  .pread = d_read,
  .pwrite = d_write,
  .trim = d_trim,
  .zero = d_zero,
  .extents = d_extents,
  .cache = d_cache,
  .flush = d_flush,
};
