/* filters/swab.c: swap the bytes of each 16, 32 or 64-bit word of the
 * layer below (nbdkit-swab-filter(1)); swab-bits=8 swaps nothing.
 * The size is rounded down to a whole word, and reads, writes, zeroes
 * and trims must be aligned to a word (EINVAL if not: the advertised
 * minimum block size says so, and nbdkit-blocksize-filter(1) above
 * gives byte access).  Large buffers are swapped on the worker pool,
 * so the loop never spends long on one.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

/* Buffers larger than this are swapped on a worker thread. */
#define SWAB_ON_LOOP (256 * 1024)

static unsigned bits = 16;

static int
swab_config (const char *key, const char *value)
{
  unsigned v;

  if (fparse_uint (key, value, 64, &v) == -1)
    return -1;
  if (v != 8 && v != 16 && v != 32 && v != 64) {
    nbdkit_error ("swab-bits=%s: use 8, 16, 32 or 64", value);
    return -1;
  }
  bits = v;
  return 0;
}

static void
swap_words (unsigned char *p, size_t n)
{
  size_t w = bits / 8, i, j;

  for (i = 0; i + w <= n; i += w)
    for (j = 0; j < w / 2; ++j) {
      unsigned char t = p[i + j];

      p[i + j] = p[i + w - 1 - j];
      p[i + w - 1 - j] = t;
    }
}

static void
swab_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  uint32_t w = bits / 8;

  c->size &= ~(uint64_t) (w - 1);
  if (!c->block_min) {
    c->block_min = 1;
    c->block_pref = 512;
    c->block_max = UINT32_MAX;
  }
  if (c->block_min < w)
    c->block_min = w;
  if (c->block_pref < c->block_min)
    c->block_pref = c->block_min;
  if (c->block_max % c->block_min)
    c->block_max -= c->block_max % c->block_min;
  fopen_done (o, NULL);
}

static bool
aligned (struct freq *r)
{
  uint32_t w = bits / 8;

  if (((r->offset | r->count) & (w - 1)) == 0)
    return true;
  freq_reply_error (r, HP_EINVAL, "swab: requests to this filter must be "
                    "aligned to swab-bits");
  return false;
}

/* A buffer being swapped, then sent on: a read's reply or a write. */
struct swapping {
  struct freq *r;
  unsigned char *buf;
  uint32_t len;
  uint16_t rflags;
};

static void
swap_work (void *arg)
{
  struct swapping *s = arg;

  swap_words (s->buf, s->len);
}

static void
swapped (void *arg)
{
  struct swapping *s = arg;
  struct freq *r = s->r;

  if (r->type == HP_PREAD)
    freq_reply (r, s->buf, s->len, s->rflags);
  else {
    r->data = s->buf;
    freq_next (r);
  }
  free (s);
}

static void
swap_then (struct freq *r, unsigned char *buf, uint32_t len, uint16_t rflags)
{
  struct swapping *s;

  if (len <= SWAB_ON_LOOP || !(s = malloc (sizeof *s))) {
    swap_words (buf, len);
    if (r->type == HP_PREAD)
      freq_reply (r, buf, len, rflags);
    else {
      r->data = buf;
      freq_next (r);
    }
    return;
  }
  s->r = r;
  s->buf = buf;
  s->len = len;
  s->rflags = rflags;
  worker_submit (swap_work, swapped, s);
}

static void
on_read (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct freq *r = opaque;

  if (!reply || reply->status || (reply->flags & HP_FLAG_ZEROS)) {
    /* An error, or zeros: swapped zeros are zeros. */
    freq_reply_from (r, reply, payload, len);
    return;
  }
  swap_then (r, payload, len, 0);
}

static void
swab_pread (void *handle, struct freq *r)
{
  if (bits == 8) {
    freq_next (r);
    return;
  }
  if (aligned (r))
    fnext_request (freq_below (r), HP_PREAD, r->flags, r->offset, r->count,
                   NULL, on_read, r);
}

static void
swab_pwrite (void *handle, struct freq *r)
{
  if (bits == 8) {
    freq_next (r);
    return;
  }
  if (aligned (r))
    /* The payload is ours to change: it is passed down swapped. */
    swap_then (r, r->data, r->count, 0);
}

static void
swab_zero_trim (void *handle, struct freq *r)
{
  if (bits == 8 || aligned (r))
    freq_next (r);
}

static const char *const keys[] = { "swab-bits", NULL };

const struct filter swab_filter = {
  .name = "swab",
  .description = "swap the byte order of each word",
  .config_help =
    "swab-bits=8|16|32|64  the word size whose bytes are swapped "
    "(default 16)",
  .keys = keys,
  .config = swab_config,
  .open = swab_open,
  .pread = swab_pread,
  .pwrite = swab_pwrite,
  .trim = swab_zero_trim,
  .zero = swab_zero_trim,
};
