/* filters/cache/cache.c: a cache of the disk in a temporary file
 * (nbdkit-cache-filter(1)).
 *
 * The cache is a temporary file of blocks of cache-min-block-size
 * bytes, clean (as below) or dirty (newer than below).  One cache
 * serves every connection, as in nbdkit: the first open fixes the
 * export and size.
 *
 * Modes: writeback (writes go to the cache; dirty blocks go below at
 * flush, or when evicted; a FUA write goes through), writethrough
 * (writes go below and into the cached blocks), unsafe (as writeback,
 * flushes do nothing).  cache-max-size bounds the number of slots:
 * past the high threshold, clean blocks are dropped and dirty ones
 * written below first, least recently used first; when no slot is free
 * a write goes around the cache, straight below.  Nothing written is
 * ever dropped before it is below.
 *
 * Every request that changes the cache or the disk, and every read
 * that fills the cache, locks the blocks it touches (a range lock;
 * overlapping requests wait in arrival order), so that what the cache
 * holds never goes stale against what is below.  Reads that the cache
 * answers take no lock.
 *
 * This file is the filter: its parameters, connections and request
 * paths.  The cache file and its block table (slots, LRU order,
 * eviction, writebacks) are in blocks.c.  The cache file's I/O
 * runs on worker threads, never on the loop: a request goes on in the
 * callbacks of its cache-file I/O as of its requests below, and
 * completes (and unlocks) once all of them are back.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"

enum cache_mode { MODE_WRITEBACK, MODE_WRITETHROUGH, MODE_UNSAFE };

static enum cache_mode mode = MODE_WRITEBACK;
static int64_t blksize = 65536;
static int64_t max_size;        /* 0 = no limit */
static char *max_size_str;      /* as given, for messages */
static unsigned high_pct = 95, low_pct = 80;
static bool on_read;
static char *on_read_path;      /* cache on read while this exists */

/* ---- parameters ---- */

static int
cache_config (const char *key, const char *value)
{
  if (strcmp (key, "cache") == 0) {
    if (strcmp (value, "writeback") == 0)
      mode = MODE_WRITEBACK;
    else if (strcmp (value, "writethrough") == 0)
      mode = MODE_WRITETHROUGH;
    else if (strcmp (value, "unsafe") == 0)
      mode = MODE_UNSAFE;
    else {
      nbdkit_error ("cache=%s: use writeback, writethrough or unsafe",
                    value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cache-min-block-size") == 0) {
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
  if (strcmp (key, "cache-max-size") == 0) {
    if (fparse_size (key, value, &max_size) == -1)
      return -1;
    free (max_size_str);
    max_size_str = strdup (value);
    if (!max_size_str) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cache-high-threshold") == 0 ||
      strcmp (key, "cache-low-threshold") == 0) {
    unsigned *p = key[6] == 'h' ? &high_pct : &low_pct;

    if (fparse_uint (key, value, 100, p) == -1)
      return -1;
    if (*p == 0) {
      nbdkit_error ("%s=%s: use a percentage from 1 to 100", key, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cache-on-read") == 0) {
    free (on_read_path);
    on_read_path = NULL;
    if (value[0] == '/') {
      on_read_path = strdup (value);
      if (!on_read_path) {
        nbdkit_error ("out of memory");
        return -1;
      }
      on_read = true;
      return 0;
    }
    return fparse_bool (key, value, &on_read);
  }
  nbdkit_error ("%s: unknown parameter of the cache filter (see "
                "'nbdkit --filter=cache null --help')", key);
  return -1;
}

static uint64_t max_blocks, high_blocks, low_blocks;

static int
cache_config_complete (void)
{
  if (low_pct >= high_pct) {
    nbdkit_error ("cache-low-threshold=%u, cache-high-threshold=%u: the "
                  "low threshold must be below the high one", low_pct,
                  high_pct);
    return -1;
  }
  if (max_size) {
    max_blocks = (uint64_t) max_size / (uint64_t) blksize;
    if (max_blocks < 4) {
      nbdkit_error ("cache-max-size=%s: the cache must hold at least 4 "
                    "blocks of cache-min-block-size=%" PRId64 " (use at "
                    "least %" PRId64 ")", max_size_str, blksize,
                    4 * blksize);
      return -1;
    }
    high_blocks = max_blocks * high_pct / 100;
    low_blocks = max_blocks * low_pct / 100;
    if (high_blocks < 1)
      high_blocks = 1;
  }
  cache_blocks_configure ((uint64_t) blksize, max_blocks, high_blocks,
                          low_blocks);
  return 0;
}

/* ---- the disk, and connections ---- */

/* The disk the cache is of. */
static bool have_disk;
static char *disk_export;
static uint64_t disk_size;

static void
cache_unload (void)
{
  cache_blocks_free ();
  free (on_read_path);
  free (max_size_str);
  free (disk_export);
}

static void
cache_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct cache_handle *h;

  if (!have_disk) {
    disk_export = strdup (o->export ? o->export : "");
    if (!disk_export) {
      fopen_fail (o, HP_ENOMEM, "out of memory");
      return;
    }
    disk_size = c->size;
    cache_blocks_set_disk_size (disk_size);
    have_disk = true;
  }
  else if (c->size != disk_size ||
           strcmp (o->export ? o->export : "", disk_export) != 0) {
    fopen_fail (o, HP_EINVAL, "the cache filter caches one disk: this "
                "export differs from the first one opened (its name or "
                "size)");
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->next = o->next;
  h->below_flush = c->can_flush;
  h->refs = 1;
  if (mode != MODE_WRITETHROUGH)
    c->can_flush = true;
  if (mode == MODE_UNSAFE) {
    c->can_fua = c->can_write;
    c->can_multi_conn = true;
  }
  c->can_cache = true;
  /* Block sizes as nbdkit's filter gives them: no limit of its own,
   * and the cache's block preferred where it fits.
   */
  if (c->block_min == 0) {
    c->block_min = 1;
    c->block_max = UINT32_MAX;
  }
  if (c->block_max >= (uint64_t) blksize && c->block_pref < (uint64_t) blksize)
    c->block_pref = (uint32_t) blksize;
  fopen_done (o, h);
}

/* The link below goes with the connection; a writeback that still
 * holds the handle sees next NULL.
 */
static void
cache_close (void *handle)
{
  struct cache_handle *h = handle;

  h->next = NULL;
  cache_handle_release (h);
}

/* ---- requests ---- */

/* A request in progress.  in_flight counts what it waits for: requests
 * below and cache-file I/O (and, while it starts them, itself); the
 * last one back finishes it.
 */
struct cop {
  struct frange_lock lk;        /* first */
  struct freq *r;
  struct fnext *next;
  struct cache_handle *h;
  bool locked;
  bool fill;                    /* read: keep what comes from below */
  bool data_shared;             /* write: cache-file I/O reads r->data */
  uint64_t off, end;
  unsigned char *buf;           /* read: the reply */
  unsigned in_flight;
  uint32_t error;
  char *msg;
};

/* A read from below, or a block of the request going into the cache. */
struct part {
  struct cop *o;
  uint64_t off;                 /* bytes, of the disk */
  uint32_t count;
  uint64_t blk;                 /* a write's block */
  void *payload;                /* from below: kept while being cached */
  unsigned refs;
};

/* A write or zero of part of a cached block. */
struct block_op {
  struct cop *o;
  struct cblock *c;             /* pinned until the op is back */
  bool was_dirty;
};

static void
cop_set_error (struct cop *o, uint32_t status, const char *msg,
               uint32_t len)
{
  if (o->error)
    return;
  o->error = status ? status : HP_EIO;
  o->msg = msg && len ? strndup (msg, len) : NULL;
}

static void
cop_from_reply (struct cop *o, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  cop_set_error (o, reply ? reply->status : HP_EIO, payload, len);
}

static void
cop_finish (struct cop *o)
{
  struct freq *r = o->r;

  if (o->locked)
    frange_release (&cache_locks, &o->lk);
  /* Before the reply: after it the connection may be gone. */
  cache_reclaim (o->h);
  if (o->error)
    freq_reply_error (r, o->error, o->msg);
  else if (r->type == HP_PREAD) {
    freq_reply (r, o->buf, r->count, 0);
    o->buf = NULL;
  }
  else
    freq_reply (r, NULL, 0, 0);
  free (o->buf);
  free (o->msg);
  free (o);
}

/* One thing the request waited for is back. */
static void
cop_step_done (struct cop *o)
{
  if (--o->in_flight == 0)
    cop_finish (o);
}

static struct cop *
cop_new (void *handle, struct freq *r, void (*start) (struct frange_lock *))
{
  struct cop *o = calloc (1, sizeof *o);

  if (!o) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return NULL;
  }
  o->r = r;
  o->h = handle;
  o->next = freq_below (r);
  o->off = r->offset;
  o->end = r->offset + r->count;
  o->lk.lo = o->off / (uint64_t) blksize;
  o->lk.hi = (o->end + (uint64_t) blksize - 1) / (uint64_t) blksize;
  o->lk.start = start;
  return o;
}

/* Bytes of block b within [off, end): [*s, *e). */
static void
clip (uint64_t b, uint64_t off, uint64_t end, uint64_t *s, uint64_t *e)
{
  uint64_t bs = b * (uint64_t) blksize, be = bs + block_len (b);

  *s = bs > off ? bs : off;
  *e = be < end ? be : end;
}

static bool
fill_on_read (void)
{
  if (!on_read)
    return false;
  return !on_read_path || access (on_read_path, F_OK) == 0;
}

static void
part_unref (struct part *p)
{
  if (--p->refs == 0) {
    payload_free (p->payload);
    free (p);
  }
}

/* -- reads (and cache requests: reads whose data is kept, not sent) -- */

/* A block read from below is in the cache (or could not be: no harm). */
static void
on_read_kept (void *opaque, int err)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  part_unref (p);
  cop_step_done (o);
}

static void
on_read_part (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  p->payload = payload;
  p->refs = 1;
  if (!reply || reply->status)
    cop_from_reply (o, reply, payload, len);
  else {
    uint64_t s = p->off > o->off ? p->off : o->off;
    uint64_t e = p->off + p->count < o->end ? p->off + p->count : o->end;
    uint64_t b;

    if (o->buf && s < e)
      memcpy (o->buf + (s - o->off), (unsigned char *) payload + (s - p->off),
              e - s);
    /* Whole blocks were read: keep them, if there is room. */
    if (o->fill)
      for (b = p->off / (uint64_t) blksize;
           b * (uint64_t) blksize < p->off + p->count; ++b)
        if (!cblock_lookup (b) && cache_reserve ()) {
          p->refs++;
          o->in_flight++;
          cblock_insert (b, (unsigned char *) payload +
                         (b * (uint64_t) blksize - p->off), false,
                         on_read_kept, p);
        }
  }
  part_unref (p);
  cop_step_done (o);
}

static void
read_send (struct cop *o, uint64_t lo, uint64_t hi)
{
  uint64_t s = lo * (uint64_t) blksize;
  uint64_t e = (hi - 1) * (uint64_t) blksize + block_len (hi - 1);
  struct part *p = calloc (1, sizeof *p);

  if (!p) {
    cop_set_error (o, HP_ENOMEM, NULL, 0);
    return;
  }
  if (!o->fill) {
    /* Only what was asked. */
    if (s < o->off)
      s = o->off;
    if (e > o->end)
      e = o->end;
  }
  p->o = o;
  p->off = s;
  p->count = (uint32_t) (e - s);
  o->in_flight++;
  fnext_request (o->next, HP_PREAD, 0, s, p->count, NULL, on_read_part, p);
}

static void
on_read_cached (void *opaque, int err)
{
  struct cop *o = opaque;

  if (err)
    cop_set_error (o, HP_EIO, NULL, 0);
  cop_step_done (o);
}

static void
read_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  uint64_t b, run_lo = 0;
  bool in_run = false;

  o->locked = o->fill;
  o->in_flight = 1;             /* this function */
  for (b = l->lo; b <= l->hi && !o->error; ++b) {
    struct cblock *c = b < l->hi ? cblock_lookup (b) : NULL;
    bool absent = b < l->hi && !c;

    if (in_run && (!absent ||
                   (b - run_lo) * (uint64_t) blksize >= MAX_RUN)) {
      read_send (o, run_lo, b);
      in_run = false;
    }
    if (absent && !in_run) {
      run_lo = b;
      in_run = true;
    }
    if (c) {
      uint64_t s, e;

      cblock_touch (c);
      if (o->buf) {
        clip (b, o->off, o->end, &s, &e);
        o->in_flight++;
        cblock_io (false, c, o->buf + (s - o->off),
                   s - b * (uint64_t) blksize, e - s, on_read_cached, o);
      }
    }
  }
  cop_step_done (o);
}

static void
cache_pread (void *handle, struct freq *r)
{
  struct cop *o = cop_new (handle, r, read_start);

  if (!o)
    return;
  o->buf = malloc (r->count);
  if (!o->buf) {
    free (o);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  o->fill = fill_on_read ();
  if (o->fill)
    frange_acquire (&cache_locks, &o->lk);
  else
    read_start (&o->lk);
}

/* NBD_CMD_CACHE: read into the cache (at most MAX_RUN at a time, and at
 * most 32M: a hint).
 */
static void
cache_cache (void *handle, struct freq *r)
{
  struct cop *o;

  if (r->count > HP_MAX_DATA)
    r->count = HP_MAX_DATA;
  o = cop_new (handle, r, read_start);
  if (!o)
    return;
  o->fill = true;
  frange_acquire (&cache_locks, &o->lk);
}

/* -- writes -- */

/* A block a write covered in part, completed from below, is in the
 * cache (or not: then the write failed).
 */
static void
on_fill_kept (void *opaque, int err)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  if (err)
    cop_set_error (o, HP_EIO, "cannot write the cache file", 28);
  part_unref (p);
  cop_step_done (o);
}

/* A block a write covers in part, read from below to be completed. */
static void
on_write_fill (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  p->payload = payload;
  p->refs = 1;
  if (!reply || reply->status) {
    cache_unreserve ();
    cop_from_reply (o, reply, payload, len);
    part_unref (p);
    cop_step_done (o);
    return;
  }
  {
    uint64_t s, e, bs = p->blk * (uint64_t) blksize;

    clip (p->blk, o->off, o->end, &s, &e);
    memcpy ((unsigned char *) payload + (s - bs),
            (unsigned char *) o->r->data + (s - o->off), e - s);
    cblock_insert (p->blk, payload, true, on_fill_kept, p);
  }
}

static void
on_write_below (void *opaque, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  struct cop *o = opaque;

  if (!reply || reply->status) {
    uint64_t b;

    cop_from_reply (o, reply, payload, len);
    /* Clean blocks must stay as below: drop what may now differ. */
    for (b = o->lk.lo; b < o->lk.hi; ++b) {
      struct cblock *c = cblock_lookup (b);

      if (c && !c->dirty)
        cblock_drop (c);
    }
  }
  payload_free (payload);
  cop_step_done (o);
}

/* Write bytes [s, e) of the request below (around the cache). */
static void
write_around (struct cop *o, uint64_t s, uint64_t e, uint16_t flags)
{
  void *data = malloc (e - s);

  if (!data) {
    cop_set_error (o, HP_ENOMEM, NULL, 0);
    return;
  }
  memcpy (data, (unsigned char *) o->r->data + (s - o->off), e - s);
  o->in_flight++;
  fnext_request (o->next, HP_PWRITE, flags, s, (uint32_t) (e - s), data,
                 on_write_below, o);
}

/* A block written whole is in the cache, dirty; if it could not be,
 * it goes below instead.
 */
static void
on_write_kept (void *opaque, int err)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  if (err)
    write_around (o, p->off, p->off + p->count, 0);
  part_unref (p);
  cop_step_done (o);
}

/* A block written whole in writethrough is in the cache, clean: unless
 * something failed (the write below), and then it must not stay.
 */
static void
on_through_kept (void *opaque, int err)
{
  struct part *p = opaque;
  struct cop *o = p->o;
  struct cblock *c;

  if (!err && o->error && (c = cblock_lookup (p->blk)) != NULL && !c->dirty)
    cblock_drop (c);
  part_unref (p);
  cop_step_done (o);
}

/* Part of a cached block written (or zeroed): on failure the block is
 * not what it should be.  A clean one is dropped (below decides); a
 * dirty one stays, and the request fails.
 */
static void
on_block_written (void *opaque, int err)
{
  struct block_op *bo = opaque;
  struct cop *o = bo->o;

  if (err) {
    if (!bo->was_dirty)
      cblock_drop (bo->c);
    cop_set_error (o, HP_EIO, NULL, 0);
  }
  free (bo);
  cop_step_done (o);
}

static struct block_op *
block_op_new (struct cop *o, struct cblock *c)
{
  struct block_op *bo = malloc (sizeof *bo);

  if (!bo) {
    cop_set_error (o, HP_ENOMEM, NULL, 0);
    return NULL;
  }
  bo->o = o;
  bo->c = c;
  bo->was_dirty = c->dirty;
  return bo;
}

/* A block of the request going into the cache from r->data. */
static struct part *
write_part (struct cop *o, uint64_t b, uint64_t s, uint64_t e)
{
  struct part *p = calloc (1, sizeof *p);

  if (!p) {
    cache_unreserve ();
    cop_set_error (o, HP_ENOMEM, NULL, 0);
    return NULL;
  }
  p->o = o;
  p->blk = b;
  p->off = s;
  p->count = (uint32_t) (e - s);
  p->refs = 1;
  o->in_flight++;
  o->data_shared = true;
  return p;
}

static void
write_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  struct freq *r = o->r;
  unsigned char *data = r->data;
  bool through = mode == MODE_WRITETHROUGH ||
    (mode == MODE_WRITEBACK && (r->flags & HP_FLAG_FUA));
  uint64_t b, around_s = 0, around_e = 0;

  o->locked = true;
  o->in_flight = 1;             /* this function */
  for (b = l->lo; b < l->hi && !o->error; ++b) {
    struct cblock *c = cblock_lookup (b);
    uint64_t s, e, bs = b * (uint64_t) blksize;
    bool whole;
    struct part *p;

    clip (b, o->off, o->end, &s, &e);
    whole = s == bs && e == bs + block_len (b);
    if (c) {
      struct block_op *bo = block_op_new (o, c);

      if (!bo)
        break;
      /* Dirty (and so kept) from now: the lock keeps writebacks off
       * until the bytes are in.
       */
      if (!through)
        cblock_mark_dirty (c);
      cblock_touch (c);
      o->in_flight++;
      o->data_shared = true;
      cblock_io (true, c, data + (s - o->off), s - bs, e - s,
                 on_block_written, bo);
      continue;
    }
    if (through) {
      if (whole && cache_reserve () && (p = write_part (o, b, s, e)) != NULL)
        cblock_insert (b, data + (s - o->off), false, on_through_kept, p);
      continue;
    }
    if (whole && cache_reserve ()) {
      if ((p = write_part (o, b, s, e)) == NULL)
        break;
      cblock_insert (b, data + (s - o->off), true, on_write_kept, p);
      continue;
    }
    else if (!whole && cache_reserve ()) {
      p = calloc (1, sizeof *p);
      if (!p) {
        cache_unreserve ();
        cop_set_error (o, HP_ENOMEM, NULL, 0);
        break;
      }
      p->o = o;
      p->blk = b;
      o->in_flight++;
      fnext_request (o->next, HP_PREAD, 0, bs, (uint32_t) block_len (b),
                     NULL, on_write_fill, p);
      continue;
    }
    /* No room: this part goes straight below. */
    if (around_e == s)
      around_e = e;
    else {
      if (around_s < around_e)
        write_around (o, around_s, around_e, 0);
      around_s = s;
      around_e = e;
    }
  }
  if (through && !o->error) {
    /* The whole request below: its own data, or a copy while the cache
     * file's I/O still reads that.
     */
    void *d = r->data;

    if (o->data_shared && (d = malloc (r->count)) != NULL)
      memcpy (d, r->data, r->count);
    else if (!o->data_shared)
      r->data = NULL;
    if (!d)
      cop_set_error (o, HP_ENOMEM, NULL, 0);
    else {
      o->in_flight++;
      fnext_request (o->next, HP_PWRITE, r->flags & HP_FLAG_FUA, o->off,
                     r->count, d, on_write_below, o);
    }
  }
  else if (around_s < around_e && !o->error)
    write_around (o, around_s, around_e, 0);
  cop_step_done (o);
}

static void
cache_pwrite (void *handle, struct freq *r)
{
  struct cop *o = cop_new (handle, r, write_start);

  if (o)
    frange_acquire (&cache_locks, &o->lk);
}

/* -- zero and trim: below first, then the cache -- */

/* Zeros in part of a cached block: if that failed the block is wrong
 * and dropped (below has the zeros), failing the request if it was
 * dirty.
 */
static void
on_block_zeroed (void *opaque, int err)
{
  struct block_op *bo = opaque;
  struct cop *o = bo->o;

  if (err) {
    cblock_drop (bo->c);
    if (bo->was_dirty)
      cop_set_error (o, HP_EIO, NULL, 0);
  }
  free (bo);
  cop_step_done (o);
}

static void
on_zero_below (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct cop *o = opaque;
  bool zero = o->r->type == HP_ZERO;
  uint64_t b;

  if (!reply || reply->status) {
    cop_from_reply (o, reply, payload, len);
    /* Below may have changed in part: clean blocks must not differ. */
    for (b = o->lk.lo; b < o->lk.hi; ++b) {
      struct cblock *c = cblock_lookup (b);

      if (c && !c->dirty)
        cblock_drop (c);
    }
  }
  else
    for (b = o->lk.lo; b < o->lk.hi; ++b) {
      struct cblock *c = cblock_lookup (b);
      uint64_t s, e, bs = b * (uint64_t) blksize;

      if (!c)
        continue;
      clip (b, o->off, o->end, &s, &e);
      if (s == bs && e == bs + block_len (b))
        cblock_drop (c);        /* below has it all now */
      else if (zero) {
        struct block_op *bo = block_op_new (o, c);

        if (!bo)
          cblock_drop (c);
        else {
          o->in_flight++;
          cblock_zero (c, s - bs, e - s, on_block_zeroed, bo);
        }
      }
      else if (!c->dirty)
        cblock_drop (c);        /* a trim: below decides what it reads */
    }
  payload_free (payload);
  cop_step_done (o);
}

static void
zero_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  struct freq *r = o->r;
  uint16_t flags = r->flags;

  o->locked = true;
  o->in_flight = 1;             /* the request below */
  if (mode == MODE_UNSAFE)
    flags &= ~HP_FLAG_FUA;
  fnext_request (o->next, r->type, flags, r->offset, r->count, NULL,
                 on_zero_below, o);
}

static void
cache_zero (void *handle, struct freq *r)
{
  struct cop *o = cop_new (handle, r, zero_start);

  if (o)
    frange_acquire (&cache_locks, &o->lk);
}

/* -- flush: every dirty block below, then a flush below -- */

static void
on_flush_below (void *opaque, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  struct cop *o = opaque;

  if (!reply || reply->status)
    cop_from_reply (o, reply, payload, len);
  payload_free (payload);
  cop_finish (o);
}

static void
on_written_back (void *opaque, uint32_t status, const char *msg)
{
  struct cop *o = opaque;

  if (status)
    cop_set_error (o, status, msg, msg ? (uint32_t) strlen (msg) : 0);
  if (o->error || !o->h->below_flush) {
    cop_finish (o);
    return;
  }
  fnext_request (o->next, HP_FLUSH, 0, 0, 0, NULL, on_flush_below, o);
}

static void
cache_flush (void *handle, struct freq *r)
{
  struct cop *o;

  if (mode == MODE_UNSAFE) {
    freq_reply (r, NULL, 0, 0);
    return;
  }
  if (mode == MODE_WRITETHROUGH) {
    if (((struct cache_handle *) handle)->below_flush)
      freq_next (r);
    else
      freq_reply (r, NULL, 0, 0);
    return;
  }
  o = cop_new (handle, r, NULL);
  if (!o)
    return;
  if (cache_writeback_all (o->h, on_written_back, o) == -1) {
    free (o);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
  }
}

/* -- extents: blocks dirty in the cache are data, whatever is below -- */

static void
cache_extents (void *handle, struct freq *r)
{
  uint64_t lo = r->offset / (uint64_t) blksize;
  uint64_t hi = (r->offset + r->count + (uint64_t) blksize - 1) /
    (uint64_t) blksize;
  uint64_t d = cache_first_dirty (lo, hi);
  unsigned char *ext;
  uint64_t e;

  if (d == UINT64_MAX) {
    freq_next (r);
    return;
  }
  if (d > lo) {
    r->count = (uint32_t) (d * (uint64_t) blksize - r->offset);
    freq_next (r);
    return;
  }
  /* Dirty from the start: data, as far as the dirty blocks go. */
  e = cache_dirty_end (lo, hi) * (uint64_t) blksize;
  if (e > r->offset + r->count)
    e = r->offset + r->count;
  ext = malloc (HP_EXTENT_SIZE);
  if (!ext) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  hp_encode_extent (ext, e - r->offset, 0);
  freq_reply (r, ext, HP_EXTENT_SIZE, 0);
}

static const char *const keys[] = { "cache", "cache-*", NULL };

const struct filter cache_filter = {
  .name = "cache",
  .description = "cache the disk in a temporary file",
  .config_help =
    "cache=writeback|writethrough|unsafe  how writes are cached\n"
    "                           (default writeback)\n"
    "cache-max-size=SIZE        the most the cache holds (default: no\n"
    "                           limit)\n"
    "cache-high-threshold=N     % of the maximum at which blocks are\n"
    "                           evicted (default 95)\n"
    "cache-low-threshold=N      % of the maximum down to which they are\n"
    "                           (default 80)\n"
    "cache-min-block-size=SIZE  the cache's block size (default 64K)\n"
    "cache-on-read=true|false|/PATH  also keep what is read (always, or\n"
    "                           while PATH exists; default false)",
  .keys = keys,
  .config = cache_config,
  .config_complete = cache_config_complete,
  .get_ready = cache_blocks_init,
  .unload = cache_unload,
  .open = cache_open,
  .close = cache_close,
  .pread = cache_pread,
  .pwrite = cache_pwrite,
  .trim = cache_zero,
  .zero = cache_zero,
  .flush = cache_flush,
  .cache = cache_cache,
  .extents = cache_extents,
};
