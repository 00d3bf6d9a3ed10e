/* nbdkit front end: the one libev loop, signal handling and orderly
 * shutdown.  SIGINT, SIGTERM and SIGQUIT stop the server cleanly:
 * stop accepting, let the requests in flight finish and their replies
 * reach the clients (for at most DRAIN_TIMEOUT seconds), close the
 * connections, then stop the backend (supervisor_stop).  SIGPIPE is
 * ignored (set in main).
 */

#include <config.h>

#include <signal.h>
#include <stdlib.h>

#include "internal.h"

struct ev_loop *loop;

#define DRAIN_TIMEOUT 5.0

static ev_signal sig_int, sig_term, sig_quit;
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
  /* The server may have been told to quit before the loop ran (with -s,
   * a client that was gone at once): then ev_break had nothing to end.
   */
  if (!quitting)
    ev_run (loop, 0);
  quitting = true;
  supervisor_stop ();
  listen_cleanup ();
  return exit_status;
}
