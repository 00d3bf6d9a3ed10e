/* libnbdkit-backend: OPEN and CLOSE, on the workers.
 *
 * Owns a handle's life: the export's name (the default export's, when
 * the client asked for ""), the backend's open, the capabilities with
 * nbdkit-plugin(3)'s defaults, the size and block size checked, the
 * reply that tells the server all of it, and the close.  The handle
 * table itself is backend-workers.c's.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"

static int
call_bool (int (*cb) (void *), void *h, int def)
{
  return cb ? cb (h) : def;
}

/* Capabilities with the defaults of nbdkit-plugin(3). */
static int
compute_caps (struct handle *hd)
{
  void *h = hd->h;

  hd->can_write = nbdkit__be->pwrite
    ? call_bool (nbdkit__be->can_write, h, 1) : 0;
  if (hd->can_write == -1)
    return -1;
  if (hd->readonly)
    hd->can_write = 0;
  hd->can_flush = nbdkit__be->flush
    ? call_bool (nbdkit__be->can_flush, h, 1) : 0;
  hd->can_trim = hd->can_write && nbdkit__be->trim
    ? call_bool (nbdkit__be->can_trim, h, 1) : 0;
  hd->can_zero = hd->can_write ? call_bool (nbdkit__be->can_zero, h, 1) : 0;
  /* Without a zero callback, a fast zero fails at once: that is fast. */
  hd->can_fast_zero = hd->can_zero > 0
    ? (nbdkit__be->zero ? call_bool (nbdkit__be->can_fast_zero, h, 0) : 1) : 0;
  hd->can_extents = nbdkit__be->extents
    ? call_bool (nbdkit__be->can_extents, h, 1) : 0;
  hd->can_fua = hd->can_write
    ? call_bool (nbdkit__be->can_fua, h,
                 nbdkit__be->flush && hd->can_flush > 0 ? NBDKIT_FUA_EMULATE
                                                        : NBDKIT_FUA_NONE)
    : NBDKIT_FUA_NONE;
  hd->can_cache = call_bool (nbdkit__be->can_cache, h,
                             nbdkit__be->cache ? NBDKIT_CACHE_NATIVE
                                               : NBDKIT_CACHE_NONE);
  if (hd->can_flush == -1 || hd->can_trim == -1 || hd->can_zero == -1 ||
      hd->can_fast_zero == -1 || hd->can_extents == -1 ||
      hd->can_fua == -1 || hd->can_cache == -1)
    return -1;
  if (hd->can_fua < NBDKIT_FUA_NONE || hd->can_fua > NBDKIT_FUA_NATIVE ||
      hd->can_cache < NBDKIT_CACHE_NONE ||
      hd->can_cache > NBDKIT_CACHE_NATIVE) {
    nbdkit_error ("can_fua or can_cache returned %d: use one of the "
                  "NBDKIT_FUA_* or NBDKIT_CACHE_* constants",
                  hd->can_fua < NBDKIT_FUA_NONE ||
                  hd->can_fua > NBDKIT_FUA_NATIVE ? hd->can_fua
                                                  : hd->can_cache);
    nbdkit_set_error (EINVAL);
    return -1;
  }
  if (hd->can_cache == NBDKIT_CACHE_NATIVE && !nbdkit__be->cache)
    hd->can_cache = NBDKIT_CACHE_EMULATE;
  if (hd->can_fua == NBDKIT_FUA_EMULATE && hd->can_flush <= 0)
    hd->can_fua = NBDKIT_FUA_NONE;
  return 0;
}

static const char *
level_name (int v, bool fua)
{
  if (v == (fua ? NBDKIT_FUA_NATIVE : NBDKIT_CACHE_NATIVE))
    return "native";
  if (v == (fua ? NBDKIT_FUA_EMULATE : NBDKIT_CACHE_EMULATE))
    return "emulate";
  return "none";
}

static bool
is_power_of_2 (uint64_t v)
{
  return v && !(v & (v - 1));
}

/* The block size constraints of the NBD protocol (all zero: none). */
static int
check_block_size (uint32_t min, uint32_t pref, uint32_t max)
{
  if (min == 0 && pref == 0 && max == 0)
    return 0;
  if (!is_power_of_2 (min) || min > 65536 ||
      !is_power_of_2 (pref) || pref < 512 || pref < min ||
      pref > 32 * 1024 * 1024 ||
      max < pref || (max != UINT32_MAX && max % min != 0)) {
    nbdkit_error ("block_size returned minimum=%" PRIu32 " preferred=%"
                  PRIu32 " maximum=%" PRIu32 ": the minimum must be a "
                  "power of 2 up to 64K, the preferred a power of 2 from "
                  "max(512, minimum) to 32M, and the maximum a multiple of "
                  "the minimum not below the preferred (or 0xffffffff)",
                  min, pref, max);
    nbdkit_set_error (EINVAL);
    return -1;
  }
  return 0;
}

static void
handle_free (struct handle *hd)
{
  pthread_mutex_destroy (&hd->lock);
  free (hd->export);
  free (hd->peer);
  free (hd);
}

void
nbdkit__op_open (const struct hp_header *req, json_t *j, int prev_fd)
{
  const char *export = json_string_value (json_object_get (j, "export"));
  const char *client = json_string_value (json_object_get (j, "client"));
  bool readonly = json_is_true (json_object_get (j, "readonly"));
  bool tls = json_is_true (json_object_get (j, "tls"));
  uint64_t connection = json_integer_value (json_object_get (j,
                                                            "connection"));
  json_t *pw = json_object_get (j, "passthrough");
  struct handle *hd = calloc (1, sizeof *hd);
  json_t *reply;
  int64_t size;
  int multi_conn, rotational;
  uint32_t min = 0, pref = 0, max = 0;
  const char *desc = NULL;

  /* A descriptor given back with a re-open ("previous_fd"), for
   * nbdkit_previous_fd; any other is closed unused.
   */
  if (prev_fd >= 0 && !json_is_true (json_object_get (j, "previous_fd"))) {
    close (prev_fd);
    prev_fd = -1;
  }
  if (!hd || !(hd->export = strdup (export ? export : "")) ||
      (client && !(hd->peer = strdup (client)))) {
    if (hd)
      free (hd->export);
    free (hd);
    if (prev_fd >= 0)
      close (prev_fd);
    nbdkit__send_reply (req, HP_ENOMEM, 0, "out of memory", 13);
    return;
  }
  pthread_mutex_init (&hd->lock, NULL);
  hd->readonly = readonly;
  hd->tls = tls;

  nbdkit__context_begin (true, hd->export, tls);
  nbdkit__context_get ()->peer = hd->peer;
  if (nbdkit__connection_start (connection, readonly) == -1)
    goto fail_open;
  /* The default export has the name the backend gives it, which is
   * what its open sees and what the client is told.
   */
  if (!*hd->export && nbdkit__be->default_export) {
    char *copy = nbdkit__default_export (connection, readonly, tls);

    if (!copy)
      goto fail_open;
    free (hd->export);
    hd->export = copy;
    nbdkit__context_get ()->export = hd->export;
  }
  nbdkit__context_get ()->in_open = true;
  /* true: the server does the I/O on it; "keep": it only keeps it to
   * give it back at a re-open after a restart.  Either way it is sent.
   */
  nbdkit__context_get ()->passthrough_wanted = json_is_true (pw) ||
    (json_is_string (pw) && strcmp (json_string_value (pw), "keep") == 0);
  nbdkit__context_get ()->previous_fd = prev_fd;
  prev_fd = -1;
  hd->h = nbdkit__be->open ? nbdkit__be->open (readonly) : hd;
  nbdkit__context_get ()->in_open = false;
  if (nbdkit__context_get ()->previous_fd >= 0) {
    int saved_errno = errno;    /* open's, if it failed */

    close (nbdkit__context_get ()->previous_fd);
    nbdkit__context_get ()->previous_fd = -1;
    errno = saved_errno;
  }
  if (!hd->h)
    goto fail_open;
  if (!nbdkit__be->get_size) {
    nbdkit_error ("the backend has no get_size callback");
    goto fail;
  }
  size = nbdkit__be->get_size (hd->h);
  if (size < 0) {
    if (size != -1)
      nbdkit_error ("get_size returned a negative size %" PRId64, size);
    goto fail;
  }
  hd->size = (uint64_t) size;
  if (compute_caps (hd) == -1 ||
      (multi_conn = call_bool (nbdkit__be->can_multi_conn, hd->h, 0)) == -1 ||
      (rotational = call_bool (nbdkit__be->is_rotational, hd->h, 0)) == -1 ||
      (nbdkit__be->block_size &&
       nbdkit__be->block_size (hd->h, &min, &pref, &max) == -1))
    goto fail;
  /* Only when the client asked for it (as nbdkit); absent = asked. */
  if (nbdkit__be->export_description &&
      !json_is_false (json_object_get (j, "description")))
    desc = nbdkit__be->export_description (hd->h);

  if (check_block_size (min, pref, max) == -1)
    goto fail;

  reply = json_pack ("{s:I, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, "
                     "s:s, s:s, s:s?}",
                     "size", (json_int_t) size,
                     "can_write", hd->can_write > 0,
                     "can_flush", hd->can_flush > 0,
                     "can_trim", hd->can_trim > 0,
                     "can_zero", hd->can_zero > 0,
                     "can_fast_zero", hd->can_fast_zero > 0,
                     "can_extents", hd->can_extents > 0,
                     "can_multi_conn", multi_conn > 0,
                     "is_rotational", rotational > 0,
                     "can_fua", level_name (hd->can_fua, true),
                     "can_cache", level_name (hd->can_cache, false),
                     "name", hd->export);
  if (reply && (min || pref || max))
    json_object_set_new (reply, "block_size",
                         json_pack ("{s:I, s:I, s:I}",
                                    "minimum", (json_int_t) min,
                                    "preferred", (json_int_t) pref,
                                    "maximum", (json_int_t) max));
  if (reply && desc) {
    json_t *d = json_string (desc);

    if (!d) {
      nbdkit_error ("export_description returned a string that is not "
                    "valid UTF-8");
      json_decref (reply);
      goto fail;
    }
    json_object_set_new (reply, "description", d);
  }
  if (!reply || nbdkit__handle_add (hd) == 0) {
    json_decref (reply);
    nbdkit_error ("out of memory");
    nbdkit_set_error (ENOMEM);
    goto fail;
  }
  /* Passthrough: a copy of the backend's descriptor goes with the
   * reply (the backend's own may be closed before the reply is
   * written), announced by the reply's "passthrough" member.
   */
  if (nbdkit__context_get ()->passthrough_wanted &&
      nbdkit__context_get ()->passthrough_fd >= 0) {
    int fd = fcntl (nbdkit__context_get ()->passthrough_fd,
                    F_DUPFD_CLOEXEC, 3);
    unsigned flags = nbdkit__context_get ()->passthrough_flags;
    uint32_t page = nbdkit__context_get ()->passthrough_page;

    if (fd >= 0) {
      json_t *pt = json_pack ("{s:s}", "zero",
                              flags & NBDKIT_PASSTHROUGH_ZERO_PUNCH
                              ? "punch" : "allocate");

      if (pt && page)
        json_object_set_new (pt, "page", json_integer (page));
      json_object_set_new (reply, "passthrough", pt);
      nbdkit__context_end ();
      nbdkit__send_json_reply_fd (req, hd->id, reply, fd);
      return;
    }
    nbdkit_debug ("passthrough: dup: %m; serving every request here");
  }
  nbdkit__context_end ();
  nbdkit__send_json_reply (req, hd->id, reply);
  return;

 fail:
  if (nbdkit__be->close) {
    int saved_errno = errno;

    nbdkit__be->close (hd->h);
    errno = saved_errno;
  }
 fail_open:
  if (prev_fd >= 0) {           /* open was not reached */
    int saved_errno = errno;

    close (prev_fd);
    errno = saved_errno;
  }
  nbdkit__send_error_reply (req, HP_EINVAL);
  nbdkit__context_end ();
  handle_free (hd);
}

void
nbdkit__op_close (const struct hp_header *req)
{
  struct handle *hd = nbdkit__handle_remove (req->handle);

  if (hd) {
    nbdkit__context_begin (true, hd->export, hd->tls);
    nbdkit__context_get ()->peer = hd->peer;
    if (nbdkit__be->close)
      nbdkit__be->close (hd->h);
    nbdkit__context_end ();
    handle_free (hd);
  }
  nbdkit__send_json_reply (req, 0, NULL);
}

void
nbdkit__op_close_all (void)
{
  size_t n, i;
  struct handle **all = nbdkit__handles_all (&n);

  for (i = 0; all && i < n; ++i) {
    nbdkit__handle_remove (all[i]->id);
    nbdkit__context_begin (true, all[i]->export, all[i]->tls);
    nbdkit__context_get ()->peer = all[i]->peer;
    if (nbdkit__be->close)
      nbdkit__be->close (all[i]->h);
    nbdkit__context_end ();
    handle_free (all[i]);
  }
  free (all);
}
