/* filters/truncate.c: change the size of the disk (nbdkit-truncate-
 * filter(1)): truncate=SIZE, or round-up=N / round-down=N to a
 * multiple.  Beyond the end of the layer below the disk reads as
 * zeros, writes of zeros succeed and any other write fails (ENOSPC);
 * trim and zero there do nothing.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static int64_t truncate_size = -1;
static int64_t round_up, round_down;

static int
truncate_config (const char *key, const char *value)
{
  int64_t *p = strcmp (key, "truncate") == 0 ? &truncate_size
    : strcmp (key, "round-up") == 0 ? &round_up : &round_down;

  if (fparse_size (key, value, p) == -1)
    return -1;
  if (p != &truncate_size && *p == 0) {
    nbdkit_error ("%s=%s: must be at least 1", key, value);
    return -1;
  }
  return 0;
}

struct tstate {
  uint64_t real;                /* the size below */
};

static void
truncate_open (struct fopen *o)
{
  struct tstate *t = malloc (sizeof *t);
  uint64_t size = o->caps->size;

  if (!t) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  t->real = size;
  if (truncate_size >= 0)
    size = (uint64_t) truncate_size;
  if (round_up > 0 && size % (uint64_t) round_up) {
    uint64_t up = size - size % (uint64_t) round_up + (uint64_t) round_up;

    if (up > INT64_MAX) {
      free (t);
      fopen_fail (o, HP_EINVAL, "round-up: the size would be too large");
      return;
    }
    size = up;
  }
  if (round_down > 0)
    size -= size % (uint64_t) round_down;
  o->caps->size = size;
  fopen_done (o, t);
}

static void
truncate_close (void *handle)
{
  free (handle);
}

/* A read that straddles the end: the real part, then zeros. */

static void
on_real_part (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct freq *r = opaque;
  unsigned char *buf;

  if (!reply || reply->status) {
    freq_reply_from (r, reply, payload, len);
    return;
  }
  buf = calloc (1, r->count);
  if (!buf) {
    payload_free (payload);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  memcpy (buf, payload, len < r->count ? len : r->count);
  payload_free (payload);
  freq_reply (r, buf, r->count, 0);
}

static void
zeros_reply (struct freq *r)
{
  void *buf;

  if (r->flags & HP_FLAG_ZEROS) {
    freq_reply (r, NULL, 0, HP_FLAG_ZEROS);
    return;
  }
  buf = calloc (1, r->count);
  if (!buf)
    freq_reply_error (r, HP_ENOMEM, "out of memory");
  else
    freq_reply (r, buf, r->count, 0);
}

static void
t_pread (void *handle, struct freq *r)
{
  const struct tstate *t = handle;

  if (r->offset + r->count <= t->real)
    freq_next (r);
  else if (r->offset >= t->real)
    zeros_reply (r);
  else
    fnext_request (freq_below (r), HP_PREAD, 0, r->offset,
                   (uint32_t) (t->real - r->offset), NULL, on_real_part, r);
}

static void
t_pwrite (void *handle, struct freq *r)
{
  const struct tstate *t = handle;
  const unsigned char *d = r->data;
  uint32_t keep, i;

  if (r->offset + r->count <= t->real) {
    freq_next (r);
    return;
  }
  keep = r->offset >= t->real ? 0 : (uint32_t) (t->real - r->offset);
  for (i = keep; i < r->count; ++i)
    if (d[i]) {
      freq_reply_error (r, HP_ENOSPC, "a write of data beyond the end of "
                        "the underlying disk");
      return;
    }
  if (keep == 0) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  r->count = keep;
  freq_next (r);
}

/* trim, zero and cache: only what is below the end. */
static void
t_clip (void *handle, struct freq *r)
{
  const struct tstate *t = handle;

  if (r->offset >= t->real) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  if (r->offset + r->count > t->real)
    r->count = (uint32_t) (t->real - r->offset);
  freq_next (r);
}

static void
t_extents (void *handle, struct freq *r)
{
  const struct tstate *t = handle;
  unsigned char *ext;

  if (r->offset < t->real) {
    if (r->offset + r->count > t->real)
      r->count = (uint32_t) (t->real - r->offset);
    freq_next (r);
    return;
  }
  ext = malloc (HP_EXTENT_SIZE);
  if (!ext) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  hp_encode_extent (ext, r->count, HP_EXTENT_HOLE | HP_EXTENT_ZERO);
  freq_reply (r, ext, HP_EXTENT_SIZE, 0);
}

static const char *const keys[] = {
  "truncate", "round-up", "round-down", NULL
};

const struct filter truncate_filter = {
  .name = "truncate",
  .description = "change the size of the disk",
  .config_help =
    "truncate=SIZE       the new size (zeros are added past the end)\n"
    "round-up=N          round the size up to a multiple of N\n"
    "round-down=N        round the size down to a multiple of N",
  .keys = keys,
  .config = truncate_config,
  .open = truncate_open,
  .close = truncate_close,
  .pread = t_pread,
  .pwrite = t_pwrite,
  .trim = t_clip,
  .zero = t_clip,
  .cache = t_clip,
  .extents = t_extents,
};
