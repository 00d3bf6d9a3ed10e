/* backends/sh/methods-caps.c: the capability methods of the sh and
 * eval backends (can_write, can_flush, is_rotational, can_trim,
 * can_zero, can_fast_zero, can_extents, can_multi_conn, can_fua,
 * can_cache): a boolean from the exit status (0 true, 3 false), or for
 * can_fua and can_cache a level printed by the script, with the
 * defaults of nbdkit-sh-plugin(3) when the method is missing.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "methods.h"
#include "methods-internal.h"

/* ---- capabilities ---- */

/* The answer of ask for cap, run once per handle. */
static int
cached (void *handle, enum sh_cap cap, int (*ask) (void *handle))
{
  struct sh_handle *h = handle;
  int r;

  if (h->cap_known[cap])
    return h->cap[cap];
  r = ask (handle);
  if (r != -1) {
    h->cap[cap] = r;
    h->cap_known[cap] = 1;
  }
  return r;
}

/* A boolean method: 1 (exit 0), 0 (exit 3), if_missing (exit 2) or -1.
 * For eval, a can_* method that is not given but whose operation is
 * (implied_by, e.g. pwrite for can_write) is true, as with a plugin.
 */
static int
boolean_method (struct sh_handle *h, const char *method,
                const char *implied_by, int if_missing)
{
  const char *args[] = { h->h, NULL };

  if (implied_by && script_defined (method) == 0 &&
      script_defined (implied_by) == 1)
    return 1;
  switch (run_method (method, args, NULL)) {
  case CALL_OK:
    return 1;
  case CALL_FALSE:
    return 0;
  case CALL_MISSING:
    return if_missing;
  default:
    return -1;
  }
}

static int
ask_can_write (void *handle)
{
  return boolean_method (handle, "can_write", "pwrite", 0);
}

static int
ask_can_flush (void *handle)
{
  return boolean_method (handle, "can_flush", "flush", 0);
}

static int
ask_is_rotational (void *handle)
{
  return boolean_method (handle, "is_rotational", NULL, 0);
}

static int
ask_can_trim (void *handle)
{
  return boolean_method (handle, "can_trim", "trim", 0);
}

static int
ask_can_zero (void *handle)
{
  struct sh_handle *h = handle;
  int r = boolean_method (h, "can_zero", "zero", 0);

  if (r == -1)
    return -1;
  /* A script that cannot zero still gets zero requests, which are
   * then written as zeroes with pwrite (see methods_zero).
   */
  h->zero = r;
  return 1;
}

static int
ask_can_fast_zero (void *handle)
{
  struct sh_handle *h = handle;
  int r = boolean_method (h, "can_fast_zero", NULL, 2);

  /* Without an answer: fast exactly when zeroing is emulated, because
   * an emulated fast zero fails at once.
   */
  return r == 2 ? !h->zero : r;
}

static int
ask_can_extents (void *handle)
{
  return boolean_method (handle, "can_extents", "extents", 0);
}

static int
ask_can_multi_conn (void *handle)
{
  int r = boolean_method (handle, "can_multi_conn", NULL, 0);

  /* As nbdkit: a server that serializes connections never advertises
   * multi-conn, whatever the script says.
   */
  if (r == 1 &&
      script_thread_model == NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS)
    return 0;
  return r;
}

/* can_fua and can_cache: none, emulate or native. */
static int
level_method (struct sh_handle *h, const char *method, int none,
              int emulate, int native, int if_missing)
{
  const char *args[] = { h->h, NULL };
  struct call_io io = { .want_out = 1 };
  enum call_status st = run_method (method, args, &io);
  int r;

  if (st != CALL_OK)
    return method_result (st, method, if_missing);
  r = parse_level (method, io.out, none, emulate, native);
  free (io.out);
  return r;
}

static int
ask_can_fua (void *handle)
{
  int flush = methods_can_flush (handle);

  if (flush == -1)
    return -1;
  return level_method (handle, "can_fua", NBDKIT_FUA_NONE,
                       NBDKIT_FUA_EMULATE, NBDKIT_FUA_NATIVE,
                       flush ? NBDKIT_FUA_EMULATE : NBDKIT_FUA_NONE);
}

static int
ask_can_cache (void *handle)
{
  return level_method (handle, "can_cache", NBDKIT_CACHE_NONE,
                       NBDKIT_CACHE_EMULATE, NBDKIT_CACHE_NATIVE,
                       NBDKIT_CACHE_NONE);
}

/* ---- the callbacks: each method once per handle ---- */

int
methods_can_write (void *handle)
{
  return cached (handle, CAP_WRITE, ask_can_write);
}

int
methods_can_flush (void *handle)
{
  return cached (handle, CAP_FLUSH, ask_can_flush);
}

int
methods_can_trim (void *handle)
{
  return cached (handle, CAP_TRIM, ask_can_trim);
}

int
methods_can_zero (void *handle)
{
  return cached (handle, CAP_ZERO, ask_can_zero);
}

int
methods_can_fast_zero (void *handle)
{
  return cached (handle, CAP_FAST_ZERO, ask_can_fast_zero);
}

int
methods_can_extents (void *handle)
{
  return cached (handle, CAP_EXTENTS, ask_can_extents);
}

int
methods_can_multi_conn (void *handle)
{
  return cached (handle, CAP_MULTI_CONN, ask_can_multi_conn);
}

int
methods_can_fua (void *handle)
{
  return cached (handle, CAP_FUA, ask_can_fua);
}

int
methods_can_cache (void *handle)
{
  return cached (handle, CAP_CACHE, ask_can_cache);
}

int
methods_is_rotational (void *handle)
{
  return cached (handle, CAP_ROTATIONAL, ask_is_rotational);
}
