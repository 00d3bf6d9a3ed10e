/* nbdkit front end: the channel to a backend process.
 *
 * Owns struct channel, the part of a backend_proc (backend-proc.h)
 * that is the socketpair end, the queue of frames to send, the reader of
 * frames coming back, the requests in flight (by id) and the requests
 * held back while the backend (re)starts.
 *
 * Every reply is validated (hp_decode_header, then hp_check_reply
 * against the request it claims to answer, and the request must have
 * been sent in full) before its payload is even allocated.  A backend
 * that breaks the protocol is killed by the supervisor.
 *
 * When the backend goes away, each request in flight that is safe to
 * repeat is held, to be sent again to the next incarnation -- again
 * and again, for as long as the supervisor restarts the backend (its
 * restart intensity is the bound: past it the held requests fail); the
 * others complete with EIO (reply NULL).  A
 * request completes exactly once.  A request keeps its payload until it
 * completes, so that it can be sent again.
 *
 * With a request timeout set, the oldest request in flight is watched:
 * if the backend has not answered it in time the supervisor is told.
 *
 * A descriptor the backend passes (SCM_RIGHTS, only with an OPEN reply
 * that announces passthrough) is matched to the frame it came with by
 * stream position (stream_take_fd): the reply's callback may claim it
 * with channel_take_reply_fd while it runs; one not claimed, or one
 * that came with any other frame, is closed.
 *
 * With the shared-memory arena active (nbdkit/arena.c), PREAD and
 * PWRITE name a slot instead of carrying the data: a write's payload
 * that is not in the arena yet is copied into a slot, a read gets a
 * slot that the backend fills.  A slot a dead backend may still touch
 * is quarantined until that process is gone.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-proc.h"
#include "byte-order.h"

struct pending {
  struct pending *next;         /* hash chain, or the held list */
  struct pending *older, *newer;  /* in flight, in order of sending */
  struct hp_header req;         /* as sent (id, handle filled in) */
  struct bhandle *bh;           /* NULL: h->handle is used as is */
  void *payload;                /* owned until completion */
  uint32_t len;                 /* of payload, sent inline */
  void *slot;                   /* PREAD: the arena slot for the data */
  unsigned flags;               /* CH_* */
  int fd;                       /* passed with the frame, or -1 */
  unsigned sends;
  uint64_t end_offset;          /* channel bytes queued after its frame */
  ev_tstamp sent_at;
  backend_cb cb;
  void *opaque;
};

#define HELD_BYTES_PER_TURN (1024 * 1024)
#define HELD_REQUESTS_PER_TURN 64

/* Requests sent again to this incarnation and not answered yet. */
#define CH_RESENDING 0x100

#define INBUF_SIZE (256 * 1024)

static void on_held_timer (struct ev_loop *l, ev_timer *w, int revents);

size_t
channel_in_flight (const struct backend_proc *bp)
{
  return bp->chan.nr_pending + bp->chan.nr_held;
}

bool
channel_is_open (const struct backend_proc *bp)
{
  return bp->chan.stream.open;
}

/* ---- the table of requests in flight ---- */

static int
table_grow (struct channel *c)
{
  size_t i, n = c->table_size ? c->table_size * 2 : 256;
  struct pending **t = calloc (n, sizeof *t);

  if (!t)
    return -1;
  for (i = 0; i < c->table_size; ++i) {
    struct pending *p, *next;

    for (p = c->table[i]; p; p = next) {
      next = p->next;
      p->next = t[p->req.id & (n - 1)];
      t[p->req.id & (n - 1)] = p;
    }
  }
  free (c->table);
  c->table = t;
  c->table_size = n;
  return 0;
}

static void
table_insert (struct channel *c, struct pending *p)
{
  size_t i = p->req.id & (c->table_size - 1);

  p->next = c->table[i];
  c->table[i] = p;
  c->nr_pending++;
  /* Newest at the end of the age list. */
  p->newer = NULL;
  p->older = c->newest;
  if (c->newest)
    c->newest->newer = p;
  else
    c->oldest = p;
  c->newest = p;
}

static void
age_unlink (struct channel *c, struct pending *p)
{
  if (p->older)
    p->older->newer = p->newer;
  else
    c->oldest = p->newer;
  if (p->newer)
    p->newer->older = p->older;
  else
    c->newest = p->older;
  p->older = p->newer = NULL;
}

static struct pending *
table_remove (struct channel *c, uint64_t id)
{
  struct pending **pp;

  if (!c->table_size)
    return NULL;
  for (pp = &c->table[id & (c->table_size - 1)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->req.id == id) {
      struct pending *p = *pp;

      *pp = p->next;
      p->next = NULL;
      c->nr_pending--;
      age_unlink (c, p);
      return p;
    }
  }
  return NULL;
}

/* ---- completion ---- */

static void
complete (struct backend_proc *bp, struct pending *p,
          const struct hp_header *reply, void *payload, uint32_t len)
{
  struct channel *c = &bp->chan;

  if ((p->flags & CH_RESENDING) && --c->resending == 0)
    nbdkit_debug ("%s: the requests sent again after the restart are all "
                  "answered", bproc_name (bp));
  payload_free (p->payload);
  if (p->slot && p->slot != payload)
    arena_free (bp->arena, p->slot);
  p->cb (p->opaque, reply, payload, len);
  free (p);
}

/* A request sent to a backend that is going away fails: while that
 * process runs its slots may still be written, so they wait for its
 * end (arena_release_quarantine); once it is gone they are free at once
 * (quarantined then, nothing would ever release them).
 */
static void
complete_lost (struct backend_proc *bp, struct pending *p)
{
  if (backend_pid (bp) > 0) {
    if (arena_contains (bp->arena, p->payload)) {
      arena_quarantine (bp->arena, p->payload);
      p->payload = NULL;
    }
    arena_quarantine (bp->arena, p->slot);
    p->slot = NULL;
  }
  complete (bp, p, NULL, NULL, 0);
}

/* A successful PREAD reply whose data the backend put in the slot:
 * the slot is the reply's payload (released with payload_free).
 */
static void
complete_from_slot (struct backend_proc *bp, struct pending *p,
                    const struct hp_header *reply)
{
  struct hp_header r = *reply;

  r.flags &= ~HP_FLAG_SHM;
  r.payload_len = p->req.count;
  complete (bp, p, &r, p->slot, p->req.count);
}

static void update_timeout (struct backend_proc *bp);

/* ---- timeouts ---- */

static void
on_timeout_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, chan.timeout_timer);
  struct channel *c = &bp->chan;

  if (c->oldest && ev_now (loop) - c->oldest->sent_at >= c->timeout_secs) {
    struct hp_header req = c->oldest->req;

    /* Stop watching until the supervisor has dealt with it. */
    ev_timer_stop (loop, &c->timeout_timer);
    c->on_timeout (bp, &req, ev_now (loop) - c->oldest->sent_at);
    return;
  }
  update_timeout (bp);
}

static void
update_timeout (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;

  if (c->timeout_secs <= 0)
    return;
  ev_timer_stop (loop, &c->timeout_timer);
  if (c->oldest && c->stream.open) {
    ev_tstamp left = c->oldest->sent_at + c->timeout_secs - ev_now (loop);

    ev_timer_set (&c->timeout_timer, left > 0.001 ? left : 0.001, 0);
    ev_timer_start (loop, &c->timeout_timer);
  }
}

void
channel_set_timeout (struct backend_proc *bp, double secs,
                     channel_timeout_cb cb)
{
  struct channel *c = &bp->chan;

  c->timeout_secs = secs;
  c->on_timeout = cb;
  ev_timer_init (&c->timeout_timer, on_timeout_timer, 1, 0);
}

/* ---- reading replies ---- */

/* Parse as many replies as the buffered bytes allow; read large
 * payloads straight into their buffer.  Returns -1 if the channel
 * broke.
 */
static int
process_input (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;
  const char *why;

  for (;;) {
    if (!c->cur_req) {
      if (c->rhdr_got == 0)
        c->frame_start = stream_position (&c->stream);
      c->rhdr_got += stream_take (&c->stream, c->rhdr + c->rhdr_got,
                               HP_HEADER_SIZE - c->rhdr_got);
      if (c->rhdr_got < HP_HEADER_SIZE)
        return 0;
      c->rhdr_got = 0;
      if (hp_decode_header (c->rhdr, &c->cur, &why) == -1) {
        supervisor_protocol_error (bp, why);
        return -1;
      }
      c->cur_req = table_remove (c, c->cur.id);
      if (!c->cur_req) {
        supervisor_protocol_error (bp, "a reply to a request id that is not "
                                   "in flight");
        return -1;
      }
      if (hp_check_reply (&c->cur_req->req, &c->cur, &why) == -1) {
        supervisor_protocol_error (bp, why);
        return -1;
      }
      if (c->stream.bytes_written < c->cur_req->end_offset) {
        supervisor_protocol_error (bp, "a reply to a request it has not "
                                   "received in full");
        return -1;
      }
      c->rpayload_got = 0;
      if (c->cur.payload_len) {
        /* One spare byte lets JSON and messages be NUL-terminated. */
        c->rpayload = malloc ((size_t) c->cur.payload_len + 1);
        if (!c->rpayload) {
          supervisor_protocol_error (bp, "out of memory for a reply payload");
          return -1;
        }
      }
    }

    if (c->rpayload_got < c->cur.payload_len) {
      c->rpayload_got += stream_take (&c->stream, c->rpayload + c->rpayload_got,
                                   c->cur.payload_len - c->rpayload_got);
      if (c->rpayload_got < c->cur.payload_len && stream_buffered (&c->stream) == 0 &&
          c->cur.payload_len - c->rpayload_got >= INBUF_SIZE / 2) {
        ssize_t r = stream_recv (&c->stream, c->rpayload + c->rpayload_got,
                          c->cur.payload_len - c->rpayload_got);
        if (r > 0)
          c->rpayload_got += r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          supervisor_channel_lost (bp);
          return -1;
        }
      }
      if (c->rpayload_got < c->cur.payload_len)
        return 0;
    }

    /* A complete reply. */
    {
      struct pending *p = c->cur_req;
      unsigned char *payload = c->rpayload;
      struct hp_header reply = c->cur;

      c->cur_req = NULL;
      c->rpayload = NULL;
      if (payload)
        payload[reply.payload_len] = '\0';
      /* A descriptor that came with this frame: its callback may claim
       * it (channel_take_reply_fd); else it is closed.
       */
      c->reply_fd = stream_take_fd (&c->stream, c->frame_start,
                                    c->frame_start + HP_HEADER_SIZE +
                                    reply.payload_len);
      if (reply.flags & HP_FLAG_SHM)
        complete_from_slot (bp, p, &reply);
      else
        complete (bp, p, &reply, payload, reply.payload_len);
      if (c->reply_fd >= 0) {
        nbdkit_debug ("%s: closing a descriptor that came with a %s "
                      "reply that does not take one", bproc_name (bp),
                      hp_type_name (reply.type & ~HP_REPLY));
        close (c->reply_fd);
      }
      c->reply_fd = -1;
      if (!c->stream.open)
        return -1;
    }
  }
}

static void
on_readable (void *opaque)
{
  struct backend_proc *bp = opaque;
  struct channel *c = &bp->chan;
  int i;

  /* Bounded work per wake-up so that one busy backend cannot starve
   * the clients.
   */
  for (i = 0; i < 16; ++i) {
    ssize_t r;

    if (process_input (bp) == -1)
      return;
    r = stream_fill (&c->stream);
    if (r == 0) {
      nbdkit_debug ("%s: the backend closed the channel", bproc_name (bp));
      supervisor_channel_lost (bp);
      return;
    }
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      nbdkit_debug ("backend channel: read: %m");
      supervisor_channel_lost (bp);
      return;
    }
  }
  if (process_input (bp) == 0)
    update_timeout (bp);
}

/* The backend has exited: take the replies it wrote before it went
 * (such as SHUTDOWN's, which may be read after its exit was seen).
 * Stops at the end of what is buffered in the socket.
 */
void
channel_read_remaining (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;
  int i;

  for (i = 0; c->stream.open && i < 64; ++i) {
    if (process_input (bp) == -1 || stream_fill (&c->stream) <= 0)
      break;
  }
  if (c->stream.open)
    process_input (bp);
}

/* ---- writing requests ---- */

/* When the socket can take more, and just before the loop waits (the
 * frames queued in one loop iteration leave together, in one writev).
 */
static void
flush_output (void *opaque)
{
  struct backend_proc *bp = opaque;

  if (stream_flush (&bp->chan.stream) == -1) {
    nbdkit_debug ("backend channel: write: %m");
    supervisor_channel_lost (bp);
  }
}

static const struct stream_ops chan_ops = {
  .readable = on_readable,
  .writable = flush_output,
  .flush = flush_output,
};

/* Decide whether a data request goes through the arena: a PWRITE
 * payload moves into a slot, a PREAD gets one.  Returns true if the
 * request names a slot (then ref holds its offset).
 */
static bool
use_arena (struct backend_proc *bp, struct pending *p,
           unsigned char ref[HP_SHM_REF_SIZE])
{
  struct arena *a = bp->arena;
  void *slot;

  p->req.flags &= ~HP_FLAG_SHM;
  if (!arena_is_active (a) || p->req.count == 0)
    return false;
  if (p->req.type == HP_PWRITE) {
    if (!arena_contains (a, p->payload)) {
      slot = arena_alloc (a, p->req.count);
      if (!slot)
        return false;
      memcpy (slot, p->payload, p->req.count);
      payload_free (p->payload);
      p->payload = slot;
    }
    slot = p->payload;
  }
  else if (p->req.type == HP_PREAD) {
    if (!p->slot)
      p->slot = arena_alloc (a, p->req.count);
    slot = p->slot;
    if (!slot)
      return false;
  }
  else
    return false;
  p->req.flags |= HP_FLAG_SHM;
  put_be64 (ref, arena_offset (a, slot));
  return true;
}

/* Put a request on the wire. */
static void
transmit (struct backend_proc *bp, struct pending *p)
{
  struct channel *c = &bp->chan;
  unsigned char hdr[HP_HEADER_SIZE + HP_SHM_REF_SIZE];
  bool shm;
  size_t hdr_len;
  int r;

  if (p->bh) {
    if (!p->bh->valid) {
      complete (bp, p, NULL, NULL, 0);
      return;
    }
    p->req.handle = p->bh->id;
  }
  if (c->nr_pending + 1 > c->table_size && table_grow (c) == -1) {
    complete (bp, p, NULL, NULL, 0);
    return;
  }
  p->req.id = c->next_id++;
  shm = use_arena (bp, p, hdr + HP_HEADER_SIZE);
  p->req.payload_len = shm ? HP_SHM_REF_SIZE : p->len;
  hp_encode_header (&p->req, hdr);
  hdr_len = HP_HEADER_SIZE + (shm ? HP_SHM_REF_SIZE : 0);
  /* The stream writes it before the loop waits; a descriptor goes
   * with the frame's first byte, in order with what is queued.
   */
  if (p->fd >= 0) {
    r = stream_queue_fd (&c->stream, hdr, hdr_len, p->fd);
    if (r == 0 && !shm)
      r = stream_queue (&c->stream, NULL, 0, p->payload, p->len, NULL);
  }
  else
    r = stream_queue (&c->stream, hdr, hdr_len, shm ? NULL : p->payload,
                      shm ? 0 : p->len, NULL);
  if (r == -1) {
    complete (bp, p, NULL, NULL, 0);
    return;
  }
  c->bytes_queued += HP_HEADER_SIZE + p->req.payload_len;
  p->end_offset = c->bytes_queued;
  p->sends++;
  p->sent_at = ev_now (loop);
  table_insert (c, p);
  if (c->oldest == p)
    update_timeout (bp);
}

static void
hold (struct channel *c, struct pending *p)
{
  p->next = NULL;
  *c->held_tail = p;
  c->held_tail = &p->next;
  c->nr_held++;
}

void
channel_send (struct backend_proc *bp, const struct hp_header *h,
              struct bhandle *bh, void *payload, uint32_t len, int fd,
              unsigned flags, backend_cb cb, void *opaque)
{
  struct channel *c = &bp->chan;
  struct pending *p = calloc (1, sizeof *p);

  if (!p) {
    payload_free (payload);
    cb (opaque, NULL, NULL, 0);
    return;
  }
  p->req = *h;
  p->req.status = 0;
  p->req.payload_len = payload ? len : 0;
  p->len = p->req.payload_len;
  p->bh = bh;
  p->payload = payload;
  p->flags = flags;
  p->fd = fd;
  p->cb = cb;
  p->opaque = opaque;

  if (c->stream.open && ((c->ready && !c->held_head) || (flags & CH_STARTUP)))
    transmit (bp, p);
  else if ((supervisor_may_hold (bp) || (c->ready && c->stream.open)) &&
           !(flags & CH_STARTUP))
    hold (c, p);                /* behind the held ones, if ready */
  else
    complete (bp, p, NULL, NULL, 0);
}

/* ---- the life of the channel ---- */

bool
channel_reserve (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;

  return c->stream.in.buf || inbuf_init (&c->stream.in, INBUF_SIZE) == 0;
}

void
channel_init (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;

  c->next_id = 1;
  c->reply_fd = -1;
  c->held_tail = &c->held_head;
  ev_timer_init (&c->held_timer, on_held_timer, 0, 0);
}

int
channel_take_reply_fd (struct backend_proc *bp)
{
  int fd = bp->chan.reply_fd;

  bp->chan.reply_fd = -1;
  return fd;
}

void
channel_open (struct backend_proc *bp, int fd)
{
  struct channel *c = &bp->chan;

  /* Cannot fail: channel_reserve made the buffer. */
  if (stream_init (&c->stream, fd, fd, INBUF_SIZE, &chan_ops, bp) == -1)
    abort ();
  /* A descriptor comes only with OPEN's reply (passthrough). */
  stream_take_fds (&c->stream);
  c->ready = false;
  c->bytes_queued = 0;
  c->rhdr_got = 0;
  c->cur_req = NULL;
  stream_read_start (&c->stream);
}

/* Send a slice of the held requests; the rest on the next turn. */
static void
send_held (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;
  struct pending *p;
  uint64_t bytes = 0;
  unsigned n = 0;

  while ((p = c->held_head) != NULL && c->stream.open && c->ready) {
    if (n == HELD_REQUESTS_PER_TURN || bytes >= HELD_BYTES_PER_TURN) {
      if (!ev_is_active (&c->held_timer)) {
        ev_timer_set (&c->held_timer, 0, 0);
        ev_timer_start (loop, &c->held_timer);
      }
      return;
    }
    c->held_head = p->next;
    if (!c->held_head)
      c->held_tail = &c->held_head;
    c->nr_held--;
    p->next = NULL;
    n++;
    if (p->req.type == HP_PWRITE || p->req.type == HP_PREAD)
      bytes += p->req.count;
    transmit (bp, p);
  }
}

static void
on_held_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  send_held (BPROC_OF (w, chan.held_timer));
}

void
channel_set_ready (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;
  struct pending *p;

  c->ready = true;
  for (p = c->held_head; p; p = p->next)
    if (p->sends > 0 && !(p->flags & CH_RESENDING)) {
      p->flags |= CH_RESENDING;
      c->resending++;
    }
  send_held (bp);
}

static int
compare_ids (const void *a, const void *b)
{
  const struct pending *pa = *(struct pending *const *) a;
  const struct pending *pb = *(struct pending *const *) b;

  return pa->req.id < pb->req.id ? -1 : pa->req.id > pb->req.id;
}

/* Is it safe to send this request again to a new backend?  Data
 * requests are idempotent; so are OPEN (a new handle), LIST_EXPORTS,
 * DEFAULT_EXPORT and PING (the watchdog's then asks the new backend).
 * Start-up messages are replayed by the supervisor, and what is sent
 * with CH_STARTUP (the supervisor's own PING too) is for one backend.
 */
static bool
may_resend (const struct pending *p)
{
  if (p->flags & CH_STARTUP)
    return false;
  switch (p->req.type) {
  case HP_PREAD: case HP_PWRITE: case HP_FLUSH: case HP_TRIM:
  case HP_ZERO: case HP_CACHE: case HP_EXTENTS:
  case HP_OPEN: case HP_LIST_EXPORTS: case HP_DEFAULT_EXPORT: case HP_PING:
    return true;
  default:
    return false;
  }
}

void
channel_close (struct backend_proc *bp, bool keep_for_resend)
{
  struct channel *c = &bp->chan;
  struct pending **all, *p;
  size_t i, n = 0;

  if (!c->stream.open)
    return;
  ev_timer_stop (loop, &c->held_timer);
  if (c->timeout_secs > 0)
    ev_timer_stop (loop, &c->timeout_timer);
  stream_close (&c->stream, false);
  c->ready = false;
  arena_set_active (bp->arena, false);
  free (c->rpayload);
  c->rpayload = NULL;
  if (c->cur_req) {
    /* Its reply was being read: it is in no table now. */
    p = c->cur_req;
    c->cur_req = NULL;
    p->next = NULL;
    table_insert (c, p);
  }

  /* Everything in flight: hold what may be sent again (oldest first,
   * ahead of what was already held), fail the rest.
   */
  all = malloc ((c->nr_pending ? c->nr_pending : 1) * sizeof *all);
  for (i = 0; i < c->table_size; ++i) {
    while ((p = c->table[i]) != NULL) {
      c->table[i] = p->next;
      p->next = NULL;
      if (all)
        all[n++] = p;
      else
        complete_lost (bp, p);
    }
  }
  c->nr_pending = 0;
  c->oldest = c->newest = NULL;
  if (all) {
    struct pending *resend = NULL, **tail = &resend;

    qsort (all, n, sizeof *all, compare_ids);
    for (i = 0; i < n; ++i) {
      p = all[i];
      p->older = p->newer = NULL;
      if (keep_for_resend && may_resend (p)) {
        *tail = p;
        tail = &p->next;
        c->nr_held++;
      }
      else
        complete_lost (bp, p);
    }
    if (resend) {
      *tail = c->held_head;
      if (!c->held_head)
        c->held_tail = tail;
      c->held_head = resend;
    }
    free (all);
  }
}

void
channel_fail_held (struct backend_proc *bp)
{
  struct channel *c = &bp->chan;
  struct pending *p;

  while ((p = c->held_head) != NULL) {
    c->held_head = p->next;
    if (!c->held_head)
      c->held_tail = &c->held_head;
    c->nr_held--;
    complete_lost (bp, p);
  }
}
