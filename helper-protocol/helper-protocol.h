/* nbdkit helper protocol, version 1: the wire format between the nbdkit
 * front end and a backend process.
 *
 * This header owns the frame layout, the message types, the flags and
 * the portable error codes, plus the codec (helper-protocol/wire.c) that
 * both sides use to encode and validate frames.  The normative
 * description is docs/nbdkit-helper-protocol.pod; this header must agree
 * with it.  Nothing here does I/O.
 *
 * Summary
 * -------
 * The front end and the backend talk over one SOCK_STREAM socket (a
 * socketpair made by the front end; the backend finds it as the file
 * descriptor named by the environment variable NBDKIT_HELPER_FD).
 * Every message is a frame: a fixed 40 byte header, then payload_len
 * bytes of payload.  All integers are unsigned, big-endian.
 *
 *   offset size field
 *   0      4    magic        HP_MAGIC
 *   4      2    type         message type; HP_REPLY bit set on replies
 *   6      2    flags        HP_FLAG_* (requests); 0 in replies
 *   8      8    id           chosen by the front end, echoed in the reply
 *   16     4    handle       connection handle (0 when not applicable)
 *   20     4    status       0 = ok, else an HP_E* code (replies only)
 *   24     8    offset       byte offset (data messages)
 *   32     4    count        byte count (data messages)
 *   36     4    payload_len  bytes of payload that follow the header
 *
 * The front end sends requests; the backend sends exactly one reply to
 * each, with the same type (plus HP_REPLY) and id.  Replies may come in
 * any order.  The backend never sends anything else.
 *
 * Control messages (HELLO..ATTACH_FD) carry a UTF-8 JSON object as payload
 * in both directions (an empty payload means {}).  PING carries none
 * either way.  Data messages carry binary payloads.  An error reply (status != 0) carries an optional
 * UTF-8 human-readable message as payload (no JSON).
 */

#ifndef NBDKIT_HELPER_PROTOCOL_H
#define NBDKIT_HELPER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HP_PROTOCOL_VERSION 1

#define HP_MAGIC       UINT32_C(0x4e424b48)    /* "NBKH" */
#define HP_HEADER_SIZE 40

/* The channel's file descriptor, announced in the backend's environment. */
#define HP_ENV_FD "NBDKIT_HELPER_FD"

/* Largest payload of any frame.  Data requests are limited by NBD to 32
 * MiB; EXTENTS replies and JSON payloads are far smaller.  A frame
 * announcing more is a protocol violation.
 */
#define HP_MAX_PAYLOAD  (64u * 1024 * 1024)
#define HP_MAX_DATA     (32u * 1024 * 1024)   /* count of PREAD/PWRITE */

/* Message types. */
enum hp_type {
  /* Control messages: JSON payloads. */
  HP_HELLO           = 1,   /* first message: versions and backend info */
  HP_CONFIG          = 2,   /* {"key":..,"value":..} */
  HP_CONFIG_COMPLETE = 3,
  HP_GET_READY       = 4,
  HP_DUMP            = 5,   /* reply: {"key":"value",..} for --dump-plugin */
  HP_LIST_EXPORTS    = 6,   /* {"readonly":b,"tls":b} -> {"exports":[..]} */
  HP_DEFAULT_EXPORT  = 7,   /* {"readonly":b,"tls":b} -> {"name":".."} */
  HP_OPEN            = 8,   /* -> reply header handle + capabilities */
  HP_CLOSE           = 9,   /* header handle */
  HP_SHUTDOWN        = 10,  /* reply, then the backend exits 0 */
  HP_ATTACH_FD       = 11,  /* {"purpose":..}; one fd via SCM_RIGHTS */

  /* Liveness: no payload either way (see HP_FEATURE_PING). */
  HP_PING            = 12,

  /* Data messages: binary payloads, header handle/offset/count. */
  HP_PREAD           = 16,  /* reply payload: count bytes */
  HP_PWRITE          = 17,  /* request payload: count bytes */
  HP_FLUSH           = 18,
  HP_TRIM            = 19,
  HP_ZERO            = 20,
  HP_CACHE           = 21,
  HP_EXTENTS         = 22,  /* reply payload: extents, see below */
};

#define HP_REPLY 0x8000     /* bit set in the type field of every reply */

/* HP_ATTACH_FD: the front end passes a file descriptor that outlives
 * the backend process, sent with SCM_RIGHTS as ancillary data of the
 * frame's first byte.  The backend asks for one by listing the purpose
 * in the "features" array of its HELLO reply; the front end then sends
 * ATTACH_FD after HELLO, before the first CONFIG, to every incarnation.
 *   "memfd"  a memfd (initially empty) that the front end keeps for
 *            the life of the server, so that data a backend keeps in it
 *            survives the backend's crash and restart.
 */
#define HP_FEATURE_MEMFD "memfd"

/*   "shm"    the shared-memory data path.  The front end sends ATTACH_FD
 *            {"purpose":"shm","size":N} with a memfd of N bytes (the
 *            arena), sealed so that its size cannot change, which the
 *            backend maps MAP_SHARED read-write.  Once the backend has
 *            answered that ATTACH_FD with success, PREAD and PWRITE
 *            requests may carry HP_FLAG_SHM: their payload is then 8
 *            bytes, a uint64 offset into the arena of a slot of count
 *            bytes.  PWRITE: the data to write is in the slot (read
 *            it, never change it).  PREAD: the backend may fill the slot
 *            and reply with HP_FLAG_SHM and no payload; it may also
 *            reply inline (count bytes) or with HP_FLAG_ZEROS as usual.
 *            A slot belongs to the backend from the request until its
 *            reply; a slot outside the arena gets an EINVAL reply.  The
 *            same arena is attached to every incarnation of the backend.
 */
#define HP_FEATURE_SHM "shm"

/*   "ping"   the backend answers HP_PING.  Only a backend that lists it
 *            is ever sent PING: at any time after HELLO, handle 0,
 *            offset and count 0, no payload.  The backend answers at
 *            once with status 0 and no payload, from the thread that
 *            reads the channel, never waiting for its own code or for
 *            other requests: a reply proves the process is alive and
 *            reads its channel, however slow the requests in progress.
 */
#define HP_FEATURE_PING "ping"
#define HP_SHM_REF_SIZE 8         /* payload of a HP_FLAG_SHM request */

/* Request flags. */
#define HP_FLAG_FUA       0x0001  /* PWRITE, TRIM, ZERO: durable on reply */
#define HP_FLAG_MAY_TRIM  0x0002  /* ZERO: may punch a hole */
#define HP_FLAG_FAST_ZERO 0x0004  /* ZERO: fail with ENOTSUP if not fast */
#define HP_FLAG_REQ_ONE   0x0008  /* EXTENTS: one extent is enough */
/* PREAD: in a request, the front end accepts a zeros reply; in a
 * successful reply (the one flag a reply may carry), the whole range
 * reads as zeros and no data follows.
 */
#define HP_FLAG_ZEROS     0x0010
/* PREAD, PWRITE: the data is in a slot of the shared-memory arena (see
 * HP_FEATURE_SHM); in a PREAD reply, the backend filled the slot.
 */
#define HP_FLAG_SHM       0x0020
/* In a reply to a data request: the backend asks for the client to be
 * disconnected at once (nbdkit_disconnect with force); the front end
 * closes the connection without answering the request.
 */
#define HP_FLAG_DISCONNECT 0x0040

/* Portable error codes, carried in the status field.  The numbers are
 * those of the NBD protocol so that they pass through unchanged.
 */
enum hp_error {
  HP_OK         = 0,
  HP_EPERM      = 1,
  HP_EIO        = 5,
  HP_ENOMEM     = 12,
  HP_EINVAL     = 22,
  HP_ENOSPC     = 28,
  HP_EOVERFLOW  = 75,
  HP_ENOTSUP    = 95,
  HP_ESHUTDOWN  = 108,
};

/* EXTENTS reply payload: a sequence of 12-byte entries
 *   uint64 length; uint32 type
 * describing consecutive byte ranges from the request's offset onward.
 * type is a bitmask of HP_EXTENT_HOLE and HP_EXTENT_ZERO (those of the
 * NBD "base:allocation" context).  At least one entry; the lengths are
 * non-zero; the first extent must start at the requested offset.
 */
#define HP_EXTENT_SIZE 12
#define HP_EXTENT_HOLE 1
#define HP_EXTENT_ZERO 2

/* A decoded frame header. */
struct hp_header {
  uint16_t type;
  uint16_t flags;
  uint64_t id;
  uint32_t handle;
  uint32_t status;
  uint64_t offset;
  uint32_t count;
  uint32_t payload_len;
};

/* Encode h into buf (exactly HP_HEADER_SIZE bytes). */
extern void hp_encode_header (const struct hp_header *h,
                              unsigned char buf[HP_HEADER_SIZE]);

/* Decode and validate a header: magic, a known type (with or without
 * HP_REPLY), flags allowed for the type (replies: only HP_FLAG_ZEROS on
 * PREAD, and HP_FLAG_SHM on PREAD), status only in replies,
 * payload_len within HP_MAX_PAYLOAD.  Returns 0 on success, or -1 and
 * sets *why to a static string describing the first problem found.
 */
extern int hp_decode_header (const unsigned char buf[HP_HEADER_SIZE],
                             struct hp_header *h, const char **why);

/* Further checks that need both sides of the exchange.
 *
 * hp_check_request: a decoded request is self-consistent (data counts
 * within HP_MAX_DATA, PWRITE payload_len == count, or
 * HP_SHM_REF_SIZE for a PREAD or PWRITE with HP_FLAG_SHM, other data
 * requests carry no payload, offset + count does not overflow; PING
 * has no payload and a zero handle, offset and count).
 *
 * hp_check_reply: a decoded reply answers req: same type, and for a
 * successful reply a payload of the right shape (PREAD: exactly count
 * bytes, or none with HP_FLAG_ZEROS or HP_FLAG_SHM if the request
 * allowed it; EXTENTS: a non-empty multiple of HP_EXTENT_SIZE; other data
 * replies: empty; PING: status 0 and no payload, always).  A status
 * must be one of enum hp_error.
 *
 * Both return 0 or -1 with *why set.
 */
extern int hp_check_request (const struct hp_header *req, const char **why);
extern int hp_check_reply (const struct hp_header *req,
                           const struct hp_header *reply, const char **why);

/* Name of a message type ("PREAD"), ignoring HP_REPLY; "unknown" if not
 * a known type.
 */
extern const char *hp_type_name (uint16_t type);
extern bool hp_type_is_known (uint16_t type);
extern bool hp_type_is_control (uint16_t type);

/* Errors.  hp_error_name (HP_EIO) = "EIO".  hp_error_from_name ("EIO")
 * = HP_EIO, or -1 if unknown.  hp_error_from_errno maps any host errno
 * to the portable set (unknown values become HP_EIO; EOPNOTSUPP and
 * ENOTSUP become HP_ENOTSUP; EROFS becomes HP_EPERM; EDQUOT and EFBIG
 * become HP_ENOSPC; ESHUTDOWN stays).  hp_error_to_errno maps back to
 * the host errno.
 */
extern const char *hp_error_name (uint32_t code);
extern int hp_error_from_name (const char *name);
extern uint32_t hp_error_from_errno (int err);
extern int hp_error_to_errno (uint32_t code);
extern bool hp_error_is_valid (uint32_t code);

/* Extents codec. */
extern void hp_encode_extent (unsigned char buf[HP_EXTENT_SIZE],
                              uint64_t length, uint32_t type);
extern void hp_decode_extent (const unsigned char buf[HP_EXTENT_SIZE],
                              uint64_t *length, uint32_t *type);

#ifdef __cplusplus
}
#endif

#endif /* NBDKIT_HELPER_PROTOCOL_H */
