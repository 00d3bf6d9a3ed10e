/* nbdkit front end: the one libev loop, signal handling and orderly
 * shutdown.  SIGINT, SIGTERM and SIGQUIT stop the server cleanly;
 * SIGPIPE is ignored (set in main).
 */

#include <config.h>

#include <signal.h>
#include <stdlib.h>

#include "internal.h"

struct ev_loop *loop;

static ev_signal sig_int, sig_term, sig_quit;
static bool quitting;
static int exit_status;

bool
server_quitting (void)
{
  return quitting;
}

void
server_quit (int status)
{
  if (quitting)
    return;
  quitting = true;
  exit_status = status;
  nbdkit_debug ("shutting down");
  listen_stop ();
  conn_close_all ();
  ev_break (loop, EVBREAK_ALL);
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
  ev_run (loop, 0);
  quitting = true;
  backend_stop ();
  listen_cleanup ();
  return exit_status;
}
