/* nbdkit front end: the inside of struct backend_proc.
 *
 * A backend_proc is one backend process and everything the front end
 * keeps about it.  backend-proc.c owns the object (making it, finding
 * it, and one function per message the front end sends); its parts are
 * each kept by one file, which alone touches its part's fields:
 *
 *   struct backend_info   backend-info.c   what HELLO said
 *   struct spawn_state    backend-spawn.c  the process, its stderr
 *   struct channel        backend-channel.c  frames, requests in flight
 *   struct supervisor     supervisor.c     life cycle, restarts
 *   struct handles        backend-handles.c  the handles opened in it
 *   struct liveness       liveness.c       PING
 *   struct arena *        arena.c          shared memory of the data path
 *
 * Only those files include this header; the rest of the front end sees
 * struct backend_proc as opaque (internal.h).
 */

#ifndef NBDKIT_BACKEND_PROC_H
#define NBDKIT_BACKEND_PROC_H

#include "internal.h"
#include "stream.h"

struct pending;

struct spawn_state {
  pid_t pid;                    /* -1: none running */
  ev_child child_watcher;
  ev_io stderr_watcher;
  int stderr_fd;
  char stderr_line[4096];
  size_t stderr_len;
};

struct channel {
  struct stream stream;         /* the socket, its buffers (stream.c) */
  bool ready;                   /* may send ordinary requests */
  uint64_t next_id;
  uint64_t bytes_queued;        /* ever, on this channel */
  /* Requests in flight, hashed by id (ids are sequential). */
  struct pending **table;
  size_t table_size, nr_pending;
  struct pending *oldest, *newest;
  /* Requests waiting for the backend to be ready. */
  struct pending *held_head, **held_tail;
  size_t nr_held;
  ev_timer held_timer;          /* the next slice, on the next turn */
  size_t resending;             /* sent again, not answered yet */
  /* The reply being read. */
  unsigned char rhdr[HP_HEADER_SIZE];
  size_t rhdr_got;
  struct hp_header cur;
  struct pending *cur_req;
  unsigned char *rpayload;
  uint32_t rpayload_got;
  uint64_t frame_start;         /* its stream position */
  int reply_fd;                 /* came with it, during its callback */
  /* Request timeout. */
  double timeout_secs;
  ev_timer timeout_timer;
  channel_timeout_cb on_timeout;
};

enum supervisor_state { STARTING, READY, WAITING, FAILED, STOPPING };

struct supervisor {
  enum supervisor_state state;
  bool started_once;            /* reached READY at least once */
  char *start_error;            /* why the first start failed */
  void (*after_hello) (struct backend_proc *bp);
  size_t config_index;
  unsigned restarts;            /* total, for the log and tests */
  ev_tstamp *restart_times;     /* within the window */
  unsigned nr_restart_times;
  ev_timer restart_timer, kill_timer;
  int memfd;                    /* kept across restarts (HP_ATTACH_FD) */
  unsigned attach_step;         /* where attach_next is */
  int shutdown_result;          /* SHUTDOWN: 0 waiting, 1 ok, -1 failed */
};

struct handles {
  struct bhandle *list;         /* open (or being re-opened) */
  unsigned nr_reopening;        /* re-opens not answered yet */
};

struct liveness {
  bool offered;                 /* this incarnation listed "ping" */
  ev_timer ping_timer;          /* every opt.ping_interval */
  ev_timer pong_timer;          /* opt.ping_timeout after a PING */
  bool in_flight;
  ev_tstamp sent_at;
};

struct backend_proc {
  struct backend_proc *next;    /* every backend_proc of the server */
  unsigned index;               /* 0, 1, ... in order of making */
  struct backend_info info;
  struct spawn_state spawn;
  struct channel chan;
  struct supervisor sup;
  struct handles hdl;
  struct liveness live;
  struct arena *arena;          /* NULL until the first "shm" backend */
};

/* The part that owns the struct it is in. */
#define BPROC_OF(ptr, member) \
  ((struct backend_proc *) ((char *) (ptr) - offsetof (struct backend_proc, member)))

/* Between the supervisor and the handles (backend-handles.c): in a
 * new incarnation, re-open every handle, then call
 * supervisor_handles_reopened once all are answered; when the backend
 * has failed, passthrough ends; at an orderly stop, close them all.
 */
extern void handles_reopen (struct backend_proc *bp);
extern void supervisor_handles_reopened (struct backend_proc *bp);
extern bool supervisor_has_failed (const struct backend_proc *bp);
/* The backend died and a new one is due (its handles are re-opened
 * then).
 */
extern bool supervisor_will_restart (const struct backend_proc *bp);
extern void handles_drop_passthrough (struct backend_proc *bp);
extern void handles_close_all (struct backend_proc *bp);

/* Each part's start: what it needs set before the process runs. */
extern void channel_init (struct backend_proc *bp);
extern void spawn_init (struct backend_proc *bp);
extern void liveness_init (struct backend_proc *bp);

#endif /* NBDKIT_BACKEND_PROC_H */
