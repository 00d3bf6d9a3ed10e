/* filters/scan.c: prefetch the whole disk in the background while a
 * client is connected (nbdkit-scan-filter(1)).
 *
 * When a connection opens the default export, the filter walks the
 * disk from the start (or, with scan-clock=true, the default, from
 * where the last scan of any connection had got to) in steps of
 * scan-size bytes, sending each step below as a cache request
 * (NBD_CMD_CACHE) -- or as a read whose data is thrown away when the
 * layer below cannot cache.  With scan-ahead=true (the default), a
 * client's read beyond the scan makes it skip forward to the end of
 * that read.  At the end of the disk it stops, or with
 * scan-forever=true starts over.
 *
 * nbdkit runs this in a thread per connection; here the scan is
 * sub-requests sent from the loop, never waited for: at most
 * SCAN_INFLIGHT of a connection in flight, and none started while a
 * request of the client is in flight (the filter passes the client's
 * requests down as sub-requests to see them answered), so the scan
 * uses only the time the client leaves.  It stops when the client lets
 * the export go (fnext_closed) or the server stops.  As nbdkit's, it
 * does nothing (and says so) for an export other than the default one
 * or over a backend whose thread model is not parallel.
 *
 * Owns the parameters and the scan clock (static, shared by all
 * connections as nbdkit's) and each connection's scan state.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define SCAN_INFLIGHT 2         /* scan requests of a connection at once */
#define SCAN_SIZE_MIN 512
#define SCAN_SIZE_MAX (32 * 1024 * 1024)

static bool scan_ahead = true, scan_clock = true, scan_forever = false;
static int64_t scan_size = 2 * 1024 * 1024;

/* Where the scan had got to: the offset of the last step sent. */
static uint64_t scan_clock_offset;

struct scan_handle {
  struct fnext *next;
  uint64_t size;
  uint64_t offset;              /* the next step to send */
  bool running;                 /* scanning: not finished, not stopped */
  bool use_cache;               /* else reads */
  unsigned inflight;            /* scan requests in flight */
  unsigned client;              /* client requests in flight */
};

/* A client request passed down, to see its reply. */
struct client_req {
  struct scan_handle *h;
  struct freq *r;
};

static int
scan_config (const char *key, const char *value)
{
  if (strcmp (key, "scan-ahead") == 0)
    return fparse_bool (key, value, &scan_ahead);
  if (strcmp (key, "scan-clock") == 0)
    return fparse_bool (key, value, &scan_clock);
  if (strcmp (key, "scan-forever") == 0)
    return fparse_bool (key, value, &scan_forever);
  /* scan-size */
  if (fparse_size (key, value, &scan_size) == -1)
    return -1;
  if (scan_size < SCAN_SIZE_MIN || scan_size > SCAN_SIZE_MAX ||
      (scan_size & (scan_size - 1)) != 0) {
    nbdkit_error ("scan-size=%s: must be a power of two from 512 to 32M "
                  "(e.g. 64k, 2M)", value);
    return -1;
  }
  return 0;
}

/* ---- the scan ---- */

static void pump (struct scan_handle *h);

static void
on_step (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct scan_handle *h = opaque;

  /* A prefetch only: an error is not the client's. */
  if (!reply || reply->status)
    nbdkit_debug ("scan: a prefetch failed: %s",
                  payload ? (const char *) payload : "no reply");
  payload_free (payload);
  h->inflight--;
  pump (h);
}

/* Send steps while there is room and the client is not waiting. */
static void
pump (struct scan_handle *h)
{
  while (h->running && h->inflight < SCAN_INFLIGHT && h->client == 0) {
    uint64_t n;

    if (fnext_closed (h->next) || server_quitting ()) {
      nbdkit_debug ("scan: the connection is closing: the scan stops");
      h->running = false;
      return;
    }
    if (h->offset >= h->size) {
      if (!scan_forever) {
        nbdkit_debug ("scan: finished scanning the disk");
        h->running = false;
        return;
      }
      scan_clock_offset = 0;
      h->offset = 0;
    }
    if (scan_clock_offset < h->offset)
      scan_clock_offset = h->offset;
    n = h->size - h->offset < (uint64_t) scan_size ? h->size - h->offset
      : (uint64_t) scan_size;
    h->inflight++;
    fnext_request (h->next, h->use_cache ? HP_CACHE : HP_PREAD, 0,
                   h->offset, (uint32_t) n, NULL, on_step, h);
    h->offset += n;
  }
}

static void
scan_open (struct fopen *o)
{
  struct scan_handle *h = calloc (1, sizeof *h);

  if (!h) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  h->next = o->next;
  h->size = o->caps->size;
  h->use_cache = o->caps->can_cache;
  if (strcmp (o->export, "") != 0)
    nbdkit_error ("scan: warning: not the default export, not scanning");
  else if (server_thread_model () != 3)
    nbdkit_error ("scan: warning: the backend's thread model is not "
                  "parallel, not scanning");
  else if (h->size > 0) {
    if (!h->use_cache)
      nbdkit_debug ("scan: the layer below cannot cache: scanning with "
                    "reads (add --filter=cache after this filter to keep "
                    "what is read)");
    h->running = true;
    h->offset = scan_clock ? scan_clock_offset : 0;
  }
  fopen_done (o, h);
  pump (h);
}

static void
scan_close (void *handle)
{
  free (handle);                /* nothing of ours is in flight now */
}

/* ---- the client's requests ---- */

static void
on_client_reply (void *opaque, const struct hp_header *reply, void *payload,
                 uint32_t len)
{
  struct client_req *c = opaque;
  struct scan_handle *h = c->h;

  freq_reply_from (c->r, reply, payload, len);
  free (c);
  h->client--;
  pump (h);
}

static void
scan_request (void *handle, struct freq *r)
{
  struct scan_handle *h = handle;
  struct client_req *c;
  void *data;

  if (r->type == HP_PREAD && scan_ahead && h->running &&
      h->offset < r->offset + r->count)
    h->offset = r->offset + r->count;   /* skip ahead of the client */
  if (!h->running || !(c = malloc (sizeof *c))) {
    freq_next (r);              /* no scan to make room for */
    return;
  }
  c->h = h;
  c->r = r;
  h->client++;
  data = r->data;
  r->data = NULL;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_client_reply, c);
}

static const char *const keys[] = {
  "scan-ahead", "scan-clock", "scan-forever", "scan-size", NULL
};

const struct filter scan_filter = {
  .name = "scan",
  .description = "prefetch the whole disk in the background",
  .config_help =
    "scan-ahead=false     do not skip ahead when the client reads past\n"
    "                     the scan\n"
    "scan-clock=false     always start scanning at the beginning\n"
    "scan-forever=true    scan again and again while a client is there\n"
    "scan-size=NN         the size of each prefetch (a power of two,\n"
    "                     512 to 32M; default 2M)",
  .keys = keys,
  .config = scan_config,
  .open = scan_open,
  .close = scan_close,
  .pread = scan_request,
  .pwrite = scan_request,
  .flush = scan_request,
  .trim = scan_request,
  .zero = scan_request,
  .cache = scan_request,
  .extents = scan_request,
};
