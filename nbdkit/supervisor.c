/* nbdkit front end: the supervisor of a backend process.
 *
 * Owns struct supervisor, the part of a backend_proc (backend-proc.h)
 * that is the backend's life cycle (in the manner of an OTP supervisor or
 * systemd's Restart=).  The handles opened in the backend are
 * backend-handles.c's.
 *
 *   STARTING  process spawned; HELLO, CONFIG..., CONFIG_COMPLETE,
 *             GET_READY, then every open handle re-opened with the same
 *             export name and flags, and the descriptor of its data if
 *             the backend handed one over (handles_reopen).  Ordinary
 *             requests are held.
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

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend-proc.h"

#define BACKOFF_INITIAL 0.1     /* seconds before the first restart */
#define BACKOFF_MAX     5.0
#define TERM_GRACE      2.0     /* SIGTERM to SIGKILL for a hung backend */
#define STOP_TIMEOUT    5.0     /* orderly stop before SIGKILL */

static void start_incarnation (struct backend_proc *bp);
static void start_failed (struct backend_proc *bp, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

unsigned
supervisor_restarts (const struct backend_proc *bp)
{
  return bp->sup.restarts;
}

bool
supervisor_is_ready (const struct backend_proc *bp)
{
  return bp->sup.state == READY;
}

bool
supervisor_has_failed (const struct backend_proc *bp)
{
  return bp->sup.state == FAILED;
}

/* Requests wait for the backend in every state but these two. */
bool
supervisor_may_hold (const struct backend_proc *bp)
{
  return bp->sup.state != FAILED && bp->sup.state != STOPPING;
}

bool
supervisor_will_restart (const struct backend_proc *bp)
{
  return bp->sup.state == WAITING;
}

/* ---- killing ---- */

static void
on_kill_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, sup.kill_timer);

  if (backend_pid (bp) > 0) {
    nbdkit_debug ("%s: backend process %d still running, sending SIGKILL",
                  bproc_name (bp), (int) backend_pid (bp));
    backend_kill (bp);
  }
}

/* Ask the backend to go (SIGTERM), then force it (SIGKILL). */
static void
terminate_backend (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  if (backend_pid (bp) <= 0)
    return;
  backend_terminate (bp);
  ev_timer_stop (loop, &sup->kill_timer);
  ev_timer_set (&sup->kill_timer, TERM_GRACE, 0);
  ev_timer_start (loop, &sup->kill_timer);
}

/* Ask the backend to go by closing its channel (it exits on EOF), with
 * SIGKILL after TERM_GRACE if it does not.
 */
static void
dismiss_backend (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  channel_close (bp, sup->state != FAILED && sup->state != STOPPING);
  if (backend_pid (bp) <= 0)
    return;
  ev_timer_stop (loop, &sup->kill_timer);
  ev_timer_set (&sup->kill_timer, TERM_GRACE, 0);
  ev_timer_start (loop, &sup->kill_timer);
}

void
supervisor_protocol_error (struct backend_proc *bp, const char *why)
{
  nbdkit_error ("%s: backend protocol error: %s; restarting the backend",
                bproc_name (bp), why);
  backend_kill (bp);
  channel_close (bp, true);
}

void
supervisor_channel_lost (struct backend_proc *bp)
{
  /* A restarted backend lost during its start: the start-up messages
   * that fail now (the re-opens of the handles) are left to the next
   * one, not taken for its answers.
   */
  if (bp->sup.state == STARTING && bp->sup.started_once)
    bp->sup.state = WAITING;
  channel_close (bp, true);
  /* A backend without its channel is of no use: make sure it goes. */
  if (bp->sup.state != STOPPING)
    terminate_backend (bp);
}

/* A hung backend: what can be sent again waits for the next one. */
void
supervisor_backend_hung (struct backend_proc *bp)
{
  channel_close (bp, true);
  terminate_backend (bp);
}

static void
on_request_timeout (struct backend_proc *bp, const struct hp_header *req,
                    double waited)
{
  nbdkit_error ("%s: the backend did not answer %s within %g seconds; "
                "restarting it", bproc_name (bp), hp_type_name (req->type),
                waited);
  supervisor_backend_hung (bp);
}

/* ---- starting an incarnation ---- */

static void
become_ready (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  sup->state = READY;
  if (sup->started_once)
    nbdkit_error ("%s: backend restarted (pid %d, restart %u); "
                  "%zu requests to send again",
                  bproc_name (bp), (int) backend_pid (bp), sup->restarts,
                  channel_in_flight (bp));
  sup->started_once = true;
  channel_set_ready (bp);
}

/* handles_reopen is done: every re-open was answered. */
void
supervisor_handles_reopened (struct backend_proc *bp)
{
  if (bp->sup.state == STARTING)
    become_ready (bp);
}

/* A reply to a start-up message: NULL if it failed (message set). */
static json_t *
startup_reply (struct backend_proc *bp, const char *what,
               const struct hp_header *reply, void *payload, uint32_t len)
{
  const char *why = NULL;
  json_t *j = NULL;

  if (bp->sup.state != STARTING)
    return NULL;
  if (!reply)
    start_failed (bp, "the backend stopped during %s", what);
  else if (reply->status)
    start_failed (bp, "%s", payload ? (const char *) payload
                  : hp_error_name (reply->status));
  else if ((j = bproc_parse_json (payload, len, &why)) == NULL)
    start_failed (bp, "%s: %s", what, why);
  return j;
}

static void send_next_config (struct backend_proc *bp);

/* The reply to a start-up message that carries nothing needed: true if
 * it succeeded.  Frees the payload.
 */
static bool
startup_ok (struct backend_proc *bp, const char *what,
            const struct hp_header *reply, void *payload, uint32_t len)
{
  json_t *j = startup_reply (bp, what, reply, payload, len);

  payload_free (payload);
  json_decref (j);
  return j != NULL;
}

static void
on_get_ready (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct backend_proc *bp = opaque;
  json_t *j = startup_reply (bp, "get_ready", reply, payload, len);

  payload_free (payload);
  if (!j)
    return;
  backend_lower_thread_model (bp, json_string_value (json_object_get
                                                     (j, "thread_model")));
  json_decref (j);
  handles_reopen (bp);
}

static void
on_config_complete (void *opaque, const struct hp_header *reply,
                    void *payload, uint32_t len)
{
  struct backend_proc *bp = opaque;

  if (startup_ok (bp, "config_complete", reply, payload, len))
    bproc_get_ready (bp, on_get_ready, bp);
}

/* A CONFIG reply may name a new magic config key: the bare parameters
 * after this one take it.
 */
static bool
apply_magic_key (struct backend_proc *bp, json_t *j)
{
  json_t *m = json_object_get (j, "magic_config_key");
  size_t i;

  if (!m)
    return true;
  if (!json_is_string (m) || !*json_string_value (m)) {
    start_failed (bp, "config: magic_config_key in the reply is not a "
                  "non-empty string");
    return false;
  }
  for (i = bp->sup.config_index; i < opt.nr_params; ++i) {
    char *key;

    if (!opt.params[i].bare)
      continue;
    key = strdup (json_string_value (m));
    if (!key) {
      start_failed (bp, "config: out of memory");
      return false;
    }
    free (opt.params[i].key);
    opt.params[i].key = key;
  }
  return true;
}

static void attach_next (struct backend_proc *bp);

/* After CONFIG: the next parameter. */
static void
on_config_step (void *opaque, const struct hp_header *reply, void *payload,
                uint32_t len)
{
  struct backend_proc *bp = opaque;
  json_t *j = startup_reply (bp, "config", reply, payload, len);
  bool ok = j && apply_magic_key (bp, j);

  payload_free (payload);
  json_decref (j);
  if (ok)
    send_next_config (bp);
}

static void
on_attached_memfd (void *opaque, const struct hp_header *reply,
                   void *payload, uint32_t len)
{
  struct backend_proc *bp = opaque;

  if (startup_ok (bp, "attach_fd", reply, payload, len))
    attach_next (bp);
}

static void
on_attached_shm (void *opaque, const struct hp_header *reply, void *payload,
                 uint32_t len)
{
  struct backend_proc *bp = opaque;

  if (bp->sup.state == STARTING && reply && reply->status) {
    /* The data path works without it: say so and go on. */
    nbdkit_debug ("%s: the backend refused the shared-memory arena: %s",
                  bproc_name (bp), payload ? (const char *) payload : "");
    payload_free (payload);
    attach_next (bp);
    return;
  }
  if (!startup_ok (bp, "attach_fd", reply, payload, len))
    return;
  arena_set_active (bp->arena, true);
  nbdkit_debug ("%s: data through the shared-memory arena (%zu bytes)",
                bproc_name (bp), arena_size (bp->arena));
  attach_next (bp);
}

/* The descriptor to send with the CONFIG of p, or -1: for a key the
 * backend listed in HELLO's "fd_keys", a value that is the number of a
 * descriptor above 2 that the server inherited (whatever the server
 * opens itself is close-on-exec).  Otherwise the CONFIG goes without
 * one and the backend reports the value.
 */
static int
config_fd (struct backend_proc *bp, const struct config_param *p)
{
  json_t *k;
  size_t i;
  char *end;
  long n;
  int flags;

  json_array_foreach (bp->info.fd_keys, i, k)
    if (json_is_string (k) && strcmp (json_string_value (k), p->key) == 0)
      break;
  if (i >= json_array_size (bp->info.fd_keys))
    return -1;
  errno = 0;
  n = strtol (p->value, &end, 10);
  if (errno || end == p->value || *end || n <= 2 || n > INT_MAX)
    return -1;
  flags = fcntl ((int) n, F_GETFD);
  return flags == -1 || (flags & FD_CLOEXEC) ? -1 : (int) n;
}

static void
send_next_config (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  if (sup->config_index < opt.nr_params) {
    const struct config_param *p = &opt.params[sup->config_index++];
    int fd = config_fd (bp, p);

    if (fd >= 0)
      nbdkit_debug ("config key=%s: passing file descriptor %d", p->key,
                    fd);
    else
      nbdkit_debug ("config key=%s, value=%s", p->key, p->value);
    bproc_config (bp, p->key, p->value, fd, on_config_step, bp);
  }
  else
    bproc_config_complete (bp, on_config_complete, bp);
}

/* Hand the backend the memfd that outlives it (shared by the server's
 * backend processes), made on first use.
 */
static void
attach_memfd (struct backend_proc *bp)
{
  static int memfd = -1;

  if (memfd == -1) {
    /* Sealing allowed: the memory backend seals its size, which lets
     * passthrough.c map it.
     */
    memfd = memfd_create ("nbdkit-memory", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd == -1) {
      start_failed (bp, "memfd_create: %m");
      return;
    }
  }
  nbdkit_debug ("%s: attaching the memfd", bproc_name (bp));
  bproc_attach_fd (bp, HP_FEATURE_MEMFD, 0, memfd, on_attached_memfd, bp);
}

/* Hand the backend its shared-memory arena, made on first use, unless
 * -D nbdkit.shm=0 turned it off (-D nbdkit.shm_mib=N sets its size).
 * Returns false if there is none.
 */
static bool
attach_shm (struct backend_proc *bp)
{
  if (!server_debug_flag ("shm", 1))
    return false;
  if (!bp->arena) {
    size_t mib = (size_t) server_debug_flag ("shm_mib", ARENA_DEFAULT_MIB);

    bp->arena = arena_create (mib << 20);
    if (!bp->arena) {
      nbdkit_debug ("%s: no shared-memory arena: %m", bproc_name (bp));
      return false;
    }
  }
  bproc_attach_fd (bp, HP_FEATURE_SHM, arena_size (bp->arena),
                   arena_fd (bp->arena), on_attached_shm, bp);
  return true;
}

/* The file descriptors the backend asked for in HELLO, one at a time,
 * then the configuration.
 */
static void
attach_next (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  switch (sup->attach_step++) {
  case 0:
    if (bp->info.wants_memfd) {
      attach_memfd (bp);
      return;
    }
    /* fallthrough */
  case 1:
    sup->attach_step = 2;
    if (bp->info.wants_shm && attach_shm (bp))
      return;
    /* fallthrough */
  default:
    sup->attach_step = 3;
    send_next_config (bp);
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
  struct backend_proc *bp = opaque;
  struct supervisor *sup = &bp->sup;
  json_t *j = startup_reply (bp, "hello", reply, payload, len);
  json_int_t version;

  payload_free (payload);
  if (!j)
    return;
  version = json_integer_value (json_object_get (j, "protocol"));
  liveness_offered (bp, has_feature (j, HP_FEATURE_PING));
  if (version != HP_PROTOCOL_VERSION) {
    start_failed (bp, "the backend speaks helper protocol version %lld, "
                  "this server speaks version %d",
                  (long long) version, HP_PROTOCOL_VERSION);
    json_decref (j);
    return;
  }
  if (!bp->info.name) {
    if (backend_info_from_hello (bp, j) == -1) {
      start_failed (bp, "the backend announced an unknown thread model "
                    "'%s'", json_string_value (json_object_get
                                               (j, "thread_model")));
      json_decref (j);
      return;
    }
    if (sup->after_hello)
      sup->after_hello (bp);
  }
  json_decref (j);
  sup->config_index = 0;
  sup->attach_step = 0;
  attach_next (bp);
}

static void
start_incarnation (struct backend_proc *bp)
{
  bp->sup.state = STARTING;
  liveness_offered (bp, false);
  if (!backend_spawn (bp)) {
    start_failed (bp, "could not start the backend process");
    return;
  }
  bproc_hello (bp, on_hello, bp);
}

/* ---- failure and restart ---- */

static void
give_up (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  sup->state = FAILED;
  nbdkit_error ("%s: the backend failed %u times within %g seconds; "
                "giving up%s", bproc_name (bp), sup->nr_restart_times,
                opt.restart_window,
                opt.on_failure_error ? ": every request now fails with EIO"
                                     : ", the server exits");
  channel_fail_held (bp);
  handles_drop_passthrough (bp);    /* passthrough requests fail too */
  if (!opt.on_failure_error)
    server_quit (EXIT_FAILURE);
}

static void
on_restart_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, sup.restart_timer);

  if (bp->sup.state == WAITING)
    start_incarnation (bp);
}

/* The backend is gone (its process exited): restart it if allowed. */
static void
schedule_restart (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;
  ev_tstamp now = ev_now (loop), delay;
  unsigned i, n = 0;

  /* Forget restarts that are outside the window. */
  for (i = 0; i < sup->nr_restart_times; ++i)
    if (now - sup->restart_times[i] < opt.restart_window)
      sup->restart_times[n++] = sup->restart_times[i];
  sup->nr_restart_times = n;
  if (sup->nr_restart_times >= opt.max_restarts) {
    give_up (bp);
    return;
  }
  sup->restart_times[sup->nr_restart_times++] = now;
  sup->restarts++;

  delay = BACKOFF_INITIAL;
  for (i = 1; i < sup->nr_restart_times && delay < BACKOFF_MAX; ++i)
    delay *= 2;
  if (delay > BACKOFF_MAX)
    delay = BACKOFF_MAX;
  sup->state = WAITING;
  nbdkit_error ("%s: restarting the backend in %g seconds "
                "(restart %u, %u within %g seconds)",
                bproc_name (bp), delay, sup->restarts, sup->nr_restart_times,
                opt.restart_window);
  ev_timer_set (&sup->restart_timer, delay, 0);
  ev_timer_start (loop, &sup->restart_timer);
}

static void
start_failed (struct backend_proc *bp, const char *fmt, ...)
{
  struct supervisor *sup = &bp->sup;

  va_list args;
  char *msg = NULL;

  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) == -1)
    msg = NULL;
  va_end (args);

  /* Change state first: closing the channel fails the other start-up
   * messages in flight, and their callbacks must not come here again.
   */
  if (!sup->started_once) {
    /* The first start: a configuration error, which supervisor_start
     * reports before the server listens.
     */
    sup->state = FAILED;
    if (!sup->start_error)
      sup->start_error = msg;
    else
      free (msg);
    dismiss_backend (bp);
    return;
  }

  nbdkit_error ("%s: the restarted backend failed to start: %s",
                bproc_name (bp), msg ? msg : "?");
  free (msg);
  sup->state = WAITING;
  if (backend_pid (bp) > 0)
    dismiss_backend (bp);       /* its exit schedules the restart */
  else {
    channel_close (bp, true);
    schedule_restart (bp);
  }
}

void
supervisor_backend_exited (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  ev_timer_stop (loop, &sup->kill_timer);
  /* Nothing writes the slots it had any more. */
  arena_release_quarantine (bp->arena);
  if (sup->state == STOPPING) {
    /* Its answer to SHUTDOWN may still be in the socket. */
    channel_read_remaining (bp);
    channel_close (bp, false);
    channel_fail_held (bp);
    return;
  }
  if (sup->state == FAILED || server_quitting ()) {
    channel_close (bp, false);
    return;
  }
  if (!sup->started_once) {
    sup->state = FAILED;
    if (!sup->start_error)
      sup->start_error = strdup ("the backend process exited during "
                                 "start-up");
    channel_close (bp, false);
    return;
  }
  sup->state = WAITING;
  channel_close (bp, true);
  schedule_restart (bp);
}

void
supervisor_start (struct backend_proc *bp,
                  void (*hello_done) (struct backend_proc *bp))
{
  struct supervisor *sup = &bp->sup;

  sup->after_hello = hello_done;
  sup->restart_times = calloc (opt.max_restarts + 1,
                               sizeof *sup->restart_times);
  if (!sup->restart_times)
    die ("out of memory");
  ev_timer_init (&sup->restart_timer, on_restart_timer, 1, 0);
  ev_timer_init (&sup->kill_timer, on_kill_timer, TERM_GRACE, 0);
  if (opt.backend_timeout > 0)
    channel_set_timeout (bp, opt.backend_timeout, on_request_timeout);

  start_incarnation (bp);
  while (sup->state == STARTING)
    ev_run (loop, EVRUN_ONCE);
  if (sup->state != READY) {
    /* Let the backend's last words reach the log first. */
    while (backend_pid (bp) > 0)
      ev_run (loop, EVRUN_ONCE);
    die ("%s: %s", bproc_name (bp),
         sup->start_error ? sup->start_error : "failed to start");
  }
  liveness_start (bp);
}

/* ---- stopping ---- */

static void
on_stop_timeout (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = w->data;

  if (backend_pid (bp) > 0) {
    nbdkit_error ("%s: the backend did not stop within %g seconds, "
                  "killing it", bproc_name (bp), STOP_TIMEOUT);
    backend_kill (bp);
  }
}

static void
on_shutdown_reply (void *opaque, const struct hp_header *reply,
                   void *payload, uint32_t len)
{
  struct backend_proc *bp = opaque;

  if (reply && reply->status == 0) {
    nbdkit_debug ("%s: the backend answered SHUTDOWN", bproc_name (bp));
    bp->sup.shutdown_result = 1;
  }
  else {
    nbdkit_debug ("%s: SHUTDOWN failed: %s", bproc_name (bp),
                  !reply ? "no reply" : payload ? (const char *) payload
                  : hp_error_name (reply->status));
    bp->sup.shutdown_result = -1;
  }
  payload_free (payload);
}

/* Requests are in flight to a backend that can still answer them. */
static bool
still_busy (struct backend_proc *bp)
{
  return backend_pid (bp) > 0 && channel_is_open (bp) &&
         channel_in_flight (bp) > 0;
}

void
supervisor_stop (struct backend_proc *bp)
{
  struct supervisor *sup = &bp->sup;

  ev_timer timer;

  sup->state = STOPPING;
  ev_timer_stop (loop, &sup->restart_timer);
  liveness_stop (bp);
  ev_timer_init (&timer, on_stop_timeout, STOP_TIMEOUT, 0);
  timer.data = bp;
  ev_timer_start (loop, &timer);

  /* Let the requests in flight finish, close the handles (normally all
   * closed by now with their connections), then SHUTDOWN asks the
   * backend to exit; once it answered (or could not), closing the
   * channel tells it again.  All within STOP_TIMEOUT, else SIGKILL.
   */
  channel_fail_held (bp);
  while (still_busy (bp))
    ev_run (loop, EVRUN_ONCE);
  handles_close_all (bp);
  while (still_busy (bp))
    ev_run (loop, EVRUN_ONCE);
  if (backend_pid (bp) > 0 && channel_is_open (bp) && sup->started_once) {
    nbdkit_debug ("%s: sending SHUTDOWN", bproc_name (bp));
    sup->shutdown_result = 0;
    bproc_shutdown (bp, on_shutdown_reply, bp);
    while (backend_pid (bp) > 0 && channel_is_open (bp) &&
           sup->shutdown_result == 0)
      ev_run (loop, EVRUN_ONCE);
  }
  channel_close (bp, false);
  while (backend_pid (bp) > 0)
    ev_run (loop, EVRUN_ONCE);
  ev_timer_stop (loop, &timer);
  ev_timer_stop (loop, &sup->kill_timer);
}
