/* nbdkit front end: the channel to the backend process.
 *
 * Owns the socketpair end, the queue of frames to send, the reader of
 * frames coming back, the requests in flight (by id) and the requests
 * held back while the backend (re)starts.
 *
 * Every reply is validated (hp_decode_header, then hp_check_reply
 * against the request it claims to answer, and the request must have
 * been sent in full) before its payload is even allocated.  A backend
 * that breaks the protocol is killed by the supervisor.
 *
 * When the backend goes away, each request in flight that is safe to
 * repeat and has not been repeated yet is held, to be sent again to the
 * next incarnation; the others complete with EIO (reply NULL).  A
 * request completes exactly once.  A request keeps its payload until it
 * completes, so that it can be sent again.
 *
 * With a request timeout set, the oldest request in flight is watched:
 * if the backend has not answered it in time the supervisor is told.
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

#include "internal.h"
#include "stream.h"
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

static struct stream chan;      /* the socket, its buffers (stream.c) */
static bool ready;              /* may send ordinary requests */
static uint64_t next_id = 1;
static uint64_t bytes_queued;   /* ever, on this channel (and written:
                                 * chan.bytes_written) */

/* Requests in flight, hashed by id (ids are sequential). */
static struct pending **table;
static size_t table_size, nr_pending;
static struct pending *oldest, *newest;

/* Requests waiting for the backend to be ready.  Once it is, they are
 * sent a slice per turn of the loop (copying write payloads into the
 * arena costs page faults and copies: tens of MiB in one turn would
 * hold the loop); requests made meanwhile queue behind them.
 */
static struct pending *held_head, **held_tail = &held_head;
static size_t nr_held;
static ev_timer held_timer;    /* the next slice, on the next turn */
static void on_held_timer (struct ev_loop *l, ev_timer *w, int revents);
#define HELD_BYTES_PER_TURN (1024 * 1024)
#define HELD_REQUESTS_PER_TURN 64

/* Requests sent again to this incarnation and not answered yet. */
#define CH_RESENDING 0x100
static size_t resending;

/* The reply being read. */
static unsigned char rhdr[HP_HEADER_SIZE];
static size_t rhdr_got;
static struct hp_header cur;
static struct pending *cur_req;
static unsigned char *rpayload;
static uint32_t rpayload_got;

/* Request timeout. */
static double timeout_secs;
static ev_timer timeout_timer;
static channel_timeout_cb on_timeout;

#define INBUF_SIZE (256 * 1024)

size_t
channel_in_flight (void)
{
  return nr_pending + nr_held;
}

bool
channel_is_open (void)
{
  return chan.open;
}

/* ---- the table of requests in flight ---- */

static int
table_grow (void)
{
  size_t i, n = table_size ? table_size * 2 : 256;
  struct pending **t = calloc (n, sizeof *t);

  if (!t)
    return -1;
  for (i = 0; i < table_size; ++i) {
    struct pending *p, *next;

    for (p = table[i]; p; p = next) {
      next = p->next;
      p->next = t[p->req.id & (n - 1)];
      t[p->req.id & (n - 1)] = p;
    }
  }
  free (table);
  table = t;
  table_size = n;
  return 0;
}

static void
table_insert (struct pending *p)
{
  size_t i = p->req.id & (table_size - 1);

  p->next = table[i];
  table[i] = p;
  nr_pending++;
  /* Newest at the end of the age list. */
  p->newer = NULL;
  p->older = newest;
  if (newest)
    newest->newer = p;
  else
    oldest = p;
  newest = p;
}

static void
age_unlink (struct pending *p)
{
  if (p->older)
    p->older->newer = p->newer;
  else
    oldest = p->newer;
  if (p->newer)
    p->newer->older = p->older;
  else
    newest = p->older;
  p->older = p->newer = NULL;
}

static struct pending *
table_remove (uint64_t id)
{
  struct pending **pp;

  if (!table_size)
    return NULL;
  for (pp = &table[id & (table_size - 1)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->req.id == id) {
      struct pending *p = *pp;

      *pp = p->next;
      p->next = NULL;
      nr_pending--;
      age_unlink (p);
      return p;
    }
  }
  return NULL;
}

/* ---- completion ---- */

static void
complete (struct pending *p, const struct hp_header *reply,
          void *payload, uint32_t len)
{
  if ((p->flags & CH_RESENDING) && --resending == 0)
    nbdkit_debug ("the requests sent again after the restart are all "
                  "answered");
  data_free (p->payload);
  if (p->slot && p->slot != payload)
    arena_free (p->slot);
  p->cb (p->opaque, reply, payload, len);
  free (p);
}

/* A request sent to a backend that is going away fails: its slots may
 * still be written by that process, so they wait for its end.
 */
static void
complete_lost (struct pending *p)
{
  if (arena_contains (p->payload)) {
    arena_quarantine (p->payload);
    p->payload = NULL;
  }
  arena_quarantine (p->slot);
  p->slot = NULL;
  complete (p, NULL, NULL, 0);
}

/* A successful PREAD reply whose data the backend put in the slot. */
static void
complete_from_slot (struct pending *p, const struct hp_header *reply)
{
  struct hp_header r = *reply;
  void *data = p->slot;

  r.flags &= ~HP_FLAG_SHM;
  r.payload_len = p->req.count;
  if (!(p->flags & CH_DATA)) {
    /* The caller expects malloc'd memory. */
    data = malloc (p->req.count ? p->req.count : 1);
    if (data)
      memcpy (data, p->slot, p->req.count);
    else
      r.status = HP_ENOMEM;
  }
  complete (p, &r, data, data ? p->req.count : 0);
}

static void update_timeout (void);

/* ---- timeouts ---- */

static void
on_timeout_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  if (oldest && ev_now (loop) - oldest->sent_at >= timeout_secs) {
    struct hp_header req = oldest->req;

    /* Stop watching until the supervisor has dealt with it. */
    ev_timer_stop (loop, &timeout_timer);
    on_timeout (&req, ev_now (loop) - oldest->sent_at);
    return;
  }
  update_timeout ();
}

static void
update_timeout (void)
{
  if (timeout_secs <= 0)
    return;
  ev_timer_stop (loop, &timeout_timer);
  if (oldest && chan.open) {
    ev_tstamp left = oldest->sent_at + timeout_secs - ev_now (loop);

    ev_timer_set (&timeout_timer, left > 0.001 ? left : 0.001, 0);
    ev_timer_start (loop, &timeout_timer);
  }
}

void
channel_set_timeout (double secs, channel_timeout_cb cb)
{
  timeout_secs = secs;
  on_timeout = cb;
  ev_timer_init (&timeout_timer, on_timeout_timer, 1, 0);
}

/* ---- reading replies ---- */

/* Parse as many replies as the buffered bytes allow; read large
 * payloads straight into their buffer.  Returns -1 if the channel
 * broke.
 */
static int
process_input (void)
{
  const char *why;

  for (;;) {
    if (!cur_req) {
      rhdr_got += stream_take (&chan, rhdr + rhdr_got,
                               HP_HEADER_SIZE - rhdr_got);
      if (rhdr_got < HP_HEADER_SIZE)
        return 0;
      rhdr_got = 0;
      if (hp_decode_header (rhdr, &cur, &why) == -1) {
        supervisor_protocol_error (why);
        return -1;
      }
      cur_req = table_remove (cur.id);
      if (!cur_req) {
        supervisor_protocol_error ("a reply to a request id that is not "
                                   "in flight");
        return -1;
      }
      if (hp_check_reply (&cur_req->req, &cur, &why) == -1) {
        supervisor_protocol_error (why);
        return -1;
      }
      if (chan.bytes_written < cur_req->end_offset) {
        supervisor_protocol_error ("a reply to a request it has not "
                                   "received in full");
        return -1;
      }
      rpayload_got = 0;
      if (cur.payload_len) {
        /* One spare byte lets JSON and messages be NUL-terminated. */
        rpayload = malloc ((size_t) cur.payload_len + 1);
        if (!rpayload) {
          supervisor_protocol_error ("out of memory for a reply payload");
          return -1;
        }
      }
    }

    if (rpayload_got < cur.payload_len) {
      rpayload_got += stream_take (&chan, rpayload + rpayload_got,
                                   cur.payload_len - rpayload_got);
      if (rpayload_got < cur.payload_len && stream_buffered (&chan) == 0 &&
          cur.payload_len - rpayload_got >= INBUF_SIZE / 2) {
        ssize_t r = stream_recv (&chan, rpayload + rpayload_got,
                          cur.payload_len - rpayload_got);
        if (r > 0)
          rpayload_got += r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          supervisor_channel_lost ();
          return -1;
        }
      }
      if (rpayload_got < cur.payload_len)
        return 0;
    }

    /* A complete reply. */
    {
      struct pending *p = cur_req;
      unsigned char *payload = rpayload;
      struct hp_header reply = cur;

      cur_req = NULL;
      rpayload = NULL;
      if (payload)
        payload[reply.payload_len] = '\0';
      if (reply.flags & HP_FLAG_SHM)
        complete_from_slot (p, &reply);
      else
        complete (p, &reply, payload, reply.payload_len);
      if (!chan.open)
        return -1;
    }
  }
}

static void
on_readable (void *opaque)
{
  int i;

  /* Bounded work per wake-up so that one busy backend cannot starve
   * the clients.
   */
  for (i = 0; i < 16; ++i) {
    ssize_t r;

    if (process_input () == -1)
      return;
    r = stream_fill (&chan);
    if (r == 0) {
      nbdkit_debug ("the backend closed the channel");
      supervisor_channel_lost ();
      return;
    }
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      nbdkit_debug ("backend channel: read: %m");
      supervisor_channel_lost ();
      return;
    }
  }
  if (process_input () == 0)
    update_timeout ();
}

/* The backend has exited: take the replies it wrote before it went
 * (such as SHUTDOWN's, which may be read after its exit was seen).
 * Stops at the end of what is buffered in the socket.
 */
void
channel_read_remaining (void)
{
  int i;

  for (i = 0; chan.open && i < 64; ++i) {
    if (process_input () == -1 || stream_fill (&chan) <= 0)
      break;
  }
  if (chan.open)
    process_input ();
}

/* ---- writing requests ---- */

/* When the socket can take more, and just before the loop waits (the
 * frames queued in one loop iteration leave together, in one writev).
 */
static void
flush_output (void *opaque)
{
  if (stream_flush (&chan) == -1) {
    nbdkit_debug ("backend channel: write: %m");
    supervisor_channel_lost ();
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
use_arena (struct pending *p, unsigned char ref[HP_SHM_REF_SIZE])
{
  void *slot;

  p->req.flags &= ~HP_FLAG_SHM;
  if (!arena_is_active () || p->req.count == 0)
    return false;
  if (p->req.type == HP_PWRITE) {
    if (!arena_contains (p->payload)) {
      slot = arena_alloc (p->req.count);
      if (!slot)
        return false;
      memcpy (slot, p->payload, p->req.count);
      free (p->payload);
      p->payload = slot;
    }
    slot = p->payload;
  }
  else if (p->req.type == HP_PREAD) {
    if (!p->slot)
      p->slot = arena_alloc (p->req.count);
    slot = p->slot;
    if (!slot)
      return false;
  }
  else
    return false;
  p->req.flags |= HP_FLAG_SHM;
  put_be64 (ref, arena_offset (slot));
  return true;
}

/* Put a request on the wire. */
static void
transmit (struct pending *p)
{
  unsigned char hdr[HP_HEADER_SIZE + HP_SHM_REF_SIZE];
  bool shm;
  size_t hdr_len;
  int r;

  if (p->bh) {
    if (!p->bh->valid) {
      complete (p, NULL, NULL, 0);
      return;
    }
    p->req.handle = p->bh->id;
  }
  if (nr_pending + 1 > table_size && table_grow () == -1) {
    complete (p, NULL, NULL, 0);
    return;
  }
  p->req.id = next_id++;
  shm = use_arena (p, hdr + HP_HEADER_SIZE);
  p->req.payload_len = shm ? HP_SHM_REF_SIZE : p->len;
  hp_encode_header (&p->req, hdr);
  hdr_len = HP_HEADER_SIZE + (shm ? HP_SHM_REF_SIZE : 0);
  /* The stream writes it before the loop waits; a descriptor goes
   * with the frame's first byte, in order with what is queued.
   */
  if (p->fd >= 0) {
    r = stream_queue_fd (&chan, hdr, hdr_len, p->fd);
    if (r == 0 && !shm)
      r = stream_queue (&chan, NULL, 0, p->payload, p->len, NULL);
  }
  else
    r = stream_queue (&chan, hdr, hdr_len, shm ? NULL : p->payload,
                      shm ? 0 : p->len, NULL);
  if (r == -1) {
    complete (p, NULL, NULL, 0);
    return;
  }
  bytes_queued += HP_HEADER_SIZE + p->req.payload_len;
  p->end_offset = bytes_queued;
  p->sends++;
  p->sent_at = ev_now (loop);
  table_insert (p);
  if (oldest == p)
    update_timeout ();
}

static void
hold (struct pending *p)
{
  p->next = NULL;
  *held_tail = p;
  held_tail = &p->next;
  nr_held++;
}

void
channel_send (const struct hp_header *h, struct bhandle *bh,
              void *payload, uint32_t len, unsigned flags,
              backend_cb cb, void *opaque)
{
  channel_send_fd (h, bh, payload, len, -1, flags, cb, opaque);
}

void
channel_send_fd (const struct hp_header *h, struct bhandle *bh,
                 void *payload, uint32_t len, int fd, unsigned flags,
                 backend_cb cb, void *opaque)
{
  struct pending *p = calloc (1, sizeof *p);

  if (!p) {
    free (payload);
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

  if (chan.open && ((ready && !held_head) || (flags & CH_STARTUP)))
    transmit (p);
  else if ((supervisor_may_hold () || (ready && chan.open)) &&
           !(flags & CH_STARTUP))
    hold (p);                   /* behind the held ones, if ready */
  else
    complete (p, NULL, NULL, 0);
}

void
channel_send_json (uint16_t type, struct bhandle *bh, json_t *req,
                   unsigned flags, backend_cb cb, void *opaque)
{
  struct hp_header h = { .type = type };
  char *s = req ? json_dumps (req, JSON_COMPACT) : strdup ("{}");

  json_decref (req);
  if (!s) {
    cb (opaque, NULL, NULL, 0);
    return;
  }
  channel_send (&h, bh, s, strlen (s), flags, cb, opaque);
}

json_t *
channel_parse_json (const void *payload, uint32_t len, const char **why)
{
  json_error_t err;
  json_t *j;

  if (len == 0)
    return json_object ();
  j = json_loadb (payload, len, 0, &err);
  if (!j || !json_is_object (j)) {
    json_decref (j);
    *why = "the reply is not a JSON object";
    return NULL;
  }
  return j;
}

/* ---- the life of the channel ---- */

bool
channel_reserve (void)
{
  return chan.in.buf || inbuf_init (&chan.in, INBUF_SIZE) == 0;
}

void
channel_open (int fd)
{
  /* Cannot fail: channel_reserve made the buffer. */
  if (stream_init (&chan, fd, fd, INBUF_SIZE, &chan_ops, NULL) == -1)
    abort ();
  ready = false;
  bytes_queued = 0;
  rhdr_got = 0;
  cur_req = NULL;
  ev_timer_init (&held_timer, on_held_timer, 0, 0);
  stream_read_start (&chan);
}

/* Send a slice of the held requests; the rest on the next turn. */
static void
send_held (void)
{
  struct pending *p;
  uint64_t bytes = 0;
  unsigned n = 0;

  while ((p = held_head) != NULL && chan.open && ready) {
    if (n == HELD_REQUESTS_PER_TURN || bytes >= HELD_BYTES_PER_TURN) {
      if (!ev_is_active (&held_timer)) {
        ev_timer_set (&held_timer, 0, 0);
        ev_timer_start (loop, &held_timer);
      }
      return;
    }
    held_head = p->next;
    if (!held_head)
      held_tail = &held_head;
    nr_held--;
    p->next = NULL;
    n++;
    if (p->req.type == HP_PWRITE || p->req.type == HP_PREAD)
      bytes += p->req.count;
    transmit (p);
  }
}

static void
on_held_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  send_held ();
}

void
channel_set_ready (void)
{
  struct pending *p;

  ready = true;
  for (p = held_head; p; p = p->next)
    if (p->sends > 0 && !(p->flags & CH_RESENDING)) {
      p->flags |= CH_RESENDING;
      resending++;
    }
  send_held ();
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
    return p->sends < 2;
  default:
    return false;
  }
}

void
channel_close (bool keep_for_resend)
{
  struct pending **all, *p;
  size_t i, n = 0;

  if (!chan.open)
    return;
  ev_timer_stop (loop, &held_timer);
  if (timeout_secs > 0)
    ev_timer_stop (loop, &timeout_timer);
  stream_close (&chan, false);
  ready = false;
  arena_set_active (false);
  free (rpayload);
  rpayload = NULL;
  if (cur_req) {
    /* Its reply was being read: it is in no table now. */
    p = cur_req;
    cur_req = NULL;
    p->next = NULL;
    table_insert (p);
  }

  /* Everything in flight: hold what may be sent again (oldest first,
   * ahead of what was already held), fail the rest.
   */
  all = malloc ((nr_pending ? nr_pending : 1) * sizeof *all);
  for (i = 0; i < table_size; ++i) {
    while ((p = table[i]) != NULL) {
      table[i] = p->next;
      p->next = NULL;
      if (all)
        all[n++] = p;
      else
        complete_lost (p);
    }
  }
  nr_pending = 0;
  oldest = newest = NULL;
  if (all) {
    struct pending *resend = NULL, **tail = &resend;

    qsort (all, n, sizeof *all, compare_ids);
    for (i = 0; i < n; ++i) {
      p = all[i];
      p->older = p->newer = NULL;
      if (keep_for_resend && may_resend (p)) {
        *tail = p;
        tail = &p->next;
        nr_held++;
      }
      else
        complete_lost (p);
    }
    if (resend) {
      *tail = held_head;
      if (!held_head)
        held_tail = tail;
      held_head = resend;
    }
    free (all);
  }
}

void
channel_fail_held (void)
{
  struct pending *p;

  while ((p = held_head) != NULL) {
    held_head = p->next;
    if (!held_head)
      held_tail = &held_head;
    nr_held--;
    complete_lost (p);
  }
}
