/* nbdkit backends: I/O on a (possibly sparse) file descriptor, shared
 * by the memory and file backends.  Each returns 0, or -1 after
 * nbdkit_error with errno set.
 */

#ifndef NBDKIT_SPARSE_FILE_H
#define NBDKIT_SPARSE_FILE_H

#include <inttypes.h>
#include <stdint.h>

#include "nbdkit-backend.h"

extern int sparse_pread (const char *name, int fd, void *buf, uint32_t count, uint64_t offset);
extern int sparse_pwrite (const char *name, int fd, const void *buf, uint32_t count,
                          uint64_t offset);
/* Make the range a hole (reads as zeroes). */
extern int sparse_punch (const char *name, int fd, uint32_t count, uint64_t offset);
/* Data and holes of the range, from SEEK_DATA/SEEK_HOLE. */
extern int sparse_extents (const char *name, int fd, uint32_t count, uint64_t offset,
                           uint32_t flags, struct nbdkit_extents *extents);

#endif /* NBDKIT_SPARSE_FILE_H */
