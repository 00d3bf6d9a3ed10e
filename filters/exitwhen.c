/* filters/exitwhen.c: exit gracefully when something happens
 * (nbdkit-exitwhen-filter(1)).
 *
 * exit-when-file-created=FILE, exit-when-file-deleted=FILE,
 * exit-when-process-exits=PID, exit-when-pipe-closed=FD and
 * exit-when-script=SCRIPT (exit status 88 means "exit now") are
 * checked as nbdkit checks them: when a client connects and when one
 * disconnects, and, while no client is connected, every
 * exit-when-poll seconds (default 60) on a libev timer.  The pipe is
 * watched all the time with an I/O watcher; a script runs as a child
 * watched by the loop, so its answer counts from when it comes (the
 * client whose connection started it is not held up for it).  Once an
 * event has happened, new clients are refused and the server exits
 * when the last connected one has gone (at once if none is
 * connected).  Without any exit-when-* event the filter does nothing.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filter.h"

#define SCRIPT_EXIT_STATUS 88

enum event { E_CREATED, E_DELETED, E_PROCESS, E_PIPE, E_SCRIPT };

struct condition {
  enum event type;
  char *arg;                    /* file, script */
  long n;                       /* pid, fd */
};

static struct condition *conds;
static size_t nr_conds;
static double poll_secs = 60;
static bool happened;
static ev_timer poll_timer;
static bool poll_inited, poll_active;
/* The pipes are watched through duplicates made in get_ready, before
 * a daemonizing server replaces its stdin/stdout/stderr by /dev/null,
 * so FD 0, 1 and 2 keep meaning what the server was started with.
 */
static ev_io pipe_watchers[16];
static bool pipe_active[16];
static size_t nr_pipes;
static ev_child script_child;
static bool script_running;
static size_t script_next;      /* which script condition runs next */

static int
parse_number (const char *key, const char *value, long min, long *r)
{
  char *end;

  errno = 0;
  *r = strtol (value, &end, 10);
  if (errno || end == value || *end || *r < min) {
    nbdkit_error ("%s=%s: use a whole number of at least %ld", key, value,
                  min);
    return -1;
  }
  return 0;
}

static int
exitwhen_config (const char *key, const char *value)
{
  struct condition c = { 0 }, *n;

  if (strcmp (key, "exit-when-poll") == 0) {
    if (fparse_delay (key, value, &poll_secs) == -1)
      return -1;
    if (poll_secs <= 0) {
      nbdkit_error ("%s=%s: the interval must be more than 0", key, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "exit-when-file-created") == 0)
    c.type = E_CREATED;
  else if (strcmp (key, "exit-when-file-deleted") == 0)
    c.type = E_DELETED;
  else if (strcmp (key, "exit-when-script") == 0)
    c.type = E_SCRIPT;
  else if (strcmp (key, "exit-when-process-exits") == 0) {
    c.type = E_PROCESS;
    if (parse_number (key, value, 1, &c.n) == -1)
      return -1;
  }
  else if (strcmp (key, "exit-when-pipe-closed") == 0) {
    c.type = E_PIPE;
    if (parse_number (key, value, 0, &c.n) == -1)
      return -1;
    if (c.n > INT_MAX || fcntl ((int) c.n, F_GETFD) == -1) {
      nbdkit_error ("%s=%s: file descriptor %ld is not open", key, value,
                    c.n);
      return -1;
    }
    if (server_is_single () && c.n <= STDOUT_FILENO) {
      nbdkit_error ("%s=%s: with -s the server's standard input and "
                    "output are the client's connection; pass the pipe "
                    "on another descriptor", key, value);
      return -1;
    }
    if (nr_pipes == sizeof pipe_watchers / sizeof pipe_watchers[0]) {
      nbdkit_error ("%s=%s: too many pipes to watch", key, value);
      return -1;
    }
    nr_pipes++;
  }
  else {
    nbdkit_error ("%s: unknown parameter of the exitwhen filter (see "
                  "'nbdkit --filter=exitwhen null --help')", key);
    return -1;
  }
  if (c.type == E_CREATED || c.type == E_DELETED || c.type == E_SCRIPT) {
    c.arg = strdup (value);
    if (!c.arg) {
      nbdkit_error ("exitwhen filter: %s=%s: out of memory", key, value);
      return -1;
    }
  }
  n = realloc (conds, (nr_conds + 1) * sizeof *n);
  if (!n) {
    nbdkit_error ("exitwhen filter: %s=%s: out of memory", key, value);
    free (c.arg);
    return -1;
  }
  conds = n;
  conds[nr_conds++] = c;
  return 0;
}

/* The watchers were ev_unref'd (they are watches, not work the loop
 * waits for): take the reference back before stopping one, as libev
 * requires.
 */
static void
stop_poll_timer (void)
{
  if (poll_active) {
    ev_ref (loop);
    ev_timer_stop (loop, &poll_timer);
    poll_active = false;
  }
}

/* The timer polls only while no client is connected (as nbdkit's
 * filter): the clients' comings and goings are checks of their own.
 */
static void
start_poll_timer (void)
{
  if (poll_inited && !poll_active && !happened) {
    ev_timer_set (&poll_timer, poll_secs, poll_secs);
    ev_timer_start (loop, &poll_timer);
    ev_unref (loop);            /* a watch, not work to wait for */
    poll_active = true;
  }
}

static void
stop_pipe_watcher (size_t p)
{
  if (pipe_active[p]) {
    ev_ref (loop);
    ev_io_stop (loop, &pipe_watchers[p]);
    pipe_active[p] = false;
    close (pipe_watchers[p].fd);
  }
}

static void
event_happened (const char *what)
{
  if (happened)
    return;
  happened = true;
  nbdkit_debug ("exitwhen filter: %s", what);
  stop_poll_timer ();
  if (nr_connections == 0)
    server_quit (EXIT_SUCCESS);
  else
    nbdkit_debug ("exitwhen filter: exiting once the %u connected "
                  "client(s) have gone", nr_connections);
}

static void
on_script_exit (struct ev_loop *l, ev_child *w, int revents)
{
  ev_child_stop (loop, w);
  script_running = false;
  if (WIFEXITED (w->rstatus) &&
      WEXITSTATUS (w->rstatus) == SCRIPT_EXIT_STATUS)
    event_happened ("the script said to exit");
}

static void
run_script (const char *script)
{
  pid_t pid = fork ();

  if (pid == -1) {
    nbdkit_error ("exitwhen filter: fork: %m");
    return;
  }
  if (pid == 0) {
    int devnull = open ("/dev/null", O_RDWR);

    if (devnull >= 0) {
      dup2 (devnull, STDIN_FILENO);
      dup2 (devnull, STDOUT_FILENO);
    }
    signal (SIGPIPE, SIG_DFL);
    execl ("/bin/sh", "sh", "-c", script, (char *) NULL);
    _exit (127);
  }
  script_running = true;
  ev_child_init (&script_child, on_script_exit, pid, 0);
  ev_child_start (loop, &script_child);
}

static void
check_now (void)
{
  size_t i;

  for (i = 0; i < nr_conds && !happened; ++i) {
    const struct condition *c = &conds[i];

    switch (c->type) {
    case E_CREATED:
      if (access (c->arg, F_OK) == 0)
        event_happened ("the file was created");
      break;
    case E_DELETED:
      if (access (c->arg, F_OK) == -1 && errno == ENOENT)
        event_happened ("the file was deleted");
      break;
    case E_PROCESS:
      if (kill ((pid_t) c->n, 0) == -1 && errno == ESRCH)
        event_happened ("the process exited");
      break;
    case E_PIPE:
      break;                    /* watched by on_pipe */
    case E_SCRIPT:
      break;
    }
  }
  /* One script at a time, taking turns. */
  if (!happened && !script_running) {
    for (i = 0; i < nr_conds; ++i) {
      size_t k = (script_next + i) % nr_conds;

      if (conds[k].type == E_SCRIPT) {
        script_next = k + 1;
        run_script (conds[k].arg);
        break;
      }
    }
  }
}

static void
on_poll (struct ev_loop *l, ev_timer *w, int revents)
{
  check_now ();
}

static void
on_pipe (struct ev_loop *l, ev_io *w, int revents)
{
  char buf[256];
  ssize_t r = read (w->fd, buf, sizeof buf);

  if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR)) {
    stop_pipe_watcher ((size_t) (w - pipe_watchers));
    event_happened ("the pipe was closed");
  }
}

static int
exitwhen_get_ready (void)
{
  size_t i, p = 0;

  for (i = 0; i < nr_conds; ++i)
    if (conds[i].type == E_PIPE) {
      /* Runs after the fork into the background and before stdio is
       * replaced by /dev/null (daemon_ready): the duplicate keeps the
       * descriptor the server was given.
       */
      int fd = fcntl ((int) conds[i].n, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);

      if (fd == -1) {
        nbdkit_error ("exitwhen filter: exit-when-pipe-closed=%ld: "
                      "cannot duplicate the descriptor: %m", conds[i].n);
        return -1;
      }
      fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
      ev_io_init (&pipe_watchers[p], on_pipe, fd, EV_READ);
      ev_io_start (loop, &pipe_watchers[p]);
      ev_unref (loop);          /* a watch, not work to wait for */
      pipe_active[p] = true;
      p++;
    }
  if (nr_conds == 0)
    return 0;                   /* nothing to watch: the filter is idle */
  ev_timer_init (&poll_timer, on_poll, poll_secs, poll_secs);
  poll_inited = true;
  start_poll_timer ();
  check_now ();
  return 0;
}

static void
exitwhen_unload (void)
{
  size_t i;

  stop_poll_timer ();
  for (i = 0; i < nr_pipes; ++i)
    stop_pipe_watcher (i);
  for (i = 0; i < nr_conds; ++i)
    free (conds[i].arg);
  free (conds);
}

/* A client connects: check the events first, as nbdkit does, and
 * refuse it if one has happened.
 */
static bool
exitwhen_accept (int fd, const char *peer)
{
  if (nr_conds == 0)
    return true;
  check_now ();
  if (happened) {
    nbdkit_error ("exitwhen filter: %s: refused: the server is exiting",
                  peer);
    return false;
  }
  stop_poll_timer ();           /* connected: connects and closes check */
  return true;
}

/* A client has gone: check again, and exit if it was the last one
 * and an event has happened.
 */
static void
exitwhen_closed (void)
{
  if (nr_conds == 0)
    return;
  if (!happened)
    check_now ();
  if (happened) {
    if (nr_connections == 0)
      server_quit (EXIT_SUCCESS);
  }
  else if (nr_connections == 0)
    start_poll_timer ();
}

static const char *const keys[] = { "exit-when-*", NULL };

const struct filter exitwhen_filter = {
  .name = "exitwhen",
  .description = "exit gracefully when an event happens",
  .config_help =
    "exit-when-file-created=FILE    exit once FILE exists\n"
    "exit-when-file-deleted=FILE    exit once FILE is gone\n"
    "exit-when-process-exits=PID    exit once process PID has exited\n"
    "exit-when-pipe-closed=FD       exit once the pipe on FD is closed\n"
    "exit-when-script=SCRIPT        exit once SCRIPT exits with 88\n"
    "exit-when-poll=SECS            how often to check while no client is\n"
    "                               connected (default 60); connects and\n"
    "                               disconnects check too\n"
    "(no exit-when-* event: the filter does nothing)",
  .keys = keys,
  .config = exitwhen_config,
  .get_ready = exitwhen_get_ready,
  .unload = exitwhen_unload,
  .accept = exitwhen_accept,
  .closed = exitwhen_closed,
};
