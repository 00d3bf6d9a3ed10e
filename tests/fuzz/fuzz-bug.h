/* Fuzzing harnesses: fuzz_bug, how a harness reports a broken promise
 * of the code under test ("*** fuzz: BUG: ..." and abort, which
 * libFuzzer and the replay programs report as a crash).
 */

#ifndef NBDKIT_FUZZ_BUG_H
#define NBDKIT_FUZZ_BUG_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static inline void __attribute__ ((noreturn, format (printf, 1, 2)))
fuzz_bug (const char *fmt, ...)
{
  va_list args;

  fprintf (stderr, "*** fuzz: BUG: ");
  va_start (args, fmt);
  vfprintf (stderr, fmt, args);
  va_end (args);
  fprintf (stderr, "\n");
  abort ();
}

#endif /* NBDKIT_FUZZ_BUG_H */
