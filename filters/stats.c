/* filters/stats.c: count and time the requests, and write the totals
 * to a file when the server exits (nbdkit-stats-filter(1)).
 *
 * Owns the statistics of the whole server (static here) and the stats
 * file, opened at get_ready (so that a bad path fails at start) and
 * written at unload.  Every request passes through as a sub-request:
 * the time from its arrival here to its reply from below is what is
 * counted, with the bytes it covered, for the requests that succeed.
 *
 * With statsthreshold= above 0, reads, writes, trims and zeroes are
 * also sorted by size (the power of 2 at or below the count) and, within
 * a size, by alignment (the trailing zero bits of the offset).
 */

#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

/* Sizes are grouped by floor(log2 (count)): 0..31 for a 32 bit count.
 * Alignment is the number of trailing zero bits of the offset, 0..63,
 * and 64 for offset 0.
 */
#define SIZE_GROUPS 32
#define ALIGNMENTS 65

enum { S_READ, S_WRITE, S_TRIM, S_ZERO, S_EXTENTS, S_CACHE, S_FLUSH, NR_S };

static const char *const stat_names[NR_S] = {
  "read", "write", "trim", "zero", "extents", "cache", "flush",
};

struct opstat {
  uint64_t ops;
  uint64_t bytes;
  double secs;                  /* summed over the requests */
  /* The histogram (read, write, trim, zero). */
  uint64_t size_ops[SIZE_GROUPS];
  uint64_t size_bytes[SIZE_GROUPS];
  uint64_t align_ops[SIZE_GROUPS][ALIGNMENTS];
};

static struct opstat stats[NR_S];
static const char *statsfile;
static bool statsappend;
static unsigned threshold = 95;         /* percent */
static FILE *statsfp;
static double started;

static int
stats_config (const char *key, const char *value)
{
  if (strcmp (key, "statsfile") == 0) {
    if (!*value) {
      nbdkit_error ("statsfile=: give the name of the file to write the "
                    "statistics to");
      return -1;
    }
    statsfile = value;
    return 0;
  }
  if (strcmp (key, "statsappend") == 0)
    return fparse_bool (key, value, &statsappend);
  if (strcmp (key, "statsthreshold") == 0)
    return fparse_uint (key, value, 100, &threshold);
  nbdkit_error ("%s: unknown parameter of the stats filter", key);
  return -1;
}

static int
stats_config_complete (void)
{
  if (!statsfile) {
    nbdkit_error ("the stats filter needs statsfile=FILE (where the "
                  "statistics are written at exit)");
    return -1;
  }
  return 0;
}

static int
stats_get_ready (void)
{
  int fd = open (statsfile, O_WRONLY | O_CREAT | O_CLOEXEC |
                 (statsappend ? O_APPEND : O_TRUNC), 0666);

  if (fd == -1) {
    nbdkit_error ("statsfile=%s: cannot open it for writing: %m", statsfile);
    return -1;
  }
  statsfp = fdopen (fd, statsappend ? "a" : "w");
  if (!statsfp) {
    nbdkit_error ("statsfile=%s: fdopen: %m", statsfile);
    close (fd);
    return -1;
  }
  started = ev_time ();
  return 0;
}

/* ---- the report ---- */

/* "0 bytes", "512 bytes", "3.16 MiB"; suffix "/s" for a rate. */
static void
put_human (FILE *fp, double v, const char *suffix)
{
  static const char *const units[] = {
    "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
  };
  int u = -1;

  if (v < 1024) {
    fprintf (fp, "%.0f bytes%s", v, suffix);
    return;
  }
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  fprintf (fp, "%.2f %s%s", v, units[u], suffix);
}

static double
rate (uint64_t bytes, double secs)
{
  return secs > 0 ? (double) bytes / secs : 0;
}

static void
put_alignments (FILE *fp, const struct opstat *s, int g)
{
  uint64_t total = s->size_ops[g];
  uint64_t cum[ALIGNMENTS + 1], prev;
  int a, least = 0;

  /* cum[a]: the requests with at least a trailing zero bits. */
  cum[ALIGNMENTS] = 0;
  for (a = ALIGNMENTS - 1; a >= 0; --a)
    cum[a] = cum[a + 1] + s->align_ops[g][a];
  while (least < ALIGNMENTS - 1 && s->align_ops[g][least] == 0)
    least++;
  /* Every request is at least this aligned; then each level where
   * fewer are, down to the rare rest that the threshold leaves out.
   */
  prev = 0;
  for (a = least; a < ALIGNMENTS && cum[a] > 0; ++a) {
    if (cum[a] == prev)
      continue;
    if (a != least &&
        (double) cum[a] * 100 < (double) total * (100 - threshold))
      break;
    fprintf (fp, "         %2d bit aligned: %5.1f%% (%" PRIu64 ")\n",
             a, 100.0 * (double) cum[a] / (double) total, cum[a]);
    prev = cum[a];
  }
}

static void
put_histogram (FILE *fp, const struct opstat *s)
{
  bool done[SIZE_GROUPS] = { false };
  uint64_t shown = 0, shown_bytes = 0;
  int i;

  fprintf (fp, "  Request size and alignment breakdown:\n");
  /* The most frequent sizes first, until threshold% are shown. */
  for (i = 0; i < SIZE_GROUPS; ++i) {
    int g, best = -1;

    if ((double) shown * 100 >= (double) s->ops * threshold)
      break;
    for (g = 0; g < SIZE_GROUPS; ++g)
      if (!done[g] && s->size_ops[g] &&
          (best == -1 || s->size_ops[g] > s->size_ops[best]))
        best = g;
    if (best == -1)
      break;
    done[best] = true;
    fprintf (fp, "    %2d bits: %5.1f%% (%" PRIu64 " reqs, ", best,
             100.0 * (double) s->size_ops[best] / (double) s->ops,
             s->size_ops[best]);
    put_human (fp, (double) s->size_bytes[best], " total)\n");
    put_alignments (fp, s, best);
    shown += s->size_ops[best];
    shown_bytes += s->size_bytes[best];
  }
  if (shown < s->ops) {
    fprintf (fp, "    other sizes: %5.1f%% (%" PRIu64 " reqs, ",
             100.0 * (double) (s->ops - shown) / (double) s->ops,
             s->ops - shown);
    put_human (fp, (double) (s->bytes - shown_bytes), " total)\n");
  }
}

static void
stats_unload (void)
{
  double elapsed;
  uint64_t ops = 0, bytes = 0;
  int i;

  if (!statsfp)
    return;
  elapsed = ev_time () - started;
  for (i = 0; i < NR_S; ++i) {
    ops += stats[i].ops;
    bytes += stats[i].bytes;
  }
  fprintf (statsfp, "total: %" PRIu64 " ops, %.6f s, ", ops, elapsed);
  put_human (statsfp, (double) bytes, ", ");
  put_human (statsfp, rate (bytes, elapsed), "/s\n");
  for (i = 0; i < NR_S; ++i) {
    const struct opstat *s = &stats[i];

    if (s->ops == 0)
      continue;
    fprintf (statsfp, "%s: %" PRIu64 " ops, %.6f s, ", stat_names[i],
             s->ops, s->secs);
    put_human (statsfp, (double) s->bytes, ", ");
    put_human (statsfp, rate (s->bytes, s->secs), "/s op, ");
    put_human (statsfp, rate (s->bytes, elapsed), "/s total\n");
    if (threshold > 0 && i <= S_ZERO) {
      put_histogram (statsfp, s);
      fputc ('\n', statsfp);
    }
  }
  if (fclose (statsfp) == EOF)
    nbdkit_error ("statsfile=%s: writing the statistics failed: %m",
                  statsfile);
  statsfp = NULL;
}

/* ---- requests ---- */

struct timed {
  struct freq *r;
  double start;
};

static int
stat_of (uint16_t type)
{
  switch (type) {
  case HP_PREAD: return S_READ;
  case HP_PWRITE: return S_WRITE;
  case HP_TRIM: return S_TRIM;
  case HP_ZERO: return S_ZERO;
  case HP_EXTENTS: return S_EXTENTS;
  case HP_CACHE: return S_CACHE;
  default: return S_FLUSH;
  }
}

static int
log2_floor (uint32_t v)
{
  int b = 0;

  while (v >>= 1)
    b++;
  return b;
}

static void
record (const struct freq *r, double secs)
{
  int i = stat_of (r->type);
  struct opstat *s = &stats[i];

  s->ops++;
  s->secs += secs;
  if (i == S_FLUSH)
    return;
  s->bytes += r->count;
  if (threshold > 0 && i <= S_ZERO && r->count > 0) {
    int g = log2_floor (r->count);
    int a = r->offset ? __builtin_ctzll (r->offset) : 64;

    s->size_ops[g]++;
    s->size_bytes[g] += r->count;
    s->align_ops[g][a]++;
  }
}

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct timed *t = opaque;

  if (reply && reply->status == 0)
    record (t->r, ev_time () - t->start);
  freq_reply_from (t->r, reply, payload, len);
  free (t);
}

static void
stats_request (void *handle, struct freq *r)
{
  struct timed *t = malloc (sizeof *t);
  void *data;

  if (!t) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  t->r = r;
  t->start = ev_time ();
  data = r->data;
  r->data = NULL;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, t);
}

static const char *const keys[] = {
  "statsfile", "statsappend", "statsthreshold", NULL
};

const struct filter stats_filter = {
  .name = "stats",
  .description = "count and time requests, written to a file at exit",
  .config_help =
    "statsfile=FILE      (required) where the statistics are written at exit\n"
    "statsappend=BOOL    append to the file (default false: replace it)\n"
    "statsthreshold=PCT  show request sizes and alignments covering this\n"
    "                    percentage of requests (0-100, default 95; 0: none)",
  .keys = keys,
  .config = stats_config,
  .config_complete = stats_config_complete,
  .get_ready = stats_get_ready,
  .unload = stats_unload,
  .pread = stats_request,
  .pwrite = stats_request,
  .flush = stats_request,
  .trim = stats_request,
  .zero = stats_request,
  .cache = stats_request,
  .extents = stats_request,
};
