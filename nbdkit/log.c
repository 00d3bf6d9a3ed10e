/* nbdkit front end: messages.  Errors and debug messages go to stderr,
 * or to syslog once the server has forked into the background.  Debug
 * messages (-v) always go to stderr while it is open.  The backend's
 * stderr lines are relayed here prefixed with the backend's name.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

static bool use_syslog;

void
log_use_syslog (void)
{
  openlog (PROGRAM_NAME, LOG_PID, LOG_DAEMON);
  use_syslog = true;
}

static void
vlog (int priority, const char *prefix, const char *fmt, va_list args)
{
  int saved_errno = errno;

  if (use_syslog) {
    char *msg;

    if (vasprintf (&msg, fmt, args) >= 0) {
      syslog (priority, "%s%s", prefix, msg);
      free (msg);
    }
  }
  else {
    /* One write per line, so concurrent writers do not interleave. */
    char *msg;

    if (vasprintf (&msg, fmt, args) >= 0) {
      dprintf (STDERR_FILENO, "%s: %s%s\n", PROGRAM_NAME, prefix, msg);
      free (msg);
    }
  }
  errno = saved_errno;
}

void
nbdkit_error (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  vlog (LOG_ERR, "", fmt, args);
  va_end (args);
}

void
nbdkit_debug (const char *fmt, ...)
{
  va_list args;

  if (!opt.verbose)
    return;
  va_start (args, fmt);
  vlog (LOG_DEBUG, "debug: ", fmt, args);
  va_end (args);
}

void
die (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  vlog (LOG_ERR, "", fmt, args);
  va_end (args);
  exit (EXIT_FAILURE);
}

void
log_backend_line (const char *line)
{
  const char *name = binfo.name ? binfo.name : opt.backend_name;

  if (use_syslog)
    syslog (strstr (line, "error") ? LOG_ERR : LOG_INFO, "%s: %s", name, line);
  else
    dprintf (STDERR_FILENO, "%s: %s: %s\n", PROGRAM_NAME, name, line);
}
