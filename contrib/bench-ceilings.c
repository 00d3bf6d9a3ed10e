/* contrib/bench-ceilings.c: the machine's physical ceilings for
 * contrib/bench, which compiles this file with cc on the fly and runs
 * it once at the start of a run.
 *
 *   bench-ceilings memcpy SECS REPS
 *   bench-ceilings unix SECS REPS WRITER_CPU READER_CPU
 *
 * memcpy: one thread copies a 256 MiB buffer into another (both far
 * larger than any cache, touched first so no page fault is timed)
 * over and over for SECS seconds.  unix: a writer process pinned to
 * WRITER_CPU sends 256 KiB writes over an AF_UNIX SOCK_STREAM
 * socketpair for SECS seconds to a reader process pinned to READER_CPU,
 * which reads into its own 256 KiB buffer (the copy a real client
 * makes).  Each repeats REPS times and prints the best rate, in bytes
 * per second, on one line.  Not part of the server and not built by
 * make: a measuring tool only.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COPY_SIZE ((size_t) 256 << 20)
#define CHUNK ((size_t) 256 << 10)

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die (const char *what)
{
  fprintf (stderr, "bench-ceilings: %s: %s\n", what, strerror (errno));
  exit (EXIT_FAILURE);
}

static void
pin (int cpu)
{
  cpu_set_t set;
  CPU_ZERO (&set);
  CPU_SET (cpu, &set);
  if (sched_setaffinity (0, sizeof set, &set) == -1)
    die ("sched_setaffinity");
}

/* Called through a volatile pointer so that the compiler cannot see
 * that the same copy repeats and drop or merge any of them.
 */
static void *(*volatile copy_fn) (void *, const void *, size_t) = memcpy;

static double
measure_memcpy (double secs)
{
  char *src = malloc (COPY_SIZE), *dst = malloc (COPY_SIZE);
  uint64_t copied = 0;
  double t0, t;

  if (src == NULL || dst == NULL)
    die ("malloc");
  memset (src, 0x5a, COPY_SIZE);
  memset (dst, 0, COPY_SIZE);
  t0 = now ();
  do {
    copy_fn (dst, src, COPY_SIZE);
    copied += COPY_SIZE;
    src[copied % 4093]++;
  } while ((t = now () - t0) < secs);
  if (dst[COPY_SIZE - 1] != 0x5a)
    abort ();
  free (src);
  free (dst);
  return copied / t;
}

static double
measure_unix (double secs, int wcpu, int rcpu)
{
  int sv[2];
  pid_t pid;
  char *buf = malloc (CHUNK);
  uint64_t got = 0;
  double t0 = 0, t;
  ssize_t r;
  int status;

  if (buf == NULL)
    die ("malloc");
  memset (buf, 0x5a, CHUNK);
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1)
    die ("socketpair");
  pid = fork ();
  if (pid == -1)
    die ("fork");
  if (pid == 0) {
    double start;
    close (sv[0]);
    pin (wcpu);
    start = now ();
    while (now () - start < secs) {
      size_t off = 0;
      while (off < CHUNK) {
        ssize_t w = write (sv[1], buf + off, CHUNK - off);
        if (w == -1) {
          if (errno == EINTR)
            continue;
          die ("write");
        }
        off += w;
      }
    }
    _exit (EXIT_SUCCESS);
  }
  close (sv[1]);
  pin (rcpu);
  for (;;) {
    r = read (sv[0], buf, CHUNK);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      die ("read");
    if (r == 0)
      break;
    if (got == 0)
      t0 = now ();
    got += r;
  }
  t = now () - t0;
  close (sv[0]);
  free (buf);
  if (waitpid (pid, &status, 0) == -1 || !WIFEXITED (status) ||
      WEXITSTATUS (status) != 0) {
    fprintf (stderr, "bench-ceilings: the writer failed\n");
    exit (EXIT_FAILURE);
  }
  return t > 0 ? got / t : 0;
}

int
main (int argc, char *argv[])
{
  double secs, best = 0, r;
  int reps, i;

  if (argc < 4 ||
      (strcmp (argv[1], "memcpy") != 0 && strcmp (argv[1], "unix") != 0) ||
      (strcmp (argv[1], "unix") == 0 && argc != 6)) {
    fprintf (stderr, "usage: bench-ceilings memcpy SECS REPS\n"
             "       bench-ceilings unix SECS REPS WRITER_CPU READER_CPU\n");
    return EXIT_FAILURE;
  }
  secs = atof (argv[2]);
  reps = atoi (argv[3]);
  if (secs <= 0 || reps < 1) {
    fprintf (stderr, "bench-ceilings: SECS '%s' and REPS '%s' must be "
             "positive\n", argv[2], argv[3]);
    return EXIT_FAILURE;
  }
  for (i = 0; i < reps; i++) {
    if (strcmp (argv[1], "memcpy") == 0)
      r = measure_memcpy (secs);
    else
      r = measure_unix (secs, atoi (argv[4]), atoi (argv[5]));
    if (r > best)
      best = r;
  }
  printf ("%.0f\n", best);
  return EXIT_SUCCESS;
}
