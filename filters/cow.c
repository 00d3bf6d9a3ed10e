/* filters/cow.c: copy-on-write (nbdkit-cow-filter(1)).  The layers
 * below are opened read-only; writes go to an overlay in a temporary
 * file, shared by every connection, which is thrown away at exit.
 *
 * The overlay is kept in blocks of cow-block-size bytes, with a bitmap
 * saying which blocks it holds.  A read takes each run of blocks from
 * the overlay or from below.  A write that covers a block partly needs
 * the rest of the block from below first: it reads those blocks, and
 * when they arrive fills in (only) the blocks that are still not in the
 * overlay, then writes its bytes — all in one step on the loop, so two
 * concurrent partial writes of one block both take effect.  Zero and
 * trim punch holes in the overlay.  cow-on-read=true also copies what
 * is read from below into the overlay.
 *
 * A second bitmap says which of the overlay's blocks are known to hold
 * only zeros (a zero or trim covered the whole block, or zeroed part of
 * a block already known to be zeros; any write clears it), so block
 * status reports them as zero.
 *
 * Overlay I/O is pread/pwrite on a local temporary file (page cache),
 * done on the loop.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

static int64_t blksize = 65536;
static bool cow_on_read;
static int fd = -1;
static unsigned char *bitmap;   /* blocks in the overlay */
static unsigned char *zeromap;  /* ... of those, the ones all zeros */
static uint64_t nr_blocks;
static uint64_t disk_size;

static int
cow_config (const char *key, const char *value)
{
  if (strcmp (key, "cow-on-read") == 0)
    return fparse_bool (key, value, &cow_on_read);
  if (fparse_size (key, value, &blksize) == -1)
    return -1;
  if (blksize < 4096 || blksize > 4 * 1024 * 1024 ||
      (blksize & (blksize - 1))) {
    nbdkit_error ("%s=%s: the block size must be a power of 2 from 4096 "
                  "to 4M", key, value);
    return -1;
  }
  return 0;
}

static int
cow_get_ready (void)
{
  fd = tmpfile_create ("cow", "overlay");
  return fd == -1 ? -1 : 0;
}

static void
cow_unload (void)
{
  if (fd >= 0)
    close (fd);
  free (bitmap);
  free (zeromap);
}

/* Per connection. */
struct cow_handle {
  struct fnext *next;
  bool below_extents;           /* the layer below reports extents */
};

static bool
present (uint64_t b)
{
  return bitmap[b / 8] & (1 << (b % 8));
}

static void
mark (uint64_t b)
{
  bitmap[b / 8] |= 1 << (b % 8);
}

static bool
is_zero (uint64_t b)
{
  return zeromap[b / 8] & (1 << (b % 8));
}

static void
set_zero (uint64_t b, bool z)
{
  if (z)
    zeromap[b / 8] |= 1 << (b % 8);
  else
    zeromap[b / 8] &= ~(1 << (b % 8));
}

/* Set up the overlay at the first open: 0, or an HP_E* status after
 * nbdkit_error, with nothing set up (the next open tries again).
 */
static uint32_t
overlay_setup (uint64_t size)
{
  uint64_t n = (size + blksize - 1) / blksize;
  uint32_t status;

  bitmap = calloc (1, n / 8 + 1);
  zeromap = calloc (1, n / 8 + 1);
  if (!bitmap || !zeromap) {
    nbdkit_error ("cow filter: out of memory for the overlay's bitmaps");
    status = HP_ENOMEM;
    goto fail;
  }
  if (ftruncate (fd, (off_t) size) == -1) {
    nbdkit_error ("cow filter: cannot size the overlay to %" PRIu64
                  " bytes: ftruncate: %m", size);
    status = HP_EIO;
    goto fail;
  }
  disk_size = size;
  nr_blocks = n;
  return 0;

 fail:
  free (bitmap);
  free (zeromap);
  bitmap = zeromap = NULL;
  return status;
}

static void
cow_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct cow_handle *h;

  if (!bitmap) {
    uint32_t status = overlay_setup (c->size);

    if (status) {
      fopen_fail (o, status, "the cow filter could not set up its overlay");
      return;
    }
  }
  else if (c->size != disk_size) {
    nbdkit_error ("cow filter: export '%s' has size %" PRIu64 ", but the "
                  "overlay was made for %" PRIu64 " bytes (the first "
                  "export's size)", o->export, c->size, disk_size);
    fopen_fail (o, HP_EINVAL, "the cow filter serves disks of one size: "
                "this export's size differs from the first one's");
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    nbdkit_error ("cow filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->next = o->next;
  h->below_extents = c->can_extents;
  c->can_write = !o->readonly;
  c->can_trim = c->can_zero = c->can_write;
  c->can_fast_zero = c->can_write;
  c->can_flush = true;
  c->can_fua = c->can_write;
  c->can_multi_conn = true;
  c->can_extents = true;
  c->can_cache = false;
  fopen_done (o, h);
}

static void
cow_close (void *handle)
{
  free (handle);
}

/* Overlay I/O of whole or partial ranges; -1 with errno. */
static int
overlay_read (void *buf, uint32_t n, uint64_t off)
{
  return tmpfile_io (fd, false, buf, n, off);
}

static int
overlay_write (const void *buf, uint32_t n, uint64_t off)
{
  return tmpfile_io (fd, true, (void *) buf, n, off);
}

static uint64_t
block_end (uint64_t b)
{
  uint64_t e = (b + 1) * (uint64_t) blksize;
  return e < disk_size ? e : disk_size;
}

/* ---- reads ---- */

struct reading {
  struct freq *r;
  unsigned char *buf;
  unsigned waiting;             /* sub-reads not yet back */
  uint32_t error;
  char *msg;
};

struct part {
  struct reading *rd;
  uint64_t offset;              /* of this part in the disk */
  uint32_t count;
};

static void
reading_step_done (struct reading *rd)
{
  if (--rd->waiting > 0)
    return;
  if (rd->error)
    freq_reply_error (rd->r, rd->error, rd->msg);
  else {
    freq_reply (rd->r, rd->buf, rd->r->count, 0);
    rd->buf = NULL;
  }
  free (rd->buf);
  free (rd->msg);
  free (rd);
}

/* Copy what came from below into the overlay (cow-on-read), block by
 * block, where the overlay still has nothing.
 */
static void
copy_up (const unsigned char *data, uint64_t offset, uint32_t count)
{
  uint64_t b;

  for (b = offset / blksize; b * blksize < offset + count; ++b) {
    uint64_t s = b * blksize, e = block_end (b);

    if (s < offset || e > offset + count || present (b))
      continue;
    if (overlay_write (data + (s - offset), (uint32_t) (e - s), s) == 0)
      mark (b);
  }
}

static void
on_part_read (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct part *p = opaque;
  struct reading *rd = p->rd;

  if (!reply || reply->status) {
    if (!rd->error) {
      rd->error = reply ? reply->status : HP_EIO;
      rd->msg = payload ? strndup (payload, len) : NULL;
    }
  }
  else {
    memcpy (rd->buf + (p->offset - rd->r->offset), payload, p->count);
    if (cow_on_read)
      copy_up (payload, p->offset, p->count);
  }
  free (payload);
  free (p);
  reading_step_done (rd);
}

/* Runs of blocks that are all in the overlay, or all not. */
static uint64_t
run_end (uint64_t offset, uint64_t end, bool *in_overlay)
{
  uint64_t b = offset / blksize;
  bool in = present (b);

  *in_overlay = in;
  while (block_end (b) < end && present (b + 1) == in)
    ++b;
  return block_end (b) < end ? block_end (b) : end;
}

static void
cow_pread (void *handle, struct freq *r)
{
  struct reading *rd = calloc (1, sizeof *rd);
  uint64_t off = r->offset, end = r->offset + r->count;

  if (!rd || !(rd->buf = malloc (r->count))) {
    free (rd);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  rd->r = r;
  rd->waiting = 1;              /* this function's own step */
  while (off < end) {
    bool in;
    uint64_t e = run_end (off, end, &in);

    if (in) {
      if (overlay_read (rd->buf + (off - r->offset), (uint32_t) (e - off),
                        off) == -1 && !rd->error) {
        nbdkit_error ("cow filter: reading the overlay: %m");
        rd->error = HP_EIO;
      }
    }
    else {
      struct part *p = malloc (sizeof *p);

      if (!p) {
        rd->error = HP_ENOMEM;
        break;
      }
      p->rd = rd;
      p->offset = off;
      p->count = (uint32_t) (e - off);
      rd->waiting++;
      fnext_request (((struct cow_handle *) handle)->next, HP_PREAD, 0, off,
                     p->count, NULL, on_part_read, p);
    }
    off = e;
  }
  reading_step_done (rd);
}

/* ---- writes, zero, trim ---- */

struct writing {
  struct freq *r;
  bool zero;                    /* zero/trim: no data */
  unsigned waiting;
  uint64_t fill_block[2];
  unsigned char *fill[2];       /* the blocks read from below */
  unsigned nr_fill;
  uint32_t error;
  char *msg;
};

static void
writing_free (struct writing *w)
{
  free (w->fill[0]);
  free (w->fill[1]);
  free (w->msg);
  free (w);
}

/* Zeros in the overlay: punch what is whole, write what is not. */
static int
overlay_zero (uint64_t off, uint32_t count)
{
  static const unsigned char zeros[4096];

  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) off, count) == 0)
    return 0;
  while (count > 0) {
    uint32_t n = count < sizeof zeros ? count : sizeof zeros;

    if (overlay_write (zeros, n, off) == -1)
      return -1;
    off += n;
    count -= n;
  }
  return 0;
}

/* Everything needed is here: fill, then write, then mark. */
static void
writing_finish (struct writing *w)
{
  struct freq *r = w->r;
  uint64_t b, first = r->offset / blksize;
  uint64_t last = (r->offset + r->count - 1) / blksize;
  unsigned i;
  int ret;

  if (w->error) {
    freq_reply_error (r, w->error, w->msg);
    writing_free (w);
    return;
  }
  for (i = 0; i < w->nr_fill; ++i) {
    uint64_t fb = w->fill_block[i];

    if (!present (fb)) {
      uint64_t s = fb * blksize;

      if (overlay_write (w->fill[i], (uint32_t) (block_end (fb) - s), s)
          == -1)
        goto io_error;
      mark (fb);
    }
  }
  ret = w->zero ? overlay_zero (r->offset, r->count)
    : overlay_write (r->data, r->count, r->offset);
  if (ret == -1)
    goto io_error;
  for (b = first; b <= last; ++b) {
    /* Known zeros: a zero covering the whole block, or part of one
     * that was already zeros (a block just filled from below is not:
     * it was not present before this request).
     */
    bool whole = r->offset <= b * blksize &&
      r->offset + r->count >= block_end (b);

    set_zero (b, w->zero && (whole || (present (b) && is_zero (b))));
    mark (b);
  }
  freq_reply (r, NULL, 0, 0);
  writing_free (w);
  return;

 io_error:
  nbdkit_error ("cow filter: writing the overlay: %m");
  freq_reply_error (r, HP_EIO, "cannot write the overlay");
  writing_free (w);
}

struct fill_ctx {
  struct writing *w;
  unsigned slot;
};

static void
on_fill_block (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct fill_ctx *f = opaque;
  struct writing *w = f->w;

  if (!reply || reply->status) {
    if (!w->error) {
      w->error = reply ? reply->status : HP_EIO;
      w->msg = payload ? strndup (payload, len) : NULL;
    }
    free (payload);
  }
  else
    w->fill[f->slot] = payload;
  free (f);
  if (--w->waiting == 0)
    writing_finish (w);
}

static void
start_writing (void *handle, struct freq *r, bool zero)
{
  struct writing *w = calloc (1, sizeof *w);
  uint64_t edge[2] = { r->offset / blksize,
                       (r->offset + r->count - 1) / blksize };
  unsigned i;

  if (!w) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  w->r = r;
  w->zero = zero;
  w->waiting = 1;
  for (i = 0; i < 2; ++i) {
    uint64_t b = edge[i], s = b * blksize, e = block_end (b);
    struct fill_ctx *f;

    if (i == 1 && edge[1] == edge[0])
      break;
    /* Blocks the request covers whole, or the overlay has: no fill. */
    if (present (b) || (r->offset <= s && r->offset + r->count >= e))
      continue;
    f = malloc (sizeof *f);
    if (!f) {
      w->error = HP_ENOMEM;
      break;
    }
    f->w = w;
    f->slot = w->nr_fill;
    w->fill_block[w->nr_fill++] = b;
    w->waiting++;
    fnext_request (((struct cow_handle *) handle)->next, HP_PREAD, 0, s,
                   (uint32_t) (e - s), NULL, on_fill_block, f);
  }
  if (--w->waiting == 0)
    writing_finish (w);
}

static void cow_pwrite (void *h, struct freq *r) { start_writing (h, r, false); }
static void cow_zero (void *h, struct freq *r) { start_writing (h, r, true); }

static void
cow_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* the overlay is temporary */
}

/* Extents: the overlay's blocks are data, or zero where it knows they
 * are all zeros; the rest is asked below.
 */
enum bstate { B_BELOW, B_DATA, B_ZERO };

static enum bstate
bstate (uint64_t b)
{
  return !present (b) ? B_BELOW : is_zero (b) ? B_ZERO : B_DATA;
}

static void
cow_extents (void *handle, struct freq *r)
{
  const struct cow_handle *h = handle;
  uint64_t end = r->offset + r->count;
  uint64_t b = r->offset / blksize, e;
  enum bstate st = bstate (b);
  unsigned char *ext;

  while (block_end (b) < end && bstate (b + 1) == st)
    ++b;
  e = block_end (b) < end ? block_end (b) : end;
  if (st == B_BELOW && h->below_extents) {
    r->count = (uint32_t) (e - r->offset);
    freq_next (r);
    return;
  }
  ext = malloc (HP_EXTENT_SIZE);
  if (!ext) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  hp_encode_extent (ext, e - r->offset, st == B_ZERO ? HP_EXTENT_ZERO : 0);
  freq_reply (r, ext, HP_EXTENT_SIZE, 0);
}

static const char *const keys[] = {
  "cow-block-size", "cow-on-read", NULL
};

const struct filter cow_filter = {
  .name = "cow",
  .description = "copy-on-write: a writable view of a read-only disk",
  .config_help =
    "cow-block-size=SIZE the overlay's block size (default 64K)\n"
    "cow-on-read=true    also keep what is read in the overlay",
  .keys = keys,
  .config = cow_config,
  .get_ready = cow_get_ready,
  .unload = cow_unload,
  .readonly_below = true,
  .open = cow_open,
  .close = cow_close,
  .pread = cow_pread,
  .pwrite = cow_pwrite,
  .trim = cow_zero,
  .zero = cow_zero,
  .flush = cow_flush,
  .extents = cow_extents,
};
