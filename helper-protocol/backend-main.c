/* libnbdkit-backend: the backend process's main loop.
 *
 * Owns the channel to the server.  The reader (whichever thread leads,
 * see backend-workers.c) reads the channel through a buffer, so that
 * one recvmsg(2) brings in many frames, validates each frame, and hands
 * it on in one switch on the message type — the readable list of
 * everything the server can ask.  Start-up messages are handled by the
 * reader, in order, and so is PING, answered at once: some thread always
 * reads (backend-workers.c), so a PING never waits behind a request.
 * The rest become jobs that the thread which read them runs, after
 * passing the reading on (or that wait for a worker, when none is
 * free to read).  A file descriptor passed with ATTACH_FD (or with the
 * CONFIG of a descriptor parameter, or given back with a re-open's
 * OPEN) arrives as ancillary data with the first byte of its frame:
 * the reader notes where in the stream each one came, and the message
 * takes the one that came with its own frame.
 * The other way, a reply to OPEN may carry the handle's passthrough
 * descriptor: it is written alone in one sendmsg, the descriptor with
 * its first byte, by a thread that waits to be the writer.
 *
 * Replies are written whole, never interleaved, by one thread at a
 * time: a thread with a reply to send becomes the writer if nobody is
 * writing, else it queues the reply (copying the payload, or handing
 * over a buffer it owns) and goes back to work; the writer sends the
 * whole queue with writev before it stops being the writer.  EOF on the
 * channel, or SHUTDOWN, ends the process after closing the handles.
 *
 * The backend dies with the server.  The server makes it the leader of
 * a process group of its own and asks the kernel for SIGTERM when the
 * server dies (PR_SET_PDEATHSIG); SIGTERM, from there or from the
 * server, kills the whole group with SIGKILL: the backend and every
 * process it started (scripts, commands) that stayed in its group.  A
 * thread of its own watches the channel for its end even while every
 * other thread is inside a callback that does not return (a script
 * that runs for ever): if the channel ends while a request is still
 * being handled, nobody can take its reply, and the group is killed
 * the same way; otherwise the reader meets the end of the channel and
 * the backend exits in order (close, unload).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "backend-internal.h"

const struct nbdkit_backend *nbdkit__be;
int nbdkit__thread_model;
bool nbdkit__verbose;
json_t *nbdkit__debug_flags;
int nbdkit__memfd = -1;

static int chan = -1;

/* ---- dying with the server ---- */

/* The process group this process leads (the server starts every
 * backend as the leader of a group of its own), or 0: then only this
 * process is killed, never a group it does not own.
 */
static pid_t own_group;

/* Requests being handled now, and whether the channel has ended. */
static atomic_int busy;
static atomic_bool channel_gone;

/* How long requests still being handled when the channel ends get to
 * finish (a reply just sent, its buffers being freed) before the
 * group is killed.
 */
#define GONE_GRACE_MS 300

/* Async-signal-safe. */
static void
kill_group (void)
{
  if (own_group > 0)
    kill (-own_group, SIGKILL);
}

static void
on_sigterm (int sig)
{
  struct sigaction sa = { .sa_handler = SIG_DFL };

  kill_group ();
  /* Not a group leader: die of the signal, as without this handler. */
  sigemptyset (&sa.sa_mask);
  sigaction (sig, &sa, NULL);
  raise (sig);
}

/* The watcher's epoll set: the channel, for its end (EPOLLRDHUP), and
 * for input too while the reader runs a job with the lead kept
 * (nbdkit__watch_input; backend-workers.c).
 */
static int watch_ep = -1;

bool
nbdkit__can_watch_input (void)
{
  return watch_ep >= 0;
}

void
nbdkit__watch_input (bool on)
{
  struct epoll_event ev = {
    .events = on ? EPOLLIN | EPOLLRDHUP | EPOLLONESHOT : EPOLLRDHUP,
  };

  epoll_ctl (watch_ep, EPOLL_CTL_MOD, chan, &ev);
}

static void *
watch_channel (void *arg)
{
  int i;

  for (;;) {
    struct epoll_event ev;
    int r = epoll_wait (watch_ep, &ev, 1, -1);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return NULL;
    if (r == 0)
      continue;
    if (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      break;
    if (ev.events & EPOLLIN)
      nbdkit__workers_input_arrived ();
  }
  /* Whoever holds the lead meets the end of the channel. */
  nbdkit__workers_input_arrived ();
  atomic_store (&channel_gone, true);
  for (i = 0; i < GONE_GRACE_MS / 10 && atomic_load (&busy) > 0; ++i)
    nanosleep (&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
  if (atomic_load (&busy) > 0) {
    dprintf (STDERR_FILENO, "%s: the channel to the server ended while a "
             "request was in progress: exiting\n", nbdkit__be->name);
    kill_group ();
    _exit (EXIT_FAILURE);       /* not a group leader */
  }
  return NULL;
}

bool
nbdkit__request_begin (void)
{
  atomic_fetch_add (&busy, 1);
  if (atomic_load (&channel_gone)) {
    atomic_fetch_sub (&busy, 1);
    return false;
  }
  return true;
}

void
nbdkit__request_end (void)
{
  atomic_fetch_sub (&busy, 1);
}

/* Called once the backend was started by a server (not by hand). */
static void
die_with_server (void)
{
  struct sigaction sa = { .sa_handler = on_sigterm };
  pthread_t t;
  int err;

  if (getpgrp () == getpid ())
    own_group = getpid ();
  sigfillset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  watch_ep = epoll_create1 (EPOLL_CLOEXEC);
  if (watch_ep == -1 ||
      epoll_ctl (watch_ep, EPOLL_CTL_ADD, chan,
                 &(struct epoll_event) { .events = EPOLLRDHUP }) == -1) {
    perror ("epoll");
    exit (EXIT_FAILURE);
  }
  err = pthread_create (&t, NULL, watch_channel, NULL);
  if (err) {
    fprintf (stderr, "error: pthread_create: %s\n", strerror (err));
    exit (EXIT_FAILURE);
  }
  pthread_detach (t);
}

static void __attribute__ ((noreturn))
out_of_memory (void)
{
  fprintf (stderr, "error: out of memory\n");
  exit (EXIT_FAILURE);
}

/* ---- reading ---- */

/* The read buffer: frames not yet handled are rbuf[rstart..rend). */
#define RBUF_SIZE (256 * 1024)
/* A payload with at least this much still to come is read straight
 * into its own buffer, not through rbuf.
 */
#define DIRECT_READ (64 * 1024)

static unsigned char *rbuf;
static size_t rstart, rend;
static uint64_t rpos;           /* bytes received on the channel so far */

bool
nbdkit__input_buffered (void)
{
  return rend > rstart;
}

/* File descriptors received and not yet claimed by ATTACH_FD, CONFIG
 * or OPEN, each with the stream position of the last byte of the read
 * that brought it (the kernel ends a read after the message that
 * carries descriptors).
 */
#define MAX_FDS 4
static struct { int fd; uint64_t pos; } received_fds[MAX_FDS];
static size_t nr_received_fds;

static void
keep_fds (struct msghdr *msg, uint64_t pos)
{
  struct cmsghdr *cmsg;

  for (cmsg = CMSG_FIRSTHDR (msg); cmsg; cmsg = CMSG_NXTHDR (msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      size_t n = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int), i;
      int fd;

      for (i = 0; i < n; ++i) {
        memcpy (&fd, CMSG_DATA (cmsg) + i * sizeof fd, sizeof fd);
        if (nr_received_fds < MAX_FDS) {
          received_fds[nr_received_fds].fd = fd;
          received_fds[nr_received_fds].pos = pos;
          nr_received_fds++;
        }
        else
          close (fd);
      }
    }
  }
}

/* One recvmsg of at most n bytes into buf.  Returns the number of bytes
 * (at least 1), or -1 on EOF or error.
 *
 * With nothing to read it waits in poll(2) for POLLIN, not in recvmsg:
 * a thread asleep in a unix socket's recvmsg is also woken each time
 * the server takes in one of our replies (the kernel's "write space"
 * wake-up of the socket's waiters), a wasted wake-up per request;
 * poll's waits only wake for what they asked for.
 */
static ssize_t
recv_some (void *buf, size_t n)
{
  for (;;) {
    union {
      char buf[CMSG_SPACE (MAX_FDS * sizeof (int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = buf, .iov_len = n };
    struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1,
      .msg_control = u.buf, .msg_controllen = sizeof u.buf,
    };
    ssize_t r = recvmsg (chan, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = { .fd = chan, .events = POLLIN };

      if (poll (&p, 1, -1) == -1 && errno != EINTR)
        return -1;
      continue;
    }
    if (r <= 0)
      return -1;
    keep_fds (&msg, rpos + r - 1);
    rpos += r;
    return r;
  }
}

/* The next header, and the stream position where its frame starts.
 * Returns 0, or -1 on EOF or error.
 */
static int
read_header (unsigned char hdr[HP_HEADER_SIZE], uint64_t *start)
{
  while (rend - rstart < HP_HEADER_SIZE) {
    ssize_t r;

    if (rstart > 0) {
      memmove (rbuf, rbuf + rstart, rend - rstart);
      rend -= rstart;
      rstart = 0;
    }
    r = recv_some (rbuf + rend, RBUF_SIZE - rend);
    if (r == -1)
      return -1;
    rend += r;
  }
  *start = rpos - (rend - rstart);
  memcpy (hdr, rbuf + rstart, HP_HEADER_SIZE);
  rstart += HP_HEADER_SIZE;
  return 0;
}

/* Exactly n bytes of payload into p.  Returns 0, or -1 on EOF or error. */
static int
read_payload (unsigned char *p, size_t n)
{
  size_t take = rend - rstart < n ? rend - rstart : n;

  memcpy (p, rbuf + rstart, take);
  rstart += take;
  p += take;
  n -= take;
  /* From here on, while n > 0, rbuf is empty. */
  while (n > 0) {
    ssize_t r;

    if (n >= DIRECT_READ) {
      r = recv_some (p, n);
      if (r == -1)
        return -1;
      p += r;
      n -= r;
      continue;
    }
    rstart = rend = 0;
    r = recv_some (rbuf, RBUF_SIZE);
    if (r == -1)
      return -1;
    rend = r;
    take = rend < n ? rend : n;
    memcpy (p, rbuf, take);
    rstart = take;
    p += take;
    n -= take;
  }
  return 0;
}

/* The descriptor that came with the frame at stream positions
 * [start, end), or -1.  Descriptors that came before it belong to no
 * ATTACH_FD, CONFIG or OPEN and are closed.
 */
static int
take_fd (uint64_t start, uint64_t end)
{
  size_t i, j = 0;
  int fd = -1;

  for (i = 0; i < nr_received_fds; ++i) {
    if (received_fds[i].pos < start)
      close (received_fds[i].fd);
    else if (fd == -1 && received_fds[i].pos < end)
      fd = received_fds[i].fd;
    else
      received_fds[j++] = received_fds[i];
  }
  nr_received_fds = j;
  return fd;
}

/* ---- writing ---- */

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#define IOV_BATCH (IOV_MAX < 1024 ? IOV_MAX : 1024)
#define SMALL_PAYLOAD 128       /* copied into the queued reply itself */
#define MAX_FREE_REPLIES 256

/* A reply waiting for the writer. */
struct reply {
  struct reply *next;
  unsigned char hdr[HP_HEADER_SIZE];
  const void *payload;
  uint32_t len;
  void *owned;                  /* from buf_alloc, freed once written */
  size_t owned_size;
  unsigned char small[SMALL_PAYLOAD];
};

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t write_done = PTHREAD_COND_INITIALIZER;
static bool writing;            /* some thread is the writer */
static struct reply *wq_head, **wq_tail = &wq_head;
static struct reply *free_replies;
static unsigned nr_free_replies;

static void
write_all (struct iovec *iov, int n)
{
  while (n > 0) {
    ssize_t r = writev (chan, iov, n);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return;                   /* the server is gone: the reader sees EOF */
    }
    while (n > 0 && (size_t) r >= iov->iov_len) {
      r -= iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *) iov->iov_base + r;
      iov->iov_len -= r;
    }
  }
}

/* As the writer: one frame whose first byte carries fd (SCM_RIGHTS),
 * the frame alone in the sendmsg so that the server finds the
 * descriptor with it (passthrough, docs/nbdkit-helper-protocol.pod).
 * fd is closed once sent (the server has its own reference then).
 */
static void
write_frame_fd (const unsigned char *hdr, const void *payload, uint32_t len,
                int fd)
{
  union {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } u;
  struct iovec iov[2] = {
    { .iov_base = (void *) hdr, .iov_len = HP_HEADER_SIZE },
    { .iov_base = (void *) payload, .iov_len = len },
  };
  struct msghdr msg = {
    .msg_iov = iov, .msg_iovlen = len ? 2 : 1,
    .msg_control = u.buf, .msg_controllen = sizeof u.buf,
  };
  struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg);
  ssize_t r;
  int i, n = len ? 2 : 1;

  memset (&u, 0, sizeof u);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &fd, sizeof fd);
  do
    r = sendmsg (chan, &msg, MSG_NOSIGNAL);
  while (r == -1 && errno == EINTR);
  close (fd);
  if (r == -1) {
    if (errno != ENOTSOCK)
      return;                   /* the server is gone */
    r = 0;                      /* not a socket (fuzzing): no descriptor */
  }
  /* The rest, without the descriptor: it went with the first byte. */
  for (i = 0; i < n && (size_t) r >= iov[i].iov_len; ++i)
    r -= iov[i].iov_len;
  if (i < n) {
    iov[i].iov_base = (char *) iov[i].iov_base + r;
    iov[i].iov_len -= r;
    write_all (&iov[i], n - i);
  }
}

/* As the writer: send hdr/payload (if hdr is not NULL), then everything
 * queued, until the queue is empty; then stop being the writer.
 */
static void
drain (const unsigned char *hdr, const void *payload, uint32_t len)
{
  struct iovec iov[IOV_BATCH];
  struct reply *list = NULL, *r, *next;
  int n = 0;

  if (hdr) {
    iov[n++] = (struct iovec) { .iov_base = (void *) hdr,
                                .iov_len = HP_HEADER_SIZE };
    if (len)
      iov[n++] = (struct iovec) { .iov_base = (void *) payload,
                                  .iov_len = len };
  }
  for (;;) {
    struct reply *written = list;

    pthread_mutex_lock (&write_lock);
    /* Recycle what the last round wrote. */
    for (r = written; r; r = next) {
      next = r->next;
      if (nr_free_replies < MAX_FREE_REPLIES) {
        r->next = free_replies;
        free_replies = r;
        nr_free_replies++;
      }
      else
        free (r);
    }
    list = wq_head;
    wq_head = NULL;
    wq_tail = &wq_head;
    if (!list && n == 0) {
      writing = false;
      pthread_cond_broadcast (&write_done);
      pthread_mutex_unlock (&write_lock);
      return;
    }
    pthread_mutex_unlock (&write_lock);

    for (r = list; r; r = r->next) {
      if (n + 2 > IOV_BATCH) {
        write_all (iov, n);
        n = 0;
      }
      iov[n++] = (struct iovec) { .iov_base = r->hdr,
                                  .iov_len = HP_HEADER_SIZE };
      if (r->len)
        iov[n++] = (struct iovec) { .iov_base = (void *) r->payload,
                                    .iov_len = r->len };
    }
    write_all (iov, n);
    n = 0;
    for (r = list; r; r = r->next) {
      nbdkit__buf_free (r->owned, r->owned_size);
      r->owned = NULL;
    }
  }
}

/* Send one frame: hdr, then len bytes of payload.  owned (a buf_alloc
 * buffer of owned_size bytes holding the payload, or NULL) is freed
 * once written; any other payload is copied if the frame has to wait.
 */
static void
send_frame (const unsigned char hdr[HP_HEADER_SIZE], const void *payload,
            uint32_t len, void *owned, size_t owned_size)
{
  struct reply *r;

  pthread_mutex_lock (&write_lock);
  if (!writing) {
    writing = true;
    pthread_mutex_unlock (&write_lock);
    drain (hdr, payload, len);
    nbdkit__buf_free (owned, owned_size);
    return;
  }
  /* Someone is writing: queue a copy for them. */
  r = free_replies;
  if (r) {
    free_replies = r->next;
    nr_free_replies--;
  }
  pthread_mutex_unlock (&write_lock);
  if (!r)
    r = malloc (sizeof *r);
  if (r) {
    memcpy (r->hdr, hdr, HP_HEADER_SIZE);
    r->len = len;
    r->owned = owned;
    r->owned_size = owned_size;
    if (owned || len == 0)
      r->payload = payload;
    else if (len <= SMALL_PAYLOAD) {
      memcpy (r->small, payload, len);
      r->payload = r->small;
    }
    else if ((r->owned = nbdkit__buf_alloc (len)) != NULL) {
      memcpy (r->owned, payload, len);
      r->owned_size = len;
      r->payload = r->owned;
    }
    else {
      free (r);
      r = NULL;
    }
  }

  pthread_mutex_lock (&write_lock);
  if (!r) {
    /* Out of memory: wait for the writer to finish, then write. */
    while (writing)
      pthread_cond_wait (&write_done, &write_lock);
    writing = true;
    pthread_mutex_unlock (&write_lock);
    drain (hdr, payload, len);
    nbdkit__buf_free (owned, owned_size);
    return;
  }
  r->next = NULL;
  *wq_tail = r;
  wq_tail = &r->next;
  if (writing) {
    pthread_mutex_unlock (&write_lock);
    return;
  }
  /* The writer finished in the meantime: this thread writes. */
  writing = true;
  pthread_mutex_unlock (&write_lock);
  drain (NULL, NULL, 0);
}

/* Send one frame with a descriptor (closed once sent): wait to be the
 * writer, write it alone, then whatever others queued meanwhile.
 */
static void
send_frame_fd (const unsigned char hdr[HP_HEADER_SIZE], const void *payload,
               uint32_t len, int fd)
{
  pthread_mutex_lock (&write_lock);
  while (writing)
    pthread_cond_wait (&write_done, &write_lock);
  writing = true;
  pthread_mutex_unlock (&write_lock);
  write_frame_fd (hdr, payload, len, fd);
  drain (NULL, NULL, 0);
}

static void
encode_reply (const struct hp_header *req, uint32_t status, uint16_t flags,
              uint32_t handle, uint32_t len,
              unsigned char hdr[HP_HEADER_SIZE])
{
  struct hp_header h = {
    .type = req->type | HP_REPLY,
    .flags = flags,
    .id = req->id,
    .handle = handle,
    .status = status,
    .offset = req->offset,
    .count = req->count,
    .payload_len = len,
  };

  hp_encode_header (&h, hdr);
}

void
nbdkit__send_reply (const struct hp_header *req, uint32_t status,
                    uint32_t handle, const void *payload, uint32_t len)
{
  nbdkit__send_reply_flags (req, status, 0, handle, payload, len);
}

void
nbdkit__send_reply_flags (const struct hp_header *req, uint32_t status,
                          uint16_t flags, uint32_t handle,
                          const void *payload, uint32_t len)
{
  unsigned char hdr[HP_HEADER_SIZE];

  if (!payload)
    len = 0;
  encode_reply (req, status, flags, handle, len, hdr);
  send_frame (hdr, payload, len, NULL, 0);
}

void
nbdkit__send_reply_owned (const struct hp_header *req, uint16_t flags,
                          void *buf, size_t size, uint32_t len)
{
  unsigned char hdr[HP_HEADER_SIZE];

  encode_reply (req, 0, flags, 0, len, hdr);
  send_frame (hdr, buf, len, buf, size);
}

void
nbdkit__send_json_reply_fd (const struct hp_header *req, uint32_t handle,
                            json_t *j, int fd)
{
  unsigned char hdr[HP_HEADER_SIZE];
  char *s = j ? json_dumps (j, JSON_COMPACT) : NULL;

  json_decref (j);
  if (!s) {
    close (fd);
    nbdkit__send_reply (req, HP_ENOMEM, 0, "out of memory", 13);
    return;
  }
  encode_reply (req, 0, 0, handle, strlen (s), hdr);
  send_frame_fd (hdr, s, strlen (s), fd);
  free (s);
}

void
nbdkit__send_json_reply (const struct hp_header *req, uint32_t handle,
                         json_t *j)
{
  char *s;

  if (!j)
    j = json_object ();
  s = j ? json_dumps (j, JSON_COMPACT) : NULL;
  json_decref (j);
  if (!s) {
    nbdkit__send_reply (req, HP_ENOMEM, 0, "out of memory", 13);
    return;
  }
  nbdkit__send_reply (req, 0, handle, s, strlen (s));
  free (s);
}

/* After a failed callback: the error (from nbdkit_set_error, else
 * errno, else def_status, else EIO) and its message.
 */
void
nbdkit__send_error_reply (const struct hp_header *req, uint32_t def_status)
{
  const char *msg = NULL;
  uint32_t st = nbdkit__context_failure (errno, def_status, &msg);

  nbdkit__send_reply (req, st, 0, msg, msg ? strlen (msg) : 0);
}

static void __attribute__ ((noreturn))
protocol_error (const char *why)
{
#ifdef NBDKIT_FUZZING
  nbdkit__fuzz_protocol_error (why);
#else
  fprintf (stderr, "error: invalid frame from the server: %s\n", why);
  exit (EXIT_FAILURE);
#endif
}

/* A control message's payload as a JSON object, or NULL. */
static json_t *
parse_json (const struct hp_header *h, const unsigned char *payload)
{
  json_error_t err;
  json_t *j;

  if (h->payload_len == 0)
    return json_object ();
  j = json_loadb ((const char *) payload, h->payload_len, 0, &err);
  if (j && !json_is_object (j)) {
    json_decref (j);
    j = NULL;
  }
  return j;
}

/* Read one message and handle it, or make it a job (*job) for the
 * caller to run.  Returns 0, or -1 at the end of the channel (EOF or
 * SHUTDOWN).  Called by one thread at a time (backend-workers.c).
 */
static int
read_one (struct job **jobp)
{
  unsigned char hdr[HP_HEADER_SIZE];
  struct hp_header h;
  unsigned char *payload = NULL;
  uint64_t start;
  const char *why;
  json_t *j = NULL;
  int ret = 0;
  bool startup;

  *jobp = NULL;
  if (read_header (hdr, &start) == -1)
    return -1;
  if (hp_decode_header (hdr, &h, &why) == -1 ||
      hp_check_request (&h, &why) == -1)
    protocol_error (why);
  if (h.payload_len) {
    payload = nbdkit__buf_alloc (payload_size (&h));
    if (!payload)
      out_of_memory ();
    if (read_payload (payload, h.payload_len) == -1) {
      nbdkit__buf_free (payload, payload_size (&h));
      return -1;
    }
    if (hp_type_is_control (h.type))
      payload[h.payload_len] = '\0';
  }

  /* Start-up messages are requests handled right here. */
  startup = h.type == HP_HELLO || h.type == HP_CONFIG ||
    h.type == HP_CONFIG_COMPLETE || h.type == HP_GET_READY ||
    h.type == HP_DUMP || h.type == HP_ATTACH_FD;
  if (startup && !nbdkit__request_begin ()) {
    /* The channel has ended: nobody would take the reply. */
    if (payload)
      nbdkit__buf_free (payload, payload_size (&h));
    return 0;
  }
  if (h.type == HP_HELLO || h.type == HP_CONFIG || h.type == HP_ATTACH_FD) {
    j = parse_json (&h, payload);
    if (!j) {
      why = "a control message whose payload is not a JSON object";
      goto bad;
    }
  }

  switch (h.type) {
  case HP_HELLO:
    nbdkit__op_hello (&h, j);
    json_decref (j);
    break;
  case HP_CONFIG:
    nbdkit__op_config (&h, j,
                       take_fd (start,
                                start + HP_HEADER_SIZE + h.payload_len));
    json_decref (j);
    break;
  case HP_CONFIG_COMPLETE:
    nbdkit__op_config_complete (&h);
    break;
  case HP_GET_READY:
    nbdkit__op_get_ready (&h);
    break;
  case HP_DUMP:
    nbdkit__op_dump (&h);
    break;
  case HP_ATTACH_FD:
    nbdkit__op_attach_fd (&h, j,
                          take_fd (start,
                                   start + HP_HEADER_SIZE + h.payload_len));
    json_decref (j);
    break;
  case HP_SHUTDOWN:
    nbdkit_debug ("SHUTDOWN: closing the handles and exiting");
    nbdkit__send_json_reply (&h, 0, NULL);
    ret = -1;
    break;
  case HP_PING:
    /* Answered here, by the reader, whatever the workers are doing:
     * that is what a PING asks.
     */
    nbdkit__send_reply (&h, 0, 0, NULL, 0);
    break;

  case HP_LIST_EXPORTS:
  case HP_DEFAULT_EXPORT:
  case HP_OPEN:
  case HP_CLOSE:
  case HP_PREAD:
  case HP_PWRITE:
  case HP_FLUSH:
  case HP_TRIM:
  case HP_ZERO:
  case HP_CACHE:
  case HP_EXTENTS: {
    struct job *job = nbdkit__job_new ();

    job->req = h;
    job->payload = payload;
    /* A re-open gives back the handle's descriptor (previous_fd). */
    if (h.type == HP_OPEN)
      job->fd = take_fd (start, start + HP_HEADER_SIZE + h.payload_len);
    payload = NULL;
    *jobp = job;
    break;
  }
  default:
    why = "a message type this backend does not know";
    goto bad;
  }
  if (startup)
    nbdkit__request_end ();
  if (payload)
    nbdkit__buf_free (payload, payload_size (&h));
  return ret;

 bad:
  if (startup)
    nbdkit__request_end ();
  if (payload)
    nbdkit__buf_free (payload, payload_size (&h));
  protocol_error (why);
}

int
nbdkit_backend_main (const struct nbdkit_backend *backend,
                     int argc, char *argv[])
{
  return nbdkit_backend_main_with_model (backend, 0, argc, argv);
}

int
nbdkit_backend_main_with_model (const struct nbdkit_backend *backend,
                                int model, int argc, char *argv[])
{
  const char *env = getenv (HP_ENV_FD);
  char *end;
  long fd;

  nbdkit__be = backend;
  if (!nbdkit__be->name || !*nbdkit__be->name) {
    fprintf (stderr, "%s: the backend has no name\n", argv[0]);
    return EXIT_FAILURE;
  }
  errno = 0;
  fd = env ? strtol (env, &end, 10) : -1;
  if (!env || errno || *end || fd < 0 || fd > 1024) {
    /* Run from a build tree or any directory, the path is what works
     * ('nbdkit NAME' only finds installed backends); found on PATH,
     * the name.
     */
    if (strchr (argv[0], '/'))
      fprintf (stderr,
               "%s: this program is an nbdkit backend: run it with "
               "'nbdkit %s%s' (or 'nbdkit %s' where it is installed; "
               "see nbdkit(1))\n", argv[0],
               argv[0][0] == '/' || argv[0][0] == '.' ? "" : "./",
               argv[0], nbdkit__be->name);
    else
      fprintf (stderr,
               "%s: this program is an nbdkit backend: run it with "
               "'nbdkit %s' (see nbdkit(1))\n", argv[0], nbdkit__be->name);
    return EXIT_FAILURE;
  }
  chan = (int) fd;
  /* Programs the backend runs (scripts, servers) get neither the
   * channel nor its number.
   */
  fcntl (chan, F_SETFD, fcntl (chan, F_GETFD) | FD_CLOEXEC);
  unsetenv (HP_ENV_FD);
  signal (SIGPIPE, SIG_IGN);
  nbdkit__thread_model = model ? model
    : nbdkit__be->thread_model ? nbdkit__be->thread_model
    : NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
  if (nbdkit__thread_model < NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS ||
      nbdkit__thread_model > NBDKIT_THREAD_MODEL_PARALLEL) {
    fprintf (stderr, "error: the backend's thread model %d is not one of "
             "the NBDKIT_THREAD_MODEL_* constants\n", nbdkit__thread_model);
    return EXIT_FAILURE;
  }
#ifdef NBDKIT_FUZZING
  (void) die_with_server;       /* the harness is not a server's child */
#else
  die_with_server ();
#endif
  if (nbdkit__be->load)
    nbdkit__be->load ();

  rbuf = malloc (RBUF_SIZE);
  if (!rbuf)
    out_of_memory ();

  nbdkit__workers_serve (read_one);
  nbdkit__op_close_all ();
  if (nbdkit__be->unload)
    nbdkit__be->unload ();
  free (rbuf);
  rbuf = NULL;
  return EXIT_SUCCESS;
}

#ifdef NBDKIT_FUZZING
/* Between two inputs of the fuzzing harness, which may have ended in
 * the middle of a frame (a protocol error): the reader's buffer and
 * descriptors, the writer's queue, and every other file's state.
 */
void
nbdkit__fuzz_reset (void)
{
  struct reply *r;
  size_t i;

  nbdkit__op_close_all ();
  nbdkit__fuzz_reset_ops ();
  nbdkit__fuzz_reset_exports ();
  nbdkit__fuzz_reset_workers ();
  free (rbuf);
  rbuf = NULL;
  rstart = rend = 0;
  rpos = 0;
  for (i = 0; i < nr_received_fds; ++i)
    close (received_fds[i].fd);
  nr_received_fds = 0;
  while ((r = wq_head) != NULL) {
    wq_head = r->next;
    nbdkit__buf_free (r->owned, r->owned_size);
    free (r);
  }
  wq_tail = &wq_head;
  while ((r = free_replies) != NULL) {
    free_replies = r->next;
    free (r);
  }
  nr_free_replies = 0;
  writing = false;
  atomic_store (&busy, 0);
  atomic_store (&channel_gone, false);
  json_decref (nbdkit__debug_flags);
  nbdkit__debug_flags = NULL;
  nbdkit__verbose = false;
  chan = -1;
}
#endif
