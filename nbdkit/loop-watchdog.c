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
 * time asleep inside a system call.  The rest also holds time the
 * thread lost without sleeping: a hypervisor running another guest on
 * the virtual CPU (steal time) and interrupt handling, which the kernel
 * counts neither as the thread's CPU time nor as its wait.  So a turn
 * "blocked" only when the rest passes ASLEEP_MS and the thread really
 * went to sleep in it (a voluntary context switch); one that ran more
 * than LIMIT_MS on the CPU "worked too long".  Preemption and steal
 * alone are never reported, so a loaded machine does not make the check
 * fail.  (Without schedstat, a turn over LIMIT_MS with a voluntary
 * context switch counts as blocked.)
 *
 * A blocked turn is reported with where the loop was asleep: a sampler
 * thread looks at the loop thread every few milliseconds while a turn
 * runs long, and keeps what /proc says it was doing (the system call,
 * and the kernel stack where /proc shows it).
 *
 * Reporting writes a line to stderr (the log) and to the file; it is a
 * diagnostic, and the only blocking write it makes is the one that
 * reports a problem.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* Shared with the sampler: when the current turn began (monotonic ns,
 * 0 between turns), and what the sampler saw during the turn that
 * began at sample_turn.
 */
#define SAMPLE_AFTER_NS (8 * 1000000ULL)
#define SAMPLE_EVERY_NS (4 * 1000000L)
static _Atomic uint64_t turn_began;
static pid_t loop_tid;
static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t sample_turn;
static char sample[448];

static uint64_t
monotonic_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Read a /proc file of the loop thread into buf as one line: newlines
 * become " | ".  Returns the length, 0 if it cannot be read.
 */
static size_t
read_task_file (const char *name, char *buf, size_t size)
{
  char path[64], raw[512];
  size_t i, n = 0;
  ssize_t r;
  int fd;

  snprintf (path, sizeof path, "/proc/self/task/%d/%s", (int) loop_tid, name);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return 0;
  r = read (fd, raw, sizeof raw - 1);
  close (fd);
  if (r <= 0)
    return 0;
  raw[r] = '\0';
  for (i = 0; i < (size_t) r && n + 4 < size; i++) {
    if (strncmp (&raw[i], "[<0>] ", 6) == 0)  /* a stack line's prefix */
      i += 5;
    else if (raw[i] != '\n')
      buf[n++] = raw[i];
    else if (i + 1 < (size_t) r) {
      memcpy (&buf[n], " | ", 3);
      n += 3;
    }
  }
  buf[n] = '\0';
  return n;
}

/* The sampler thread: while a turn runs long, note what the loop
 * thread is waiting in.  It keeps the first sample of a turn that finds
 * the thread in a system call rather than running.
 */
static void *
sampler (void *arg)
{
  const struct timespec every = { 0, SAMPLE_EVERY_NS };
  char syscall_[128], stack[256], line[sizeof sample];
  uint64_t began;
  sigset_t all;

  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, NULL);     /* signals are the loop's */
  for (;;) {
    nanosleep (&every, NULL);   /* never-blocks: the sampler thread */
    began = atomic_load (&turn_began);
    if (began == 0 || monotonic_ns () - began < SAMPLE_AFTER_NS)
      continue;
    pthread_mutex_lock (&sample_lock);
    if (sample_turn == began) {
      pthread_mutex_unlock (&sample_lock);
      continue;
    }
    pthread_mutex_unlock (&sample_lock);
    if (read_task_file ("syscall", syscall_, sizeof syscall_) == 0 ||
        strncmp (syscall_, "running", 7) == 0)
      continue;
    if (read_task_file ("stack", stack, sizeof stack) == 0)
      read_task_file ("wchan", stack, sizeof stack);
    snprintf (line, sizeof line, "system call %s; in %s", syscall_, stack);
    pthread_mutex_lock (&sample_lock);
    if (atomic_load (&turn_began) == began) {
      sample_turn = began;
      memcpy (sample, line, sizeof sample);
    }
    pthread_mutex_unlock (&sample_lock);
  }
  return NULL;
}

/* What the sampler saw during the turn that began at began, or "". */
static void
sample_of_turn (uint64_t began, char *buf, size_t size)
{
  pthread_mutex_lock (&sample_lock);
  snprintf (buf, size, "%s", sample_turn == began ? sample : "");
  pthread_mutex_unlock (&sample_lock);
}

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
  atomic_store (&turn_began, monotonic_ns ());
  wall0 = ev_time ();
  nvcsw0 = voluntary_switches ();
  if (!schedstat (&cpu0, &runwait0)) {
    cpu0 = cpu_now ();
    runwait0 = -1;
  }
}

static void
on_sleep (struct ev_loop *l, ev_prepare *w, int revents)
{
  double wall_ms, cpu_ms, asleep_ms, cpu, runwait;
  bool blocked, slept;
  char line[256 + sizeof sample], where[sizeof sample + 16];
  uint64_t began;
  int n;

  if (!measuring)
    return;
  measuring = false;
  began = atomic_exchange (&turn_began, 0);
  wall_ms = (ev_time () - wall0) * 1000;
  if (wall_ms <= LIMIT_MS)
    return;
  slept = voluntary_switches () != nvcsw0;
  if (runwait0 >= 0 && schedstat (&cpu, &runwait)) {
    cpu_ms = (cpu - cpu0) * 1000;
    asleep_ms = wall_ms - cpu_ms - (runwait - runwait0) * 1000;
    blocked = slept && asleep_ms > ASLEEP_MS;
  }
  else {
    cpu_ms = (cpu_now () - cpu0) * 1000;
    asleep_ms = wall_ms - cpu_ms;
    blocked = slept;
  }
  if (!blocked && cpu_ms <= LIMIT_MS)
    return;                     /* only preempted */
  where[0] = '\0';
  if (blocked) {
    sample_of_turn (began, where + 2, sizeof where - 2);
    if (where[2])
      memcpy (where, ": ", 2);
  }
  n = snprintf (line, sizeof line,
                "%s: warning: loop watchdog: one turn of the event loop "
                "took %.1f ms (%.1f ms on the CPU, %.1f ms asleep): the "
                "loop %s%s\n",
                PROGRAM_NAME, wall_ms, cpu_ms, asleep_ms > 0 ? asleep_ms : 0,
                blocked ? "blocked" : "worked too long", where);
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
  loop_tid = syscall (SYS_gettid);
  {
    pthread_t thread;
    pthread_attr_t attr;

    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create (&thread, &attr, sampler, NULL) != 0)
      nbdkit_debug ("loop watchdog: no sampler thread: blocked turns will "
                    "not say where");
    pthread_attr_destroy (&attr);
  }
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
