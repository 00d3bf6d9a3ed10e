/* nbdkit front end: the supervisor of the backend process.
 *
 * Owns the backend's life cycle (in the manner of an OTP supervisor or
 * systemd's Restart=) and struct bhandle, the front end's record of each
 * handle opened in the backend.
 *
 *   STARTING  process spawned; HELLO, CONFIG..., CONFIG_COMPLETE,
 *             GET_READY, then every open handle re-opened with the same
 *             export name and flags.  Ordinary requests are held.
 *   READY     requests flow.
 *   WAITING   the backend died; a restart is due after a backoff that
 *             doubles with each restart in the window.  Requests are
 *             held; those in flight that are safe to repeat are held to
 *             be sent again, once.
 *   FAILED    more than opt.max_restarts restarts in the window: the
 *             server exits 1, or (--backend-failure=error) every request
 *             fails with EIO.
 *   STOPPING  the server is shutting down: the requests in flight
 *             finish, the handles are closed, then SHUTDOWN asks the
 *             backend to exit; closing the channel, then SIGKILL, if
 *             it does not within STOP_TIMEOUT.
 *
 * The first start is different: any failure there is a configuration
 * error, reported before the server listens, and the server exits 1.
 *
 * Liveness (PING) is liveness.c's: it calls supervisor_backend_hung
 * when a backend stops answering.
 */

#include <config.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal.h"

enum state { STARTING, READY, WAITING, FAILED, STOPPING };

static enum state state = STARTING;
static bool started_once;       /* reached READY at least once */
static char *start_error;       /* why the first start failed */
static void (*after_hello) (void);
static size_t config_index;
static unsigned nr_reopening;
static unsigned restarts;       /* total, for the log and tests */
static ev_tstamp *restart_times;        /* within the window */
static unsigned nr_restart_times;
static ev_timer restart_timer, kill_timer;

static struct bhandle *handles;

/* The memory a backend may keep across its restarts (HP_ATTACH_FD). */
static int memfd = -1;
static unsigned attach_step;    /* where attach_next is */

#define BACKOFF_INITIAL 0.1     /* seconds before the first restart */
#define BACKOFF_MAX     5.0
#define TERM_GRACE      2.0     /* SIGTERM to SIGKILL for a hung backend */
#define STOP_TIMEOUT    5.0     /* orderly stop before SIGKILL */

static void start_incarnation (void);
static void start_failed (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

static const char *
name (void)
{
  return binfo.name ? binfo.name : opt.backend_name;
}

unsigned
supervisor_restarts (void)
{
  return restarts;
}

bool
supervisor_is_ready (void)
{
  return state == READY;
}

/* Requests wait for the backend in every state but these two. */
bool
supervisor_may_hold (void)
{
  return state != FAILED && state != STOPPING;
}

/* ---- killing ---- */

/* SIGKILL for the backend and everything it started (a script that
 * runs, data's commands): the backend leads a process group of its
 * own (backend-spawn.c).  Its pid is not reaped yet, so the group's
 * id cannot have been reused.
 */
static void
kill_backend_group (void)
{
  pid_t pid = backend_pid ();

  if (pid <= 0)
    return;
  if (kill (-pid, SIGKILL) == -1)
    kill (pid, SIGKILL);
}

static void
on_kill_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  if (backend_pid () > 0) {
    nbdkit_debug ("%s: backend process %d still running, sending SIGKILL",
                  name (), (int) backend_pid ());
    kill_backend_group ();
  }
}

/* Ask the backend to go (SIGTERM), then force it (SIGKILL). */
static void
terminate_backend (void)
{
  if (backend_pid () <= 0)
    return;
  kill (backend_pid (), SIGTERM);
  ev_timer_stop (loop, &kill_timer);
  ev_timer_set (&kill_timer, TERM_GRACE, 0);
  ev_timer_start (loop, &kill_timer);
}

/* Ask the backend to go by closing its channel (it exits on EOF), with
 * SIGKILL after TERM_GRACE if it does not.
 */
static void
dismiss_backend (void)
{
  channel_close (state != FAILED && state != STOPPING);
  if (backend_pid () <= 0)
    return;
  ev_timer_stop (loop, &kill_timer);
  ev_timer_set (&kill_timer, TERM_GRACE, 0);
  ev_timer_start (loop, &kill_timer);
}

void
supervisor_protocol_error (const char *why)
{
  nbdkit_error ("%s: backend protocol error: %s; restarting the backend",
                name (), why);
  kill_backend_group ();
  channel_close (true);
}

void
supervisor_channel_lost (void)
{
  channel_close (true);
  /* A backend without its channel is of no use: make sure it goes. */
  if (state != STOPPING)
    terminate_backend ();
}

/* A hung backend: what can be sent again waits for the next one. */
void
supervisor_backend_hung (void)
{
  channel_close (true);
  terminate_backend ();
}

static void
on_request_timeout (const struct hp_header *req, double waited)
{
  nbdkit_error ("%s: the backend did not answer %s within %g seconds; "
                "restarting it", name (), hp_type_name (req->type), waited);
  supervisor_backend_hung ();
}

/* ---- handles ---- */

static void
bhandle_unlink (struct bhandle *bh)
{
  if (bh->prev)
    bh->prev->next = bh->next;
  else if (handles == bh)
    handles = bh->next;
  if (bh->next)
    bh->next->prev = bh->prev;
  bh->next = bh->prev = NULL;
}

static void
bhandle_free (struct bhandle *bh)
{
  free (bh->export);
  free (bh->client);
  free (bh);
}

static void
ignore_reply (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  free (payload);
}

static void
send_close (uint32_t id)
{
  struct hp_header h = { .type = HP_CLOSE, .handle = id };
  char *s = strdup ("{}");

  if (s && channel_is_open ())
    channel_send (&h, NULL, s, 2, CH_STARTUP, ignore_reply, NULL);
  else
    free (s);
}

void
backend_close (struct bhandle *bh)
{
  if (!bh)
    return;
  bhandle_unlink (bh);
  if (bh->reopening) {
    bh->closing = true;         /* freed when the re-open answers */
    return;
  }
  if (bh->valid && state == READY)
    send_close (bh->id);
  bhandle_free (bh);
}

static json_t *
open_request (const char *export, bool readonly, bool tls,
              const char *client)
{
  return json_pack ("{s:s, s:b, s:b, s:s}", "export", export,
                    "readonly", readonly, "tls", tls, "client", client);
}

struct open_ctx {
  struct bhandle *bh;
  backend_open_cb cb;
  void *opaque;
};

static void
on_open (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct open_ctx *ctx = opaque;
  struct bhandle *bh = ctx->bh;
  const char *why = NULL;
  json_t *j = NULL;

  if (!reply) {
    ctx->cb (ctx->opaque, NULL, NULL, HP_EIO,
             state == FAILED ? "the backend has failed"
             : "the backend stopped before it answered");
    bhandle_free (bh);
  }
  else if (reply->status) {
    ctx->cb (ctx->opaque, NULL, NULL, reply->status,
             payload ? payload : hp_error_name (reply->status));
    bhandle_free (bh);
  }
  else if (reply->handle == 0 ||
           (j = channel_parse_json (payload, len, &why)) == NULL) {
    ctx->cb (ctx->opaque, NULL, NULL, HP_EIO,
             why ? why : "the backend's OPEN reply has no handle");
    if (reply->handle)
      send_close (reply->handle);
    bhandle_free (bh);
  }
  else {
    bh->id = reply->handle;
    bh->valid = true;
    bh->size = json_integer_value (json_object_get (j, "size"));
    bh->next = handles;
    if (handles)
      handles->prev = bh;
    handles = bh;
    ctx->cb (ctx->opaque, bh, j, 0, NULL);
  }
  json_decref (j);
  free (payload);
  free (ctx);
}

void
backend_open (const char *export, bool readonly, bool tls,
              const char *client, backend_open_cb cb, void *opaque)
{
  struct open_ctx *ctx = calloc (1, sizeof *ctx);
  struct bhandle *bh = calloc (1, sizeof *bh);
  json_t *req;

  if (!ctx || !bh || !(bh->export = strdup (export)) ||
      !(bh->client = strdup (client))) {
    free (ctx);
    if (bh)
      bhandle_free (bh);
    cb (opaque, NULL, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  bh->readonly = readonly;
  bh->tls = tls;
  ctx->bh = bh;
  ctx->cb = cb;
  ctx->opaque = opaque;
  req = open_request (export, readonly, tls, client);
  if (!req) {
    /* Never send {} for it: that would open the default export. */
    free (ctx);
    bhandle_free (bh);
    cb (opaque, NULL, NULL, HP_EINVAL,
        "the export name cannot be passed to the backend");
    return;
  }
  channel_send_json (HP_OPEN, NULL, req, 0, on_open, ctx);
}

/* ---- starting an incarnation ---- */

static void
become_ready (void)
{
  state = READY;
  if (started_once)
    nbdkit_error ("%s: backend restarted (pid %d, restart %u); "
                  "%zu requests to send again",
                  name (), (int) backend_pid (), restarts,
                  channel_in_flight ());
  started_once = true;
  channel_set_ready ();
}

static void
on_reopen (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct bhandle *bh = opaque;
  json_t *j = NULL;
  const char *why;

  bh->reopening = false;
  if (reply && reply->status == 0 && reply->handle &&
      (j = channel_parse_json (payload, len, &why)) != NULL) {
    bh->id = reply->handle;
    if ((uint64_t) json_integer_value (json_object_get (j, "size")) !=
        bh->size)
      nbdkit_error ("%s: export '%s' changed size after the backend "
                    "restarted", name (), bh->export);
    if (bh->closing)
      send_close (bh->id);
  }
  else if (!bh->closing) {
    nbdkit_error ("%s: could not re-open export '%s' after the restart: "
                  "%s; its client gets errors", name (), bh->export,
                  reply && reply->status && payload
                  ? (const char *) payload : "no handle");
    bh->valid = false;
  }
  json_decref (j);
  free (payload);
  if (bh->closing)
    bhandle_free (bh);
  if (--nr_reopening == 0 && state == STARTING)
    become_ready ();
}

static void
reopen_handles (void)
{
  struct bhandle *bh;

  nr_reopening = 1;             /* guard while sending */
  for (bh = handles; bh; bh = bh->next) {
    if (!bh->valid)
      continue;
    nr_reopening++;
    bh->reopening = true;
    channel_send_json (HP_OPEN, NULL,
                       open_request (bh->export, bh->readonly, bh->tls,
                                     bh->client),
                       CH_STARTUP, on_reopen, bh);
  }
  if (--nr_reopening == 0 && state == STARTING)
    become_ready ();
}

/* A reply to a start-up message: NULL if it failed (message set). */
static json_t *
startup_reply (const char *what, const struct hp_header *reply,
               void *payload, uint32_t len)
{
  const char *why = NULL;
  json_t *j = NULL;

  if (state != STARTING)
    return NULL;
  if (!reply)
    start_failed ("the backend stopped during %s", what);
  else if (reply->status)
    start_failed ("%s", payload ? (const char *) payload
                  : hp_error_name (reply->status));
  else if ((j = channel_parse_json (payload, len, &why)) == NULL)
    start_failed ("%s: %s", what, why);
  return j;
}

static void send_next_config (void);

/* The reply to a start-up message that carries nothing needed: true if
 * it succeeded.  Frees the payload.
 */
static bool
startup_ok (const char *what, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  json_t *j = startup_reply (what, reply, payload, len);

  free (payload);
  json_decref (j);
  return j != NULL;
}

static void
on_get_ready (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  json_t *j = startup_reply ("get_ready", reply, payload, len);

  free (payload);
  if (!j)
    return;
  backend_lower_thread_model (json_string_value (json_object_get
                                                 (j, "thread_model")));
  json_decref (j);
  reopen_handles ();
}

static void
on_config_complete (void *opaque, const struct hp_header *reply,
                    void *payload, uint32_t len)
{
  if (startup_ok ("config_complete", reply, payload, len))
    channel_send_json (HP_GET_READY, NULL, NULL, CH_STARTUP, on_get_ready,
                       NULL);
}

/* A CONFIG reply may name a new magic config key: the bare parameters
 * after this one take it.
 */
static bool
apply_magic_key (json_t *j)
{
  json_t *m = json_object_get (j, "magic_config_key");
  size_t i;

  if (!m)
    return true;
  if (!json_is_string (m) || !*json_string_value (m)) {
    start_failed ("config: magic_config_key in the reply is not a "
                  "non-empty string");
    return false;
  }
  for (i = config_index; i < opt.nr_params; ++i) {
    char *key;

    if (!opt.params[i].bare)
      continue;
    key = strdup (json_string_value (m));
    if (!key) {
      start_failed ("config: out of memory");
      return false;
    }
    free (opt.params[i].key);
    opt.params[i].key = key;
  }
  return true;
}

static void attach_next (void);

/* After CONFIG: the next parameter. */
static void
on_config_step (void *opaque, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  json_t *j = startup_reply (opaque, reply, payload, len);
  bool ok = j && apply_magic_key (j);

  free (payload);
  json_decref (j);
  if (ok)
    send_next_config ();
}

/* After ATTACH_FD (opaque names the purpose). */
static void
on_attached (void *opaque, const struct hp_header *reply, void *payload,
             uint32_t len)
{
  const char *purpose = opaque;
  json_t *j;

  if (state == STARTING && reply && reply->status &&
      strcmp (purpose, HP_FEATURE_SHM) == 0) {
    /* The data path works without it: say so and go on. */
    nbdkit_debug ("%s: the backend refused the shared-memory arena: %s",
                  name (), payload ? (const char *) payload : "");
    free (payload);
    attach_next ();
    return;
  }
  j = startup_reply ("attach_fd", reply, payload, len);
  free (payload);
  if (!j)
    return;
  json_decref (j);
  if (strcmp (purpose, HP_FEATURE_SHM) == 0) {
    arena_set_active (true);
    nbdkit_debug ("%s: data through the shared-memory arena (%zu bytes)",
                  name (), arena_size ());
  }
  attach_next ();
}

static void
send_next_config (void)
{
  if (config_index < opt.nr_params) {
    const struct config_param *p = &opt.params[config_index++];

    nbdkit_debug ("config key=%s, value=%s", p->key, p->value);
    channel_send_json (HP_CONFIG, NULL,
                       json_pack ("{s:s, s:s}", "key", p->key,
                                  "value", p->value),
                       CH_STARTUP, on_config_step, (void *) "config");
  }
  else
    channel_send_json (HP_CONFIG_COMPLETE, NULL, NULL, CH_STARTUP,
                       on_config_complete, NULL);
}


/* Hand the backend the memfd that outlives it, made on first use. */
static void
attach_memfd (void)
{
  struct hp_header h = { .type = HP_ATTACH_FD };
  char *s;

  if (memfd == -1) {
    memfd = memfd_create ("nbdkit-memory", MFD_CLOEXEC);
    if (memfd == -1) {
      start_failed ("memfd_create: %m");
      return;
    }
  }
  s = strdup ("{\"purpose\":\"" HP_FEATURE_MEMFD "\"}");
  if (!s) {
    start_failed ("out of memory");
    return;
  }
  nbdkit_debug ("%s: attaching the memfd", name ());
  channel_send_fd (&h, NULL, s, strlen (s), memfd, CH_STARTUP, on_attached,
                   (void *) HP_FEATURE_MEMFD);
}

/* Hand the backend the shared-memory arena, made on first use, unless
 * -D nbdkit.shm=0 turned it off (-D nbdkit.shm_mib=N sets its size).
 * Returns false if there is none.
 */
static bool
attach_shm (void)
{
  struct hp_header h = { .type = HP_ATTACH_FD };
  char *s;

  if (!server_debug_flag ("shm", 1))
    return false;
  if (arena_fd () == -1 &&
      arena_create ((size_t) server_debug_flag ("shm_mib",
                                                ARENA_DEFAULT_MIB) << 20) == -1) {
    nbdkit_debug ("%s: no shared-memory arena: %m", name ());
    return false;
  }
  if (asprintf (&s, "{\"purpose\":\"%s\",\"size\":%zu}",
                HP_FEATURE_SHM, arena_size ()) == -1) {
    start_failed ("out of memory");
    return true;
  }
  channel_send_fd (&h, NULL, s, strlen (s), arena_fd (), CH_STARTUP,
                   on_attached, (void *) HP_FEATURE_SHM);
  return true;
}

/* The file descriptors the backend asked for in HELLO, one at a time,
 * then the configuration.
 */
static void
attach_next (void)
{
  switch (attach_step++) {
  case 0:
    if (binfo.wants_memfd) {
      attach_memfd ();
      return;
    }
    /* fallthrough */
  case 1:
    attach_step = 2;
    if (binfo.wants_shm && attach_shm ())
      return;
    /* fallthrough */
  default:
    attach_step = 3;
    send_next_config ();
  }
}

/* The HELLO reply lists name in its "features". */
static bool
has_feature (json_t *hello, const char *name)
{
  json_t *f;
  size_t i;

  json_array_foreach (json_object_get (hello, "features"), i, f)
    if (json_is_string (f) && strcmp (json_string_value (f), name) == 0)
      return true;
  return false;
}

static void
on_hello (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  json_t *j = startup_reply ("hello", reply, payload, len);
  json_int_t version;

  free (payload);
  if (!j)
    return;
  version = json_integer_value (json_object_get (j, "protocol"));
  liveness_offered (has_feature (j, HP_FEATURE_PING));
  if (version != HP_PROTOCOL_VERSION) {
    start_failed ("the backend speaks helper protocol version %lld, "
                  "this server speaks version %d",
                  (long long) version, HP_PROTOCOL_VERSION);
    json_decref (j);
    return;
  }
  if (!binfo.name) {
    backend_info_from_hello (j);
    if (after_hello)
      after_hello ();
  }
  json_decref (j);
  config_index = 0;
  attach_step = 0;
  attach_next ();
}

static void
start_incarnation (void)
{
  json_t *req;

  state = STARTING;
  liveness_offered (false);
  if (!backend_spawn ()) {
    start_failed ("could not start the backend process");
    return;
  }
  req = json_pack ("{s:i, s:s, s:s, s:s, s:b, s:i, s:O}",
                   "protocol", HP_PROTOCOL_VERSION,
                   "server", PROGRAM_NAME,
                   "server_version", PACKAGE_VERSION,
                   "name", opt.backend_name,
                   "verbose", opt.verbose,
                   "threads", (int) opt.threads,
                   "debug", opt.backend_debug ? opt.backend_debug
                                              : json_object ());
  channel_send_json (HP_HELLO, NULL, req, CH_STARTUP, on_hello, NULL);
}

/* ---- failure and restart ---- */

static void
give_up (void)
{
  state = FAILED;
  nbdkit_error ("%s: the backend failed %u times within %g seconds; "
                "giving up%s", name (), nr_restart_times, opt.restart_window,
                opt.on_failure_error ? ": every request now fails with EIO"
                                     : ", the server exits");
  channel_fail_held ();
  if (!opt.on_failure_error)
    server_quit (EXIT_FAILURE);
}

static void
on_restart_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  if (state == WAITING)
    start_incarnation ();
}

/* The backend is gone (its process exited): restart it if allowed. */
static void
schedule_restart (void)
{
  ev_tstamp now = ev_now (loop), delay;
  unsigned i, n = 0;

  /* Forget restarts that are outside the window. */
  for (i = 0; i < nr_restart_times; ++i)
    if (now - restart_times[i] < opt.restart_window)
      restart_times[n++] = restart_times[i];
  nr_restart_times = n;
  if (nr_restart_times >= opt.max_restarts) {
    give_up ();
    return;
  }
  restart_times[nr_restart_times++] = now;
  restarts++;

  delay = BACKOFF_INITIAL;
  for (i = 1; i < nr_restart_times && delay < BACKOFF_MAX; ++i)
    delay *= 2;
  if (delay > BACKOFF_MAX)
    delay = BACKOFF_MAX;
  state = WAITING;
  nbdkit_error ("%s: restarting the backend in %g seconds "
                "(restart %u, %u within %g seconds)",
                name (), delay, restarts, nr_restart_times,
                opt.restart_window);
  ev_timer_set (&restart_timer, delay, 0);
  ev_timer_start (loop, &restart_timer);
}

static void
start_failed (const char *fmt, ...)
{
  va_list args;
  char *msg = NULL;

  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) == -1)
    msg = NULL;
  va_end (args);

  /* Change state first: closing the channel fails the other start-up
   * messages in flight, and their callbacks must not come here again.
   */
  if (!started_once) {
    /* The first start: a configuration error, which supervisor_start
     * reports before the server listens.
     */
    state = FAILED;
    if (!start_error)
      start_error = msg;
    else
      free (msg);
    dismiss_backend ();
    return;
  }

  nbdkit_error ("%s: the restarted backend failed to start: %s",
                name (), msg ? msg : "?");
  free (msg);
  state = WAITING;
  if (backend_pid () > 0)
    dismiss_backend ();         /* its exit schedules the restart */
  else {
    channel_close (true);
    schedule_restart ();
  }
}

void
supervisor_backend_exited (void)
{
  ev_timer_stop (loop, &kill_timer);
  /* Nothing writes the slots it had any more. */
  arena_release_quarantine ();
  if (state == STOPPING) {
    /* Its answer to SHUTDOWN may still be in the socket. */
    channel_read_remaining ();
    channel_close (false);
    channel_fail_held ();
    return;
  }
  if (state == FAILED || server_quitting ()) {
    channel_close (false);
    return;
  }
  if (!started_once) {
    state = FAILED;
    if (!start_error)
      start_error = strdup ("the backend process exited during start-up");
    channel_close (false);
    return;
  }
  state = WAITING;
  channel_close (true);
  schedule_restart ();
}

void
supervisor_start (void (*hello_done) (void))
{
  after_hello = hello_done;
  restart_times = calloc (opt.max_restarts + 1, sizeof *restart_times);
  if (!restart_times)
    die ("out of memory");
  ev_timer_init (&restart_timer, on_restart_timer, 1, 0);
  ev_timer_init (&kill_timer, on_kill_timer, TERM_GRACE, 0);
  if (opt.backend_timeout > 0)
    channel_set_timeout (opt.backend_timeout, on_request_timeout);

  start_incarnation ();
  while (state == STARTING)
    ev_run (loop, EVRUN_ONCE);
  if (state != READY) {
    /* Let the backend's last words reach the log first. */
    while (backend_pid () > 0)
      ev_run (loop, EVRUN_ONCE);
    die ("%s: %s", name (), start_error ? start_error : "failed to start");
  }
  liveness_start ();
}

/* ---- stopping ---- */

static void
on_stop_timeout (struct ev_loop *l, ev_timer *w, int revents)
{
  if (backend_pid () > 0) {
    nbdkit_error ("%s: the backend did not stop within %g seconds, "
                  "killing it", name (), STOP_TIMEOUT);
    kill_backend_group ();
  }
}

/* 0 while SHUTDOWN waits for its reply, 1 answered, -1 failed. */
static int shutdown_result;

static void
on_shutdown_reply (void *opaque, const struct hp_header *reply,
                   void *payload, uint32_t len)
{
  if (reply && reply->status == 0) {
    nbdkit_debug ("%s: the backend answered SHUTDOWN", name ());
    shutdown_result = 1;
  }
  else {
    nbdkit_debug ("%s: SHUTDOWN failed: %s", name (),
                  !reply ? "no reply" : payload ? (const char *) payload
                  : hp_error_name (reply->status));
    shutdown_result = -1;
  }
  free (payload);
}

void
supervisor_stop (void)
{
  ev_timer timer;
  struct bhandle *bh;

  state = STOPPING;
  ev_timer_stop (loop, &restart_timer);
  liveness_stop ();
  ev_timer_init (&timer, on_stop_timeout, STOP_TIMEOUT, 0);
  ev_timer_start (loop, &timer);

  /* Let the requests in flight finish, close the handles (normally all
   * closed by now with their connections), then SHUTDOWN asks the
   * backend to exit; once it answered (or could not), closing the
   * channel tells it again.  All within STOP_TIMEOUT, else SIGKILL.
   */
  channel_fail_held ();
  while (backend_pid () > 0 && channel_is_open () && channel_in_flight () > 0)
    ev_run (loop, EVRUN_ONCE);
  /* A handle belongs to the chain of its connection, which may still
   * exist (a connection is freed when its last reference goes, perhaps
   * on a later turn of the loop): close it in the backend and leave it
   * to backend_close to free.
   */
  while ((bh = handles) != NULL) {
    bhandle_unlink (bh);
    if (bh->valid && channel_is_open ())
      send_close (bh->id);
    bh->valid = false;
  }
  while (backend_pid () > 0 && channel_is_open () && channel_in_flight () > 0)
    ev_run (loop, EVRUN_ONCE);
  if (backend_pid () > 0 && channel_is_open () && started_once) {
    struct hp_header h = { .type = HP_SHUTDOWN };
    char *s = strdup ("{}");

    nbdkit_debug ("%s: sending SHUTDOWN", name ());
    shutdown_result = 0;
    channel_send (&h, NULL, s, s ? 2 : 0, CH_STARTUP, on_shutdown_reply,
                  NULL);
    while (backend_pid () > 0 && channel_is_open () && shutdown_result == 0)
      ev_run (loop, EVRUN_ONCE);
  }
  channel_close (false);
  while (backend_pid () > 0)
    ev_run (loop, EVRUN_ONCE);
  ev_timer_stop (loop, &timer);
  ev_timer_stop (loop, &kill_timer);
}
