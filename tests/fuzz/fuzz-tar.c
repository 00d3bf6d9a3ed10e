/* tests/fuzz/fuzz-tar.c: libFuzzer target "tar", the tar filter's
 * header parser and scanner (filters/tar/tar-header.c).  See
 * tests/fuzz/README.
 *
 * One input is the name of the entry to find, up to the first newline
 * (at most 300 bytes; no newline: the name "disk.img" and the whole
 * input is the archive), then the tar file.  The harness walks the
 * archive as filters/tar/tar.c does: it gives the scanner each block
 * and piece of metadata it asks for, in a buffer of exactly that size
 * (so that ASan sees a read past it), and stops where the filter would
 * (the end of the file, a truncation).  It also gives the first block
 * to tar_parse_header and the whole archive to tar_parse_pax and
 * tar_parse_longname.  Checked, besides ASan and UBSan:
 *
 *   - every step moves forward: the next header is after the last one,
 *     metadata is right after its header, so a walk ends;
 *   - an error has a message (NUL-terminated, in its buffer);
 *   - a found entry's data begins on a block boundary just after a
 *     header, and its size is at most 2^63-1;
 *   - a parsed header's name is NUL-terminated within its 257 bytes,
 *     and its size is at most 2^63-1;
 *   - a pax path holds no NUL and is not empty; a pax size is at most
 *     2^63-1; a long name is as long as its strlen says and not empty.
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tar-header.h"
#include "fuzz-bug.h"

#define MAX_NAME 300

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  return 0;
}

static void
check_error (const struct tar_scan *s)
{
  if (!s->error || memchr (s->msg, '\0', sizeof s->msg) == NULL ||
      s->error != s->msg || s->msg[0] == '\0')
    fuzz_bug ("an error without a message");
}

/* Walk the archive (data, size) for want, as the filter does. */
static void
walk (const char *want, const uint8_t *data, size_t size)
{
  struct tar_scan s;
  enum tar_scan_result res = TAR_SCAN_NEXT;
  uint64_t last = 0;
  bool first = true;

  tar_scan_init (&s, want);
  for (;;) {
    unsigned char *buf;

    switch (res) {
    case TAR_SCAN_NEXT:
      if (!first && s.pos <= last)
        fuzz_bug ("the scan went back: header at %" PRIu64 " after %" PRIu64,
                  s.pos, last);
      if (s.pos % TAR_BLOCK)
        fuzz_bug ("a header at %" PRIu64 ", not on a block", s.pos);
      first = false;
      last = s.pos;
      if (s.pos >= size || size - s.pos < TAR_BLOCK)
        goto out;               /* the end, or truncated */
      buf = malloc (TAR_BLOCK);
      if (!buf)
        goto out;
      memcpy (buf, data + s.pos, TAR_BLOCK);
      res = tar_scan_header (&s, buf);
      free (buf);
      break;
    case TAR_SCAN_META:
      if (s.meta_off != last + TAR_BLOCK)
        fuzz_bug ("metadata at %" PRIu64 " for the header at %" PRIu64,
                  s.meta_off, last);
      if (s.meta_len == 0 || s.meta_len > TAR_MAX_META)
        fuzz_bug ("metadata of %" PRIu64 " bytes asked for", s.meta_len);
      if (s.meta_off > size || s.meta_len > size - s.meta_off)
        goto out;               /* truncated */
      buf = malloc (s.meta_len);
      if (!buf)
        goto out;
      memcpy (buf, data + s.meta_off, s.meta_len);
      res = tar_scan_meta (&s, buf, s.meta_len);
      free (buf);
      if (res != TAR_SCAN_NEXT && res != TAR_SCAN_ERROR)
        fuzz_bug ("tar_scan_meta returned %d", (int) res);
      if (res == TAR_SCAN_NEXT && s.pos <= last)
        fuzz_bug ("metadata moved the scan back to %" PRIu64, s.pos);
      break;
    case TAR_SCAN_FOUND:
      if (s.offset != last + TAR_BLOCK)
        fuzz_bug ("an entry's data at %" PRIu64 " after its header at %"
                  PRIu64, s.offset, last);
      if (s.size > INT64_MAX)
        fuzz_bug ("an entry of %" PRIu64 " bytes", s.size);
      goto out;
    case TAR_SCAN_END:
      goto out;
    case TAR_SCAN_ERROR:
      check_error (&s);
      goto out;
    default:
      fuzz_bug ("the scanner returned %d", (int) res);
    }
  }
 out:
  tar_scan_free (&s);
}

static void
parse_pieces (const uint8_t *data, size_t size)
{
  struct tar_header h;
  const char *err;
  char *str;
  bool has_size;
  uint64_t n;
  unsigned char *copy;

  if (size >= TAR_BLOCK) {
    copy = malloc (TAR_BLOCK);
    if (copy) {
      memcpy (copy, data, TAR_BLOCK);
      if (tar_parse_header (copy, &h, &err) == 0) {
        if (memchr (h.name, '\0', sizeof h.name) == NULL)
          fuzz_bug ("a header name without its NUL");
        if (h.size > INT64_MAX)
          fuzz_bug ("a header size of %" PRIu64, h.size);
      }
      else if (!err || !*err)
        fuzz_bug ("a header error without a message");
      free (copy);
    }
  }
  if (size > TAR_MAX_META || size == 0)
    return;
  copy = malloc (size);
  if (!copy)
    return;
  memcpy (copy, data, size);
  if (tar_parse_pax (copy, size, &str, &has_size, &n, &err) == 0) {
    if (str && (str[0] == '\0' || strlen (str) > size))
      fuzz_bug ("a pax path of the wrong length");
    if (has_size && n > INT64_MAX)
      fuzz_bug ("a pax size of %" PRIu64, n);
    free (str);
  }
  else if (str || !err || !*err)
    fuzz_bug ("a pax error with a path or without a message");
  if (tar_parse_longname (copy, size, &str, &err) == 0) {
    if (str[0] == '\0' || strlen (str) > size)
      fuzz_bug ("a long name of the wrong length");
    free (str);
  }
  else if (str || !err || !*err)
    fuzz_bug ("a long name error with a name or without a message");
  free (copy);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const uint8_t *nl = memchr (data, '\n', size < MAX_NAME ? size : MAX_NAME);
  char want[MAX_NAME + 1] = "disk.img";

  if (nl) {
    memcpy (want, data, (size_t) (nl - data));
    want[nl - data] = '\0';
    size -= (size_t) (nl - data) + 1;
    data = nl + 1;
  }
  walk (want, data, size);
  parse_pieces (data, size);
  return 0;
}
