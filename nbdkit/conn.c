/* nbdkit front end: one client connection.
 *
 * Owns struct conn: the client's stream (stream.c: the socket, its
 * buffers, the batching of output, TLS), the read the protocol asked
 * for, and the connection's lifetime (a reference count: every backend
 * request in flight for the client holds a reference, so a connection
 * that closed while requests were out stays in memory until the last
 * reply arrives).  The protocol above it (handshake.c, transmit.c)
 * asks for "exactly N bytes, then call me" and queues output; it never
 * touches the socket.  Never blocks.
 *
 * Output is written once per loop iteration: replies queued while the
 * loop handles events leave together in one writev just before the
 * loop waits, and only a socket that would block costs a write
 * watcher (both the stream's doing).
 *
 * After STARTTLS the same reads and writes go through the stream's TLS
 * session (tls.c); the TLS handshake itself is driven from here,
 * waiting in the loop for whichever direction gnutls asks for.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "stream.h"

#define INBUF_SIZE (64 * 1024)
#define MAX_READS_PER_WAKEUP 16
/* And at most this many bytes: a large write's payload is read in
 * pieces over several turns of the loop, so that copying it (and the
 * page faults of first touching its buffer) never holds the loop for
 * long.
 */
#define MAX_BYTES_PER_WAKEUP (1024 * 1024)

struct conn {
  struct conn *next, *prev;     /* all connections */
  struct stream stream;
  char *peer;
  uint64_t id;                  /* 1, 2, ... in order of accepting */
  int refs;
  bool closed;
  bool close_after_output;
  bool in_process;
  /* The read asked for. */
  bool want_active;
  unsigned char *want_buf;
  size_t want_len, want_got;
  conn_read_cb want_cb;
  /* A read in place (conn_read_in_place): want_buf is in a mapping of
   * the file in_place_fd, at in_place_offset; NULL ready when not.
   */
  bool (*in_place_ready) (void);
  int in_place_fd;
  uint64_t in_place_offset;
  int want_err;                 /* why the rest was thrown away, or 0 */
  bool in_place_by_pwrite;      /* recv into the mapping faulted */
  bool exact_next;              /* read the next want exactly (below) */
  /* Waiting for a later turn of the loop (conn_later), on one list. */
  bool later;
  struct conn *next_later;
  /* TLS */
  bool tls_starting;            /* waiting for plaintext output to go */
  bool handshaking;
  conn_read_cb tls_done;
  struct session session;
};

static struct conn *conns;

static void process_input (struct conn *conn);
static void begin_tls (struct conn *conn);
static void handshake_step (struct conn *conn);

struct session *
conn_session (struct conn *conn)
{
  return &conn->session;
}

const char *
conn_peer (const struct conn *conn)
{
  return conn->peer;
}

uint64_t
conn_id (const struct conn *conn)
{
  return conn->id;
}

bool
conn_is_tls (const struct conn *conn)
{
  return conn->stream.tls != NULL;
}

bool
conn_is_closed (const struct conn *conn)
{
  return conn->closed;
}

size_t
conn_output_bytes (const struct conn *conn)
{
  return stream_queued (&conn->stream);
}

void
conn_ref (struct conn *conn)
{
  conn->refs++;
}

void
conn_unref (struct conn *conn)
{
  if (--conn->refs > 0)
    return;
  session_free (conn);
  stream_close (&conn->stream, false);
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  free (conn->peer);
  free (conn);
}

static void
on_readable (void *opaque)
{
  struct conn *conn = opaque;

  if (conn->handshaking)
    handshake_step (conn);
  else
    process_input (conn);
}

static void
flush_output (struct conn *conn)
{
  int r;

  if (conn->closed)
    return;
  r = stream_flush (&conn->stream);
  if (r == -1) {
    nbdkit_debug ("%s: write: %m", conn->peer);
    conn_close (conn);
    return;
  }
  if (r == 1)
    return;                     /* the stream waits for the socket */
  if (conn->close_after_output)
    conn_close (conn);
  else if (conn->tls_starting)
    begin_tls (conn);
  else
    transmit_maybe_resume (conn);
}

/* Just before the loop waits: write what this iteration queued. */
static void
on_flush (void *opaque)
{
  struct conn *conn = opaque;

  conn_ref (conn);
  if (conn->handshaking)
    stream_write_watch (&conn->stream, true);
  else
    flush_output (conn);
  conn_unref (conn);
}

static void
on_writable (void *opaque)
{
  struct conn *conn = opaque;

  conn_ref (conn);
  if (conn->handshaking)
    handshake_step (conn);
  else
    flush_output (conn);
  conn_unref (conn);
}

/* ---- TLS ---- */

void
conn_start_tls (struct conn *conn, conn_read_cb done)
{
  if (conn->closed)
    return;
  conn->tls_done = done;
  conn->tls_starting = true;
  conn->want_active = false;
  stream_read_stop (&conn->stream);
  if (stream_queued (&conn->stream) == 0)
    begin_tls (conn);
  /* else flush_output begins once the reply to STARTTLS is out. */
}

static void
begin_tls (struct conn *conn)
{
  struct stream *st = &conn->stream;
  size_t early = stream_buffered (st);
  struct tls *t;

  conn->tls_starting = false;
  t = tls_new (st->rfd, st->wfd, st->in.buf + st->in.start, early);
  if (!t) {
    nbdkit_error ("%s: could not start TLS", conn->peer);
    conn_close (conn);
    return;
  }
  stream_take (st, NULL, early);
  stream_set_tls (st, t);
  conn->handshaking = true;
  handshake_step (conn);
}

/* ---- waiting for a later turn of the loop ----
 *
 * A connection that must not go on now -- a TLS handshake past this
 * turn's budget, a write received in place while a worker changes a
 * file -- waits on a list whose timer runs it again (as if its socket
 * were readable) after the list's delay.  A connection is on one list
 * at most: handshakes and writes are phases of it that never overlap.
 */

struct later {
  double delay;
  struct conn *head, **tail;
  ev_timer timer;
};

static struct later next_turn = { .delay = 0, .tail = &next_turn.head };
static struct later next_ms = { .delay = 0.001, .tail = &next_ms.head };

static void
on_later_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct later *q = w->data;
  struct conn *list = q->head, *conn;

  q->head = NULL;
  q->tail = &q->head;
  while ((conn = list) != NULL) {
    list = conn->next_later;
    conn->next_later = NULL;
    conn->later = false;
    if (!conn->closed)
      on_readable (conn);
    conn_unref (conn);          /* the list's reference */
  }
}

static void
conn_later (struct conn *conn, struct later *q)
{
  if (conn->later)
    return;
  conn->later = true;
  conn_ref (conn);
  *q->tail = conn;
  q->tail = &conn->next_later;
  if (!ev_is_active (&q->timer)) {
    ev_timer_init (&q->timer, on_later_timer, q->delay, 0.);
    q->timer.data = q;
    ev_timer_start (loop, &q->timer);
  }
}

/* The loop's time for TLS handshakes in one turn.  A step of a
 * handshake (key exchange, signing with the certificate's key) costs
 * a millisecond or more of CPU, and many clients connecting at once
 * would hold the loop for all of them: past HANDSHAKE_BUDGET_NS in a
 * turn, the steps wait for the next turn (a zero-delay timer), where
 * the sockets of the established clients are served first.
 */
#define HANDSHAKE_BUDGET_NS (4 * 1000000LL)

static long long
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Time already spent on handshakes in this turn of the loop. */
static long long *
handshake_spent (void)
{
  static unsigned int turn;
  static long long spent;
  unsigned int now = ev_iteration (loop);

  if (now != turn) {
    turn = now;
    spent = 0;
  }
  return &spent;
}

static void
handshake_step (struct conn *conn)
{
  long long *spent = handshake_spent (), t0;
  int st;

  if (conn->later)
    return;                     /* its turn comes with the timer */
  if (*spent >= HANDSHAKE_BUDGET_NS) {
    conn_later (conn, &next_turn);
    return;
  }
  conn_ref (conn);
  t0 = now_ns ();
  st = tls_handshake (conn->stream.tls, conn->peer);
  *spent += now_ns () - t0;
  switch (st) {
  case TLS_DONE:
    conn->handshaking = false;
    stream_read_stop (&conn->stream);
    stream_write_watch (&conn->stream, false);
    conn->tls_done (conn);
    break;
  case TLS_WANT_READ:
    stream_write_watch (&conn->stream, false);
    stream_read_start (&conn->stream);
    break;
  case TLS_WANT_WRITE:
    stream_read_stop (&conn->stream);
    stream_write_watch (&conn->stream, true);
    break;
  default:
    conn_close (conn);
  }
  conn_unref (conn);
}

static const struct stream_ops conn_stream_ops = {
  .readable = on_readable,
  .writable = on_writable,
  .flush = on_flush,
};

struct conn *
conn_new (int rfd, int wfd, const char *peer)
{
  static uint64_t accepted;
  struct conn *conn;

  accepted++;
  if (!chain_accept (rfd, peer)) {
    nbdkit_debug ("%s: refused by a filter", peer);
    close (rfd);
    if (wfd != rfd)
      close (wfd);
    if (opt.single)
      server_quit (EXIT_FAILURE);
    return NULL;
  }
  conn = calloc (1, sizeof *conn);
  if (!conn || !(conn->peer = strdup (peer)) ||
      stream_init (&conn->stream, rfd, wfd, INBUF_SIZE, &conn_stream_ops,
                   conn) == -1) {
    nbdkit_error ("out of memory for a new connection");
    chain_closed ();
    if (conn)
      free (conn->peer);
    free (conn);
    close (rfd);
    if (wfd != rfd)
      close (wfd);
    return NULL;
  }
  conn->id = accepted;
  conn->refs = 1;               /* dropped by conn_close */
  conn->next = conns;
  if (conns)
    conns->prev = conn;
  conns = conn;
  nr_connections++;
  nbdkit_debug ("%s: new connection", peer);

  handshake_start (conn);
  return conn;
}

void
conn_close (struct conn *conn)
{
  if (conn->closed)
    return;
  nbdkit_debug ("%s: closing connection", conn->peer);
  conn->closed = true;
  conn->want_active = false;
  stream_close (&conn->stream, !conn->handshaking);
  nr_connections--;
  chain_closed ();
  listen_conn_ended ();
  if (opt.single)
    server_quit (EXIT_SUCCESS);
  server_connection_ended ();
  conn_unref (conn);
}

void
conn_drain_all (void)
{
  struct conn *conn, *next;

  for (conn = conns; conn; conn = next) {
    conn_ref (conn);
    if (!conn->closed) {
      conn->want_active = false;
      stream_read_stop (&conn->stream);
      if (conn->session.transmitting)
        transmit_drain (conn);
      else
        conn_close (conn);
    }
    next = conn->next;
    conn_unref (conn);
  }
}

void
conn_close_all (void)
{
  struct conn *conn, *next;

  for (conn = conns; conn; conn = next) {
    next = conn->next;
    conn_ref (conn);
    conn_close (conn);
    next = conn->next;
    conn_unref (conn);
  }
}

void
conn_close_after_output (struct conn *conn)
{
  conn->want_active = false;
  stream_read_stop (&conn->stream);
  conn->close_after_output = true;
  if (stream_queued (&conn->stream) == 0)
    conn_close (conn);
}

void
conn_write (struct conn *conn, const void *small, size_t len,
            void *data, size_t data_len, void (*free_data) (void *))
{
  if (conn->closed) {
    if (data && free_data)
      free_data (data);
    return;
  }
  /* Written just before the loop waits, so that the replies produced
   * in one loop iteration leave in one writev.
   */
  if (stream_queue (&conn->stream, small, len, data, data_len,
                    free_data) == -1) {
    nbdkit_error ("%s: out of memory for a reply", conn->peer);
    conn_close (conn);
  }
}

void
conn_read (struct conn *conn, void *buf, size_t len, conn_read_cb cb)
{
  if (conn->closed)
    return;
  conn->want_active = true;
  conn->want_buf = buf;
  conn->want_len = len;
  conn->want_got = 0;
  conn->want_cb = cb;
  conn->want_err = 0;
  conn->in_place_ready = NULL;
  process_input (conn);
}

void
conn_read_in_place (struct conn *conn, const struct in_place *ip,
                    size_t len, conn_read_cb cb)
{
  if (conn->closed)
    return;
  conn->want_active = true;
  conn->want_buf = ip->buf;
  conn->want_len = len;
  conn->want_got = 0;
  conn->want_cb = cb;
  conn->want_err = 0;
  conn->in_place_ready = ip->ready;
  conn->in_place_fd = ip->fd;
  conn->in_place_offset = ip->offset;
  conn->in_place_by_pwrite = false;
  process_input (conn);
}

int
conn_read_error (const struct conn *conn)
{
  return conn->want_err;
}

/* ---- reads in place ----
 *
 * The payload of a write goes straight into a shared mapping of the
 * export's file (passthrough.c), one copy fewer.  Only the kernel
 * writes there -- recv into the mapping, pwrite of bytes the stream
 * had buffered already -- so a page the file cannot provide is an
 * error of that call, never a SIGBUS.  A recv that faults (EFAULT)
 * hands the rest of the payload to the buffer and pwrite, which fails
 * with the reason (ENOSPC) or extends a file that was shrunk, as any
 * write would; a pwrite that fails throws the rest away, and the write
 * fails with its errno.
 * While ready () says no (a worker is changing a file), the
 * connection reads nothing: it waits for the next millisecond
 * (conn_later).
 */

/* The file would not take the bytes: throw the rest away. */
static void
in_place_failed (struct conn *conn, int err)
{
  nbdkit_error ("%s: the payload of a write could not be written in "
                "place, the write fails: %s", conn->peer, strerror (err));
  conn->want_err = err;
  conn->want_buf = NULL;
  conn->in_place_ready = NULL;
}

/* Move the buffered bytes of the payload to the file. */
static size_t
in_place_take (struct conn *conn, size_t left)
{
  struct stream *st = &conn->stream;
  size_t n = stream_buffered (st), done = 0;

  if (n > left)
    n = left;
  while (done < n) {
    /* A file in memory, and no worker is changing one (in_place_ready).
     * never-blocks: as said */
    ssize_t r = pwrite (conn->in_place_fd,
                        (const char *) stream_peek (st) + done, n - done,
                        (off_t) (conn->in_place_offset + conn->want_got +
                                 done));

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      in_place_failed (conn, r == 0 ? ENOSPC : errno);
      break;
    }
    done += (size_t) r;
  }
  stream_take (st, NULL, done);
  return done;
}

/* Satisfy the requested read from the buffer, then from the socket,
 * calling the callbacks as reads complete (they usually ask for the
 * next one).  Returns to the loop when the socket has nothing more, no
 * read is wanted, or after MAX_READS_PER_WAKEUP system calls or
 * MAX_BYTES_PER_WAKEUP bytes (so a fast client does not starve the
 * others).
 */
static void
process_input (struct conn *conn)
{
  int reads = 0;
  size_t bytes = 0;
  bool drained = false;         /* a read of this call emptied the socket */

  if (conn->in_process)
    return;                     /* the outer call carries on */
  conn->in_process = true;
  conn_ref (conn);

  while (!conn->closed && conn->want_active) {
    size_t left = conn->want_len - conn->want_got;
    ssize_t r;

    if (conn->in_place_ready && left > 0 && !conn->in_place_ready ()) {
      stream_read_stop (&conn->stream);
      conn_later (conn, &next_ms);
      break;
    }
    if (conn->in_place_ready)
      conn->want_got += in_place_take (conn, left);
    else
      conn->want_got += stream_take (&conn->stream,
                                     conn->want_buf
                                     ? conn->want_buf + conn->want_got
                                     : NULL, left);
    if (conn->want_got == conn->want_len) {
      /* After a large payload received in place, the next read (a
       * request's header) takes only its own bytes from the socket:
       * if another large write follows, all of its payload then goes
       * straight to the file, none through the buffer and a pwrite.
       */
      bool exact = conn->in_place_ready && conn->want_len >= INBUF_SIZE / 2;

      conn->exact_next = false;

      conn->want_active = false;
      conn->want_cb (conn);
      if (conn->want_active && exact)
        conn->exact_next = true;
      continue;
    }
    left = conn->want_len - conn->want_got;

    if (reads++ == MAX_READS_PER_WAKEUP || bytes >= MAX_BYTES_PER_WAKEUP ||
        (drained && stream_buffered (&conn->stream) == 0 &&
         conn->session.in_flight <= 1)) {
      /* (A client whose bytes were all read, with one request or none
       * in flight, is most likely waiting for that reply: a read now
       * would say EAGAIN.  With more in flight, it may well be sending
       * the next while we read, and reading on makes bigger batches.)
       */
      stream_read_start (&conn->stream);  /* also sees TLS's bytes */
      break;
    }
    if (conn->want_buf && !(conn->in_place_ready && conn->in_place_by_pwrite) &&
        (left >= INBUF_SIZE / 2 ||
         (conn->exact_next && stream_buffered (&conn->stream) == 0))) {
      /* Large payloads go straight to their buffer, at most what is
       * left of this wakeup's bytes in one call: a client sending
       * from another core keeps one recv copying (and faulting in the
       * buffer's pages) for as long as it is asked to.
       */
      if (left > MAX_BYTES_PER_WAKEUP - bytes)
        left = MAX_BYTES_PER_WAKEUP - bytes;
      r = stream_recv (&conn->stream, conn->want_buf + conn->want_got,
                       left);
      if (r > 0)
        conn->want_got += r;
      if (r == -1 && errno == EFAULT && conn->in_place_ready) {
        /* A page of the mapping the file could not give (full, or
         * shrunk): nothing was taken from the socket, and the rest of
         * the payload goes through the buffer and pwrite, which says
         * why (ENOSPC), or extends the file, as a write would.
         */
        nbdkit_debug ("%s: a write received in place: a page of the "
                      "mapping faulted; pwrite takes over", conn->peer);
        conn->in_place_by_pwrite = true;
        continue;
      }
    }
    else
      r = stream_fill (&conn->stream);
    if (r > 0) {
      bytes += r;
      drained = stream_drained (&conn->stream);
    }

    if (r == 0 && conn->session.transmitting) {
      /* The client closed its side (a FIN, or TLS close_notify),
       * perhaps right behind its last requests: answer those, as for
       * NBD_CMD_DISC, then close.
       */
      nbdkit_debug ("%s: the client closed its side of the connection",
                    conn->peer);
      conn->want_active = false;
      stream_read_stop (&conn->stream);
      transmit_drain (conn);
    }
    else if (r == 0) {
      nbdkit_debug ("%s: the client closed the connection", conn->peer);
      conn_close (conn);
    }
    else if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        stream_read_start (&conn->stream);  /* also sees TLS's bytes */
        break;
      }
      nbdkit_debug ("%s: read: %m", conn->peer);
      conn_close (conn);
    }
  }
  if (!conn->closed && (!conn->want_active || conn->later))
    stream_read_stop (&conn->stream);

  conn->in_process = false;
  conn_unref (conn);
}
