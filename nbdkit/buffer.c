/* nbdkit front end: non-blocking I/O buffers (see buffer.h). */

#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buffer.h"

int
inbuf_init (struct inbuf *in, size_t size)
{
  in->buf = malloc (size);
  in->size = size;
  in->start = in->end = 0;
  return in->buf ? 0 : -1;
}

void
inbuf_free (struct inbuf *in)
{
  free (in->buf);
  in->buf = NULL;
  in->start = in->end = 0;
}

size_t
inbuf_take (struct inbuf *in, void *dst, size_t n)
{
  size_t avail = in->end - in->start;

  if (n > avail)
    n = avail;
  if (dst)
    memcpy (dst, in->buf + in->start, n);
  in->start += n;
  if (in->start == in->end)
    in->start = in->end = 0;
  return n;
}

static ssize_t
read_fd (void *opaque, void *buf, size_t len)
{
  ssize_t r;

  do
    r = read (*(int *) opaque, buf, len);
  while (r == -1 && errno == EINTR);
  return r;
}

ssize_t
inbuf_fill (struct inbuf *in, int fd)
{
  return inbuf_fill_with (in, read_fd, &fd);
}

ssize_t
inbuf_fill_with (struct inbuf *in,
                 ssize_t (*recv) (void *opaque, void *buf, size_t len),
                 void *opaque)
{
  ssize_t r;

  if (in->start > 0 && in->end == in->size) {
    memmove (in->buf, in->buf + in->start, in->end - in->start);
    in->end -= in->start;
    in->start = 0;
  }
  if (in->end == in->size) {
    errno = ENOBUFS;
    return -1;
  }
  r = recv (opaque, in->buf + in->end, in->size - in->end);
  if (r > 0)
    in->end += r;
  return r;
}

struct outchunk {
  struct outchunk *next;
  int fd;                       /* sent with the first byte, or -1 */
  int data_fd;                  /* data is this file's bytes, or -1 */
  uint64_t data_off;            /* ... from this offset */
  void *data;
  size_t data_len;
  void (*free_data) (void *);
  size_t done;                  /* bytes of small + data written */
  size_t len;                   /* bytes of small */
  unsigned char small[];
};

void
outq_init (struct outq *q)
{
  q->head = NULL;
  q->tail = &q->head;
  q->bytes = 0;
}

int
outq_push (struct outq *q, const void *small, size_t len,
           void *data, size_t data_len, void (*free_data) (void *))
{
  struct outchunk *c;

  if (len == 0 && (!data || data_len == 0)) {
    if (data && free_data)
      free_data (data);
    return 0;
  }
  c = malloc (sizeof *c + len);
  if (!c) {
    if (data && free_data)
      free_data (data);
    return -1;
  }
  c->next = NULL;
  c->fd = -1;
  c->data_fd = -1;
  c->data = data;
  c->data_len = data ? data_len : 0;
  c->free_data = free_data;
  c->done = 0;
  c->len = len;
  if (len)
    memcpy (c->small, small, len);
  *q->tail = c;
  q->tail = &c->next;
  q->bytes += len + c->data_len;
  return 0;
}

int
outq_push_fd (struct outq *q, const void *small, size_t len, int fd)
{
  struct outchunk **last = q->tail;

  if (len == 0) {
    errno = EINVAL;
    return -1;
  }
  if (outq_push (q, small, len, NULL, 0, NULL) == -1)
    return -1;
  /* The new chunk is the one *last pointed to. */
  (*last)->fd = fd;
  return 0;
}

void
outq_last_from_file (struct outq *q, int fd, uint64_t offset)
{
  /* next is the first member: tail points into the last chunk. */
  struct outchunk *c = (struct outchunk *) q->tail;

  if (q->head && c->data_len > 0) {
    c->data_fd = fd;
    c->data_off = offset;
  }
}

static void
chunk_free (struct outchunk *c)
{
  if (c->data && c->free_data)
    c->free_data (c->data);
  free (c);
}

#define MAX_IOV 64

/* Write iov[0..n) with writev, or with sendmsg passing pass_fd along
 * (SCM_RIGHTS) when it is not -1.
 */
static ssize_t
write_pieces (int fd, struct iovec *iov, int n, int pass_fd)
{
  union {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
  struct cmsghdr *cmsg;
  ssize_t r;

  if (pass_fd == -1) {
    do
      r = writev (fd, iov, n);
    while (r == -1 && errno == EINTR);
    return r;
  }
  memset (u.buf, 0, sizeof u.buf);
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &pass_fd, sizeof pass_fd);
  do
    r = sendmsg (fd, &msg, MSG_NOSIGNAL);
  while (r == -1 && errno == EINTR);
  return r;
}

#define MAX_IOV 64

/* Bytes written by one call: a large reply leaves over several turns
 * of the loop, so that copying it into the socket (a reader on another
 * core drains as fast as it comes) or encrypting it never holds the
 * loop long.  Past it the call says "would block", and the socket,
 * writable at once, brings the caller back on the next turn.
 */
#define FLUSH_MAX (1024 * 1024)

/* Add the piece [base, base+len) to iov[*n], clipped to what is left
 * of the call's budget (*room); false once the budget is spent.
 */
static bool
add_piece (struct iovec *iov, int *n, void *base, size_t len, size_t *room)
{
  if (*room == 0)
    return false;
  if (len > *room)
    len = *room;
  iov[*n].iov_base = base;
  iov[*n].iov_len = len;
  (*n)++;
  *room -= len;
  return true;
}

/* The data of c from its file, as much as room allows (sendfile: the
 * kernel takes the file's pages, this process copies nothing).  Past
 * the end of the file, which someone shrank since the reply was made,
 * zeroes: the reply's header already promised the bytes.
 */
static ssize_t
send_from_file (int fd, struct outchunk *c, size_t room)
{
  static const char zeroes[64 * 1024];
  size_t sent = c->done - c->len, n = c->data_len - sent;
  off_t off = (off_t) (c->data_off + sent);
  ssize_t r;

  if (n > room)
    n = room;
  do
    /* never-blocks: only a file in memory is sent so (payload_in_file) */
    r = sendfile (fd, c->data_fd, &off, n);
  while (r == -1 && errno == EINTR);
  if (r != 0)
    return r;
  if (n > sizeof zeroes)
    n = sizeof zeroes;
  do
    r = write (fd, zeroes, n);
  while (r == -1 && errno == EINTR);
  return r;
}

int
outq_flush (struct outq *q, int fd)
{
  size_t written = 0;

  while (q->head) {
    struct iovec iov[MAX_IOV];
    int n = 0, pass_fd = -1;
    size_t room = FLUSH_MAX - written;
    struct outchunk *c = q->head;
    ssize_t r;

    if (room == 0)
      return 1;

    if (c->data_fd >= 0 && c->done >= c->len) {
      r = send_from_file (fd, c, room);
      goto written;
    }
    /* Gather the unwritten parts of up to MAX_IOV/2 chunks.  A chunk
     * with a descriptor to pass starts a write of its own, so that the
     * descriptor travels with its first byte; one whose data is in a
     * file ends it (its data is the next write: send_from_file).
     */
    for (; c && n < MAX_IOV - 1; c = c->next) {
      size_t done = c->done;

      if (c->fd >= 0) {
        if (c != q->head)
          break;
        pass_fd = c->fd;
      }
      if (done < c->len) {
        if (!add_piece (iov, &n, c->small + done, c->len - done, &room))
          break;
        done = 0;
      }
      else
        done -= c->len;
      if (c->data_fd >= 0)
        break;
      if (c->data_len > done &&
          !add_piece (iov, &n, (unsigned char *) c->data + done,
                      c->data_len - done, &room))
        break;
    }

    r = write_pieces (fd, iov, n, pass_fd);
  written:
    if (r == -1)
      return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    written += r;
    if (r > 0 && pass_fd >= 0)
      q->head->fd = -1;         /* it went with the first byte */

    /* Retire what was written. */
    q->bytes -= r;
    while (r > 0) {
      size_t left;

      c = q->head;
      left = c->len + c->data_len - c->done;
      if ((size_t) r < left) {
        c->done += r;
        break;
      }
      r -= left;
      q->head = c->next;
      if (!q->head)
        q->tail = &q->head;
      chunk_free (c);
    }
  }
  return 0;
}

/* Largest piece handed to the send function: one TLS record. */
#define MAX_PIECE 16384

int
outq_flush_with (struct outq *q,
                 ssize_t (*send) (void *opaque, const void *buf, size_t len),
                 void *opaque)
{
  size_t written = 0;

  while (q->head) {
    struct outchunk *c = q->head;
    const unsigned char *p;
    size_t n;
    ssize_t r;

    if (written >= FLUSH_MAX)
      return 1;                 /* see FLUSH_MAX */

    if (c->done < c->len) {
      p = c->small + c->done;
      n = c->len - c->done;
    }
    else {
      p = (const unsigned char *) c->data + (c->done - c->len);
      n = c->len + c->data_len - c->done;
    }
    if (n > MAX_PIECE)
      n = MAX_PIECE;
    r = send (opaque, p, n);
    if (r == -1)
      return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    written += r;
    q->bytes -= r;
    c->done += r;
    if (c->done == c->len + c->data_len) {
      q->head = c->next;
      if (!q->head)
        q->tail = &q->head;
      chunk_free (c);
    }
  }
  return 0;
}

void
outq_clear (struct outq *q)
{
  struct outchunk *c, *next;

  for (c = q->head; c; c = next) {
    next = c->next;
    chunk_free (c);
  }
  outq_init (q);
}
