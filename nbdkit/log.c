/* nbdkit front end: messages.  Errors go where --log says: stderr
 * (the default in the foreground and under socket activation), syslog
 * (the default once forked into the background) or nowhere.  Debug
 * messages (-v) always go to stderr while it is open.  When stderr is
 * a journald stream (JOURNAL_STREAM names it), each line starts with
 * its syslog priority, "<3>" or "<7>", so that journald records errors
 * as errors.  The backend's stderr lines are relayed here prefixed with
 * the backend's name.  Once the loop runs, finished lines are handed to
 * the log writer's thread (log-writer.c), so no thread waits on stderr.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

static bool use_syslog, discard, journal;

void
log_use_syslog (void)
{
  if (opt.log != LOGDEST_DEFAULT)
    return;                     /* --log chose already */
  openlog (PROGRAM_NAME, LOG_PID, LOG_DAEMON);
  use_syslog = true;
}

/* Is stderr the journal stream systemd gave us? */
static bool
stderr_is_journal (void)
{
  const char *js = getenv ("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  return js && sscanf (js, "%llu:%llu", &dev, &ino) == 2 &&
         fstat (STDERR_FILENO, &st) == 0 &&
         (unsigned long long) st.st_dev == dev &&
         (unsigned long long) st.st_ino == ino;
}

void
log_start (void)
{
  journal = stderr_is_journal ();
  switch (opt.log) {
  case LOGDEST_SYSLOG:
    openlog (PROGRAM_NAME, LOG_PID, LOG_DAEMON);
    use_syslog = true;
    break;
  case LOGDEST_NULL:
    discard = true;
    break;
  default:
    break;
  }
}

/* One finished line: to the log writer's queue once the loop runs
 * (log-writer.c), else written here.  A stderr line ends in "\n".
 */
static void
emit (int priority, bool to_syslog, const char *text)
{
  size_t len = strlen (text);

  if (log_writer_queue (priority, to_syslog, text, len))
    return;
  if (to_syslog)
    syslog (priority, "%s", text);
  else if (write (STDERR_FILENO, text, len) == -1) {
    /* nowhere to say it */
  }
}

/* One line to stderr, as "nbdkit: PREFIXMSG", after its priority when
 * stderr is the journal.
 */
static void
emit_stderr (int priority, const char *prefix, const char *msg)
{
  char *line;
  int r;

  if (journal)
    r = asprintf (&line, "<%d>%s: %s%s\n", priority, PROGRAM_NAME, prefix,
                  msg);
  else
    r = asprintf (&line, "%s: %s%s\n", PROGRAM_NAME, prefix, msg);
  if (r >= 0) {
    emit (priority, false, line);
    free (line);
  }
}

static void
vlog (int priority, const char *prefix, const char *fmt, va_list args)
{
  int saved_errno = errno;
  char *msg, *line;

  if (discard && priority != LOG_DEBUG)
    return;
  if (vasprintf (&msg, fmt, args) < 0) {
    errno = saved_errno;
    return;
  }
  /* Debug messages go to stderr whatever --log says. */
  if (use_syslog && priority != LOG_DEBUG) {
    if (asprintf (&line, "%s%s", prefix, msg) >= 0) {
      emit (priority, true, line);
      free (line);
    }
  }
  else
    emit_stderr (priority, prefix, msg);
  free (msg);
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
server_warning (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  vlog (LOG_WARNING, "warning: ", fmt, args);
  va_end (args);
}

void
log_conn_debug (const char *name, uint64_t connection, const char *fmt, ...)
{
  va_list args;
  char prefix[256];

  if (!opt.verbose)
    return;
  snprintf (prefix, sizeof prefix, "%s[%" PRIu64 "]: debug: ", name,
            connection);
  va_start (args, fmt);
  vlog (LOG_DEBUG, prefix, fmt, args);
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

/* A debug message written even without -v (for -D flags that ask for
 * one kind of message).
 */
void
log_debug_always (const char *fmt, ...)
{
  va_list args;

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
log_backend_line (const char *name, const char *line)
{
  int priority = strstr (line, "error") ? LOG_ERR : LOG_INFO;
  char *text;

  if (discard)
    return;
  if (use_syslog) {
    if (asprintf (&text, "%s: %s", name, line) >= 0) {
      emit (priority, true, text);
      free (text);
    }
  }
  else {
    if (asprintf (&text, "%s: ", name) >= 0) {
      emit_stderr (priority, text, line);
      free (text);
    }
  }
}
