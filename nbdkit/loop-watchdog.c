/* nbdkit front end: the loop watchdog, a check that the event loop
 * never blocks.  Off unless -D nbdkit.loop_watchdog=1 is given or the
 * environment names a file in NBDKIT_LOOP_WATCHDOG_FILE (the test
 * suite sets it for every server it starts, and fails if the file is
 * not empty at the end).
 *
 * It measures each iteration's busy part, from just after the loop
 * wakes (an ev_check watcher of the highest priority) to just before
 * it waits again (an ev_prepare watcher of the lowest priority, so after
 * the flushes), and splits its real time three ways with the thread's
 * scheduler statistics (/proc/thread-self/schedstat): time on the CPU,
 * time waiting for a CPU (preempted by other processes), and the rest,
 * time asleep inside a system call.  A turn that slept more than
 * ASLEEP_MS "blocked"; one that ran more than LIMIT_MS on the CPU
 * "worked too long".  Preemption alone is never reported, so a loaded
 * machine does not make the check fail.  (Without schedstat, a turn
 * over LIMIT_MS with a voluntary context switch counts as blocked.)
 *
 * Reporting writes a line to stderr (the log) and to the file; it is a
 * diagnostic, and the only blocking write it makes is the one that
 * reports a problem.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* A turn over LIMIT_MS is looked at: it "worked too long" with more
 * than LIMIT_MS on the CPU, it "blocked" when asleep more than
 * ASLEEP_MS.  A little sleep is not blocking: a mutex shared with a
 * worker thread that the kernel preempted, a page fault on a loaded
 * machine; a blocking call (a sleep, disk I/O, a wait) is what passes
 * 25 ms.
 */
#define LIMIT_MS 10.0
#define ASLEEP_MS 25.0

static ev_check wake;
static ev_prepare sleep_;
static bool measuring;
static double wall0, cpu0, runwait0;
static long nvcsw0;
static int report_fd = -1;
static int schedstat_fd = -1;

/* Seconds on the CPU and waiting for one, from schedstat; false if
 * it cannot be read.
 */
static bool
schedstat (double *cpu, double *runwait)
{
  char buf[128];
  unsigned long long on, waiting;
  ssize_t n;

  if (schedstat_fd == -1)
    return false;
  n = pread (schedstat_fd, buf, sizeof buf - 1, 0);  /* never-blocks: procfs */
  if (n <= 0)
    return false;
  buf[n] = '\0';
  if (sscanf (buf, "%llu %llu", &on, &waiting) != 2)
    return false;
  *cpu = on / 1e9;
  *runwait = waiting / 1e9;
  return true;
}

static double
cpu_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
voluntary_switches (void)
{
  struct rusage ru;

  if (getrusage (RUSAGE_THREAD, &ru) == -1)
    return 0;
  return ru.ru_nvcsw;
}

static void
on_wake (struct ev_loop *l, ev_check *w, int revents)
{
  measuring = true;
  wall0 = ev_time ();
  if (!schedstat (&cpu0, &runwait0)) {
    cpu0 = cpu_now ();
    runwait0 = -1;
    nvcsw0 = voluntary_switches ();
  }
}

static void
on_sleep (struct ev_loop *l, ev_prepare *w, int revents)
{
  double wall_ms, cpu_ms, asleep_ms, cpu, runwait;
  bool blocked;
  char line[256];
  int n;

  if (!measuring)
    return;
  measuring = false;
  wall_ms = (ev_time () - wall0) * 1000;
  if (wall_ms <= LIMIT_MS)
    return;
  if (runwait0 >= 0 && schedstat (&cpu, &runwait)) {
    cpu_ms = (cpu - cpu0) * 1000;
    asleep_ms = wall_ms - cpu_ms - (runwait - runwait0) * 1000;
    blocked = asleep_ms > ASLEEP_MS;
  }
  else {
    cpu_ms = (cpu_now () - cpu0) * 1000;
    asleep_ms = wall_ms - cpu_ms;
    blocked = voluntary_switches () != nvcsw0;
  }
  if (!blocked && cpu_ms <= LIMIT_MS)
    return;                     /* only preempted */
  n = snprintf (line, sizeof line,
                "%s: warning: loop watchdog: one turn of the event loop "
                "took %.1f ms (%.1f ms on the CPU, %.1f ms asleep): the "
                "loop %s\n",
                PROGRAM_NAME, wall_ms, cpu_ms, asleep_ms > 0 ? asleep_ms : 0,
                blocked ? "blocked" : "worked too long");
  if (n > 0 && (size_t) n < sizeof line) {
    if (write (STDERR_FILENO, line, n) == -1) {
      /* nowhere else to say it */
    }
    if (report_fd >= 0 && write (report_fd, line, n) == -1) {
      /* the file is the test suite's; it will see nothing */
    }
  }
}

void
loop_watchdog_start (void)
{
  const char *file = getenv ("NBDKIT_LOOP_WATCHDOG_FILE");

  if (file && *file)
    report_fd = open (file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (report_fd == -1 && !server_debug_flag ("loop_watchdog", 0))
    return;
  schedstat_fd = open ("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  nbdkit_debug ("loop watchdog: reporting turns of the loop over %g ms",
                LIMIT_MS);
  ev_check_init (&wake, on_wake);
  ev_set_priority (&wake, EV_MAXPRI);
  ev_check_start (loop, &wake);
  ev_unref (loop);
  ev_prepare_init (&sleep_, on_sleep);
  ev_set_priority (&sleep_, EV_MINPRI);
  ev_prepare_start (loop, &sleep_);
  ev_unref (loop);
}
