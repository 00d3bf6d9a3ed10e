/* filters/tls-fallback.c: show plaintext clients a harmless export
 * (nbdkit-tls-fallback-filter(1)), for servers run with --tls=on.
 *
 * A client that negotiated TLS (o->tls at open) is served by the layers
 * below, unchanged.  For a client that did not, the layers below are
 * not even opened (opens_below), and it gets, whatever export name it
 * asked for, a read-only export of 512 bytes: the message of
 * tlsreadme= (default: a note that the server needs TLS) padded with
 * NULs, or cut at 512 bytes.  None of the capabilities of the layers
 * below shows through (no write, flush, trim, zero, cache, extents,
 * multi-conn, rotational; no description), its canonical name is "",
 * and an export listing asked in plaintext shows only "", so that
 * nothing of the real exports leaks.  Owns the message (static).
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define FALLBACK_SIZE 512

static char message[FALLBACK_SIZE] =
  "This NBD server requires TLS authentication before it will serve "
  "useful data.\n";

/* The handle of a plaintext connection; TLS ones have NULL. */
static char plaintext_marker;
#define PLAINTEXT(handle) ((handle) == &plaintext_marker)

static int
tlsf_config (const char *key, const char *value)
{
  size_t len = strlen (value);

  if (len > FALLBACK_SIZE)
    nbdkit_debug ("tls-fallback: tlsreadme= is %zu bytes: the export "
                  "shows its first %d", len, FALLBACK_SIZE);
  /* NUL-padded, not NUL-terminated: all 512 bytes may be message. */
  memset (message, 0, sizeof message);
  memcpy (message, value, len < FALLBACK_SIZE ? len : FALLBACK_SIZE);
  return 0;
}

static int
tlsf_get_ready (void)
{
  /* nbdkit's SERIALIZE_CONNECTIONS: one plaintext client holding its
   * connection would keep every client with TLS out.
   */
  if (server_thread_model () == 0) {
    nbdkit_error ("the tls-fallback filter requires parallel connection "
                  "support: the backend's thread model serializes "
                  "connections (use a backend that allows several)");
    return -1;
  }
  return 0;
}

/* A plaintext client never reaches the layers below: not even their
 * open, which could be slow, fail, or depend on the name it asked.
 */
static bool
tlsf_opens_below (const char *export, bool tls)
{
  return tls;
}

static void
tlsf_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  if (o->tls) {
    fopen_done (o, NULL);
    return;
  }
  /* Nothing below was opened: a fixed small read-only disk. */
  free (c->name);
  free (c->description);
  memset (c, 0, sizeof *c);
  c->name = strdup ("");        /* NULL (out of memory): the name asked */
  c->size = FALLBACK_SIZE;
  fopen_done (o, &plaintext_marker);
}

static void
tlsf_pread (void *handle, struct freq *r)
{
  char *buf;

  if (!PLAINTEXT (handle)) {
    freq_next (r);
    return;
  }
  /* Within the 512 bytes (the front end checks against the size), but
   * trust nothing.
   */
  if (r->offset > FALLBACK_SIZE || r->count > FALLBACK_SIZE - r->offset) {
    freq_reply_error (r, HP_EINVAL, "tls-fallback: read beyond the end");
    return;
  }
  buf = malloc (r->count ? r->count : 1);
  if (!buf) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  memcpy (buf, message + r->offset, r->count);
  freq_reply (r, buf, r->count, 0);
}

/* Other requests: passed down with TLS; refused in plaintext (none of
 * them is offered there).
 */
static void
tlsf_write (void *handle, struct freq *r)
{
  if (!PLAINTEXT (handle))
    freq_next (r);
  else
    freq_reply_error (r, HP_EPERM, "tls-fallback: read-only without TLS");
}

static void
tlsf_other (void *handle, struct freq *r)
{
  if (!PLAINTEXT (handle))
    freq_next (r);
  else
    freq_reply_error (r, HP_EINVAL, "tls-fallback: not offered without TLS");
}

static void
tlsf_list_exports (struct flist *l)
{
  if (l->tls) {
    flist_next (l, NULL);
    return;
  }
  if (flist_add (l, "", NULL) == -1) {
    flist_fail (l, HP_ENOMEM, "out of memory");
    return;
  }
  flist_done (l);
}

static const char *const keys[] = { "tlsreadme", NULL };

const struct filter tls_fallback_filter = {
  .name = "tls-fallback",
  .description = "serve a fixed message to clients without TLS",
  .config_help =
    "tlsreadme=MESSAGE  what a client without TLS reads instead of the\n"
    "                   export: 512 bytes, the message padded with NULs\n"
    "                   (default: a note that the server requires TLS)",
  .keys = keys,
  .config = tlsf_config,
  .get_ready = tlsf_get_ready,
  .opens_below = tlsf_opens_below,
  .open = tlsf_open,
  .pread = tlsf_pread,
  .pwrite = tlsf_write,
  .trim = tlsf_write,
  .zero = tlsf_write,
  .flush = tlsf_other,
  .cache = tlsf_other,
  .extents = tlsf_other,
  .list_exports = tlsf_list_exports,
};
