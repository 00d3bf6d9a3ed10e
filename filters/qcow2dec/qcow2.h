/* filters/qcow2dec/qcow2.h: the qcow2 format, as pure functions with
 * no I/O and no state: decoding the header, L1 and L2 entries, with
 * every offset and size checked against the image's size, and
 * decompressing one cluster.  The filter glue (filters/qcow2dec/
 * qcow2dec.c) and the fuzzing harness (tests/fuzz/fuzz-qcow2.c) both
 * use them.  Nothing here allocates more than the sizes it is given.
 *
 * The format is qemu's docs/interop/qcow2.txt: all numbers are big
 * endian.
 */

#ifndef NBDKIT_QCOW2_H
#define NBDKIT_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu         /* "QFI\xfb" */
/* The fixed part of a version 2 header, and of version 3 up to and
 * including header_length.
 */
#define QCOW2_V2_HEADER_SIZE 72
#define QCOW2_V3_HEADER_SIZE 104
/* Cluster sizes qemu can make: 512 bytes to 2 MiB. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* qemu refuses L1 tables bigger than this (32 MiB); so do we, which
 * bounds what open allocates.
 */
#define QCOW2_MAX_L1_BYTES (32u * 1024 * 1024)

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY        (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT      (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2        (UINT64_C(1) << 4)

enum qcow2_compression {
  QCOW2_COMPRESSION_DEFLATE = 0,
  QCOW2_COMPRESSION_ZSTD = 1,
};

struct qcow2_header {
  uint32_t version;             /* 2 or 3 */
  uint64_t backing_file_offset;
  uint32_t backing_file_size;
  uint32_t cluster_bits;
  uint64_t cluster_size;
  uint64_t size;                /* virtual size */
  uint32_t crypt_method;
  uint32_t l1_size;             /* entries in the image's L1 table */
  uint64_t l1_offset;
  uint32_t nb_snapshots;
  uint64_t incompatible, compatible, autoclear;
  uint32_t header_length;
  uint8_t compression_type;     /* enum qcow2_compression */
  /* Derived. */
  uint32_t l2_bits;             /* log2 of the entries in an L2 table */
  uint64_t l1_needed;           /* L1 entries that cover size */
};

/* Decode and check the header in buf (len bytes, the start of the
 * image; at least QCOW2_V2_HEADER_SIZE are needed) of an image of
 * file_size bytes.  0 on success; -1 with a message in err (for the
 * user: what is wrong, and what to do) if the image is not qcow2, is
 * corrupt, or uses something this decoder refuses (a backing file,
 * encryption, an external data file, extended L2 entries, a dirty or
 * corrupt image, unknown incompatible features).
 */
extern int qcow2_parse_header (const unsigned char *buf, size_t len,
                               uint64_t file_size, struct qcow2_header *h,
                               char *err, size_t errlen);

/* The backing file name of a header refused for having one, if it is
 * in buf: copied (printable characters only) into name; false if not.
 */
extern bool qcow2_backing_name (const unsigned char *buf, size_t len,
                                const struct qcow2_header *h,
                                char *name, size_t namelen);

/* An L1 entry (host byte order): 0 and *l2_offset = 0 if the L2 table
 * is unallocated, 0 and the table's offset if it is, -1 with a message
 * if the entry is corrupt (reserved bits, unaligned, or the table is
 * not wholly inside the image).
 */
extern int qcow2_decode_l1 (const struct qcow2_header *h, uint64_t file_size,
                            uint64_t entry, uint64_t *l2_offset,
                            char *err, size_t errlen);

/* What an L2 entry says of its cluster. */
enum qcow2_kind {
  QCOW2_UNALLOCATED,            /* reads as zeros (there is no backing) */
  QCOW2_ZERO,                   /* reads as zeros */
  QCOW2_DATA,                   /* at offset, cluster_size bytes */
  QCOW2_COMPRESSED,             /* csize bytes at offset, compressed */
};
struct qcow2_cluster {
  enum qcow2_kind kind;
  uint64_t offset;
  uint64_t csize;
};

/* Decode an L2 entry (host byte order).  0, or -1 with a message if it
 * is corrupt: reserved bits set, a data cluster not aligned or not
 * wholly inside the image, compressed data starting outside it.  A
 * compressed cluster's csize is clipped to the end of the image (its
 * last sector may be partial) and is at most 2 * cluster_size.
 */
extern int qcow2_decode_l2 (const struct qcow2_header *h, uint64_t file_size,
                            uint64_t entry, struct qcow2_cluster *c,
                            char *err, size_t errlen);

/* Was this decoder built with the header's compression type? */
extern bool qcow2_can_decompress (const struct qcow2_header *h);

/* Decompress in (inlen bytes) into out (exactly cluster_size bytes).
 * 0, or -1 with a message (corrupt data, or the type not built in).
 * Thread-safe: for the worker threads.
 */
extern int qcow2_decompress (const struct qcow2_header *h,
                             const unsigned char *in, size_t inlen,
                             unsigned char *out, char *err, size_t errlen);

/* Big-endian loads. */
static inline uint64_t
qcow2_be64 (const unsigned char *p)
{
  return (uint64_t) p[0] << 56 | (uint64_t) p[1] << 48 |
    (uint64_t) p[2] << 40 | (uint64_t) p[3] << 32 |
    (uint64_t) p[4] << 24 | (uint64_t) p[5] << 16 |
    (uint64_t) p[6] << 8 | p[7];
}

static inline uint32_t
qcow2_be32 (const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 |
    (uint32_t) p[2] << 8 | p[3];
}

#endif /* NBDKIT_QCOW2_H */
