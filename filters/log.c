/* filters/log.c: log every connection and request to a file
 * (nbdkit-log-filter(1)).
 *
 * Owns the log file (opened at get_ready, closed at unload) and the
 * connection counter.  One line per event, in nbdkit's format:
 *
 *   2024-01-01 10:00:00.123456 connection=1 Connect export="" tls=0 size=0x...
 *   2024-01-01 10:00:00.123500 connection=1 Read id=1 offset=0x0 count=0x200 ...
 *   2024-01-01 10:00:00.123600 connection=1 ...Read id=1 return=0
 *   2024-01-01 10:00:00.200000 connection=1 Disconnect transactions=1
 *
 * A request is logged when it reaches the filter, then passed down as
 * a sub-request so that its reply can be logged before it goes up.
 * Lines are made in memory (a memstream) and written to the file by a
 * worker thread, never on the loop: finished lines join one queue, and
 * one writer job at a time empties it, so they reach the file in order.
 * At unload the rest is written after the writer has finished.
 * logscript= is not supported (it would run a shell per line).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"

static const char *logfilename;
static bool logappend;
static FILE *logfp;             /* the line being made (a memstream) */
static char *line_buf;
static size_t line_len;
static int log_fd = -1;

/* Finished lines not yet written, and whether a writer job runs. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t writer_gone = PTHREAD_COND_INITIALIZER;
static char *queue;
static size_t queue_len, queue_size;
static bool writer_running;

static int
log_config (const char *key, const char *value)
{
  if (strcmp (key, "logfile") == 0) {
    if (!*value) {
      nbdkit_error ("logfile=: give the name of the file to log to");
      return -1;
    }
    logfilename = value;
    return 0;
  }
  if (strcmp (key, "logappend") == 0)
    return fparse_bool (key, value, &logappend);
  if (strcmp (key, "logscript") == 0) {
    nbdkit_error ("logscript=%s: log scripts are not supported by this "
                  "server: use logfile=FILE", value);
    return -1;
  }
  nbdkit_error ("%s: unknown parameter of the log filter", key);
  return -1;
}

static int
log_config_complete (void)
{
  if (!logfilename) {
    nbdkit_error ("the log filter needs logfile=FILE (the file to log to)");
    return -1;
  }
  return 0;
}

/* ---- writing lines ---- */

/* Start a line: timestamp (UTC, microseconds), then the connection. */
static void
line_start (uint64_t connection)
{
  struct timeval tv;
  struct tm tm;
  char ts[32] = "time unknown";

  if (gettimeofday (&tv, NULL) == 0 && gmtime_r (&tv.tv_sec, &tm)) {
    size_t n = strftime (ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);

    snprintf (ts + n, sizeof ts - n, ".%06ld", (long) tv.tv_usec);
  }
  fputs (ts, logfp);
  if (connection)
    fprintf (logfp, " connection=%" PRIu64, connection);
}

static void
write_all (int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t r = write (fd, p, n);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return;                   /* a log that cannot be written is lost */
    p += r;
    n -= r;
  }
}

/* On a worker thread: write what is queued until the queue is empty. */
static void
writer (void *unused)
{
  for (;;) {
    char *batch;
    size_t len;

    pthread_mutex_lock (&queue_lock);
    batch = queue;
    len = queue_len;
    queue = NULL;
    queue_len = queue_size = 0;
    if (len == 0) {
      writer_running = false;
      pthread_cond_broadcast (&writer_gone);
      pthread_mutex_unlock (&queue_lock);
      free (batch);
      return;
    }
    pthread_mutex_unlock (&queue_lock);
    write_all (log_fd, batch, len);   /* never-blocks: a worker */
    free (batch);
  }
}

static void
writer_done (void *unused)
{
}

/* The line is made: queue it, and start the writer if it is idle. */
static void
line_end (void)
{
  bool start = false;

  fputc ('\n', logfp);
  /* never-blocks: a memstream, no I/O */
  if (fflush (logfp) != 0 || line_len == 0)
    return;
  pthread_mutex_lock (&queue_lock);
  if (queue_len + line_len > queue_size) {
    size_t n = (queue_len + line_len) * 2;
    char *q = realloc (queue, n);

    if (q) {
      queue = q;
      queue_size = n;
    }
  }
  if (queue_len + line_len <= queue_size) {
    memcpy (queue + queue_len, line_buf, line_len);
    queue_len += line_len;
  }
  if (!writer_running)
    start = writer_running = true;
  pthread_mutex_unlock (&queue_lock);
  rewind (logfp);
  if (start)
    worker_submit (writer, writer_done, NULL);
}

static void __attribute__ ((format (printf, 2, 3)))
log_line (uint64_t connection, const char *fmt, ...)
{
  va_list args;

  if (!logfp)
    return;
  line_start (connection);
  fputc (' ', logfp);
  va_start (args, fmt);
  vfprintf (logfp, fmt, args);
  va_end (args);
  line_end ();
}

/* A string, shell-quoted when it needs to be (always when empty). */
static void
put_quoted (const char *s)
{
  const char *p;
  bool plain = *s != 0;

  for (p = s; *p && plain; ++p)
    if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789-_=+./:@,%", *p))
      plain = false;
  if (plain) {
    fputs (s, logfp);
    return;
  }
  fputc ('"', logfp);
  for (p = s; *p; ++p) {
    if (strchr ("\"\\$`", *p))
      fputc ('\\', logfp);
    fputc (*p, logfp);
  }
  fputc ('"', logfp);
}

static int
log_get_ready (void)
{
  /* never-blocks: open is before the loop runs */
  log_fd = open (logfilename, O_WRONLY | O_CREAT | O_CLOEXEC |
                 (logappend ? O_APPEND : O_TRUNC), 0666);
  if (log_fd == -1) {
    nbdkit_error ("logfile=%s: cannot open it for writing: %m", logfilename);
    return -1;
  }
  logfp = open_memstream (&line_buf, &line_len);
  if (!logfp) {
    nbdkit_error ("logfile=%s: out of memory", logfilename);
    close (log_fd);
    log_fd = -1;
    return -1;
  }
  /* nbdkit's numbers: 0 serialize_connections .. 3 parallel. */
  log_line (0, "Ready thread_model=%d", server_thread_model ());
  return 0;
}

static void
log_unload (void)
{
  if (!logfp)
    return;
  /* After the loop: let the writer finish, then write the rest. */
  pthread_mutex_lock (&queue_lock);
  while (writer_running)
    pthread_cond_wait (&writer_gone, &queue_lock);   /* never-blocks: at exit */
  write_all (log_fd, queue, queue_len);
  free (queue);
  queue = NULL;
  queue_len = queue_size = 0;
  pthread_mutex_unlock (&queue_lock);
  fclose (logfp);
  free (line_buf);
  line_buf = NULL;
  logfp = NULL;
  close (log_fd);
  log_fd = -1;
}

/* ---- connections ---- */

/* As nbdkit numbers them: each open is a connection. */
static uint64_t connections;

struct log_handle {
  uint64_t connection;
  uint64_t id;                  /* requests so far */
};

static void
log_open (struct fopen *o)
{
  const struct export_caps *c = o->caps;
  struct log_handle *h = malloc (sizeof *h);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->connection = ++connections;
  h->id = 0;
  if (logfp) {
    line_start (h->connection);
    fputs (" Connect export=", logfp);
    put_quoted (o->export ? o->export : "");
    /* zero, fua and cache in nbdkit's levels: 0 none, 2 native. */
    fprintf (logfp, " tls=%d size=0x%" PRIx64 " minsize=0x%" PRIx32
             " prefsize=0x%" PRIx32 " maxsize=0x%" PRIx32
             " write=%d flush=%d rotational=%d trim=%d zero=%d fua=%d"
             " extents=%d cache=%d fast_zero=%d",
             o->tls, c->size, c->block_min, c->block_pref, c->block_max,
             c->can_write, c->can_flush, c->is_rotational, c->can_trim,
             c->can_zero ? 2 : 0, c->can_fua ? 2 : 0, c->can_extents,
             c->can_cache ? 2 : 0, c->can_fast_zero);
    line_end ();
  }
  fopen_done (o, h);
}

static void
log_close (void *handle)
{
  struct log_handle *h = handle;

  log_line (h->connection, "Disconnect transactions=%" PRIu64, h->id);
  free (h);
}

/* ---- requests ---- */

struct logged {
  struct freq *r;
  struct log_handle *h;
  uint64_t id;
  uint64_t offset;              /* for extents */
};

static const char *
act_name (uint16_t type)
{
  switch (type) {
  case HP_PREAD: return "Read";
  case HP_PWRITE: return "Write";
  case HP_FLUSH: return "Flush";
  case HP_TRIM: return "Trim";
  case HP_ZERO: return "Zero";
  case HP_CACHE: return "Cache";
  case HP_EXTENTS: return "Extents";
  default: return "Unknown";
  }
}

/* The extents of a successful reply, as nbdkit lists them. */
static void
put_extents (uint64_t offset, const unsigned char *p, uint32_t len)
{
  uint32_t i;

  fputs (" extents=(", logfp);
  for (i = 0; i + HP_EXTENT_SIZE <= len; i += HP_EXTENT_SIZE) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (p + i, &length, &type);
    fprintf (logfp, "%s0x%" PRIx64 " 0x%" PRIx64 " \"%s%s%s\"",
             i ? " " : "", offset, length,
             type & HP_EXTENT_HOLE ? "hole" : "",
             (type & HP_EXTENT_HOLE) && (type & HP_EXTENT_ZERO) ? "," : "",
             type & HP_EXTENT_ZERO ? "zero" : "");
    offset += length;
  }
  fputc (')', logfp);
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct logged *l = opaque;

  if (logfp) {
    line_start (l->h->connection);
    fprintf (logfp, " ...%s id=%" PRIu64, act_name (l->r->type), l->id);
    if (!reply)
      fputs (" return=-1 error=EIO", logfp);
    else if (reply->status)
      fprintf (logfp, " return=-1 error=%s", hp_error_name (reply->status));
    else {
      if (l->r->type == HP_EXTENTS)
        put_extents (l->offset, payload, len);
      fputs (" return=0", logfp);
    }
    line_end ();
  }
  freq_reply_from (l->r, reply, payload, len);
  free (l);
}

/* ---- listing the exports ---- */

static void
on_listed (struct flist *l, uint32_t status, const char *msg)
{
  size_t i;

  if (logfp) {
    line_start (0);
    fprintf (logfp, " ...ListExports id=%" PRIu64, l->id);
    if (status)
      fprintf (logfp, " return=-1 error=%s", hp_error_name (status));
    else {
      fputs (" exports=(", logfp);
      for (i = 0; i < l->nr_exports; ++i) {
        if (i)
          fputc (' ', logfp);
        put_quoted (l->exports[i].name);
      }
      fputs (") return=0", logfp);
    }
    line_end ();
  }
  if (status)
    flist_fail (l, status, msg);
  else
    flist_done (l);
}

static void
log_list_exports (struct flist *l)
{
  log_line (0, "ListExports id=%" PRIu64 " readonly=%d tls=%d ...",
            l->id, l->readonly, l->tls);
  flist_next (l, on_listed);
}

static void
log_request (void *handle, struct freq *r)
{
  struct log_handle *h = handle;
  struct logged *l = malloc (sizeof *l);
  void *data;

  if (!l) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  l->r = r;
  l->h = h;
  l->id = ++h->id;
  l->offset = r->offset;
  if (logfp) {
    line_start (h->connection);
    fprintf (logfp, " %s id=%" PRIu64, act_name (r->type), l->id);
    if (r->type != HP_FLUSH)
      fprintf (logfp, " offset=0x%" PRIx64 " count=0x%" PRIx32,
               r->offset, r->count);
    switch (r->type) {
    case HP_PWRITE:
    case HP_TRIM:
      fprintf (logfp, " fua=%d", !!(r->flags & HP_FLAG_FUA));
      break;
    case HP_ZERO:
      fprintf (logfp, " trim=%d fua=%d fast=%d",
               !!(r->flags & HP_FLAG_MAY_TRIM), !!(r->flags & HP_FLAG_FUA),
               !!(r->flags & HP_FLAG_FAST_ZERO));
      break;
    case HP_EXTENTS:
      fprintf (logfp, " req_one=%d", !!(r->flags & HP_FLAG_REQ_ONE));
      break;
    }
    fputs (" ...", logfp);
    line_end ();
  }
  /* The same request below; a read's zeros reply passes up as it is. */
  data = r->data;
  r->data = NULL;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, l);
}

static const char *const keys[] = {
  "logfile", "logappend", "logscript", NULL
};

const struct filter log_filter = {
  .name = "log",
  .description = "log connections and requests to a file",
  .config_help =
    "logfile=FILE        (required) the file to log to\n"
    "logappend=BOOL      append to the file (default false: truncate it)",
  .keys = keys,
  .config = log_config,
  .config_complete = log_config_complete,
  .get_ready = log_get_ready,
  .unload = log_unload,
  .open = log_open,
  .list_exports = log_list_exports,
  .close = log_close,
  .pread = log_request,
  .pwrite = log_request,
  .flush = log_request,
  .trim = log_request,
  .zero = log_request,
  .cache = log_request,
  .extents = log_request,
};
