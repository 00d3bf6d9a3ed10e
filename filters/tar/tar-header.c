/* filters/tar/tar-header.c: the tar format as pure functions (see
 * tar-header.h): header blocks (v7, ustar, GNU), GNU long names ('L'),
 * pax extended headers ('x': path and size), and the scanner that
 * finds one entry.  No I/O, no globals: what it is given is all it
 * reads, and every field is checked against its bounds first.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tar-header.h"

/* Offsets and lengths of the header fields (POSIX ustar; GNU tar uses
 * the same up to the magic, and other fields after it).
 */
#define F_NAME 0
#define L_NAME 100
#define F_SIZE 124
#define L_SIZE 12
#define F_CHKSUM 148
#define L_CHKSUM 8
#define F_TYPE 156
#define F_MAGIC 257
#define F_PREFIX 345
#define L_PREFIX 155

/* A numeric field: octal digits (leading spaces allowed, ending at a
 * space or NUL, nothing else after), or GNU's base-256 for values too
 * big for octal (the top bit of the first byte set; negative values
 * refused).
 */
static int
parse_number (const unsigned char *f, size_t n, uint64_t *r)
{
  uint64_t v = 0;
  size_t i = 0;

  if (f[0] & 0x80) {
    if (f[0] & 0x40)
      return -1;                /* negative */
    v = f[0] & 0x3f;
    for (i = 1; i < n; ++i) {
      if (v >> 56)
        return -1;              /* more than 64 bits */
      v = (v << 8) | f[i];
    }
    *r = v;
    return 0;
  }
  while (i < n && f[i] == ' ')
    i++;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; ++i) {
    if (v >> 61)
      return -1;
    v = v * 8 + (uint64_t) (f[i] - '0');
  }
  for (; i < n; ++i)
    if (f[i] != ' ' && f[i] != '\0')
      return -1;
  *r = v;
  return 0;
}

static bool
is_zero_block (const unsigned char *block)
{
  size_t i;

  for (i = 0; i < TAR_BLOCK; ++i)
    if (block[i])
      return false;
  return true;
}

int
tar_parse_header (const unsigned char *block, struct tar_header *h,
                  const char **err)
{
  uint64_t stored, sum_u = 0;
  int64_t sum_s = 0;
  size_t i, nlen, plen;

  memset (h, 0, sizeof *h);
  if (is_zero_block (block)) {
    h->kind = TAR_ZERO;
    return 0;
  }

  /* The checksum: of the block with the checksum field as spaces,
   * bytes unsigned (POSIX) or signed (some old tars).
   */
  if (parse_number (block + F_CHKSUM, L_CHKSUM, &stored) == -1) {
    *err = "the checksum field is not a number (this is not a tar header)";
    return -1;
  }
  for (i = 0; i < TAR_BLOCK; ++i) {
    unsigned char c = i >= F_CHKSUM && i < F_CHKSUM + L_CHKSUM ? ' '
      : block[i];
    sum_u += c;
    sum_s += (signed char) c;
  }
  if (stored != sum_u && (int64_t) stored != sum_s) {
    *err = "the header checksum is wrong (the file is not a tar file, "
      "or it is damaged)";
    return -1;
  }

  if (parse_number (block + F_SIZE, L_SIZE, &h->size) == -1) {
    *err = "the size field is not a valid number";
    return -1;
  }
  if (h->size > INT64_MAX) {
    *err = "the size field is too large";
    return -1;
  }

  h->type = (char) block[F_TYPE];
  switch (h->type) {
  case '0': case '\0': case '7': h->kind = TAR_REGULAR; break;
  case 'L': h->kind = TAR_LONGNAME; break;
  case 'x': h->kind = TAR_PAX; break;
  default: h->kind = TAR_OTHER; break;
  }

  /* The name: POSIX ustar ("ustar\0") may split it into a prefix and
   * a name; GNU tar ("ustar  ") keeps other fields where the prefix
   * would be.  Neither field need end with a NUL.
   */
  nlen = strnlen ((const char *) block + F_NAME, L_NAME);
  plen = 0;
  if (memcmp (block + F_MAGIC, "ustar\0", 6) == 0)
    plen = strnlen ((const char *) block + F_PREFIX, L_PREFIX);
  if (plen > 0) {
    memcpy (h->name, block + F_PREFIX, plen);
    h->name[plen] = '/';
    memcpy (h->name + plen + 1, block + F_NAME, nlen);
    h->name[plen + 1 + nlen] = '\0';
  }
  else {
    memcpy (h->name, block + F_NAME, nlen);
    h->name[nlen] = '\0';
  }
  return 0;
}

bool
tar_data_blocks (uint64_t size, uint64_t *r)
{
  if (size > UINT64_MAX - (TAR_BLOCK - 1))
    return false;
  *r = (size + TAR_BLOCK - 1) & ~(uint64_t) (TAR_BLOCK - 1);
  return true;
}

int
tar_parse_longname (const unsigned char *data, size_t len, char **name,
                    const char **err)
{
  size_t n = strnlen ((const char *) data, len);

  *name = NULL;
  if (n == 0) {
    *err = "a GNU long name entry holds an empty name";
    return -1;
  }
  *name = malloc (n + 1);
  if (!*name) {
    *err = "out of memory";
    return -1;
  }
  memcpy (*name, data, n);
  (*name)[n] = '\0';
  return 0;
}

/* A pax decimal value: digits only, no sign, no overflow. */
static int
parse_decimal (const unsigned char *p, size_t n, uint64_t *r)
{
  uint64_t v = 0;
  size_t i;

  if (n == 0)
    return -1;
  for (i = 0; i < n; ++i) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    if (v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t) (p[i] - '0');
  }
  *r = v;
  return 0;
}

int
tar_parse_pax (const unsigned char *data, size_t len, char **path,
               bool *has_size, uint64_t *size, const char **err)
{
  size_t i = 0;

  *path = NULL;
  *has_size = false;
  while (i < len) {
    size_t j = i, n = 0, rec_end, k, eq;

    if (data[i] == '\0')
      break;                    /* padding after the last record */
    /* "LENGTH KEY=VALUE\n", LENGTH counting the whole record. */
    while (j < len && data[j] >= '0' && data[j] <= '9') {
      n = n * 10 + (size_t) (data[j] - '0');
      if (n > len) {
        *err = "a pax record's length goes beyond the extended header";
        goto fail;
      }
      j++;
    }
    if (j == i || j >= len || data[j] != ' ') {
      *err = "a pax record does not start with its length and a space";
      goto fail;
    }
    if (n < j - i + 3 || n > len - i) {
      *err = "a pax record's length is out of bounds";
      goto fail;
    }
    rec_end = i + n;
    if (data[rec_end - 1] != '\n') {
      *err = "a pax record does not end with a newline";
      goto fail;
    }
    k = j + 1;
    for (eq = k; eq < rec_end - 1 && data[eq] != '='; ++eq)
      ;
    if (eq == k || eq >= rec_end - 1) {
      *err = "a pax record has no KEY=VALUE";
      goto fail;
    }
    if (eq - k == 4 && memcmp (data + k, "path", 4) == 0) {
      size_t vlen = rec_end - 1 - (eq + 1);

      if (vlen == 0 || memchr (data + eq + 1, '\0', vlen)) {
        *err = "a pax path record is empty or holds a NUL byte";
        goto fail;
      }
      free (*path);
      *path = malloc (vlen + 1);
      if (!*path) {
        *err = "out of memory";
        goto fail;
      }
      memcpy (*path, data + eq + 1, vlen);
      (*path)[vlen] = '\0';
    }
    else if (eq - k == 4 && memcmp (data + k, "size", 4) == 0) {
      if (parse_decimal (data + eq + 1, rec_end - 1 - (eq + 1), size) == -1
          || *size > INT64_MAX) {
        *err = "a pax size record is not a valid size";
        goto fail;
      }
      *has_size = true;
    }
    i = rec_end;
  }
  return 0;

 fail:
  free (*path);
  *path = NULL;
  *has_size = false;
  return -1;
}

/* ---- the scanner ---- */

void
tar_scan_init (struct tar_scan *s, const char *want)
{
  memset (s, 0, sizeof *s);
  s->want = want;
}

static void
clear_pending (struct tar_scan *s)
{
  free (s->long_name);
  free (s->pax_path);
  s->long_name = s->pax_path = NULL;
  s->pax_has_size = false;
  s->pax_size = 0;
}

void
tar_scan_free (struct tar_scan *s)
{
  clear_pending (s);
}

static enum tar_scan_result
scan_error (struct tar_scan *s, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static enum tar_scan_result
scan_error (struct tar_scan *s, const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  vsnprintf (s->msg, sizeof s->msg, fmt, args);
  va_end (args);
  s->error = s->msg;
  return TAR_SCAN_ERROR;
}

enum tar_scan_result
tar_scan_header (struct tar_scan *s, const unsigned char *block)
{
  struct tar_header h;
  const char *err, *name;
  uint64_t start, size, blocks;

  if (tar_parse_header (block, &h, &err) == -1)
    return scan_error (s, "the tar header at offset %" PRIu64 ": %s",
                       s->pos, err);
  if (h.kind == TAR_ZERO)
    return TAR_SCAN_END;
  s->entries++;
  if (s->pos > UINT64_MAX - TAR_BLOCK)
    return scan_error (s, "the tar file is too large");
  start = s->pos + TAR_BLOCK;

  if (h.kind == TAR_LONGNAME || h.kind == TAR_PAX) {
    const char *what = h.kind == TAR_PAX ? "pax extended header"
      : "GNU long name";

    if (h.size > TAR_MAX_META)
      return scan_error (s, "the %s at offset %" PRIu64 " is %" PRIu64
                         " bytes, more than the %d allowed",
                         what, s->pos, h.size, TAR_MAX_META);
    if (h.size == 0) {
      if (h.kind == TAR_LONGNAME)
        return scan_error (s, "the GNU long name at offset %" PRIu64
                           " is empty", s->pos);
      s->pos = start;           /* an empty pax header: no records */
      return TAR_SCAN_NEXT;
    }
    s->meta_kind = h.kind;
    s->meta_off = start;
    s->meta_len = h.size;
    return TAR_SCAN_META;
  }

  /* A GNU long link name ('K') or a pax global header ('g'): skipped,
   * keeping what is pending for the next entry (GNU tar may write a
   * 'K' between an 'L' and its entry).
   */
  if (h.type == 'K' || h.type == 'g') {
    if (!tar_data_blocks (h.size, &blocks) || start > UINT64_MAX - blocks)
      return scan_error (s, "the tar header at offset %" PRIu64 " has an "
                         "impossible size", s->pos);
    s->pos = start + blocks;
    return TAR_SCAN_NEXT;
  }

  /* An entry: its name and size, as the headers before it set them. */
  name = s->pax_path ? s->pax_path : s->long_name ? s->long_name : h.name;
  size = s->pax_has_size ? s->pax_size : h.size;
  /* Links, devices, directories and FIFOs have no data blocks. */
  if (h.type >= '1' && h.type <= '6')
    size = 0;
  if (strcmp (name, s->want) == 0) {
    s->type = h.type;
    if (h.kind != TAR_REGULAR) {
      scan_error (s, "the tar entry '%s' is not a regular file (its type "
                  "is '%c'): tar-entry= must name a file", s->want,
                  h.type >= 0x20 && h.type < 0x7f ? h.type : '?');
      clear_pending (s);
      return TAR_SCAN_ERROR;
    }
    s->offset = start;
    s->size = size;
    clear_pending (s);
    return TAR_SCAN_FOUND;
  }
  clear_pending (s);
  if (!tar_data_blocks (size, &blocks) || start > UINT64_MAX - blocks)
    return scan_error (s, "the tar entry at offset %" PRIu64 " has an "
                       "impossible size", s->pos);
  s->pos = start + blocks;
  return TAR_SCAN_NEXT;
}

enum tar_scan_result
tar_scan_meta (struct tar_scan *s, const unsigned char *data, size_t len)
{
  const char *err;
  uint64_t blocks;

  if (len != s->meta_len)
    return scan_error (s, "a short read of the tar file at offset %" PRIu64,
                       s->meta_off);
  if (s->meta_kind == TAR_LONGNAME) {
    char *name;

    if (tar_parse_longname (data, len, &name, &err) == -1)
      return scan_error (s, "the GNU long name at offset %" PRIu64 ": %s",
                         s->meta_off - TAR_BLOCK, err);
    free (s->long_name);
    s->long_name = name;
  }
  else {
    char *path;
    bool has_size;
    uint64_t size;

    if (tar_parse_pax (data, len, &path, &has_size, &size, &err) == -1)
      return scan_error (s, "the pax extended header at offset %" PRIu64
                         ": %s", s->meta_off - TAR_BLOCK, err);
    if (path) {
      free (s->pax_path);
      s->pax_path = path;
    }
    if (has_size) {
      s->pax_has_size = true;
      s->pax_size = size;
    }
  }
  if (!tar_data_blocks (s->meta_len, &blocks)
      || s->meta_off > UINT64_MAX - blocks)
    return scan_error (s, "the tar file is too large");
  s->pos = s->meta_off + blocks;
  return TAR_SCAN_NEXT;
}
