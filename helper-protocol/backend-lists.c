/* libnbdkit-backend: the lists a backend fills in — extents (for
 * EXTENTS) and exports (for LIST_EXPORTS) — and their encoding into
 * replies.  Every entry a backend adds is checked here: extents must
 * be contiguous from the requested offset, names must fit the NBD
 * string limit, and both lists are bounded.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backend-internal.h"

/* Bounds: the reply must fit HP_MAX_PAYLOAD, and nothing needs more. */
#define MAX_EXTENTS (1024 * 1024)
#define MAX_EXPORTS 10000
#define MAX_NAME    4096

struct extent {
  uint64_t offset, length;
  uint32_t type;
};

struct nbdkit_extents {
  uint64_t start, end;
  struct extent *v;
  size_t n, cap;
};

struct nbdkit_extents *
nbdkit__extents_new (uint64_t start, uint64_t end)
{
  struct nbdkit_extents *e = calloc (1, sizeof *e);

  if (e) {
    e->start = start;
    e->end = end;
  }
  return e;
}

void
nbdkit__extents_free (struct nbdkit_extents *e)
{
  if (e) {
    free (e->v);
    free (e);
  }
}

int
nbdkit_add_extent (struct nbdkit_extents *e, uint64_t offset,
                   uint64_t length, uint32_t type)
{
  struct extent *last;

  if (length == 0)
    return 0;
  if (type & ~(uint32_t) (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO)) {
    nbdkit_error ("nbdkit_add_extent: unknown type bits 0x%x", type);
    errno = EINVAL;
    return -1;
  }
  if (offset + length < offset) {
    nbdkit_error ("nbdkit_add_extent: offset + length overflows");
    errno = EINVAL;
    return -1;
  }

  if (e->n == 0) {
    if (offset + length <= e->start)
      return 0;                 /* before the range asked for */
    if (offset > e->start) {
      nbdkit_error ("nbdkit_add_extent: the first extent starts at %" PRIu64
                    ", after the requested offset %" PRIu64,
                    offset, e->start);
      errno = EINVAL;
      return -1;
    }
    length -= e->start - offset;
    offset = e->start;
  }
  else {
    last = &e->v[e->n - 1];
    if (offset != last->offset + last->length) {
      nbdkit_error ("nbdkit_add_extent: extents must be contiguous and in "
                    "order (expected offset %" PRIu64 ", got %" PRIu64 ")",
                    last->offset + last->length, offset);
      errno = EINVAL;
      return -1;
    }
    if (offset >= e->end)
      return 0;                 /* past the range asked for: ignored */
    if (last->type == type) {
      last->length += length;
      return 0;
    }
  }

  if (e->n == MAX_EXTENTS)
    return 0;                   /* enough: the client asks again */
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 16;
    struct extent *v = realloc (e->v, cap * sizeof *v);

    if (!v) {
      nbdkit_error ("nbdkit_add_extent: out of memory");
      errno = ENOMEM;
      return -1;
    }
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n++] = (struct extent) { offset, length, type };
  return 0;
}

bool
nbdkit__extents_all_zero (const struct nbdkit_extents *e)
{
  uint64_t pos = e->start;
  size_t i;

  for (i = 0; i < e->n && pos < e->end; ++i) {
    if (!(e->v[i].type & NBDKIT_EXTENT_ZERO))
      return false;
    pos = e->v[i].offset + e->v[i].length;
  }
  return pos >= e->end;
}

unsigned char *
nbdkit__extents_encode (struct nbdkit_extents *e, bool req_one, uint32_t *len)
{
  size_t n = req_one && e->n > 1 ? 1 : e->n, i;
  unsigned char *buf;

  if (n == 0)
    return NULL;
  buf = malloc (n * HP_EXTENT_SIZE);
  if (!buf)
    return NULL;
  for (i = 0; i < n; ++i)
    hp_encode_extent (buf + i * HP_EXTENT_SIZE, e->v[i].length,
                      e->v[i].type);
  *len = (uint32_t) (n * HP_EXTENT_SIZE);
  return buf;
}

struct nbdkit_exports {
  json_t *list;
};

struct nbdkit_exports *
nbdkit__exports_new (void)
{
  struct nbdkit_exports *e = malloc (sizeof *e);

  if (e && !(e->list = json_array ())) {
    free (e);
    return NULL;
  }
  return e;
}

void
nbdkit__exports_free (struct nbdkit_exports *e)
{
  if (e) {
    json_decref (e->list);
    free (e);
  }
}

int
nbdkit_add_export (struct nbdkit_exports *e, const char *name,
                   const char *description)
{
  json_t *x;

  if (!name || strlen (name) > MAX_NAME ||
      (description && strlen (description) > MAX_NAME)) {
    nbdkit_error ("nbdkit_add_export: the name or description is missing "
                  "or longer than %d bytes", MAX_NAME);
    errno = EINVAL;
    return -1;
  }
  if (json_array_size (e->list) >= MAX_EXPORTS) {
    nbdkit_error ("nbdkit_add_export: too many exports (at most %d)",
                  MAX_EXPORTS);
    errno = EINVAL;
    return -1;
  }
  x = description ? json_pack ("{s:s, s:s}", "name", name,
                               "description", description)
                  : json_pack ("{s:s}", "name", name);
  if (!x || json_array_append_new (e->list, x) == -1) {
    nbdkit_error ("nbdkit_add_export: out of memory (or invalid UTF-8)");
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

json_t *
nbdkit__exports_to_json (struct nbdkit_exports *e)
{
  return json_pack ("{s:O}", "exports", e->list);
}
