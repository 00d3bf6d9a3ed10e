/* The fuzzing harness: what tests/fuzz/fuzz-server.c needs of the
 * in-process stand-in backend (tests/fuzz/fuzz-backend.c).
 */

#ifndef NBDKIT_FUZZ_BACKEND_H
#define NBDKIT_FUZZ_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Once per process: the options (from $FUZZ_NBDKIT_OPTIONS), the disk
 * image, the event loop.
 */
extern void fuzz_backend_init (void);

/* Before each input: a fresh disk and fresh per-connection counters. */
extern void fuzz_backend_reset (void);

/* While the client is sending (and not blocked), the export "stall"
 * answers nothing: requests pile up as they would behind a slow
 * backend.
 */
extern void fuzz_backend_client_sending (bool sending);

/* For this input, opening the export "" fails (EPERM). */
extern void fuzz_backend_set_no_default (bool no_default);

/* After each input, once the loop has stopped: nothing may be left in
 * flight and every handle the front end opened must have been closed.
 * Aborts otherwise.
 */
extern void fuzz_backend_check_idle (void);

/* Report a bug in the front end (or in the harness) and abort. */
extern void fuzz_bug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

#endif /* NBDKIT_FUZZ_BACKEND_H */
