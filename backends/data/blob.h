/* nbdkit data backend: blobs, the sparse byte strings that the data
 * format evaluates to (see format.c).
 *
 * A blob has a length and an ordered list of chunks, each either bytes
 * (owned by the chunk) or a run of one repeated byte; what no chunk
 * covers reads as zeroes, and a later chunk overwrites an earlier one
 * where they overlap.  So '@1T 1' costs one chunk of one byte, and
 * '0x55*1G' one chunk, not a gigabyte.  Lengths and offsets are at
 * most 2^63-1.  Every function returns 0 or -1 after nbdkit_error.
 */

#ifndef NBDKIT_DATA_BLOB_H
#define NBDKIT_DATA_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunk {
  uint64_t off;                 /* where it starts in the blob */
  uint64_t len;                 /* at least 1 */
  int fill;                     /* 0-255: len copies of this byte; -1: data */
  unsigned char *data;          /* the len bytes when fill == -1 */
  bool literal;                 /* written as is, zeroes too (see render) */
  bool zero;                    /* fill 0 that zeroes, even if short */
};

struct blob {
  uint64_t len;
  struct chunk *v;
  size_t n, cap;
  uint64_t end;                 /* the end of the furthest chunk */
  uint64_t data;                /* bytes held in data chunks */
};

/* An empty blob (length 0, no chunks) needs no allocation: use
 * BLOB_INIT, free with blob_reset.
 */
#define BLOB_INIT { 0, NULL, 0, 0, 0, 0 }

extern void blob_reset (struct blob *b);

/* Put bytes, or len copies of one byte, at off (len may be 0); the
 * blob's length grows to cover them.
 */
extern int blob_put (struct blob *b, uint64_t off, const void *data,
                     uint64_t len);
extern int blob_put_fill (struct blob *b, uint64_t off, unsigned char byte,
                          uint64_t len);
/* Bytes that nbdkit writes as they are, zeroes included (raw=, base64=,
 * files, scripts and slices): their pages are allocated even when
 * they hold only zeroes.
 */
extern int blob_put_literal (struct blob *b, uint64_t off, const void *data,
                             uint64_t len);

/* Put all of src at off in dst: the src->len bytes from off are
 * replaced, holes of src included (they become zeroes).
 */
extern int blob_insert (struct blob *dst, uint64_t off,
                        const struct blob *src);

/* blob_insert as nbdkit's blit from one sparse array to another: each
 * piece of a 32K page of dst that src gives only zeroes is zeroed (so
 * is not allocated), the other pieces are written as they are.
 */
extern int blob_insert_blit (struct blob *dst, uint64_t off,
                             const struct blob *src);

/* dst (empty) becomes n copies of src, one after the other. */
extern int blob_repeat (struct blob *dst, const struct blob *src,
                        uint64_t n);

/* dst (empty) becomes the bytes from..to-1 of src. */
extern int blob_slice (struct blob *dst, const struct blob *src,
                       uint64_t from, uint64_t to);

/* Write the first size bytes of the blob into fd, which is a file of
 * that size and all zeroes (parts past the blob's length stay zero),
 * chunk after chunk, allocating its 32K pages as nbdkit's data plugin
 * does on its sparse array (see ../sparse-file.h): literal chunks,
 * runs of a byte other than zero and data are written; a lone zero
 * byte is written; a longer run of zeroes (or data of zeroes only, not
 * literal) zeroes its range, which frees pages.
 */
extern int blob_render (const struct blob *b, int fd, uint64_t size);

#endif /* NBDKIT_DATA_BLOB_H */
