/* tests/fuzz/fuzz-sh-output.c: libFuzzer target "sh-output", the sh
 * and eval backends' parsing of what a script prints
 * (backends/sh/parse.c), linked with the real libnbdkit-backend
 * messages and lists (helper-protocol/backend-utils.c, backend-lists.c),
 * so that the exports and extents the parsers add are checked as the
 * library checks them.  See tests/fuzz/README.
 *
 * One input is the number of a parser (its first byte, modulo the
 * number of parsers: the PARSE_* below), then for PARSE_EXTENTS the
 * request (4 bytes of count, at least 1, and 8 of offset, at most
 * 2^63-1, little-endian) and for PARSE_STDERR one byte of options (the
 * default errno, a note, a label or none), then the script's output,
 * given to the parser as a NUL-terminated copy with its length, as
 * call.c returns it.  Checked, besides ASan (no overflow, use after
 * free, leak) and UBSan:
 *
 *   - a parser that fails says why (nbdkit_error), and the ones that
 *     set an errno (nbdkit_set_error) set one;
 *   - open: at most one newline goes, and only at the end;
 *   - thread_model: one of the four models, or -1 (unknown);
 *   - get_size: a size of at least 0;
 *   - can_fua and can_cache: none, emulate or native;
 *   - list_exports: at most 10000 exports, names and descriptions of at
 *     most 4096 bytes (NBD's limit) without a newline;
 *   - default_export: a name in the output, without a newline;
 *   - extents: in order and contiguous from the requested offset (the
 *     library's checks), none empty, each starting before the end of
 *     the request, only the hole and zero bits in their types;
 *   - magic_config_key: one word of the output, without blanks;
 *   - the errno name of stderr: the message is one line, and an errno
 *     is set.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-internal.h"
#include "methods.h"
#include "parse.h"

/* What libnbdkit-backend's main (backend-main.c) and the sh program
 * (backends/sh/sh.c) would define.
 */
bool nbdkit__verbose;
json_t *nbdkit__debug_flags;
int nbdkit__memfd = -1;
const char *script_label = "/fuzz/script";

enum {
  PARSE_HANDLE, PARSE_THREAD_MODEL, PARSE_SIZE, PARSE_BLOCK_SIZE,
  PARSE_CAN_FUA, PARSE_CAN_CACHE, PARSE_LIST_EXPORTS, PARSE_DEFAULT_EXPORT,
  PARSE_EXTENTS, PARSE_MAGIC_CONFIG_KEY, PARSE_STDERR, PARSE_DESCRIPTION,
  NR_PARSERS
};

#define MAX_EXPORTS 10000       /* as helper-protocol/backend-lists.c */
#define MAX_NAME 4096           /* NBD's limit on strings */

#define check(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "fuzz-sh-output: %s:%d: check failed: %s\n",     \
               __FILE__, __LINE__, #cond);                              \
      abort ();                                                         \
    }                                                                   \
  } while (0)

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  return 0;
}

/* After a failure: a message, and an errno if want_errno. */
static void
said_why (bool want_errno)
{
  struct context *ctx = nbdkit__context_get ();

  check (ctx->msg != NULL && ctx->msg[0] != '\0');
  if (want_errno)
    check (ctx->err > 0);
}

static uint64_t
le (const uint8_t *p, int n)
{
  uint64_t v = 0;
  int i;

  for (i = n - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static bool
in (const char *s, const char *buf, size_t len)
{
  return s >= buf && s <= buf + len;
}

static void
check_exports (struct nbdkit_exports *exports)
{
  json_t *j = nbdkit__exports_to_json (exports);
  json_t *list, *x;
  size_t i;

  check (j);
  list = json_object_get (j, "exports");
  check (json_is_array (list));
  check (json_array_size (list) <= MAX_EXPORTS);
  json_array_foreach (list, i, x) {
    const char *name = json_string_value (json_object_get (x, "name"));
    json_t *d = json_object_get (x, "description");

    check (name && strlen (name) <= MAX_NAME && !strchr (name, '\n'));
    if (d) {
      const char *desc = json_string_value (d);

      check (desc && strlen (desc) <= MAX_NAME && !strchr (desc, '\n'));
    }
  }
  json_decref (j);
}

static void
check_extents (struct nbdkit_extents *e, uint64_t start, uint64_t end)
{
  uint32_t len = 0, one_len = 0, i;
  unsigned char *buf = nbdkit__extents_encode (e, false, &len);
  unsigned char *one = nbdkit__extents_encode (e, true, &one_len);
  uint64_t pos = start;

  check ((buf == NULL) == (one == NULL));
  if (buf) {
    check (len > 0 && len % HP_EXTENT_SIZE == 0);
    check (one_len == HP_EXTENT_SIZE);
    for (i = 0; i < len; i += HP_EXTENT_SIZE) {
      uint64_t length;
      uint32_t type;

      hp_decode_extent (buf + i, &length, &type);
      check (length > 0);
      check ((type & ~(uint32_t) (NBDKIT_EXTENT_HOLE |
                                  NBDKIT_EXTENT_ZERO)) == 0);
      check (pos < end);                /* starts inside the request */
      check (length <= UINT64_MAX - pos);
      pos += length;
    }
  }
  (void) nbdkit__extents_all_zero (e);
  free (buf);
  free (one);
}

static void
parse (int parser, const uint8_t *data, size_t size)
{
  char *out = malloc (size + 1), *copy;
  size_t len = size;

  check (out);
  memcpy (out, data, size);
  out[size] = '\0';

  switch (parser) {
  case PARSE_HANDLE:
    parse_handle (out, &len);
    check (len == size || (len + 1 == size && data[len] == '\n'));
    check (out[len] == '\0');
    break;

  case PARSE_DESCRIPTION:
    chomp (out, &len);
    check (len <= size && out[len] == '\0');
    check (len == 0 || (out[len - 1] != '\n' && out[len - 1] != '\r'));
    copy = trim (out);
    check (in (copy, out, len));
    break;

  case PARSE_THREAD_MODEL: {
    int m = parse_thread_model (out);

    check (m == -1 ||
           m == NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS ||
           m == NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS ||
           m == NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS ||
           m == NBDKIT_THREAD_MODEL_PARALLEL);
    break;
  }

  case PARSE_SIZE: {
    int64_t s = parse_size (out);

    if (s == -1)
      said_why (true);
    else
      check (s >= 0);
    break;
  }

  case PARSE_BLOCK_SIZE: {
    uint32_t min = 0, pref = 0, max = 0;

    if (parse_block_size (out, &min, &pref, &max) == -1)
      said_why (true);
    break;
  }

  case PARSE_CAN_FUA:
  case PARSE_CAN_CACHE: {
    int r = parser == PARSE_CAN_FUA
      ? parse_level ("can_fua", out, NBDKIT_FUA_NONE, NBDKIT_FUA_EMULATE,
                     NBDKIT_FUA_NATIVE)
      : parse_level ("can_cache", out, NBDKIT_CACHE_NONE,
                     NBDKIT_CACHE_EMULATE, NBDKIT_CACHE_NATIVE);

    if (r == -1)
      said_why (true);
    else
      check (r >= 0 && r <= 2);
    break;
  }

  case PARSE_LIST_EXPORTS: {
    struct nbdkit_exports *exports = nbdkit__exports_new ();

    check (exports);
    if (parse_exports (out, exports) == -1)
      said_why (false);
    check_exports (exports);
    nbdkit__exports_free (exports);
    break;
  }

  case PARSE_DEFAULT_EXPORT: {
    const char *name = parse_default_export (out);

    check (name);
    check (*name == '\0' || in (name, out, len));
    check (!strchr (name, '\n'));
    break;
  }

  case PARSE_EXTENTS: {
    struct nbdkit_extents *e;
    uint64_t count, offset;

    if (size < 12)
      break;
    count = le (data, 4);
    offset = le (data + 4, 8) & INT64_MAX;
    if (count == 0)
      count = 1;                        /* NBD asks for 1 byte or more */
    e = nbdkit__extents_new (offset, offset + count);
    check (e);
    if (parse_extents (out + 12, e) == -1)
      said_why (false);
    check_extents (e, offset, offset + count);
    nbdkit__extents_free (e);
    break;
  }

  case PARSE_MAGIC_CONFIG_KEY: {
    char *key = parse_magic_config_key (out);

    check (in (key, out, len));
    check (strcspn (key, " \t\r\n") == strlen (key));
    break;
  }

  case PARSE_STDERR: {
    static const int errnos[] = { EIO, ESHUTDOWN, EINVAL, ENOSPC };
    struct context *ctx = nbdkit__context_get ();
    unsigned opt = size > 0 ? data[0] : 0;

    parse_stderr (opt & 4 ? "" : script_label, "pread",
                  size > 0 ? out + 1 : NULL, errnos[opt & 3],
                  opt & 8 ? "failed with exit status 1" : NULL);
    said_why (true);
    check (!strchr (ctx->msg, '\n') && !strchr (ctx->msg, '\r'));
    break;
  }
  }
  free (out);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  nbdkit__context_begin (false, NULL, false);
  parse (data[0] % NR_PARSERS, data + 1, size - 1);
  nbdkit__context_end ();
  return 0;
}
