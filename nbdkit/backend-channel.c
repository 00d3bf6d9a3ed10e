/* nbdkit front end: the channel to the backend process.
 *
 * Owns the socketpair end, the queue of frames to send, the reader of
 * frames coming back and the table of requests in flight (by id).
 * Every reply is validated (hp_decode_header, then hp_check_reply
 * against the request it claims to answer) before its payload is even
 * allocated.  A backend that breaks the protocol is killed; every
 * request then in flight completes with EIO.  Each request completes
 * exactly once.
 */

#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "buffer.h"

struct pending {
  struct pending *next;         /* hash chain */
  struct hp_header req;         /* as sent */
  backend_cb cb;
  void *opaque;
};

static int chan_fd = -1;
static ev_io rio, wio;
static struct inbuf in;
static struct outq out;
static uint64_t next_id = 1;

/* Requests in flight, hashed by id (ids are sequential). */
static struct pending **table;
static size_t table_size, nr_pending;

/* The reply being read. */
static unsigned char rhdr[HP_HEADER_SIZE];
static size_t rhdr_got;
static struct hp_header cur;
static struct pending *cur_req;
static unsigned char *rpayload;
static uint32_t rpayload_got;

#define INBUF_SIZE (256 * 1024)

size_t
channel_in_flight (void)
{
  return nr_pending;
}

static int
table_grow (void)
{
  size_t i, n = table_size ? table_size * 2 : 256;
  struct pending **t = calloc (n, sizeof *t);

  if (!t)
    return -1;
  for (i = 0; i < table_size; ++i) {
    struct pending *p, *next;

    for (p = table[i]; p; p = next) {
      next = p->next;
      p->next = t[p->req.id & (n - 1)];
      t[p->req.id & (n - 1)] = p;
    }
  }
  free (table);
  table = t;
  table_size = n;
  return 0;
}

static struct pending *
table_remove (uint64_t id)
{
  struct pending **pp;

  if (!table_size)
    return NULL;
  for (pp = &table[id & (table_size - 1)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->req.id == id) {
      struct pending *p = *pp;

      *pp = p->next;
      nr_pending--;
      return p;
    }
  }
  return NULL;
}

static void
complete (struct pending *p, const struct hp_header *reply,
          void *payload, uint32_t len)
{
  p->cb (p->opaque, reply, payload, len);
  free (p);
}

/* Fail everything in flight with EIO (reply NULL). */
static void
fail_all (void)
{
  size_t i;

  for (i = 0; i < table_size; ++i) {
    struct pending *p;

    while ((p = table[i]) != NULL) {
      table[i] = p->next;
      nr_pending--;
      complete (p, NULL, NULL, 0);
    }
  }
}

/* The backend broke the protocol or went away. */
static void
channel_broken (const char *why)
{
  if (chan_fd == -1)
    return;
  if (why) {
    nbdkit_error ("%s: backend protocol error: %s; stopping the backend",
                  binfo.name ? binfo.name : opt.backend_name, why);
    if (backend_pid () > 0)
      kill (backend_pid (), SIGKILL);
  }
  channel_close ();
}

void
channel_close (void)
{
  if (chan_fd == -1)
    return;
  ev_io_stop (loop, &rio);
  ev_io_stop (loop, &wio);
  close (chan_fd);
  chan_fd = -1;
  outq_clear (&out);
  inbuf_free (&in);
  free (rpayload);
  rpayload = NULL;
  if (cur_req) {
    struct pending *p = cur_req;

    cur_req = NULL;
    complete (p, NULL, NULL, 0);
  }
  fail_all ();
}

/* Parse as many replies as the buffered bytes allow; read large
 * payloads straight into their buffer.  Returns -1 if the channel was
 * closed.
 */
static int
process_input (void)
{
  const char *why;

  for (;;) {
    if (!cur_req) {
      rhdr_got += inbuf_take (&in, rhdr + rhdr_got, HP_HEADER_SIZE - rhdr_got);
      if (rhdr_got < HP_HEADER_SIZE)
        return 0;
      rhdr_got = 0;
      if (hp_decode_header (rhdr, &cur, &why) == -1) {
        channel_broken (why);
        return -1;
      }
      cur_req = table_remove (cur.id);
      if (!cur_req) {
        channel_broken ("a reply to a request id that is not in flight");
        return -1;
      }
      if (hp_check_reply (&cur_req->req, &cur, &why) == -1) {
        channel_broken (why);
        return -1;
      }
      rpayload_got = 0;
      if (cur.payload_len) {
        /* One spare byte lets JSON and messages be NUL-terminated. */
        rpayload = malloc ((size_t) cur.payload_len + 1);
        if (!rpayload) {
          channel_broken ("out of memory for a reply payload");
          return -1;
        }
      }
    }

    if (rpayload_got < cur.payload_len) {
      size_t want = cur.payload_len - rpayload_got;

      rpayload_got += inbuf_take (&in, rpayload + rpayload_got, want);
      if (rpayload_got < cur.payload_len && inbuf_avail (&in) == 0 &&
          cur.payload_len - rpayload_got >= INBUF_SIZE / 2) {
        ssize_t r = read (chan_fd, rpayload + rpayload_got,
                          cur.payload_len - rpayload_got);
        if (r > 0)
          rpayload_got += r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          channel_broken (NULL);
          return -1;
        }
      }
      if (rpayload_got < cur.payload_len)
        return 0;
    }

    /* A complete reply. */
    {
      struct pending *p = cur_req;
      unsigned char *payload = rpayload;
      struct hp_header reply = cur;

      cur_req = NULL;
      rpayload = NULL;
      if (payload)
        payload[reply.payload_len] = '\0';
      complete (p, &reply, payload, reply.payload_len);
      if (chan_fd == -1)
        return -1;
    }
  }
}

static void
on_readable (struct ev_loop *l, ev_io *w, int revents)
{
  int i;

  /* Bounded work per wake-up so one busy backend cannot starve
   * clients.
   */
  for (i = 0; i < 16; ++i) {
    ssize_t r;

    if (process_input () == -1)
      return;
    if (cur_req && rpayload_got < cur.payload_len &&
        inbuf_avail (&in) == 0 &&
        cur.payload_len - rpayload_got >= INBUF_SIZE / 2)
      continue;                 /* process_input reads directly */
    r = inbuf_fill (&in, chan_fd);
    if (r == 0) {
      nbdkit_debug ("backend closed the channel");
      channel_broken (NULL);
      return;
    }
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      nbdkit_debug ("backend channel: read: %m");
      channel_broken (NULL);
      return;
    }
  }
  process_input ();
}

static void
flush_output (void)
{
  int r = outq_flush (&out, chan_fd);

  if (r == -1) {
    nbdkit_debug ("backend channel: write: %m");
    channel_broken (NULL);
  }
  else if (r == 1)
    ev_io_start (loop, &wio);
  else
    ev_io_stop (loop, &wio);
}

static void
on_writable (struct ev_loop *l, ev_io *w, int revents)
{
  flush_output ();
}

void
channel_open (int fd)
{
  chan_fd = fd;
  if (inbuf_init (&in, INBUF_SIZE) == -1)
    die ("out of memory");
  outq_init (&out);
  rhdr_got = 0;
  cur_req = NULL;
  ev_io_init (&rio, on_readable, fd, EV_READ);
  ev_io_init (&wio, on_writable, fd, EV_WRITE);
  ev_io_start (loop, &rio);
}

void
channel_send (const struct hp_header *h, void *payload, uint32_t len,
              void (*free_payload) (void *), backend_cb cb, void *opaque)
{
  struct pending *p;
  unsigned char hdr[HP_HEADER_SIZE];
  bool was_empty;

  if (chan_fd == -1 || (nr_pending + 1 > table_size && table_grow () == -1) ||
      (p = malloc (sizeof *p)) == NULL) {
    if (payload && free_payload)
      free_payload (payload);
    cb (opaque, NULL, NULL, 0);
    return;
  }
  p->req = *h;
  p->req.id = next_id++;
  p->req.status = 0;
  p->req.payload_len = payload ? len : 0;
  p->cb = cb;
  p->opaque = opaque;
  hp_encode_header (&p->req, hdr);

  was_empty = out.head == NULL;
  if (outq_push (&out, hdr, sizeof hdr, payload, p->req.payload_len,
                 free_payload) == -1) {
    free (p);
    cb (opaque, NULL, NULL, 0);
    return;
  }
  p->next = table[p->req.id & (table_size - 1)];
  table[p->req.id & (table_size - 1)] = p;
  nr_pending++;

  /* Try to write at once; otherwise when the socket is writable. */
  if (was_empty)
    flush_output ();
}

static void
free_string (void *p)
{
  free (p);
}

void
channel_send_json (uint16_t type, uint32_t handle, json_t *req,
                   backend_cb cb, void *opaque)
{
  struct hp_header h = { .type = type, .handle = handle };
  char *s = json_dumps (req ? req : json_object (), JSON_COMPACT);

  json_decref (req);
  if (!s) {
    cb (opaque, NULL, NULL, 0);
    return;
  }
  channel_send (&h, s, strlen (s), free_string, cb, opaque);
}

json_t *
channel_parse_json (const void *payload, uint32_t len, const char **why)
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

/* Synchronous control calls, used before the server listens. */
struct sync_call {
  bool done;
  uint32_t status;
  json_t *reply;
  char *errmsg;
};

static void
sync_done (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct sync_call *c = opaque;
  const char *why;

  c->done = true;
  if (!reply) {
    c->status = HP_EIO;
    c->errmsg = strdup ("the backend process stopped before it answered");
  }
  else if (reply->status) {
    c->status = reply->status;
    c->errmsg = payload ? strdup (payload) : strdup (hp_error_name (reply->status));
  }
  else {
    c->reply = channel_parse_json (payload, len, &why);
    if (!c->reply) {
      c->status = HP_EIO;
      c->errmsg = strdup (why);
    }
  }
  free (payload);
}

uint32_t
channel_call_sync (uint16_t type, json_t *req, json_t **reply, char **errmsg)
{
  struct sync_call c = { 0 };

  channel_send_json (type, 0, req, sync_done, &c);
  while (!c.done)
    ev_run (loop, EVRUN_ONCE);
  *reply = c.reply;
  *errmsg = c.errmsg;
  return c.status;
}
