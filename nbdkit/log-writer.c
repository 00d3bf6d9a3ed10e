/* nbdkit front end: the log writer, the one thread that writes log
 * lines once the event loop runs.
 *
 * Owns the queue of lines on their way to stderr or syslog.  A reader
 * of stderr that is slow or stopped (a full pipe, a paused terminal, a
 * journald under load) makes a write to it wait; that must not be the
 * event loop's thread, nor a worker's.  So log.c hands each finished
 * line to log_writer_queue, which copies it into the queue and returns
 * at once; this thread writes the lines in order.  The queue is bounded
 * (QUEUE_MAX bytes): when stderr does not drain, the lines past it are
 * dropped and counted, and the writer says how many in their place.
 * Before the loop runs (start-up, the fork into the background) log.c
 * writes itself, as before.  At exit (die's too) the thread is told to
 * finish: everything queued is written first, in order.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#define QUEUE_MAX (1024 * 1024)

struct log_line {
  struct log_line *next;
  int priority;                 /* for syslog */
  bool to_syslog;               /* else stderr */
  uint64_t dropped_after;       /* lines refused right after this one */
  size_t len;
  char text[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct log_line *head, *last, **tail = &head;
static size_t queued;           /* bytes of text queued or being written */
static uint64_t dropped;        /* lines refused while the list was empty */
static bool running, finishing;
static pthread_t thread;

/* Write all of buf to stderr; a reader gone is not an error here. */
static void
write_stderr (const char *buf, size_t len)
{
  while (len > 0) {
    /* never-blocks: the log writer's own thread */
    ssize_t r = write (STDERR_FILENO, buf, len);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    buf += r;
    len -= r;
  }
}

static void
write_line (const struct log_line *l)
{
  if (l->to_syslog)
    syslog (l->priority, "%s", l->text);
  else
    write_stderr (l->text, l->len);
}

/* Where lines were lost: a warning in their place, on stderr. */
static void
say_dropped (uint64_t lost)
{
  char msg[160];
  int n;

  if (lost == 0)
    return;
  n = snprintf (msg, sizeof msg,
                "%s: warning: %" PRIu64 " log lines were dropped: "
                "stderr was not being read\n", PROGRAM_NAME, lost);
  if (n > 0 && (size_t) n < sizeof msg)
    write_stderr (msg, n);
}

static void *
writer (void *arg)
{
  sigset_t all;

  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, NULL);      /* signals are the loop's */
  pthread_mutex_lock (&lock);
  for (;;) {
    struct log_line *lines, *l;
    uint64_t lost;

    while (!head && !finishing)
      /* never-blocks: the log writer's own thread */
      pthread_cond_wait (&cond, &lock);
    if (!head && finishing)
      break;
    lines = head;
    head = last = NULL;
    tail = &head;
    lost = dropped;
    dropped = 0;
    pthread_mutex_unlock (&lock);

    say_dropped (lost);
    while ((l = lines) != NULL) {
      lines = l->next;
      write_line (l);
      pthread_mutex_lock (&lock);
      queued -= l->len;
      lost = l->dropped_after;
      pthread_mutex_unlock (&lock);
      free (l);
      say_dropped (lost);
    }
    pthread_mutex_lock (&lock);
  }
  pthread_mutex_unlock (&lock);
  return NULL;
}

/* At exit: write out what is queued, then end the thread. */
static void
log_writer_finish (void)
{
  pthread_mutex_lock (&lock);
  if (!running) {
    pthread_mutex_unlock (&lock);
    return;
  }
  finishing = true;
  pthread_cond_signal (&cond);
  pthread_mutex_unlock (&lock);
  /* never-blocks: at exit, after the loop */
  pthread_join (thread, NULL);
  pthread_mutex_lock (&lock);
  running = false;
  pthread_mutex_unlock (&lock);
}

void
log_writer_start (void)
{
  pthread_mutex_lock (&lock);
  if (!running && !finishing &&
      pthread_create (&thread, NULL, writer, NULL) == 0)
    running = true;
  pthread_mutex_unlock (&lock);
  if (running)
    atexit (log_writer_finish);
}

bool
log_writer_queue (int priority, bool to_syslog, const char *text,
                  size_t len)
{
  struct log_line *l = malloc (sizeof *l + len + 1);
  bool taken = true;

  if (l) {
    l->next = NULL;
    l->priority = priority;
    l->to_syslog = to_syslog;
    l->dropped_after = 0;
    l->len = len;
    memcpy (l->text, text, len);
    l->text[len] = '\0';
  }
  pthread_mutex_lock (&lock);
  if (!running || finishing)
    taken = false;              /* the caller writes it */
  else if (!l || queued + len > QUEUE_MAX) {
    if (last)
      last->dropped_after++;
    else
      dropped++;
  }
  else {
    /* The writer waits only for an empty list to fill: wake it once. */
    if (!head)
      pthread_cond_signal (&cond);
    queued += len;
    *tail = l;
    tail = &l->next;
    last = l;
    l = NULL;
  }
  pthread_mutex_unlock (&lock);
  free (l);
  return taken;
}
