/* The fuzzing harness's disk and exports (tests/fuzz/fuzz-backend-disk.c):
 * what the stand-in backend of tests/fuzz/fuzz-backend.c serves.  One
 * 1 MiB disk of 4 KiB blocks, its initial layout (see fuzz-backend.c's
 * header comment) restored before each input, and the table of the
 * exports that are views of it.
 */

#ifndef NBDKIT_FUZZ_BACKEND_DISK_H
#define NBDKIT_FUZZ_BACKEND_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#define DISK_SIZE  (1024 * 1024)
#define BLOCK      4096
#define NR_BLOCKS  (DISK_SIZE / BLOCK)
#define EIO_START  (DISK_SIZE - 64 * 1024)
#define EIO_END    (DISK_SIZE - 32 * 1024)
#define LOST_START EIO_END
#define LOST_END   DISK_SIZE

enum open_result { OPEN_OK, OPEN_DENIED, OPEN_BAD_BLOCK_SIZE, OPEN_NO_SIZE,
                   OPEN_FLAKY };

struct fx_export {
  const char *name;             /* as asked */
  const char *canonical;        /* "name" in the OPEN reply */
  uint64_t size;
  bool can_write, can_flush, can_trim, can_zero, can_fast_zero;
  bool can_extents, can_multi_conn, rotational;
  const char *can_fua, *can_cache;
  uint32_t bmin, bpref, bmax;
  const char *description;
  enum open_result open;
};

/* Make the initial disk (once), and restore it before each input. */
extern void disk_init (void);
extern void disk_reset (void);

/* Does [off, off+cnt) touch [start, end)? */
extern bool overlaps (uint64_t off, uint64_t cnt, uint64_t start,
                      uint64_t end);
/* Does [off, off+cnt) read as zeros (past the disk: a hole)? */
extern bool reads_as_zeros (uint64_t off, uint64_t cnt);
extern bool any_data (uint64_t off, uint64_t cnt);
/* Reads past the disk leave buf alone; writes there vanish.  A NULL
 * buf writes nothing but allocates (CACHE-like).
 */
extern void disk_read (unsigned char *buf, uint64_t off, uint64_t cnt);
extern void disk_write (const unsigned char *buf, uint64_t off,
                        uint64_t cnt);
/* Zero a range; blocks wholly inside become a hole (punch) or zeros. */
extern void disk_zero (uint64_t off, uint64_t cnt, bool punch);
/* The EXTENTS reply for [off, off+cnt) of an export of size bytes
 * (malloc'd, *len bytes).
 */
extern unsigned char *disk_extents (uint64_t off, uint64_t cnt,
                                    uint64_t size, bool req_one,
                                    uint32_t *len);

/* The exports; the first is the default export "". */
extern const struct fx_export exports[];
extern const size_t nr_exports;
/* The export of that name, or NULL. */
extern const struct fx_export *find_export (const char *name);
/* can_fua, can_cache: "none", "emulate", "native", or a boolean
 * written "false" or "true": offered?  And as the OPEN reply has it.
 */
extern bool level (const char *l);
extern json_t *level_json (const char *l);

#endif /* NBDKIT_FUZZ_BACKEND_DISK_H */
