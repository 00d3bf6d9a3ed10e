/* tests/fuzz/fuzz-qcow2.c: libFuzzer target "qcow2", the qcow2dec
 * filter's format functions (filters/qcow2dec/qcow2.c): header, L1
 * and L2 entry decoding and cluster decompression.  See
 * tests/fuzz/README.
 *
 * One input is a whole qcow2 image.  The harness does what the filter
 * does with it, without the I/O: it parses the header from the first
 * 64 KiB (as the filter's open reads them), and if the image is
 * accepted decodes the L1 entries that map the virtual size, the L2
 * entries of every table they point to, and decompresses the first
 * compressed clusters it meets.  Checked:
 *
 *   - a refusal or a corrupt entry says why (a non-empty message);
 *   - an accepted header keeps its promises: a cluster size of 512
 *     bytes to 2 MiB, an L1 table of at most QCOW2_MAX_L1_BYTES that
 *     maps the virtual size and lies inside the image;
 *   - an L2 table lies inside the image and is cluster-aligned; a data
 *     cluster too; compressed data starts in the image, ends at or
 *     before its end and is 1 to 2 clusters long;
 *   - decompression writes only the cluster it is given;
 *   - ASan: no overflow, use after free or leak; UBSan: no undefined
 *     behaviour.
 *
 * The work per input is bounded (MAX_L2_ENTRIES entries decoded,
 * MAX_DECOMPRESS clusters decompressed) because several L1 entries may
 * name the same big table; the filter reads each entry only when a
 * read needs it.
 */

#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-bug.h"
#include "qcow2.h"

#define HEADER_READ 65536
#define MAX_L2_ENTRIES 65536
#define MAX_DECOMPRESS 8

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  return 0;
}

static void
check_message (const char *what, const char *err)
{
  if (err[0] == '\0')
    fuzz_bug ("%s failed without saying why", what);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qcow2_header h;
  char err[512], name[256];
  uint64_t i, j, l2_offset, decoded = 0;
  unsigned decompressed = 0;
  size_t hlen = size < HEADER_READ ? size : HEADER_READ;

  err[0] = '\0';
  if (qcow2_parse_header (data, hlen, size, &h, err, sizeof err) == -1) {
    check_message ("qcow2_parse_header", err);
    if (h.backing_file_offset &&
        qcow2_backing_name (data, hlen, &h, name, sizeof name) &&
        strlen (name) != h.backing_file_size)
      fuzz_bug ("the backing name has %zu bytes, not %u", strlen (name),
                (unsigned) h.backing_file_size);
    return 0;
  }
  if (h.cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      h.cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
      h.cluster_size != UINT64_C(1) << h.cluster_bits)
    fuzz_bug ("accepted cluster_bits %u", (unsigned) h.cluster_bits);
  if (h.l1_needed > h.l1_size || h.l1_needed * 8 > QCOW2_MAX_L1_BYTES)
    fuzz_bug ("accepted an L1 table of %llu entries",
              (unsigned long long) h.l1_needed);
  if (h.l1_needed &&
      (h.l1_offset > size || h.l1_needed * 8 > size - h.l1_offset))
    fuzz_bug ("accepted an L1 table past the end of the image");
  if ((h.l1_needed << (h.cluster_bits + h.l2_bits)) < h.size)
    fuzz_bug ("the L1 table does not map the virtual size");

  for (i = 0; i < h.l1_needed && decoded < MAX_L2_ENTRIES; ++i) {
    uint64_t e = qcow2_be64 (data + h.l1_offset + i * 8);

    err[0] = '\0';
    if (qcow2_decode_l1 (&h, size, e, &l2_offset, err, sizeof err) == -1) {
      check_message ("qcow2_decode_l1", err);
      continue;
    }
    if (l2_offset == 0)
      continue;
    if (l2_offset % h.cluster_size || l2_offset > size ||
        h.cluster_size > size - l2_offset)
      fuzz_bug ("accepted an L2 table at %llu",
                (unsigned long long) l2_offset);
    for (j = 0; j < h.cluster_size / 8 && decoded < MAX_L2_ENTRIES; ++j) {
      struct qcow2_cluster c;
      uint64_t l2e = qcow2_be64 (data + l2_offset + j * 8);

      decoded++;
      err[0] = '\0';
      if (qcow2_decode_l2 (&h, size, l2e, &c, err, sizeof err) == -1) {
        check_message ("qcow2_decode_l2", err);
        continue;
      }
      if (c.kind == QCOW2_DATA &&
          (c.offset % h.cluster_size || c.offset > size ||
           h.cluster_size > size - c.offset))
        fuzz_bug ("accepted a data cluster at %llu",
                  (unsigned long long) c.offset);
      if (c.kind != QCOW2_COMPRESSED)
        continue;
      if (c.offset >= size || c.csize == 0 || c.csize > size - c.offset ||
          c.csize > 2 * h.cluster_size)
        fuzz_bug ("accepted %llu compressed bytes at %llu",
                  (unsigned long long) c.csize,
                  (unsigned long long) c.offset);
      if (decompressed < MAX_DECOMPRESS) {
        /* The compressed bytes in a buffer of their own, so that ASan
         * sees a read past them.
         */
        unsigned char *in = malloc (c.csize);
        unsigned char *out = malloc (h.cluster_size);

        if (!in || !out)
          fuzz_bug ("out of memory");
        memcpy (in, data + c.offset, c.csize);
        decompressed++;
        err[0] = '\0';
        if (qcow2_decompress (&h, in, c.csize, out, err, sizeof err) == -1)
          check_message ("qcow2_decompress", err);
        free (in);
        free (out);
      }
    }
  }
  return 0;
}
