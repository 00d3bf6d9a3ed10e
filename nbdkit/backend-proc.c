/* nbdkit front end: struct backend_proc, one backend process.
 *
 * Owns the list of the server's backend processes (one, or N alike
 * with -D nbdkit.backend_procs=N, connections taking them in turn),
 * making them, and every message the front end sends a backend: one
 * function per message type of docs/nbdkit-helper-protocol.pod, the
 * mirror of the backend library's dispatch.  Nothing else in the front
 * end builds a frame.  The parts of a backend_proc are kept by their
 * own files (backend-proc.h lists them).
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-proc.h"

static struct backend_proc *procs, *next_for_connection;

void
bproc_create_all (unsigned n)
{
  struct backend_proc **tail = &procs;
  unsigned i;

  for (i = 0; i < n; ++i) {
    struct backend_proc *bp = calloc (1, sizeof *bp);

    if (!bp)
      die ("out of memory");
    bp->index = i;
    channel_init (bp);
    spawn_init (bp);
    liveness_init (bp);
    *tail = bp;
    tail = &bp->next;
  }
}

void
bproc_stop_all (void)
{
  struct backend_proc *bp;

  for (bp = procs; bp; bp = bp->next)
    supervisor_stop (bp);
}

struct backend_proc *
bproc_first (void)
{
  return procs;
}

struct backend_proc *
bproc_next (const struct backend_proc *bp)
{
  return bp->next;
}

struct backend_proc *
bproc_for_connection (void)
{
  struct backend_proc *bp = next_for_connection ? next_for_connection
                                                : procs;

  next_for_connection = bp->next;
  return bp;
}

const struct backend_info *
bproc_info (const struct backend_proc *bp)
{
  return &bp->info;
}

const char *
bproc_name (const struct backend_proc *bp)
{
  static __thread char buf[256];
  const char *name = bp->info.name ? bp->info.name : opt.backend_name;

  if (bp->index == 0)
    return name;
  snprintf (buf, sizeof buf, "%s#%u", name, bp->index);
  return buf;
}

int
server_thread_model (void)
{
  return (int) procs->info.thread_model;
}

json_t *
bproc_parse_json (const void *payload, uint32_t len, const char **why)
{
  json_error_t err;
  json_t *j;

  if (len == 0)
    return json_object ();
  j = json_loadb (payload, len, 0, &err);
  if (!j || !json_is_object (j)) {
    json_decref (j);
    *why = "the reply is not a JSON object";
    return NULL;
  }
  return j;
}

void *
bproc_payload_alloc (struct backend_proc *bp, size_t len)
{
  return arena_payload_alloc (bp->arena, len);
}

/* ---- the messages ---- */

/* A control message: JSON payload (req NULL = {}; reference stolen). */
static void
send_json (struct backend_proc *bp, uint16_t type, uint32_t handle,
           json_t *req, int fd, unsigned flags, backend_cb cb, void *opaque)
{
  struct hp_header h = { .type = type, .handle = handle };
  char *s = req ? json_dumps (req, JSON_COMPACT) : strdup ("{}");

  json_decref (req);
  if (!s) {
    cb (opaque, NULL, NULL, 0);
    return;
  }
  channel_send (bp, &h, NULL, s, strlen (s), fd, flags, cb, opaque);
}

void
bproc_hello (struct backend_proc *bp, backend_cb cb, void *opaque)
{
  json_t *req = json_pack ("{s:i, s:s, s:s, s:s, s:b, s:i, s:O}",
                           "protocol", HP_PROTOCOL_VERSION,
                           "server", PROGRAM_NAME,
                           "server_version", PACKAGE_VERSION,
                           "name", opt.backend_name,
                           "verbose", opt.verbose,
                           "threads", (int) opt.threads,
                           "debug", opt.backend_debug ? opt.backend_debug
                                                      : json_object ());

  send_json (bp, HP_HELLO, 0, req, -1, CH_STARTUP, cb, opaque);
}

void
bproc_config (struct backend_proc *bp, const char *key, const char *value,
              int fd, backend_cb cb, void *opaque)
{
  send_json (bp, HP_CONFIG, 0,
             json_pack ("{s:s, s:s}", "key", key, "value", value), fd,
             CH_STARTUP, cb, opaque);
}

void
bproc_config_complete (struct backend_proc *bp, backend_cb cb, void *opaque)
{
  send_json (bp, HP_CONFIG_COMPLETE, 0, NULL, -1, CH_STARTUP, cb, opaque);
}

void
bproc_get_ready (struct backend_proc *bp, backend_cb cb, void *opaque)
{
  send_json (bp, HP_GET_READY, 0, NULL, -1, CH_STARTUP, cb, opaque);
}

void
bproc_attach_fd (struct backend_proc *bp, const char *purpose, size_t size,
                 int fd, backend_cb cb, void *opaque)
{
  json_t *req = size ? json_pack ("{s:s, s:I}", "purpose", purpose,
                                  "size", (json_int_t) size)
                     : json_pack ("{s:s}", "purpose", purpose);

  send_json (bp, HP_ATTACH_FD, 0, req, fd, CH_STARTUP, cb, opaque);
}

void
bproc_dump (struct backend_proc *bp, backend_cb cb, void *opaque)
{
  send_json (bp, HP_DUMP, 0, NULL, -1, CH_STARTUP, cb, opaque);
}

static json_t *
export_request (uint64_t connection, bool readonly, bool tls)
{
  return json_pack ("{s:b, s:b, s:I}", "readonly", readonly, "tls", tls,
                    "connection", (json_int_t) connection);
}

void
bproc_list_exports (struct backend_proc *bp, uint64_t connection,
                    bool readonly, bool tls, backend_cb cb, void *opaque)
{
  send_json (bp, HP_LIST_EXPORTS, 0,
             export_request (connection, readonly, tls), -1, 0, cb, opaque);
}

void
bproc_default_export (struct backend_proc *bp, uint64_t connection,
                      bool readonly, bool tls, backend_cb cb, void *opaque)
{
  send_json (bp, HP_DEFAULT_EXPORT, 0,
             export_request (connection, readonly, tls), -1, 0, cb, opaque);
}

int
bproc_open_msg (struct backend_proc *bp, uint64_t connection,
                const char *export, bool readonly, bool tls, bool description,
                const char *client, int previous_fd, unsigned flags,
                backend_cb cb, void *opaque)
{
  json_t *req = json_pack ("{s:s, s:b, s:b, s:s, s:I, s:b, s:o}",
                           "export", export,
                           "readonly", readonly, "tls", tls,
                           "client", client,
                           "connection", (json_int_t) connection,
                           "description", description,
                           /* The front end takes a passthrough
                            * descriptor (passthrough.c), or with
                            * -D nbdkit.passthrough=0 keeps it only for
                            * a re-open (supervisor.c).
                            */
                           "passthrough", passthrough_enabled ()
                           ? json_true () : json_string ("keep"));

  if (req && previous_fd >= 0)
    json_object_set_new (req, "previous_fd", json_true ());
  /* Never send {} for it: that would open the default export. */
  if (!req)
    return -1;
  send_json (bp, HP_OPEN, 0, req, previous_fd, flags, cb, opaque);
  return 0;
}

static void
ignore_reply (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  payload_free (payload);
}

void
bproc_close_msg (struct backend_proc *bp, uint32_t handle, backend_cb cb,
                 void *opaque)
{
  if (!cb) {
    cb = ignore_reply;
    opaque = NULL;
  }
  if (channel_is_open (bp))
    send_json (bp, HP_CLOSE, handle, NULL, -1, CH_STARTUP, cb, opaque);
  else
    cb (opaque, NULL, NULL, 0);
}

void
bproc_ping (struct backend_proc *bp, unsigned flags, backend_cb cb,
            void *opaque)
{
  struct hp_header h = { .type = HP_PING };

  channel_send (bp, &h, NULL, NULL, 0, -1, flags, cb, opaque);
}

void
bproc_shutdown (struct backend_proc *bp, backend_cb cb, void *opaque)
{
  send_json (bp, HP_SHUTDOWN, 0, NULL, -1, CH_STARTUP, cb, opaque);
}

void
bproc_data (struct backend_proc *bp, struct bhandle *bh, uint16_t type,
            uint16_t flags, uint64_t offset, uint32_t count, void *payload,
            backend_cb cb, void *opaque)
{
  struct hp_header h = {
    .type = type, .flags = flags, .offset = offset, .count = count,
  };

  channel_send (bp, &h, bh, payload,
                payload && type == HP_PWRITE ? count : 0, -1, 0, cb, opaque);
}
