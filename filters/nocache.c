/* filters/nocache.c: change how cache requests (NBD_CMD_CACHE) are
 * handled (nbdkit-nocache-filter(1)).
 *
 * cachemode=none (the default) does not offer cache to clients;
 * emulate offers it and does it by reading the range from the layer
 * below in pieces, throwing the data away; nop offers it and answers
 * every cache request at once without doing anything.
 *
 * Owns the mode, and per connection the largest read an emulated cache
 * request may send down.  An emulated request reads one piece at a
 * time, so it holds at most one piece in memory.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

enum cachemode { C_NONE, C_EMULATE, C_NOP };

static const char *const mode_names[] = { "none", "emulate", "nop" };

static enum cachemode mode = C_NONE;

/* The largest read the layer below takes (HP_MAX_DATA), unless it asks
 * for less.
 */
#define PIECE_MAX HP_MAX_DATA

static int
nocache_config (const char *key, const char *value)
{
  size_t i;

  for (i = 0; i < sizeof mode_names / sizeof mode_names[0]; ++i)
    if (strcmp (value, mode_names[i]) == 0) {
      mode = (enum cachemode) i;
      return 0;
    }
  nbdkit_error ("%s=%s: unknown cache mode: use none, emulate or nop",
                key, value);
  return -1;
}

/* Per connection: the size of the pieces an emulated cache reads. */
struct nc_handle {
  uint32_t piece;
};

static void
nocache_open (struct fopen *o)
{
  struct nc_handle *h;

  if (mode == C_NONE) {
    o->caps->can_cache = false;
    fopen_done (o, NULL);
    return;
  }
  o->caps->can_cache = true;
  if (mode == C_NOP) {
    fopen_done (o, NULL);
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    nbdkit_error ("nocache filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "nocache filter: out of memory");
    return;
  }
  h->piece = PIECE_MAX;
  if (o->caps->block_max && o->caps->block_max < h->piece)
    h->piece = o->caps->block_max;
  fopen_done (o, h);
}

static void
nocache_close (void *handle)
{
  free (handle);
}

/* An emulated cache request: the reads still to do. */
struct emul {
  struct freq *r;
  uint64_t offset;              /* of the next piece */
  uint64_t end;
  uint32_t piece;
};

static void read_next_piece (struct emul *e);

static void
on_piece (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct emul *e = opaque;

  if (!reply || reply->status) {
    freq_reply_from (e->r, reply, payload, len);
    free (e);
    return;
  }
  payload_free (payload);               /* the data itself is not wanted */
  read_next_piece (e);
}

static void
read_next_piece (struct emul *e)
{
  uint64_t left = e->end - e->offset;
  uint32_t n;

  if (left == 0) {
    freq_reply (e->r, NULL, 0, 0);
    free (e);
    return;
  }
  n = left < e->piece ? (uint32_t) left : e->piece;
  e->offset += n;
  /* HP_FLAG_ZEROS: a range of zeros may come back without its bytes. */
  fnext_request (freq_below (e->r), HP_PREAD, HP_FLAG_ZEROS,
                 e->offset - n, n, NULL, on_piece, e);
}

static void
nocache_cache (void *handle, struct freq *r)
{
  struct nc_handle *h = handle;
  struct emul *e;

  switch (mode) {
  case C_NONE:
    /* Only a filter above could send one: the export does not offer
     * cache to clients.
     */
    freq_reply_error (r, HP_EINVAL, "cache is not supported (cachemode=none)");
    return;
  case C_NOP:
    freq_reply (r, NULL, 0, 0);
    return;
  case C_EMULATE:
    break;
  }
  e = malloc (sizeof *e);
  if (!e) {
    freq_reply_error (r, HP_ENOMEM, "nocache filter: out of memory");
    return;
  }
  e->r = r;
  e->offset = r->offset;
  e->end = r->offset + r->count;
  e->piece = h->piece;
  read_next_piece (e);
}

static const char *const keys[] = { "cachemode", NULL };

const struct filter nocache_filter = {
  .name = "nocache",
  .description = "disable, emulate or ignore cache requests",
  .config_help =
    "cachemode=MODE      none (default: cache not offered), emulate (cache\n"
    "                    by reading and discarding), nop (accept and ignore)",
  .keys = keys,
  .config = nocache_config,
  .open = nocache_open,
  .close = nocache_close,
  .cache = nocache_cache,
};
