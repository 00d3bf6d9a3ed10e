/* libnbdkit-backend: what each message does.
 *
 * One function per message type: it calls the backend's callbacks
 * inside a callback context (so nbdkit_error reaches the reply), fills
 * in what the backend left out (capability defaults; zero by writing
 * zeroes, FUA by flushing, cache by reading), checks what the backend
 * returned, and sends exactly one reply.  Also owns the shared-memory
 * arena (HP_FEATURE_SHM): every backend offers it, and a PREAD or
 * PWRITE that names a slot of it hands the callback a pointer into the
 * arena instead of a buffer of its own, so backend authors never see
 * the difference.
 */

#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend-internal.h"
#include "byte-order.h"

#define ZERO_CHUNK (1024 * 1024)        /* emulated zero: write this much */

/* The shared-memory arena (HP_FEATURE_SHM), NULL until an ATTACH_FD
 * "shm" mapped it.  Replaced only while nothing is in flight
 * (ATTACH_FD is a start-up message).
 */
static unsigned char *arena;
static uint64_t arena_size;

static const char *
thread_model_name (int m)
{
  switch (m) {
  case NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS: return "serialize_connections";
  case NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS: return "serialize_all_requests";
  case NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS: return "serialize_requests";
  default: return "parallel";
  }
}

/* ---- start-up messages (on the main thread, in order) ---- */

void
nbdkit__op_hello (const struct hp_header *req, json_t *j)
{
  json_t *features, *callbacks, *fd_keys = NULL, *reply;
  const char *const *k;

  if (json_integer_value (json_object_get (j, "protocol")) !=
      HP_PROTOCOL_VERSION) {
    char msg[128];

    snprintf (msg, sizeof msg, "this backend speaks helper protocol "
              "version %d only", HP_PROTOCOL_VERSION);
    nbdkit__send_reply (req, HP_EINVAL, 0, msg, strlen (msg));
    return;
  }
  nbdkit__verbose = json_is_true (json_object_get (j, "verbose"));
  json_decref (nbdkit__debug_flags);
  nbdkit__debug_flags = json_incref (json_object_get (j, "debug"));
  features = json_array ();
  if (nbdkit__be->wants_memfd)
    json_array_append_new (features, json_string (HP_FEATURE_MEMFD));
  /* The shared-memory data path is invisible to the backend's code,
   * and so is PING, which the reader answers.
   */
  json_array_append_new (features, json_string (HP_FEATURE_SHM));
  json_array_append_new (features, json_string (HP_FEATURE_PING));
  /* Parameters naming a descriptor of the server, sent with CONFIG. */
  for (k = nbdkit__be->fd_config_keys; k && *k; ++k) {
    if (!fd_keys)
      fd_keys = json_array ();
    json_array_append_new (fd_keys, json_string (*k));
  }
  callbacks = json_array ();
#define HAS(f) \
  if (nbdkit__be->f) json_array_append_new (callbacks, json_string (#f))
  HAS (load); HAS (unload); HAS (config); HAS (config_complete);
  HAS (thread_model_cb); HAS (get_ready); HAS (dump_plugin);
  HAS (preconnect); HAS (list_exports); HAS (default_export);
  HAS (open); HAS (close);
  HAS (get_size); HAS (export_description); HAS (block_size);
  HAS (can_write); HAS (can_flush); HAS (is_rotational); HAS (can_trim);
  HAS (can_zero); HAS (can_fast_zero); HAS (can_extents); HAS (can_fua);
  HAS (can_multi_conn); HAS (can_cache); HAS (pread); HAS (pwrite);
  HAS (flush); HAS (trim); HAS (zero); HAS (cache); HAS (extents);
#undef HAS
  nbdkit__workers_start ((unsigned)
                         json_integer_value (json_object_get (j, "threads")));
  reply = json_pack ("{s:i, s:s, s:s?, s:s?, s:s?, s:s, s:s?, s:s?, s:o, s:o}",
                     "protocol", HP_PROTOCOL_VERSION,
                     "name", nbdkit__be->name,
                     "version", nbdkit__be->version,
                     "longname", nbdkit__be->longname,
                     "description", nbdkit__be->description,
                     "thread_model", thread_model_name (nbdkit__thread_model),
                     "magic_config_key", nbdkit__be->magic_config_key,
                     "config_help", nbdkit__be->config_help,
                     "features", features,
                     "callbacks", callbacks);
  if (reply && fd_keys)
    json_object_set (reply, "fd_keys", fd_keys);
  json_decref (fd_keys);
  nbdkit__send_json_reply (req, 0, reply);
}

/* Run a start-up callback returning int and reply {} or the error. */
static void
reply_to_int (const struct hp_header *req, int r, json_t *ok)
{
  if (r == -1) {
    json_decref (ok);
    nbdkit__send_error_reply (req, HP_EINVAL);
  }
  else
    nbdkit__send_json_reply (req, 0, ok);
  nbdkit__context_end ();
}

/* Set by nbdkit_set_magic_config_key during a config callback. */
static char *new_magic_key;

void
nbdkit_set_magic_config_key (const char *key)
{
  free (new_magic_key);
  new_magic_key = key ? strdup (key) : NULL;
}

/* The descriptor that came with the CONFIG being handled, until the
 * backend takes it with nbdkit_config_fd (start-up messages run on the
 * reader, one at a time).
 */
static int config_fd = -1;

int
nbdkit_config_fd (void)
{
  int fd = config_fd;

  config_fd = -1;
  return fd;
}

static bool
is_fd_key (const char *key)
{
  const char *const *k;

  for (k = nbdkit__be->fd_config_keys; k && *k; ++k)
    if (strcmp (*k, key) == 0)
      return true;
  return false;
}

/* A descriptor parameter that came without its descriptor: the server
 * sends one only for the number of a descriptor above 2 it inherited.
 */
static void
no_config_fd (const char *key, const char *value)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (value, &end, 10);
  if (errno || end == value || *end || n < 0 || n > INT_MAX)
    nbdkit_error ("%s=%s: not a file descriptor number (give the number "
                  "of a descriptor the server inherited, as in "
                  "'%s=3 3<FILE')", key, value, key);
  else if (n <= 2)
    nbdkit_error ("%s=%s: file descriptors 0, 1 and 2 are the server's "
                  "standard input, output and error: give one greater "
                  "than 2, as in '%s=3 3<FILE'", key, value, key);
  else
    nbdkit_error ("%s=%s: the server did not inherit a file descriptor "
                  "%ld (start it with one open, as in '%s=%ld %ld<FILE')",
                  key, value, n, key, n, n);
  nbdkit_set_error (EBADF);
}

void
nbdkit__op_config (const struct hp_header *req, json_t *j, int fd)
{
  const char *key = json_string_value (json_object_get (j, "key"));
  const char *value = json_string_value (json_object_get (j, "value"));
  json_t *ok = NULL;
  int r;

  nbdkit__context_begin (false, NULL, false);
  if (!key || !value) {
    nbdkit_error ("CONFIG without a key and a value");
    r = -1;
  }
  else if (!nbdkit__be->config) {
    nbdkit_error ("this backend takes no parameters (got '%s=%s')",
                  key, value);
    nbdkit_set_error (EINVAL);
    r = -1;
  }
  else if (is_fd_key (key) && fd == -1) {
    no_config_fd (key, value);
    r = -1;
  }
  else {
    if (is_fd_key (key)) {
      config_fd = fd;
      fd = -1;
    }
    nbdkit__context_get ()->config_key = key;
    nbdkit__context_get ()->config_value = value;
    r = nbdkit__be->config (key, value);
  }
  /* A descriptor nobody took (or that came with another key). */
  if (config_fd >= 0)
    close (nbdkit_config_fd ());
  if (fd >= 0)
    close (fd);
  if (r == 0 && new_magic_key && *new_magic_key)
    ok = json_pack ("{s:s}", "magic_config_key", new_magic_key);
  free (new_magic_key);
  new_magic_key = NULL;
  reply_to_int (req, r, ok);
}

void
nbdkit__op_config_complete (const struct hp_header *req)
{
  int r = 0;

  nbdkit__context_begin (false, NULL, false);
  if (nbdkit__be->config_complete)
    r = nbdkit__be->config_complete ();
  if (r == 0 && nbdkit__be->thread_model_cb) {
    int m = nbdkit__be->thread_model_cb ();

    if (m == -1)
      r = -1;
    else if (m >= NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS &&
             m < nbdkit__thread_model)
      nbdkit__thread_model = m;
  }
  reply_to_int (req, r, NULL);
}

void
nbdkit__op_get_ready (const struct hp_header *req)
{
  int r = 0;

  nbdkit__context_begin (false, NULL, false);
  if (nbdkit__be->get_ready)
    r = nbdkit__be->get_ready ();
  reply_to_int (req, r,
                json_pack ("{s:s}", "thread_model",
                           thread_model_name (nbdkit__thread_model)));
}

static void
attach_fail (const struct hp_header *req, uint32_t status, int fd,
             const char *fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

static void
attach_fail (const struct hp_header *req, uint32_t status, int fd,
             const char *fmt, ...)
{
  char msg[256];
  va_list args;

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  close (fd);
  nbdkit__send_reply (req, status, 0, msg, strlen (msg));
}

/* ATTACH_FD "shm": map the arena (replacing any earlier one).  On
 * failure there is no arena at all, so that a request naming a slot
 * gets EINVAL rather than the data of an old arena.
 */
static void
attach_arena (const struct hp_header *req, json_t *j, int fd)
{
  json_t *jsize = json_object_get (j, "size");
  json_int_t size = json_is_integer (jsize) ? json_integer_value (jsize) : 0;
  struct stat st;
  void *p;

  if (arena) {
    munmap (arena, arena_size);
    arena = NULL;
    arena_size = 0;
  }
  if (size <= 0 || (uint64_t) size > SIZE_MAX) {
    attach_fail (req, HP_EINVAL, fd, "ATTACH_FD \"shm\" needs the arena's "
                 "size as a positive integer \"size\"");
    return;
  }
  if (fstat (fd, &st) == -1) {
    attach_fail (req, HP_EINVAL, fd, "ATTACH_FD \"shm\": fstat: %s",
                 strerror (errno));
    return;
  }
  if (st.st_size < size) {
    attach_fail (req, HP_EINVAL, fd, "ATTACH_FD \"shm\": the arena of %"
                 PRId64 " bytes is larger than the file passed (%" PRId64
                 " bytes)", (int64_t) size, (int64_t) st.st_size);
    return;
  }
  p = mmap (NULL, (size_t) size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;

    attach_fail (req, hp_error_from_errno (err), fd,
                 "ATTACH_FD \"shm\": cannot map the arena of %" PRId64
                 " bytes: %s", (int64_t) size, strerror (err));
    return;
  }
  close (fd);                   /* the mapping keeps the file */
  arena = p;
  arena_size = (uint64_t) size;
  nbdkit__send_json_reply (req, 0, NULL);
}

void
nbdkit__op_attach_fd (const struct hp_header *req, json_t *j, int fd)
{
  const char *purpose = json_string_value (json_object_get (j, "purpose"));

  if (fd == -1) {
    nbdkit__send_reply (req, HP_EINVAL, 0,
                        "ATTACH_FD without a file descriptor", 35);
    return;
  }
  if (purpose && strcmp (purpose, HP_FEATURE_SHM) == 0) {
    attach_arena (req, j, fd);
    return;
  }
  if (purpose && strcmp (purpose, HP_FEATURE_MEMFD) == 0 &&
      nbdkit__be->wants_memfd) {
    if (nbdkit__memfd >= 0)
      close (nbdkit__memfd);
    nbdkit__memfd = fd;
  }
  else
    close (fd);                 /* not asked for: ignored */
  nbdkit__send_json_reply (req, 0, NULL);
}

/* --dump-plugin: what dump_plugin prints on stdout, as key=value. */
void
nbdkit__op_dump (const struct hp_header *req)
{
  json_t *j = json_object ();
  int fd, saved;
  FILE *fp;
  char *line = NULL;
  size_t cap = 0;

  if (nbdkit__be->dump_plugin &&
      (fd = memfd_create ("dump", MFD_CLOEXEC)) >= 0) {
    fflush (stdout);
    saved = dup (STDOUT_FILENO);
    dup2 (fd, STDOUT_FILENO);
    nbdkit__be->dump_plugin ();
    fflush (stdout);
    dup2 (saved, STDOUT_FILENO);
    close (saved);
    lseek (fd, 0, SEEK_SET);
    fp = fdopen (fd, "r");
    if (fp) {
      while (getline (&line, &cap, fp) > 0) {
        char *eq = strchr (line, '=');

        line[strcspn (line, "\n")] = '\0';
        if (eq && eq > line) {
          *eq = '\0';
          json_object_set_new (j, line, json_string (eq + 1));
        }
      }
      free (line);
      fclose (fp);
    }
    else
      close (fd);
  }
  nbdkit__send_json_reply (req, 0, j);
}

/* ---- data (on workers) ---- */

static uint32_t
flags_of (uint16_t hp_flags)
{
  uint32_t f = 0;

  if (hp_flags & HP_FLAG_FUA) f |= NBDKIT_FLAG_FUA;
  if (hp_flags & HP_FLAG_MAY_TRIM) f |= NBDKIT_FLAG_MAY_TRIM;
  if (hp_flags & HP_FLAG_FAST_ZERO) f |= NBDKIT_FLAG_FAST_ZERO;
  if (hp_flags & HP_FLAG_REQ_ONE) f |= NBDKIT_FLAG_REQ_ONE;
  return f;
}

/* After a write-like operation: emulated FUA is a flush. */
static int
finish_fua (struct handle *hd, uint32_t *flags, int r)
{
  if (r == 0 && (*flags & NBDKIT_FLAG_FUA) &&
      hd->can_fua == NBDKIT_FUA_EMULATE)
    r = nbdkit__be->flush (hd->h, 0);
  return r;
}

/* Emulated FUA: do not pass the flag down, flush afterwards. */
static uint32_t
down_flags (struct handle *hd, uint32_t flags)
{
  if (hd->can_fua == NBDKIT_FUA_EMULATE)
    flags &= ~NBDKIT_FLAG_FUA;
  return flags;
}

static unsigned char *zeroes;

static void
alloc_zeroes (void)
{
  zeroes = calloc (1, ZERO_CHUNK);
}

static const unsigned char *
zero_buffer (void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;

  pthread_once (&once, alloc_zeroes);
  return zeroes;
}

static int
do_zero (struct handle *hd, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct context *ctx = nbdkit__context_get ();
  const unsigned char *z;

  if (nbdkit__be->zero) {
    int r, err;

    errno = 0;
    r = nbdkit__be->zero (hd->h, count, offset, down_flags (hd, flags));
    err = ctx->err ? ctx->err : errno;
    if (r == 0 || (flags & NBDKIT_FLAG_FAST_ZERO) ||
        (err != ENOTSUP && err != EOPNOTSUPP))
      return r;
    /* Not supported here: write zeroes instead, forgetting the error. */
    ctx->err = 0;
    free (ctx->msg);
    ctx->msg = NULL;
  }
  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  z = zero_buffer ();
  if (!z) {
    nbdkit_set_error (ENOMEM);
    return -1;
  }
  while (count > 0) {
    uint32_t n = count < ZERO_CHUNK ? count : ZERO_CHUNK;

    if (nbdkit__be->pwrite (hd->h, z, n, offset, 0) == -1)
      return -1;
    count -= n;
    offset += n;
  }
  /* The writes carried no FUA: make them durable here.  (Emulated FUA
   * is flushed by finish_fua.)
   */
  if ((flags & NBDKIT_FLAG_FUA) && hd->can_fua == NBDKIT_FUA_NATIVE &&
      nbdkit__be->flush)
    return nbdkit__be->flush (hd->h, 0);
  return 0;
}

static int
do_cache (struct handle *hd, uint32_t count, uint64_t offset)
{
  unsigned char *buf;
  int r = 0;

  if (hd->can_cache == NBDKIT_CACHE_NATIVE)
    return nbdkit__be->cache (hd->h, count, offset, 0);
  buf = malloc (count < ZERO_CHUNK ? count : ZERO_CHUNK);
  if (!buf) {
    nbdkit_set_error (ENOMEM);
    return -1;
  }
  while (r == 0 && count > 0) {
    uint32_t n = count < ZERO_CHUNK ? count : ZERO_CHUNK;

    r = nbdkit__be->pread (hd->h, buf, n, offset, 0);
    count -= n;
    offset += n;
  }
  free (buf);
  return r;
}

/* A read the front end allows to be answered "all zeros": true if the
 * backend's extents say so for the whole range.  Any failure to tell
 * is quietly a "no": the read then happens as usual.
 */
static bool
reads_as_zeros (struct handle *hd, const struct hp_header *req)
{
  struct context *ctx = nbdkit__context_get ();
  struct nbdkit_extents *e;
  bool zero = false;

  if (hd->can_extents <= 0 || !nbdkit__be->extents || req->count == 0)
    return false;
  e = nbdkit__extents_new (req->offset, req->offset + req->count);
  if (!e)
    return false;
  /* One extent is enough to tell: a backend may then answer with less
   * work, and if the first extent does not cover the range as zeros the
   * read goes ahead.
   */
  if (nbdkit__be->extents (hd->h, req->count, req->offset, NBDKIT_FLAG_REQ_ONE,
                           e) == 0)
    zero = nbdkit__extents_all_zero (e);
  nbdkit__extents_free (e);
  /* Forget whatever the extents call said. */
  ctx->err = 0;
  free (ctx->msg);
  ctx->msg = NULL;
  return zero;
}

/* The arena slot that a request with HP_FLAG_SHM names, or NULL after
 * reporting why it is not a valid one.
 */
static unsigned char *
shm_slot (const struct hp_header *req, const unsigned char *payload)
{
  uint64_t off = get_be64 (payload);

  if (!arena) {
    nbdkit_error ("%s names a shared-memory slot, but no arena is attached",
                  hp_type_name (req->type));
    nbdkit_set_error (EINVAL);
    return NULL;
  }
  if (off > arena_size || req->count > arena_size - off) {
    nbdkit_error ("%s names a shared-memory slot of %" PRIu32 " bytes at "
                  "offset %" PRIu64 ", outside the arena of %" PRIu64
                  " bytes", hp_type_name (req->type), req->count, off,
                  arena_size);
    nbdkit_set_error (EINVAL);
    return NULL;
  }
  return arena + off;
}

static void
op_data (const struct hp_header *req, const unsigned char *payload)
{
  struct handle *hd = nbdkit__handle_lookup (req->handle);
  uint32_t flags = flags_of (req->flags);
  bool shm = req->flags & HP_FLAG_SHM;
  unsigned char *slot = NULL;
  unsigned char *data = NULL;   /* PREAD inline: buf_alloc (count) */
  unsigned char *buf = NULL;    /* EXTENTS: malloc'd */
  uint32_t len = 0;
  int r = -1;

  if (!hd) {
    nbdkit__send_reply (req, HP_EINVAL, 0, "unknown handle", 14);
    return;
  }
  if (atomic_load (&hd->disconnected)) {
    static const char msg[] = "the backend disconnected this client";

    nbdkit__send_reply (req, HP_ESHUTDOWN, 0, msg, sizeof msg - 1);
    return;
  }
  nbdkit__context_begin (true, hd->export, hd->tls);
  nbdkit__context_get ()->peer = hd->peer;

  /* The server checks every request against the size; so does the
   * library, so that the backend's code never sees one of zero length
   * or past the end (as nbdkit checks each layer's), whatever a
   * filter sent.
   */
  if (req->type != HP_FLUSH && req->count == 0) {
    nbdkit_error ("%s of zero length", hp_type_name (req->type));
    nbdkit_set_error (EINVAL);
  }
  else if (req->type != HP_FLUSH &&
           (req->offset > hd->size || req->count > hd->size - req->offset)) {
    nbdkit_error ("%s past the end of the export: offset %" PRIu64
                  " count %" PRIu32 ", size %" PRIu64,
                  hp_type_name (req->type), req->offset, req->count,
                  hd->size);
    nbdkit_set_error (EINVAL);
  }
  else switch (req->type) {
  case HP_PREAD:
    if (!nbdkit__be->pread) {
      nbdkit_error ("the backend cannot read");
      break;
    }
    if (shm && !(slot = shm_slot (req, payload)))
      break;
    if ((req->flags & HP_FLAG_ZEROS) && reads_as_zeros (hd, req)) {
      nbdkit__send_reply_flags (req, 0, HP_FLAG_ZEROS, 0, NULL, 0);
      nbdkit__context_end ();
      return;
    }
    if (!shm && !(data = nbdkit__buf_alloc (req->count))) {
      nbdkit_set_error (ENOMEM);
      break;
    }
    r = nbdkit__be->pread (hd->h, shm ? slot : data, req->count, req->offset,
                           0);
    break;

  case HP_PWRITE:
    if (hd->can_write <= 0) {
      nbdkit_set_error (EPERM);
      break;
    }
    if (shm && !(slot = shm_slot (req, payload)))
      break;
    r = nbdkit__be->pwrite (hd->h, shm ? slot : payload, req->count,
                            req->offset, down_flags (hd, flags));
    r = finish_fua (hd, &flags, r);
    break;

  case HP_FLUSH:
    if (hd->can_flush <= 0) {
      nbdkit_set_error (EINVAL);
      break;
    }
    r = nbdkit__be->flush (hd->h, 0);
    break;

  case HP_TRIM:
    if (hd->can_trim <= 0) {
      nbdkit_set_error (hd->can_write > 0 ? EINVAL : EPERM);
      break;
    }
    r = nbdkit__be->trim (hd->h, req->count, req->offset,
                          down_flags (hd, flags));
    r = finish_fua (hd, &flags, r);
    break;

  case HP_ZERO:
    if (hd->can_zero <= 0) {
      nbdkit_set_error (hd->can_write > 0 ? EINVAL : EPERM);
      break;
    }
    r = do_zero (hd, req->count, req->offset, flags);
    r = finish_fua (hd, &flags, r);
    break;

  case HP_CACHE:
    if (hd->can_cache <= NBDKIT_CACHE_NONE) {
      nbdkit_set_error (EINVAL);
      break;
    }
    r = do_cache (hd, req->count, req->offset);
    break;

  case HP_EXTENTS: {
    struct nbdkit_extents *e;

    if (hd->can_extents <= 0) {
      nbdkit_set_error (EINVAL);
      break;
    }
    e = nbdkit__extents_new (req->offset, req->offset + req->count);
    if (!e) {
      nbdkit_set_error (ENOMEM);
      break;
    }
    r = nbdkit__be->extents (hd->h, req->count, req->offset, flags, e);
    if (r == 0) {
      buf = nbdkit__extents_encode (e, flags & NBDKIT_FLAG_REQ_ONE, &len);
      if (!buf) {
        nbdkit_error ("the backend returned no extents for offset %" PRIu64,
                      req->offset);
        nbdkit_set_error (EIO);
        r = -1;
      }
    }
    nbdkit__extents_free (e);
    break;
  }
  }

  if (nbdkit__context_get ()->disconnect)
    atomic_store (&hd->disconnected, true);
  if (nbdkit__context_get ()->disconnect == 2) {
    /* At once: the front end closes the connection unanswered. */
    nbdkit__send_reply_flags (req, HP_ESHUTDOWN, HP_FLAG_DISCONNECT, 0,
                              NULL, 0);
    nbdkit__buf_free (data, req->count);
  }
  else if (r == -1) {
    nbdkit__send_error_reply (req, 0);
    nbdkit__buf_free (data, req->count);
  }
  else if (req->type == HP_PREAD && shm)
    nbdkit__send_reply_flags (req, 0, HP_FLAG_SHM, 0, NULL, 0);
  else if (req->type == HP_PREAD)
    nbdkit__send_reply_owned (req, 0, data, req->count, req->count);
  else
    nbdkit__send_reply (req, 0, 0, buf, buf ? len : 0);
  nbdkit__context_end ();
  free (buf);
}

void
nbdkit__op_run_job (struct job *job)
{
  const struct hp_header *req = &job->req;
  json_t *j = NULL;

  if (hp_type_is_control (req->type)) {
    json_error_t err;

    j = req->payload_len
      ? json_loadb ((const char *) job->payload, req->payload_len, 0, &err)
      : json_object ();
    if (!j) {
      nbdkit__send_reply (req, HP_EINVAL, 0, "invalid JSON", 12);
      goto out;
    }
  }

  switch (req->type) {
  case HP_OPEN:
    nbdkit__op_open (req, j, job->fd);
    job->fd = -1;
    break;
  case HP_CLOSE:
    nbdkit__op_close (req);
    break;
  case HP_LIST_EXPORTS:
    nbdkit__op_list_exports (req, j);
    break;
  case HP_DEFAULT_EXPORT:
    nbdkit__op_default_export (req, j);
    break;
  default:
    op_data (req, job->payload);
  }
 out:
  json_decref (j);
  nbdkit__job_free (job);
}

#ifdef NBDKIT_FUZZING
void
nbdkit__fuzz_reset_ops (void)
{
  if (arena) {
    munmap (arena, arena_size);
    arena = NULL;
    arena_size = 0;
  }
  if (config_fd >= 0)
    close (config_fd);
  config_fd = -1;
  free (new_magic_key);
  new_magic_key = NULL;
}
#endif
