/* Fuzzing target "frames": the front end reading the frames of a
 * hostile backend (tests/fuzz/README says how targets are laid out).
 *
 * WHAT IT RUNS
 * ------------
 * The real nbdkit/backend-channel.c (reading reply frames), backend-proc.c
 * (the messages, bproc_parse_json), supervisor.c (start-up, protocol
 * errors, restarts, the orderly stop), backend-handles.c (opens, closes,
 * re-opens), backend-info.c (the HELLO reply), liveness.c (PING),
 * backend-layer.c (the OPEN reply's capabilities, data requests),
 * filter-open.c (the LIST_EXPORTS reply),
 * arena.c, stream.c, buffer.c and helper-protocol/wire.c.  This file
 * stands in for what touches the outside world: the process
 * (backend-spawn.c: a "process" is one end of a socketpair that this file
 * writes; killing it closes that end, and its exit is reported on the
 * next turn of the loop, as an ev_child would), main.c's options, log.c
 * (die returns to the harness with longjmp), loop.c (a loop of its own,
 * the same flush-before-waiting contract, server_quit only recorded),
 * and the chain (filter-chain.c: this file is the layer above the
 * backend layer); frames-absent.c stands in for what must never
 * be reached (TLS, passthrough's I/O).  Time passes at once: a timer the front end
 * waits on while no process runs is fired at once; no real sleeping.
 *
 * ONE INPUT
 * ---------
 * Two bytes of options, then the bytes the backend writes on the
 * channel, in chunks, one chunk per turn of the loop:
 *
 *   byte 0  bits 0-1 the number of parameters (CONFIG) of 3: size=1M,
 *                    a bare one (key: the magic key, or as CONFIG replies
 *                    rename it), fd=N (a descriptor the server inherited)
 *           bits 2-3 --backend-max-restarts (0-3; restart window 1 hour)
 *           bit 4    --backend-failure=error
 *           bit 5    liveness: PING every "interval" (op FIRE_PING)
 *           bit 6    -r
 *           bit 7    -D nbdkit.shm=0 (no arena even if HELLO asks)
 *   byte 1  bit 0    the export name is "disk" (else "")
 *           bit 1    the backend ignores SIGTERM (SIGKILL only)
 *   then chunks: a 16-bit big-endian word W, then
 *     W < 0xfff0     W bytes (as many as are left) written on the channel
 *     0xfff0 EXIT    the backend closes the channel and exits
 *     0xfff1 HUNG    the backend is too slow: a request timeout (if one is
 *                    in flight), and the pong and SIGKILL timers fire
 *     0xfff2 PING    the liveness timer fires (a PING if offered)
 *     0xfff3 NOSPAWN the next start of a process fails
 *     else           nothing written this turn
 *   When the input is used up the backend closes its end and exits, and
 *   every later incarnation does so at once.
 *
 * The front end's side: supervisor_start (HELLO, ATTACH_FD as asked,
 * CONFIG per parameter, CONFIG_COMPLETE, GET_READY); then at once OPEN
 * (through the backend layer), LIST_EXPORTS (through the chain),
 * DEFAULT_EXPORT and PING; once the open succeeded, the data requests
 * the export's capabilities allow, in this order: PREAD 512, PREAD
 * 65536 with ZEROS (can_extents), PWRITE 512 (FUA if can_fua), ZERO
 * (MAY_TRIM, FAST_ZERO if can_fast_zero), TRIM, FLUSH, CACHE, EXTENTS,
 * EXTENTS with REQ_ONE (each range within the size); once all are
 * answered, CLOSE and supervisor_stop (SHUTDOWN).  Request ids are
 * 1, 2, 3 ... in that order, over every incarnation
 * (tests/fuzz/make-corpus-frames.py writes the seed conversations).
 *
 * WHAT IS CHECKED
 * ---------------
 * Every request the front end sends is a valid frame (hp_decode_header,
 * hp_check_request) with an id never used before.  Every request of
 * the caller completes exactly once, with NULL or with a reply that
 * answers it: the id of a frame sent for it, of its type, range and
 * flags, a valid status, and a payload that fits the request (PREAD
 * count bytes, or none with ZEROS when asked; EXTENTS a non-empty
 * multiple of 12 bytes; none for the others; a NUL-terminated message on
 * errors); the capabilities of a successful open keep their promises
 * (read-only means no writes, ...).  A protocol error kills the backend
 * and closes the channel at once.  At the end: no process, the channel
 * closed, nothing in flight or held, no handle, no arena slot in use, no
 * timer or watcher of the backend_proc left in the loop; ASan's leak
 * check finds nothing.  A violation aborts with "*** fuzz: BUG: ...".
 * $FUZZ_FRAMES_VERBOSE=1 prints the front end's messages.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-bug.h"
#include "backend-proc.h"
#include "byte-order.h"

extern int LLVMFuzzerInitialize (int *argc, char ***argv);
extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define OP_EXIT     0xfff0
#define OP_HUNG     0xfff1
#define OP_PING     0xfff2
#define OP_NOSPAWN  0xfff3
#define OP_FIRST    0xfff0

#define MAX_TURNS   200000      /* far more than an input of 4 KiB needs */

static bool verbose;

/* ---- main.c: the options ---- */

struct options opt;
bool want_swap;                 /* passthrough.c reads it */
static char fd_value[16];        /* an inherited descriptor, for fd=N */
static bool no_shm;             /* -D nbdkit.shm=0 */

int
server_debug_flag (const char *flag, int def)
{
  if (strcmp (flag, "shm") == 0)
    return !no_shm;
  if (strcmp (flag, "shm_mib") == 0)
    return 1;
  return def;
}

/* ---- log.c ---- */

static unsigned protocol_errors;   /* not yet checked */
static jmp_buf die_jmp;
static bool die_armed;

static void
log_msg (const char *what, const char *fmt, va_list args)
{
  char buf[1024];

  vsnprintf (buf, sizeof buf, fmt, args);
  if (strstr (fmt, "backend protocol error"))   /* not the backend's text */
    protocol_errors++;
  if (verbose)
    fprintf (stderr, "nbdkit: %s%s\n", what, buf);
}

void
nbdkit_error (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  log_msg ("error: ", fmt, args);
  va_end (args);
}

void
nbdkit_debug (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  log_msg ("debug: ", fmt, args);
  va_end (args);
}

void
log_conn_debug (const char *name, uint64_t connection, const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  log_msg ("debug: ", fmt, args);
  va_end (args);
}

void
log_backend_line (const char *name, const char *line)
{
  if (verbose)
    fprintf (stderr, "nbdkit: %s: %s\n", name, line);
}

/* Only supervisor_start may die (a failed first start), outside any
 * callback of the loop: back to the harness.
 */
void
die (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  log_msg ("die: ", fmt, args);
  va_end (args);
  if (!die_armed)
    fuzz_bug ("die() outside supervisor_start: %s", fmt);
  die_armed = false;
  longjmp (die_jmp, 1);
}

/* ---- loop.c ---- */

struct ev_loop *loop;
static ev_prepare flush_prepare;
static struct loop_flush *flush_head, **flush_tail = &flush_head;
static bool quitting;

static void
on_flush_prepare (struct ev_loop *l, ev_prepare *w, int revents)
{
  struct loop_flush *f;

  while ((f = flush_head) != NULL) {
    flush_head = f->next;
    if (!flush_head)
      flush_tail = &flush_head;
    f->next = NULL;
    f->queued = false;
    f->fn (f);
  }
  ev_prepare_stop (loop, &flush_prepare);
}

void
loop_flush_queue (struct loop_flush *f)
{
  if (f->queued)
    return;
  f->queued = true;
  f->next = NULL;
  *flush_tail = f;
  flush_tail = &f->next;
  ev_prepare_start (loop, &flush_prepare);
}

void
loop_flush_cancel (struct loop_flush *f)
{
  struct loop_flush **pp;

  if (!f->queued)
    return;
  for (pp = &flush_head; *pp; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      if (!*pp)
        flush_tail = pp;
      break;
    }
  f->next = NULL;
  f->queued = false;
}

void
server_quit (int status)
{
  quitting = true;
}

bool
server_quitting (void)
{
  return quitting;
}

/* ---- the fake backend process (backend-spawn.c) ---- */

struct sent {                   /* a request the front end sent */
  struct hp_header h;
  unsigned delivered;           /* replies handed to a caller */
};

static struct fake {
  struct backend_proc *bp;
  const uint8_t *in;            /* the chunks still to come */
  size_t left;
  int fd;                       /* its end of the channel, or -1 */
  bool exiting;                 /* its exit is reported next turn */
  bool ignore_term, no_spawn;
  unsigned incarnations;
  const uint8_t *out;           /* the rest of the chunk being written */
  size_t out_left;
  /* Reading the front end's frames. */
  unsigned char hdr[HP_HEADER_SIZE];
  size_t hdr_got;
  uint32_t skip;                /* payload bytes still to skip */
  struct sent *sent;
  size_t nr_sent, sent_cap;
  ev_idle tick;
} fk;

void
spawn_init (struct backend_proc *bp)
{
  bp->spawn.pid = -1;
  bp->spawn.stderr_fd = -1;
}

pid_t
backend_pid (const struct backend_proc *bp)
{
  return bp->spawn.pid;
}

static void
fake_exit (void)
{
  if (fk.fd >= 0)
    close (fk.fd);
  fk.fd = -1;
  fk.out_left = 0;
  fk.exiting = true;
}

bool
backend_spawn (struct backend_proc *bp)
{
  int sv[2];

  if (bp->spawn.pid > 0 || fk.fd >= 0)
    fuzz_bug ("a backend started while the previous one runs");
  if (!channel_reserve (bp))
    return false;
  if (fk.no_spawn) {
    fk.no_spawn = false;
    return false;
  }
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                  sv) == -1)
    fuzz_bug ("socketpair: %m");
  bp->spawn.pid = 100000 + ++fk.incarnations;
  fk.fd = sv[1];
  fk.exiting = false;
  fk.out_left = 0;
  fk.hdr_got = 0;
  fk.skip = 0;
  ev_idle_start (loop, &fk.tick);
  channel_open (bp, sv[0]);
  return true;
}

void
backend_kill (struct backend_proc *bp)
{
  if (bp->spawn.pid > 0 && !fk.exiting)
    fake_exit ();
}

void
backend_terminate (struct backend_proc *bp)
{
  if (!fk.ignore_term)
    backend_kill (bp);
}

static struct sent *
find_sent (uint64_t id)
{
  size_t i;

  for (i = 0; i < fk.nr_sent; ++i)
    if (fk.sent[i].h.id == id)
      return &fk.sent[i];
  return NULL;
}

/* A frame header from the front end: it must be a valid request. */
static void
got_request (void)
{
  struct hp_header h;
  const char *why;

  if (hp_decode_header (fk.hdr, &h, &why) == -1 ||
      hp_check_request (&h, &why) == -1)
    fuzz_bug ("the front end sent an invalid %s frame: %s",
              hp_type_name (get_be16 (fk.hdr + 4)), why);
  if (find_sent (h.id))
    fuzz_bug ("the front end used request id %llu twice",
              (unsigned long long) h.id);
  if (fk.nr_sent == fk.sent_cap) {
    fk.sent_cap = fk.sent_cap ? fk.sent_cap * 2 : 64;
    fk.sent = realloc (fk.sent, fk.sent_cap * sizeof *fk.sent);
    if (!fk.sent)
      fuzz_bug ("out of memory");
  }
  fk.sent[fk.nr_sent].h = h;
  fk.sent[fk.nr_sent++].delivered = 0;
  fk.skip = h.payload_len;
}

/* Read what the front end wrote, closing descriptors passed with it.
 * -1: the front end closed the channel.
 */
static int
fake_read (void)
{
  unsigned char buf[65536];
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE (8 * sizeof (int))];
  } cm;

  for (;;) {
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
    struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1,
      .msg_control = cm.space, .msg_controllen = sizeof cm.space,
    };
    struct cmsghdr *c;
    ssize_t r = recvmsg (fk.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    size_t i = 0;

    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    for (c = CMSG_FIRSTHDR (&msg); c; c = CMSG_NXTHDR (&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t n = (c->cmsg_len - CMSG_LEN (0)) / sizeof (int), k;
        int fds[8];

        memcpy (fds, CMSG_DATA (c), n * sizeof (int));
        for (k = 0; k < n; ++k)
          close (fds[k]);
      }
    while (i < (size_t) r) {
      if (fk.skip) {
        size_t n = (size_t) r - i < fk.skip ? (size_t) r - i : fk.skip;

        fk.skip -= n;
        i += n;
        continue;
      }
      fk.hdr[fk.hdr_got++] = buf[i++];
      if (fk.hdr_got == HP_HEADER_SIZE) {
        fk.hdr_got = 0;
        got_request ();
      }
    }
  }
}

/* A timer the front end waits on fires now. */
static void
fire (ev_timer *t)
{
  if (ev_is_active (t)) {
    ev_timer_stop (loop, t);
    ev_invoke (loop, t, EV_TIMER);
  }
}

static void
check_protocol_errors (void)
{
  if (!protocol_errors)
    return;
  protocol_errors = 0;
  if (channel_is_open (fk.bp) || (fk.bp->spawn.pid > 0 && !fk.exiting))
    fuzz_bug ("a protocol error left the backend running or the channel "
              "open");
}

/* One turn of the backend: read, then write one chunk (or do what the
 * input says), or exit.
 */
static void
on_tick (struct ev_loop *l, ev_idle *w, int revents)
{
  struct backend_proc *bp = fk.bp;
  unsigned word;

  check_protocol_errors ();
  if (fk.exiting) {
    fk.exiting = false;
    ev_idle_stop (loop, &fk.tick);
    bp->spawn.pid = -1;
    supervisor_backend_exited (bp);
    return;
  }
  if (fake_read () == -1) {     /* EOF: a backend exits */
    fake_exit ();
    return;
  }
  if (!fk.out_left) {
    if (fk.left < 2) {
      fk.left = 0;
      fake_exit ();
      return;
    }
    word = get_be16 (fk.in);
    fk.in += 2;
    fk.left -= 2;
    if (word >= OP_FIRST) {
      switch (word) {
      case OP_EXIT:
        fake_exit ();
        break;
      case OP_HUNG:
        if (bp->chan.nr_pending > 0 && channel_is_open (bp))
          supervisor_backend_hung (bp);
        fire (&bp->live.pong_timer);
        fire (&bp->sup.kill_timer);
        break;
      case OP_PING:
        if (ev_is_active (&bp->live.ping_timer))
          ev_invoke (loop, &bp->live.ping_timer, EV_TIMER);
        break;
      case OP_NOSPAWN:
        fk.no_spawn = true;
        break;
      }
      return;
    }
    fk.out = fk.in;
    fk.out_left = word < fk.left ? word : fk.left;
    fk.in += fk.out_left;
    fk.left -= fk.out_left;
  }
  while (fk.out_left) {
    ssize_t r = send (fk.fd, fk.out, fk.out_left,
                      MSG_DONTWAIT | MSG_NOSIGNAL);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (r <= 0) {
      fake_exit ();
      break;
    }
    fk.out += r;
    fk.out_left -= r;
  }
}

/* ---- the caller: the chain above the backend layer ---- */

struct hreq {
  const char *what;
  struct freq r;                /* type, flags, offset, count */
  unsigned done;
};

static struct caller {
  struct export_caps caps;
  struct fopen o;
  unsigned open_done;
  void *handle;                 /* the backend layer's: a bhandle */
  unsigned list_done, close_done;
  struct hreq control[2];       /* DEFAULT_EXPORT, PING */
  struct hreq data[9];
  size_t nr_data;
  bool data_queued;
} cl;

bool
chain_tracing (bool datapath)
{
  return verbose;
}

struct backend_proc *
fopen_backend_proc (const struct fopen *o)
{
  return fk.bp;
}

bool
fopen_wants_description (const struct fopen *o)
{
  return true;
}

void
fopen_done (struct fopen *o, void *handle)
{
  const struct export_caps *c = &cl.caps;

  if (o != &cl.o || cl.open_done++)
    fuzz_bug ("the open completed twice");
  if (!handle)
    fuzz_bug ("an open succeeded without a handle");
  cl.handle = handle;
  if (c->size > INT64_MAX ||
      (opt.readonly && (c->can_write || c->can_trim || c->can_zero ||
                        c->can_fast_zero || c->can_fua)) ||
      (c->can_trim && !c->can_write) || (c->can_zero && !c->can_write) ||
      (c->can_fast_zero && !c->can_zero) || (c->can_fua && !c->can_write) ||
      (c->description && strlen (c->description) > NBD_MAX_STRING) ||
      (c->name && strlen (c->name) > NBD_MAX_STRING))
    fuzz_bug ("the export's capabilities break their rules");
  if (c->block_min &&
      (c->block_min & (c->block_min - 1) || c->block_min > 65536 ||
       c->block_pref < c->block_min || c->block_max < c->block_pref ||
       c->block_max % c->block_min))
    fuzz_bug ("invalid block size constraints accepted");
}

void
fopen_fail (struct fopen *o, uint32_t status, const char *msg)
{
  if (o != &cl.o || cl.open_done++)
    fuzz_bug ("the open completed twice");
  if (!hp_error_is_valid (status) || status == 0)
    fuzz_bug ("an open failed with status %u", status);
}

/* A reply handed to a caller: it must answer this request. */
static void
check_reply (struct hreq *q, const struct hp_header *reply, void *payload,
             uint32_t len)
{
  const struct freq *r = &q->r;
  struct sent *s;

  if (q->done++)
    fuzz_bug ("%s completed twice", q->what);
  if (!reply) {
    if (payload || len)
      fuzz_bug ("%s failed with a payload", q->what);
    return;
  }
  if (reply->type != (r->type | HP_REPLY) ||
      !hp_error_is_valid (reply->status))
    fuzz_bug ("%s completed with a reply of type %#x, status %u", q->what,
              reply->type, reply->status);
  s = find_sent (reply->id);
  if (!s || s->h.type != r->type || s->h.offset != r->offset ||
      s->h.count != r->count || (s->h.flags & ~HP_FLAG_SHM) != r->flags)
    fuzz_bug ("%s completed with the reply to another request (id %llu)",
              q->what, (unsigned long long) reply->id);
  if (s->delivered++)
    fuzz_bug ("the reply to request id %llu was delivered twice",
              (unsigned long long) reply->id);
  if (len != reply->payload_len || (len && !payload))
    fuzz_bug ("%s: payload of %u bytes, header says %u", q->what, len,
              reply->payload_len);
  if (reply->status) {
    if (payload && strlen (payload) > len)
      fuzz_bug ("%s: the error message is not terminated", q->what);
    return;
  }
  if (reply->flags & HP_FLAG_SHM)
    fuzz_bug ("%s: the SHM flag reached the caller", q->what);
  switch (r->type) {
  case HP_PREAD:
    if (reply->flags & HP_FLAG_ZEROS
        ? !(r->flags & HP_FLAG_ZEROS) || len != 0 : len != r->count)
      fuzz_bug ("PREAD of %u bytes answered with %u bytes%s", r->count,
                len, reply->flags & HP_FLAG_ZEROS ? " and ZEROS" : "");
    break;
  case HP_EXTENTS:
    if (len == 0 || len % HP_EXTENT_SIZE)
      fuzz_bug ("EXTENTS answered with %u bytes", len);
    break;
  case HP_DEFAULT_EXPORT:
    break;
  default:
    if (len)
      fuzz_bug ("%s answered with %u bytes", q->what, len);
  }
}

void
freq_reply_from (struct freq *r, const struct hp_header *reply,
                 void *payload, uint32_t len)
{
  struct hreq *q = (struct hreq *) ((char *) r - offsetof (struct hreq, r));

  if (q < cl.data || q >= cl.data + cl.nr_data)
    fuzz_bug ("a reply for a request never made");
  check_reply (q, reply, payload, len);
  payload_free (payload);
}

static void
on_control_reply (void *opaque, const struct hp_header *reply, void *payload,
                  uint32_t len)
{
  struct hreq *q = opaque;
  const char *why;

  check_reply (q, reply, payload, len);
  if (q->r.type == HP_DEFAULT_EXPORT && reply && reply->status == 0)
    json_decref (bproc_parse_json (payload, len, &why));
  payload_free (payload);
}

static void
on_list (void *opaque, uint32_t status, const char *msg,
         const struct fexport *exports, size_t n)
{
  size_t i;

  if (cl.list_done++)
    fuzz_bug ("the export list completed twice");
  if (status ? !hp_error_is_valid (status) || !msg : msg != NULL)
    fuzz_bug ("the export list completed with status %u, message %s",
              status, msg ? msg : "(none)");
  for (i = 0; i < n; ++i)
    if (!exports[i].name)
      fuzz_bug ("an export without a name");
}

static void
on_closed (void *opaque)
{
  cl.close_done++;
}

static void
add_data (const char *what, uint16_t type, uint16_t flags, uint64_t offset,
          uint32_t count)
{
  struct hreq *q = &cl.data[cl.nr_data++];

  q->what = what;
  q->r.type = type;
  q->r.flags = flags;
  q->r.offset = offset;
  q->r.count = count;
  q->r.peer = "fuzz";
  q->r.id = cl.nr_data;
}

/* The requests the export's capabilities allow, as transmit.c would
 * send them.
 */
static void
queue_data (void)
{
  const struct export_caps *c = &cl.caps;
  uint64_t size = c->size;
  uint32_t small = size < 512 ? (uint32_t) size : 512;
  uint32_t big = size < 65536 ? (uint32_t) size : 65536;
  size_t i;

  cl.data_queued = true;
  if (size) {
    add_data ("PREAD", HP_PREAD, 0, 0, small);
    if (c->can_extents)
      add_data ("PREAD (ZEROS)", HP_PREAD, HP_FLAG_ZEROS, size - big, big);
    if (c->can_write)
      add_data ("PWRITE", HP_PWRITE, c->can_fua ? HP_FLAG_FUA : 0, 0, small);
    if (c->can_zero)
      add_data ("ZERO", HP_ZERO, HP_FLAG_MAY_TRIM |
                (c->can_fast_zero ? HP_FLAG_FAST_ZERO : 0), 0, big);
    if (c->can_trim)
      add_data ("TRIM", HP_TRIM, 0, size - small, small);
  }
  if (c->can_flush)
    add_data ("FLUSH", HP_FLUSH, 0, 0, 0);
  if (size) {
    if (c->can_cache)
      add_data ("CACHE", HP_CACHE, 0, 0, big);
    if (c->can_extents) {
      add_data ("EXTENTS", HP_EXTENTS, 0, 0,
                size > UINT32_MAX ? UINT32_MAX : (uint32_t) size);
      add_data ("EXTENTS (REQ_ONE)", HP_EXTENTS, HP_FLAG_REQ_ONE, 0, big);
    }
  }
  for (i = 0; i < cl.nr_data; ++i) {
    struct freq *r = &cl.data[i].r;

    if (r->type == HP_PWRITE) {
      r->data = bproc_payload_alloc (fk.bp, r->count);
      if (!r->data)
        fuzz_bug ("out of memory");
      memset (r->data, 'w', r->count);
    }
    switch (r->type) {
    case HP_PREAD: backend_layer.pread (cl.handle, r); break;
    case HP_PWRITE: backend_layer.pwrite (cl.handle, r); break;
    case HP_ZERO: backend_layer.zero (cl.handle, r); break;
    case HP_TRIM: backend_layer.trim (cl.handle, r); break;
    case HP_FLUSH: backend_layer.flush (cl.handle, r); break;
    case HP_CACHE: backend_layer.cache (cl.handle, r); break;
    default: backend_layer.extents (cl.handle, r); break;
    }
  }
}

static void
queue_control (bool export_disk)
{
  struct backend_proc *bp = fk.bp;

  cl.o.caps = &cl.caps;
  cl.o.readonly = opt.readonly;
  cl.o.export = export_disk ? "disk" : "";
  cl.o.peer = "fuzz";
  cl.o.connection = 1;
  backend_layer.open (&cl.o);
  chain_list_exports (bp, 1, opt.readonly, false, "fuzz", on_list, NULL);
  cl.control[0].what = "DEFAULT_EXPORT";
  cl.control[0].r.type = HP_DEFAULT_EXPORT;
  bproc_default_export (bp, 0, opt.readonly, false, on_control_reply,
                        &cl.control[0]);
  cl.control[1].what = "PING";
  cl.control[1].r.type = HP_PING;
  bproc_ping (bp, 0, on_control_reply, &cl.control[1]);
}

static bool
caller_done (void)
{
  size_t i;

  if (!cl.open_done || !cl.list_done || !cl.control[0].done ||
      !cl.control[1].done)
    return false;
  if (cl.handle && !cl.data_queued && !quitting)
    return false;
  for (i = 0; i < cl.nr_data; ++i)
    if (!cl.data[i].done)
      return false;
  return true;
}

/* ---- one input ---- */

static struct arena *arena;     /* kept: arenas are never freed */

static void
check_idle (struct backend_proc *bp)
{
  ev_timer *timers[] = {
    &bp->sup.restart_timer, &bp->sup.kill_timer, &bp->chan.held_timer,
    &bp->chan.timeout_timer, &bp->live.ping_timer, &bp->live.pong_timer,
  };
  size_t i;

  for (i = 0; i < sizeof timers / sizeof timers[0]; ++i)
    if (ev_is_active (timers[i]) || ev_is_pending (timers[i]))
      fuzz_bug ("timer %zu of the backend_proc is left in the loop", i);
  if (ev_is_active (&bp->chan.stream.rio) ||
      ev_is_active (&bp->chan.stream.wio) || bp->chan.stream.flush.queued)
    fuzz_bug ("the channel's watchers are left in the loop");
  if (bp->spawn.pid > 0 || fk.fd >= 0 || ev_is_active (&fk.tick))
    fuzz_bug ("the backend still runs");
  if (channel_is_open (bp) || channel_in_flight (bp) || bp->chan.held_head ||
      bp->chan.cur_req || bp->chan.rpayload)
    fuzz_bug ("requests left in the channel");
  if (bp->hdl.list)
    fuzz_bug ("handles left open");
  if (bp->arena && arena_pages_in_use (bp->arena))
    fuzz_bug ("%zu arena pages still in use",
              arena_pages_in_use (bp->arena));
  if (ev_pending_count (loop) || flush_head ||
      ev_run (loop, EVRUN_NOWAIT))
    fuzz_bug ("the loop has work left");
}

static void
free_backend_proc (struct backend_proc *bp)
{
  free (bp->info.name);
  free (bp->info.version);
  free (bp->info.longname);
  free (bp->info.description);
  free (bp->info.magic_config_key);
  free (bp->info.config_help);
  json_decref (bp->info.callbacks);
  json_decref (bp->info.fd_keys);
  inbuf_free (&bp->chan.stream.in);
  free (bp->chan.table);
  free (bp->sup.restart_times);
  free (bp->sup.start_error);
  arena = bp->arena;
  free (bp);
}

/* The first start (which may die: back in LLVMFuzzerTestOneInput),
 * the requests, the close and the stop.
 */
static void
serve (struct backend_proc *bp, bool export_disk)
{
  unsigned turns = 0;

  supervisor_start (bp, NULL);
  die_armed = false;
  queue_control (export_disk);
  for (;;) {
    check_protocol_errors ();
    if (++turns > MAX_TURNS)
      fuzz_bug ("the front end is stuck after %u turns", turns);
    if (cl.handle && !cl.data_queued && !quitting)
      queue_data ();
    if (caller_done ())
      break;
    /* No process: what the supervisor waits for happens now. */
    while (bp->spawn.pid <= 0 && (ev_is_active (&bp->sup.restart_timer) ||
                                  ev_is_active (&bp->sup.kill_timer))) {
      fire (&bp->sup.restart_timer);
      fire (&bp->sup.kill_timer);
    }
    if (bp->spawn.pid <= 0 && !ev_is_active (&bp->chan.held_timer) &&
        !flush_head && !caller_done ())
      fuzz_bug ("requests wait for a backend that will never come");
    ev_run (loop, EVRUN_ONCE);
  }
  if (cl.handle)
    backend_layer_close_then (cl.handle, on_closed, NULL);
  supervisor_stop (bp);
  if (cl.handle && cl.close_done != 1)
    fuzz_bug ("the close completed %u times", cl.close_done);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  int fd;

  verbose = getenv ("FUZZ_FRAMES_VERBOSE") &&
            strcmp (getenv ("FUZZ_FRAMES_VERBOSE"), "1") == 0;
  signal (SIGPIPE, SIG_IGN);
  loop = ev_loop_new (EVFLAG_AUTO | EVFLAG_NOENV);
  if (!loop)
    fuzz_bug ("ev_loop_new failed");
  ev_prepare_init (&flush_prepare, on_flush_prepare);
  ev_idle_init (&fk.tick, on_tick);
  fk.fd = -1;
  /* A descriptor as the server inherits one (not close-on-exec). */
  fd = open ("/dev/null", O_RDONLY);
  if (fd == -1)
    fuzz_bug ("/dev/null: %m");
  snprintf (fd_value, sizeof fd_value, "%d", fd);
  opt.backend_name = "fuzz";
  opt.exportname = "";
  opt.backend_debug = json_object ();
  opt.restart_window = 3600;
  opt.ping_timeout = 1e6;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct config_param params[3];
  uint8_t o0 = size > 0 ? data[0] : 0, o1 = size > 1 ? data[1] : 0;
  struct backend_proc *bp;
  size_t i;

  /* The options. */
  params[0] = (struct config_param) { strdup ("size"), strdup ("1M"), false };
  params[1] = (struct config_param) { strdup ("script"), strdup ("x"), true };
  params[2] = (struct config_param) { strdup ("fd"), strdup (fd_value),
                                      false };
  opt.params = params;
  opt.nr_params = o0 & 3;
  opt.max_restarts = (o0 >> 2) & 3;
  opt.on_failure_error = o0 & 0x10;
  opt.ping_interval = o0 & 0x20 ? 1e6 : 0;
  opt.readonly = o0 & 0x40;
  no_shm = o0 & 0x80;
  quitting = false;
  memset (&cl, 0, sizeof cl);
  fk.in = size > 2 ? data + 2 : data;
  fk.left = size > 2 ? size - 2 : 0;
  fk.ignore_term = o1 & 2;
  fk.no_spawn = false;
  fk.nr_sent = 0;
  protocol_errors = 0;

  bproc_create_all (1);
  fk.bp = bp = bproc_first ();
  bp->arena = arena;

  die_armed = true;
  if (setjmp (die_jmp) == 0)
    serve (bp, o1 & 1);
  else if (bp->spawn.pid > 0)
    fuzz_bug ("the first start failed with the backend running");
  check_protocol_errors ();
  check_idle (bp);

  free (cl.caps.name);
  free (cl.caps.description);
  free_backend_proc (bp);
  for (i = 0; i < 3; ++i) {
    free (params[i].key);
    free (params[i].value);
  }
  return 0;
}
