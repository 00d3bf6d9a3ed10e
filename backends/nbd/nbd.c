/* nbdkit nbd backend: serve what another NBD server serves (a proxy),
 * as nbdkit-nbd-plugin does.  This file owns the backend's table,
 * --dump-plugin, and the callbacks, each of which passes the client's
 * request on to the upstream server with its flags and passes back its
 * reply, error included; params.c owns the parameters, upstream.c the
 * connections and the sending.
 *
 * shared=false (the default): every client connection gets a
 * connection of its own to the server, opened in open (retrying) and
 * closed in close.  shared=true (the default of command= and
 * socket-fd=): one connection, opened in get_ready, serves all of
 * them.  A connection that the server dropped is not opened again:
 * its requests fail with EINVAL, as with nbdkit.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbdkit-backend.h"
#include "upstream.h"

#define C (upstream_config)

static struct upstream *shared_up;      /* shared=true: the connection */

static void
nbdbe_unload (void)
{
  if (shared_up)
    upstream_close (shared_up);
  params_free ();
}

static int
nbdbe_get_ready (void)
{
  struct nbd_handle *nbd;

  if (!C.shared)
    return 0;
  nbd = upstream_connect (C.export ? C.export : "", false);
  if (!nbd)
    return -1;
  shared_up = upstream_start (nbd);
  return shared_up ? 0 : -1;
}

static void
nbdbe_dump_plugin (void)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd) {
    printf ("libnbd_version=%s\n", nbd_get_version (nbd));
    printf ("libnbd_tls=%d\n", nbd_supports_tls (nbd));
    printf ("libnbd_uri=%d\n", nbd_supports_uri (nbd));
    nbd_close (nbd);
  }
#ifdef AF_VSOCK
  printf ("libnbd_vsock=1\n");
#endif
  printf ("libnbd_dynamic_list=1\n");
  fflush (stdout);
}

/* ---- exports ---- */

/* A returned string must outlive the call (libnbdkit-backend copies it
 * at once): each thread keeps its latest, freed by the next or when
 * the thread ends.
 */
static pthread_key_t name_key;
static pthread_once_t name_once = PTHREAD_ONCE_INIT;

static void
make_name_key (void)
{
  pthread_key_create (&name_key, free);
}

static const char *
keep_name (char *name)
{
  pthread_once (&name_once, make_name_key);
  free (pthread_getspecific (name_key));
  pthread_setspecific (name_key, name);
  return name;
}

/* Without dynamic-export: the one export, export= (or "").  With it:
 * the server's default export, by its canonical name if it says.
 */
static const char *
nbdbe_default_export (int readonly, int is_tls)
{
  struct nbd_handle *nbd;
  char *name = NULL;

  if (!C.dynamic_export)
    return C.export ? C.export : "";
  nbd = upstream_connect ("", true);
  if (nbd && nbd_opt_info (nbd) == 0)
    name = nbd_get_canonical_export_name (nbd);
  if (!name)
    nbdkit_debug ("the server's default export has no name of its own: %s",
                  nbd_get_error ());
  if (nbd)
    upstream_close_options (nbd);
  return name ? keep_name (name) : "";
}

static int
list_one (void *user_data, const char *name, const char *description)
{
  return nbdkit_add_export (user_data, name,
                            description && *description ? description : NULL);
}

static int
nbdbe_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  struct nbd_handle *nbd;
  int r;

  if (!C.dynamic_export) {
    char *name = nbdkit_connection_default_export (readonly, is_tls);

    if (!name)
      return -1;
    r = nbdkit_add_export (exports, name, NULL);
    free (name);
    return r;
  }
  nbd = upstream_connect ("", true);
  if (!nbd)
    return -1;
  r = nbd_opt_list (nbd, (nbd_list_callback) { .callback = list_one,
                                               .user_data = exports });
  if (r == -1)
    nbdkit_error ("%s", nbd_get_error ());
  upstream_close_options (nbd);
  return r == -1 ? -1 : 0;
}

/* ---- connections ---- */

static void *
nbdbe_open (int readonly)
{
  struct nbd_handle *nbd;
  const char *export;

  if (C.shared)
    return shared_up;
  export = C.dynamic_export ? nbdkit_export_name ()
    : C.export ? C.export : "";
  nbd = upstream_connect (export ? export : "", false);
  if (!nbd) {
    /* Whatever the cause (an EPERM of libnbd's too), the client is
     * told that the export cannot be opened (NBD_REP_ERR_UNKNOWN), as
     * nbdkit does, not that a policy refuses it.
     */
    nbdkit_set_error (EINVAL);
    return NULL;
  }
  return upstream_start (nbd);
}

static void
nbdbe_close (void *handle)
{
  if (handle != shared_up)
    upstream_close (handle);
}

static struct nbd_handle *
nbd_of (void *handle)
{
  return ((struct upstream *) handle)->nbd;
}

static int64_t
nbdbe_get_size (void *handle)
{
  int64_t size = nbd_get_size (nbd_of (handle));

  if (size == -1)
    nbdkit_error ("%s", nbd_get_error ());
  return size;
}

/* A flag of the server's: 1, 0, or -1 after nbdkit_error. */
static int
flag (int r)
{
  if (r == -1)
    nbdkit_error ("%s", nbd_get_error ());
  return r;
}

static int
nbdbe_can_write (void *handle)
{
  int r = flag (nbd_is_read_only (nbd_of (handle)));

  return r == -1 ? -1 : !r;
}

static int
nbdbe_can_flush (void *handle)
{
  return flag (nbd_can_flush (nbd_of (handle)));
}

static int
nbdbe_is_rotational (void *handle)
{
  return flag (nbd_is_rotational (nbd_of (handle)));
}

static int
nbdbe_can_trim (void *handle)
{
  return flag (nbd_can_trim (nbd_of (handle)));
}

/* Zeroing is offered whenever the client may write: when the server
 * cannot zero, zero fails with ENOTSUP and libnbdkit-backend writes
 * zeroes instead (as nbdkit emulates it).
 */
static int
nbdbe_can_zero (void *handle)
{
  return 1;
}

static int
nbdbe_can_fast_zero (void *handle)
{
  return flag (nbd_can_fast_zero (nbd_of (handle)));
}

static int
nbdbe_can_extents (void *handle)
{
  return flag (nbd_can_meta_context (nbd_of (handle),
                                     LIBNBD_CONTEXT_BASE_ALLOCATION));
}

static int
nbdbe_can_fua (void *handle)
{
  int r = flag (nbd_can_fua (nbd_of (handle)));

  return r == -1 ? -1 : r ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

static int
nbdbe_can_multi_conn (void *handle)
{
  return flag (nbd_can_multi_conn (nbd_of (handle)));
}

static int
nbdbe_can_cache (void *handle)
{
  int r = flag (nbd_can_cache (nbd_of (handle)));

  return r == -1 ? -1 : r ? NBDKIT_CACHE_NATIVE : NBDKIT_CACHE_NONE;
}

static bool
is_power_of_2 (int64_t v)
{
  return v > 0 && !(v & (v - 1));
}

/* The server's constraints, passed on when NBD allows them (they
 * always should); otherwise none, rather than failing the client.
 */
static int
nbdbe_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                  uint32_t *maximum)
{
  struct nbd_handle *nbd = nbd_of (handle);
  int64_t min = nbd_get_block_size (nbd, LIBNBD_SIZE_MINIMUM);
  int64_t pref = nbd_get_block_size (nbd, LIBNBD_SIZE_PREFERRED);
  int64_t max = nbd_get_block_size (nbd, LIBNBD_SIZE_MAXIMUM);

  if (min == -1 || pref == -1 || max == -1) {
    nbdkit_error ("%s", nbd_get_error ());
    return -1;
  }
  if (min == 0 && pref == 0 && max == 0)
    return 0;
  if (!is_power_of_2 (min) || min > 65536 || !is_power_of_2 (pref) ||
      pref < 512 || pref < min || pref > 32 * 1024 * 1024 ||
      max < pref || max > UINT32_MAX ||
      (max != UINT32_MAX && max % min != 0)) {
    nbdkit_debug ("the server's block size constraints minimum=%" PRIi64
                  " preferred=%" PRIi64 " maximum=%" PRIi64 " are not "
                  "valid NBD: not passed on", min, pref, max);
    return 0;
  }
  *minimum = min;
  *preferred = pref;
  *maximum = max;
  return 0;
}

/* Whether s is valid UTF-8 (a description the server sent). */
static bool
is_utf8 (const unsigned char *s)
{
  while (*s) {
    size_t n = *s < 0x80 ? 0 : (*s & 0xe0) == 0xc0 ? 1
      : (*s & 0xf0) == 0xe0 ? 2 : (*s & 0xf8) == 0xf0 ? 3 : 4;

    if (n == 4)
      return false;
    for (s++; n > 0; n--, s++)
      if ((*s & 0xc0) != 0x80)
        return false;
  }
  return true;
}

static const char *
nbdbe_export_description (void *handle)
{
  char *d = nbd_get_export_description (nbd_of (handle));

  if (d && !is_utf8 ((const unsigned char *) d)) {
    nbdkit_debug ("the server's export description is not UTF-8: dropped");
    free (d);
    d = NULL;
  }
  return d ? keep_name (d) : NULL;
}

/* ---- data ---- */

static int
nbdbe_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct upstream *u = handle;
  struct op op;

  op_init (&op);
  return op_wait (u, &op,
                  nbd_aio_pread (u->nbd, buf, count, offset,
                                 op_completion (&op), 0),
                  "pread");
}

static int
nbdbe_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  struct upstream *u = handle;
  struct op op;

  op_init (&op);
  return op_wait (u, &op,
                  nbd_aio_pwrite (u->nbd, buf, count, offset,
                                  op_completion (&op),
                                  flags & NBDKIT_FLAG_FUA
                                  ? LIBNBD_CMD_FLAG_FUA : 0),
                  "pwrite");
}

static int
nbdbe_flush (void *handle, uint32_t flags)
{
  struct upstream *u = handle;
  struct op op;

  op_init (&op);
  return op_wait (u, &op, nbd_aio_flush (u->nbd, op_completion (&op), 0),
                  "flush");
}

static int
nbdbe_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct upstream *u = handle;
  struct op op;

  op_init (&op);
  return op_wait (u, &op,
                  nbd_aio_trim (u->nbd, count, offset, op_completion (&op),
                                flags & NBDKIT_FLAG_FUA
                                ? LIBNBD_CMD_FLAG_FUA : 0),
                  "trim");
}

static int
nbdbe_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct upstream *u = handle;
  uint32_t f = 0;
  struct op op;
  int r = nbd_can_zero (u->nbd);

  if (r != 1) {
    /* Not the server's: ENOTSUP makes libnbdkit-backend write zeroes
     * (or, for a fast zero, fail at once).
     */
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  if (flags & NBDKIT_FLAG_FUA)
    f |= LIBNBD_CMD_FLAG_FUA;
  if (!(flags & NBDKIT_FLAG_MAY_TRIM))
    f |= LIBNBD_CMD_FLAG_NO_HOLE;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    f |= LIBNBD_CMD_FLAG_FAST_ZERO;
  op_init (&op);
  return op_wait (u, &op,
                  nbd_aio_zero (u->nbd, count, offset, op_completion (&op), f),
                  "zero");
}

static int
nbdbe_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct upstream *u = handle;
  struct op op;

  op_init (&op);
  return op_wait (u, &op,
                  nbd_aio_cache (u->nbd, count, offset, op_completion (&op),
                                 0),
                  "cache");
}

static int
nbdbe_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents)
{
  struct upstream *u = handle;
  struct op op;
  uint64_t pos = offset;
  size_t i;
  int r;

  op_init (&op);
  r = op_wait (u, &op,
               nbd_aio_block_status (u->nbd, count, offset, op_extents (&op),
                                     op_completion (&op),
                                     flags & NBDKIT_FLAG_REQ_ONE
                                     ? LIBNBD_CMD_FLAG_REQ_ONE : 0),
               "block status");
  if (r == 0 && op.nr_entries < 2) {
    nbdkit_error ("block status: the server sent no base:allocation extent");
    nbdkit_set_error (EIO);
    r = -1;
  }
  for (i = 0; r == 0 && i + 1 < op.nr_entries; i += 2) {
    uint32_t type = op.entries[i + 1] &
      (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);

    if (op.entries[i] == 0)
      continue;
    r = nbdkit_add_extent (extents, pos, op.entries[i], type);
    pos += op.entries[i];
  }
  free (op.entries);
  return r;
}

static struct nbdkit_backend nbd_backend = {
  .name = "nbd",
  .longname = "nbdkit nbd backend",
  .version = PACKAGE_VERSION,
  .description = "Serve what another NBD server serves (a proxy).",
  .config_help =
    "[uri=]<URI>             The NBD server by its URI: nbd://HOST[:PORT]/\n"
    "                        EXPORT, nbd+unix:///EXPORT?socket=PATH,\n"
    "                        nbd+vsock://CID[:PORT]/EXPORT (nbds...: TLS).\n"
    "socket=<SOCKNAME>       Or: the server's unix socket.\n"
    "hostname=<HOST>         Or: the server's host, over TCP.\n"
    "port=<PORT>             With hostname=: the TCP port or service name;\n"
    "                        with vsock=: the vsock port (default 10809).\n"
    "vsock=<CID>             Or: the server's AF_VSOCK context ID.\n"
    "command=<COMMAND>       Or: run this NBD server, giving it a socket\n"
    "                        (systemd socket activation); implies\n"
    "                        shared=true.\n"
    "arg=<ARG>               An argument of command= (once per argument).\n"
    "socket-fd=<FD>          Or: the socket, connected to the server, that\n"
    "                        nbdkit inherited; implies shared=true.\n"
    "export=<NAME>           The export to connect to (default \"\").\n"
    "dynamic-export=<BOOL>   Connect to the export each client asks for\n"
    "                        (default false).\n"
    "retry=<N>               Retry connecting N more times, a second apart\n"
    "                        (default 0).\n"
    "shared=<BOOL>           true: one connection to the server for all\n"
    "                        clients, made at start; false (default): one\n"
    "                        per client.\n"
    "tls=off|on|require      TLS to the server (default off, or on when a\n"
    "                        tls-* parameter is given).\n"
    "tls-certificates=<DIR>  X.509: the directory of ca-cert.pem,\n"
    "                        client-cert.pem and client-key.pem.\n"
    "tls-verify=<BOOL>       Check the server's certificate (default true).\n"
    "tls-username=<NAME>     The user name for X.509 or the PSK (default:\n"
    "                        the login name).\n"
    "tls-psk=<FILE>          The pre-shared keys file (psktool format).",
  .magic_config_key = "uri",
  .fd_config_keys = (const char *const[]) { "socket-fd", NULL },
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = nbdbe_unload,
  .config = params_config,
  .config_complete = params_config_complete,
  .get_ready = nbdbe_get_ready,
  .dump_plugin = nbdbe_dump_plugin,
  .list_exports = nbdbe_list_exports,
  .default_export = nbdbe_default_export,
  .open = nbdbe_open,
  .close = nbdbe_close,
  .get_size = nbdbe_get_size,
  .export_description = nbdbe_export_description,
  .block_size = nbdbe_block_size,
  .can_write = nbdbe_can_write,
  .can_flush = nbdbe_can_flush,
  .is_rotational = nbdbe_is_rotational,
  .can_trim = nbdbe_can_trim,
  .can_zero = nbdbe_can_zero,
  .can_fast_zero = nbdbe_can_fast_zero,
  .can_extents = nbdbe_can_extents,
  .can_fua = nbdbe_can_fua,
  .can_multi_conn = nbdbe_can_multi_conn,
  .can_cache = nbdbe_can_cache,
  .pread = nbdbe_pread,
  .pwrite = nbdbe_pwrite,
  .flush = nbdbe_flush,
  .trim = nbdbe_trim,
  .zero = nbdbe_zero,
  .cache = nbdbe_cache,
  .extents = nbdbe_extents,
};

NBDKIT_REGISTER_BACKEND (nbd_backend)
