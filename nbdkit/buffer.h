/* nbdkit front end: non-blocking I/O buffers shared by client
 * connections and the backend channel.
 *
 * struct inbuf   a read-ahead buffer: fill it from a socket with one
 *                read(2), take bytes out of it.
 * struct outq    a queue of outgoing chunks written with writev(2); each
 *                chunk is a small copied part and an optional large part
 *                owned by the queue until written or dropped (sent
 *                with sendfile(2) when it is a file's bytes).
 * Neither ever blocks: they return to the caller on EAGAIN.
 */

#ifndef NBDKIT_BUFFER_H
#define NBDKIT_BUFFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct inbuf {
  unsigned char *buf;
  size_t size;
  size_t start, end;            /* unread bytes are buf[start..end) */
};

extern int inbuf_init (struct inbuf *in, size_t size);
extern void inbuf_free (struct inbuf *in);
static inline size_t inbuf_avail (const struct inbuf *in)
{ return in->end - in->start; }
/* Copy up to n buffered bytes to dst (NULL: discard); returns how many. */
extern size_t inbuf_take (struct inbuf *in, void *dst, size_t n);
/* Read once from fd into the free space.  Returns bytes read, 0 on EOF,
 * -1 with errno (EAGAIN when nothing is there).
 */
extern ssize_t inbuf_fill (struct inbuf *in, int fd);
/* The same through a receive function with read(2)'s conventions. */
extern ssize_t inbuf_fill_with (struct inbuf *in,
                                ssize_t (*recv) (void *opaque, void *buf,
                                                 size_t len),
                                void *opaque);

struct outchunk;

struct outq {
  struct outchunk *head, **tail;
  size_t bytes;                 /* not yet written */
};

extern void outq_init (struct outq *q);
/* Queue small (copied) then data (owned, released by free_data). */
extern int outq_push (struct outq *q, const void *small, size_t len,
                      void *data, size_t data_len, void (*free_data) (void *));
/* Queue small (copied, at least one byte) whose first byte carries fd
 * (SCM_RIGHTS); the caller keeps fd open until it is written.
 */
extern int outq_push_fd (struct outq *q, const void *small, size_t len,
                         int fd);
/* The data of the chunk outq_push queued last is also the bytes of
 * file fd at offset: outq_flush sends it from there (sendfile), never
 * reading data itself.  The caller keeps fd open as long as data.
 * Past the end of a file that shrank meanwhile, zeroes are sent.
 */
extern void outq_last_from_file (struct outq *q, int fd, uint64_t offset);
/* Write as much as possible, up to 1 MiB a call: 0 all written, 1
 * would block (or the MiB was written), -1 error.  Descriptors are
 * passed in order with the bytes (sendmsg), data from a file with
 * sendfile.
 */
extern int outq_flush (struct outq *q, int fd);
/* The same through a send function (TLS), one piece at a time: send
 * returns bytes sent, or -1 with errno (EAGAIN: would block).  A piece
 * refused with EAGAIN is offered again unchanged, as gnutls requires.
 */
extern int outq_flush_with (struct outq *q,
                            ssize_t (*send) (void *opaque, const void *buf,
                                             size_t len),
                            void *opaque);
extern void outq_clear (struct outq *q);

#endif /* NBDKIT_BUFFER_H */
