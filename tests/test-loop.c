/* Unit test of the flushes run before the event loop waits
 * (nbdkit/loop.c): a flush queued by another flush runs in the same
 * pass, before the loop could sleep; queueing twice runs once; a
 * cancelled flush does not run; a long chain is cut into passes
 * without the loop ever sleeping in between.  Each check runs one
 * iteration of the loop with EVRUN_NOWAIT, so none depends on timing.
 * TAP on stdout.
 *
 * The regression: client output and backend frames each had an
 * ev_prepare watcher of their own, and one started from inside the
 * other's callback did not run until the loop woke up again: a TLS
 * client whose option arrived with its last handshake bytes waited
 * for an answer that was queued but never sent.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* What loop.c calls outside the flushes, not used here. */
unsigned nr_connections;
void nbdkit_debug (const char *fmt, ...) { }
void die (const char *fmt, ...) { abort (); }
void service_stopping (void) { }
void listen_stop (void) { }
void listen_cleanup (void) { }
void conn_drain_all (void) { }
void conn_close_all (void) { }
void bproc_stop_all (void) { }
void chain_stopping (void) { }
void loop_watchdog_start (void) { }
void log_writer_start (void) { }

static int test_nr, failures;

static void
ok (int cond, const char *what)
{
  ++test_nr;
  printf ("%s %d - loop: %s\n", cond ? "ok" : "not ok", test_nr, what);
  if (!cond)
    failures++;
}

struct item {
  struct loop_flush f;
  int runs;
  struct item *then;            /* queued when this one runs */
  bool last;                    /* ends the loop iteration */
};

static void
run_item (struct loop_flush *f)
{
  struct item *it = (struct item *) f;

  it->runs++;
  if (it->then)
    loop_flush_queue (&it->then->f);
  if (it->last)
    ev_break (loop, EVBREAK_ONE);
}

static void
init_item (struct item *it, struct item *then)
{
  memset (it, 0, sizeof *it);
  it->f.fn = run_item;
  it->then = then;
}

/* Something for the loop to wait on, so that it would block. */
static ev_io never;
static int never_fds[2];

static void
on_never (struct ev_loop *l, ev_io *w, int revents)
{
}

/* An I/O callback that queues a flush, as a backend reply does. */
static ev_io readable;
static int ready_fds[2];
static struct item from_io;

static void
on_readable (struct ev_loop *l, ev_io *w, int revents)
{
  char c;

  if (read (ready_fds[0], &c, 1) == 1)
    loop_flush_queue (&from_io.f);
}

/* Only if a check fails by sleeping: it fails instead of hanging. */
static ev_timer guard;
static int guard_fired;

static void
on_guard (struct ev_loop *l, ev_timer *w, int revents)
{
  guard_fired = 1;
}

#define CHAIN 10000

int
main (void)
{
  static struct item chain[CHAIN];
  struct item a, b, c, d;
  int i, passes, all;

  loop = ev_default_loop (EVFLAG_AUTO | EVFLAG_NOENV);
  if (!loop || pipe (never_fds) == -1 || pipe (ready_fds) == -1) {
    printf ("Bail out! no loop\n");
    return 1;
  }
  ev_io_init (&never, on_never, never_fds[0], EV_READ);
  ev_io_start (loop, &never);

  /* A flush that queues another: both run before the loop waits. */
  init_item (&b, NULL);
  init_item (&a, &b);
  loop_flush_queue (&a.f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (a.runs == 1, "a queued flush runs before the loop waits");
  ok (b.runs == 1,
      "a flush queued by a flush runs in the same pass (the TLS stall)");

  /* Queued twice, runs once; and may be queued again after. */
  init_item (&a, NULL);
  loop_flush_queue (&a.f);
  loop_flush_queue (&a.f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (a.runs == 1, "a flush queued twice runs once");
  loop_flush_queue (&a.f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (a.runs == 2, "a flush that ran can be queued again");

  /* Cancelled: does not run; the others queued around it do. */
  init_item (&b, NULL);
  init_item (&c, NULL);
  init_item (&d, NULL);
  loop_flush_queue (&b.f);
  loop_flush_queue (&c.f);
  loop_flush_queue (&d.f);
  loop_flush_cancel (&d.f);
  loop_flush_cancel (&b.f);
  loop_flush_cancel (&b.f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (b.runs == 0 && d.runs == 0, "a cancelled flush does not run");
  ok (c.runs == 1, "the flushes queued around it still run");
  loop_flush_queue (&d.f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (d.runs == 1, "the last flush, cancelled and queued again, runs");

  /* Queued from an I/O callback: runs in the same iteration. */
  init_item (&from_io, NULL);
  ev_io_init (&readable, on_readable, ready_fds[0], EV_READ);
  ev_io_start (loop, &readable);
  if (write (ready_fds[1], "x", 1) != 1)
    abort ();
  for (i = 0; i < 10 && from_io.runs == 0; ++i)
    ev_run (loop, EVRUN_NOWAIT);
  ok (from_io.runs == 1, "a flush queued by an I/O callback runs");
  ev_io_stop (loop, &readable);

  /* A chain longer than one pass: the rest runs on the next
   * iterations, and the loop is kept awake (an idle watcher) so that
   * even a blocking iteration does not sleep on it.  The last flush
   * ends the iteration it runs in, before the loop would wait.
   */
  for (i = 0; i < CHAIN; ++i)
    init_item (&chain[i], i + 1 < CHAIN ? &chain[i + 1] : NULL);
  chain[CHAIN - 1].last = true;
  ev_timer_init (&guard, on_guard, 30, 0);
  ev_timer_start (loop, &guard);
  loop_flush_queue (&chain[0].f);
  ev_run (loop, EVRUN_NOWAIT);
  ok (chain[CHAIN - 1].runs == 0, "a long chain is cut into passes");
  for (passes = 1; passes < 100 && chain[CHAIN - 1].runs == 0; ++passes)
    ev_run (loop, EVRUN_ONCE);      /* would block without the idle */
  all = 1;
  for (i = 0; i < CHAIN; ++i)
    if (chain[i].runs != 1)
      all = 0;
  ok (all && !guard_fired,
      "every flush of the chain ran once, without the loop sleeping");
  ev_timer_stop (loop, &guard);

  printf ("1..%d\n", test_nr);
  return failures ? 1 : 0;
}
