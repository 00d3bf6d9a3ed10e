/* nbdkit front end: the handshake, newstyle (fixed or not) or oldstyle.
 *
 * Owns the option haggling phase of a connection (struct session
 * before transmission): the greeting, the client flags, then one
 * option at a time — NBD_OPT_EXPORT_NAME, ABORT, LIST, INFO, GO,
 * STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT; every
 * other option is answered NBD_REP_ERR_UNSUP.  Oldstyle (-o) opens the
 * default export at once and sends its size and flags.  Opening an export
 * asks the backend (HP_OPEN) asynchronously; the connection reads
 * nothing more until the answer is in.  Every length from the client is
 * checked before it is used.
 */

#include <config.h>

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "byte-order.h"

/* A client may send this many options before it must go to
 * transmission: enough for any real client's negotiation (libnbd and
 * qemu send fewer than ten), small enough that a client looping on
 * options cannot keep a connection busy for ever.  An export list
 * raises it by a few options per export listed (nbdinfo --list asks
 * about each one), up to MAX_NR_OPTIONS_LISTING.
 */
#define MAX_NR_OPTIONS 32
#define OPTIONS_PER_LISTED_EXPORT 3
#define MAX_NR_OPTIONS_LISTING (MAX_NR_OPTIONS + 3 * 4096)

/* Longest option payload read into memory: a GO/INFO with a 4096 byte
 * name and many info requests fits.  Longer options are skipped
 * without being stored: answered NBD_REP_ERR_TOO_BIG if this server
 * knows the option, NBD_REP_ERR_UNSUP if not (as nbdkit).  An option
 * longer than MAX_SKIPPED_OPTION is not worth reading: the connection
 * ends.
 */
#define MAX_OPTION_LENGTH (64 * 1024)
#define MAX_SKIPPED_OPTION (64 * 1024 * 1024)

static void read_option (struct conn *conn);

/* ---- option replies ---- */

static void
send_reply (struct conn *conn, uint32_t option, uint32_t type,
            const void *data, uint32_t len)
{
  unsigned char hdr[20];

  put_be64 (hdr, NBD_REP_MAGIC);
  put_be32 (hdr + 8, option);
  put_be32 (hdr + 12, type);
  put_be32 (hdr + 16, len);
  conn_write (conn, hdr, sizeof hdr, NULL, 0, NULL);
  if (len)
    conn_write (conn, data, len, NULL, 0, NULL);
}

/* An error reply carrying a human-readable message. */
static void __attribute__ ((format (printf, 3, 4)))
send_error (struct conn *conn, uint32_t type, const char *fmt, ...)
{
  struct session *s = conn_session (conn);
  va_list args;
  char msg[512];
  int n;

  va_start (args, fmt);
  n = vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  if (n < 0)
    n = 0;
  if ((size_t) n >= sizeof msg)
    n = sizeof msg - 1;
  nbdkit_debug ("%s: option %u: %s", conn_peer (conn), s->option, msg);
  send_reply (conn, s->option, type, msg, (uint32_t) n);
}

/* ---- export capabilities ---- */

void
caps_free (struct export_caps *caps)
{
  free (caps->name);
  free (caps->description);
  memset (caps, 0, sizeof *caps);
}

static uint16_t
transmission_flags (const struct export_caps *c, bool structured)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS;

  if (structured)
    f |= NBD_FLAG_SEND_DF;      /* every read is one chunk */
  if (!c->can_write)
    f |= NBD_FLAG_READ_ONLY;
  if (c->can_flush)
    f |= NBD_FLAG_SEND_FLUSH;
  if (c->can_fua)
    f |= NBD_FLAG_SEND_FUA;
  if (c->is_rotational)
    f |= NBD_FLAG_ROTATIONAL;
  if (c->can_trim)
    f |= NBD_FLAG_SEND_TRIM;
  if (c->can_zero)
    f |= NBD_FLAG_SEND_WRITE_ZEROES;
  if (c->can_fast_zero)
    f |= NBD_FLAG_SEND_FAST_ZERO;
  if (c->can_multi_conn)
    f |= NBD_FLAG_CAN_MULTI_CONN;
  if (c->can_cache)
    f |= NBD_FLAG_SEND_CACHE;
  return f;
}

/* ---- opening an export ---- */

struct open_ctx {
  struct conn *conn;
  uint32_t option;
  char *name;
  uint16_t *infos;              /* NBD_INFO_* the client asked for */
  uint16_t nr_infos;
};

static void
open_ctx_free (struct open_ctx *ctx)
{
  free (ctx->name);
  free (ctx->infos);
  free (ctx);
}

static bool
wants_info (const struct open_ctx *ctx, uint16_t info)
{
  uint16_t i;

  for (i = 0; i < ctx->nr_infos; ++i)
    if (ctx->infos[i] == info)
      return true;
  return false;
}

/* NBD_REP_INFO replies, then NBD_REP_ACK. */
static void
send_infos (struct conn *conn, const struct open_ctx *ctx)
{
  struct session *s = conn_session (conn);
  unsigned char buf[2 + NBD_MAX_STRING];
  size_t len;

  put_be16 (buf, NBD_INFO_EXPORT);
  put_be64 (buf + 2, s->caps.size);
  put_be16 (buf + 10, s->eflags);
  send_reply (conn, ctx->option, NBD_REP_INFO, buf, 12);

  if (wants_info (ctx, NBD_INFO_NAME)) {
    const char *name = s->caps.name ? s->caps.name : ctx->name;

    len = strlen (name);
    put_be16 (buf, NBD_INFO_NAME);
    memcpy (buf + 2, name, len);
    send_reply (conn, ctx->option, NBD_REP_INFO, buf, 2 + len);
  }
  if (wants_info (ctx, NBD_INFO_DESCRIPTION) && s->caps.description) {
    len = strlen (s->caps.description);
    put_be16 (buf, NBD_INFO_DESCRIPTION);
    memcpy (buf + 2, s->caps.description, len);
    send_reply (conn, ctx->option, NBD_REP_INFO, buf, 2 + len);
  }
  /* As nbdkit: only an export with constraints (from the backend or a
   * filter) has block sizes to tell, asked for or not.
   */
  if (s->caps.block_min) {
    put_be16 (buf, NBD_INFO_BLOCK_SIZE);
    put_be32 (buf + 2, s->caps.block_min ? s->caps.block_min : 1);
    put_be32 (buf + 6, s->caps.block_pref ? s->caps.block_pref : 4096);
    put_be32 (buf + 10, s->caps.block_max && s->caps.block_max < MAX_REQUEST_SIZE
           ? s->caps.block_max : MAX_REQUEST_SIZE);
    send_reply (conn, ctx->option, NBD_REP_INFO, buf, 14);
  }
  send_reply (conn, ctx->option, NBD_REP_ACK, NULL, 0);
}

static uint32_t
open_error_type (uint32_t status)
{
  switch (status) {
  case HP_EPERM: return NBD_REP_ERR_POLICY;
  case HP_ESHUTDOWN: return NBD_REP_ERR_SHUTDOWN;
  default: return NBD_REP_ERR_UNKNOWN;
  }
}

static void
on_open (void *opaque, struct chain *ch, struct export_caps *caps,
         uint32_t status, const char *msg)
{
  struct open_ctx *ctx = opaque;
  struct conn *conn = ctx->conn;
  struct session *s = conn_session (conn);

  if (ch) {
    s->caps = *caps;            /* takes the strings */
    memset (caps, 0, sizeof *caps);
  }
  if (conn_is_closed (conn))
    chain_close (ch);
  else if (!ch) {
    if (ctx->option == NBD_OPT_EXPORT_NAME) {
      /* No way to report an error: hang up. */
      nbdkit_error ("%s: could not open export '%s': %s",
                    conn_peer (conn), ctx->name, msg);
      conn_close (conn);
    }
    else {
      send_error (conn, open_error_type (status),
                  "cannot open export '%s': %s", ctx->name, msg);
      read_option (conn);
    }
  }
  else {
    s->chain = ch;
    s->eflags = transmission_flags (&s->caps, s->structured);
    /* Contexts chosen for another export do not apply to the one a
     * client goes on to use (looking at one with INFO changes nothing).
     */
    if (ctx->option != NBD_OPT_INFO && s->base_allocation &&
        (!s->meta_export || strcmp (s->meta_export, ctx->name) != 0))
      s->base_allocation = false;
    if (ctx->option == NBD_OPT_EXPORT_NAME) {
      unsigned char buf[10 + 124];

      put_be64 (buf, s->caps.size);
      put_be16 (buf + 8, s->eflags);
      memset (buf + 10, 0, 124);
      conn_write (conn, buf, s->no_zeroes ? 10 : sizeof buf, NULL, 0, NULL);
      transmit_start (conn);
    }
    else {
      send_infos (conn, ctx);
      if (ctx->option == NBD_OPT_GO)
        transmit_start (conn);
      else {
        /* NBD_OPT_INFO: only looking. */
        chain_close (s->chain);
        s->chain = NULL;
        caps_free (&s->caps);
        read_option (conn);
      }
    }
  }

  open_ctx_free (ctx);
  conn_unref (conn);
}

static void
open_export (struct conn *conn, uint32_t option, const char *name,
             size_t namelen, const unsigned char *infos, uint16_t nr_infos)
{
  struct open_ctx *ctx = calloc (1, sizeof *ctx);
  uint16_t i;

  if (!ctx || !(ctx->name = strndup (name, namelen)) ||
      (nr_infos && !(ctx->infos = calloc (nr_infos, sizeof *ctx->infos)))) {
    if (ctx)
      open_ctx_free (ctx);
    nbdkit_error ("%s: out of memory", conn_peer (conn));
    conn_close (conn);
    return;
  }
  ctx->conn = conn;
  ctx->option = option;
  ctx->nr_infos = nr_infos;
  for (i = 0; i < nr_infos; ++i)
    ctx->infos[i] = get_be16 (infos + 2 * i);

  nbdkit_debug ("%s: opening export '%s'", conn_peer (conn), ctx->name);
  conn_ref (conn);
  chain_open (conn_session (conn)->bp, conn_id (conn), ctx->name,
              opt.readonly, conn_is_tls (conn),
              wants_info (ctx, NBD_INFO_DESCRIPTION), conn_peer (conn),
              on_open, ctx);
}

/* ---- NBD_OPT_LIST ---- */

static void
on_list (void *opaque, uint32_t status, const char *msg,
         const struct fexport *exports, size_t n)
{
  struct conn *conn = opaque;
  struct session *s = conn_session (conn);
  size_t i;

  if (conn_is_closed (conn))
    goto out;
  if (status) {
    send_error (conn, status == HP_ESHUTDOWN ? NBD_REP_ERR_SHUTDOWN
                                             : NBD_REP_ERR_PLATFORM,
                "cannot list exports: %s", msg ? msg : "failed");
    read_option (conn);
    goto out;
  }
  s->option = NBD_OPT_LIST;
  if (n < (MAX_NR_OPTIONS_LISTING - s->max_options) /
      OPTIONS_PER_LISTED_EXPORT)
    s->max_options += OPTIONS_PER_LISTED_EXPORT * n;
  else
    s->max_options = MAX_NR_OPTIONS_LISTING;
  for (i = 0; i < n; ++i) {
    const char *name = exports[i].name;
    const char *desc = exports[i].description;
    unsigned char buf[4 + 2 * NBD_MAX_STRING];
    size_t nlen, dlen;

    if (!name || (nlen = strlen (name)) > NBD_MAX_STRING)
      continue;
    dlen = desc ? strlen (desc) : 0;
    if (dlen > NBD_MAX_STRING)
      dlen = 0;
    put_be32 (buf, (uint32_t) nlen);
    memcpy (buf + 4, name, nlen);
    if (dlen)
      memcpy (buf + 4 + nlen, desc, dlen);
    send_reply (conn, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + nlen + dlen);
  }
  send_reply (conn, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
  read_option (conn);

 out:
  conn_unref (conn);
}

/* ---- the option loop ---- */

/* An export name: strict UTF-8 without NUL, as the specification
 * says of strings (no overlong forms, surrogates or code points past
 * U+10FFFF: JSON could not carry them to the backend).
 */
static bool
valid_name (const char *name, size_t len)
{
  const unsigned char *p = (const unsigned char *) name;
  size_t i = 0;

  while (i < len) {
    unsigned char c = p[i];
    uint32_t cp, min;
    size_t n;

    if (c == 0)
      return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0)
      n = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
      n = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
      n = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (len - i - 1 < n)
      return false;
    for (i++; n > 0; n--, i++) {
      if ((p[i] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
  }
  return true;
}

/* NBD_OPT_GO and NBD_OPT_INFO:
 *   uint32 namelen, name, uint16 nr_infos, nr_infos * uint16
 */
static void
handle_go_info (struct conn *conn)
{
  struct session *s = conn_session (conn);
  const unsigned char *d = (const unsigned char *) s->optdata;
  uint32_t len = s->optlen, namelen;
  uint16_t nr_infos;

  if (len < 6 || (namelen = get_be32 (d)) > len - 6) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "the option's export name length is not valid");
    read_option (conn);
    return;
  }
  nr_infos = get_be16 (d + 4 + namelen);
  if (len != 4 + namelen + 2 + 2 * (uint32_t) nr_infos) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "the option's length does not match its contents");
    read_option (conn);
    return;
  }
  if (namelen > NBD_MAX_STRING) {
    send_error (conn, NBD_REP_ERR_TOO_BIG,
                "the export name is longer than %d bytes", NBD_MAX_STRING);
    read_option (conn);
    return;
  }
  if (!valid_name ((const char *) d + 4, namelen)) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "the export name is not UTF-8 or contains a NUL byte");
    read_option (conn);
    return;
  }
  open_export (conn, s->option, (const char *) d + 4, namelen,
               d + 4 + namelen + 2, nr_infos);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT:
 *   uint32 namelen, name, uint32 nr_queries, nr_queries * (uint32 len,
 *   query)
 * The one context offered is "base:allocation".  LIST with no query
 * lists it, and "base:" matches it; SET selects it by its full name.
 */
static void
handle_meta_context (struct conn *conn)
{
  struct session *s = conn_session (conn);
  const unsigned char *d = (const unsigned char *) s->optdata;
  uint32_t len = s->optlen, namelen, nr_queries, i, pos;
  bool list = s->option == NBD_OPT_LIST_META_CONTEXT, found = false;
  unsigned char buf[4 + sizeof BASE_ALLOCATION];

  if (!s->structured) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "metadata contexts need NBD_OPT_STRUCTURED_REPLY first");
    read_option (conn);
    return;
  }
  if (len < 8 || (namelen = get_be32 (d)) > len - 8) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "the option's export name length is not valid");
    read_option (conn);
    return;
  }
  if (namelen > NBD_MAX_STRING) {
    send_error (conn, NBD_REP_ERR_TOO_BIG,
                "the export name is longer than %d bytes", NBD_MAX_STRING);
    read_option (conn);
    return;
  }
  nr_queries = get_be32 (d + 4 + namelen);
  /* Check every query's length before looking at any of them. */
  for (i = 0, pos = 8 + namelen; i < nr_queries; ++i) {
    uint32_t qlen;

    if (len - pos < 4 || (qlen = get_be32 (d + pos)) > len - pos - 4 ||
        qlen > NBD_MAX_STRING) {
      send_error (conn, NBD_REP_ERR_INVALID,
                  "query %u's length is not valid", i);
      read_option (conn);
      return;
    }
    pos += 4 + qlen;
  }
  if (pos != len) {
    send_error (conn, NBD_REP_ERR_INVALID,
                "the option's length does not match its contents");
    read_option (conn);
    return;
  }

  for (i = 0, pos = 8 + namelen; i < nr_queries; ++i) {
    uint32_t qlen = get_be32 (d + pos);
    const char *q = (const char *) d + pos + 4;

    if ((qlen == strlen (BASE_ALLOCATION) &&
         memcmp (q, BASE_ALLOCATION, qlen) == 0) ||
        (list && qlen == 5 && memcmp (q, "base:", 5) == 0))
      found = true;
    pos += 4 + qlen;
  }
  if (list && nr_queries == 0)
    found = true;

  if (!list) {
    free (s->meta_export);
    s->meta_export = strndup ((const char *) d + 4, namelen);
    s->base_allocation = found && s->meta_export != NULL;
  }
  if (found) {
    put_be32 (buf, BASE_ALLOCATION_ID);
    memcpy (buf + 4, BASE_ALLOCATION, strlen (BASE_ALLOCATION));
    send_reply (conn, s->option, NBD_REP_META_CONTEXT, buf,
                4 + strlen (BASE_ALLOCATION));
  }
  send_reply (conn, s->option, NBD_REP_ACK, NULL, 0);
  read_option (conn);
}

/* The TLS handshake after NBD_OPT_STARTTLS is done: negotiation
 * starts again, forgetting what was agreed in plaintext.
 */
static void
on_tls_ready (struct conn *conn)
{
  struct session *s = conn_session (conn);

  nbdkit_debug ("%s: TLS negotiated", conn_peer (conn));
  s->structured = false;
  s->base_allocation = false;
  free (s->meta_export);
  s->meta_export = NULL;
  read_option (conn);
}

static void
handle_starttls (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (opt.tls == TLS_OFF) {
    send_error (conn, NBD_REP_ERR_UNSUP,
                "TLS is not enabled on this server (--tls=on or "
                "--tls=require)");
    read_option (conn);
  }
  else if (conn_is_tls (conn)) {
    send_error (conn, NBD_REP_ERR_INVALID, "TLS is already negotiated");
    read_option (conn);
  }
  else if (s->optlen != 0) {
    send_error (conn, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
    read_option (conn);
  }
  else {
    send_reply (conn, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
    conn_start_tls (conn, on_tls_ready);
  }
}

static void
on_option_data (struct conn *conn)
{
  struct session *s = conn_session (conn);

  /* --tls=require: nothing but STARTTLS and ABORT in plaintext. */
  if (opt.tls == TLS_REQUIRE && !conn_is_tls (conn) &&
      s->option != NBD_OPT_STARTTLS && s->option != NBD_OPT_ABORT) {
    if (s->option == NBD_OPT_EXPORT_NAME) {
      nbdkit_debug ("%s: NBD_OPT_EXPORT_NAME without TLS, which is "
                    "required: closing the connection", conn_peer (conn));
      conn_close (conn);
      return;
    }
    send_error (conn, NBD_REP_ERR_TLS_REQD,
                "this server requires TLS: use NBD_OPT_STARTTLS first");
    read_option (conn);
    return;
  }

  switch (s->option) {
  case NBD_OPT_STARTTLS:
    handle_starttls (conn);
    break;

  case NBD_OPT_EXPORT_NAME:
    if (s->optlen > NBD_MAX_STRING || !valid_name (s->optdata, s->optlen)) {
      nbdkit_debug ("%s: NBD_OPT_EXPORT_NAME: invalid export name",
                    conn_peer (conn));
      conn_close (conn);
      return;
    }
    open_export (conn, NBD_OPT_EXPORT_NAME, s->optdata, s->optlen, NULL, 0);
    break;

  case NBD_OPT_ABORT:
    nbdkit_debug ("%s: client sent NBD_OPT_ABORT", conn_peer (conn));
    send_reply (conn, NBD_OPT_ABORT, NBD_REP_ACK, NULL, 0);
    conn_close_after_output (conn);
    break;

  case NBD_OPT_LIST:
    if (s->optlen != 0) {
      send_error (conn, NBD_REP_ERR_INVALID,
                  "NBD_OPT_LIST takes no data");
      read_option (conn);
      break;
    }
    conn_ref (conn);
    chain_list_exports (s->bp, conn_id (conn), opt.readonly,
                        conn_is_tls (conn), conn_peer (conn), on_list, conn);
    break;

  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    handle_go_info (conn);
    break;

  case NBD_OPT_STRUCTURED_REPLY:
    if (opt.no_sr)
      send_error (conn, NBD_REP_ERR_UNSUP,
                  "structured replies are turned off (--no-sr)");
    else if (s->optlen != 0)
      send_error (conn, NBD_REP_ERR_INVALID,
                  "NBD_OPT_STRUCTURED_REPLY takes no data");
    else {
      s->structured = true;
      send_reply (conn, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL, 0);
    }
    read_option (conn);
    break;

  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    handle_meta_context (conn);
    break;

  default:
    send_error (conn, NBD_REP_ERR_UNSUP,
                "option %u is not supported by this server", s->option);
    read_option (conn);
  }
}

static bool
is_known_option (uint32_t option)
{
  switch (option) {
  case NBD_OPT_EXPORT_NAME: case NBD_OPT_ABORT: case NBD_OPT_LIST:
  case NBD_OPT_STARTTLS: case NBD_OPT_INFO: case NBD_OPT_GO:
  case NBD_OPT_STRUCTURED_REPLY: case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    return true;
  default:
    return false;
  }
}

static void
on_option_too_big (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (!is_known_option (s->option))
    send_error (conn, NBD_REP_ERR_UNSUP,
                "option %u is not supported by this server", s->option);
  else
    send_error (conn, NBD_REP_ERR_TOO_BIG,
                "the option is %u bytes long, the limit is %d",
                s->optlen, MAX_OPTION_LENGTH);
  read_option (conn);
}

static void
on_option_header (struct conn *conn)
{
  struct session *s = conn_session (conn);

  if (get_be64 (s->opthdr) != NBD_OPTS_MAGIC) {
    nbdkit_debug ("%s: bad option magic", conn_peer (conn));
    conn_close (conn);
    return;
  }
  s->option = get_be32 (s->opthdr + 8);
  s->optlen = get_be32 (s->opthdr + 12);
  if (++s->nr_options > s->max_options) {
    nbdkit_error ("%s: the client sent more than %u options, "
                  "closing the connection", conn_peer (conn), s->max_options);
    conn_close (conn);
    return;
  }
  /* Plain (not fixed) newstyle knows only NBD_OPT_EXPORT_NAME, and
   * has no way to refuse an option but hanging up.
   */
  if (!s->fixed && s->option != NBD_OPT_EXPORT_NAME) {
    nbdkit_debug ("%s: option %u from a client that is not fixed newstyle, "
                  "closing the connection", conn_peer (conn), s->option);
    conn_close (conn);
    return;
  }

  free (s->optdata);
  s->optdata = NULL;
  if (s->optlen > MAX_OPTION_LENGTH) {
    if (s->option == NBD_OPT_EXPORT_NAME || s->optlen > MAX_SKIPPED_OPTION) {
      nbdkit_debug ("%s: option %u of %u bytes, closing the connection",
                    conn_peer (conn), s->option, s->optlen);
      conn_close (conn);
      return;
    }
    conn_read (conn, NULL, s->optlen, on_option_too_big);
    return;
  }
  s->optdata = malloc ((size_t) s->optlen + 1);
  if (!s->optdata) {
    conn_close (conn);
    return;
  }
  s->optdata[s->optlen] = '\0';
  conn_read (conn, s->optdata, s->optlen, on_option_data);
}

static void
read_option (struct conn *conn)
{
  struct session *s = conn_session (conn);

  conn_read (conn, s->opthdr, 16, on_option_header);
}

/* The handshake flags offered, less those --mask-handshake removes. */
static uint16_t
greeting_flags (void)
{
  return (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES) & opt.mask_handshake;
}

static void
on_client_flags (struct conn *conn)
{
  struct session *s = conn_session (conn);
  uint32_t flags = get_be32 (s->opthdr);

  /* A flag we did not offer (unknown, or masked off) ends it. */
  if (flags & ~(uint32_t) greeting_flags ()) {
    nbdkit_debug ("%s: client flags 0x%x that the server did not offer",
                  conn_peer (conn), flags);
    conn_close (conn);
    return;
  }
  s->fixed = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
  s->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
  read_option (conn);
}

/* ---- oldstyle: the export's size and flags at once ---- */

static void
on_oldstyle_open (void *opaque, struct chain *ch, struct export_caps *caps,
                  uint32_t status, const char *msg)
{
  struct conn *conn = opaque;
  struct session *s = conn_session (conn);
  unsigned char buf[8 + 8 + 8 + 2 + 2 + 124];

  if (ch) {
    s->caps = *caps;            /* takes the strings */
    memset (caps, 0, sizeof *caps);
  }
  if (conn_is_closed (conn))
    chain_close (ch);
  else if (!ch) {
    /* Oldstyle has no way to say why: hang up. */
    nbdkit_error ("%s: could not open the export: %s (%s)", conn_peer (conn),
                  msg, hp_error_name (status));
    conn_close (conn);
  }
  else {
    s->chain = ch;
    s->eflags = transmission_flags (&s->caps, false);
    put_be64 (buf, NBD_MAGIC);
    put_be64 (buf + 8, NBD_OLD_VERSION);
    put_be64 (buf + 16, s->caps.size);
    put_be16 (buf + 24, 0);                /* global flags: none */
    put_be16 (buf + 26, s->eflags);
    memset (buf + 28, 0, 124);
    conn_write (conn, buf, sizeof buf, NULL, 0, NULL);
    transmit_start (conn);
  }
  conn_unref (conn);
}

void
handshake_start (struct conn *conn)
{
  struct session *s = conn_session (conn);
  unsigned char greeting[18];

  memset (s, 0, sizeof *s);
  s->bp = bproc_for_connection ();
  s->max_options = MAX_NR_OPTIONS;
  if (opt.oldstyle) {
    nbdkit_debug ("%s: oldstyle handshake", conn_peer (conn));
    conn_ref (conn);
    chain_open (s->bp, conn_id (conn), "", opt.readonly, false, false,
                conn_peer (conn), on_oldstyle_open, conn);
    return;
  }
  put_be64 (greeting, NBD_MAGIC);
  put_be64 (greeting + 8, NBD_OPTS_MAGIC);
  put_be16 (greeting + 16, greeting_flags ());
  conn_write (conn, greeting, sizeof greeting, NULL, 0, NULL);
  conn_read (conn, s->opthdr, 4, on_client_flags);
}

void
session_free (struct conn *conn)
{
  struct session *s = conn_session (conn);

  free (s->optdata);
  s->optdata = NULL;
  free (s->meta_export);
  s->meta_export = NULL;
  transmit_free_current (conn);
  chain_close (s->chain);
  s->chain = NULL;
  caps_free (&s->caps);
}
