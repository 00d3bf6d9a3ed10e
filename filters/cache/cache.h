/* filters/cache/cache.h: what the cache filter's two files share, private to
 * the filter (nbdkit-cache-filter(1)).  cache.c is the filter itself:
 * its parameters, connections and request paths.  blocks.c owns
 * the cache file and its block table: slots, least-recently-used
 * order, eviction, and writing dirty blocks below.
 *
 * Everything here runs on the loop's thread; only the cache file's I/O
 * runs on worker threads, behind cblock_io, cblock_zero and
 * cblock_insert.  The cache file is made at get_ready
 * (cache_blocks_init), before the server serves.
 */

#ifndef NBDKIT_CACHE_H
#define NBDKIT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../filter.h"

/* The longest run of blocks read or written below in one request. */
#define MAX_RUN (4u * 1024 * 1024)

/* One connection (cache.c).  A writeback started to evict blocks holds
 * the handle (cache_handle_hold) while it reads the cache file: the
 * connection may close meanwhile, and then next is NULL and must not
 * be used.
 */
struct cache_handle {
  struct fnext *next;           /* the layer below; NULL once closed */
  bool below_flush;             /* the layer below can flush */
  unsigned refs;                /* the connection's, and writebacks' */
};
static inline void
cache_handle_hold (struct cache_handle *h)
{
  h->refs++;
}

static inline void
cache_handle_release (struct cache_handle *h)
{
  if (--h->refs == 0)
    free (h);
}

/* A block in the cache.  pins counts the cache-file I/O in flight on
 * its slot: a pinned block that is dropped leaves the table at once,
 * but its slot goes to no other block before the I/O is back.
 */
struct cblock {
  uint64_t blk;
  uint64_t slot;
  bool dirty;
  bool dropped;                     /* out of the table, still pinned */
  unsigned pins;
  struct cblock *hnext;             /* hash chain */
  struct cblock *newer, *older;     /* LRU list */
};

/* ---- blocks.c ---- */

/* The range lock of every request that changes the cache or the disk,
 * and of every read that fills the cache, in block numbers.
 */
extern struct frange_locks cache_locks;

/* get_ready (the file, created before serving; -1 after nbdkit_error),
 * unload, the parameters (after config_complete; max_blocks 0: no
 * limit) and the disk's size (at the first open).
 */
extern int cache_blocks_init (void);
extern void cache_blocks_free (void);
extern void cache_blocks_configure (uint64_t blksize, uint64_t max_blocks,
                                    uint64_t high_blocks,
                                    uint64_t low_blocks);
extern void cache_blocks_set_disk_size (uint64_t size);

/* Bytes in block blk (the last block of the disk may be short). */
extern uint64_t block_len (uint64_t blk);
/* The block in the table, or NULL. */
extern struct cblock *cblock_lookup (uint64_t blk);
/* Now the most recently used. */
extern void cblock_touch (struct cblock *c);
/* Newer than below from now on. */
extern void cblock_mark_dirty (struct cblock *c);
/* Out of the table (c is freed unless pinned: do not use it after,
 * except in the done of I/O on it).  Dropping a dropped block does
 * nothing.
 */
extern void cblock_drop (struct cblock *c);

/* Room for one more block (cache_reserve: false when the cache is
 * full of dirty blocks), taken by cblock_insert or given back by
 * cache_unreserve.
 */
extern bool cache_reserve (void);
extern void cache_unreserve (void);
/* Put block blk in the cache, in the room reserved: data
 * (block_len (blk) bytes, kept untouched until done) is written into a
 * slot off the loop, and only then does the block enter the table,
 * clean or dirty.  done (opaque, err) with 0 or an errno.  The caller
 * holds the block's lock, so no one else inserts it meanwhile.
 */
extern void cblock_insert (uint64_t blk, const void *data, bool dirty,
                           tmpfile_done_fn done, void *opaque);
/* Bytes [s, s + n) of c's slot (s from the block's start) read into or
 * written from buf, or made zeros, off the loop; c is pinned until
 * done (opaque, err) has run.  A failure is logged.
 */
extern void cblock_io (bool write, struct cblock *c, void *buf, uint64_t s,
                       uint64_t n, tmpfile_done_fn done, void *opaque);
extern void cblock_zero (struct cblock *c, uint64_t s, uint64_t n,
                         tmpfile_done_fn done, void *opaque);

/* The first dirty block in [lo, hi), or UINT64_MAX; the first block
 * after lo (dirty) that is not dirty, or hi.
 */
extern uint64_t cache_first_dirty (uint64_t lo, uint64_t hi);
extern uint64_t cache_dirty_end (uint64_t lo, uint64_t hi);

/* Past the high threshold: drop clean blocks, write back dirty ones
 * (then drop them), oldest first, until the low threshold; writes go
 * below through h.
 */
extern void cache_reclaim (struct cache_handle *h);

/* A writeback: locks blocks [lo, hi), writes the dirty ones below
 * (runs of them, through h), marks them clean, unlocks, then calls
 * done (opaque, status, message).
 */
struct writeback;
extern struct writeback *cache_writeback_new (struct cache_handle *h,
                                              uint64_t lo, uint64_t hi,
                                              void (*done) (void *,
                                                            uint32_t,
                                                            const char *),
                                              void *opaque);
extern void cache_writeback_start (struct writeback *wb);
/* A flush's: every block dirty now written below, then done (opaque,
 * status, message) once all are (or one failed).  -1 when out of
 * memory, and then done is not called.
 */
extern int cache_writeback_all (struct cache_handle *h,
                                void (*done) (void *, uint32_t,
                                              const char *),
                                void *opaque);

#endif /* NBDKIT_CACHE_H */
