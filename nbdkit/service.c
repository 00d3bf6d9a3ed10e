/* nbdkit front end: running as a service (nbdkit-service(1)).
 *
 * Owns what systemd and an administrator see: socket activation
 * (LISTEN_FDS, through libsystemd's sd_listen_fds), sd_notify
 * (READY=1 once listening, STATUS= lines with the connections and
 * backend restarts, STOPPING=1, and WATCHDOG=1 pings while the loop
 * runs and the backend answers), and dropping privileges with -u and
 * -g after the sockets are bound.
 */

#include <config.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "internal.h"

static int listen_fds = -1;
static bool notify;             /* NOTIFY_SOCKET is set */
static ev_timer status_timer, watchdog_timer;
static char last_status[256];
static bool ping_in_flight, ping_answered = true;
static uid_t uid;
static gid_t gid;
static bool have_uid, have_gid;

unsigned
service_listen_fds (void)
{
  if (listen_fds == -1) {
    /* Keep the variables: they are checked again after any fork. */
    int n = sd_listen_fds (0);

    listen_fds = n > 0 ? n : 0;
    if (n < 0)
      die ("socket activation: %s", strerror (-n));
    if (n > 0) {
      unsetenv ("LISTEN_FDS");
      unsetenv ("LISTEN_PID");
      unsetenv ("LISTEN_FDNAMES");
    }
  }
  return (unsigned) listen_fds;
}

/* -u and -g: resolved before anything starts, so that a bad name is a
 * usage error, and so that the backend runs as the same user unless
 * --backend-user/--backend-group say otherwise.
 */
void
service_resolve_ids (void)
{
  char *end;
  unsigned long n;

  if (opt.group) {
    struct group *gr = getgrnam (opt.group);

    errno = 0;
    if (gr)
      gid = gr->gr_gid;
    else if ((n = strtoul (opt.group, &end, 10), !*end && *opt.group &&
              !errno && n < UINT32_MAX))
      gid = (gid_t) n;
    else
      die ("-g %s: no such group (give a group name or number)", opt.group);
    have_gid = true;
  }
  if (opt.user) {
    struct passwd *pw = getpwnam (opt.user);

    errno = 0;
    if (pw) {
      uid = pw->pw_uid;
      if (!have_gid) {
        gid = pw->pw_gid;
        have_gid = true;
      }
    }
    else if ((n = strtoul (opt.user, &end, 10), !*end && *opt.user &&
              !errno && n < UINT32_MAX))
      uid = (uid_t) n;
    else
      die ("-u %s: no such user (give a user name or number)", opt.user);
    have_uid = true;
  }
  if (have_uid && !opt.backend_uid_set) {
    opt.backend_uid = uid;
    opt.backend_uid_set = true;
  }
  if (have_gid && !opt.backend_gid_set) {
    opt.backend_gid = gid;
    opt.backend_gid_set = true;
  }
}

void
service_drop_privileges (void)
{
  if (have_gid) {
    if (setgroups (1, &gid) == -1 && errno != EPERM)
      die ("-g: setgroups: %m");
    if (setgid (gid) == -1)
      die ("-g %s: cannot change group: %m (start the server as root to "
           "use -g)", opt.group ? opt.group : opt.user);
  }
  if (have_uid && setuid (uid) == -1)
    die ("-u %s: cannot change user: %m (start the server as root to "
         "use -u)", opt.user);
  /* Never run on with the privileges we were asked to drop. */
  if ((have_uid && (getuid () != uid || geteuid () != uid)) ||
      (have_gid && (getgid () != gid || getegid () != gid)))
    die ("-u/-g: the privileges were not dropped");
  if (have_uid || have_gid)
    nbdkit_debug ("running as uid %d gid %d", (int) getuid (),
                  (int) getgid ());
}

/* ---- sd_notify ---- */

static void
send_status (void)
{
  char status[256];
  unsigned restarts = 0;
  struct backend_proc *bp;

  for (bp = bproc_first (); bp; bp = bproc_next (bp))
    restarts += supervisor_restarts (bp);

  snprintf (status, sizeof status,
            "STATUS=serving, %u connection%s, %u backend restart%s",
            nr_connections, nr_connections == 1 ? "" : "s",
            restarts, restarts == 1 ? "" : "s");
  if (strcmp (status, last_status) != 0) {
    sd_notify (0, status);
    strcpy (last_status, status);
  }
}

static void
on_status_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  send_status ();
}

static void
on_ping (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  ping_in_flight = false;
  ping_answered = reply && reply->status == 0;
  payload_free (payload);
}

/* Each tick: the loop is alive (it runs this), and the backend answered
 * the previous ping; then ping it again: with PING if the backend
 * answers it (its library does, without running any backend code),
 * else with DEFAULT_EXPORT.  A backend being restarted holds the ping
 * until it is back.
 */
static void
on_watchdog_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  if (ping_answered && !ping_in_flight)
    sd_notify (0, "WATCHDOG=1");
  else
    nbdkit_debug ("watchdog: the backend has not answered; no ping sent");
  if (!ping_in_flight) {
    struct backend_proc *bp = bproc_first ();

    ping_in_flight = true;
    ping_answered = false;
    if (supervisor_backend_answers_ping (bp))
      bproc_ping (bp, 0, on_ping, NULL);
    else
      bproc_default_export (bp, 0, opt.readonly, false, on_ping, NULL);
  }
}

void
service_ready (void)
{
  uint64_t usec = 0;

  notify = getenv ("NOTIFY_SOCKET") != NULL;
  if (!notify)
    return;
  sd_notify (0, "READY=1");
  send_status ();
  ev_timer_init (&status_timer, on_status_timer, 1., 1.);
  ev_timer_start (loop, &status_timer);
  ev_unref (loop);
  if (sd_watchdog_enabled (0, &usec) > 0 && usec > 0) {
    double period = (double) usec / 2e6;

    nbdkit_debug ("watchdog: pinging every %g seconds", period);
    sd_notify (0, "WATCHDOG=1");
    ev_timer_init (&watchdog_timer, on_watchdog_timer, period, period);
    ev_timer_start (loop, &watchdog_timer);
    ev_unref (loop);
  }
}

void
service_stopping (void)
{
  if (!notify)
    return;
  sd_notify (0, "STOPPING=1");
  if (ev_is_active (&status_timer)) {
    ev_ref (loop);
    ev_timer_stop (loop, &status_timer);
  }
  if (ev_is_active (&watchdog_timer)) {
    ev_ref (loop);
    ev_timer_stop (loop, &watchdog_timer);
  }
}
