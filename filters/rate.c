/* filters/rate.c: limit the bandwidth of reads and writes, per
 * connection and for the whole server (nbdkit-rate-filter(1)).
 *
 * Owns token buckets: one for reads and one for writes per connection
 * (connection-rate=) and for the server (rate=).  A bucket fills at the
 * rate, in bits per second, up to burstiness seconds' worth.  A request
 * takes count*8 bits from its connection's bucket, then from the
 * server's; a bucket that has too few waits in line (first come, first
 * served) on a libev timer until it has enough.  A request larger than
 * the bucket goes once the bucket is full, leaving it in debt, so that
 * the average rate holds whatever the request sizes.  Nothing sleeps:
 * a waiting request holds up only the requests behind it in the same
 * bucket.  Trim, zero, flush, cache and extents cost nothing.
 *
 * rate-file= / connection-rate-file= are read once a second (a few
 * bytes of a local file); a new rate applies at once, also to requests
 * already waiting.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

/* How often the rate files are read, in seconds. */
#define RATE_FILE_INTERVAL 1.0

struct waiter;

struct bucket {
  ev_timer timer;               /* first: the callback finds the bucket */
  double rate;                  /* bits per second, 0 = no limit */
  double tokens;                /* bits; negative = in debt */
  double last;                  /* when tokens were last brought up to date */
  struct waiter *head, *tail;   /* waiting, in order */
};

struct waiter {
  struct freq *r;
  double bits;
  struct bucket *buckets[2];    /* connection's, server's (NULL: none) */
  int stage;                    /* the bucket waited on or next */
  struct waiter *next;
};

struct rate_handle {
  struct bucket rb, wb;         /* reads, writes */
  struct rate_handle *prev, *next;
};

static double server_rate, connection_rate;     /* bits/s, 0 = none */
static const char *rate_file, *connection_rate_file;
static double burstiness = 2.0;
static bool active;             /* any limit or rate file given */

static struct bucket server_rb, server_wb;
static struct rate_handle *handles;     /* open connections */
static ev_timer file_timer;

/* BITSPERSEC: a number with an optional k, M, G or T (powers of 1024). */
static int
parse_rate (const char *value, double *r)
{
  static const char suffixes[] = "kmgt";
  const char *p;
  char *end;
  unsigned long long v;
  double d;

  if (!isdigit ((unsigned char) value[0]))
    return -1;
  errno = 0;
  v = strtoull (value, &end, 10);
  if (errno)
    return -1;
  d = (double) v;
  if (*end) {
    p = strchr (suffixes, tolower ((unsigned char) *end));
    if (!p || end[1])
      return -1;
    d *= (double) (1ULL << (10 * (p - suffixes + 1)));
  }
  if (d > 1e18)
    return -1;
  *r = d;
  return 0;
}

static int
rate_config (const char *key, const char *value)
{
  if (strcmp (key, "rate") == 0 || strcmp (key, "connection-rate") == 0) {
    if (parse_rate (value, strcmp (key, "rate") == 0
                    ? &server_rate : &connection_rate) == -1) {
      nbdkit_error ("%s=%s: not a rate: use bits per second, a number with "
                    "an optional suffix k, M, G or T (e.g. 10M); 0 for "
                    "no limit", key, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "rate-file") == 0 ||
      strcmp (key, "connection-rate-file") == 0) {
    if (!*value) {
      nbdkit_error ("%s=: give the name of a file that holds a rate", key);
      return -1;
    }
    if (strcmp (key, "rate-file") == 0)
      rate_file = value;
    else
      connection_rate_file = value;
    return 0;
  }
  if (strcmp (key, "burstiness") == 0) {
    if (fparse_delay (key, value, &burstiness) == -1)
      return -1;
    if (burstiness <= 0) {
      nbdkit_error ("%s=%s: must be more than 0 seconds", key, value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("%s: unknown parameter of the rate filter", key);
  return -1;
}

/* ---- buckets ---- */

static double
capacity (const struct bucket *b)
{
  double c = b->rate * burstiness;

  return c >= 8 ? c : 8;
}

static void
refill (struct bucket *b)
{
  double now = ev_now (loop);

  if (b->rate > 0) {
    b->tokens += b->rate * (now - b->last);
    if (b->tokens > capacity (b))
      b->tokens = capacity (b);
  }
  b->last = now;
}

/* A request may go when the bucket has its bits, or is full. */
static bool
can_take (const struct bucket *b, double bits)
{
  double need = bits < capacity (b) ? bits : capacity (b);

  return b->rate <= 0 || b->tokens >= need;
}

static void
take (struct bucket *b, double bits)
{
  if (b->rate > 0)
    b->tokens -= bits;
}

static void
arm (struct bucket *b)
{
  double need, secs;

  ev_timer_stop (loop, &b->timer);
  if (!b->head)
    return;
  need = b->head->bits < capacity (b) ? b->head->bits : capacity (b);
  secs = (need - b->tokens) / b->rate;
  ev_timer_set (&b->timer, secs > 0.001 ? secs : 0.001, 0);
  ev_timer_start (loop, &b->timer);
}

static void advance (struct waiter *w);

/* Let go the waiters at the head that can go now. */
static void
release (struct bucket *b)
{
  refill (b);
  while (b->head && can_take (b, b->head->bits)) {
    struct waiter *w = b->head;

    b->head = w->next;
    if (!b->head)
      b->tail = NULL;
    take (b, w->bits);
    w->stage++;
    advance (w);
  }
  arm (b);
}

static void
on_bucket_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  release ((struct bucket *) t);
}

/* Take w through its remaining buckets, then pass its request down. */
static void
advance (struct waiter *w)
{
  while (w->stage < 2) {
    struct bucket *b = w->buckets[w->stage];

    if (b) {
      refill (b);
      if (b->head || !can_take (b, w->bits)) {
        w->next = NULL;
        if (b->tail)
          b->tail->next = w;
        else
          b->head = w;
        b->tail = w;
        if (b->head == w)
          arm (b);
        return;
      }
      take (b, w->bits);
    }
    w->stage++;
  }
  freq_next (w->r);
  free (w);
}

static void
bucket_init (struct bucket *b, double rate)
{
  ev_timer_init (&b->timer, on_bucket_timer, 0, 0);
  b->rate = rate;
  b->tokens = capacity (b);
  b->last = ev_now (loop);
  b->head = b->tail = NULL;
}

static void
bucket_set_rate (struct bucket *b, double rate)
{
  if (b->rate == rate)
    return;
  refill (b);
  if (b->rate <= 0)
    b->tokens = 0;              /* from no limit: start from empty */
  b->rate = rate;
  if (b->tokens > capacity (b))
    b->tokens = capacity (b);
  release (b);
}

/* ---- rate files ---- */

/* The rate in a file, or -1 if the file is missing or not a rate. */
static double
read_rate_file (const char *path)
{
  char buf[64];
  ssize_t n;
  double r;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  char *p;

  if (fd == -1)
    return -1;
  n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  for (p = buf + n; p > buf && isspace ((unsigned char) p[-1]); --p)
    p[-1] = 0;
  for (p = buf; isspace ((unsigned char) *p); ++p)
    ;
  if (parse_rate (p, &r) == -1) {
    nbdkit_debug ("rate filter: %s: \"%s\" is not a rate: ignored", path, p);
    return -1;
  }
  return r;
}

static void
check_rate_files (void)
{
  struct rate_handle *h;
  double r;

  if (rate_file && (r = read_rate_file (rate_file)) >= 0 &&
      r != server_rate) {
    server_rate = r;
    bucket_set_rate (&server_rb, r);
    bucket_set_rate (&server_wb, r);
  }
  if (connection_rate_file &&
      (r = read_rate_file (connection_rate_file)) >= 0 &&
      r != connection_rate) {
    connection_rate = r;
    for (h = handles; h; h = h->next) {
      bucket_set_rate (&h->rb, r);
      bucket_set_rate (&h->wb, r);
    }
  }
}

static void
on_file_timer (struct ev_loop *l, ev_timer *t, int revents)
{
  check_rate_files ();
}

static int
rate_get_ready (void)
{
  active = server_rate > 0 || connection_rate > 0 || rate_file ||
    connection_rate_file;
  if (rate_file) {
    double r = read_rate_file (rate_file);
    if (r >= 0)
      server_rate = r;
  }
  if (connection_rate_file) {
    double r = read_rate_file (connection_rate_file);
    if (r >= 0)
      connection_rate = r;
  }
  bucket_init (&server_rb, server_rate);
  bucket_init (&server_wb, server_rate);
  if (rate_file || connection_rate_file) {
    ev_timer_init (&file_timer, on_file_timer, RATE_FILE_INTERVAL,
                   RATE_FILE_INTERVAL);
    ev_timer_start (loop, &file_timer);
  }
  return 0;
}

static void
rate_unload (void)
{
  ev_timer_stop (loop, &file_timer);
  ev_timer_stop (loop, &server_rb.timer);
  ev_timer_stop (loop, &server_wb.timer);
}

/* ---- connections and requests ---- */

static void
rate_open (struct fopen *o)
{
  struct rate_handle *h;

  if (!active) {
    fopen_done (o, NULL);
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  bucket_init (&h->rb, connection_rate);
  bucket_init (&h->wb, connection_rate);
  h->prev = NULL;
  h->next = handles;
  if (handles)
    handles->prev = h;
  handles = h;
  fopen_done (o, h);
}

static void
rate_close (void *handle)
{
  struct rate_handle *h = handle;

  if (!h)
    return;
  /* No request is in flight, so none waits. */
  ev_timer_stop (loop, &h->rb.timer);
  ev_timer_stop (loop, &h->wb.timer);
  if (h->prev)
    h->prev->next = h->next;
  else
    handles = h->next;
  if (h->next)
    h->next->prev = h->prev;
  free (h);
}

static void
limit (struct rate_handle *h, struct freq *r, bool write)
{
  struct waiter *w;

  if (!h || !(w = malloc (sizeof *w))) {
    freq_next (r);              /* no limit, or no memory to wait */
    return;
  }
  w->r = r;
  w->bits = (double) r->count * 8;
  w->buckets[0] = write ? &h->wb : &h->rb;
  w->buckets[1] = write ? &server_wb : &server_rb;
  w->stage = 0;
  w->next = NULL;
  advance (w);
}

static void
rate_pread (void *handle, struct freq *r)
{
  limit (handle, r, false);
}

static void
rate_pwrite (void *handle, struct freq *r)
{
  limit (handle, r, true);
}

static const char *const keys[] = {
  "rate", "connection-rate", "rate-file", "connection-rate-file",
  "burstiness", NULL
};

const struct filter rate_filter = {
  .name = "rate",
  .description = "limit the bandwidth, per connection or for the server",
  .config_help =
    "rate=BITSPERSEC              limit reads and writes of the whole\n"
    "                             server (e.g. 10M; k, M, G: 1024s)\n"
    "connection-rate=BITSPERSEC   limit each connection\n"
    "rate-file=FILE               read the server's rate from FILE,\n"
    "                             every second\n"
    "connection-rate-file=FILE    read each connection's rate from FILE\n"
    "burstiness=SECS              how many seconds of unused bandwidth\n"
    "                             may be saved up (default 2)",
  .keys = keys,
  .config = rate_config,
  .get_ready = rate_get_ready,
  .unload = rate_unload,
  .open = rate_open,
  .close = rate_close,
  .pread = rate_pread,
  .pwrite = rate_pwrite,
};
