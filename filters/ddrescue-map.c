/* filters/ddrescue-map.c: the parser of GNU ddrescue mapfiles, for the
 * ddrescue filter.  Pure and bounds-checked: it reads only the len
 * bytes it is given (which need not end in a NUL), trusts nothing in
 * them, and allocates only the list of rescued ranges (at most one per
 * block line).  It does no I/O and touches no server state.
 *
 * The format (ddrescue's manual, "Mapfile structure"): lines starting
 * with '#' are comments; the first other line is the status line,
 * "current_pos current_status [current_pass]"; every following line
 * is a block, "pos size status", in increasing order of pos, where
 * status is one of '?' (non-tried), '*' (non-trimmed), '/' (non-
 * scraped), '-' (bad sector) or '+' (finished).  Numbers are written
 * in hexadecimal (0x...), but decimal and octal are read as well, as
 * ddrescue does.  Only '+' blocks are kept: adjacent ones are merged.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddrescue-map.h"

#define MAX_FIELDS 4            /* one more than any line may have */
#define MAX_NUMBER 32           /* longest number field read */

struct field {
  const char *p;
  size_t len;
};

static void
set_err (char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (errlen == 0)
    return;
  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
}

/* Split [p, p+len) at blanks: the number of fields (up to MAX_FIELDS;
 * MAX_FIELDS means "too many").
 */
static size_t
split (const char *p, size_t len, struct field *f)
{
  size_t i = 0, n = 0;

  while (i < len) {
    size_t start;

    while (i < len && (p[i] == ' ' || p[i] == '\t'))
      i++;
    if (i == len)
      break;
    start = i;
    while (i < len && p[i] != ' ' && p[i] != '\t')
      i++;
    if (n == MAX_FIELDS)
      return MAX_FIELDS;
    f[n].p = p + start;
    f[n].len = i - start;
    n++;
  }
  return n;
}

/* A number field: 0x hex, 0 octal or decimal, nothing else in it. */
static bool
parse_number (const struct field *f, uint64_t *r)
{
  char buf[MAX_NUMBER + 1], *end;
  unsigned long long v;

  if (f->len == 0 || f->len > MAX_NUMBER)
    return false;
  memcpy (buf, f->p, f->len);
  buf[f->len] = '\0';
  if (buf[0] < '0' || buf[0] > '9')     /* no sign, no blanks */
    return false;
  errno = 0;
  v = strtoull (buf, &end, 0);
  if (errno || *end != '\0')
    return false;
  *r = v;
  return true;
}

static bool
is_char_of (const struct field *f, const char *set)
{
  return f->len == 1 && f->p[0] != '\0' && strchr (set, f->p[0]) != NULL;
}

/* Show a field in a message (at most 40 bytes of it, printable). */
static const char *
show (const struct field *f, char *buf, size_t size)
{
  size_t i, n = f->len < size - 1 ? f->len : size - 1;

  if (n > 40)
    n = 40;
  for (i = 0; i < n; ++i)
    buf[i] = f->p[i] >= 0x20 && f->p[i] < 0x7f ? f->p[i] : '?';
  buf[n] = '\0';
  return buf;
}

static int
add_range (struct ddr_map *map, size_t *alloc, uint64_t start, uint64_t end)
{
  struct ddr_range *r;

  if (map->nr && map->ranges[map->nr - 1].end == start) {
    map->ranges[map->nr - 1].end = end;
    return 0;
  }
  if (map->nr == *alloc) {
    size_t n = *alloc ? *alloc * 2 : 16;

    r = realloc (map->ranges, n * sizeof *r);
    if (!r)
      return -1;
    map->ranges = r;
    *alloc = n;
  }
  map->ranges[map->nr].start = start;
  map->ranges[map->nr].end = end;
  map->nr++;
  return 0;
}

int
ddr_map_parse (const char *text, size_t len, struct ddr_map *map,
               char *err, size_t errlen)
{
  size_t pos = 0, lineno = 0, alloc = 0;
  bool have_status = false;
  uint64_t last_end = 0;
  char b1[48], b2[48];

  map->ranges = NULL;
  map->nr = map->blocks = 0;

  while (pos < len) {
    const char *line = text + pos, *nl = memchr (line, '\n', len - pos);
    size_t n = nl ? (size_t) (nl - line) : len - pos, nf, i;
    struct field f[MAX_FIELDS];
    uint64_t start, size;

    pos += nl ? n + 1 : n;
    lineno++;
    if (n && line[n - 1] == '\r')
      n--;
    if (memchr (line, '\0', n)) {
      set_err (err, errlen, "line %zu: contains a NUL byte: this is not a "
               "ddrescue mapfile (a text file)", lineno);
      goto fail;
    }
    for (i = 0; i < n && (line[i] == ' ' || line[i] == '\t'); ++i)
      ;
    if (i == n || line[i] == '#')
      continue;                 /* blank, or a comment */
    nf = split (line, n, f);

    if (!have_status) {
      uint64_t ignored;

      /* current_pos current_status [current_pass] */
      if (nf < 2 || nf > 3 || !parse_number (&f[0], &ignored) ||
          !is_char_of (&f[1], "?*/-FG+") ||
          (nf == 3 && !parse_number (&f[2], &ignored))) {
        set_err (err, errlen, "line %zu: a status line \"current_pos "
                 "current_status [current_pass]\" was expected before "
                 "the blocks (e.g. \"0x00000000 + 1\")", lineno);
        goto fail;
      }
      have_status = true;
      continue;
    }

    /* pos size status */
    if (nf != 3) {
      set_err (err, errlen, "line %zu: %zu%s fields where a block needs 3: "
               "\"pos size status\" (e.g. \"0x00000000 0x00010000 +\")",
               lineno, nf, nf == MAX_FIELDS ? " or more" : "");
      goto fail;
    }
    if (!parse_number (&f[0], &start)) {
      set_err (err, errlen, "line %zu: position '%s' is not a number "
               "(e.g. 0x00010000)", lineno, show (&f[0], b1, sizeof b1));
      goto fail;
    }
    if (!parse_number (&f[1], &size)) {
      set_err (err, errlen, "line %zu: size '%s' is not a number "
               "(e.g. 0x00010000)", lineno, show (&f[1], b1, sizeof b1));
      goto fail;
    }
    if (!is_char_of (&f[2], "?*/-+")) {
      set_err (err, errlen, "line %zu: status '%s' is not one of ddrescue's "
               "block states: ? * / - +", lineno,
               show (&f[2], b1, sizeof b1));
      goto fail;
    }
    if (start > (uint64_t) INT64_MAX || size > (uint64_t) INT64_MAX - start) {
      set_err (err, errlen, "line %zu: block %s + %s ends beyond 2^63 "
               "bytes", lineno, show (&f[0], b1, sizeof b1),
               show (&f[1], b2, sizeof b2));
      goto fail;
    }
    if (start < last_end) {
      set_err (err, errlen, "line %zu: block at %s begins before the end "
               "of the block before it (0x%" PRIx64 "): the blocks must be "
               "in order and must not overlap", lineno,
               show (&f[0], b1, sizeof b1), last_end);
      goto fail;
    }
    last_end = start + size;
    map->blocks++;
    if (f[2].p[0] == '+' && size > 0 &&
        add_range (map, &alloc, start, start + size) == -1) {
      set_err (err, errlen, "line %zu: out of memory", lineno);
      goto fail;
    }
  }

  if (!have_status) {
    set_err (err, errlen, "the file ends at line %zu without a status line "
             "\"current_pos current_status\": this is not a ddrescue "
             "mapfile", lineno);
    goto fail;
  }
  return 0;

 fail:
  ddr_map_free (map);
  return -1;
}

void
ddr_map_free (struct ddr_map *map)
{
  free (map->ranges);
  map->ranges = NULL;
  map->nr = map->blocks = 0;
}

bool
ddr_map_covers (const struct ddr_map *map, uint64_t offset, uint64_t count)
{
  size_t lo = 0, hi = map->nr;

  if (count == 0)
    return true;
  /* The last range starting at or before offset. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (map->ranges[mid].start <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return false;
  return offset + count > offset &&
    offset + count <= map->ranges[lo - 1].end;
}
