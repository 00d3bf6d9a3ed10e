/* Unit tests of the helper protocol codec (helper-protocol/wire.c):
 * byte layout, round trips, and every rejection of a bad frame.
 * Prints TAP.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper-protocol.h"

static int test_nr, failures;

static void
ok (int cond, const char *what)
{
  ++test_nr;
  printf ("%s %d - wire: %s\n", cond ? "ok" : "not ok", test_nr, what);
  if (!cond)
    failures++;
}

static struct hp_header
req (uint16_t type)
{
  return (struct hp_header) { .type = type, .id = 1, .handle = 1 };
}

/* Decoding the encoding of h fails, with a reason. */
static int
decode_fails (const struct hp_header *h)
{
  unsigned char buf[HP_HEADER_SIZE];
  struct hp_header d;
  const char *why = NULL;

  hp_encode_header (h, buf);
  return hp_decode_header (buf, &d, &why) == -1 && why != NULL;
}

static int
request_fails (const struct hp_header *h)
{
  const char *why = NULL;

  return hp_check_request (h, &why) == -1 && why != NULL;
}

static int
reply_fails (const struct hp_header *r, const struct hp_header *p)
{
  const char *why = NULL;

  return hp_check_reply (r, p, &why) == -1 && why != NULL;
}

int
main (void)
{
  unsigned char buf[HP_HEADER_SIZE];
  struct hp_header h, d;
  const char *why;
  static const unsigned char expect[HP_HEADER_SIZE] = {
    0x4e, 0x42, 0x4b, 0x48,                         /* magic */
    0x00, 0x11,                                     /* PWRITE */
    0x00, 0x01,                                     /* FUA */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* id */
    0x00, 0x00, 0x00, 0x2a,                         /* handle */
    0x00, 0x00, 0x00, 0x00,                         /* status */
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00, /* offset */
    0x00, 0x00, 0x02, 0x00,                         /* count */
    0x00, 0x00, 0x02, 0x00,                         /* payload_len */
  };

  /* Layout, byte by byte. */
  h = (struct hp_header) {
    .type = HP_PWRITE, .flags = HP_FLAG_FUA, .id = 0x0102030405060708,
    .handle = 42, .offset = 0x100001000, .count = 512, .payload_len = 512,
  };
  hp_encode_header (&h, buf);
  ok (memcmp (buf, expect, sizeof buf) == 0, "big-endian layout");
  ok (hp_decode_header (buf, &d, &why) == 0, "valid header decodes");
  ok (memcmp (&d, &h, sizeof h) == 0, "round trip keeps every field");
  ok (hp_check_request (&d, &why) == 0, "valid PWRITE request");

  /* Every field at its extremes survives a round trip. */
  h = (struct hp_header) {
    .type = HP_PREAD | HP_REPLY, .id = UINT64_MAX, .handle = UINT32_MAX,
    .status = HP_ESHUTDOWN, .offset = UINT64_MAX, .count = UINT32_MAX,
    .payload_len = HP_MAX_PAYLOAD,
  };
  hp_encode_header (&h, buf);
  ok (hp_decode_header (buf, &d, &why) == 0 &&
      memcmp (&d, &h, sizeof h) == 0, "extreme values round trip");

  /* Rejections by hp_decode_header. */
  hp_encode_header (&h, buf);
  buf[0] ^= 1;
  ok (hp_decode_header (buf, &d, &why) == -1 &&
      strcmp (why, "bad magic") == 0, "bad magic is refused");
  h = req (99);
  ok (decode_fails (&h), "unknown type is refused");
  h = req (0);
  ok (decode_fails (&h), "type 0 is refused");
  h = req (HP_PREAD);
  h.flags = HP_FLAG_FUA;
  ok (decode_fails (&h), "FUA on PREAD is refused");
  h = req (HP_ZERO);
  h.flags = HP_FLAG_FUA | HP_FLAG_MAY_TRIM | HP_FLAG_FAST_ZERO;
  ok (!decode_fails (&h), "FUA, MAY_TRIM and FAST_ZERO on ZERO are allowed");
  h.flags = 0x100;
  ok (decode_fails (&h), "unknown flag is refused");
  h = req (HP_EXTENTS);
  h.flags = HP_FLAG_REQ_ONE;
  ok (!decode_fails (&h), "REQ_ONE on EXTENTS is allowed");
  h = req (HP_PREAD | HP_REPLY);
  h.flags = HP_FLAG_FUA;
  ok (decode_fails (&h), "flags in a reply are refused");
  h.flags = HP_FLAG_ZEROS;
  ok (!decode_fails (&h), "ZEROS on a PREAD reply is allowed");
  h = req (HP_PWRITE | HP_REPLY);
  h.flags = HP_FLAG_ZEROS;
  ok (decode_fails (&h), "ZEROS on a PWRITE reply is refused");
  h = req (HP_PWRITE | HP_REPLY);
  h.flags = HP_FLAG_SHM;
  ok (decode_fails (&h), "SHM on a PWRITE reply is refused");
  h = req (HP_PREAD | HP_REPLY);
  h.flags = HP_FLAG_SHM;
  ok (!decode_fails (&h), "SHM on a PREAD reply is allowed");
  h = req (HP_PWRITE);
  h.flags = HP_FLAG_SHM | HP_FLAG_FUA;
  ok (!decode_fails (&h), "SHM and FUA on a PWRITE request are allowed");
  h = req (HP_TRIM);
  h.flags = HP_FLAG_SHM;
  ok (decode_fails (&h), "SHM on TRIM is refused");
  h = req (HP_PREAD);
  h.status = HP_EIO;
  ok (decode_fails (&h), "status in a request is refused");
  h = req (HP_PREAD | HP_REPLY);
  h.status = 3;
  ok (decode_fails (&h), "unknown error code is refused");
  h = req (HP_PREAD | HP_REPLY);
  h.payload_len = HP_MAX_PAYLOAD + 1;
  ok (decode_fails (&h), "payload over the maximum is refused");

  /* hp_check_request. */
  h = req (HP_PWRITE);
  h.count = 512;
  h.payload_len = 511;
  ok (request_fails (&h), "PWRITE payload shorter than count");
  h = req (HP_PREAD);
  h.count = HP_MAX_DATA + 1;
  ok (request_fails (&h), "PREAD over the data maximum");
  h = req (HP_PREAD);
  h.count = 512;
  h.payload_len = 512;
  ok (request_fails (&h), "PREAD request with a payload");
  h = req (HP_PWRITE);
  h.flags = HP_FLAG_SHM;
  h.count = 1 << 20;
  h.payload_len = HP_SHM_REF_SIZE;
  ok (!request_fails (&h), "PWRITE naming a shared-memory slot");
  h.payload_len = h.count;
  ok (request_fails (&h), "PWRITE with SHM but inline data");
  h = req (HP_PREAD);
  h.flags = HP_FLAG_SHM;
  h.count = 4096;
  h.payload_len = HP_SHM_REF_SIZE;
  ok (!request_fails (&h), "PREAD naming a shared-memory slot");
  h.payload_len = 4;
  ok (request_fails (&h), "PREAD with a short slot reference");
  h = req (HP_TRIM);
  h.offset = INT64_MAX;
  h.count = 2;
  ok (request_fails (&h), "offset + count overflowing");
  h = req (HP_FLUSH);
  h.offset = 1;
  ok (request_fails (&h), "FLUSH with an offset");
  h = req (HP_OPEN);
  h.payload_len = 100;
  ok (!request_fails (&h), "control request with a JSON payload");
  h = req (HP_OPEN | HP_REPLY);
  ok (request_fails (&h), "a reply where a request is expected");
  h = (struct hp_header) { .type = HP_PING, .id = 7 };
  ok (!decode_fails (&h) && !request_fails (&h), "PING request");
  h.flags = HP_FLAG_FUA;
  ok (decode_fails (&h), "PING with a flag");
  h.flags = 0;
  h.payload_len = 2;
  ok (request_fails (&h), "PING request with a payload");
  h.payload_len = 0;
  h.handle = 1;
  ok (request_fails (&h), "PING request with a handle");
  h.handle = 0;
  h.offset = 512;
  ok (request_fails (&h), "PING request with an offset");
  h.offset = 0;
  h.count = 512;
  ok (request_fails (&h), "PING request with a count");

  /* hp_check_reply. */
  h = req (HP_PREAD);
  h.count = 4096;
  d = h;
  d.type |= HP_REPLY;
  d.payload_len = 4096;
  ok (!reply_fails (&h, &d), "PREAD reply with exactly count bytes");
  d.payload_len = 4095;
  ok (reply_fails (&h, &d), "PREAD reply one byte short");
  d.payload_len = 0;
  d.status = HP_EIO;
  ok (!reply_fails (&h, &d), "PREAD error reply without data");
  d.status = 0;
  d.payload_len = 4096;
  d.id = 2;
  ok (reply_fails (&h, &d), "reply id mismatch");
  d.id = 1;
  d.type = HP_PWRITE | HP_REPLY;
  ok (reply_fails (&h, &d), "reply type mismatch");
  d.type = HP_PREAD;
  ok (reply_fails (&h, &d), "reply without the reply bit");
  d = h;
  d.type |= HP_REPLY;
  d.flags = HP_FLAG_ZEROS;
  ok (reply_fails (&h, &d), "zeros reply the request did not allow");
  h.flags = HP_FLAG_ZEROS;
  ok (!reply_fails (&h, &d), "zeros reply without data");
  d.payload_len = 4096;
  ok (reply_fails (&h, &d), "zeros reply with data");
  d.payload_len = 0;
  d.flags = HP_FLAG_SHM;
  ok (reply_fails (&h, &d), "shared-memory reply to a request without a slot");
  h.flags = HP_FLAG_SHM;
  h.payload_len = HP_SHM_REF_SIZE;
  ok (!reply_fails (&h, &d), "shared-memory reply without data");
  d.payload_len = 4096;
  ok (reply_fails (&h, &d), "shared-memory reply with data");
  d.flags = 0;
  ok (!reply_fails (&h, &d), "inline reply to a shared-memory request");
  d.payload_len = 0;
  d.flags = HP_FLAG_SHM | HP_FLAG_ZEROS;
  h.flags = HP_FLAG_SHM | HP_FLAG_ZEROS;
  ok (reply_fails (&h, &d), "reply with both zeros and shared-memory flags");

  /* DISCONNECT: in replies to data requests only. */
  d = req (HP_TRIM);
  d.type |= HP_REPLY;
  d.status = HP_ESHUTDOWN;
  d.flags = HP_FLAG_DISCONNECT;
  ok (!decode_fails (&d), "a data reply may ask to drop the client");
  d = req (HP_OPEN);
  d.type |= HP_REPLY;
  d.flags = HP_FLAG_DISCONNECT;
  ok (decode_fails (&d), "a control reply may not ask to drop the client");
  d = req (HP_TRIM);
  d.flags = HP_FLAG_DISCONNECT;
  ok (decode_fails (&d), "a request may not carry DISCONNECT");
  h = req (HP_EXTENTS);
  h.count = 1 << 20;
  d = h;
  d.type |= HP_REPLY;
  d.payload_len = 2 * HP_EXTENT_SIZE;
  ok (!reply_fails (&h, &d), "EXTENTS reply of two extents");
  d.payload_len = 13;
  ok (reply_fails (&h, &d), "EXTENTS reply not a multiple of 12");
  d.payload_len = 0;
  ok (reply_fails (&h, &d), "EXTENTS reply with no extent");
  h = req (HP_FLUSH);
  d = h;
  d.type |= HP_REPLY;
  d.payload_len = 1;
  ok (reply_fails (&h, &d), "FLUSH reply with a payload");
  h = (struct hp_header) { .type = HP_PING, .id = 7 };
  d = h;
  d.type |= HP_REPLY;
  ok (!decode_fails (&d) && !reply_fails (&h, &d), "empty PING reply");
  d.payload_len = 2;
  ok (reply_fails (&h, &d), "PING reply with a payload");
  d.payload_len = 0;
  d.status = HP_EIO;
  ok (reply_fails (&h, &d), "PING error reply");
  d.payload_len = 5;
  ok (reply_fails (&h, &d), "PING error reply with a message");

  /* Errors. */
  {
    static const struct { const char *name; uint32_t code; int err; } e[] = {
      { "EPERM", HP_EPERM, EPERM }, { "EIO", HP_EIO, EIO },
      { "ENOMEM", HP_ENOMEM, ENOMEM }, { "EINVAL", HP_EINVAL, EINVAL },
      { "ENOSPC", HP_ENOSPC, ENOSPC }, { "EOVERFLOW", HP_EOVERFLOW, EOVERFLOW },
      { "ENOTSUP", HP_ENOTSUP, ENOTSUP },
      { "ESHUTDOWN", HP_ESHUTDOWN, ESHUTDOWN },
    };
    size_t i;
    int all = 1;

    for (i = 0; i < sizeof e / sizeof e[0]; ++i)
      all &= strcmp (hp_error_name (e[i].code), e[i].name) == 0 &&
             hp_error_from_name (e[i].name) == (int) e[i].code &&
             hp_error_from_errno (e[i].err) == e[i].code &&
             hp_error_to_errno (e[i].code) == e[i].err;
    ok (all, "error names, codes and errnos map both ways");
  }
  ok (hp_error_from_errno (EROFS) == HP_EPERM, "EROFS becomes EPERM");
  ok (hp_error_from_errno (EDQUOT) == HP_ENOSPC, "EDQUOT becomes ENOSPC");
  ok (hp_error_from_errno (EOPNOTSUPP) == HP_ENOTSUP,
      "EOPNOTSUPP becomes ENOTSUP");
  ok (hp_error_from_errno (ENOENT) == HP_EIO, "other errnos become EIO");
  ok (hp_error_from_name ("EWHATEVER") == -1, "unknown error name");

  /* Extents. */
  {
    unsigned char e[HP_EXTENT_SIZE];
    uint64_t len;
    uint32_t type;

    hp_encode_extent (e, 0x123456789a, HP_EXTENT_HOLE | HP_EXTENT_ZERO);
    hp_decode_extent (e, &len, &type);
    ok (len == 0x123456789a && type == 3 && e[0] == 0 && e[3] == 0x12 &&
        e[11] == 3, "extent encoding");
  }

  ok (strcmp (hp_type_name (HP_ATTACH_FD | HP_REPLY), "ATTACH_FD") == 0 &&
      hp_type_is_control (HP_ATTACH_FD) && !hp_type_is_control (HP_PREAD),
      "type names and classes");
  ok (strcmp (hp_type_name (HP_PING | HP_REPLY), "PING") == 0 &&
      hp_type_is_known (HP_PING) && !hp_type_is_control (HP_PING) &&
      !hp_type_is_known (13) && !hp_type_is_known (15),
      "PING is known, and neither control nor data");

  printf ("1..%d\n", test_nr);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
