/* filters/readcheck.h: compare a range of the layer below with bytes
 * a filter holds, or with zeros, reading it a piece at a time (shared
 * by the protect and checkwrite filters).
 */

#ifndef NBDKIT_FILTER_READCHECK_H
#define NBDKIT_FILTER_READCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "filter.h"

/* done (opaque, status, msg): status 0 and differs false (the range
 * holds expect, or zeros if expect is NULL), 0 and differs true, or a
 * read from below failed (status HP_E*, msg or NULL).  done runs later,
 * never inside the call.  expect (count bytes) must stay as it is
 * until then.  count > 0.
 */
typedef void (*readcheck_fn) (void *opaque, bool differs, uint32_t status,
                              const char *msg);
extern void readcheck (struct fnext *next, uint64_t offset, uint64_t count,
                       const unsigned char *expect, readcheck_fn done,
                       void *opaque);

#endif /* NBDKIT_FILTER_READCHECK_H */
