/* filters/cacheextents.c: keep the last block status answer of the
 * layer below and answer from it (nbdkit-cacheextents-filter(1)).
 * A request whose offset falls inside the cached extents is answered
 * from them without asking below; any other is asked below without
 * REQ_ONE, so that one answer covers as much as the layer gives, and
 * that answer replaces the cache.  Any write, zero or trim, on any
 * connection, empties the cache.  There is one cache, as nbdkit's,
 * but it remembers the export it is for: another export never gets it.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static struct {
  char *export;                 /* NULL: empty */
  uint64_t start, end;
  unsigned char *ext;           /* the answer from below, decoded again */
  size_t n;                     /* entries */
} cache;
static uint64_t generation;     /* bumped by every write */

static void
cache_clear (void)
{
  free (cache.export);
  free (cache.ext);
  memset (&cache, 0, sizeof cache);
}

static void
cacheextents_open (struct fopen *o)
{
  char *h = strdup (o->export);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  fopen_done (o, h);
}

static void
cacheextents_close (void *handle)
{
  free (handle);
}

/* Answer r from extents ext (n of them, from start): those from r->offset on, the first
 * cut to start there, as many as reach r->offset + r->count (one with
 * REQ_ONE).
 */
static void
reply_from (struct freq *r, const unsigned char *ext, size_t n,
            uint64_t start)
{
  uint64_t pos = start, want_end = r->offset + r->count;
  unsigned char *out = malloc (n * HP_EXTENT_SIZE);
  size_t i, k = 0;

  if (!out) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  for (i = 0; i < n && pos < want_end; ++i) {
    uint64_t length, end;
    uint32_t type;

    hp_decode_extent (ext + i * HP_EXTENT_SIZE, &length, &type);
    end = pos + length;
    if (end > r->offset) {
      uint64_t from = pos > r->offset ? pos : r->offset;

      hp_encode_extent (out + k++ * HP_EXTENT_SIZE, end - from, type);
      if (r->flags & HP_FLAG_REQ_ONE)
        break;
    }
    pos = end;
  }
  if (k == 0) {
    free (out);
    freq_reply_error (r, HP_EIO, "cacheextents: no extent from below "
                      "covers the request");
    return;
  }
  freq_reply (r, out, (uint32_t) (k * HP_EXTENT_SIZE), 0);
}

/* A question below: the request, and what it was asked under. */
struct ask {
  struct freq *r;
  const char *export;           /* the handle: lives until close */
  uint64_t generation;
};

static void
on_extents (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct ask *a = opaque;
  struct freq *r = a->r;
  uint64_t end = r->offset;
  size_t i, n = len / HP_EXTENT_SIZE;
  unsigned char *copy = NULL;
  char *name = NULL;

  if (!reply || reply->status || n == 0 || len % HP_EXTENT_SIZE) {
    freq_reply_from (r, reply, payload, len);
    free (a);
    return;
  }
  for (i = 0; i < n; ++i) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent ((unsigned char *) payload + i * HP_EXTENT_SIZE,
                      &length, &type);
    if (length > UINT64_MAX - end)
      break;
    end += length;
  }
  /* Keep it, unless a write came since the question: the answer may
   * be out of date (it still answers this request, as nbdkit's would).
   */
  if (i == n && a->generation == generation &&
      (copy = malloc (len)) != NULL && (name = strdup (a->export)) != NULL) {
    memcpy (copy, payload, len);
    cache_clear ();
    cache.export = name;
    cache.ext = copy;
    cache.n = n;
    cache.start = r->offset;
    cache.end = end;
  }
  else
    free (copy);
  reply_from (r, payload, i, r->offset);
  payload_free (payload);
  free (a);
}

static void
cacheextents_extents (void *handle, struct freq *r)
{
  const char *export = handle;
  struct ask *a;

  if (cache.export && strcmp (cache.export, export) == 0 &&
      cache.start <= r->offset && r->offset < cache.end) {
    nbdkit_debug ("cacheextents: cache hit at %" PRIu64, r->offset);
    reply_from (r, cache.ext, cache.n, cache.start);
    return;
  }
  a = malloc (sizeof *a);
  if (!a) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  a->r = r;
  a->export = export;
  a->generation = generation;
  fnext_request (freq_below (r), HP_EXTENTS, r->flags & ~HP_FLAG_REQ_ONE,
                 r->offset, r->count, NULL, on_extents, a);
}

static void
cacheextents_write (void *handle, struct freq *r)
{
  generation++;
  cache_clear ();
  freq_next (r);
}

const struct filter cacheextents_filter = {
  .name = "cacheextents",
  .description = "cache the last block status answer",
  .open = cacheextents_open,
  .close = cacheextents_close,
  .pwrite = cacheextents_write,
  .trim = cacheextents_write,
  .zero = cacheextents_write,
  .extents = cacheextents_extents,
  .unload = cache_clear,
};
