/* filters/protect.c: write-protect ranges of the layer below
 * (nbdkit-protect-filter(1)).  protect=START-END (inclusive, either
 * end may be left out) protects a range, protect=~START-END all but
 * it.  A write, zero or trim that touches a protected range is
 * allowed only if it would not change it: the filter reads the
 * protected bytes from below (readcheck.c) and compares them with the
 * write's data, or with zeros; a change fails with EPERM.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "readcheck.h"

struct range {
  uint64_t lo, hi;              /* inclusive */
};
static struct range *ranges;
static size_t nr_ranges;

static int
add_range (uint64_t lo, uint64_t hi)
{
  struct range *r = realloc (ranges, (nr_ranges + 1) * sizeof *r);

  if (!r) {
    nbdkit_error ("protect: out of memory");
    return -1;
  }
  ranges = r;
  ranges[nr_ranges].lo = lo;
  ranges[nr_ranges].hi = hi;
  nr_ranges++;
  return 0;
}

/* An offset in decimal, octal (0NN) or hex (0xNN); empty = def. */
static int
parse_offset (const char *value, const char *s, size_t len, uint64_t def,
              uint64_t *r)
{
  char buf[32], *end;

  if (len == 0) {
    *r = def;
    return 0;
  }
  if (len >= sizeof buf || s[0] == '-' || s[0] == '+' || s[0] == ' ')
    goto bad;
  memcpy (buf, s, len);
  buf[len] = '\0';
  errno = 0;
  *r = strtoull (buf, &end, 0);
  if (errno || *end)
    goto bad;
  return 0;

 bad:
  nbdkit_error ("protect=%s: '%.*s' is not an offset (use decimal, "
                "octal 0NN or hexadecimal 0xNN)", value, (int) len, s);
  return -1;
}

static int
protect_config (const char *key, const char *value)
{
  const char *s = value, *dash;
  bool complement = false;
  uint64_t start, end;

  if (*s == '~') {
    complement = true;
    s++;
  }
  dash = strchr (s, '-');
  if (!dash) {
    nbdkit_error ("protect=%s: use START-END or ~START-END (either "
                  "offset may be left out)", value);
    return -1;
  }
  if (parse_offset (value, s, dash - s, 0, &start) == -1 ||
      parse_offset (value, dash + 1, strlen (dash + 1), UINT64_MAX,
                    &end) == -1)
    return -1;
  if (start > end) {
    nbdkit_error ("protect=%s: the range ends (%" PRIu64 ") before it "
                  "starts (%" PRIu64 ")", value, end, start);
    return -1;
  }
  if (!complement)
    return add_range (start, end);
  if (start > 0 && add_range (0, start - 1) == -1)
    return -1;
  if (end < UINT64_MAX && add_range (end + 1, UINT64_MAX) == -1)
    return -1;
  return 0;
}

static void
protect_unload (void)
{
  free (ranges);
}

/* A write-like request being checked, one protected range at a time. */
struct guard {
  struct freq *r;
  size_t i;                     /* the next range to check */
};

static void check_next (struct guard *g);

static void
on_checked (void *opaque, bool differs, uint32_t status, const char *msg)
{
  struct guard *g = opaque;

  if (status)
    freq_reply_error (g->r, status, msg);
  else if (differs) {
    nbdkit_error ("protect filter: %s refused: it would change the "
                  "protected range %" PRIu64 "-%" PRIu64, g->r->peer,
                  ranges[g->i - 1].lo, ranges[g->i - 1].hi);
    freq_reply_error (g->r, HP_EPERM,
                      "the request would change a protected range");
  }
  else {
    check_next (g);
    return;
  }
  free (g);
}

static void
check_next (struct guard *g)
{
  struct freq *r = g->r;
  uint64_t first = r->offset, last = r->offset + r->count - 1;

  for (; g->i < nr_ranges; g->i++) {
    uint64_t lo = ranges[g->i].lo, hi = ranges[g->i].hi;

    if (hi < first || lo > last)
      continue;
    if (lo < first)
      lo = first;
    if (hi > last)
      hi = last;
    g->i++;
    readcheck (freq_below (r), lo, hi - lo + 1,
               r->type == HP_PWRITE ? (unsigned char *) r->data
                                      + (lo - first) : NULL,
               on_checked, g);
    return;
  }
  free (g);
  freq_next (r);                /* changes nothing protected */
}

static void
protect_write (void *handle, struct freq *r)
{
  struct guard *g;

  if (r->count == 0 || nr_ranges == 0) {
    freq_next (r);
    return;
  }
  g = calloc (1, sizeof *g);
  if (!g) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  g->r = r;
  check_next (g);
}

static const char *const keys[] = { "protect", NULL };

const struct filter protect_filter = {
  .name = "protect",
  .description = "write-protect ranges of the disk",
  .config_help =
    "protect=START-END   protect these bytes (inclusive; may be repeated)\n"
    "protect=~START-END  protect all but these bytes",
  .keys = keys,
  .config = protect_config,
  .unload = protect_unload,
  .pwrite = protect_write,
  .trim = protect_write,
  .zero = protect_write,
};
