/* filters/tar/tar-header.h: the tar format, as pure functions (no I/O,
 * no filter API): parsing a 512-byte header block, GNU long names and
 * pax extended headers, and a scanner that walks an archive one header
 * at a time to find one entry.  Used by filters/tar/tar.c and by the
 * fuzzing target tests/fuzz/fuzz-tar.c.
 *
 * Every field is bounds-checked: a hostile header gives an error
 * message, never a read outside the block or an unbounded allocation.
 */

#ifndef NBDKIT_TAR_HEADER_H
#define NBDKIT_TAR_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512
/* The biggest GNU long name or pax extended header read into memory:
 * a path is at most a few KiB in practice (PATH_MAX is 4096).
 */
#define TAR_MAX_META (1024 * 1024)

/* What a header block is. */
enum tar_kind {
  TAR_ZERO,             /* a block of zeros: the end of the archive */
  TAR_REGULAR,          /* a regular file ('0', NUL, '7'): has data */
  TAR_LONGNAME,         /* GNU 'L': the data is the next entry's name */
  TAR_PAX,              /* pax 'x': records for the next entry */
  TAR_OTHER,            /* anything else: its data (if any) is skipped */
};

struct tar_header {
  enum tar_kind kind;
  char type;                    /* the typeflag byte */
  uint64_t size;                /* bytes of data that follow the header */
  char name[256 + 1];           /* prefix "/" name (ustar), or name */
};

/* Parse one header block.  0 on success, -1 with *err set to a static
 * message.
 */
extern int tar_parse_header (const unsigned char *block,
                             struct tar_header *h, const char **err);

/* Bytes of data blocks after a header with size bytes of data (size
 * rounded up to TAR_BLOCK); false on overflow.
 */
extern bool tar_data_blocks (uint64_t size, uint64_t *r);

/* The name in a GNU long name entry's data (len bytes): malloc'd in
 * *name.  0, or -1 with *err (static) and *name NULL.
 */
extern int tar_parse_longname (const unsigned char *data, size_t len,
                               char **name, const char **err);

/* The records of a pax extended header (len bytes) that matter here:
 * path (malloc'd in *path, or left NULL) and size (*has_size, *size).
 * 0, or -1 with *err (static); *path is NULL after an error.
 */
extern int tar_parse_pax (const unsigned char *data, size_t len,
                          char **path, bool *has_size, uint64_t *size,
                          const char **err);

/* Walking an archive to find the entry named want.  The caller reads
 * what the scanner asks for and gives it back:
 *
 *   tar_scan_init (&s, want);
 *   loop: read TAR_BLOCK bytes at s.pos, then tar_scan_header:
 *     TAR_SCAN_NEXT   read the header at the new s.pos
 *     TAR_SCAN_META   read s.meta_len bytes at s.meta_off, then
 *                     tar_scan_meta (TAR_SCAN_NEXT or TAR_SCAN_ERROR)
 *     TAR_SCAN_FOUND  the entry's data is s.offset, s.size bytes
 *     TAR_SCAN_END    the end of the archive: the entry is not there
 *     TAR_SCAN_ERROR  s.error says what is wrong
 *
 * The caller checks that what it is asked to read lies in the file
 * (and under any limit); tar_scan_free releases the scanner.
 */
enum tar_scan_result {
  TAR_SCAN_NEXT, TAR_SCAN_META, TAR_SCAN_FOUND, TAR_SCAN_END,
  TAR_SCAN_ERROR,
};

struct tar_scan {
  const char *want;
  uint64_t pos;                 /* the next header */
  uint64_t entries;             /* headers seen */
  /* Pending for the next header: */
  char *long_name;              /* GNU 'L' */
  char *pax_path;               /* pax path= */
  bool pax_has_size;
  uint64_t pax_size;            /* pax size= */
  /* The metadata asked for (TAR_SCAN_META). */
  enum tar_kind meta_kind;
  uint64_t meta_off, meta_len;
  /* TAR_SCAN_FOUND */
  uint64_t offset, size;
  char type;                    /* typeflag of a header named want */
  /* TAR_SCAN_ERROR: a message (in msg). */
  const char *error;
  char msg[256];
};

extern void tar_scan_init (struct tar_scan *s, const char *want);
extern enum tar_scan_result tar_scan_header (struct tar_scan *s,
                                             const unsigned char *block);
extern enum tar_scan_result tar_scan_meta (struct tar_scan *s,
                                           const unsigned char *data,
                                           size_t len);
extern void tar_scan_free (struct tar_scan *s);

#endif /* NBDKIT_TAR_HEADER_H */
