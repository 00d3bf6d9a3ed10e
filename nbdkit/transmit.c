/* nbdkit front end: the transmission phase.
 *
 * Owns struct request: reads each NBD request (28-byte header, then
 * the payload of a write), validates it as the specification says,
 * forwards valid ones to the backend as helper-protocol frames and
 * answers each with a simple reply as soon as the backend answers —
 * replies leave in completion order, not request order.  A request is
 * answered exactly once.
 *
 * Memory per connection is bounded: at most MAX_IN_FLIGHT requests (or
 * -t's number) are outstanding, at most MAX_QUEUED_OUTPUT bytes of
 * replies wait for the client or are still to come for the reads in
 * flight, and at most MAX_WRITE_BYTES bytes of write payloads are in
 * the chain; past any of them, the connection stops reading until it
 * drains.  A write's payload is only allocated after its header passed
 * validation (and never more than 32 MiB); a refused write's payload is
 * read and thrown away through a fixed buffer.
 */

#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "byte-order.h"

/* Outstanding requests per connection: matches what the deepest
 * clients pipeline (qemu uses 16, nbdcopy 64 per connection) with room
 * to spare.
 */
#define MAX_IN_FLIGHT 256

/* Reply bytes waiting for a slow reader before we stop reading its
 * requests: a couple of maximum-sized reads.
 */
#define MAX_QUEUED_OUTPUT (64 * 1024 * 1024)

/* Write payloads in the chain before we stop reading requests: a
 * slow backend must not make a client's pipelined writes pile up
 * (256 of 32 MiB would be 8 GiB).  One more write may be read past it.
 */
#define MAX_WRITE_BYTES (64 * 1024 * 1024)

struct request {
  struct conn *conn;
  uint64_t cookie;
  uint16_t cmd;
  uint16_t flags;
  uint64_t offset;
  uint32_t count;
  uint32_t error;               /* refused before reaching the backend */
  const char *why;              /* ... and why (a static string) */
  void *data;                   /* payload of a write */
};

/* Reads at least this long may be answered "all zeros" by a backend
 * that can tell from its extents (a hole then costs no data on the
 * channel, and a structured reply is one NBD_REPLY_TYPE_OFFSET_HOLE).
 * Shorter reads are not worth the backend's extents lookup.
 */
#define MIN_ZEROS_READ (64 * 1024)

/* Longest error message sent in an NBD_REPLY_TYPE_ERROR chunk. */
#define MAX_ERROR_MESSAGE 1024

static void read_request (struct conn *conn);

static void
send_simple_reply (struct conn *conn, uint64_t cookie, uint32_t error,
                   void *data, uint32_t len)
{
  unsigned char hdr[NBD_SIMPLE_REPLY_SIZE];
  uint32_t magic = htobe32 (NBD_SIMPLE_REPLY_MAGIC);
  uint32_t err = htobe32 (error);
  uint64_t ck = htobe64 (cookie);

  memcpy (hdr, &magic, 4);
  memcpy (hdr + 4, &err, 4);
  memcpy (hdr + 8, &ck, 8);
  conn_write (conn, hdr, sizeof hdr, data, data ? len : 0, payload_free);
}

/* One structured reply chunk, the last of its request (we never send
 * more than one): the 20-byte header, then extra (at most 12 bytes,
 * copied), then data (owned, freed once written).
 */
static void
send_chunk (struct conn *conn, uint64_t cookie, uint16_t type,
            const void *extra, uint32_t extra_len,
            void *data, uint32_t data_len)
{
  unsigned char hdr[NBD_STRUCTURED_REPLY_SIZE + 12];

  put_be32 (hdr, NBD_STRUCTURED_REPLY_MAGIC);
  put_be16 (hdr + 4, NBD_REPLY_FLAG_DONE);
  put_be16 (hdr + 6, type);
  put_be64 (hdr + 8, cookie);
  put_be32 (hdr + 16, extra_len + data_len);
  if (extra_len)
    memcpy (hdr + NBD_STRUCTURED_REPLY_SIZE, extra, extra_len);
  conn_write (conn, hdr, NBD_STRUCTURED_REPLY_SIZE + extra_len,
              data, data ? data_len : 0, payload_free);
}

/* An error chunk: NBD_REPLY_TYPE_ERROR, or for a read that the
 * backend failed NBD_REPLY_TYPE_ERROR_OFFSET naming the first byte of
 * the range (the backend reports one failure for the whole range).
 * The message is what the backend or the front end said, if anything.
 */
static void
send_error_chunk (struct conn *conn, const struct request *r,
                  uint32_t error, const char *msg, bool at_offset)
{
  size_t mlen = msg ? strnlen (msg, MAX_ERROR_MESSAGE) : 0;
  unsigned char *buf = malloc (6 + mlen + 8);
  unsigned char fixed[6];

  if (!buf) {
    /* No room for the message: the bare error. */
    put_be32 (fixed, error);
    put_be16 (fixed + 4, 0);
    send_chunk (conn, r->cookie, NBD_REPLY_TYPE_ERROR, fixed, 6, NULL, 0);
    return;
  }
  put_be32 (buf, error);
  put_be16 (buf + 4, (uint16_t) mlen);
  if (mlen)
    memcpy (buf + 6, msg, mlen);
  if (at_offset)
    put_be64 (buf + 6 + mlen, r->offset);
  send_chunk (conn, r->cookie,
              at_offset ? NBD_REPLY_TYPE_ERROR_OFFSET : NBD_REPLY_TYPE_ERROR,
              NULL, 0, buf, (uint32_t) (6 + mlen + (at_offset ? 8 : 0)));
}

/* The bytes of a hole read answered with a simple reply: a read-only
 * private anonymous mapping as large as the largest read.  Every page
 * of it is the kernel's one zero page, so it costs no memory and no
 * memset however many such replies wait for a client; payload_free
 * leaves it be (payload_range_add).  NULL if it cannot be made.
 */
static void
keep_zeros (void *opaque)
{
}

static void *
zero_bytes (void)
{
  static void *zeros;
  static bool tried;

  if (!tried) {
    tried = true;
    zeros = mmap (NULL, MAX_REQUEST_SIZE, PROT_READ,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (zeros == MAP_FAILED ||
        payload_range_add (zeros, MAX_REQUEST_SIZE, keep_zeros, NULL,
                           -1) == -1)
      zeros = NULL;
  }
  return zeros;
}

/* Answer a request: a simple reply, or with structured replies one
 * chunk (OFFSET_DATA or OFFSET_HOLE for a read, BLOCK_STATUS, ERROR or
 * NONE).  data (malloc'd or NULL) is the read's bytes or the block
 * status payload; a successful read with data NULL reads as zeros.
 * msg (may be NULL) explains an error.
 */
static void
send_answer (struct conn *conn, const struct request *r, uint32_t error,
             const char *msg, void *data, uint32_t len)
{
  struct session *s = conn_session (conn);
  unsigned char extra[12];

  if (!s->structured) {
    if (!error && r->cmd == NBD_CMD_READ && !data) {
      len = r->count;
      data = zero_bytes ();
      if (!data)
        data = calloc (1, len);
      if (!data)
        error = NBD_ENOMEM;
    }
    if (error || r->cmd != NBD_CMD_READ) {
      payload_free (data);
      data = NULL;
    }
    send_simple_reply (conn, r->cookie, error, data, len);
    return;
  }
  if (error) {
    payload_free (data);
    send_error_chunk (conn, r, error, msg,
                      r->cmd == NBD_CMD_READ && !r->error);
  }
  else if (r->cmd == NBD_CMD_READ && !data) {
    put_be64 (extra, r->offset);
    put_be32 (extra + 8, r->count);
    send_chunk (conn, r->cookie, NBD_REPLY_TYPE_OFFSET_HOLE, extra, 12,
                NULL, 0);
  }
  else if (r->cmd == NBD_CMD_READ) {
    put_be64 (extra, r->offset);
    send_chunk (conn, r->cookie, NBD_REPLY_TYPE_OFFSET_DATA, extra, 8,
                data, len);
  }
  else if (r->cmd == NBD_CMD_BLOCK_STATUS)
    send_chunk (conn, r->cookie, NBD_REPLY_TYPE_BLOCK_STATUS, NULL, 0,
                data, len);
  else {
    send_chunk (conn, r->cookie, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
    payload_free (data);
  }
}

/* The NBD_REPLY_TYPE_BLOCK_STATUS payload for base:allocation from the
 * backend's extents: context id, then (length, flags) descriptors
 * covering at most the requested range.  NULL if there is none.
 */
static void *
block_status_payload (const struct session *s, const struct request *r,
                      const unsigned char *ext, uint32_t ext_len,
                      uint32_t *len)
{
  size_t n = ext_len / HP_EXTENT_SIZE, i, k = 0;
  uint64_t left = r->count, pos = r->offset;
  uint32_t align = s->caps.block_min > 1 ? s->caps.block_min : 1;
  unsigned char *buf = malloc (4 + 8 * (n ? n : 1));

  if (!buf)
    return NULL;
  put_be32 (buf, BASE_ALLOCATION_ID);
  for (i = 0; i < n && left > 0; ++i) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (ext + i * HP_EXTENT_SIZE, &length, &type);
    if (length == 0)
      continue;
    /* As nbdkit, the extent that reaches the end of the request is
     * sent whole, as far as the backend knows it goes on (within the
     * export, and 32 bits in block-size multiples): the client learns
     * more for free.  With REQ_ONE nbdkit cuts it at the end of the
     * request.
     */
    if ((r->flags & NBD_CMD_FLAG_REQ_ONE) && length > left)
      length = left;
    if (length > s->caps.size - pos)
      length = s->caps.size - pos;
    if (length > UINT32_MAX)
      length = UINT32_MAX - UINT32_MAX % align;
    if (length >= left)
      left = length;
    put_be32 (buf + 4 + 8 * k, (uint32_t) length);
    put_be32 (buf + 8 + 8 * k, type & (NBD_STATE_HOLE | NBD_STATE_ZERO));
    k++;
    left -= length;
    pos += length;
    if (r->flags & NBD_CMD_FLAG_REQ_ONE)
      break;
  }
  if (k == 0) {
    free (buf);
    return NULL;
  }
  *len = 4 + 8 * k;
  return buf;
}

static const char *
cmd_name (uint16_t cmd)
{
  switch (cmd) {
  case NBD_CMD_READ: return "READ";
  case NBD_CMD_WRITE: return "WRITE";
  case NBD_CMD_DISC: return "DISC";
  case NBD_CMD_FLUSH: return "FLUSH";
  case NBD_CMD_TRIM: return "TRIM";
  case NBD_CMD_CACHE: return "CACHE";
  case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
  case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
  default: return "unknown";
  }
}

/* Check a request against the specification and the export's
 * capabilities.  Returns 0, or the NBD error to answer with and *why.
 */
static uint32_t
validate (const struct session *s, const struct request *r,
          const char **why)
{
  const struct export_caps *c = &s->caps;
  uint16_t allowed = 0;
  bool ranged = true, writes = false, payload = false;

  switch (r->cmd) {
  case NBD_CMD_READ:
    if (s->structured)
      allowed = NBD_CMD_FLAG_DF;
    payload = true;
    break;
  case NBD_CMD_BLOCK_STATUS:
    if (!s->base_allocation) {
      *why = "block status needs the base:allocation context to be "
             "negotiated first";
      return NBD_EINVAL;
    }
    allowed = NBD_CMD_FLAG_REQ_ONE;
    break;
  case NBD_CMD_WRITE:
    allowed = NBD_CMD_FLAG_FUA;
    writes = payload = true;
    break;
  case NBD_CMD_FLUSH:
    if (!c->can_flush) {
      *why = "the export does not support flush";
      return NBD_EINVAL;
    }
    if (r->offset != 0 || r->count != 0) {
      *why = "flush takes no offset or length";
      return NBD_EINVAL;
    }
    ranged = false;
    break;
  case NBD_CMD_TRIM:
    if (c->can_write && !c->can_trim) {
      *why = "the export does not support trim";
      return NBD_EINVAL;
    }
    allowed = NBD_CMD_FLAG_FUA;
    writes = true;
    break;
  case NBD_CMD_WRITE_ZEROES:
    if (c->can_write && !c->can_zero) {
      *why = "the export does not support write zeroes";
      return NBD_EINVAL;
    }
    allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
    if (c->can_fast_zero)
      allowed |= NBD_CMD_FLAG_FAST_ZERO;
    writes = true;
    break;
  case NBD_CMD_CACHE:
    if (!c->can_cache) {
      *why = "the export does not support cache";
      return NBD_EINVAL;
    }
    payload = true;             /* bounded like a read */
    break;
  default:
    *why = "unknown command";
    return NBD_EINVAL;
  }

  /* With NBD_FLAG_SEND_FUA advertised, every command MUST be accepted
   * with FUA (the specification, "Command flags").
   */
  if (c->can_fua)
    allowed |= NBD_CMD_FLAG_FUA;
  if (r->flags & ~allowed) {
    *why = (r->flags & NBD_CMD_FLAG_DF) && !s->structured
      ? "the DF flag needs structured replies"
      : "a flag that this command does not take";
    return NBD_EINVAL;
  }
  if ((r->flags & NBD_CMD_FLAG_FUA) && !c->can_fua) {
    *why = "the export does not support FUA";
    return NBD_EINVAL;
  }
  if (ranged) {
    if (r->count == 0) {
      *why = "the request has a length of zero";
      return NBD_EINVAL;
    }
    /* Out of bounds is the first thing wrong with a request that is
     * also too long (as nbdkit answers).
     */
    if (r->offset > c->size || r->count > c->size - r->offset) {
      *why = "the request goes beyond the end of the export";
      return writes ? NBD_ENOSPC : NBD_EINVAL;
    }
  }
  if ((r->cmd == NBD_CMD_READ || r->cmd == NBD_CMD_WRITE) &&
      r->count > MAX_REQUEST_SIZE) {
    *why = "the request is longer than 32 MiB";
    return NBD_EOVERFLOW;
  }
  if (ranged) {
    /* The backend's block size constraints, as advertised. */
    if (c->block_min > 1 && !c->block_advisory &&
        ((r->offset | r->count) & (c->block_min - 1))) {
      *why = "the request is not aligned to the export's minimum "
             "block size";
      return NBD_EINVAL;
    }
    if (payload && c->block_max && !c->block_advisory &&
        r->count > c->block_max) {
      *why = "the request is longer than the export's maximum block size";
      return NBD_EINVAL;
    }
  }
  if (writes && !c->can_write) {
    *why = "the export is read-only";
    return NBD_EPERM;
  }
  return 0;
}

static uint16_t
hp_type_of (uint16_t cmd)
{
  switch (cmd) {
  case NBD_CMD_READ: return HP_PREAD;
  case NBD_CMD_WRITE: return HP_PWRITE;
  case NBD_CMD_FLUSH: return HP_FLUSH;
  case NBD_CMD_TRIM: return HP_TRIM;
  case NBD_CMD_WRITE_ZEROES: return HP_ZERO;
  case NBD_CMD_CACHE: return HP_CACHE;
  case NBD_CMD_BLOCK_STATUS: return HP_EXTENTS;
  }
  abort ();
}

static uint16_t
hp_flags_of (const struct request *r)
{
  uint16_t f = 0;

  /* FUA means something only where the command writes; on the others
   * (accepted, as the specification says) it is dropped here.
   */
  if ((r->flags & NBD_CMD_FLAG_FUA) &&
      (r->cmd == NBD_CMD_WRITE || r->cmd == NBD_CMD_TRIM ||
       r->cmd == NBD_CMD_WRITE_ZEROES))
    f |= HP_FLAG_FUA;
  if (r->flags & NBD_CMD_FLAG_REQ_ONE)
    f |= HP_FLAG_REQ_ONE;
  if (r->cmd == NBD_CMD_READ && r->count >= MIN_ZEROS_READ &&
      conn_session (r->conn)->caps.can_extents)
    f |= HP_FLAG_ZEROS;
  if (r->cmd == NBD_CMD_WRITE_ZEROES) {
    if (!(r->flags & NBD_CMD_FLAG_NO_HOLE))
      f |= HP_FLAG_MAY_TRIM;
    if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
      f |= HP_FLAG_FAST_ZERO;
  }
  return f;
}

/* Something finished: close if the client is done, else maybe resume. */
static void
request_finished (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (conn_is_closed (conn))
    return;
  if (s->disconnecting) {
    if (s->in_flight == 0)
      conn_close_after_output (conn);
  }
  else
    transmit_maybe_resume (conn);
}

static void
on_backend_reply (void *opaque, const struct hp_header *reply,
                  void *payload, uint32_t len)
{
  struct request *r = opaque;
  struct conn *conn = r->conn;
  struct session *s = conn_session (conn);
  uint32_t error = reply ? nbd_error_from_status (reply->status) : NBD_EIO;

  s->in_flight--;
  if (r->cmd == NBD_CMD_READ)
    s->read_bytes_in_flight -= r->count;
  if (r->cmd == NBD_CMD_WRITE)
    s->write_bytes_in_flight -= r->count;
  if (reply && (reply->flags & HP_FLAG_DISCONNECT)) {
    /* The backend dropped the client (nbdkit_disconnect with force):
     * no answer to this request or any other.
     */
    nbdkit_debug ("%s: the backend disconnected the client",
                  conn_peer (conn));
    payload_free (payload);
    free (r);
    conn_close (conn);
    conn_unref (conn);
    return;
  }
  if (error && opt.verbose)
    nbdkit_debug ("%s: %s offset %" PRIu64 " count %" PRIu32 ": %s%s%s",
                  conn_peer (conn), cmd_name (r->cmd), r->offset, r->count,
                  hp_error_name (error),
                  reply && payload ? ": " : "",
                  reply && payload ? (const char *) payload : "");
  if (!error && r->cmd == NBD_CMD_BLOCK_STATUS) {
    void *bs = block_status_payload (s, r, payload, len, &len);

    payload_free (payload);
    payload = bs;
    if (!bs)
      error = NBD_EIO;
  }
  if (!error && r->cmd == NBD_CMD_READ && (reply->flags & HP_FLAG_ZEROS)) {
    payload_free (payload);        /* none: the range reads as zeros */
    payload = NULL;
  }
  if (error) {
    const char *msg = reply ? (const char *) payload
      : "the backend could not answer";

    send_answer (conn, r, error, msg, NULL, 0);
    payload_free (payload);
  }
  else
    send_answer (conn, r, 0, NULL, payload, len);       /* takes payload */
  free (r);
  request_finished (conn);
  conn_unref (conn);
}

static void
submit (struct conn *conn, struct request *r)
{
  struct session *s = conn_session (conn);
  struct hp_header h = {
    .type = hp_type_of (r->cmd),
    .flags = hp_flags_of (r),
    .offset = r->offset,
    .count = r->count,
  };
  void *data = r->data;

  r->data = NULL;               /* the channel owns it from here */
  s->in_flight++;
  if (r->cmd == NBD_CMD_READ)
    s->read_bytes_in_flight += r->count;
  if (r->cmd == NBD_CMD_WRITE)
    s->write_bytes_in_flight += r->count;
  conn_ref (conn);
  chain_send (s->chain, &h, data, data ? r->count : 0, on_backend_reply, r);
}

/* A request is complete: answer its refusal, or send it on; then read
 * the next one.
 */
static void
dispatch (struct conn *conn, struct request *r)
{
  struct session *s = conn_session (conn);

  if (r->error) {
    send_answer (conn, r, r->error, r->why, NULL, 0);
    free (r);
  }
  else if (r->cmd == NBD_CMD_BLOCK_STATUS && !s->caps.can_extents) {
    /* The backend cannot tell: all of it is allocated data. */
    unsigned char ext[HP_EXTENT_SIZE];
    uint32_t len;
    void *bs;

    hp_encode_extent (ext, r->count, 0);
    bs = block_status_payload (s, r, ext, sizeof ext, &len);
    send_answer (conn, r, bs ? 0 : NBD_ENOMEM, "out of memory",
                 bs, bs ? len : 0);
    free (r);
  }
  else
    submit (conn, r);
  read_request (conn);
}

/* A write's payload has arrived (or been thrown away). */
static void
on_write_payload (struct conn *conn)
{
  struct session *s = conn_session (conn);
  struct request *r = s->cur;
  int err = conn_read_error (conn);

  s->cur = NULL;
  if (err && !r->error) {
    /* Received in place, the file could not take it. */
    payload_free (r->data);
    r->data = NULL;
    r->error = nbd_error_from_status (hp_error_from_errno (err));
    r->why = "the payload could not be written in place";
  }
  dispatch (conn, r);
}

static void
on_request_header (struct conn *conn)
{
  struct session *s = conn_session (conn);
  const unsigned char *p = s->reqhdr;
  struct request *r;
  uint32_t magic;
  uint16_t flags, cmd;
  uint64_t cookie, offset;
  uint32_t count;

  memcpy (&magic, p, 4);
  memcpy (&flags, p + 4, 2);
  memcpy (&cmd, p + 6, 2);
  memcpy (&cookie, p + 8, 8);
  memcpy (&offset, p + 16, 8);
  memcpy (&count, p + 24, 4);
  if (be32toh (magic) != NBD_REQUEST_MAGIC) {
    nbdkit_debug ("%s: bad request magic, closing", conn_peer (conn));
    conn_close (conn);
    return;
  }
  cmd = be16toh (cmd);

  if (cmd == NBD_CMD_DISC) {
    nbdkit_debug ("%s: client sent NBD_CMD_DISC", conn_peer (conn));
    s->disconnecting = true;
    request_finished (conn);
    return;
  }

  r = calloc (1, sizeof *r);
  if (!r) {
    conn_close (conn);
    return;
  }
  r->conn = conn;
  r->cookie = be64toh (cookie);
  r->cmd = cmd;
  r->flags = be16toh (flags);
  r->offset = be64toh (offset);
  r->count = be32toh (count);
  r->error = validate (s, r, &r->why);
  if (r->error)
    nbdkit_debug ("%s: refused %s offset %" PRIu64 " count %" PRIu32
                  ": %s: %s",
                  conn_peer (conn), cmd_name (cmd), r->offset, r->count,
                  hp_error_name (r->error), r->why);

  if (cmd == NBD_CMD_WRITE) {
    struct in_place ip;

    /* The payload follows whatever we think of the request.  Straight
     * into the export's file where it can (not through TLS, which
     * decrypts with ordinary stores into the buffer).
     */
    s->cur = r;
    if (!r->error && !conn_is_tls (conn) &&
        chain_write_in_place (s->chain, hp_flags_of (r), r->offset,
                              r->count, &ip)) {
      r->data = ip.buf;
      conn_read_in_place (conn, &ip, r->count, on_write_payload);
      return;
    }
    if (!r->error && !(r->data = chain_data_alloc (s->chain, r->count))) {
      r->error = NBD_ENOMEM;
      r->why = "out of memory";
    }
    conn_read (conn, r->data, r->count, on_write_payload);
    return;
  }
  dispatch (conn, r);
}

static bool
must_pause (struct conn *conn)
{
  struct session *s = conn_session (conn);

  /* -t N: as nbdkit's N threads per connection, at most N requests
   * of a connection in the chain at once (-t 1: one at a time, the
   * replies in the order of the requests).
   */
  unsigned max = opt.threads && opt.threads < MAX_IN_FLIGHT
                 ? opt.threads : MAX_IN_FLIGHT;

  return s->in_flight >= max ||
         conn_output_bytes (conn) + s->read_bytes_in_flight >=
         MAX_QUEUED_OUTPUT ||
         s->write_bytes_in_flight >= MAX_WRITE_BYTES;
}

static void
read_request (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (conn_is_closed (conn) || s->disconnecting)
    return;
  if (must_pause (conn)) {
    s->paused = true;
    return;
  }
  conn_read (conn, s->reqhdr, NBD_REQUEST_SIZE, on_request_header);
}

void
transmit_maybe_resume (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (s->transmitting && s->paused && !must_pause (conn)) {
    s->paused = false;
    read_request (conn);
  }
}

void
transmit_start (struct conn *conn)
{
  struct session *s = conn_session (conn);

  nbdkit_debug ("%s: transmission phase, export size %" PRIu64
                ", flags 0x%x", conn_peer (conn), s->caps.size, s->eflags);
  s->transmitting = true;
  free (s->optdata);
  s->optdata = NULL;
  read_request (conn);
}

void
transmit_free_current (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (s->cur) {
    payload_free (s->cur->data);
    free (s->cur);
    s->cur = NULL;
  }
}

void
transmit_drain (struct conn *conn)
{
  struct session *s = conn_session (conn);

  s->disconnecting = true;
  request_finished (conn);
}
