/* nbdkit front end: struct stream, one non-blocking socket with its
 * buffers, used by client connections (conn.c) and by the backend
 * channel (backend-channel.c) alike.
 *
 * A stream owns its file descriptors, the read-ahead buffer, the queue
 * of output, the libev watchers, the batching of output (queued bytes
 * leave in one writev just before the loop waits: a struct loop_flush),
 * a TLS session once there is one, and file descriptors passed with
 * SCM_RIGHTS in order with the bytes.  It never blocks and never calls
 * the protocol above it: it reports through the three callbacks of
 * struct stream_ops, and the owner reads and writes with the functions
 * below.
 */

#ifndef NBDKIT_STREAM_H
#define NBDKIT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "internal.h"
#include "buffer.h"

struct stream_ops {
  /* The socket is readable (or TLS holds bytes): read with stream_fill,
   * stream_recv and stream_take.
   */
  void (*readable) (void *opaque);
  /* The socket can take more after a write would have blocked. */
  void (*writable) (void *opaque);
  /* Output was queued in this turn of the loop and the loop is about
   * to wait: normally the owner calls stream_flush.  Not called while
   * the stream waits for writability (writable is, then).
   */
  void (*flush) (void *opaque);
};

/* Descriptors received and not yet claimed (stream_take_fd). */
#define STREAM_MAX_FDS 4

struct stream {
  int rfd, wfd;
  ev_io rio, wio;
  struct loop_flush flush;
  struct inbuf in;
  struct outq out;
  struct tls *tls;
  uint64_t bytes_written;       /* ever, through this stream */
  uint64_t bytes_read;          /* ever, from this stream */
  bool drained;                 /* the last read of the socket got less
                                 * than it asked for */
  /* stream_take_fds: reads collect descriptors (SCM_RIGHTS), each with
   * the stream position of the last byte of the read that brought it.
   */
  bool take_fds;
  struct { int fd; uint64_t pos; } fds[STREAM_MAX_FDS];
  unsigned nr_fds;
  bool open;
  const struct stream_ops *ops;
  void *opaque;
};

/* Set up a stream on rfd/wfd (the same for a socket), with a read-ahead
 * buffer of inbuf_size bytes (s->in, unless it was made already with
 * inbuf_init).  -1: out of memory (nothing to undo).  Reading is off
 * until stream_read_start.
 */
extern int stream_init (struct stream *s, int rfd, int wfd,
                        size_t inbuf_size, const struct stream_ops *ops,
                        void *opaque);
/* Stop everything, drop queued output, end TLS (a close_notify if
 * asked and possible), close the descriptors, free the buffers.
 */
extern void stream_close (struct stream *s, bool say_bye);

extern void stream_read_start (struct stream *s);
extern void stream_read_stop (struct stream *s);
/* Watch for writability (the TLS handshake asks for it). */
extern void stream_write_watch (struct stream *s, bool on);

/* Read once into the buffer: bytes, 0 at the end, -1 with errno
 * (EAGAIN: nothing now).
 */
extern ssize_t stream_fill (struct stream *s);
/* Read straight into buf, bypassing the buffer (large payloads). */
extern ssize_t stream_recv (struct stream *s, void *buf, size_t len);
/* From now on, collect the descriptors that come with the bytes (a
 * backend channel: not over TLS).  Without it they are dropped.
 */
static inline void stream_take_fds (struct stream *s)
{ s->take_fds = true; }
/* The stream position of the next byte stream_take would give. */
static inline uint64_t stream_position (const struct stream *s)
{ return s->bytes_read - (s->in.end - s->in.start); }
/* The descriptor that came with the bytes at stream positions [start,
 * end) -- a sender passes one with the first byte of a message, and
 * the kernel ends a read after the bytes that carry descriptors, so
 * the read that brought it ends inside the message -- or -1.  Those
 * that came before start belong to nothing and are closed; the caller
 * owns the one returned.
 */
extern int stream_take_fd (struct stream *s, uint64_t start, uint64_t end);
static inline size_t stream_take (struct stream *s, void *dst, size_t n)
{ return inbuf_take (&s->in, dst, n); }
static inline size_t stream_buffered (const struct stream *s)
{ return inbuf_avail (&s->in); }
/* Did the last read find the socket empty?  A read that got fewer
 * bytes than it asked for took all there was: another read would only
 * say EAGAIN, and the loop (level-triggered) says when more comes.
 * Not over TLS, whose reads end at a record.
 */
static inline bool stream_drained (const struct stream *s)
{ return !s->tls && s->drained; }
/* The stream_buffered bytes, in place (then stream_take them). */
static inline const void *stream_peek (const struct stream *s)
{ return s->in.buf + s->in.start; }

/* Queue output, written just before the loop waits (or when the
 * socket can take it).  small is copied; data is owned until written
 * or dropped, then released with free_data.  -1: out of memory.
 */
extern int stream_queue (struct stream *s, const void *small, size_t len,
                         void *data, size_t data_len,
                         void (*free_data) (void *));
/* The same for a message whose first byte carries fd (SCM_RIGHTS; not
 * over TLS).  The caller keeps its fd; it is sent in order with the
 * bytes, whatever is queued before it.
 */
extern int stream_queue_fd (struct stream *s, const void *small, size_t len,
                            int fd);
/* Write what is queued: 0 all written, 1 the socket is full (the
 * stream then waits for it and calls writable), -1 with errno.
 */
extern int stream_flush (struct stream *s);
static inline size_t stream_queued (const struct stream *s)
{ return s->out.bytes; }

/* TLS: from now on reads and writes go through t (tls.c), which the
 * stream owns.
 */
extern void stream_set_tls (struct stream *s, struct tls *t);

#endif /* NBDKIT_STREAM_H */
