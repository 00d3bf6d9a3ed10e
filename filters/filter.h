/* Filters: what a filter is, and what it may call.
 *
 * This header is the whole API a filter sees: it stands alone (a
 * filter includes nothing of nbdkit/), and the front end implements
 * it.  A filter is a struct filter of callbacks, compiled into the
 * front end and listed in nbdkit/filter-table.c.  `--filter=NAME` stacks filters in
 * command-line order: the first is nearest the client, the backend
 * process is the last layer, below them all, behind the same
 * interface.  Filters run inside the event loop, so no callback
 * may block or spend more than about a millisecond: wait with libev
 * timers (the global `loop`), do heavy work with worker_submit and
 * file I/O with tmpfile_*_async, and finish asynchronous work by
 * completing the request (or open) later.
 *
 * The whole contract is in docs/nbdkit-filter.pod.  In short:
 *
 *  - A request (struct freq) arrives at a filter's per-type callback
 *    (pread, pwrite, ...; NULL = passed down unchanged).  The filter
 *    either passes it down with freq_next (after changing offset,
 *    count or flags if it likes), or completes it itself exactly once
 *    with freq_reply / freq_reply_error / freq_reply_from, possibly
 *    after sub-requests to the layer below (fnext_request) whose
 *    replies come to its own callbacks.
 *  - Completions never run inside the call that started the work: a
 *    callback may complete a request and return without surprises.
 *  - open runs once the layers below are open (or kept closed by its
 *    opens_below), with their capabilities in o->caps; the filter
 *    adjusts them to what it offers, may read from below (o->next),
 *    and ends with fopen_done.
 *  - Payloads (a write's r->data, a reply's bytes) are released with
 *    payload_free, never free: the bottom layer may have put them in
 *    shared memory.  Memory a filter allocates with malloc may be
 *    given as a payload (payload_free releases it too).
 *  - NBD_OPT_LIST reaches list_exports on its way down (see flist).
 *  - A filter may close and open again the layers below it
 *    (fnext_reopen), as nbdkit's retry filter does.
 */

#ifndef NBDKIT_FILTER_H
#define NBDKIT_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "helper-protocol.h"    /* HP_PREAD..., HP_FLAG_*, HP_E* */

/* ---- what the server offers a filter ---- */

/* Messages to the log: nbdkit_error for errors (a config callback
 * returns -1 after it), nbdkit_debug shown with -v.
 */
extern void nbdkit_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void nbdkit_debug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* The event loop: for timers and watchers (never block in it). */
extern struct ev_loop *loop;
/* The clients connected now. */
extern unsigned nr_connections;
/* Begin an orderly shutdown with the given exit status. */
extern void server_quit (int status);
/* -s: the client is on the server's stdin and stdout. */
extern bool server_is_single (void);
/* -r: the server is read-only. */
extern bool server_is_readonly (void);
/* The server is stopping (see the stopping callback). */
extern bool server_quitting (void);
/* The backend's thread model, in nbdkit's numbering (0 serialize
 * connections ... 3 parallel).
 */
extern int server_thread_model (void);
/* -D FILTER.FLAG=N: N for this filter's flag, or def. */
extern int filter_debug_flag (const char *filter, const char *flag,
                              int def);

/* Release a payload (any: a slot of shared memory or malloc'd). */
extern void payload_free (void *p);

/* What an export can do: the layer below's, as o->caps at open. */
struct export_caps {
  uint64_t size;
  bool can_write, can_flush, can_trim, can_zero, can_fast_zero;
  bool can_extents, can_multi_conn, is_rotational;
  bool can_fua, can_cache;
  /* can_fua, done by a flush after the write (nbdkit's
   * NBDKIT_FUA_EMULATE): a filter that splits a request may send the
   * pieces without FUA and flush once.  Meaningless without can_fua.
   */
  bool fua_emulated;
  uint32_t block_min, block_pref, block_max;   /* 0 = not given */
  /* The block sizes are advice to clients only: the front end passes
   * requests that break them down the chain (nbdkit's behaviour, and
   * blocksize-policy's error policy "allow") instead of failing them
   * with EINVAL.
   */
  bool block_advisory;
  char *name;                   /* canonical name, NULL = as asked */
  char *description;
};

/* A reply from the layer below.  reply is its header, or NULL if it
 * could not answer (then the request failed: EIO).  payload (len
 * bytes, NUL-terminated, may be NULL) now belongs to the callee, who
 * releases it with payload_free.
 */
typedef void (*backend_cb) (void *opaque, const struct hp_header *reply,
                            void *payload, uint32_t len);

/* ---- the filter ---- */

struct freq;
struct fopen;
struct fnext;
struct flist;

typedef void (*freq_fn) (void *handle, struct freq *r);

struct filter {
  const char *name;             /* --filter=NAME */
  const char *description;      /* one line */
  const char *config_help;      /* "key=VALUE  what it is" lines */
  /* The parameters this filter takes.  A name ending in '*' matches
   * every key with that prefix.  NULL-terminated; NULL = none.
   */
  const char *const *keys;

  /* Server life cycle: config once per parameter of ours (-1 after
   * nbdkit_error: the server exits 1), config_complete after all
   * parameters, get_ready once the backend runs (before listening),
   * unload at exit.
   */
  int (*config) (const char *key, const char *value);
  int (*config_complete) (void);
  int (*get_ready) (void);
  void (*unload) (void);
  /* The server begins to stop (a signal, server_quit): requests in
   * flight may still finish, so a filter that waits ends its waits.
   */
  void (*stopping) (void);

  /* Connections: accept when a client connects (false: refuse it; say
   * why with nbdkit_error), closed when a connection accepted by all
   * filters ends.
   */
  bool (*accept) (int fd, const char *peer);
  void (*closed) (void);

  /* Exports.  readonly_below: the layers below are opened read-only
   * (cow makes a writable view of a read-only backend).  open: see
   * above; NULL = no per-connection state.  close runs once no
   * request of the connection is in flight in any layer.
   */
  bool readonly_below;
  /* The export name the layers below are opened with (nbdkit's filters
   * give next_open a name of their choice): called at each open
   * (not a reopen), before any layer opens, from the top down, with
   * the name asked of this filter.  Returns the name for below -- the
   * same, or a string of the filter's that lives until unload (the
   * chain copies it) -- or NULL after nbdkit_error to refuse the
   * export (the client gets NBD_REP_ERR_UNKNOWN).  NULL member = the
   * same name.
   */
  const char *(*export_below) (const char *export);

  /* NULL, or whether the layers below are to be opened for a
   * connection to this export (tls: the client is on TLS).  false:
   * they are not opened at all, the filter's open sees o->caps all
   * zero, and the filter answers every request itself (one sent below
   * fails with EIO).  tls-fallback keeps plaintext clients from ever
   * reaching the backend this way.
   */
  bool (*opens_below) (const char *export, bool tls);
  void (*open) (struct fopen *o);
  void (*close) (void *handle);

  /* Requests, one entry per type (NULL = passed down). */
  freq_fn pread, pwrite, flush, trim, zero, cache, extents;

  /* NBD_OPT_LIST (NULL = the list of the layers below, unchanged). */
  void (*list_exports) (struct flist *l);
};

/* A request at one layer.  Filters read and may change these fields
 * before freq_next; the rest of the struct is the chain's.
 */
struct freq {
  uint16_t type;                /* HP_PREAD, HP_PWRITE, ... */
  uint16_t flags;               /* HP_FLAG_* */
  uint64_t offset;
  uint32_t count;
  void *data;                   /* a write's payload (count bytes) */
  const char *peer;             /* the client, for logs */
  uint64_t id;                  /* unique per server, for logs */
  struct freq_private *priv;
};

/* Pass r to the layer below. */
extern void freq_next (struct freq *r);
/* Complete r: success (data, len: a read's bytes or extents payload,
 * malloc'd, taken; HP_FLAG_ZEROS in rflags for a read answered as
 * zeros without data), or an error with an optional message.
 */
extern void freq_reply (struct freq *r, void *data, uint32_t len,
                        uint16_t rflags);
extern void freq_reply_error (struct freq *r, uint32_t status,
                              const char *msg);
/* Complete r with a reply received from below (as given to a
 * backend_cb: reply NULL = EIO; payload taken).
 */
extern void freq_reply_from (struct freq *r, const struct hp_header *reply,
                             void *payload, uint32_t len);
/* The link below the filter handling r. */
extern struct fnext *freq_below (struct freq *r);

/* A request to the layer below: type, flags, offset, count, data (a
 * write's payload, taken).  cb gets the reply: reply NULL or
 * reply->status != 0 is an error (payload then a message or NULL); a
 * PREAD without HP_FLAG_ZEROS in flags always answers with count bytes.
 */
extern void fnext_request (struct fnext *next, uint16_t type, uint16_t flags,
                           uint64_t offset, uint32_t count, void *data,
                           backend_cb cb, void *opaque);
/* The peer and export the connection is for. */
extern const char *fnext_peer (const struct fnext *next);
/* The client has let the export go (it disconnected, or only looked
 * with NBD_OPT_INFO): requests still in flight complete, but a filter
 * doing work of its own in the background (scan) should start no more.
 */
extern bool fnext_closed (const struct fnext *next);

/* Reopen the layers below next (nbdkit's next->reopen, what the retry
 * filter does before each retry).  From a filter whose open is done,
 * for this connection only (other connections are not affected):
 *
 *  - requests entering those layers from above from now on (the
 *    filter's own, and those passed down through it) are held;
 *  - the requests already in them are waited for, not failed;
 *  - then the layers are closed (their close callbacks, from the top
 *    down; the backend's CLOSE) and opened again from the bottom up,
 *    the first of them read-only if readonly (the layers below a
 *    readonly_below filter are read-only anyway);
 *  - done (opaque, caps, 0, NULL) runs with the new capabilities of
 *    the layer just below, as this filter's open saw them in o->caps
 *    (a struct of the reopen's own, valid during the call: copy what
 *    is needed); the export the client sees does not change.  Or done
 *    (opaque, NULL, status, msg) if an open failed: the layers below
 *    are then closed, and every request sent to them fails with
 *    HP_EIO at once until a later fnext_reopen succeeds.
 *  - then the held requests go on, to the new layers (or fail).
 *
 * done runs later, never inside the call (except with HP_ENOMEM, when
 * memory is short).  Reopens of one connection run one at a time, in
 * the order asked.
 */
typedef void (*freopen_fn) (void *opaque, struct export_caps *caps,
                            uint32_t status, const char *msg);
extern void fnext_reopen (struct fnext *next, bool readonly,
                          freopen_fn done, void *opaque);

/* Opening. */
struct fopen {
  struct export_caps *caps;     /* of the layer below: change to ours */
  bool readonly;                /* this layer is asked to be read-only */
  const char *export;
  const char *peer;
  bool tls;                     /* the client is on TLS */
  uint64_t connection;          /* 1, 2, ... in the order accepted */
  struct fnext *next;           /* for reads at open, and to keep */
  struct fopen_private *priv;
};

/* handle (any value, given to every callback) on success; on failure
 * status (HP_E*) and a message, and the open fails.
 */
extern void fopen_done (struct fopen *o, void *handle);
extern void fopen_fail (struct fopen *o, uint32_t status, const char *msg);

/* Listing the exports (NBD_OPT_LIST), nbdkit's list_exports: a
 * filter's list_exports either asks below with flist_next -- done runs
 * later with exports holding the list of the layers below, or status
 * an error (HP_E*) and msg -- or makes the list itself; it may change
 * the list with flist_add and flist_clear, and ends with flist_done
 * (the list as it is) or flist_fail.
 */
struct fexport {
  char *name;
  char *description;            /* NULL = none */
};
struct flist {
  bool readonly;                /* the server is read-only (-r) */
  bool tls;                     /* the client is on TLS */
  const char *peer;
  uint64_t connection;          /* 1, 2, ... in the order accepted */
  uint64_t id;                  /* 1, 2, ... each listing, for logs */
  struct fexport *exports;
  size_t nr_exports;
  struct flist_private *priv;
};
typedef void (*flist_fn) (struct flist *l, uint32_t status, const char *msg);
extern void flist_next (struct flist *l, flist_fn done);
extern int flist_add (struct flist *l, const char *name, const char *desc);
extern void flist_clear (struct flist *l);
extern void flist_done (struct flist *l);
extern void flist_fail (struct flist *l, uint32_t status, const char *msg);
/* The canonical name of the backend's default export (what "" opens),
 * asked of the backend process (filters between are not asked): done
 * runs later with name (valid during the call), or name NULL and an
 * error (status HP_E*, msg).
 */
typedef void (*flist_default_fn) (struct flist *l, const char *name,
                                  uint32_t status, const char *msg);
extern void flist_default_export (struct flist *l, flist_default_fn done);

/* CPU-heavy work off the loop: work (arg) runs on a worker thread,
 * then done (arg) on the loop.  work must not touch front-end state.
 */
extern void worker_submit (void (*work) (void *), void (*done) (void *),
                           void *arg);

/* nbdkit/filter-params.c: parameter parsing; -1 after nbdkit_error naming
 * key=value and what would be valid.
 */
extern int fparse_size (const char *key, const char *value, int64_t *r);
extern int fparse_uint (const char *key, const char *value, unsigned max,
                        unsigned *r);
extern int fparse_bool (const char *key, const char *value, bool *r);
extern int fparse_delay (const char *key, const char *value, double *r);
extern int fparse_probability (const char *key, const char *value,
                               double *r);
extern int fparse_error (const char *key, const char *value, uint32_t *r);

/* nbdkit/filter-tmpfile.c: a temporary file in $TMPDIR or /var/tmp,
 * already unlinked (-1 after nbdkit_error naming filter and what).
 * Synchronous: call it at get_ready, before the server serves.
 */
extern int tmpfile_create (const char *filter, const char *what);

/* I/O on such a file, never on the loop: the system calls run on a
 * worker thread (worker_submit), then done (opaque, err) runs on the
 * loop with 0 or an errno.  tmpfile_io_async reads or writes the whole
 * range of n bytes at off (reads past the end give zeros); buf must
 * stay allocated, and untouched by anyone else, until done.
 * tmpfile_zero_async makes the range read as zeros (a hole punched, or
 * zeros written); tmpfile_truncate_async sets the file's size.  done
 * runs later, not inside the call, except when memory is short (then
 * perhaps with ENOMEM): callers must allow for both.  Jobs run several
 * at once, in any order: a caller that needs an order waits for one's
 * done before starting the next.
 */
typedef void (*tmpfile_done_fn) (void *opaque, int err);
extern void tmpfile_io_async (int fd, bool write, void *buf, uint64_t n,
                              uint64_t off, tmpfile_done_fn done,
                              void *opaque);
extern void tmpfile_zero_async (int fd, uint64_t n, uint64_t off,
                                tmpfile_done_fn done, void *opaque);
extern void tmpfile_truncate_async (int fd, uint64_t size,
                                    tmpfile_done_fn done, void *opaque);
/* At unload: close fd, unless a job may still use it (the exit closes
 * it then).
 */
extern void tmpfile_close (int fd);

/* nbdkit/filter-rangelock.c: range locks.  Embed a struct frange_lock
 * in a request, set lo, hi (in any unit, [lo, hi)) and start, and call
 * frange_acquire: start runs once no lock held or waited for before it
 * overlaps (at once if none does).  frange_release lets the next ones
 * start.  frange_busy: does any lock held or waiting overlap [lo, hi)?
 */
struct frange_lock {
  uint64_t lo, hi;
  void (*start) (struct frange_lock *l);
  struct frange_lock *next, *start_next;        /* private */
};
struct frange_locks {
  struct frange_lock *held, *waiting;           /* private */
};
extern void frange_acquire (struct frange_locks *s, struct frange_lock *l);
extern void frange_release (struct frange_locks *s, struct frange_lock *l);
extern bool frange_busy (const struct frange_locks *s, uint64_t lo,
                         uint64_t hi);

#endif /* NBDKIT_FILTER_H */
