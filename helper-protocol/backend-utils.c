/* libnbdkit-backend: messages, errors, parsing helpers and buffers.
 *
 * Owns the per-thread context of a running callback: the connection it
 * serves (for nbdkit_export_name), and the error it reported, which
 * becomes the status and message of the reply.  Everything a backend
 * prints goes to stderr, which the server logs line by line.  Also owns
 * the pool of payload buffers (buf_alloc, buf_free), so that the data
 * path does not call malloc for every request.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"

static __thread struct context ctx;

/* ---- payload buffers ----
 *
 * Buffers of 4 KiB, 8 KiB ... 1 MiB come from one free list per size
 * (a power of 2), each keeping at most POOL_BYTES worth of buffers and
 * never more than POOL_MAX of them; larger ones are malloc'd and freed
 * each time.  A free buffer holds the link to the next one in its first
 * bytes.
 */
#define POOL_MIN_SHIFT 12
#define POOL_MAX_SHIFT 20
#define POOL_CLASSES (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)
#define POOL_BYTES (2 * 1024 * 1024)
#define POOL_MAX 32

struct free_buf { struct free_buf *next; };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_buf *pool[POOL_CLASSES];
static unsigned pool_count[POOL_CLASSES];

/* The size class of a buffer of size bytes, or -1 if it is not pooled. */
static int
pool_class (size_t size)
{
  int c = 0;

  if (size > (size_t) 1 << POOL_MAX_SHIFT)
    return -1;
  while (((size_t) 1 << (POOL_MIN_SHIFT + c)) < size)
    c++;
  return c;
}

static unsigned
pool_limit (int c)
{
  size_t n = POOL_BYTES >> (POOL_MIN_SHIFT + c);

  return n < POOL_MAX ? (unsigned) n : POOL_MAX;
}

void *
nbdkit__buf_alloc (size_t size)
{
  int c = pool_class (size);
  struct free_buf *b = NULL;

  if (c == -1)
    return malloc (size ? size : 1);
  pthread_mutex_lock (&pool_lock);
  b = pool[c];
  if (b) {
    pool[c] = b->next;
    pool_count[c]--;
  }
  pthread_mutex_unlock (&pool_lock);
  return b ? (void *) b : malloc ((size_t) 1 << (POOL_MIN_SHIFT + c));
}

void
nbdkit__buf_free (void *p, size_t size)
{
  int c = pool_class (size);
  struct free_buf *b = p;

  if (!p)
    return;
  if (c != -1) {
    pthread_mutex_lock (&pool_lock);
    if (pool_count[c] < pool_limit (c)) {
      b->next = pool[c];
      pool[c] = b;
      pool_count[c]++;
      b = NULL;
    }
    pthread_mutex_unlock (&pool_lock);
  }
  free (b);
}

/* ---- the context of a callback ---- */

struct context *
nbdkit__context_get (void)
{
  return &ctx;
}

void
nbdkit__context_begin (bool log_errors, const char *export, bool tls)
{
  ctx.in_callback = true;
  ctx.log_errors = log_errors;
  ctx.export = export;
  ctx.tls = tls;
  ctx.peer = NULL;
  ctx.err = 0;
  ctx.config_key = ctx.config_value = NULL;
  ctx.connection = 0;
  ctx.disconnect = 0;
  ctx.in_open = ctx.passthrough_wanted = false;
  ctx.passthrough_fd = -1;
  ctx.passthrough_flags = 0;
  ctx.passthrough_page = 0;
  ctx.previous_fd = -1;
  free (ctx.msg);
  ctx.msg = NULL;
  errno = 0;
}

uint32_t
nbdkit__context_failure (int saved_errno, uint32_t def_status,
                         const char **msg)
{
  *msg = ctx.msg;
  if (ctx.err)
    return hp_error_from_errno (ctx.err);
  if (saved_errno)
    return hp_error_from_errno (saved_errno);
  return def_status ? def_status : HP_EIO;
}

void
nbdkit__context_end (void)
{
  ctx.in_callback = false;
  ctx.export = NULL;
  ctx.config_key = ctx.config_value = NULL;
  free (ctx.msg);
  ctx.msg = NULL;
}

void
nbdkit_verror (const char *fmt, va_list args)
{
  int saved_errno = errno;
  char *msg;

  if (vasprintf (&msg, fmt, args) == -1) {
    errno = saved_errno;
    return;
  }
  if (ctx.in_callback) {
    if (ctx.log_errors)
      dprintf (STDERR_FILENO, "error: %s\n", msg);
    free (ctx.msg);
    ctx.msg = msg;
  }
  else {
    dprintf (STDERR_FILENO, "error: %s\n", msg);
    free (msg);
  }
  errno = saved_errno;
}

void
nbdkit_error (const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  nbdkit_verror (fmt, args);
  va_end (args);
}

void
nbdkit_debug (const char *fmt, ...)
{
  int saved_errno = errno;
  va_list args;
  char *msg;

  if (!nbdkit__verbose)
    return;
  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) >= 0) {
    dprintf (STDERR_FILENO, "debug: %s\n", msg);
    free (msg);
  }
  va_end (args);
  errno = saved_errno;
}

void
nbdkit_set_error (int err)
{
  ctx.err = err;
}

void
nbdkit_disconnect (int force)
{
  int d = force ? 2 : 1;

  if (ctx.disconnect < d)
    ctx.disconnect = d;
}

int
nbdkit_debug_flag (const char *flag, int def)
{
  json_t *v = nbdkit__debug_flags
    ? json_object_get (nbdkit__debug_flags, flag) : NULL;

  return json_is_integer (v) ? (int) json_integer_value (v) : def;
}

const char *
nbdkit_export_name (void)
{
  return ctx.export;
}

int
nbdkit_is_tls (void)
{
  return ctx.tls;
}

int
nbdkit_memfd (void)
{
  return nbdkit__memfd;
}

int
nbdkit_passthrough_fd (int fd, unsigned flags, uint32_t page)
{
  int fl;

  if (!ctx.in_open) {
    nbdkit_error ("nbdkit_passthrough_fd: call it from the open callback");
    errno = EINVAL;
    return -1;
  }
  if (flags & ~NBDKIT_PASSTHROUGH_ZERO_PUNCH) {
    nbdkit_error ("nbdkit_passthrough_fd: unknown flags 0x%x", flags);
    errno = EINVAL;
    return -1;
  }
  if ((page & (page - 1)) || (page && !(flags & NBDKIT_PASSTHROUGH_ZERO_PUNCH))) {
    nbdkit_error ("nbdkit_passthrough_fd: page %" PRIu32 " must be 0 or a "
                  "power of 2, and only with NBDKIT_PASSTHROUGH_ZERO_PUNCH",
                  page);
    errno = EINVAL;
    return -1;
  }
  fl = fcntl (fd, F_GETFL);
  if (fl == -1 || (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY ||
      (fl & O_APPEND)) {
    nbdkit_error ("nbdkit_passthrough_fd: descriptor %d is not open for "
                  "reading in place (no O_PATH, O_WRONLY or O_APPEND)", fd);
    errno = EBADF;
    return -1;
  }
  /* Recorded even when the server does not take one: it is a hint. */
  ctx.passthrough_fd = fd;
  ctx.passthrough_flags = flags;
  ctx.passthrough_page = page;
  return 0;
}

int
nbdkit_previous_fd (void)
{
  int fd = ctx.in_open ? ctx.previous_fd : -1;

  if (ctx.in_open)
    ctx.previous_fd = -1;
  return fd;
}

/* How a parse error names the value: "key=value" while config runs
 * on that value, else "what 'value'".
 */
static char *
describe (const char *what, const char *str)
{
  char *d;

  if (ctx.config_key && ctx.config_value &&
      (str == ctx.config_value || strcmp (str, ctx.config_value) == 0))
    return asprintf (&d, "%s=%s", ctx.config_key, str) == -1 ? NULL : d;
  return asprintf (&d, "%s '%s'", what, str) == -1 ? NULL : d;
}

#define SIZE_SUFFIXES "k, M, G, T, P, E"

int64_t
nbdkit_parse_size (const char *str)
{
  static const char suffixes[] = "bkmgtpe";
  const char *p;
  char *end, *d = describe ("size", str);
  uint64_t v;
  int shift = 0;

  if (!isdigit ((unsigned char) str[0])) {
    nbdkit_error ("%s: not a size: use a number of bytes with an optional "
                  "suffix " SIZE_SUFFIXES " (e.g. 1G)", d ? d : str);
    goto err;
  }
  errno = 0;
  v = strtoull (str, &end, 10);
  if (errno == ERANGE || v > INT64_MAX)
    goto too_large;
  if (*end != '\0') {
    /* One suffix letter, either case (b means bytes), powers of 1024. */
    p = strchr (suffixes, tolower ((unsigned char) end[0]));
    if (!p || end[0] == '\0' || end[1] != '\0') {
      nbdkit_error ("%s: unknown size suffix '%s' (use " SIZE_SUFFIXES ")",
                    d ? d : str, end);
      goto err;
    }
    shift = 10 * (int) (p - suffixes);
    if (v > ((uint64_t) INT64_MAX >> shift))
      goto too_large;
  }
  free (d);
  return (int64_t) (v << shift);

 too_large:
  nbdkit_error ("%s: too large (the largest size is 2^63-1 bytes, "
                "just under 8E)", d ? d : str);
 err:
  free (d);
  errno = EINVAL;
  return -1;
}

int
nbdkit_parse_bool (const char *str)
{
  static const char *const yes[] = { "1", "true", "t", "yes", "y", "on" };
  static const char *const no[] = { "0", "false", "f", "no", "n", "off" };
  size_t i;
  char *d;

  for (i = 0; i < sizeof yes / sizeof yes[0]; ++i)
    if (strcasecmp (str, yes[i]) == 0)
      return 1;
  for (i = 0; i < sizeof no / sizeof no[0]; ++i)
    if (strcasecmp (str, no[i]) == 0)
      return 0;
  d = describe ("boolean", str);
  nbdkit_error ("%s: not a boolean: use true or false (or yes/no, on/off, "
                "1/0)", d ? d : str);
  free (d);
  errno = EINVAL;
  return -1;
}

static int
parse_signed (const char *what, const char *str, long long min,
              long long max, long long *r)
{
  char *end;

  errno = 0;
  if (!*str || isspace ((unsigned char) *str))
    goto bad;
  *r = strtoll (str, &end, 0);
  if (*end || (errno && errno != ERANGE))
    goto bad;
  if (errno == ERANGE || *r < min || *r > max) {
    nbdkit_error ("%s=%s: out of range (use %lld to %lld)", what, str,
                  min, max);
    errno = EINVAL;
    return -1;
  }
  return 0;
 bad:
  nbdkit_error ("%s=%s: not an integer (use a decimal, 0x hexadecimal "
                "or 0 octal number)", what, str);
  errno = EINVAL;
  return -1;
}

static int
parse_unsigned (const char *what, const char *str, unsigned long long max,
                unsigned long long *r)
{
  char *end;

  errno = 0;
  if (!isdigit ((unsigned char) *str))
    goto bad;
  *r = strtoull (str, &end, 0);
  if (*end || (errno && errno != ERANGE))
    goto bad;
  if (errno == ERANGE || *r > max) {
    nbdkit_error ("%s=%s: out of range (use 0 to %llu)", what, str, max);
    errno = EINVAL;
    return -1;
  }
  return 0;
 bad:
  nbdkit_error ("%s=%s: not a non-negative integer (use a decimal, 0x "
                "hexadecimal or 0 octal number)", what, str);
  errno = EINVAL;
  return -1;
}

int
nbdkit_parse_int (const char *what, const char *str, int *r)
{
  long long v;

  if (parse_signed (what, str, INT_MIN, INT_MAX, &v) == -1)
    return -1;
  *r = (int) v;
  return 0;
}

int
nbdkit_parse_unsigned (const char *what, const char *str, unsigned *r)
{
  unsigned long long v;

  if (parse_unsigned (what, str, UINT_MAX, &v) == -1)
    return -1;
  *r = (unsigned) v;
  return 0;
}

int
nbdkit_parse_int64_t (const char *what, const char *str, int64_t *r)
{
  long long v;

  if (parse_signed (what, str, INT64_MIN, INT64_MAX, &v) == -1)
    return -1;
  *r = v;
  return 0;
}

int
nbdkit_parse_uint64_t (const char *what, const char *str, uint64_t *r)
{
  unsigned long long v;

  if (parse_unsigned (what, str, UINT64_MAX, &v) == -1)
    return -1;
  *r = v;
  return 0;
}

char *
nbdkit_absolute_path (const char *path)
{
  char *cwd, *r;

  if (!path || !*path) {
    nbdkit_error ("cannot make an absolute path of an empty path");
    return NULL;
  }
  if (path[0] == '/')
    r = strdup (path);
  else {
    cwd = getcwd (NULL, 0);
    if (!cwd) {
      nbdkit_error ("getcwd: %m");
      return NULL;
    }
    if (asprintf (&r, "%s/%s", cwd, path) == -1)
      r = NULL;
    free (cwd);
  }
  if (!r)
    nbdkit_error ("%s: out of memory", path);
  return r;
}

char *
nbdkit_realpath (const char *path)
{
  char *r;

  if (!path || !*path) {
    nbdkit_error ("cannot resolve an empty path");
    return NULL;
  }
  r = realpath (path, NULL);
  if (!r)
    nbdkit_error ("%s: %m", path);
  return r;
}
