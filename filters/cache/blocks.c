/* filters/cache/blocks.c: the cache filter's cache file and its block
 * table (nbdkit-cache-filter(1); the filter's callbacks are in
 * cache.c, what both share in cache.h).
 *
 * Owns the cache file (a temporary file, created at get_ready in
 * $TMPDIR or /var/tmp and unlinked at once) holding blocks of
 * cache-min-block-size bytes, each in a slot of the file, found through
 * a hash table from block number to slot, kept in least-recently-used
 * order, clean (as below) or dirty (newer than below); the eviction of
 * blocks past cache-max-size's high threshold; and the writebacks that
 * write dirty blocks below (at a flush, or to evict them).
 *
 * The table is touched on the loop's thread only.  The cache file's
 * I/O never runs there: it goes to worker threads (tmpfile_*_async).
 * A block with I/O in flight on its slot is pinned: if it is dropped
 * meanwhile it leaves the table at once, but its slot goes to no other
 * block before the I/O is back.  A block enters the table only once
 * its slot holds its bytes.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

/* Writebacks in flight at a time: of evicted blocks, and of a flush. */
#define RECLAIM_WINDOW 8
#define FLUSH_WINDOW 8

/* The parameters and the disk. */
static uint64_t blksize;
static uint64_t max_blocks, high_blocks, low_blocks;    /* 0: no limit */
static uint64_t disk_size;

static int fd = -1;

static struct cblock **buckets;
static uint64_t nr_buckets;
static uint64_t nr_cached, nr_dirty, reserved;
static struct cblock *newest, *oldest;
static uint64_t *free_slots;
static uint64_t nr_free, free_cap, next_slot;

struct frange_locks cache_locks;

void
cache_blocks_configure (uint64_t bs, uint64_t max, uint64_t high,
                        uint64_t low)
{
  blksize = bs;
  max_blocks = max;
  high_blocks = high;
  low_blocks = low;
}

void
cache_blocks_set_disk_size (uint64_t size)
{
  disk_size = size;
}

/* Synchronous: get_ready runs before the server serves. */
int
cache_blocks_init (void)
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

void
cache_blocks_free (void)
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
  tmpfile_close (fd);
}

/* ---- the table ---- */

static uint64_t
hash (uint64_t blk)
{
  return (blk * UINT64_C (0x9e3779b97f4a7c15)) >> 17;
}

struct cblock *
cblock_lookup (uint64_t blk)
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

void
cblock_touch (struct cblock *c)
{
  if (newest != c) {
    lru_unlink (c);
    lru_push (c);
  }
}

void
cblock_mark_dirty (struct cblock *c)
{
  if (!c->dirty) {
    c->dirty = true;
    nr_dirty++;
  }
}

uint64_t
block_len (uint64_t blk)
{
  uint64_t s = blk * blksize;

  return disk_size - s < blksize ? disk_size - s : blksize;
}

/* A slot no block uses any more: the next insert takes it. */
static void
release_slot (uint64_t slot)
{
  if (nr_free == free_cap) {
    uint64_t cap = free_cap ? free_cap * 2 : 64;
    uint64_t *fs = realloc (free_slots, cap * sizeof *fs);

    if (!fs)
      return;                   /* the slot is not reused: no harm */
    free_slots = fs;
    free_cap = cap;
  }
  free_slots[nr_free++] = slot;
}

void
cblock_drop (struct cblock *c)
{
  struct cblock **p;

  if (c->dropped)
    return;
  p = &buckets[hash (c->blk) & (nr_buckets - 1)];
  while (*p != c)
    p = &(*p)->hnext;
  *p = c->hnext;
  lru_unlink (c);
  if (c->dirty)
    nr_dirty--;
  nr_cached--;
  c->dropped = true;
  if (c->pins == 0) {
    release_slot (c->slot);
    free (c);
  }
}

/* ---- the cache file's I/O, off the loop ---- */

enum slot_op_kind { SLOT_READ, SLOT_WRITE, SLOT_ZERO };

struct slot_op {
  struct cblock *c;
  enum slot_op_kind kind;
  tmpfile_done_fn done;
  void *opaque;
};

static void
unpin (struct cblock *c)
{
  if (--c->pins == 0 && c->dropped) {
    release_slot (c->slot);
    free (c);
  }
}

static void
io_error (enum slot_op_kind kind, int err)
{
  errno = err;
  nbdkit_error ("cache filter: %s the cache file: %m",
                kind == SLOT_READ ? "reading" : "writing");
}

static void
on_slot_op (void *opaque, int err)
{
  struct slot_op *op = opaque;
  struct cblock *c = op->c;

  if (err)
    io_error (op->kind, err);
  op->done (op->opaque, err);
  unpin (c);                    /* after done: it may drop c */
  free (op);
}

static void
slot_op (enum slot_op_kind kind, struct cblock *c, void *buf, uint64_t s,
         uint64_t n, tmpfile_done_fn done, void *opaque)
{
  struct slot_op *op = malloc (sizeof *op);
  uint64_t off = c->slot * blksize + s;

  c->pins++;
  if (!op) {
    io_error (kind, ENOMEM);
    done (opaque, ENOMEM);
    unpin (c);
    return;
  }
  op->c = c;
  op->kind = kind;
  op->done = done;
  op->opaque = opaque;
  if (kind == SLOT_ZERO)
    tmpfile_zero_async (fd, n, off, on_slot_op, op);
  else
    tmpfile_io_async (fd, kind == SLOT_WRITE, buf, n, off, on_slot_op, op);
}

void
cblock_io (bool write, struct cblock *c, void *buf, uint64_t s, uint64_t n,
           tmpfile_done_fn done, void *opaque)
{
  slot_op (write ? SLOT_WRITE : SLOT_READ, c, buf, s, n, done, opaque);
}

void
cblock_zero (struct cblock *c, uint64_t s, uint64_t n, tmpfile_done_fn done,
             void *opaque)
{
  slot_op (SLOT_ZERO, c, NULL, s, n, done, opaque);
}

/* ---- slots and eviction ---- */

/* Room for one more block (reserved: the caller inserts later): drop
 * the least recently used clean block if the cache is full.
 */
bool
cache_reserve (void)
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
    cblock_drop (c);
  }
  reserved++;
  return true;
}

void
cache_unreserve (void)
{
  reserved--;
}

struct inserting {
  struct cblock *c;
  tmpfile_done_fn done;
  void *opaque;
};

/* The slot is written (or not): the block enters the table. */
static void
on_inserted (void *opaque, int err)
{
  struct inserting *in = opaque;
  struct cblock *c = in->c, *old;
  uint64_t h;

  reserved--;
  if (err)
    c->dropped = true;          /* never in the table: unpin frees it */
  else {
    old = cblock_lookup (c->blk);   /* none: the caller holds the lock */
    if (old)
      cblock_drop (old);
    if (nr_cached >= nr_buckets)
      grow_table ();
    h = hash (c->blk) & (nr_buckets - 1);
    c->hnext = buckets[h];
    buckets[h] = c;
    lru_push (c);
    nr_cached++;
    if (c->dirty)
      nr_dirty++;
  }
  in->done (in->opaque, err);
  free (in);
}

void
cblock_insert (uint64_t blk, const void *data, bool dirty,
               tmpfile_done_fn done, void *opaque)
{
  struct cblock *c = calloc (1, sizeof *c);
  struct inserting *in = malloc (sizeof *in);

  if (!c || !in) {
    free (c);
    free (in);
    reserved--;
    done (opaque, ENOMEM);
    return;
  }
  c->blk = blk;
  c->slot = nr_free ? free_slots[--nr_free] : next_slot++;
  c->dirty = dirty;
  in->c = c;
  in->done = done;
  in->opaque = opaque;
  slot_op (SLOT_WRITE, c, (void *) data, 0, block_len (blk), on_inserted,
           in);
}

static unsigned reclaim_in_flight;
static bool reclaiming;

static void
on_reclaimed (void *opaque, uint32_t status, const char *msg)
{
  struct cache_handle *h = opaque;

  reclaim_in_flight--;
  if (status == HP_ESHUTDOWN)
    return;             /* its connection closed: a later request goes on */
  if (status)
    nbdkit_error ("cache filter: writing back an evicted block failed "
                  "(%s): it stays in the cache", msg ? msg : "no message");
  else
    cache_reclaim (h);
}

void
cache_reclaim (struct cache_handle *h)
{
  static bool running;           /* no reclaim inside a reclaim */
  struct cblock *c, *newer;

  if (max_blocks == 0 || running || !h->next)
    return;
  if (nr_cached > high_blocks)
    reclaiming = true;
  if (!reclaiming)
    return;
  running = true;
  for (c = oldest; c && nr_cached > low_blocks; c = newer) {
    newer = c->newer;
    if (!c->dirty)
      cblock_drop (c);
    else if (reclaim_in_flight < RECLAIM_WINDOW &&
             !frange_busy (&cache_locks, c->blk, c->blk + 1)) {
      struct writeback *wb = cache_writeback_new (h, c->blk, c->blk + 1,
                                                  on_reclaimed, h);

      if (!wb)
        break;
      reclaim_in_flight++;
      cache_writeback_start (wb);
    }
  }
  running = false;
  if (nr_cached <= low_blocks)
    reclaiming = false;
}

/* ---- writing dirty blocks below ---- */

/* Locks blocks [lo, hi), reads the dirty ones from the cache file and
 * writes them below (runs of them), marks them clean, unlocks, then
 * calls done.
 */
struct writeback {
  struct frange_lock lk;        /* first */
  struct cache_handle *h;       /* held */
  void (*done) (void *, uint32_t, const char *);
  void *opaque;
  unsigned in_flight;
  uint32_t error;
  char *msg;
};

struct wb_run {
  struct writeback *wb;
  uint64_t lo, hi;              /* blocks */
  unsigned char *buf;
  uint64_t n;
  unsigned reading;             /* slot reads not yet back */
  bool failed;
};

static void
writeback_finish (struct writeback *wb)
{
  frange_release (&cache_locks, &wb->lk);
  wb->done (wb->opaque, wb->error, wb->msg);
  cache_handle_release (wb->h);
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
      struct cblock *c = cblock_lookup (b);

      if (c && c->dirty) {
        c->dirty = false;
        nr_dirty--;
      }
    }
  payload_free (payload);
  free (run);
  if (--wb->in_flight == 0)
    writeback_finish (wb);
}

/* A run's blocks are read from the cache file: write them below. */
static void
wb_run_read (struct wb_run *run)
{
  struct writeback *wb = run->wb;

  if (--run->reading > 0)
    return;
  if (run->failed || !wb->h->next) {
    if (!wb->error)
      wb->error = run->failed ? HP_EIO : HP_ESHUTDOWN;
    free (run->buf);
    free (run);
    if (--wb->in_flight == 0)
      writeback_finish (wb);
    return;
  }
  fnext_request (wb->h->next, HP_PWRITE, 0, run->lo * blksize,
                 (uint32_t) run->n, run->buf, on_wb_run, run);
}

static void
on_wb_slot_read (void *opaque, int err)
{
  struct wb_run *run = opaque;

  if (err)
    run->failed = true;
  wb_run_read (run);
}

static void
wb_send_run (struct writeback *wb, uint64_t lo, uint64_t hi)
{
  uint64_t start = lo * blksize;
  uint64_t n = (hi - 1) * blksize + block_len (hi - 1) - start;
  struct wb_run *run = calloc (1, sizeof *run);
  uint64_t b;

  if (!run || !(run->buf = malloc (n))) {
    free (run);
    if (!wb->error)
      wb->error = HP_ENOMEM;
    return;
  }
  run->wb = wb;
  run->lo = lo;
  run->hi = hi;
  run->n = n;
  run->reading = 1;             /* this function */
  wb->in_flight++;
  for (b = lo; b < hi; ++b) {
    struct cblock *c = cblock_lookup (b);   /* dirty, and locked */

    if (!c) {
      run->failed = true;
      break;
    }
    run->reading++;
    cblock_io (false, c, run->buf + (b - lo) * blksize, 0, block_len (b),
               on_wb_slot_read, run);
  }
  wb_run_read (run);
}

static void
wb_locked (struct frange_lock *l)
{
  struct writeback *wb = (struct writeback *) l;
  uint64_t b, run_lo = 0;
  bool in_run = false;

  wb->in_flight = 1;            /* this function */
  for (b = l->lo; b <= l->hi; ++b) {
    struct cblock *c = b < l->hi ? cblock_lookup (b) : NULL;
    bool d = c && c->dirty;

    if (in_run && (!d || (b - run_lo) * blksize >= MAX_RUN)) {
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

struct writeback *
cache_writeback_new (struct cache_handle *h, uint64_t lo, uint64_t hi,
                     void (*done) (void *, uint32_t, const char *),
                     void *opaque)
{
  struct writeback *wb = calloc (1, sizeof *wb);

  if (!wb)
    return NULL;
  wb->lk.lo = lo;
  wb->lk.hi = hi;
  wb->lk.start = wb_locked;
  wb->h = h;
  cache_handle_hold (h);
  wb->done = done;
  wb->opaque = opaque;
  return wb;
}

void
cache_writeback_start (struct writeback *wb)
{
  frange_acquire (&cache_locks, &wb->lk);
}

/* ---- the dirty blocks ---- */

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* The dirty blocks now, sorted, in runs of consecutive blocks of at
 * most MAX_RUN bytes: *nr_runs pairs lo, hi in *runs (malloc'd).  -1
 * when out of memory.
 */
static int
dirty_runs (uint64_t **runs_ret, size_t *nr_runs_ret)
{
  uint64_t *blks, *runs, i, n = 0;
  size_t nr_runs = 0;

  blks = malloc ((nr_dirty ? nr_dirty : 1) * sizeof *blks);
  runs = malloc ((nr_dirty ? nr_dirty : 1) * 2 * sizeof *runs);
  if (!blks || !runs) {
    free (blks);
    free (runs);
    return -1;
  }
  for (i = 0; i < nr_buckets && n < nr_dirty; ++i) {
    struct cblock *c;

    for (c = buckets[i]; c; c = c->hnext)
      if (c->dirty)
        blks[n++] = c->blk;
  }
  qsort (blks, n, sizeof *blks, cmp_u64);
  for (i = 0; i < n; ++i) {
    if (nr_runs > 0 && runs[2 * nr_runs - 1] == blks[i] &&
        (blks[i] + 1 - runs[2 * nr_runs - 2]) * blksize <= MAX_RUN)
      runs[2 * nr_runs - 1]++;
    else {
      runs[2 * nr_runs] = blks[i];
      runs[2 * nr_runs + 1] = blks[i] + 1;
      nr_runs++;
    }
  }
  free (blks);
  *runs_ret = runs;
  *nr_runs_ret = nr_runs;
  return 0;
}

/* Writing back every block dirty at its start, FLUSH_WINDOW runs at a
 * time.
 */
struct wb_all {
  struct cache_handle *h;
  void (*done) (void *, uint32_t, const char *);
  void *opaque;
  uint64_t *runs;               /* pairs lo, hi */
  size_t nr_runs, next_run;
  unsigned in_flight;
  uint32_t error;
  char *msg;
};

static void wb_all_next (struct wb_all *a);

static void
on_wb_all_run (void *opaque, uint32_t status, const char *msg)
{
  struct wb_all *a = opaque;

  if (status && !a->error) {
    a->error = status;
    a->msg = msg ? strdup (msg) : NULL;
  }
  a->in_flight--;
  wb_all_next (a);
}

static void
wb_all_next (struct wb_all *a)
{
  a->in_flight++;               /* this function: a writeback that ends
                                 * at once must not end a here */
  while (!a->error && a->next_run < a->nr_runs &&
         a->in_flight < FLUSH_WINDOW) {
    uint64_t *run = &a->runs[2 * a->next_run++];
    struct writeback *wb = cache_writeback_new (a->h, run[0], run[1],
                                                on_wb_all_run, a);

    if (!wb) {
      a->error = HP_ENOMEM;
      break;
    }
    a->in_flight++;
    cache_writeback_start (wb);
  }
  if (--a->in_flight > 0)
    return;
  a->done (a->opaque, a->error, a->msg);
  free (a->runs);
  free (a->msg);
  free (a);
}

int
cache_writeback_all (struct cache_handle *h,
                     void (*done) (void *, uint32_t, const char *),
                     void *opaque)
{
  struct wb_all *a = calloc (1, sizeof *a);

  if (!a || dirty_runs (&a->runs, &a->nr_runs) == -1) {
    free (a);
    return -1;
  }
  a->h = h;
  a->done = done;
  a->opaque = opaque;
  wb_all_next (a);
  return 0;
}

uint64_t
cache_first_dirty (uint64_t lo, uint64_t hi)
{
  uint64_t best = UINT64_MAX, i, b;

  if (nr_dirty == 0)
    return UINT64_MAX;
  if (hi - lo <= 2 * nr_cached) {
    for (b = lo; b < hi; ++b) {
      struct cblock *c = cblock_lookup (b);

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

uint64_t
cache_dirty_end (uint64_t lo, uint64_t hi)
{
  uint64_t e;

  for (e = lo + 1; e < hi; ++e) {
    struct cblock *c = cblock_lookup (e);

    if (!c || !c->dirty)
      break;
  }
  return e;
}
