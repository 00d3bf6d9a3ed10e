/* filters/log.c: log every connection and request to a file, or to a
 * script (nbdkit-log-filter(1)).
 *
 * Owns the log file (opened at get_ready, closed at unload), the
 * queue of log script runs, and the counters of connections and
 * preconnects.  Each event is one entry: an action (Ready, Fork,
 * Preconnect, ListExports, Connect, Read, ..., Disconnect), a type
 * (PRINT for one-line events, ENTER when a call starts, LEAVE when it
 * returns), maybe a connection and an id, and its parameters.  In the
 * file it is one line in nbdkit's format:
 *
 *   2024-01-01 10:00:00.123456 connection=1 Connect export="" tls=0 size=0x...
 *   2024-01-01 10:00:00.123500 connection=1 Read id=1 offset=0x0 count=0x200 ...
 *   2024-01-01 10:00:00.123600 connection=1 ...Read id=1 return=0
 *   2024-01-01 10:00:00.200000 connection=1 Disconnect transactions=1
 *
 * For logscript= it is one run of the script by bash (as "sh -c"),
 * with the entry set first as shell variables, as nbdkit does:
 * act=, connection= (if any), type=, id= (if any), then the
 * parameters as they are in the file (offset=0x0 count=0x200, or
 * lists such as extents=(...) as arrays), then the script.
 *
 * A request is logged when it reaches the filter, then passed down as
 * a sub-request so that its reply can be logged before it goes up.
 * Nothing is written or run on the loop: lines are made in memory and
 * join one queue, scripts another; one worker job at a time empties
 * each, so lines reach the file in order and scripts run one after
 * the other, in order.  At unload the rest is written and run once
 * the workers are done with what they hold.
 *
 * Preconnect: the filter's accept logs the call; its result (0, or -1
 * with EINVAL if a filter below refused the client) is known once the
 * chain has accepted or refused, and is logged from an ev_prepare
 * watcher at the end of that turn of the loop: the client was refused
 * if its socket has been closed by then (the same descriptor no
 * longer being the same socket).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"

extern char **environ;

static const char *logfilename;
static const char *logscript;
static bool logappend;
static bool active;             /* logfile= or logscript= given */
static int log_fd = -1;

/* ---- a growing string ---- */

struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
};

static void
sb_reserve (struct sbuf *b, size_t n)
{
  size_t cap;
  char *p;

  if (b->oom || b->len + n + 1 <= b->cap)
    return;
  cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1)
    cap *= 2;
  p = realloc (b->p, cap);
  if (!p) {
    b->oom = true;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void __attribute__ ((format (printf, 2, 3)))
sb_printf (struct sbuf *b, const char *fmt, ...)
{
  va_list args;
  int n;

  va_start (args, fmt);
  n = vsnprintf (NULL, 0, fmt, args);
  va_end (args);
  if (n < 0)
    return;
  sb_reserve (b, n);
  if (b->oom)
    return;
  va_start (args, fmt);
  vsnprintf (b->p + b->len, b->cap - b->len, fmt, args);
  va_end (args);
  b->len += n;
}

static void
sb_putc (struct sbuf *b, char c)
{
  sb_reserve (b, 1);
  if (b->oom)
    return;
  b->p[b->len++] = c;
  b->p[b->len] = '\0';
}

static void
sb_puts (struct sbuf *b, const char *s)
{
  sb_printf (b, "%s", s);
}

/* A string, shell-quoted when it needs to be (always when empty). */
static void
sb_quoted (struct sbuf *b, const char *s)
{
  const char *p;
  bool plain = *s != 0;

  for (p = s; *p && plain; ++p)
    if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789-_=+./:@,%", *p))
      plain = false;
  if (plain) {
    sb_puts (b, s);
    return;
  }
  sb_putc (b, '"');
  for (p = s; *p; ++p) {
    if (strchr ("\"\\$`", *p))
      sb_putc (b, '\\');
    sb_putc (b, *p);
  }
  sb_putc (b, '"');
}

/* The parameters of the entry being made (on the loop only). */
static struct sbuf args;

static void
args_reset (void)
{
  args.len = 0;
  args.oom = false;
  if (args.p)
    args.p[0] = '\0';
}

/* ---- the queues, emptied by worker jobs ---- */

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t worker_idle = PTHREAD_COND_INITIALIZER;

/* Lines not yet written; whether a writer job is queued or running,
 * and whether it is writing now.
 */
static char *lines;
static size_t lines_len, lines_size;
static bool writer_running, writer_busy;

/* Scripts not yet run, in order; the same for the runner job. */
struct script_run {
  struct script_run *next;
  char text[];
};
static struct script_run *scripts, **scripts_tail = &scripts;
static bool runner_running, runner_busy;

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
  pthread_mutex_lock (&queue_lock);
  for (;;) {
    char *batch = lines;
    size_t len = lines_len;

    if (len == 0) {
      writer_running = false;
      pthread_mutex_unlock (&queue_lock);
      return;
    }
    lines = NULL;
    lines_len = lines_size = 0;
    writer_busy = true;
    pthread_mutex_unlock (&queue_lock);
    write_all (log_fd, batch, len);   /* never-blocks: a worker */
    free (batch);
    pthread_mutex_lock (&queue_lock);
    writer_busy = false;
    pthread_cond_broadcast (&worker_idle);
  }
}

/* Run one script and wait for it (on a worker, or at unload).  The
 * loop's libev may reap the child first (it reaps every child it is
 * told of): then waitpid says ECHILD, and the script has ended too.
 */
static void
run_script (char *text)
{
  static const char *const shells[] = { "/bin/bash", "/bin/sh" };
  char *argv[] = { (char *) "sh", (char *) "-c", text, NULL };
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  pid_t pid;
  size_t i;
  int r = ENOENT, status;

  if (posix_spawn_file_actions_init (&fa) != 0)
    return;
  if (posix_spawnattr_init (&attr) != 0) {
    posix_spawn_file_actions_destroy (&fa);
    return;
  }
  posix_spawn_file_actions_addopen (&fa, STDIN_FILENO, "/dev/null",
                                    O_RDONLY, 0);
#if defined __GLIBC__ && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
  posix_spawn_file_actions_addclosefrom_np (&fa, STDERR_FILENO + 1);
#endif
  /* A script of its own: no blocked signals (a worker blocks them
   * all) and every signal as by default (the server ignores SIGPIPE).
   */
  sigemptyset (&none);
  sigfillset (&all);
  posix_spawnattr_setsigmask (&attr, &none);
  posix_spawnattr_setsigdefault (&attr, &all);
  posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSIGMASK |
                            POSIX_SPAWN_SETSIGDEF);
  for (i = 0; i < sizeof shells / sizeof shells[0] && r == ENOENT; ++i)
    r = posix_spawn (&pid, shells[i], &fa, &attr, argv, environ);
  posix_spawnattr_destroy (&attr);
  posix_spawn_file_actions_destroy (&fa);
  if (r != 0)
    return;                     /* a log script that cannot run is lost */
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)   /* never-blocks: a worker, or at exit */
    ;
}

/* On a worker thread: run the queued scripts, one after the other. */
static void
runner (void *unused)
{
  pthread_mutex_lock (&queue_lock);
  for (;;) {
    struct script_run *s = scripts;

    if (!s) {
      runner_running = false;
      pthread_mutex_unlock (&queue_lock);
      return;
    }
    scripts = s->next;
    if (!scripts)
      scripts_tail = &scripts;
    runner_busy = true;
    pthread_mutex_unlock (&queue_lock);
    run_script (s->text);
    free (s);
    pthread_mutex_lock (&queue_lock);
    runner_busy = false;
    pthread_cond_broadcast (&worker_idle);
  }
}

static void
job_done (void *unused)
{
}

static void
queue_line (const char *p, size_t n)
{
  bool start = false;

  pthread_mutex_lock (&queue_lock);
  if (lines_len + n > lines_size) {
    size_t size = (lines_len + n) * 2;
    char *q = realloc (lines, size);

    if (q) {
      lines = q;
      lines_size = size;
    }
  }
  if (lines_len + n <= lines_size) {
    memcpy (lines + lines_len, p, n);
    lines_len += n;
  }
  if (!writer_running)
    start = writer_running = true;
  pthread_mutex_unlock (&queue_lock);
  if (start)
    worker_submit (writer, job_done, NULL);
}

static void
queue_script (struct script_run *s)
{
  bool start = false;

  pthread_mutex_lock (&queue_lock);
  s->next = NULL;
  *scripts_tail = s;
  scripts_tail = &s->next;
  if (!runner_running)
    start = runner_running = true;
  pthread_mutex_unlock (&queue_lock);
  if (start)
    worker_submit (runner, job_done, NULL);
}

/* ---- entries ---- */

enum etype { E_PRINT, E_ENTER, E_LEAVE };

/* Log the entry whose parameters are in args: connection 0 = none,
 * id 0 = none.
 */
static void
emit (uint64_t connection, const char *act, enum etype type, uint64_t id)
{
  static const char *const type_names[] = { "PRINT", "ENTER", "LEAVE" };
  const char *params = args.p && !args.oom ? args.p : "";
  struct sbuf b = { 0 };

  if (!active) {
    args_reset ();
    return;
  }
  if (log_fd >= 0) {
    struct timeval tv;
    struct tm tm;

    if (gettimeofday (&tv, NULL) == 0 && gmtime_r (&tv.tv_sec, &tm)) {
      char ts[32];

      strftime (ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
      sb_printf (&b, "%s.%06ld", ts, (long) tv.tv_usec);
    }
    else
      sb_puts (&b, "time unknown");
    if (connection)
      sb_printf (&b, " connection=%" PRIu64, connection);
    sb_printf (&b, " %s%s", type == E_LEAVE ? "..." : "", act);
    if (id)
      sb_printf (&b, " id=%" PRIu64, id);
    if (*params)
      sb_printf (&b, " %s", params);
    if (type == E_ENTER)
      sb_puts (&b, " ...");
    sb_putc (&b, '\n');
    if (!b.oom)
      queue_line (b.p, b.len);
    b.len = 0;
    b.oom = false;
  }
  if (logscript) {
    struct script_run *s;

    sb_printf (&b, "act=%s\n", act);
    if (connection)
      sb_printf (&b, "connection=%" PRIu64 "\n", connection);
    sb_printf (&b, "type=%s\n", type_names[type]);
    if (id)
      sb_printf (&b, "id=%" PRIu64 "\n", id);
    sb_printf (&b, "%s\n%s", params, logscript);
    if (!b.oom && (s = malloc (sizeof *s + b.len + 1)) != NULL) {
      memcpy (s->text, b.p, b.len + 1);
      queue_script (s);
    }
  }
  free (b.p);
  args_reset ();
}

/* ---- configuration and life cycle ---- */

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
  if (strcmp (key, "logscript") == 0) {
    logscript = *value ? value : NULL;
    return 0;
  }
  if (strcmp (key, "logappend") == 0)
    return fparse_bool (key, value, &logappend);
  nbdkit_error ("%s: unknown parameter of the log filter", key);
  return -1;
}

static int
log_config_complete (void)
{
  /* Neither: the filter does nothing, as nbdkit's. */
  active = logfilename || logscript;
  return 0;
}

static int
log_get_ready (void)
{
  if (!active)
    return 0;
  if (logfilename) {
    /* never-blocks: open is before the loop runs */
    log_fd = open (logfilename, O_WRONLY | O_CREAT | O_CLOEXEC |
                   (logappend ? O_APPEND : O_TRUNC), 0666);
    if (log_fd == -1) {
      nbdkit_error ("logfile=%s: cannot open it for writing: %m",
                    logfilename);
      return -1;
    }
  }
  /* nbdkit's numbers: 0 serialize_connections .. 3 parallel. */
  sb_printf (&args, "thread_model=%d", server_thread_model ());
  emit (0, "Ready", E_PRINT, 0);
  /* The server is in its final process now (after any fork into the
   * background), where nbdkit logs Fork.
   */
  emit (0, "Fork", E_PRINT, 0);
  return 0;
}

static void preconnect_stop (void);

static void
log_unload (void)
{
  struct script_run *s;

  preconnect_stop ();
  if (!active)
    return;
  /* After the loop: let the workers finish what they hold, then write
   * and run the rest here (holding the lock, so that a job that starts
   * late finds nothing to do).
   */
  pthread_mutex_lock (&queue_lock);
  while (writer_busy || runner_busy)
    pthread_cond_wait (&worker_idle, &queue_lock);   /* never-blocks: at exit */
  if (log_fd >= 0)
    write_all (log_fd, lines, lines_len);
  free (lines);
  lines = NULL;
  lines_len = lines_size = 0;
  while ((s = scripts) != NULL) {
    scripts = s->next;
    run_script (s->text);
    free (s);
  }
  scripts_tail = &scripts;
  pthread_mutex_unlock (&queue_lock);
  if (log_fd >= 0)
    close (log_fd);
  log_fd = -1;
  free (args.p);
  args.p = NULL;
}

/* ---- preconnect ---- */

struct preconnect {
  struct preconnect *next;
  uint64_t id;
  int fd;
  dev_t dev;
  ino_t ino;
};
static uint64_t preconnects;    /* so far */
static struct preconnect *pending, **pending_tail = &pending;
static ev_prepare pending_watcher;
static bool pending_watcher_init;

/* The end of the turn in which clients were accepted: was each
 * refused by a filter below (its socket closed)?
 */
static void
on_pending (struct ev_loop *l, ev_prepare *w, int revents)
{
  struct preconnect *p;

  ev_prepare_stop (loop, w);
  while ((p = pending) != NULL) {
    struct stat st;
    bool open = fstat (p->fd, &st) == 0 && st.st_dev == p->dev &&
      st.st_ino == p->ino;

    pending = p->next;
    if (!pending)
      pending_tail = &pending;
    sb_puts (&args, open ? "return=0" : "return=-1 error=EINVAL");
    emit (0, "Preconnect", E_LEAVE, p->id);
    free (p);
  }
}

static void
preconnect_stop (void)
{
  struct preconnect *p;

  if (pending_watcher_init)
    ev_prepare_stop (loop, &pending_watcher);
  while ((p = pending) != NULL) {
    pending = p->next;
    free (p);
  }
  pending_tail = &pending;
}

static bool
log_accept (int fd, const char *peer)
{
  struct preconnect *p;
  struct stat st;

  if (!active)
    return true;
  ++preconnects;
  sb_puts (&args, server_is_readonly () ? "readonly=1" : "readonly=0");
  emit (0, "Preconnect", E_ENTER, preconnects);
  p = malloc (sizeof *p);
  if (!p || fstat (fd, &st) == -1) {
    free (p);
    sb_puts (&args, "return=0");
    emit (0, "Preconnect", E_LEAVE, preconnects);
    return true;
  }
  p->next = NULL;
  p->id = preconnects;
  p->fd = fd;
  p->dev = st.st_dev;
  p->ino = st.st_ino;
  *pending_tail = p;
  pending_tail = &p->next;
  if (!pending_watcher_init) {
    ev_prepare_init (&pending_watcher, on_pending);
    pending_watcher_init = true;
  }
  ev_prepare_start (loop, &pending_watcher);
  return true;
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
  struct log_handle *h;

  if (!active) {
    fopen_done (o, NULL);
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->connection = ++connections;
  h->id = 0;
  sb_puts (&args, "export=");
  sb_quoted (&args, o->export ? o->export : "");
  /* zero, fua and cache in nbdkit's levels: 0 none, 2 native. */
  sb_printf (&args, " tls=%d size=0x%" PRIx64 " minsize=0x%" PRIx32
             " prefsize=0x%" PRIx32 " maxsize=0x%" PRIx32
             " write=%d flush=%d rotational=%d trim=%d zero=%d fua=%d"
             " extents=%d cache=%d fast_zero=%d",
             o->tls, c->size, c->block_min, c->block_pref, c->block_max,
             c->can_write, c->can_flush, c->is_rotational, c->can_trim,
             c->can_zero ? 2 : 0, c->can_fua ? 2 : 0, c->can_extents,
             c->can_cache ? 2 : 0, c->can_fast_zero);
  emit (h->connection, "Connect", E_PRINT, 0);
  fopen_done (o, h);
}

static void
log_close (void *handle)
{
  struct log_handle *h = handle;

  if (!h)
    return;
  sb_printf (&args, "transactions=%" PRIu64, h->id);
  emit (h->connection, "Disconnect", E_PRINT, 0);
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

/* The extents of a successful reply, as nbdkit lists them (a list:
 * an array for a script).
 */
static void
put_extents (uint64_t offset, const unsigned char *p, uint32_t len)
{
  uint32_t i;

  sb_puts (&args, "extents=(");
  for (i = 0; i + HP_EXTENT_SIZE <= len; i += HP_EXTENT_SIZE) {
    uint64_t length;
    uint32_t type;

    hp_decode_extent (p + i, &length, &type);
    sb_printf (&args, "%s0x%" PRIx64 " 0x%" PRIx64 " \"%s%s%s\"",
               i ? " " : "", offset, length,
               type & HP_EXTENT_HOLE ? "hole" : "",
               (type & HP_EXTENT_HOLE) && (type & HP_EXTENT_ZERO) ? "," : "",
               type & HP_EXTENT_ZERO ? "zero" : "");
    offset += length;
  }
  sb_puts (&args, ") ");
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct logged *l = opaque;

  if (!reply)
    sb_puts (&args, "return=-1 error=EIO");
  else if (reply->status)
    sb_printf (&args, "return=-1 error=%s", hp_error_name (reply->status));
  else {
    if (l->r->type == HP_EXTENTS)
      put_extents (l->offset, payload, len);
    sb_puts (&args, "return=0");
  }
  emit (l->h->connection, act_name (l->r->type), E_LEAVE, l->id);
  freq_reply_from (l->r, reply, payload, len);
  free (l);
}

static void
log_request (void *handle, struct freq *r)
{
  struct log_handle *h = handle;
  struct logged *l;
  void *data;

  if (!h) {
    freq_next (r);
    return;
  }
  l = malloc (sizeof *l);
  if (!l) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  l->r = r;
  l->h = h;
  l->id = ++h->id;
  l->offset = r->offset;
  if (r->type != HP_FLUSH)
    sb_printf (&args, "offset=0x%" PRIx64 " count=0x%" PRIx32,
               r->offset, r->count);
  switch (r->type) {
  case HP_PWRITE:
  case HP_TRIM:
    sb_printf (&args, " fua=%d", !!(r->flags & HP_FLAG_FUA));
    break;
  case HP_ZERO:
    sb_printf (&args, " trim=%d fua=%d fast=%d",
               !!(r->flags & HP_FLAG_MAY_TRIM), !!(r->flags & HP_FLAG_FUA),
               !!(r->flags & HP_FLAG_FAST_ZERO));
    break;
  case HP_EXTENTS:
    sb_printf (&args, " req_one=%d", !!(r->flags & HP_FLAG_REQ_ONE));
    break;
  }
  emit (h->connection, act_name (r->type), E_ENTER, l->id);
  /* The same request below; a read's zeros reply passes up as it is. */
  data = r->data;
  r->data = NULL;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, l);
}

/* ---- listing the exports ---- */

static void
on_listed (struct flist *l, uint32_t status, const char *msg)
{
  size_t i;

  if (status)
    sb_printf (&args, "return=-1 error=%s", hp_error_name (status));
  else {
    sb_puts (&args, "exports=(");
    for (i = 0; i < l->nr_exports; ++i) {
      if (i)
        sb_putc (&args, ' ');
      sb_quoted (&args, l->exports[i].name);
    }
    sb_puts (&args, ") return=0");
  }
  emit (0, "ListExports", E_LEAVE, l->id);
  if (status)
    flist_fail (l, status, msg);
  else
    flist_done (l);
}

static void
log_list_exports (struct flist *l)
{
  if (!active) {
    flist_done (l);
    return;
  }
  sb_printf (&args, "readonly=%d tls=%d", l->readonly, l->tls);
  emit (0, "ListExports", E_ENTER, l->id);
  flist_next (l, on_listed);
}

static const char *const keys[] = {
  "logfile", "logappend", "logscript", NULL
};

const struct filter log_filter = {
  .name = "log",
  .description = "log connections and requests to a file or a script",
  .config_help =
    "logfile=FILE        the file to log to\n"
    "logscript=SCRIPT    run SCRIPT (bash) for each entry, with $act,\n"
    "                    $type, $connection, $id, $offset, $count, ...\n"
    "logappend=BOOL      append to the file (default false: truncate it)\n"
    "(neither logfile nor logscript: the filter does nothing)",
  .keys = keys,
  .config = log_config,
  .config_complete = log_config_complete,
  .get_ready = log_get_ready,
  .unload = log_unload,
  .accept = log_accept,
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
