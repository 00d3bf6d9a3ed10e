/* nbdkit backends: I/O on a (possibly sparse) file descriptor, shared
 * by the memory, data and file backends, and the model of nbdkit's
 * sparse array (32 KiB pages) that memory and data follow on their
 * memfd.  Each returns 0, or -1 after nbdkit_error with errno set.
 */

#ifndef NBDKIT_SPARSE_FILE_H
#define NBDKIT_SPARSE_FILE_H

#include <inttypes.h>
#include <stdbool.h>
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

/* nbdkit's sparse-array allocator, followed on a memfd.  The disk is
 * cut in pages of SPARSE_PAGE bytes; a page is allocated once anything
 * was written to it (zeroes included), and freed by a zero or trim
 * that covers it whole or that leaves it all zeroes.  Block status
 * says, page by page: not allocated (hole, zero), allocated and all
 * zeroes in the part asked about (zero), or data.  A page is taken as
 * allocated when any byte of it is allocated in the memfd (tmpfs
 * allocates what is written, zeroes included), so the state lives in
 * the memfd and outlives the backend process.
 */
#define SPARSE_PAGE 32768

/* A write; it may run at the same time as other writes and reads. */
extern int sparse_page_pwrite (const char *name, int fd, const void *buf,
                               uint32_t count, uint64_t offset);
/* Zero (or trim) the range of a disk of size bytes. */
extern int sparse_page_zero (const char *name, int fd, uint64_t size,
                             uint64_t count, uint64_t offset);
/* Block status of the range, page by page (the last extent runs to the
 * end of its page, or of the disk).
 */
extern int sparse_page_extents (const char *name, int fd, uint64_t size,
                                uint32_t count, uint64_t offset,
                                uint32_t flags,
                                struct nbdkit_extents *extents);

/* allocator=sparse|malloc[,mlock=true]|zstd of nbdkit-memory-plugin(1)
 * and nbdkit-data-plugin(1).  zstd is refused (see
 * nbdkit-memory-backend(1)).  Returns 0 and sets *alloc (and *mlock),
 * or -1 after nbdkit_error naming the bad value and the valid ones.
 */
enum sparse_allocator { ALLOC_SPARSE, ALLOC_MALLOC };
extern int sparse_parse_allocator (const char *value,
                                   enum sparse_allocator *alloc,
                                   bool *mlock);

/* allocator=malloc: report every byte as data, and zero by writing
 * zeroes (keeping the memory) when locked.
 */
extern int sparse_write_zeroes (const char *name, int fd, uint64_t count,
                                uint64_t offset);
/* allocator=malloc: -1 after nbdkit_error if a flat array of size bytes
 * is more than the machine's RAM and swap, as malloc would refuse it.
 */
extern int sparse_malloc_fits (const char *name, uint64_t size);
/* mlock=true: map the whole file and lock it into RAM (the mapping is
 * kept for the life of the process).
 */
extern int sparse_mlock (const char *name, int fd, uint64_t size);

#endif /* NBDKIT_SPARSE_FILE_H */
