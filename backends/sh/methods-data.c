/* backends/sh/methods-data.c: the data methods of the sh and eval
 * backends (pread, pwrite, flush, trim, zero, cache, extents): their
 * arguments as nbdkit-sh-plugin(3) gives them, and the data through
 * the script's stdin and stdout (extents are parsed by parse.c).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "methods.h"
#include "methods-internal.h"

/* ---- data ---- */

int
methods_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
               uint32_t flags)
{
  struct sh_handle *h = handle;
  char c[16], o[32];
  const char *args[] = { h->h, c, o, NULL };
  struct call_io io = { .want_out = 1, .max_out = count };

  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  switch (run_handle_method (h, "pread", args, &io)) {
  case CALL_OK:
    break;
  case CALL_MISSING:
    method_error (EIO, "pread", "the script must have a pread method");
    return -1;
  case CALL_FALSE:
    return bad_false ("pread");
  default:
    return -1;
  }
  if (io.outlen != count) {
    method_error (EIO, "pread", "the script printed %zu bytes, but %" PRIu32
                  " were asked for (offset %" PRIu64 ")", io.outlen, count,
                  offset);
    free (io.out);
    return -1;
  }
  memcpy (buf, io.out, count);
  free (io.out);
  return 0;
}

int
methods_pwrite (void *handle, const void *buf, uint32_t count,
                uint64_t offset, uint32_t flags)
{
  struct sh_handle *h = handle;
  char c[16], o[32], f[64];
  const char *args[] = { h->h, c, o, f, NULL };
  struct call_io io = { .in = buf, .inlen = count };
  int r;

  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  flags_string (flags, f, sizeof f);
  r = simple_handle_method (h, "pwrite", args, &io, 1);
  if (r == 1) {
    method_error (EIO, "pwrite", "can_write said true, but the script has "
                  "no pwrite method");
    return -1;
  }
  return r;
}

int
methods_flush (void *handle, uint32_t flags)
{
  struct sh_handle *h = handle;
  const char *args[] = { h->h, NULL };

  /* Missing: nothing to flush (can_flush said true by mistake). */
  return simple_handle_method (h, "flush", args, NULL, 0);
}

int
methods_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct sh_handle *h = handle;
  char c[16], o[32], f[64];
  const char *args[] = { h->h, c, o, f, NULL };

  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  flags_string (flags, f, sizeof f);
  /* Missing: a trim may do nothing. */
  return simple_handle_method (h, "trim", args, NULL, 0);
}

int
methods_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct sh_handle *h = handle;
  char c[16], o[32], f[64];
  const char *args[] = { h->h, c, o, f, NULL };
  int r;

  /* EOPNOTSUPP makes the library write zeroes with pwrite instead (or
   * fail a fast zero with ENOTSUP at once).
   */
  if (!h->zero) {
    nbdkit_set_error (EOPNOTSUPP);
    return -1;
  }
  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  flags_string (flags, f, sizeof f);
  r = simple_handle_method (h, "zero", args, NULL, 1);
  if (r == 1) {
    nbdkit_debug ("zero: the script has no zero method: writing zeroes");
    nbdkit_set_error (EOPNOTSUPP);
    return -1;
  }
  return r;
}

int
methods_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct sh_handle *h = handle;
  char c[16], o[32];
  const char *args[] = { h->h, c, o, NULL };

  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  /* Missing: caching is only advice. */
  return simple_handle_method (h, "cache", args, NULL, 0);
}

int
methods_extents (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags, struct nbdkit_extents *extents)
{
  struct sh_handle *h = handle;
  char c[16], o[32], f[64];
  const char *args[] = { h->h, c, o, f, NULL };
  struct call_io io = { .want_out = 1 };
  int r;

  snprintf (c, sizeof c, "%" PRIu32, count);
  snprintf (o, sizeof o, "%" PRIu64, offset);
  flags_string (flags, f, sizeof f);
  switch (run_handle_method (h, "extents", args, &io)) {
  case CALL_OK:
    break;
  case CALL_MISSING:
    method_error (EIO, "extents", "can_extents said true, but the script "
                  "has no extents method");
    return -1;
  case CALL_FALSE:
    return bad_false ("extents");
  default:
    return -1;
  }
  r = parse_extents (io.out, extents);
  free (io.out);
  return r;
}
