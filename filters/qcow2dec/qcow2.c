/* filters/qcow2dec/qcow2.c: the qcow2 format's pure functions (see
 * qcow2.h): header, L1 and L2 entry decoding with their bounds checks,
 * and cluster decompression (zlib's raw deflate; zstd when built with
 * libzstd).  No I/O, no globals, no allocation beyond a decompressor's
 * own state: the fuzzing target "qcow2" runs all of it.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef HAVE_LIBZSTD
#include <zstd.h>
#endif

#include "qcow2.h"

/* The host offset bits of L1 entries and standard L2 entries (9..55),
 * and the bits that must be zero in each.
 */
#define OFFSET_MASK       UINT64_C(0x00fffffffffffe00)
#define COPIED            (UINT64_C(1) << 63)
#define COMPRESSED        (UINT64_C(1) << 62)
#define ZERO_FLAG         UINT64_C(1)
#define L1_RESERVED       (~(OFFSET_MASK | COPIED))
#define L2_RESERVED       (~(OFFSET_MASK | COPIED | COMPRESSED | ZERO_FLAG))

static int
fail (char *err, size_t errlen, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static int
fail (char *err, size_t errlen, const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  vsnprintf (err, errlen, fmt, args);
  va_end (args);
  return -1;
}

int
qcow2_parse_header (const unsigned char *buf, size_t len, uint64_t file_size,
                    struct qcow2_header *h, char *err, size_t errlen)
{
  uint64_t known, cover_bits, l1_bytes;

  memset (h, 0, sizeof *h);
  if (len < QCOW2_V2_HEADER_SIZE || file_size < QCOW2_V2_HEADER_SIZE)
    return fail (err, errlen, "not a qcow2 image: %" PRIu64 " bytes is "
                 "too short for a qcow2 header", file_size);
  if (qcow2_be32 (buf) != QCOW2_MAGIC)
    return fail (err, errlen, "not a qcow2 image (it does not start with "
                 "the qcow2 magic bytes QFI\\xfb)");
  h->version = qcow2_be32 (buf + 4);
  if (h->version != 2 && h->version != 3)
    return fail (err, errlen, "qcow2 version %" PRIu32 " is not supported "
                 "(only versions 2 and 3, compat=0.10 and compat=1.1): "
                 "convert the image with qemu-img convert -O qcow2",
                 h->version);
  h->backing_file_offset = qcow2_be64 (buf + 8);
  h->backing_file_size = qcow2_be32 (buf + 16);
  h->cluster_bits = qcow2_be32 (buf + 20);
  h->size = qcow2_be64 (buf + 24);
  h->crypt_method = qcow2_be32 (buf + 32);
  h->l1_size = qcow2_be32 (buf + 36);
  h->l1_offset = qcow2_be64 (buf + 40);
  h->nb_snapshots = qcow2_be32 (buf + 60);
  h->header_length = QCOW2_V2_HEADER_SIZE;
  h->compression_type = QCOW2_COMPRESSION_DEFLATE;

  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return fail (err, errlen, "the qcow2 header is corrupt: cluster_bits "
                 "%" PRIu32 " is outside %d..%d", h->cluster_bits,
                 QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
  h->cluster_size = UINT64_C(1) << h->cluster_bits;
  h->l2_bits = h->cluster_bits - 3;

  if (h->version == 3) {
    if (len < QCOW2_V3_HEADER_SIZE || file_size < QCOW2_V3_HEADER_SIZE)
      return fail (err, errlen, "the qcow2 image is truncated: a version 3 "
                   "header needs %d bytes", QCOW2_V3_HEADER_SIZE);
    h->incompatible = qcow2_be64 (buf + 72);
    h->compatible = qcow2_be64 (buf + 80);
    h->autoclear = qcow2_be64 (buf + 88);
    h->header_length = qcow2_be32 (buf + 100);
    if (h->header_length < QCOW2_V3_HEADER_SIZE ||
        h->header_length > h->cluster_size)
      return fail (err, errlen, "the qcow2 header is corrupt: header_length "
                   "%" PRIu32 " is outside %d..%" PRIu64, h->header_length,
                   QCOW2_V3_HEADER_SIZE, h->cluster_size);
    if (h->header_length > QCOW2_V3_HEADER_SIZE) {
      if (len <= QCOW2_V3_HEADER_SIZE || file_size <= QCOW2_V3_HEADER_SIZE)
        return fail (err, errlen, "the qcow2 image is truncated inside its "
                     "header");
      h->compression_type = buf[QCOW2_V3_HEADER_SIZE];
    }
  }

  /* What we refuse: in the order a user would want to hear it. */
  if (h->backing_file_offset != 0)
    return fail (err, errlen, "the qcow2 image has a backing file, which "
                 "this filter does not support: flatten it first with "
                 "qemu-img convert -O qcow2 (or serve it with qemu-nbd)");
  if (h->crypt_method != 0)
    return fail (err, errlen, "the qcow2 image is encrypted (crypt_method "
                 "%" PRIu32 "), which this filter does not support: decrypt "
                 "it with qemu-img convert", h->crypt_method);
  if (h->incompatible & QCOW2_INCOMPAT_DIRTY)
    return fail (err, errlen, "the qcow2 image is dirty (its refcounts need "
                 "repair): run qemu-img check -r all on it first");
  if (h->incompatible & QCOW2_INCOMPAT_CORRUPT)
    return fail (err, errlen, "the qcow2 image is marked corrupt: run "
                 "qemu-img check -r all on it first");
  if (h->incompatible & QCOW2_INCOMPAT_DATA_FILE)
    return fail (err, errlen, "the qcow2 image uses an external data file, "
                 "which this filter does not support: convert it with "
                 "qemu-img convert -O qcow2");
  if (h->incompatible & QCOW2_INCOMPAT_EXTL2)
    return fail (err, errlen, "the qcow2 image uses extended L2 entries "
                 "(extended_l2=on), which this filter does not support: "
                 "convert it with qemu-img convert -O qcow2");
  known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
    QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION |
    QCOW2_INCOMPAT_EXTL2;
  if (h->incompatible & ~known)
    return fail (err, errlen, "the qcow2 image uses unknown incompatible "
                 "features (bits 0x%" PRIx64 "): convert it with qemu-img "
                 "convert -O qcow2", h->incompatible & ~known);
  if (h->incompatible & QCOW2_INCOMPAT_COMPRESSION) {
    if (h->compression_type != QCOW2_COMPRESSION_DEFLATE &&
        h->compression_type != QCOW2_COMPRESSION_ZSTD)
      return fail (err, errlen, "the qcow2 image uses an unknown "
                   "compression type %u", h->compression_type);
  }
  else if (h->compression_type != QCOW2_COMPRESSION_DEFLATE)
    return fail (err, errlen, "the qcow2 header is corrupt: compression "
                 "type %u without the compression type feature bit",
                 h->compression_type);

  /* The virtual size and the L1 table that covers it. */
  if (h->size > INT64_MAX)
    return fail (err, errlen, "the qcow2 header is corrupt: the virtual "
                 "size %" PRIu64 " is too large", h->size);
  cover_bits = h->cluster_bits + h->l2_bits;    /* at most 39 */
  h->l1_needed = (h->size >> cover_bits) +
    ((h->size & ((UINT64_C(1) << cover_bits) - 1)) != 0);
  if (h->l1_needed > h->l1_size)
    return fail (err, errlen, "the qcow2 header is corrupt: an L1 table of "
                 "%" PRIu32 " entries cannot map a virtual size of %" PRIu64
                 " bytes", h->l1_size, h->size);
  l1_bytes = h->l1_needed * 8;
  if (l1_bytes > QCOW2_MAX_L1_BYTES)
    return fail (err, errlen, "the qcow2 L1 table (%" PRIu64 " bytes) is "
                 "larger than the %u bytes allowed", l1_bytes,
                 QCOW2_MAX_L1_BYTES);
  if (h->l1_needed > 0) {
    if (h->l1_offset == 0 || (h->l1_offset & (h->cluster_size - 1)) != 0)
      return fail (err, errlen, "the qcow2 header is corrupt: the L1 table "
                   "offset %" PRIu64 " is zero or not aligned to a cluster",
                   h->l1_offset);
    if (h->l1_offset > file_size || l1_bytes > file_size - h->l1_offset)
      return fail (err, errlen, "the qcow2 image is truncated or corrupt: "
                   "its L1 table (%" PRIu64 " bytes at offset %" PRIu64
                   ") goes past the end of the file (%" PRIu64 " bytes)",
                   l1_bytes, h->l1_offset, file_size);
  }
  return 0;
}

bool
qcow2_backing_name (const unsigned char *buf, size_t len,
                    const struct qcow2_header *h, char *name, size_t namelen)
{
  uint64_t off = h->backing_file_offset, n = h->backing_file_size, i;

  if (namelen == 0 || n == 0 || n >= namelen || off > len || n > len - off)
    return false;
  for (i = 0; i < n; ++i) {
    unsigned char c = buf[off + i];
    name[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
  }
  name[n] = '\0';
  return true;
}

int
qcow2_decode_l1 (const struct qcow2_header *h, uint64_t file_size,
                 uint64_t entry, uint64_t *l2_offset, char *err,
                 size_t errlen)
{
  uint64_t off = entry & OFFSET_MASK;

  *l2_offset = 0;
  if (entry & L1_RESERVED)
    return fail (err, errlen, "corrupt qcow2 L1 entry 0x%016" PRIx64
                 ": reserved bits are set", entry);
  if (off == 0)
    return 0;
  if ((off & (h->cluster_size - 1)) != 0)
    return fail (err, errlen, "corrupt qcow2 L1 entry 0x%016" PRIx64
                 ": the L2 table is not aligned to a cluster", entry);
  if (file_size < h->cluster_size || off > file_size - h->cluster_size)
    return fail (err, errlen, "corrupt qcow2 L1 entry 0x%016" PRIx64
                 ": the L2 table at offset %" PRIu64 " is past the end of "
                 "the image (%" PRIu64 " bytes)", entry, off, file_size);
  *l2_offset = off;
  return 0;
}

int
qcow2_decode_l2 (const struct qcow2_header *h, uint64_t file_size,
                 uint64_t entry, struct qcow2_cluster *c, char *err,
                 size_t errlen)
{
  uint64_t off;

  memset (c, 0, sizeof *c);
  if (entry & COMPRESSED) {
    unsigned x = 62 - (h->cluster_bits - 8);
    uint64_t sectors = (entry >> x) & ((UINT64_C(1) << (h->cluster_bits - 8))
                                       - 1);
    uint64_t csize;

    off = entry & ((UINT64_C(1) << x) - 1);
    if ((entry & COPIED) || (off >> 56) != 0)
      return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                   ": reserved bits of a compressed cluster are set", entry);
    if (off < h->cluster_size || off >= file_size)
      return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                   ": compressed data at offset %" PRIu64 " is outside the "
                   "image (%" PRIu64 " bytes)", entry, off, file_size);
    /* From off to the end of its sector, then the further sectors. */
    csize = (sectors + 1) * 512 - (off & 511);
    if (csize > file_size - off)
      csize = file_size - off;
    c->kind = QCOW2_COMPRESSED;
    c->offset = off;
    c->csize = csize;
    return 0;
  }
  if (entry & L2_RESERVED)
    return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                 ": reserved bits are set", entry);
  off = entry & OFFSET_MASK;
  if (entry & ZERO_FLAG) {
    if (h->version < 3)
      return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                   ": a zero cluster in a version 2 image", entry);
    c->kind = QCOW2_ZERO;       /* its offset (preallocation) is unread */
    return 0;
  }
  if (off == 0) {
    c->kind = QCOW2_UNALLOCATED;
    return 0;
  }
  if ((off & (h->cluster_size - 1)) != 0)
    return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                 ": the data cluster is not aligned to a cluster", entry);
  if (file_size < h->cluster_size || off > file_size - h->cluster_size)
    return fail (err, errlen, "corrupt qcow2 L2 entry 0x%016" PRIx64
                 ": the data cluster at offset %" PRIu64 " is past the end "
                 "of the image (%" PRIu64 " bytes)", entry, off, file_size);
  c->kind = QCOW2_DATA;
  c->offset = off;
  return 0;
}

bool
qcow2_can_decompress (const struct qcow2_header *h)
{
#ifdef HAVE_ZLIB
  if (h->compression_type == QCOW2_COMPRESSION_DEFLATE)
    return true;
#endif
#ifdef HAVE_LIBZSTD
  if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
    return true;
#endif
  return false;
}

#ifdef HAVE_ZLIB
static int
inflate_cluster (const struct qcow2_header *h, const unsigned char *in,
                 size_t inlen, unsigned char *out, char *err, size_t errlen)
{
  z_stream s;
  int ret;

  memset (&s, 0, sizeof s);
  /* Raw deflate with a 4 KiB window, as qemu writes it. */
  if (inflateInit2 (&s, -12) != Z_OK)
    return fail (err, errlen, "zlib: cannot start decompressing: out of "
                 "memory");
  s.next_in = (unsigned char *) in;
  s.avail_in = (uInt) inlen;
  s.next_out = out;
  s.avail_out = (uInt) h->cluster_size;
  ret = inflate (&s, Z_FINISH);
  inflateEnd (&s);
  /* The stream may end in the middle of the last sector, or that
   * sector may hold the start of the next cluster's stream: a full
   * output is what matters.
   */
  if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || s.avail_out != 0)
    return fail (err, errlen, "corrupt deflate data (%s): %" PRIu64
                 " bytes of the %" PRIu64 "-byte cluster decoded",
                 ret == Z_DATA_ERROR ? "invalid stream" :
                 ret == Z_MEM_ERROR ? "out of memory" : "truncated",
                 h->cluster_size - s.avail_out, h->cluster_size);
  return 0;
}
#endif

#ifdef HAVE_LIBZSTD
static int
zstd_cluster (const struct qcow2_header *h, const unsigned char *in,
              size_t inlen, unsigned char *out, char *err, size_t errlen)
{
  ZSTD_DCtx *ctx = ZSTD_createDCtx ();
  ZSTD_inBuffer ib = { .src = in, .size = inlen, .pos = 0 };
  ZSTD_outBuffer ob = { .dst = out, .size = h->cluster_size, .pos = 0 };

  if (!ctx)
    return fail (err, errlen, "zstd: cannot start decompressing: out of "
                 "memory");
  /* A bounded window: qemu's clusters are at most 2 MiB. */
  ZSTD_DCtx_setParameter (ctx, ZSTD_d_windowLogMax, 23);
  while (ob.pos < ob.size) {
    size_t in0 = ib.pos, out0 = ob.pos;
    size_t r = ZSTD_decompressStream (ctx, &ob, &ib);

    if (ZSTD_isError (r)) {
      ZSTD_freeDCtx (ctx);
      return fail (err, errlen, "corrupt zstd data: %s",
                   ZSTD_getErrorName (r));
    }
    if (ib.pos == in0 && ob.pos == out0)
      break;                    /* no progress: the input is short */
  }
  ZSTD_freeDCtx (ctx);
  if (ob.pos != ob.size)
    return fail (err, errlen, "corrupt zstd data (truncated): %zu bytes of "
                 "the %" PRIu64 "-byte cluster decoded", ob.pos,
                 h->cluster_size);
  return 0;
}
#endif

int
qcow2_decompress (const struct qcow2_header *h, const unsigned char *in,
                  size_t inlen, unsigned char *out, char *err, size_t errlen)
{
  switch (h->compression_type) {
  case QCOW2_COMPRESSION_DEFLATE:
#ifdef HAVE_ZLIB
    return inflate_cluster (h, in, inlen, out, err, errlen);
#else
    return fail (err, errlen, "the qcow2 image has deflate-compressed "
                 "clusters, but this nbdkit was built without zlib "
                 "(install zlib1g-dev, then configure and make again)");
#endif
  case QCOW2_COMPRESSION_ZSTD:
#ifdef HAVE_LIBZSTD
    return zstd_cluster (h, in, inlen, out, err, errlen);
#else
    return fail (err, errlen, "the qcow2 image has zstd-compressed "
                 "clusters, but this nbdkit was built without libzstd "
                 "(install libzstd-dev, then configure and make again)");
#endif
  default:
    return fail (err, errlen, "unknown compression type %u",
                 h->compression_type);
  }
}
