/* filters/cow.c: copy-on-write (nbdkit-cow-filter(1)).  The layers
 * below are opened read-only; writes go to an overlay in a temporary
 * file, shared by every connection, which is thrown away at exit.
 *
 * The overlay is kept in blocks of cow-block-size bytes, with a bitmap
 * saying which blocks it holds.  A read takes each run of blocks from
 * the overlay or from below.  A write (zero, trim) locks the blocks it
 * touches (a range lock: overlapping ones wait, in arrival order, so
 * two concurrent partial writes of one block both take effect).  If it
 * covers a block partly it needs the rest of the block from below
 * first: it reads those blocks, writes the ones still not in the
 * overlay, then its own bytes, and marks them.  Zero and trim punch
 * holes in the overlay.  cow-on-read=true also copies what is read from
 * below into the overlay, block by block where the overlay has nothing
 * and no write holds the lock (a copy never waits: it is skipped).
 *
 * A second bitmap says which of the overlay's blocks are known to hold
 * only zeros (a zero or trim covered the whole block, or zeroed part of
 * a block already known to be zeros; any write clears it), so block
 * status reports them as zero; a third, which of those a trim covered
 * whole (any later write, zero or trim of part of it clears it), which
 * block status reports as a hole that reads as zeros, as nbdkit's
 * filter reports trimmed blocks.
 *
 * The overlay is a temporary file made at get_ready (before serving)
 * and sized at the first open.  Its I/O runs on worker threads
 * (tmpfile_*_async), never on the loop; the bitmaps are touched on the
 * loop only, and a block is marked only once its bytes are in the
 * file, so a read that finds it marked reads what was written.
 */

#include <config.h>

#include <errno.h>
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
static unsigned char *holemap;  /* ... of those, the ones trimmed whole */
static uint64_t nr_blocks;
static uint64_t disk_size;
/* The range lock, in block numbers: writes, zeroes, trims, copies up. */
static struct frange_locks locks;

/* The overlay is sized at the first open, off the loop; the opens that
 * come meanwhile wait for it, in order.
 */
static enum { OV_NONE, OV_SIZING, OV_READY } overlay_state;
struct open_waiter {
  struct fopen *o;
  struct open_waiter *next;
};
static struct open_waiter *open_waiters;
static uint64_t sizing_size;

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

/* Synchronous: get_ready runs before the server serves. */
static int
cow_get_ready (void)
{
  fd = tmpfile_create ("cow", "overlay");
  return fd == -1 ? -1 : 0;
}

static void
cow_unload (void)
{
  tmpfile_close (fd);
  free (bitmap);
  free (zeromap);
  free (holemap);
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

static bool
is_hole (uint64_t b)
{
  return holemap[b / 8] & (1 << (b % 8));
}

static void
set_hole (uint64_t b, bool h)
{
  if (h)
    holemap[b / 8] |= 1 << (b % 8);
  else
    holemap[b / 8] &= ~(1 << (b % 8));
}

/* An open, once the overlay is set up. */
static void
open_finish (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct cow_handle *h;

  if (c->size != disk_size) {
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

/* The overlay sized (or not): finish the opens waiting for it.  On
 * failure nothing stays set up, and the next open tries again.
 */
static void
on_overlay_sized (void *opaque, int err)
{
  struct open_waiter *w = open_waiters, *next;

  open_waiters = NULL;
  if (err) {
    errno = err;
    nbdkit_error ("cow filter: cannot size the overlay to %" PRIu64
                  " bytes: ftruncate: %m", sizing_size);
    free (bitmap);
    free (zeromap);
    free (holemap);
    bitmap = zeromap = holemap = NULL;
    overlay_state = OV_NONE;
  }
  else {
    disk_size = sizing_size;
    nr_blocks = (disk_size + blksize - 1) / blksize;
    overlay_state = OV_READY;
  }
  for (; w; w = next) {
    next = w->next;
    if (err)
      fopen_fail (w->o, HP_EIO,
                  "the cow filter could not set up its overlay");
    else
      open_finish (w->o);
    free (w);
  }
}

static void
cow_open (struct fopen *o)
{
  struct open_waiter *w, **p;
  uint64_t size = o->caps->size, n = (size + blksize - 1) / blksize;

  if (overlay_state == OV_READY) {
    open_finish (o);
    return;
  }
  w = malloc (sizeof *w);
  if (!w) {
    nbdkit_error ("cow filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  w->o = o;
  w->next = NULL;
  for (p = &open_waiters; *p; p = &(*p)->next)
    ;
  *p = w;
  if (overlay_state == OV_SIZING)
    return;
  /* The first open: the bitmaps, then the file's size, off the loop. */
  bitmap = calloc (1, n / 8 + 1);
  zeromap = calloc (1, n / 8 + 1);
  holemap = calloc (1, n / 8 + 1);
  if (!bitmap || !zeromap || !holemap) {
    nbdkit_error ("cow filter: out of memory for the overlay's bitmaps");
    free (bitmap);
    free (zeromap);
    free (holemap);
    bitmap = zeromap = holemap = NULL;
    open_waiters = NULL;
    free (w);
    fopen_fail (o, HP_ENOMEM, "the cow filter could not set up its overlay");
    return;
  }
  overlay_state = OV_SIZING;
  sizing_size = size;
  tmpfile_truncate_async (fd, size, on_overlay_sized, NULL);
}

static void
cow_close (void *handle)
{
  free (handle);
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

/* cow-on-read: what came from below, copied into the overlay block by
 * block where it still has nothing.  The blocks are locked while their
 * writes run (a write to them waits), and marked once written.
 */
struct copy_up {
  struct frange_lock lk;        /* first */
  unsigned char *data;          /* from below, from offset on */
  uint64_t offset;
  unsigned waiting;             /* writes not yet back */
};

struct copy_run {
  struct copy_up *cu;
  uint64_t lo, hi;              /* blocks */
};

static void
copy_up_step_done (struct copy_up *cu)
{
  if (--cu->waiting > 0)
    return;
  frange_release (&locks, &cu->lk);
  payload_free (cu->data);
  free (cu);
}

static void
on_copied_up (void *opaque, int err)
{
  struct copy_run *run = opaque;
  struct copy_up *cu = run->cu;
  uint64_t b;

  if (!err)
    for (b = run->lo; b < run->hi; ++b)
      mark (b);
  free (run);
  copy_up_step_done (cu);
}

static void
copy_up_locked (struct frange_lock *l)
{
  struct copy_up *cu = (struct copy_up *) l;
  uint64_t b, lo;

  cu->waiting = 1;              /* this function */
  for (b = l->lo; b < l->hi; ) {
    struct copy_run *run;

    if (present (b)) {
      ++b;
      continue;
    }
    for (lo = b; b < l->hi && !present (b); ++b)
      ;
    run = malloc (sizeof *run);
    if (!run)
      break;
    run->cu = cu;
    run->lo = lo;
    run->hi = b;
    cu->waiting++;
    tmpfile_io_async (fd, true, cu->data + (lo * blksize - cu->offset),
                      block_end (b - 1) - lo * blksize, lo * blksize,
                      on_copied_up, run);
  }
  copy_up_step_done (cu);
}

/* Takes data (count bytes from offset, malloc'd). */
static void
copy_up (unsigned char *data, uint64_t offset, uint32_t count)
{
  uint64_t lo = (offset + blksize - 1) / blksize, hi;
  struct copy_up *cu;

  /* The blocks the data covers whole. */
  for (hi = lo; hi * blksize < offset + count &&
         block_end (hi) <= offset + count; ++hi)
    ;
  if (lo >= hi || frange_busy (&locks, lo, hi) ||
      !(cu = malloc (sizeof *cu))) {
    payload_free (data);
    return;
  }
  cu->data = data;
  cu->offset = offset;
  cu->lk.lo = lo;
  cu->lk.hi = hi;
  cu->lk.start = copy_up_locked;
  frange_acquire (&locks, &cu->lk);     /* not busy: starts at once */
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
    if (cow_on_read) {
      copy_up (payload, p->offset, p->count);
      payload = NULL;
    }
  }
  payload_free (payload);
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
on_overlay_read (void *opaque, int err)
{
  struct reading *rd = opaque;

  if (err && !rd->error) {
    errno = err;
    nbdkit_error ("cow filter: reading the overlay: %m");
    rd->error = HP_EIO;
  }
  reading_step_done (rd);
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
      rd->waiting++;
      tmpfile_io_async (fd, false, rd->buf + (off - r->offset), e - off, off,
                        on_overlay_read, rd);
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

/* Under the lock of the blocks it touches: read the partial blocks at
 * its edges from below, write them into the overlay, then the
 * request's bytes (or zeros), then mark them.  Each step waits for the
 * one before: the worker threads may run writes in any order.
 */
struct writing;

struct fill_ctx {
  struct writing *w;
  unsigned slot;
};

struct writing {
  struct frange_lock lk;        /* first */
  struct freq *r;
  struct fnext *next;
  bool zero;                    /* zero/trim: no data */
  bool trim;                    /* a trim */
  unsigned waiting;
  uint64_t fill_block[2];
  unsigned char *fill[2];       /* the blocks read from below */
  struct fill_ctx fill_ctx[2];
  unsigned nr_fill;
  uint32_t error;
  char *msg;
};

static void
writing_free (struct writing *w)
{
  payload_free (w->fill[0]);
  payload_free (w->fill[1]);
  free (w->msg);
  free (w);
}

static void
writing_end (struct writing *w)
{
  frange_release (&locks, &w->lk);
  if (w->error)
    freq_reply_error (w->r, w->error, w->msg);
  else
    freq_reply (w->r, NULL, 0, 0);
  writing_free (w);
}

static void
writing_io_error (struct writing *w, int err)
{
  if (w->error)
    return;
  errno = err;
  nbdkit_error ("cow filter: writing the overlay: %m");
  w->error = HP_EIO;
  w->msg = strdup ("cannot write the overlay");
}

/* The request's bytes are in the overlay: mark its blocks. */
static void
on_data_written (void *opaque, int err)
{
  struct writing *w = opaque;
  struct freq *r = w->r;
  uint64_t b, first = r->offset / blksize;
  uint64_t last = (r->offset + r->count - 1) / blksize;

  if (err)
    writing_io_error (w, err);
  else
    for (b = first; b <= last; ++b) {
      /* Known zeros: a zero covering the whole block, or part of one
       * that was already zeros (a block just filled from below is not:
       * it was not present before this request).  A trim of part of a
       * block makes it data, as in nbdkit's filter (which writes the
       * zeros there).
       */
      bool whole = r->offset <= b * blksize &&
        r->offset + r->count >= block_end (b);

      set_zero (b, w->zero && (whole || (!w->trim && present (b) &&
                                         is_zero (b))));
      set_hole (b, w->trim && whole);
      mark (b);
    }
  writing_end (w);
}

/* The edge blocks are in the overlay: now the request's bytes. */
static void
writing_data (struct writing *w)
{
  struct freq *r = w->r;

  if (w->error) {
    writing_end (w);
    return;
  }
  if (w->zero)
    tmpfile_zero_async (fd, r->count, r->offset, on_data_written, w);
  else
    tmpfile_io_async (fd, true, r->data, r->count, r->offset,
                      on_data_written, w);
}

static void
on_fill_written (void *opaque, int err)
{
  struct fill_ctx *f = opaque;
  struct writing *w = f->w;

  if (err)
    writing_io_error (w, err);
  else
    mark (w->fill_block[f->slot]);
  if (--w->waiting == 0)
    writing_data (w);
}

/* Everything needed from below is here: the edge blocks first. */
static void
writing_fill (struct writing *w)
{
  unsigned i;

  if (w->error) {
    writing_end (w);
    return;
  }
  w->waiting = 1;               /* this function */
  for (i = 0; i < w->nr_fill; ++i) {
    uint64_t fb = w->fill_block[i], s = fb * blksize;

    if (present (fb))
      continue;
    w->waiting++;
    tmpfile_io_async (fd, true, w->fill[i], block_end (fb) - s, s,
                      on_fill_written, &w->fill_ctx[i]);
  }
  if (--w->waiting == 0)
    writing_data (w);
}

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
    payload_free (payload);
  }
  else
    w->fill[f->slot] = payload;
  if (--w->waiting == 0)
    writing_fill (w);
}

static void
writing_locked (struct frange_lock *l)
{
  struct writing *w = (struct writing *) l;
  struct freq *r = w->r;
  uint64_t edge[2] = { l->lo, l->hi - 1 };
  unsigned i;

  w->waiting = 1;               /* this function */
  for (i = 0; i < 2; ++i) {
    uint64_t b = edge[i], s = b * blksize, e = block_end (b);
    struct fill_ctx *f;

    if (i == 1 && edge[1] == edge[0])
      break;
    /* Blocks the request covers whole, or the overlay has: no fill. */
    if (present (b) || (r->offset <= s && r->offset + r->count >= e))
      continue;
    f = &w->fill_ctx[w->nr_fill];
    f->w = w;
    f->slot = w->nr_fill;
    w->fill_block[w->nr_fill++] = b;
    w->waiting++;
    fnext_request (w->next, HP_PREAD, 0, s, (uint32_t) (e - s), NULL,
                   on_fill_block, f);
  }
  if (--w->waiting == 0)
    writing_fill (w);
}

static void
start_writing (void *handle, struct freq *r, bool zero, bool trim)
{
  struct writing *w = calloc (1, sizeof *w);

  if (!w) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  w->r = r;
  w->next = ((struct cow_handle *) handle)->next;
  w->zero = zero;
  w->trim = trim;
  w->lk.lo = r->offset / blksize;
  w->lk.hi = (r->offset + r->count - 1) / blksize + 1;
  w->lk.start = writing_locked;
  frange_acquire (&locks, &w->lk);
}

static void cow_pwrite (void *h, struct freq *r) { start_writing (h, r, false, false); }
static void cow_zero (void *h, struct freq *r) { start_writing (h, r, true, false); }
static void cow_trim (void *h, struct freq *r) { start_writing (h, r, true, true); }

static void
cow_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* the overlay is temporary */
}

/* Extents: the overlay's blocks are data, or zero where it knows they
 * are all zeros, or a hole that reads as zeros where a trim covered
 * them whole; the rest is asked below.
 */
enum bstate { B_BELOW, B_DATA, B_ZERO, B_HOLE };

static enum bstate
bstate (uint64_t b)
{
  return !present (b) ? B_BELOW : is_hole (b) ? B_HOLE
    : is_zero (b) ? B_ZERO : B_DATA;
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
  hp_encode_extent (ext, e - r->offset,
                    st == B_HOLE ? HP_EXTENT_HOLE | HP_EXTENT_ZERO
                    : st == B_ZERO ? HP_EXTENT_ZERO : 0);
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
  .trim = cow_trim,
  .zero = cow_zero,
  .flush = cow_flush,
  .extents = cow_extents,
};
