/* backends/sh/methods-internal.h: what the files of methods.c's
 * callbacks share, private to them: methods.c (running a method,
 * start-up, exports, connections), methods-caps.c (capabilities) and
 * methods-data.c (data).  What the sh and eval programs see is in
 * methods.h.
 */

#ifndef NBDKIT_SH_METHODS_INTERNAL_H
#define NBDKIT_SH_METHODS_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#include "call.h"
#include "parse.h"

/* The capability methods whose answers a handle keeps: each runs at
 * most once per connection, as in nbdkit.
 */
enum sh_cap {
  CAP_WRITE, CAP_FLUSH, CAP_ROTATIONAL, CAP_TRIM, CAP_ZERO, CAP_FAST_ZERO,
  CAP_EXTENTS, CAP_MULTI_CONN, CAP_FUA, CAP_CACHE, NR_CAPS
};

/* A connection's handle. */
struct sh_handle {
  char *h;                      /* what the script's open printed */
  int zero;                     /* the script's can_zero: 1 or 0 */
  char *description;            /* export_description, kept for the reply */
  /* Answers of the capability methods, valid where cap_known is set
   * (errors are not kept: the next call asks again).
   */
  int cap[NR_CAPS];
  unsigned char cap_known[NR_CAPS];
};

/* run_method for a request of handle h: an exit status of 6, 7 or 8
 * disconnects h's client (nbdkit_disconnect).
 */
extern enum call_status run_handle_method (struct sh_handle *h,
                                           const char *method,
                                           const char *const *args,
                                           struct call_io *io);
extern int simple_handle_method (struct sh_handle *h, const char *method,
                                 const char *const *args,
                                 struct call_io *io, int if_missing);

/* The thread model the script's thread_model method printed. */
extern int script_thread_model;


/* Exit status 3 from a method that is not a boolean. */
extern int bad_false (const char *method);
/* What a method that prints nothing useful returns: 0 when it ran,
 * if_missing when the script lacks it, -1 (after an error) otherwise.
 */
extern int method_result (enum call_status r, const char *method,
                          int if_missing);

/* A method whose only result is success: 0, or -1 after an error; a
 * missing one returns if_missing.
 */
extern int simple_method (const char *method, const char *const *args,
                          struct call_io *io, int if_missing);

/* Flags as the scripts see them: comma-separated words. */
extern void flags_string (uint32_t flags, char *buf, size_t len);

#endif /* NBDKIT_SH_METHODS_INTERNAL_H */
