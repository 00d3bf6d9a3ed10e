/* libnbdkit-backend: declarations shared between the library's files
 * (not installed).
 *
 *   backend-main.c     the process: channel I/O (a buffered reader,
 *                      replies coalesced by one writer at a time) and
 *                      the dispatch switch
 *   backend-ops.c      one function per message: calls the callbacks,
 *                      emulates what is missing, builds replies; the
 *                      shared-memory arena
 *   backend-workers.c  the worker threads, the thread-model locks and
 *                      the free list of jobs
 *   backend-utils.c    messages, errors, parsing helpers, the pool of
 *                      payload buffers
 *   backend-lists.c    extents and export lists
 *
 * Every name declared here with external linkage is prefixed nbdkit__
 * (two underscores), the library's public API nbdkit_ (nbdkit-backend.h),
 * the codec's hp_ (helper-protocol.h): the library is linked into
 * backends written by others, whose own names must not collide with
 * its internals (tests/library-symbols.bats checks).  The comments
 * below name the internals without the prefix.
 */

#ifndef NBDKIT_BACKEND_INTERNAL_H
#define NBDKIT_BACKEND_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "helper-protocol.h"
#include "nbdkit-backend.h"

/* backend-main.c */
extern const struct nbdkit_backend *nbdkit__be;
extern int nbdkit__thread_model;        /* effective NBDKIT_THREAD_MODEL_* */
extern bool nbdkit__verbose;
extern json_t *nbdkit__debug_flags;
extern int nbdkit__memfd;
/* Send one reply frame (thread safe).  The frame goes out whole and is
 * never interleaved with another; it may be written later by another
 * thread, so send_reply and send_reply_flags copy the payload if they
 * have to: the caller keeps its buffer.  send_reply_owned takes a
 * buffer from buf_alloc (size bytes, len of which are the payload) and
 * frees it with buf_free once written.
 */
extern void nbdkit__send_reply (const struct hp_header *req,
                                uint32_t status, uint32_t handle,
                                const void *payload, uint32_t len);
extern void nbdkit__send_reply_flags (const struct hp_header *req,
                                      uint32_t status, uint16_t flags,
                                      uint32_t handle,
                                      const void *payload, uint32_t len);
extern void nbdkit__send_reply_owned (const struct hp_header *req,
                                      uint16_t flags, void *buf, size_t size,
                                      uint32_t len);
extern void nbdkit__send_json_reply (const struct hp_header *req,
                                     uint32_t handle,
                                     json_t *j);  /* steals j */
/* The same, with fd passed along (SCM_RIGHTS with the frame's first
 * byte) and closed once sent: OPEN's passthrough descriptor.
 */
extern void nbdkit__send_json_reply_fd (const struct hp_header *req,
                                        uint32_t handle, json_t *j, int fd);
/* After a failed callback: reply with its error and message. */
extern void nbdkit__send_error_reply (const struct hp_header *req,
                                      uint32_t def_status);
/* Around the handling of each request: request_begin returns false,
 * and the request must be dropped unanswered, once the channel has
 * ended.  A request still being handled a moment after the channel
 * ended gets the backend's process group killed (see backend-main.c).
 */
extern bool nbdkit__request_begin (void);
extern void nbdkit__request_end (void);

/* backend-utils.c: the per-thread context of a callback. */
struct context {
  bool in_callback;
  bool log_errors;              /* also print nbdkit_error on stderr */
  const char *export;
  bool tls;
  const char *peer;             /* OPEN's "client" (nbdkit_peer_name) */
  int err;                      /* from nbdkit_set_error, or 0 */
  char *msg;                    /* last nbdkit_error, malloc'd */
  const char *config_key;       /* during config: its key and value, */
  const char *config_value;     /* so parse errors can say "key=value" */
  uint64_t connection;          /* the server's number of the client */
  int disconnect;               /* nbdkit_disconnect: 1 soft, 2 at once */
  /* In open: the server takes a passthrough descriptor (its OPEN said
   * "passthrough": true or "keep"), and the one nbdkit_passthrough_fd
   * named.
   */
  bool in_open;
  bool passthrough_wanted;
  int passthrough_fd;           /* the backend's own, not a copy; or -1 */
  unsigned passthrough_flags;
  uint32_t passthrough_page;
  /* In open: the descriptor the server gave back with a re-open, until
   * nbdkit_previous_fd takes it (op_open closes one left); or -1.
   */
  int previous_fd;
};
extern struct context *nbdkit__context_get (void);
/* Enter a callback (resets error state). */
extern void nbdkit__context_begin (bool log_errors, const char *export,
                                   bool tls);
/* After a failure: the status to reply with (nbdkit_set_error, else
 * saved_errno, else def_status, else EIO) and the message (owned by the
 * context, valid until context_end).
 */
extern uint32_t nbdkit__context_failure (int saved_errno, uint32_t def_status,
                                         const char **msg);
extern void nbdkit__context_end (void);

/* backend-utils.c: payload buffers of at least size bytes, reused.
 * buf_free must be given the size that buf_alloc was given.
 */
extern void *nbdkit__buf_alloc (size_t size);
extern void nbdkit__buf_free (void *p, size_t size);

/* backend-main.c: the reader's side of keeping the lead (see
 * backend-workers.c).  Whether frames not yet handled are in the read
 * buffer; whether a watcher thread runs (started by a server); and
 * watching the channel for input (on) or only for its end (off).
 */
extern bool nbdkit__input_buffered (void);
extern bool nbdkit__can_watch_input (void);
extern void nbdkit__watch_input (bool on);

/* backend-workers.c */
struct handle {
  uint32_t id;
  void *h;
  char *export;
  char *peer;                   /* OPEN's "client": where it is */
  bool tls;
  bool readonly;
  uint64_t size;                /* get_size at open: requests stay below */
  /* capabilities, computed at open */
  int can_write, can_flush, can_trim, can_zero, can_fast_zero;
  int can_extents, can_fua, can_cache;
  pthread_mutex_t lock;         /* serialize_requests */
  _Atomic bool disconnected;    /* nbdkit_disconnect: requests now fail */
};

struct job {
  struct job *next;
  struct hp_header req;
  unsigned char *payload;       /* buf_alloc (payload_size (&req)) or NULL */
  int fd;                       /* OPEN: the descriptor that came with it,
                                 * or -1 (job_free closes it) */
};

/* The size of the buffer that holds a request's payload: control
 * payloads (JSON) get a NUL after them, data payloads are exact so that
 * the usual power-of-2 writes fit the buffer pool's sizes.
 */
static inline size_t
payload_size (const struct hp_header *h)
{
  return (size_t) h->payload_len + (hp_type_is_control (h->type) ? 1 : 0);
}

/* Jobs come from a free list: job_new never fails (it exits on ENOMEM);
 * job_free also frees the payload and closes the descriptor.
 */
extern struct job *nbdkit__job_new (void);
extern void nbdkit__job_free (struct job *job);
/* Start the pool: n threads that may run jobs at once (0: the default;
 * 1 in the serialized models), and one more so that the channel is
 * always read; the main thread is one of them.  Called at HELLO.
 */
extern void nbdkit__workers_start (unsigned n);
/* Serve until the channel ends: the calling (main) thread and the pool
 * take turns to call read, which reads and handles one message and
 * returns 0 (with *job set to a job to run, or NULL if it was handled)
 * or -1 at the end of the channel.  Returns when every job has run (or
 * was dropped: one read but not started when the channel ended).
 */
extern void nbdkit__workers_serve (int (*read) (struct job **job));
/* The watcher of the channel saw input (or the channel's end) while
 * input was watched (nbdkit__watch_input): a reader that kept the lead
 * for a job gives it up, so that a thread reads at once.
 */
extern void nbdkit__workers_input_arrived (void);
extern struct handle *nbdkit__handle_lookup (uint32_t id);
extern uint32_t nbdkit__handle_add (struct handle *h);
extern struct handle *nbdkit__handle_remove (uint32_t id);
/* Every handle still open (for closing at exit); caller frees array. */
extern struct handle **nbdkit__handles_all (size_t *n);

/* backend-ops.c: each takes ownership of job (payload included). */
extern void nbdkit__op_hello (const struct hp_header *req, json_t *j);
/* backend-exports.c: per connection, preconnect once and default_export
 * once (connection 0: none, every time).
 */
extern int nbdkit__connection_start (uint64_t connection, bool readonly);
/* The default export's name (malloc'd) or NULL after an error. */
extern char *nbdkit__default_export (uint64_t connection, bool readonly,
                                     bool tls);
extern void nbdkit__op_list_exports (const struct hp_header *req, json_t *j);
extern void nbdkit__op_default_export (const struct hp_header *req,
                                       json_t *j);

extern void nbdkit__op_config (const struct hp_header *req, json_t *j,
                               int fd);
extern void nbdkit__op_config_complete (const struct hp_header *req);
extern void nbdkit__op_get_ready (const struct hp_header *req);
extern void nbdkit__op_dump (const struct hp_header *req);
extern void nbdkit__op_attach_fd (const struct hp_header *req, json_t *j,
                                  int fd);
extern void nbdkit__op_run_job (struct job *job);   /* on a worker thread */
/* prev_fd: the descriptor that came with the OPEN, or -1; taken. */
extern void nbdkit__op_open (const struct hp_header *req, json_t *j,
                             int prev_fd);
extern void nbdkit__op_close (const struct hp_header *req);
extern void nbdkit__op_close_all (void);

#ifdef NBDKIT_FUZZING
/* The fuzzing harness of the library (tests/fuzz/fuzz-library.c) runs
 * nbdkit_backend_main once per input, in one thread: no pool of
 * workers, no watcher of the channel.  A frame that breaks the
 * protocol ends the input through the harness's hook (instead of
 * exiting), and nbdkit__fuzz_reset gives every file's state back its
 * first value.
 */
extern void nbdkit__fuzz_protocol_error (const char *why)
  __attribute__ ((noreturn));
extern void nbdkit__fuzz_reset (void);
extern void nbdkit__fuzz_reset_workers (void);
extern void nbdkit__fuzz_reset_ops (void);
extern void nbdkit__fuzz_reset_exports (void);
#endif

/* backend-lists.c */
extern struct nbdkit_extents *nbdkit__extents_new (uint64_t start,
                                                   uint64_t end);
extern void nbdkit__extents_free (struct nbdkit_extents *e);
/* Encoded reply payload (malloc'd) of the extents from start on. */
extern unsigned char *nbdkit__extents_encode (struct nbdkit_extents *e,
                                              bool req_one, uint32_t *len);
/* The extents found cover start..end and all of it reads as zeros. */
extern bool nbdkit__extents_all_zero (const struct nbdkit_extents *e);
extern struct nbdkit_exports *nbdkit__exports_new (void);
extern void nbdkit__exports_free (struct nbdkit_exports *e);
extern json_t *nbdkit__exports_to_json (struct nbdkit_exports *e);

#endif /* NBDKIT_BACKEND_INTERNAL_H */
