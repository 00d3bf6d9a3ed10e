/* backends/sh/call.h: running one method of a script (the sh and eval
 * backends).  call.c owns the child process: fork/exec with pipes for
 * stdin, stdout and stderr, the poll loop that feeds and drains them,
 * and the meaning of the exit status (nbdkit-sh-backend(1), "Exit
 * codes").
 */

#ifndef NBDKIT_SH_CALL_H
#define NBDKIT_SH_CALL_H

#include <stddef.h>

/* What a method's exit status means to its caller. */
enum call_status {
  CALL_OK,          /* 0 (and 4, 7: the request itself succeeded) */
  CALL_ERROR,       /* nbdkit_error and nbdkit_set_error have been called */
  CALL_MISSING,     /* 2: the script does not implement the method */
  CALL_FALSE,       /* 3: "false", for the boolean methods */
};

/* The data of one call.  in/inlen go to the script's stdin (none:
 * stdin is empty).  With want_out, the script's stdout is returned in
 * out (malloc'd, NUL-terminated, the caller frees it; NULL when the
 * call did not succeed) and outlen.  More than max_out bytes of output
 * (0: CALL_MAX_OUTPUT) is an error.
 */
struct call_io {
  const void *in;
  size_t inlen;
  int want_out;
  size_t max_out;
  char *out;
  size_t outlen;
};

/* Larger output of a method than this is an error, except where the
 * caller sets max_out (pread: exactly its count).
 */
#define CALL_MAX_OUTPUT (64 * 1024 * 1024)

/* After call_run: 6, 7 or 8 when the script's exit status asked for
 * its client to be disconnected (nbdkit_disconnect in nbdkit), else 0.
 */
extern __thread int call_disconnect;

/* Run argv[0] with argv (NULL-terminated) and the environment envp.
 * label and method name the call in messages ("LABEL: METHOD: ...";
 * no "LABEL: " when label is empty).  io may be NULL: no input, output
 * discarded.
 */
extern enum call_status call_run (const char *const argv[],
                                  char *const envp[],
                                  const char *label, const char *method,
                                  struct call_io *io);

#endif /* NBDKIT_SH_CALL_H */
