/* nbdkit front end: forking into the background.
 *
 * Unless -f (or an option implying it) is given, the server forks
 * before it starts the backend.  The parent stays until the child says
 * it is ready (listening, pidfile written) through a pipe, then exits
 * 0; if the child fails first, the parent exits 1, so that a script
 * running 'nbdkit memory 1G' sees configuration errors in its exit
 * status.  The child detaches: new session, stdio on /dev/null,
 * messages to syslog.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static int ready_fd = -1;

void
daemon_start (void)
{
  int fds[2];
  pid_t pid;
  char c;
  ssize_t r;
  int status;

  if (pipe2 (fds, O_CLOEXEC) == -1)
    die ("pipe: %m");
  pid = fork ();
  if (pid == -1)
    die ("fork: %m");
  if (pid > 0) {
    /* Parent: wait for the child to become ready or fail. */
    close (fds[1]);
    do
      r = read (fds[0], &c, 1);
    while (r == -1 && errno == EINTR);
    if (r == 1)
      _exit (EXIT_SUCCESS);
    /* The child exited (or closed the pipe) without being ready. */
    /* never-blocks: the parent, which never runs the loop */
    if (waitpid (pid, &status, 0) == pid && WIFEXITED (status) &&
        WEXITSTATUS (status) != 0)
      _exit (WEXITSTATUS (status));
    _exit (EXIT_FAILURE);
  }

  close (fds[0]);
  ready_fd = fds[1];
  if (setsid () == -1)
    die ("setsid: %m");
}

void
daemon_write_pidfile (void)
{
  char tmp[4096];
  FILE *fp;

  if (!opt.pidfile)
    return;
  /* Write then rename, so a reader never sees a partial file. */
  if (snprintf (tmp, sizeof tmp, "%s.tmp.%d", opt.pidfile, (int) getpid ())
      >= (int) sizeof tmp)
    die ("-P %s: the path is too long", opt.pidfile);
  fp = fopen (tmp, "w");      /* never-blocks: before the loop */
  if (!fp || fprintf (fp, "%d\n", (int) getpid ()) < 0 || fclose (fp) != 0)
    die ("-P %s: cannot write the pid file: %m", opt.pidfile);
  if (rename (tmp, opt.pidfile) == -1) {
    unlink (tmp);
    die ("-P %s: cannot write the pid file: %m", opt.pidfile);
  }
}

void
daemon_ready (void)
{
  int fd;

  nbdkit_debug ("ready to accept connections");

  if (ready_fd == -1)
    return;

  /* Detach from the terminal: messages go to syslog from now on. */
  fd = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    dup2 (fd, STDIN_FILENO);
    dup2 (fd, STDOUT_FILENO);
    if (!opt.verbose && opt.log != LOGDEST_STDERR) {
      dup2 (fd, STDERR_FILENO);
      log_use_syslog ();
    }
    if (fd > STDERR_FILENO)
      close (fd);
  }
  if (write (ready_fd, "", 1) != 1)
    nbdkit_error ("could not tell the parent process we are ready: %m");
  close (ready_fd);
  ready_fd = -1;
}
