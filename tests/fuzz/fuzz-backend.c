/* The fuzzing harness: an in-process stand-in for everything behind the
 * front end's parsers.
 *
 * The harness links the real nbdkit/handshake.c, transmit.c, conn.c,
 * buffer.c, log.c, loop.c and tls.c.  This file replaces the rest of
 * the front end (main.c, listen.c, daemon.c, backend-spawn.c,
 * supervisor.c and backend-channel.c) with what the linked files need
 * of what internal.h declares for them, and plays
 * a strict backend: every request the front end sends is checked as a
 * real backend would check it (hp_decode_header, hp_check_request) and
 * against what the front end promised to validate before sending
 * (in bounds, aligned, a write only on a writable export, ...).  A
 * request that fails these checks is a front-end bug: fuzz_bug()
 * aborts with the reason.
 *
 * Requests are answered asynchronously, from an ev_idle watcher, the
 * way replies arrive from the real channel, and not always in the
 * order sent (FLUSH, FUA and EXTENTS requests wait a turn or two).
 *
 * The exports, all views of one 1 MiB disk of 4 KiB blocks that is
 * reset before each input (the disk and the table of exports are in
 * fuzz-backend-disk.c):
 *   "" (default; canonical name "disk"), "disk"
 *            everything supported, a description
 *   "ro"     read-only, no extents, no cache, no flush, rotational,
 *            block size 512/4096/65536, can_fua given as a boolean
 *   "aligned" block size 4096/65536/262144, no trim, fast zero
 *   "empty"  size 0
 *   "huge"   size INT64_MAX (beyond the first MiB reads as a hole and
 *            writes vanish), block size 1/4096/65536, no zero, no flush
 *   "denied" opening fails with EPERM
 *   "broken" the OPEN reply has invalid block size constraints
 *   "nosize" the OPEN reply has no size
 *   "flaky"  like "disk", but the open succeeds, fails with ESHUTDOWN,
 *            or loses the backend, in turn
 *   "stall"  like "disk", but nothing is answered while the client is
 *            still sending (fuzz_backend_client_sending)
 *   other names: EINVAL, no such export
 * The loop is not loop_init's (whose signal watchers would fight
 * libFuzzer's), and the TLS credentials are a pre-shared key.
 * The disk: blocks 0-63 data, 64-127 hole, 128-159 data, 160-191
 * allocated zeros, 192-239 hole, 240-247 data that fails with EIO when
 * touched, 248-255 data whose requests are lost (the backend "dies":
 * the request completes with reply NULL).
 *
 * NBD_OPT_LIST answers in turn: a list, an error, a lost backend, a
 * reply that is not JSON, "exports" not an array, a list with invalid
 * entries, and {}.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "fuzz-backend.h"
#include "fuzz-backend-disk.h"

/* ---- main.c, listen.c, daemon.c, backend-spawn.c ---- */

struct options opt = {
  .backend_name = "fuzz",
  .exportname = "",
  .foreground = true,
  .mask_handshake = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES,
  .max_restarts = 5,
  .restart_window = 10,
};

/* The one backend_proc, as backend-proc.c would make it. */
static char binfo_name[] = "fuzz";
struct backend_proc {
  struct backend_info info;
};
static struct backend_proc the_backend = {
  .info = { .name = binfo_name, .thread_model = THREAD_MODEL_PARALLEL },
};

unsigned nr_connections;

void listen_start (void) { }
void listen_stop (void) { }
void listen_cleanup (void) { }
void listen_conn_ended (void) { }
void daemon_start (void) { }
void daemon_ready (void) { }
void service_stopping (void) { }
bool server_is_single (void) { return false; }

int
server_debug_flag (const char *flag, int def)
{
  return def;
}

void
serve_single (void)
{
  fuzz_bug ("serve_single called");
}

const char *
thread_model_name (enum thread_model m)
{
  return "parallel";
}

/* Where fuzz_bug writes: a copy of stderr made before libFuzzer's
 * -close_fd_mask=2 sends stderr (and with it the server's debug
 * messages) to /dev/null.
 */
static int bug_fd = STDERR_FILENO;

void
fuzz_bug (const char *fmt, ...)
{
  va_list args;
  char *msg;

  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) == -1)
    msg = NULL;
  va_end (args);
  dprintf (bug_fd, "\n*** fuzz: BUG: %s\n", msg ? msg : fmt);
  free (msg);
  abort ();
}

/* ---- options ---- */

/* $FUZZ_NBDKIT_OPTIONS: a comma-separated list of
 *   oldstyle readonly no-sr mask=N
 *   tls=off|on|require (default on, with a pre-shared key: STARTTLS is
 *            accepted, and the TLS handshake fails on the bytes that
 *            follow)
 *   quiet    no debug messages
 *   lenient  report a front-end bug that the backend's checks find as a
 *            warning instead of aborting, where the request can still
 *            be answered the way a real backend would
 */
static bool lenient;

/* The PSK file for --tls-psk: written, opened and unlinked at once, and
 * named through /proc so that nothing is left behind.
 */
static void
tls_setup (void)
{
  char path[] = "/tmp/nbdkit-fuzz-psk-XXXXXX";
  static char procpath[64];
  static const char psk[] =
    "fuzz:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
  enum tls_mode mode = opt.tls;
  int fd;

  fd = mkstemp (path);
  if (fd == -1 || write (fd, psk, sizeof psk - 1) != sizeof psk - 1)
    fuzz_bug ("cannot write the PSK file %s: %s", path, strerror (errno));
  unlink (path);
  snprintf (procpath, sizeof procpath, "/proc/self/fd/%d", fd);
  opt.tls_psk = procpath;
  /* Credentials whatever the mode: an input may turn TLS on. */
  opt.tls = TLS_ON;
  tls_init ();
  opt.tls = mode;
}

static void
parse_options (void)
{
  const char *env = getenv ("FUZZ_NBDKIT_OPTIONS");
  char *copy, *word, *save = NULL;

  opt.verbose = true;
  opt.tls = TLS_ON;
  if (!env)
    return;
  copy = strdup (env);
  if (!copy)
    abort ();
  for (word = strtok_r (copy, ", ", &save); word;
       word = strtok_r (NULL, ", ", &save)) {
    if (strcmp (word, "oldstyle") == 0)
      opt.oldstyle = true;
    else if (strcmp (word, "readonly") == 0)
      opt.readonly = true;
    else if (strcmp (word, "no-sr") == 0)
      opt.no_sr = true;
    else if (strcmp (word, "quiet") == 0)
      opt.verbose = false;
    else if (strcmp (word, "lenient") == 0)
      lenient = true;
    else if (strcmp (word, "tls=off") == 0)
      opt.tls = TLS_OFF;
    else if (strcmp (word, "tls=on") == 0)
      opt.tls = TLS_ON;
    else if (strcmp (word, "tls=require") == 0)
      opt.tls = TLS_REQUIRE;
    else if (strncmp (word, "mask=", 5) == 0)
      opt.mask_handshake = (unsigned) strtoul (word + 5, NULL, 0);
    else {
      fprintf (stderr, "FUZZ_NBDKIT_OPTIONS: unknown word '%s'\n", word);
      exit (2);
    }
  }
  free (copy);
  if (opt.oldstyle)
    opt.tls = TLS_OFF;          /* as main.c insists */
}

/* ---- requests in flight ---- */

struct fq {
  struct fq *next;
  struct hp_header h;           /* as sent: id and handle filled in */
  void *payload;                /* the request's, owned until completion */
  unsigned delay;               /* turns to wait before the answer */
  backend_cb cb;                /* a channel request ... */
  void *opaque;
  struct bhandle *open_bh;      /* ... or an open (backend_open) */
  backend_open_cb open_cb;
};

static struct fq *q_head, **q_tail = &q_head;
static size_t q_len;
static ev_idle idle_w;
static uint64_t next_id = 1;
static uint32_t next_handle = 1;
static struct bhandle *handles;
static unsigned nr_lists, nr_flaky;
static bool client_sending, no_default;

static void
enqueue (struct fq *q)
{
  q->next = NULL;
  *q_tail = q;
  q_tail = &q->next;
  q_len++;
  if (!ev_is_active (&idle_w))
    ev_idle_start (loop, &idle_w);
}

static struct fq *
dequeue (void)
{
  struct fq *q = q_head;

  if (q) {
    q_head = q->next;
    if (!q_head)
      q_tail = &q_head;
    q_len--;
  }
  return q;
}

static struct bhandle *
find_handle (uint32_t id)
{
  struct bhandle *bh;

  for (bh = handles; bh; bh = bh->next)
    if (bh->id == id)
      return bh;
  return NULL;
}

static bool
handle_is_open (const struct bhandle *bh)
{
  const struct bhandle *h;

  for (h = handles; h; h = h->next)
    if (h == bh)
      return true;
  return false;
}

/* A malloc'd NUL-terminated copy, as the channel hands payloads on. */
static void *
payload_dup (const void *p, size_t len)
{
  char *s = malloc (len + 1);

  if (!s)
    abort ();
  memcpy (s, p, len);
  s[len] = '\0';
  return s;
}

/* Complete a channel request: reply NULL when lost, else a reply header
 * with status, flags and payload (malloc'd, len + 1 bytes, or NULL).
 */
static void
complete (struct fq *q, bool lost, uint32_t status, uint16_t flags,
          void *payload, uint32_t len)
{
  struct hp_header reply = {
    .type = q->h.type | HP_REPLY, .flags = flags, .id = q->h.id,
    .handle = q->h.handle, .status = status, .offset = q->h.offset,
    .count = q->h.count, .payload_len = payload ? len : 0,
  };
  backend_cb cb = q->cb;
  void *opaque = q->opaque;
  const char *why;

  if (!lost && hp_check_reply (&q->h, &reply, &why) == -1)
    fuzz_bug ("the stand-in backend made an invalid %s reply: %s",
              hp_type_name (q->h.type), why);
  free (q->payload);
  free (q);
  if (lost) {
    free (payload);
    cb (opaque, NULL, NULL, 0);
  }
  else
    cb (opaque, &reply, payload, payload ? len : 0);
}

static void
complete_error (struct fq *q, uint32_t status, const char *msg)
{
  complete (q, false, status, 0, payload_dup (msg, strlen (msg)),
            strlen (msg));
}

static void
complete_json (struct fq *q, json_t *j)
{
  char *s = json_dumps (j, JSON_COMPACT);

  json_decref (j);
  if (!s)
    abort ();
  complete (q, false, 0, 0, s, strlen (s));
}

/* ---- what the front end promised ---- */

static void
check_request (const struct fq *q, const struct bhandle *bh)
{
  const struct hp_header *h = &q->h;
  unsigned char buf[HP_HEADER_SIZE];
  struct hp_header d;
  const char *why;
  const char *name = hp_type_name (h->type);
  const struct fx_export *e;
  bool ranged, writes, payload, can_write;

  /* What the real backend checks of every frame. */
  hp_encode_header (h, buf);
  if (hp_decode_header (buf, &d, &why) == -1)
    fuzz_bug ("the front end sent a %s frame the backend rejects: %s",
              name, why);
  if (hp_check_request (&d, &why) == -1)
    fuzz_bug ("the front end sent a %s request the backend rejects: %s "
              "(offset %" PRIu64 " count %" PRIu32 " payload %" PRIu32 ")",
              name, why, h->offset, h->count, h->payload_len);
  if (hp_type_is_control (h->type)) {
    if (bh)
      fuzz_bug ("the front end sent %s with a handle", name);
    return;
  }

  /* A data request: on an open handle, validated as transmit.c says. */
  if (!bh)
    fuzz_bug ("the front end sent %s without a handle", name);
  e = find_export (bh->export);
  if (!e)
    fuzz_bug ("%s on a handle of an unknown export '%s'", name, bh->export);
  can_write = e->can_write && !bh->readonly;
  ranged = h->type != HP_FLUSH;
  writes = h->type == HP_PWRITE || h->type == HP_TRIM || h->type == HP_ZERO;
  payload = h->type == HP_PREAD || h->type == HP_PWRITE ||
            h->type == HP_CACHE;
  if (ranged) {
    if (h->count == 0)
      fuzz_bug ("%s with a count of 0 reached the backend", name);
    if (h->offset > e->size || h->count > e->size - h->offset)
      fuzz_bug ("%s offset %" PRIu64 " count %" PRIu32 " is beyond the "
                "end of export '%s' (size %" PRIu64 ")",
                name, h->offset, h->count, e->name, e->size);
    if (e->bmin > 1 && ((h->offset | h->count) & (e->bmin - 1)))
      fuzz_bug ("%s offset %" PRIu64 " count %" PRIu32 " is not aligned "
                "to the minimum block size %" PRIu32,
                name, h->offset, h->count, e->bmin);
    if (payload && e->bmax && h->count > e->bmax)
      fuzz_bug ("%s count %" PRIu32 " is over the maximum block size %"
                PRIu32, name, h->count, e->bmax);
  }
  if (writes && !can_write)
    fuzz_bug ("%s on a read-only export reached the backend", name);
  if (h->type == HP_TRIM && !e->can_trim)
    fuzz_bug ("TRIM on an export that cannot trim reached the backend");
  if (h->type == HP_ZERO && !e->can_zero)
    fuzz_bug ("ZERO on an export that cannot zero reached the backend");
  if ((h->flags & HP_FLAG_FAST_ZERO) && !e->can_fast_zero)
    fuzz_bug ("a fast ZERO on an export without fast zero");
  if ((h->flags & HP_FLAG_FUA) && !level (e->can_fua))
    fuzz_bug ("%s with FUA on an export without FUA", name);
  if (h->type == HP_FLUSH && !e->can_flush)
    fuzz_bug ("FLUSH on an export that cannot flush reached the backend");
  if (h->type == HP_CACHE && !level (e->can_cache))
    fuzz_bug ("CACHE on an export that cannot cache reached the backend");
  if (h->type == HP_EXTENTS && !e->can_extents)
    fuzz_bug ("EXTENTS on an export without extents reached the backend");
}

/* ---- backend-proc.c ---- */

struct backend_proc *bproc_first (void) { return &the_backend; }
struct backend_proc *bproc_for_connection (void) { return &the_backend; }
void bproc_stop_all (void) { }

struct backend_proc *
bproc_next (const struct backend_proc *bp)
{
  return NULL;
}

const struct backend_info *
bproc_info (const struct backend_proc *bp)
{
  return &bp->info;
}

const char *
bproc_name (const struct backend_proc *bp)
{
  return bp->info.name;
}

int
server_thread_model (void)
{
  return THREAD_MODEL_PARALLEL;
}

void *
bproc_payload_alloc (struct backend_proc *bp, size_t len)
{
  return malloc (len ? len : 1);
}

/* A request to the stand-in backend, as channel_send would make it. */
static void
send_request (const struct hp_header *h, struct bhandle *bh, void *payload,
              uint32_t len, backend_cb cb, void *opaque)
{
  struct fq *q = calloc (1, sizeof *q);

  if (!q) {
    payload_free (payload);
    cb (opaque, NULL, NULL, 0);
    return;
  }
  q->h = *h;
  q->h.status = 0;
  q->h.payload_len = payload ? len : 0;
  q->h.id = next_id++;
  q->payload = payload;
  q->cb = cb;
  q->opaque = opaque;
  if (bh) {
    if (!handle_is_open (bh))
      fuzz_bug ("%s on a handle that is not open",
                hp_type_name (h->type));
    q->h.handle = bh->id;
  }
  check_request (q, bh);
  /* Some answers take longer, so that replies come out of order. */
  if (h->type == HP_FLUSH)
    q->delay = 2;
  else if ((h->flags & HP_FLAG_FUA) || h->type == HP_EXTENTS)
    q->delay = 1;
  enqueue (q);
}

static void
send_json (uint16_t type, json_t *req, backend_cb cb, void *opaque)
{
  struct hp_header h = { .type = type };
  char *s = req ? json_dumps (req, JSON_COMPACT) : strdup ("{}");

  json_decref (req);
  if (!s) {
    cb (opaque, NULL, NULL, 0);
    return;
  }
  send_request (&h, NULL, s, strlen (s), cb, opaque);
}

void
bproc_data (struct backend_proc *bp, struct bhandle *bh, uint16_t type,
            uint16_t flags, uint64_t offset, uint32_t count, void *payload,
            backend_cb cb, void *opaque)
{
  struct hp_header h = {
    .type = type, .flags = flags, .offset = offset, .count = count,
  };

  send_request (&h, bh, payload,
                payload && type == HP_PWRITE ? count : 0, cb, opaque);
}

void
bproc_list_exports (struct backend_proc *bp, uint64_t connection,
                    bool readonly, bool tls, backend_cb cb, void *opaque)
{
  send_json (HP_LIST_EXPORTS,
             json_pack ("{s:b, s:b}", "readonly", readonly, "tls", tls),
             cb, opaque);
}

void
bproc_default_export (struct backend_proc *bp, uint64_t connection,
                      bool readonly, bool tls, backend_cb cb, void *opaque)
{
  send_json (HP_DEFAULT_EXPORT,
             json_pack ("{s:b, s:b}", "readonly", readonly, "tls", tls),
             cb, opaque);
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

/* ---- serving ---- */

static json_t *
request_json (const struct fq *q)
{
  json_error_t err;
  json_t *j = q->h.payload_len
    ? json_loadb (q->payload, q->h.payload_len, 0, &err) : json_object ();

  if (!j || !json_is_object (j))
    fuzz_bug ("the front end sent %s with a payload that is not a JSON "
              "object", hp_type_name (q->h.type));
  return j;
}

static json_t *
export_json (const char *name, const char *desc)
{
  return desc
    ? json_pack ("{s:s, s:s}", "name", name, "description", desc)
    : json_pack ("{s:s}", "name", name);
}

static void
serve_list (struct fq *q)
{
  json_t *j = request_json (q), *list;
  char *longname;
  size_t i;

  if (!json_is_boolean (json_object_get (j, "readonly")))
    fuzz_bug ("LIST_EXPORTS without \"readonly\"");
  json_decref (j);

  switch (nr_lists++ % 7) {
  case 0:
    list = json_array ();
    for (i = 1; i < nr_exports; ++i)
      json_array_append_new (list, export_json (exports[i].name,
                                                exports[i].description));
    complete_json (q, json_pack ("{s:o}", "exports", list));
    break;
  case 1:
    complete_error (q, HP_EPERM, "listing the exports is not allowed");
    break;
  case 2:
    complete (q, true, 0, 0, NULL, 0);
    break;
  case 3:
    complete (q, false, 0, 0, payload_dup ("[1,2]", 5), 5);
    break;
  case 4:
    complete_json (q, json_pack ("{s:s}", "exports", "none"));
    break;
  case 5:
    longname = malloc (NBD_MAX_STRING + 2);
    if (!longname)
      abort ();
    memset (longname, 'x', NBD_MAX_STRING + 1);
    longname[NBD_MAX_STRING + 1] = '\0';
    list = json_pack ("[{s:i}, {s:s}, {s:s}, {s:s, s:s}, {s:s}, {s:s, s:s}]",
                      "name", 5,
                      "description", "no name",
                      "name", longname,
                      "name", "long description", "description", longname,
                      "name", "",
                      "name", longname + 1, "description", longname + 1);
    free (longname);
    complete_json (q, json_pack ("{s:o}", "exports", list));
    break;
  default:
    complete_json (q, json_object ());
  }
}

static void
serve_data (struct fq *q)
{
  const struct hp_header *h = &q->h;
  struct bhandle *bh = find_handle (h->handle);
  const struct fx_export *e;
  uint64_t off = h->offset, cnt = h->count;
  unsigned char *buf;
  uint32_t len;
  char msg[128];

  if (!bh)
    fuzz_bug ("the handle of a %s request in flight was closed before "
              "the reply", hp_type_name (h->type));
  e = find_export (bh->export);

  if (h->type != HP_FLUSH) {
    if (overlaps (off, cnt, LOST_START, LOST_END)) {
      complete (q, true, 0, 0, NULL, 0);
      return;
    }
    if (overlaps (off, cnt, EIO_START, EIO_END)) {
      snprintf (msg, sizeof msg, "injected I/O error at offset %" PRIu64,
                off);
      complete_error (q, HP_EIO, msg);
      return;
    }
  }

  switch (h->type) {
  case HP_PREAD:
    if ((h->flags & HP_FLAG_ZEROS) && reads_as_zeros (off, cnt)) {
      complete (q, false, 0, HP_FLAG_ZEROS, NULL, 0);
      return;
    }
    buf = calloc (1, cnt + 1);
    if (!buf)
      abort ();
    disk_read (buf, off, cnt);
    complete (q, false, 0, 0, buf, (uint32_t) cnt);
    return;
  case HP_PWRITE:
    disk_write (q->payload, off, cnt);
    break;
  case HP_TRIM:
    disk_zero (off, cnt, true);
    break;
  case HP_ZERO:
    if ((h->flags & HP_FLAG_FAST_ZERO) && any_data (off, cnt)) {
      complete_error (q, HP_ENOTSUP, "zeroing this range would be slow");
      return;
    }
    disk_zero (off, cnt, h->flags & HP_FLAG_MAY_TRIM);
    break;
  case HP_FLUSH:
  case HP_CACHE:
    break;
  case HP_EXTENTS:
    buf = disk_extents (off, cnt, e->size, h->flags & HP_FLAG_REQ_ONE, &len);
    complete (q, false, 0, 0, buf, len);
    return;
  default:
    fuzz_bug ("unexpected request type %u", h->type);
  }
  complete (q, false, 0, 0, NULL, 0);
}

static void
serve (struct fq *q)
{
  switch (q->h.type) {
  case HP_LIST_EXPORTS:
    serve_list (q);
    break;
  case HP_DEFAULT_EXPORT:
    complete_json (q, json_pack ("{s:s}", "name", "disk"));
    break;
  case HP_HELLO: case HP_CONFIG: case HP_CONFIG_COMPLETE:
  case HP_GET_READY: case HP_DUMP: case HP_SHUTDOWN: case HP_ATTACH_FD:
  case HP_CLOSE: case HP_OPEN:
    complete_json (q, json_object ());
    break;
  default:
    serve_data (q);
  }
}

/* ---- backend-handles.c: opening and closing handles ---- */

/* The harness's handles have no passthrough descriptor. */
bool
passthrough_request (struct passthrough *pt, struct freq *r)
{
  return false;
}

bool
passthrough_write_in_place (struct passthrough *pt, uint16_t flags,
                            uint64_t offset, uint32_t count,
                            struct in_place *ip)
{
  return false;
}

static void
bhandle_free (struct bhandle *bh)
{
  free (bh->export);
  free (bh->client);
  free (bh);
}

static void
open_fail (struct fq *q, uint32_t status, const char *msg)
{
  backend_open_cb cb = q->open_cb;
  void *opaque = q->opaque;

  bhandle_free (q->open_bh);
  free (q->payload);
  free (q);
  cb (opaque, NULL, NULL, status, msg);
}

static void
serve_open (struct fq *q)
{
  struct bhandle *bh = q->open_bh;
  json_t *req = request_json (q), *j;
  const char *name = json_string_value (json_object_get (req, "export"));
  bool readonly = json_is_true (json_object_get (req, "readonly"));
  const struct fx_export *e;
  backend_open_cb cb;
  void *opaque;

  if (!name) {
    /* supervisor.c builds the request with json_pack, which fails on a
     * string that is not valid UTF-8; the backend is then sent {} and
     * opens the default export, read-write.
     */
    if (!lenient)
      fuzz_bug ("the front end asked to open an export whose name JSON "
                "cannot carry (not valid UTF-8: an overlong form, a "
                "surrogate or a code point past U+10FFFF); the real "
                "backend would be sent {} and open the default export, "
                "read-write");
    fprintf (stderr, "fuzz: warning: OPEN of an export name JSON cannot "
             "carry (see handshake.c valid_name)\n");
    name = "";
  }
  e = find_export (name);
  if (!*name && no_default) {
    json_decref (req);
    open_fail (q, HP_EPERM, "there is no default export");
    return;
  }
  if (strlen (name) > NBD_MAX_STRING)
    fuzz_bug ("the front end opened an export name of %zu bytes",
              strlen (name));
  if (!e) {
    json_decref (req);
    open_fail (q, HP_EINVAL, "no such export");
    return;
  }
  switch (e->open) {
  case OPEN_DENIED:
    json_decref (req);
    open_fail (q, HP_EPERM, "access denied");
    return;
  case OPEN_FLAKY:
    switch (nr_flaky++ % 3) {
    case 1:
      json_decref (req);
      open_fail (q, HP_ESHUTDOWN, "the backend is shutting down");
      return;
    case 2:
      json_decref (req);
      open_fail (q, HP_EIO, "the backend stopped before it answered");
      return;
    }
    break;
  default:
    break;
  }
  json_decref (req);

  j = json_pack ("{s:I, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, "
                 "s:o, s:o, s:s}",
                 "size", (json_int_t) e->size,
                 "can_write", e->can_write && !readonly,
                 "can_flush", e->can_flush,
                 "can_trim", e->can_trim,
                 "can_zero", e->can_zero,
                 "can_fast_zero", e->can_fast_zero,
                 "can_extents", e->can_extents,
                 "can_multi_conn", e->can_multi_conn,
                 "is_rotational", e->rotational,
                 "can_fua", level_json (e->can_fua),
                 "can_cache", level_json (e->can_cache),
                 "name", e->canonical);
  if (!j)
    abort ();
  if (e->bmin)
    json_object_set_new (j, "block_size",
                         json_pack ("{s:I, s:I, s:I}",
                                    "minimum", (json_int_t) e->bmin,
                                    "preferred", (json_int_t) e->bpref,
                                    "maximum", (json_int_t) e->bmax));
  if (e->description)
    json_object_set_new (j, "description", json_string (e->description));
  if (e->open == OPEN_BAD_BLOCK_SIZE)
    json_object_set_new (j, "block_size",
                         json_pack ("{s:i, s:i, s:i}", "minimum", 3,
                                    "preferred", 5, "maximum", 7));
  if (e->open == OPEN_NO_SIZE)
    json_object_del (j, "size");

  /* As supervisor.c's on_open. */
  bh->id = next_handle++;
  if (next_handle == 0)
    next_handle = 1;
  bh->valid = true;
  bh->readonly = readonly;
  bh->size = e->size;
  bh->next = handles;
  if (handles)
    handles->prev = bh;
  handles = bh;
  cb = q->open_cb;
  opaque = q->opaque;
  free (q->payload);
  free (q);
  cb (opaque, bh, j, 0, NULL);
  json_decref (j);
}

void
backend_open (struct backend_proc *bp, uint64_t connection,
              const char *export, bool readonly, bool tls, bool description,
              const char *client, backend_open_cb cb, void *opaque)
{
  struct fq *q = calloc (1, sizeof *q);
  struct bhandle *bh = calloc (1, sizeof *bh);
  json_t *req;
  char *s;

  if (!q || !bh || !(bh->export = strdup (export)) ||
      !(bh->client = strdup (client)))
    abort ();
  bh->bp = bp;
  bh->readonly = readonly;
  bh->tls = tls;
  /* The request as backend-proc.c builds it. */
  req = json_pack ("{s:s, s:b, s:b, s:s}", "export", export,
                   "readonly", readonly, "tls", tls, "client", client);
  s = req ? json_dumps (req, JSON_COMPACT) : strdup ("{}");
  json_decref (req);
  if (!s)
    abort ();
  q->h.type = HP_OPEN;
  q->h.id = next_id++;
  q->h.payload_len = strlen (s);
  q->payload = s;
  q->open_bh = bh;
  q->open_cb = cb;
  q->opaque = opaque;
  enqueue (q);
}

void
backend_close (struct bhandle *bh)
{
  if (!bh)
    return;
  if (!handle_is_open (bh))
    fuzz_bug ("backend_close of a handle that is not open");
  if (bh->prev)
    bh->prev->next = bh->next;
  else
    handles = bh->next;
  if (bh->next)
    bh->next->prev = bh->prev;
  bhandle_free (bh);
}

void
backend_close_then (struct bhandle *bh, void (*done) (void *opaque),
                    void *opaque)
{
  backend_close (bh);
  if (done)
    done (opaque);
}


/* ---- the queue, run from the loop ---- */

static bool
stalled (const struct fq *q)
{
  const struct bhandle *bh;

  if (q->open_cb || hp_type_is_control (q->h.type))
    return false;
  bh = find_handle (q->h.handle);
  return bh && strcmp (bh->export, "stall") == 0;
}

#define ANSWERS_PER_TURN 16

static void
on_idle (struct ev_loop *l, ev_idle *w, int revents)
{
  unsigned n;

  for (n = 0; n < ANSWERS_PER_TURN && q_head; ++n) {
    struct fq *q = dequeue ();

    if (q->delay) {
      q->delay--;
      enqueue (q);
    }
    else if (client_sending && stalled (q))
      enqueue (q);
    else if (q->open_cb)
      serve_open (q);
    else
      serve (q);
  }
  if (!q_head)
    ev_idle_stop (loop, &idle_w);
}

/* ---- the harness's interface ---- */

void
fuzz_backend_init (void)
{
  int fd = fcntl (STDERR_FILENO, F_DUPFD_CLOEXEC, 3);

  if (fd >= 0)
    bug_fd = fd;
  parse_options ();
  tls_setup ();
  disk_init ();
  loop = ev_loop_new (EVFLAG_AUTO | EVFLAG_NOENV);
  if (!loop)
    fuzz_bug ("could not create the event loop");
  ev_idle_init (&idle_w, on_idle);
}

void
fuzz_backend_reset (void)
{
  disk_reset ();
  nr_lists = nr_flaky = 0;
}

void
fuzz_backend_client_sending (bool sending)
{
  client_sending = sending;
}

void
fuzz_backend_set_no_default (bool b)
{
  no_default = b;
}

void
fuzz_backend_check_idle (void)
{
  if (q_head)
    fuzz_bug ("%zu requests still in flight after the loop ended", q_len);
  if (handles)
    fuzz_bug ("export '%s' is still open after the connection ended "
              "(a handle leaked)", handles->export);
}
