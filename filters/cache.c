/* filters/cache.c: a cache of the disk in a temporary file
 * (nbdkit-cache-filter(1)).
 *
 * Owns the cache: a temporary file (created at get_ready in $TMPDIR or
 * /var/tmp and unlinked at once) holding blocks of cache-min-block-size
 * bytes, each in a slot of the file, found through a hash table from
 * block number to slot, kept in least-recently-used order, clean (as
 * below) or dirty (newer than below).  One cache serves every
 * connection, as in nbdkit: the first open fixes the export and size.
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
 * answers take no lock.  Cache file I/O is pread/pwrite of whole or
 * partial blocks on the loop (a local file, the page cache).
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

/* Writebacks of evicted blocks in flight at a time, and of one flush. */
#define RECLAIM_WINDOW 8
#define FLUSH_WINDOW 8
/* The longest run of blocks read or written below in one request. */
#define MAX_RUN (4u * 1024 * 1024)

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
  return 0;
}

/* ---- the cache file and its blocks ---- */

static int fd = -1;

struct cblock {
  uint64_t blk;
  uint64_t slot;
  bool dirty;
  struct cblock *hnext;             /* hash chain */
  struct cblock *newer, *older;     /* LRU list */
};

static struct cblock **buckets;
static uint64_t nr_buckets;
static uint64_t nr_cached, nr_dirty, reserved;
static struct cblock *newest, *oldest;
static uint64_t *free_slots;
static uint64_t nr_free, free_cap, next_slot;

/* The disk the cache is of. */
static bool have_disk;
static char *disk_export;
static uint64_t disk_size;

static int
cache_get_ready (void)
{
  fd = tmpfile_create ("cache", "cache file");
  if (fd == -1)
    return -1;
  nr_buckets = 1024;
  buckets = calloc (nr_buckets, sizeof *buckets);
  if (!buckets) {
    nbdkit_error ("out of memory");
    return -1;
  }
  return 0;
}

static void
cache_unload (void)
{
  uint64_t i;

  if (nr_dirty)
    nbdkit_error ("cache filter: %" PRIu64 " blocks written by clients "
                  "were never flushed and are lost", nr_dirty);
  for (i = 0; buckets && i < nr_buckets; ++i)
    while (buckets[i]) {
      struct cblock *c = buckets[i];

      buckets[i] = c->hnext;
      free (c);
    }
  free (buckets);
  free (free_slots);
  free (on_read_path);
  free (max_size_str);
  free (disk_export);
  if (fd >= 0)
    close (fd);
}

static uint64_t
hash (uint64_t blk)
{
  return (blk * UINT64_C (0x9e3779b97f4a7c15)) >> 17;
}

static struct cblock *
lookup (uint64_t blk)
{
  struct cblock *c;

  for (c = buckets[hash (blk) & (nr_buckets - 1)]; c; c = c->hnext)
    if (c->blk == blk)
      return c;
  return NULL;
}

static void
grow_table (void)
{
  uint64_t n = nr_buckets * 2, i;
  struct cblock **nb = calloc (n, sizeof *nb);

  if (!nb)
    return;                     /* longer chains: still correct */
  for (i = 0; i < nr_buckets; ++i)
    while (buckets[i]) {
      struct cblock *c = buckets[i];
      uint64_t h = hash (c->blk) & (n - 1);

      buckets[i] = c->hnext;
      c->hnext = nb[h];
      nb[h] = c;
    }
  free (buckets);
  buckets = nb;
  nr_buckets = n;
}

static void
lru_unlink (struct cblock *c)
{
  if (c->newer)
    c->newer->older = c->older;
  else
    newest = c->older;
  if (c->older)
    c->older->newer = c->newer;
  else
    oldest = c->newer;
}

static void
lru_push (struct cblock *c)
{
  c->newer = NULL;
  c->older = newest;
  if (newest)
    newest->newer = c;
  newest = c;
  if (!oldest)
    oldest = c;
}

static void
touch (struct cblock *c)
{
  if (newest != c) {
    lru_unlink (c);
    lru_push (c);
  }
}

static uint64_t
block_len (uint64_t blk)
{
  uint64_t s = blk * (uint64_t) blksize;

  return disk_size - s < (uint64_t) blksize ? disk_size - s
    : (uint64_t) blksize;
}

static int
file_io (bool write, void *buf, uint64_t n, uint64_t off)
{
  return tmpfile_io (fd, write, buf, n, off);
}

/* Bytes [s, s + n) of a cached block (s from the block's start). */
static int
slot_io (bool write, const struct cblock *c, void *buf, uint64_t s,
         uint64_t n)
{
  if (file_io (write, buf, n, c->slot * (uint64_t) blksize + s) == -1) {
    nbdkit_error ("cache filter: %s the cache file: %m",
                  write ? "writing" : "reading");
    return -1;
  }
  return 0;
}

static void
drop (struct cblock *c)
{
  struct cblock **p = &buckets[hash (c->blk) & (nr_buckets - 1)];

  while (*p != c)
    p = &(*p)->hnext;
  *p = c->hnext;
  lru_unlink (c);
  if (c->dirty)
    nr_dirty--;
  nr_cached--;
  if (nr_free == free_cap) {
    uint64_t cap = free_cap ? free_cap * 2 : 64;
    uint64_t *fs = realloc (free_slots, cap * sizeof *fs);

    if (!fs) {
      free (c);                 /* the slot is not reused: no harm */
      return;
    }
    free_slots = fs;
    free_cap = cap;
  }
  free_slots[nr_free++] = c->slot;
  free (c);
}

/* The range lock, in block numbers. */
static struct frange_locks locks;

/* ---- slots and eviction ---- */

static struct cblock *
insert (uint64_t blk, const void *data, bool dirty)
{
  struct cblock *c = malloc (sizeof *c);

  if (!c)
    return NULL;
  c->blk = blk;
  c->slot = nr_free ? free_slots[--nr_free] : next_slot++;
  c->dirty = false;
  if (slot_io (true, c, (void *) data, 0, block_len (blk)) == -1) {
    free_slots[nr_free++] = c->slot;  /* was taken from there or new */
    free (c);
    return NULL;
  }
  if (nr_cached >= nr_buckets)
    grow_table ();
  c->hnext = buckets[hash (blk) & (nr_buckets - 1)];
  buckets[hash (blk) & (nr_buckets - 1)] = c;
  lru_push (c);
  nr_cached++;
  c->dirty = dirty;
  if (dirty)
    nr_dirty++;
  return c;
}

/* Room for one more block (reserved: the caller inserts later): drop
 * the least recently used clean block if the cache is full.
 */
static bool
reserve (void)
{
  struct cblock *c;

  if (max_blocks == 0) {
    reserved++;
    return true;
  }
  if (nr_cached + reserved >= max_blocks) {
    for (c = oldest; c && c->dirty; c = c->newer)
      ;
    if (!c)
      return false;
    drop (c);
  }
  reserved++;
  return true;
}

/* insert() may need a free slot entry to give back: keep one spare. */
static bool
spare_slot_entry (void)
{
  if (nr_free < free_cap)
    return true;
  {
    uint64_t cap = free_cap ? free_cap * 2 : 64;
    uint64_t *fs = realloc (free_slots, cap * sizeof *fs);

    if (!fs)
      return false;
    free_slots = fs;
    free_cap = cap;
  }
  return true;
}

static struct cblock *
insert_reserved (uint64_t blk, const void *data, bool dirty)
{
  reserved--;
  if (!spare_slot_entry ())
    return NULL;
  return insert (blk, data, dirty);
}

struct writeback;
static void writeback_start (struct writeback *wb);
static struct writeback *writeback_new (struct fnext *next, uint64_t lo,
                                        uint64_t hi, void (*done) (void *,
                                        uint32_t, const char *),
                                        void *opaque);

static unsigned reclaim_in_flight;
static bool reclaiming;

static void reclaim (struct fnext *next);

static void
on_reclaimed (void *opaque, uint32_t status, const char *msg)
{
  struct fnext *next = opaque;

  reclaim_in_flight--;
  if (status)
    nbdkit_error ("cache filter: writing back an evicted block failed "
                  "(%s): it stays in the cache", msg ? msg : "no message");
  else
    reclaim (next);
}

/* Past the high threshold: drop clean blocks, write back dirty ones
 * (then drop them), oldest first, until the low threshold.
 */
static void
reclaim (struct fnext *next)
{
  static bool running;           /* no reclaim inside a reclaim */
  struct cblock *c, *newer;

  if (max_blocks == 0 || running)
    return;
  if (nr_cached > high_blocks)
    reclaiming = true;
  if (!reclaiming)
    return;
  running = true;
  for (c = oldest; c && nr_cached > low_blocks; c = newer) {
    newer = c->newer;
    if (!c->dirty)
      drop (c);
    else if (reclaim_in_flight < RECLAIM_WINDOW && !frange_busy (&locks, c->blk, c->blk + 1)) {
      struct writeback *wb = writeback_new (next, c->blk, c->blk + 1,
                                            on_reclaimed, next);

      if (!wb)
        break;
      reclaim_in_flight++;
      writeback_start (wb);
    }
  }
  running = false;
  if (nr_cached <= low_blocks)
    reclaiming = false;
}

/* ---- writing dirty blocks below ---- */

/* Locks blocks [lo, hi), writes the dirty ones below (runs of them),
 * marks them clean, unlocks, then calls done.
 */
struct writeback {
  struct frange_lock lk;        /* first */
  struct fnext *next;
  void (*done) (void *, uint32_t, const char *);
  void *opaque;
  unsigned in_flight;
  uint32_t error;
  char *msg;
};

struct wb_run {
  struct writeback *wb;
  uint64_t lo, hi;              /* blocks */
};

static void
writeback_finish (struct writeback *wb)
{
  frange_release (&locks, &wb->lk);
  wb->done (wb->opaque, wb->error, wb->msg);
  free (wb->msg);
  free (wb);
}

static void
on_wb_run (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct wb_run *run = opaque;
  struct writeback *wb = run->wb;
  uint64_t b;

  if (!reply || reply->status) {
    if (!wb->error) {
      wb->error = reply ? reply->status : HP_EIO;
      wb->msg = payload && len ? strndup (payload, len) : NULL;
    }
  }
  else
    for (b = run->lo; b < run->hi; ++b) {
      struct cblock *c = lookup (b);

      if (c && c->dirty) {
        c->dirty = false;
        nr_dirty--;
      }
    }
  free (payload);
  free (run);
  if (--wb->in_flight == 0)
    writeback_finish (wb);
}

static void
wb_send_run (struct writeback *wb, uint64_t lo, uint64_t hi)
{
  uint64_t start = lo * (uint64_t) blksize;
  uint64_t n = (hi - 1) * (uint64_t) blksize + block_len (hi - 1) - start;
  unsigned char *buf = malloc (n);
  struct wb_run *run = malloc (sizeof *run);
  uint64_t b;

  if (!buf || !run)
    goto enomem;
  for (b = lo; b < hi; ++b)
    if (slot_io (false, lookup (b), buf + (b - lo) * (uint64_t) blksize, 0,
                 block_len (b)) == -1) {
      free (buf);
      free (run);
      if (!wb->error)
        wb->error = HP_EIO;
      return;
    }
  run->wb = wb;
  run->lo = lo;
  run->hi = hi;
  wb->in_flight++;
  fnext_request (wb->next, HP_PWRITE, 0, start, (uint32_t) n, buf,
                 on_wb_run, run);
  return;

 enomem:
  free (buf);
  free (run);
  if (!wb->error)
    wb->error = HP_ENOMEM;
}

static void
wb_locked (struct frange_lock *l)
{
  struct writeback *wb = (struct writeback *) l;
  uint64_t b, run_lo = 0;
  bool in_run = false;

  wb->in_flight = 1;            /* this function */
  for (b = l->lo; b <= l->hi; ++b) {
    struct cblock *c = b < l->hi ? lookup (b) : NULL;
    bool d = c && c->dirty;

    if (in_run && (!d || (b - run_lo) * (uint64_t) blksize >= MAX_RUN)) {
      wb_send_run (wb, run_lo, b);
      in_run = false;
    }
    if (d && !in_run) {
      run_lo = b;
      in_run = true;
    }
  }
  if (--wb->in_flight == 0)
    writeback_finish (wb);
}

static struct writeback *
writeback_new (struct fnext *next, uint64_t lo, uint64_t hi,
               void (*done) (void *, uint32_t, const char *), void *opaque)
{
  struct writeback *wb = calloc (1, sizeof *wb);

  if (!wb)
    return NULL;
  wb->lk.lo = lo;
  wb->lk.hi = hi;
  wb->lk.start = wb_locked;
  wb->next = next;
  wb->done = done;
  wb->opaque = opaque;
  return wb;
}

static void
writeback_start (struct writeback *wb)
{
  frange_acquire (&locks, &wb->lk);
}

/* ---- connections ---- */

struct cache_handle {
  bool below_flush;             /* the layer below can flush */
};

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
  h->below_flush = c->can_flush;
  if (mode != MODE_WRITETHROUGH)
    c->can_flush = true;
  if (mode == MODE_UNSAFE) {
    c->can_fua = c->can_write;
    c->can_multi_conn = true;
  }
  c->can_cache = true;
  fopen_done (o, h);
}

static void
cache_close (void *handle)
{
  free (handle);
}

/* ---- requests ---- */

struct cop {
  struct frange_lock lk;        /* first */
  struct freq *r;
  struct fnext *next;
  const struct cache_handle *h;
  bool locked;
  bool fill;                    /* read: keep what comes from below */
  uint64_t off, end;
  unsigned char *buf;           /* read: the reply */
  unsigned in_flight;
  uint32_t error;
  char *msg;
  /* flush */
  uint64_t *runs;               /* pairs lo, hi */
  size_t nr_runs, next_run;
};

struct part {
  struct cop *o;
  uint64_t off;                 /* bytes, of the disk */
  uint32_t count;
  uint64_t blk;                 /* a write's fill: the block */
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
  struct fnext *next = o->next;

  if (o->locked)
    frange_release (&locks, &o->lk);
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
  free (o->runs);
  free (o);
  reclaim (next);
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

/* -- reads (and cache requests: reads whose data is kept, not sent) -- */

static void
on_read_part (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct part *p = opaque;
  struct cop *o = p->o;

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
        if (!lookup (b) && reserve ())
          insert_reserved (b, (unsigned char *) payload +
                           (b * (uint64_t) blksize - p->off), false);
  }
  free (payload);
  free (p);
  if (--o->in_flight == 0)
    cop_finish (o);
}

static void
read_send (struct cop *o, uint64_t lo, uint64_t hi)
{
  uint64_t s = lo * (uint64_t) blksize;
  uint64_t e = (hi - 1) * (uint64_t) blksize + block_len (hi - 1);
  struct part *p = malloc (sizeof *p);

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
read_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  uint64_t b, run_lo = 0;
  bool in_run = false;

  o->locked = o->fill;
  o->in_flight = 1;             /* this function */
  for (b = l->lo; b <= l->hi && !o->error; ++b) {
    struct cblock *c = b < l->hi ? lookup (b) : NULL;
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

      clip (b, o->off, o->end, &s, &e);
      if (o->buf &&
          slot_io (false, c, o->buf + (s - o->off),
                   s - b * (uint64_t) blksize, e - s) == -1)
        cop_set_error (o, HP_EIO, NULL, 0);
      touch (c);
    }
  }
  if (--o->in_flight == 0)
    cop_finish (o);
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
    frange_acquire (&locks, &o->lk);
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
  frange_acquire (&locks, &o->lk);
}

/* -- writes -- */

/* A block a write covers in part, read from below to be completed. */
static void
on_write_fill (void *opaque, const struct hp_header *reply, void *payload,
               uint32_t len)
{
  struct part *p = opaque;
  struct cop *o = p->o;

  if (!reply || reply->status) {
    reserved--;
    cop_from_reply (o, reply, payload, len);
  }
  else {
    uint64_t s, e, bs = p->blk * (uint64_t) blksize;

    clip (p->blk, o->off, o->end, &s, &e);
    memcpy ((unsigned char *) payload + (s - bs),
            (unsigned char *) o->r->data + (s - o->off), e - s);
    if (!insert_reserved (p->blk, payload, true))
      cop_set_error (o, HP_EIO, "cannot write the cache file", 28);
  }
  free (payload);
  free (p);
  if (--o->in_flight == 0)
    cop_finish (o);
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
      struct cblock *c = lookup (b);

      if (c && !c->dirty)
        drop (c);
    }
  }
  free (payload);
  if (--o->in_flight == 0)
    cop_finish (o);
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

static void
write_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  struct freq *r = o->r;
  const unsigned char *data = r->data;
  bool through = mode == MODE_WRITETHROUGH ||
    (mode == MODE_WRITEBACK && (r->flags & HP_FLAG_FUA));
  uint64_t b, around_s = 0, around_e = 0;

  o->locked = true;
  o->in_flight = 1;             /* this function */
  for (b = l->lo; b < l->hi && !o->error; ++b) {
    struct cblock *c = lookup (b);
    uint64_t s, e, bs = b * (uint64_t) blksize;
    bool whole;

    clip (b, o->off, o->end, &s, &e);
    whole = s == bs && e == bs + block_len (b);
    if (c) {
      if (slot_io (true, c, (void *) (data + (s - o->off)), s - bs, e - s)
          == -1) {
        cop_set_error (o, HP_EIO, NULL, 0);
        break;
      }
      if (!through && !c->dirty) {
        c->dirty = true;
        nr_dirty++;
      }
      touch (c);
      continue;
    }
    if (through) {
      if (whole && reserve ())
        insert_reserved (b, data + (s - o->off), false);
      continue;
    }
    if (whole && reserve ()) {
      if (insert_reserved (b, data + (s - o->off), true))
        continue;
    }
    else if (!whole && reserve ()) {
      struct part *p = malloc (sizeof *p);

      if (!p) {
        reserved--;
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
    /* The whole request below, with its own data. */
    void *d = r->data;

    r->data = NULL;
    o->in_flight++;
    fnext_request (o->next, HP_PWRITE, r->flags & HP_FLAG_FUA, o->off,
                   r->count, d, on_write_below, o);
  }
  else if (around_s < around_e && !o->error)
    write_around (o, around_s, around_e, 0);
  if (--o->in_flight == 0)
    cop_finish (o);
}

static void
cache_pwrite (void *handle, struct freq *r)
{
  struct cop *o = cop_new (handle, r, write_start);

  if (o)
    frange_acquire (&locks, &o->lk);
}

/* -- zero and trim: below first, then the cache -- */

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
      struct cblock *c = lookup (b);

      if (c && !c->dirty)
        drop (c);
    }
  }
  else
    for (b = o->lk.lo; b < o->lk.hi; ++b) {
      struct cblock *c = lookup (b);
      uint64_t s, e, bs = b * (uint64_t) blksize;

      if (!c)
        continue;
      clip (b, o->off, o->end, &s, &e);
      if (s == bs && e == bs + block_len (b))
        drop (c);               /* below has it all now */
      else if (zero) {
        static const unsigned char zeros[4096];
        uint64_t i;

        for (i = s; i < e; i += sizeof zeros)
          if (slot_io (true, c, (void *) zeros, i - bs,
                       e - i < sizeof zeros ? e - i : sizeof zeros) == -1) {
            bool was_dirty = c->dirty;

            drop (c);           /* wrong now: go below (zeros there) */
            if (was_dirty)
              cop_set_error (o, HP_EIO, NULL, 0);
            break;
          }
      }
      else if (!c->dirty)
        drop (c);               /* a trim: below decides what it reads */
    }
  free (payload);
  cop_finish (o);
}

static void
zero_start (struct frange_lock *l)
{
  struct cop *o = (struct cop *) l;
  struct freq *r = o->r;
  uint16_t flags = r->flags;

  o->locked = true;
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
    frange_acquire (&locks, &o->lk);
}

/* -- flush: every dirty block below, then a flush below -- */

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

static void flush_next_runs (struct cop *o);

static void
on_flush_below (void *opaque, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  struct cop *o = opaque;

  if (!reply || reply->status)
    cop_from_reply (o, reply, payload, len);
  free (payload);
  cop_finish (o);
}

static void
on_flush_run (void *opaque, uint32_t status, const char *msg)
{
  struct cop *o = opaque;

  if (status)
    cop_set_error (o, status, msg, msg ? (uint32_t) strlen (msg) : 0);
  o->in_flight--;
  flush_next_runs (o);
}

static void
flush_next_runs (struct cop *o)
{
  while (!o->error && o->next_run < o->nr_runs &&
         o->in_flight < FLUSH_WINDOW) {
    uint64_t *run = &o->runs[2 * o->next_run++];
    struct writeback *wb = writeback_new (o->next, run[0], run[1],
                                          on_flush_run, o);

    if (!wb) {
      cop_set_error (o, HP_ENOMEM, NULL, 0);
      break;
    }
    o->in_flight++;
    writeback_start (wb);
  }
  if (o->in_flight > 0)
    return;
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
  uint64_t *blks, i, n = 0;

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
  /* The dirty blocks now, sorted, in runs of consecutive blocks. */
  blks = malloc ((nr_dirty ? nr_dirty : 1) * sizeof *blks);
  o->runs = malloc ((nr_dirty ? nr_dirty : 1) * 2 * sizeof *o->runs);
  if (!blks || !o->runs) {
    free (blks);
    free (o->runs);
    free (o);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  for (i = 0; i < nr_buckets && n < nr_dirty; ++i) {
    struct cblock *c;

    for (c = buckets[i]; c; c = c->hnext)
      if (c->dirty)
        blks[n++] = c->blk;
  }
  qsort (blks, n, sizeof *blks, cmp_u64);
  for (i = 0; i < n; ++i) {
    if (o->nr_runs > 0 && o->runs[2 * o->nr_runs - 1] == blks[i] &&
        (blks[i] + 1 - o->runs[2 * o->nr_runs - 2]) * (uint64_t) blksize
        <= MAX_RUN)
      o->runs[2 * o->nr_runs - 1]++;
    else {
      o->runs[2 * o->nr_runs] = blks[i];
      o->runs[2 * o->nr_runs + 1] = blks[i] + 1;
      o->nr_runs++;
    }
  }
  free (blks);
  flush_next_runs (o);
}

/* -- extents: blocks dirty in the cache are data, whatever is below -- */

static uint64_t
first_dirty (uint64_t lo, uint64_t hi)
{
  uint64_t best = UINT64_MAX, i, b;

  if (nr_dirty == 0)
    return UINT64_MAX;
  if (hi - lo <= 2 * nr_cached) {
    for (b = lo; b < hi; ++b) {
      struct cblock *c = lookup (b);

      if (c && c->dirty)
        return b;
    }
    return UINT64_MAX;
  }
  for (i = 0; i < nr_buckets; ++i) {
    struct cblock *c;

    for (c = buckets[i]; c; c = c->hnext)
      if (c->dirty && c->blk >= lo && c->blk < hi && c->blk < best)
        best = c->blk;
  }
  return best;
}

static void
cache_extents (void *handle, struct freq *r)
{
  uint64_t lo = r->offset / (uint64_t) blksize;
  uint64_t hi = (r->offset + r->count + (uint64_t) blksize - 1) /
    (uint64_t) blksize;
  uint64_t d = first_dirty (lo, hi);
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
  for (e = lo + 1; e < hi; ++e) {
    struct cblock *c = lookup (e);

    if (!c || !c->dirty)
      break;
  }
  e = e * (uint64_t) blksize;
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
  .get_ready = cache_get_ready,
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
