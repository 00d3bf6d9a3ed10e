/* nbdkit front end: the three error-number spaces and where they meet.
 *
 *   NBD_E*  (protocol.h)          what a client sees in a reply
 *   HP_E*   (helper-protocol.h)   what a backend (or a filter) puts in
 *                                 a reply's status
 *   errno                         what a system call of the front end
 *                                 sets
 *
 * NBD and helper-protocol errors are the same numbers, so a backend's
 * status reaches the client unchanged: the asserts below pin each pair,
 * and the numbers the NBD specification gives them.  errno never
 * crosses a wire as a number: it is mapped to the portable set with
 * hp_error_from_errno (wire.c), whose table is the one place that knows
 * the host's values.
 */

#ifndef NBDKIT_ERRORS_H
#define NBDKIT_ERRORS_H

#include <stdint.h>

#include "helper-protocol.h"
#include "protocol.h"

#define PIN_ERROR(name, number)                                         \
  _Static_assert (NBD_##name == (number) && HP_##name == (number),      \
                  #name " is " #number " in NBD and the helper protocol")
PIN_ERROR (EPERM, 1);
PIN_ERROR (EIO, 5);
PIN_ERROR (ENOMEM, 12);
PIN_ERROR (EINVAL, 22);
PIN_ERROR (ENOSPC, 28);
PIN_ERROR (EOVERFLOW, 75);
PIN_ERROR (ENOTSUP, 95);
PIN_ERROR (ESHUTDOWN, 108);
#undef PIN_ERROR
_Static_assert (NBD_SUCCESS == 0 && HP_OK == 0, "success is 0");

/* A reply status (from a backend or a filter) as the NBD error to send:
 * the same number when it is one of the portable set, else EIO.
 */
static inline uint32_t
nbd_error_from_status (uint32_t status)
{
  return hp_error_is_valid (status) ? status : NBD_EIO;
}

#endif /* NBDKIT_ERRORS_H */
