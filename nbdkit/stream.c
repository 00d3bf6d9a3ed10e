/* nbdkit front end: struct stream (see stream.h), one non-blocking
 * socket with its buffers, batching, TLS and descriptor passing.
 * Used by client connections and the backend channel.  Never blocks;
 * never calls the protocol: events go to the owner's stream_ops.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"

static void
on_readable (struct ev_loop *l, ev_io *w, int revents)
{
  struct stream *s = w->data;

  s->ops->readable (s->opaque);
}

static void
on_writable (struct ev_loop *l, ev_io *w, int revents)
{
  struct stream *s = w->data;

  s->ops->writable (s->opaque);
}

static void
on_flush (struct loop_flush *f)
{
  struct stream *s = (struct stream *)
    ((char *) f - offsetof (struct stream, flush));

  if (s->open && !ev_is_active (&s->wio))
    s->ops->flush (s->opaque);
}

/* TLS holds decrypted bytes that make the socket no readier. */
static bool
stream_tls_pending (const struct stream *s)
{
  return s->tls && tls_pending (s->tls) > 0;
}

int
stream_init (struct stream *s, int rfd, int wfd, size_t inbuf_size,
             const struct stream_ops *ops, void *opaque)
{
  /* A buffer made beforehand (so that this cannot fail) is used. */
  if (!s->in.buf && inbuf_init (&s->in, inbuf_size) == -1)
    return -1;
  s->rfd = rfd;
  s->wfd = wfd;
  outq_init (&s->out);
  s->tls = NULL;
  s->bytes_written = 0;
  s->bytes_read = 0;
  s->take_fds = false;
  s->nr_fds = 0;
  s->ops = ops;
  s->opaque = opaque;
  s->open = true;
  s->flush.next = NULL;
  s->flush.queued = false;
  s->flush.fn = on_flush;
  ev_io_init (&s->rio, on_readable, rfd, EV_READ);
  ev_io_init (&s->wio, on_writable, wfd, EV_WRITE);
  s->rio.data = s->wio.data = s;
  return 0;
}

void
stream_close (struct stream *s, bool say_bye)
{
  if (!s->open)
    return;
  s->open = false;
  ev_io_stop (loop, &s->rio);
  ev_io_stop (loop, &s->wio);
  loop_flush_cancel (&s->flush);
  if (s->tls) {
    if (say_bye)
      tls_bye (s->tls);
    tls_free (s->tls);
    s->tls = NULL;
  }
  close (s->rfd);
  if (s->wfd != s->rfd)
    close (s->wfd);
  s->rfd = s->wfd = -1;
  while (s->nr_fds > 0)
    close (s->fds[--s->nr_fds].fd);
  outq_clear (&s->out);
  inbuf_free (&s->in);
}

void
stream_read_start (struct stream *s)
{
  if (!s->open)
    return;
  ev_io_start (loop, &s->rio);
  /* Bytes gnutls already decrypted make the socket no readier. */
  if (stream_tls_pending (s))
    ev_feed_event (loop, &s->rio, EV_READ);
}

void
stream_read_stop (struct stream *s)
{
  ev_io_stop (loop, &s->rio);
}

void
stream_write_watch (struct stream *s, bool on)
{
  if (on && s->open)
    ev_io_start (loop, &s->wio);
  else
    ev_io_stop (loop, &s->wio);
}

static ssize_t
recv_tls (void *opaque, void *buf, size_t len)
{
  return tls_recv (opaque, buf, len);
}

/* Keep the descriptors of one recvmsg; those beyond room are closed. */
static void
keep_fds (struct stream *s, struct msghdr *msg, uint64_t pos)
{
  struct cmsghdr *cmsg;

  for (cmsg = CMSG_FIRSTHDR (msg); cmsg; cmsg = CMSG_NXTHDR (msg, cmsg)) {
    size_t n, i;

    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
      continue;
    n = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);
    for (i = 0; i < n; ++i) {
      int fd;

      memcpy (&fd, CMSG_DATA (cmsg) + i * sizeof fd, sizeof fd);
      if (s->nr_fds < STREAM_MAX_FDS) {
        s->fds[s->nr_fds].fd = fd;
        s->fds[s->nr_fds].pos = pos;
        s->nr_fds++;
      }
      else
        close (fd);
    }
  }
}

/* One read of the socket: recvmsg collecting descriptors, or read. */
static ssize_t
recv_plain (void *opaque, void *buf, size_t len)
{
  struct stream *s = opaque;
  ssize_t r;

  if (!s->take_fds) {
    do
      r = read (s->rfd, buf, len);
    while (r == -1 && errno == EINTR);
  }
  else {
    union {
      char buf[CMSG_SPACE (STREAM_MAX_FDS * sizeof (int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1,
      .msg_control = u.buf, .msg_controllen = sizeof u.buf,
    };

    do
      r = recvmsg (s->rfd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (r == -1 && errno == EINTR);
    if (r > 0)
      keep_fds (s, &msg, s->bytes_read + r - 1);
  }
  if (r > 0)
    s->bytes_read += r;
  s->drained = r >= 0 && (size_t) r < len;
  return r;
}

ssize_t
stream_fill (struct stream *s)
{
  if (s->tls)
    return inbuf_fill_with (&s->in, recv_tls, s->tls);
  return inbuf_fill_with (&s->in, recv_plain, s);
}

ssize_t
stream_recv (struct stream *s, void *buf, size_t len)
{
  if (s->tls)
    return tls_recv (s->tls, buf, len);
  return recv_plain (s, buf, len);
}

int
stream_take_fd (struct stream *s, uint64_t start, uint64_t end)
{
  unsigned i, j = 0;
  int fd = -1;

  for (i = 0; i < s->nr_fds; ++i) {
    if (s->fds[i].pos < start)
      close (s->fds[i].fd);
    else if (fd == -1 && s->fds[i].pos < end)
      fd = s->fds[i].fd;
    else
      s->fds[j++] = s->fds[i];
  }
  s->nr_fds = j;
  return fd;
}


static void
schedule_flush (struct stream *s)
{
  if (!ev_is_active (&s->wio))
    loop_flush_queue (&s->flush);
}

int
stream_queue (struct stream *s, const void *small, size_t len,
              void *data, size_t data_len, void (*free_data) (void *))
{
  if (!s->open) {
    if (data && free_data)
      free_data (data);
    return 0;
  }
  if (outq_push (&s->out, small, len, data, data_len, free_data) == -1)
    return -1;
  if (!s->tls && data && data_len > 0) {
    int fd;
    uint64_t offset;

    if (payload_in_file (data, &fd, &offset))
      outq_last_from_file (&s->out, fd, offset);
  }
  schedule_flush (s);
  return 0;
}

int
stream_queue_fd (struct stream *s, const void *small, size_t len, int fd)
{
  if (!s->open || s->tls) {
    errno = s->tls ? EINVAL : EBADF;
    return -1;
  }
  if (outq_push_fd (&s->out, small, len, fd) == -1)
    return -1;
  schedule_flush (s);
  return 0;
}

int
stream_flush (struct stream *s)
{
  size_t before = s->out.bytes;
  int r;

  if (!s->open)
    return 0;
  r = s->tls ? outq_flush_with (&s->out, tls_send, s->tls)
             : outq_flush (&s->out, s->wfd);
  s->bytes_written += before - s->out.bytes;
  if (r == 1)
    ev_io_start (loop, &s->wio);
  else
    ev_io_stop (loop, &s->wio);
  return r;
}

void
stream_set_tls (struct stream *s, struct tls *t)
{
  s->tls = t;
}
