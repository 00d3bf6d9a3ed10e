/* nbdkit helper protocol: the frame codec shared by the front end and
 * the backend library.  Encodes and validates headers, maps errors and
 * extents.  Pure functions: no I/O, no allocation.  Every field read
 * from the wire is checked here before either side trusts it.
 */

#include <config.h>

#include <errno.h>
#include <string.h>

#include "helper-protocol.h"
#include "byte-order.h"

void
hp_encode_header (const struct hp_header *h, unsigned char buf[HP_HEADER_SIZE])
{
  put_be32 (buf, HP_MAGIC);
  put_be16 (buf + 4, h->type);
  put_be16 (buf + 6, h->flags);
  put_be64 (buf + 8, h->id);
  put_be32 (buf + 16, h->handle);
  put_be32 (buf + 20, h->status);
  put_be64 (buf + 24, h->offset);
  put_be32 (buf + 32, h->count);
  put_be32 (buf + 36, h->payload_len);
}

/* Which request flags each type accepts. */
static uint16_t
allowed_flags (uint16_t type)
{
  switch (type) {
  case HP_PREAD:
    return HP_FLAG_ZEROS | HP_FLAG_SHM;
  case HP_PWRITE:
    return HP_FLAG_FUA | HP_FLAG_SHM;
  case HP_TRIM:
    return HP_FLAG_FUA;
  case HP_ZERO:
    return HP_FLAG_FUA | HP_FLAG_MAY_TRIM | HP_FLAG_FAST_ZERO;
  case HP_EXTENTS:
    return HP_FLAG_REQ_ONE;
  default:
    return 0;
  }
}

int
hp_decode_header (const unsigned char buf[HP_HEADER_SIZE],
                  struct hp_header *h, const char **why)
{
  uint16_t base;

  if (get_be32 (buf) != HP_MAGIC) {
    *why = "bad magic";
    return -1;
  }
  h->type = get_be16 (buf + 4);
  h->flags = get_be16 (buf + 6);
  h->id = get_be64 (buf + 8);
  h->handle = get_be32 (buf + 16);
  h->status = get_be32 (buf + 20);
  h->offset = get_be64 (buf + 24);
  h->count = get_be32 (buf + 32);
  h->payload_len = get_be32 (buf + 36);

  base = h->type & ~HP_REPLY;
  if (!hp_type_is_known (base)) {
    *why = "unknown message type";
    return -1;
  }
  if (h->type & HP_REPLY) {
    uint16_t reply_flags =
      (base == HP_PREAD ? HP_FLAG_ZEROS | HP_FLAG_SHM : 0) |
      (hp_type_is_control (base) || base == HP_PING ? 0 : HP_FLAG_DISCONNECT);

    if (h->flags & ~reply_flags) {
      *why = "flags set in a reply";
      return -1;
    }
    if (!hp_error_is_valid (h->status)) {
      *why = "unknown error code in status";
      return -1;
    }
  }
  else {
    if (h->flags & ~allowed_flags (base)) {
      *why = "flags not allowed for this message type";
      return -1;
    }
    if (h->status != 0) {
      *why = "status set in a request";
      return -1;
    }
  }
  if (h->payload_len > HP_MAX_PAYLOAD) {
    *why = "payload too large";
    return -1;
  }
  return 0;
}

int
hp_check_request (const struct hp_header *req, const char **why)
{
  if (req->type & HP_REPLY) {
    *why = "a reply where a request was expected";
    return -1;
  }
  if (hp_type_is_control (req->type))
    return 0;
  if (req->type == HP_PING) {
    if (req->payload_len != 0) {
      *why = "payload on a PING request";
      return -1;
    }
    if (req->handle != 0 || req->offset != 0 || req->count != 0) {
      *why = "PING with a handle, offset or count";
      return -1;
    }
    return 0;
  }

  switch (req->type) {
  case HP_FLUSH:
    if (req->offset != 0 || req->count != 0) {
      *why = "FLUSH with an offset or count";
      return -1;
    }
    break;
  case HP_PREAD:
  case HP_PWRITE:
    if (req->count > HP_MAX_DATA) {
      *why = "data request larger than the maximum";
      return -1;
    }
    /* fallthrough */
  default:
    if (req->offset > INT64_MAX || req->count > INT64_MAX - req->offset) {
      *why = "offset + count overflows";
      return -1;
    }
  }
  if (req->flags & HP_FLAG_SHM) {
    if (req->payload_len != HP_SHM_REF_SIZE) {
      *why = "shared-memory request whose payload is not a slot offset";
      return -1;
    }
  }
  else if (req->type == HP_PWRITE) {
    if (req->payload_len != req->count) {
      *why = "PWRITE payload length differs from count";
      return -1;
    }
  }
  else if (req->payload_len != 0) {
    *why = "payload on a data request that takes none";
    return -1;
  }
  return 0;
}

int
hp_check_reply (const struct hp_header *req,
                const struct hp_header *reply, const char **why)
{
  if (!(reply->type & HP_REPLY)) {
    *why = "a request where a reply was expected";
    return -1;
  }
  if ((reply->type & ~HP_REPLY) != req->type) {
    *why = "reply type does not match the request";
    return -1;
  }
  if (reply->id != req->id) {
    *why = "reply id does not match the request";
    return -1;
  }
  if (!hp_error_is_valid (reply->status)) {
    *why = "unknown error code in status";
    return -1;
  }
  if (req->type == HP_PING) {
    if (reply->status != 0 || reply->payload_len != 0) {
      *why = "PING reply that is not an empty success";
      return -1;
    }
    return 0;
  }
  if (reply->status != 0 || hp_type_is_control (req->type))
    return 0;                   /* message text or JSON: any length */

  switch (req->type) {
  case HP_PREAD:
    if (reply->flags & HP_FLAG_ZEROS) {
      if (!(req->flags & HP_FLAG_ZEROS)) {
        *why = "PREAD zeros reply to a request that did not allow one";
        return -1;
      }
      if (reply->payload_len != 0) {
        *why = "PREAD zeros reply with a payload";
        return -1;
      }
      if (reply->flags & HP_FLAG_SHM) {
        *why = "PREAD reply with both zeros and shared-memory flags";
        return -1;
      }
    }
    else if (reply->flags & HP_FLAG_SHM) {
      if (!(req->flags & HP_FLAG_SHM)) {
        *why = "PREAD shared-memory reply to a request without a slot";
        return -1;
      }
      if (reply->payload_len != 0) {
        *why = "PREAD shared-memory reply with a payload";
        return -1;
      }
    }
    else if (reply->payload_len != req->count) {
      *why = "PREAD reply length differs from the count requested";
      return -1;
    }
    break;
  case HP_EXTENTS:
    if (reply->payload_len == 0 || reply->payload_len % HP_EXTENT_SIZE != 0) {
      *why = "EXTENTS reply is not a non-empty list of extents";
      return -1;
    }
    break;
  default:
    if (reply->payload_len != 0) {
      *why = "payload on a reply that takes none";
      return -1;
    }
  }
  return 0;
}

static const char *const type_names[] = {
  [HP_HELLO] = "HELLO", [HP_CONFIG] = "CONFIG",
  [HP_CONFIG_COMPLETE] = "CONFIG_COMPLETE", [HP_GET_READY] = "GET_READY",
  [HP_DUMP] = "DUMP", [HP_LIST_EXPORTS] = "LIST_EXPORTS",
  [HP_DEFAULT_EXPORT] = "DEFAULT_EXPORT", [HP_OPEN] = "OPEN",
  [HP_CLOSE] = "CLOSE", [HP_SHUTDOWN] = "SHUTDOWN",
  [HP_ATTACH_FD] = "ATTACH_FD", [HP_PING] = "PING",
  [HP_PREAD] = "PREAD", [HP_PWRITE] = "PWRITE", [HP_FLUSH] = "FLUSH",
  [HP_TRIM] = "TRIM", [HP_ZERO] = "ZERO", [HP_CACHE] = "CACHE",
  [HP_EXTENTS] = "EXTENTS",
};

bool
hp_type_is_known (uint16_t type)
{
  return type < sizeof type_names / sizeof type_names[0] &&
         type_names[type] != NULL;
}

bool
hp_type_is_control (uint16_t type)
{
  type &= ~HP_REPLY;
  return type >= HP_HELLO && type <= HP_ATTACH_FD;
}

const char *
hp_type_name (uint16_t type)
{
  type &= ~HP_REPLY;
  return hp_type_is_known (type) ? type_names[type] : "unknown";
}

static const struct {
  uint32_t code;
  const char *name;
  int err;
} errors[] = {
  { HP_EPERM, "EPERM", EPERM },
  { HP_EIO, "EIO", EIO },
  { HP_ENOMEM, "ENOMEM", ENOMEM },
  { HP_EINVAL, "EINVAL", EINVAL },
  { HP_ENOSPC, "ENOSPC", ENOSPC },
  { HP_EOVERFLOW, "EOVERFLOW", EOVERFLOW },
  { HP_ENOTSUP, "ENOTSUP", ENOTSUP },
  { HP_ESHUTDOWN, "ESHUTDOWN", ESHUTDOWN },
};

#define NR_ERRORS (sizeof errors / sizeof errors[0])

bool
hp_error_is_valid (uint32_t code)
{
  size_t i;

  if (code == HP_OK)
    return true;
  for (i = 0; i < NR_ERRORS; ++i)
    if (errors[i].code == code)
      return true;
  return false;
}

const char *
hp_error_name (uint32_t code)
{
  size_t i;

  if (code == HP_OK)
    return "OK";
  for (i = 0; i < NR_ERRORS; ++i)
    if (errors[i].code == code)
      return errors[i].name;
  return "unknown";
}

int
hp_error_from_name (const char *name)
{
  size_t i;

  for (i = 0; i < NR_ERRORS; ++i)
    if (strcmp (errors[i].name, name) == 0)
      return (int) errors[i].code;
  if (strcmp (name, "EOPNOTSUPP") == 0)
    return HP_ENOTSUP;
  return -1;
}

uint32_t
hp_error_from_errno (int err)
{
  size_t i;

  switch (err) {
  case 0: return HP_OK;
  case EROFS: return HP_EPERM;
  case EDQUOT: case EFBIG: return HP_ENOSPC;
#if EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP: return HP_ENOTSUP;
#endif
  }
  for (i = 0; i < NR_ERRORS; ++i)
    if (errors[i].err == err)
      return errors[i].code;
  return HP_EIO;
}

int
hp_error_to_errno (uint32_t code)
{
  size_t i;

  for (i = 0; i < NR_ERRORS; ++i)
    if (errors[i].code == code)
      return errors[i].err;
  return code == HP_OK ? 0 : EIO;
}

void
hp_encode_extent (unsigned char buf[HP_EXTENT_SIZE],
                  uint64_t length, uint32_t type)
{
  put_be64 (buf, length);
  put_be32 (buf + 8, type);
}

void
hp_decode_extent (const unsigned char buf[HP_EXTENT_SIZE],
                  uint64_t *length, uint32_t *type)
{
  *length = get_be64 (buf);
  *type = get_be32 (buf + 8);
}
