/* filters/gzip.c: serve the uncompressed contents of a gzip file
 * (nbdkit-gzip-filter(1)), read-only.
 *
 * gzip cannot be read at random, so, as nbdkit does, the whole file is
 * decompressed once, at the first open, into a temporary file (made at
 * get_ready, already unlinked), and every read is served from it.  The
 * decompression never blocks the loop: compressed chunks are read from
 * the layer below (fnext_request), inflated on a worker thread
 * (worker_submit) a bounded piece at a time, and each piece written to
 * the temporary file (tmpfile_io_async) before the next is made.  Opens
 * that arrive meanwhile wait for the same result.  Concatenated gzip
 * members are decompressed one after the other, as gzip -d does.
 *
 * Without zlib (HAVE_ZLIB undefined) the filter exists but refuses to
 * start, saying why.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_ZLIB
#include <zlib.h>
#endif

#include "filter.h"

#ifndef HAVE_ZLIB

static int
gzip_config_complete (void)
{
  nbdkit_error ("the gzip filter is not available: this nbdkit was built "
                "without zlib (install zlib1g-dev, then run configure and "
                "make again)");
  return -1;
}

#else /* HAVE_ZLIB */

/* Compressed bytes read from below at a time, as nbdkit does (well
 * under the protocol's HP_MAX_DATA), and the most a worker inflates
 * in one go: a small input can expand a thousand times, so the output
 * is bounded, not the input.
 */
#define IN_CHUNK (4u * 1024 * 1024)
#define OUT_CHUNK (4u * 1024 * 1024)

static int fd = -1;             /* the temporary file */

static int
gzip_config_complete (void)
{
  return 0;
}

static int
gzip_get_ready (void)
{
  fd = tmpfile_create ("gzip", "uncompressed copy");
  return fd == -1 ? -1 : 0;
}

static void
gzip_unload (void)
{
  if (fd >= 0)
    tmpfile_close (fd);
  fd = -1;
}

/* An open waiting for the decompression. */
struct waiter {
  struct waiter *next;
  struct fopen *o;
};

/* The decompression: none yet, running, done (size known).  A failed
 * one goes back to none, so that the next open tries again.
 */
static enum { GZ_NONE, GZ_RUNNING, GZ_DONE } state = GZ_NONE;
static uint64_t size;           /* uncompressed, once GZ_DONE */
static struct waiter *waiters;

struct gz {
  struct fnext *next;           /* of the open that started it */
  uint64_t csize, cpos;         /* compressed: size, read so far */
  unsigned char *in;            /* the chunk being inflated */
  uint32_t in_len;
  z_stream strm;
  bool strm_ready;
  unsigned char *out;           /* OUT_CHUNK bytes */
  uint64_t upos;                /* uncompressed bytes written */
  unsigned members;             /* gzip members finished */
  bool between;                 /* a member ended: another may follow */
  bool finished;                /* the last member ended */
  uint64_t trailing;            /* bytes ignored after the last member */
  /* Set by the worker (the loop reads them after): */
  size_t out_len;
  int zerr;
  const char *zmsg;
};

static void
gz_free (struct gz *g)
{
  if (g->strm_ready)
    inflateEnd (&g->strm);
  payload_free (g->in);
  free (g->out);
  free (g);
}

/* Every waiting open gets the result. */
static void
finish (struct gz *g, uint32_t status, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
finish (struct gz *g, uint32_t status, const char *fmt, ...)
{
  struct waiter *w, *list = waiters;
  char msg[512] = "";

  if (status) {
    va_list args;

    va_start (args, fmt);
    vsnprintf (msg, sizeof msg, fmt, args);
    va_end (args);
    nbdkit_error ("gzip filter: %s", msg);
    /* What was written stays until the next attempt writes over it:
     * truncating it now could race with that attempt's writes.
     */
    state = GZ_NONE;
  }
  else {
    state = GZ_DONE;
    size = g->upos;
    nbdkit_debug ("gzip: %u member(s), %" PRIu64 " compressed bytes, "
                  "uncompressed size %" PRIu64, g->members, g->csize, size);
    if (g->trailing)
      nbdkit_debug ("gzip: %" PRIu64 " bytes after the last member were "
                    "ignored", g->trailing);
  }
  waiters = NULL;
  gz_free (g);
  while (list) {
    w = list;
    list = w->next;
    if (status)
      fopen_fail (w->o, status, msg);
    else {
      struct export_caps *c = w->o->caps;

      c->size = size;
      c->can_write = c->can_trim = c->can_zero = c->can_fast_zero = false;
      c->can_fua = false;        /* can_flush as below, as in nbdkit */
      c->can_extents = false;
      c->can_cache = true;      /* all of it is local already */
      c->can_multi_conn = true;
      c->block_min = c->block_pref = c->block_max = 0;
      fopen_done (w->o, NULL);
    }
    free (w);
  }
}

/* On a worker thread: inflate what is left of g->in into g->out, until
 * the input is used up, the output is full or the last member ends.
 * Touches only g's buffers, stream and worker fields.
 */
static void
inflate_work (void *arg)
{
  struct gz *g = arg;
  z_stream *s = &g->strm;

  g->zerr = Z_OK;
  g->zmsg = NULL;
  s->next_out = g->out;
  s->avail_out = OUT_CHUNK;
  while (s->avail_in > 0 && s->avail_out > 0) {
    int r;

    if (g->between) {
      /* After a member: another begins with the magic bytes; anything
       * else is trailing garbage (or zeros), which gzip -d ignores.
       */
      if (s->next_in[0] != 0x1f ||
          (s->avail_in >= 2 && s->next_in[1] != 0x8b)) {
        g->finished = true;
        break;
      }
      if (inflateReset (s) != Z_OK) {
        g->zerr = Z_STREAM_ERROR;
        break;
      }
      g->between = false;
    }
    r = inflate (s, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
      g->members++;
      g->between = true;
      continue;
    }
    if (r != Z_OK) {
      /* Z_BUF_ERROR cannot happen here: there is input and room. */
      g->zerr = r;
      g->zmsg = s->msg;
      break;
    }
  }
  g->out_len = OUT_CHUNK - s->avail_out;
}

static void read_chunk (struct gz *g);
static void inflate_done (void *arg);

/* The output of one piece is written: go on. */
static void
go_on (struct gz *g)
{
  if (g->finished) {
    g->trailing = g->csize - g->cpos + g->strm.avail_in;
    finish (g, 0, NULL);
  }
  else if (g->strm.avail_in > 0)
    worker_submit (inflate_work, inflate_done, g);
  else if (g->cpos < g->csize)
    read_chunk (g);
  else if (g->between)
    finish (g, 0, NULL);        /* the file ends after a member */
  else
    finish (g, HP_EIO, "the gzip data is truncated: the file ends "
            "(%" PRIu64 " bytes) inside a compressed member, after %"
            PRIu64 " uncompressed bytes", g->csize, g->upos);
}

static void
on_written (void *opaque, int err)
{
  struct gz *g = opaque;

  if (err) {
    finish (g, err == ENOSPC ? HP_ENOSPC : HP_EIO, "writing the "
            "uncompressed copy at offset %" PRIu64 ": %s (set TMPDIR to a "
            "file system with more room)", g->upos, strerror (err));
    return;
  }
  g->upos += g->out_len;
  go_on (g);
}

/* Back on the loop: write what was inflated. */
static void
inflate_done (void *arg)
{
  struct gz *g = arg;

  if (g->zerr != Z_OK) {
    if (g->zerr == Z_MEM_ERROR)
      finish (g, HP_ENOMEM, "out of memory decompressing");
    else
      finish (g, HP_EIO, "the gzip data is corrupt near compressed offset "
              "%" PRIu64 ", after %" PRIu64 " uncompressed bytes: %s",
              g->cpos - g->strm.avail_in, g->upos + g->out_len,
              g->zmsg ? g->zmsg : "zlib error");
    return;
  }
  if (g->out_len > (uint64_t) INT64_MAX - g->upos) {
    finish (g, HP_EIO, "the uncompressed data is larger than a disk can "
            "be (2^63 bytes)");
    return;
  }
  if (g->out_len == 0) {
    go_on (g);
    return;
  }
  tmpfile_io_async (fd, true, g->out, g->out_len, g->upos, on_written, g);
}

static void
on_chunk (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct gz *g = opaque;
  uint64_t want = g->csize - g->cpos < IN_CHUNK ? g->csize - g->cpos
    : IN_CHUNK;

  if (!reply || reply->status) {
    char why[256];

    snprintf (why, sizeof why, "%s",
              reply && payload && len ? (const char *) payload : "error");
    payload_free (payload);
    finish (g, HP_EIO, "could not read the gzip file at offset %" PRIu64
            ": %s", g->cpos, why);
    return;
  }
  if (len != want) {
    payload_free (payload);
    finish (g, HP_EIO, "a short read of the gzip file at offset %" PRIu64,
            g->cpos);
    return;
  }
  if (g->cpos == 0 && (len < 2 || ((unsigned char *) payload)[0] != 0x1f ||
                       ((unsigned char *) payload)[1] != 0x8b)) {
    payload_free (payload);
    finish (g, HP_EINVAL, "not a gzip file (it does not start with the "
            "gzip magic bytes 1f 8b)");
    return;
  }
  payload_free (g->in);
  g->in = payload;
  g->in_len = len;
  g->cpos += len;
  g->strm.next_in = g->in;
  g->strm.avail_in = len;
  worker_submit (inflate_work, inflate_done, g);
}

static void
read_chunk (struct gz *g)
{
  uint64_t n = g->csize - g->cpos < IN_CHUNK ? g->csize - g->cpos
    : IN_CHUNK;

  payload_free (g->in);
  g->in = NULL;
  fnext_request (g->next, HP_PREAD, 0, g->cpos, (uint32_t) n, NULL,
                 on_chunk, g);
}

static void
start (struct fopen *o)
{
  struct gz *g = calloc (1, sizeof *g);
  int r;

  state = GZ_RUNNING;
  if (!g || !(g->out = malloc (OUT_CHUNK))) {
    if (g)
      free (g);
    g = NULL;
    goto nomem;
  }
  g->next = o->next;
  g->csize = o->caps->size;
  r = inflateInit2 (&g->strm, 16 + MAX_WBITS);  /* gzip framing only */
  if (r != Z_OK) {
    free (g->out);
    free (g);
    goto nomem;
  }
  g->strm_ready = true;
  if (g->csize == 0) {
    finish (g, HP_EINVAL, "not a gzip file: the file is empty");
    return;
  }
  read_chunk (g);
  return;

 nomem:
  {
    struct waiter *w, *list = waiters;

    state = GZ_NONE;
    waiters = NULL;
    nbdkit_error ("gzip filter: out of memory");
    while (list) {
      w = list;
      list = w->next;
      fopen_fail (w->o, HP_ENOMEM, "gzip filter: out of memory");
      free (w);
    }
  }
}

static void
gzip_open (struct fopen *o)
{
  struct waiter *w;

  if (state == GZ_DONE) {
    struct export_caps *c = o->caps;

    c->size = size;
    c->can_write = c->can_trim = c->can_zero = c->can_fast_zero = false;
    c->can_fua = false;          /* can_flush as below, as in nbdkit */
    c->can_extents = false;
    c->can_cache = true;
    c->can_multi_conn = true;
    c->block_min = c->block_pref = c->block_max = 0;
    fopen_done (o, NULL);
    return;
  }
  w = malloc (sizeof *w);
  if (!w) {
    nbdkit_error ("gzip filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "gzip filter: out of memory");
    return;
  }
  w->o = o;
  w->next = waiters;
  waiters = w;
  if (state == GZ_NONE)
    start (o);
}

/* A read from the temporary file. */
struct gread {
  struct freq *r;
  unsigned char *buf;
};

static void
on_read (void *opaque, int err)
{
  struct gread *rd = opaque;

  if (err) {
    nbdkit_error ("gzip filter: reading the uncompressed copy: %s",
                  strerror (err));
    freq_reply_error (rd->r, err == ENOMEM ? HP_ENOMEM : HP_EIO,
                      "reading the uncompressed copy failed");
    free (rd->buf);
  }
  else
    freq_reply (rd->r, rd->buf, rd->r->count, 0);
  free (rd);
}

static void
gzip_pread (void *handle, struct freq *r)
{
  struct gread *rd;

  if (r->offset > size || r->count > size - r->offset) {
    freq_reply_error (r, HP_EINVAL, "the read goes beyond the end of the "
                      "uncompressed disk");
    return;
  }
  rd = malloc (sizeof *rd);
  if (!rd || !(rd->buf = malloc (r->count ? r->count : 1))) {
    free (rd);
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  rd->r = r;
  tmpfile_io_async (fd, false, rd->buf, r->count, r->offset, on_read, rd);
}

static void
gzip_cache (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* the data is in the local copy */
}

static void
gzip_readonly (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EPERM, "the gzip filter is read-only");
}

static void
gzip_flush (void *handle, struct freq *r)
{
  freq_reply (r, NULL, 0, 0);   /* nothing is ever written */
}

#endif /* HAVE_ZLIB */

const struct filter gzip_filter = {
  .name = "gzip",
  .description = "serve the uncompressed contents of a gzip file "
                 "(read-only)",
  .config_help = NULL,
  .config_complete = gzip_config_complete,
#ifdef HAVE_ZLIB
  .get_ready = gzip_get_ready,
  .unload = gzip_unload,
  .readonly_below = true,
  .open = gzip_open,
  .pread = gzip_pread,
  .pwrite = gzip_readonly,
  .flush = gzip_flush,
  .trim = gzip_readonly,
  .zero = gzip_readonly,
  .cache = gzip_cache,
#endif
};
