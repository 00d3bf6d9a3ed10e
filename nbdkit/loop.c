/* nbdkit front end: the one libev loop, the flushes run before it
 * waits, signal handling and orderly shutdown.
 *
 * Flushes: output is batched per loop iteration.  Whoever queues bytes
 * for a socket (a client's replies, frames for the backend) queues a
 * struct loop_flush; all of them run from one ev_prepare watcher just
 * before the loop waits.  A flush may queue another (writing a client's
 * replies resumes its reading, which sends requests to the backend):
 * those run in the same pass, so the loop never goes to sleep with
 * output still queued.  (A second prepare watcher started from inside
 * a prepare callback would not run until the loop woke up again, which
 * is how TLS clients once stalled.)
 *
 * Shutdown: SIGINT, SIGTERM and SIGQUIT stop the server cleanly: stop
 * accepting, let the requests in flight finish and their replies reach
 * the clients (for at most DRAIN_TIMEOUT seconds), close the
 * connections, then stop the backends (bproc_stop_all).  SIGPIPE is
 * ignored (set in main).
 */

#include <config.h>

#include <signal.h>
#include <stdlib.h>

#include "internal.h"

struct ev_loop *loop;

#define DRAIN_TIMEOUT 5.0

/* At most this many flushes in one pass; any left over run on the next
 * iteration, without waiting (an idle watcher keeps the loop awake).  A
 * safety net: flushes only queue flushes of other sockets.
 */
#define MAX_FLUSHES_PER_PASS 4096

static ev_signal sig_int, sig_term, sig_quit;
static ev_prepare flush_prepare;
static ev_idle flush_idle;
static struct loop_flush *flush_head, **flush_tail = &flush_head;
static bool flush_inited;
static ev_timer drain_timer;
static bool quitting;
static int exit_status;

bool
server_quitting (void)
{
  return quitting;
}

static void
on_drain_timeout (struct ev_loop *l, ev_timer *w, int revents)
{
  nbdkit_debug ("requests still in flight after %g seconds: "
                "closing the connections", DRAIN_TIMEOUT);
  conn_close_all ();
  ev_break (loop, EVBREAK_ALL);
}

void
server_quit (int status)
{
  if (quitting)
    return;
  quitting = true;
  exit_status = status;
  nbdkit_debug ("shutting down");
  service_stopping ();
  listen_stop ();
  chain_stopping ();
  conn_drain_all ();
  if (nr_connections == 0)
    ev_break (loop, EVBREAK_ALL);
  else {
    ev_timer_init (&drain_timer, on_drain_timeout, DRAIN_TIMEOUT, 0);
    ev_timer_start (loop, &drain_timer);
  }
}

void
server_connection_ended (void)
{
  if (quitting && nr_connections == 0) {
    ev_timer_stop (loop, &drain_timer);
    ev_break (loop, EVBREAK_ALL);
  }
}

static void
on_flush_idle (struct ev_loop *l, ev_idle *w, int revents)
{
  ev_idle_stop (loop, w);
}

static void
on_flush_prepare (struct ev_loop *l, ev_prepare *w, int revents)
{
  struct loop_flush *f;
  unsigned n = 0;

  while ((f = flush_head) != NULL && n++ < MAX_FLUSHES_PER_PASS) {
    flush_head = f->next;
    if (!flush_head)
      flush_tail = &flush_head;
    f->next = NULL;
    f->queued = false;
    f->fn (f);
  }
  if (flush_head)
    ev_idle_start (loop, &flush_idle);
  else
    ev_prepare_stop (loop, &flush_prepare);
}

void
loop_flush_queue (struct loop_flush *f)
{
  if (f->queued)
    return;
  if (!flush_inited) {          /* here, not in loop_init: the fuzzing
                                 * harness has a loop of its own */
    ev_prepare_init (&flush_prepare, on_flush_prepare);
    ev_idle_init (&flush_idle, on_flush_idle);
    flush_inited = true;
  }
  f->queued = true;
  f->next = NULL;
  *flush_tail = f;
  flush_tail = &f->next;
  ev_prepare_start (loop, &flush_prepare);
}

void
loop_flush_cancel (struct loop_flush *f)
{
  struct loop_flush **pp;

  if (!f->queued)
    return;
  for (pp = &flush_head; *pp; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      if (!*pp)
        flush_tail = pp;
      break;
    }
  f->next = NULL;
  f->queued = false;
}

static void
on_signal (struct ev_loop *l, ev_signal *w, int revents)
{
  nbdkit_debug ("received signal %d", w->signum);
  server_quit (EXIT_SUCCESS);
}

void
loop_init (void)
{
  loop = ev_default_loop (EVFLAG_AUTO | EVFLAG_NOENV);
  if (!loop)
    die ("could not initialise the event loop (libev)");

  ev_signal_init (&sig_int, on_signal, SIGINT);
  ev_signal_init (&sig_term, on_signal, SIGTERM);
  ev_signal_init (&sig_quit, on_signal, SIGQUIT);
  ev_signal_start (loop, &sig_int);
  ev_signal_start (loop, &sig_term);
  ev_signal_start (loop, &sig_quit);
  /* Signals must not keep the loop alive by themselves. */
  ev_unref (loop);
  ev_unref (loop);
  ev_unref (loop);
}

int
loop_run (void)
{
  log_writer_start ();
  loop_watchdog_start ();
  /* The server may have been told to quit before the loop ran (with -s,
   * a client that was gone at once): then ev_break had nothing to end.
   */
  if (!quitting)
    ev_run (loop, 0);
  quitting = true;
  bproc_stop_all ();
  listen_cleanup ();
  return exit_status;
}
