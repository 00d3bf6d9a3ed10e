/* nbdkit front end: the handles opened in a backend process.
 *
 * Owns struct handles, the part of a backend_proc (backend-proc.h)
 * that lists them, and struct bhandle, the front end's record of each:
 * opening one for a client (backend_open), closing it, and re-opening
 * every one in a restarted incarnation (handles_reopen, called by the
 * supervisor, which is told when the last is answered).  A re-open
 * gives the handle's descriptor back to the backend with its OPEN, so
 * that a backend whose data was a file only its process had open finds
 * it again; with -D nbdkit.passthrough=0 the front end keeps that
 * descriptor for that alone.
 */

#include <config.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-proc.h"

static void
bhandle_unlink (struct bhandle *bh)
{
  struct handles *hs = &bh->bp->hdl;

  if (bh->prev)
    bh->prev->next = bh->next;
  else if (hs->list == bh)
    hs->list = bh->next;
  if (bh->next)
    bh->next->prev = bh->prev;
  bh->next = bh->prev = NULL;
}

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

static void
bhandle_free (struct bhandle *bh)
{
  passthrough_put (bh->pt);
  close_fd (&bh->kept_fd);
  close_fd (&bh->reopen_fd);
  free (bh->export);
  free (bh->client);
  free (bh);
}

struct close_then {
  void (*done) (void *opaque);
  void *opaque;
};

static void
on_closed (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct close_then *ct = opaque;

  payload_free (payload);
  ct->done (ct->opaque);
  free (ct);
}

void
backend_close_then (struct bhandle *bh, void (*done) (void *opaque),
                    void *opaque)
{
  struct close_then *ct;

  if (!bh) {
    if (done)
      done (opaque);
    return;
  }
  bhandle_unlink (bh);
  if (bh->reopening) {
    bh->closing = true;         /* freed when the re-open answers */
    if (done)
      done (opaque);
    return;
  }
  if (bh->valid && supervisor_is_ready (bh->bp)) {
    /* Only a READY backend is told (and done waits for its answer);
     * for any other, done runs now and nothing is allocated.
     */
    ct = done ? malloc (sizeof *ct) : NULL;
    if (ct) {
      ct->done = done;
      ct->opaque = opaque;
      bproc_close_msg (bh->bp, bh->id, on_closed, ct);
      done = NULL;
    }
    else
      bproc_close_msg (bh->bp, bh->id, NULL, NULL);
  }
  bhandle_free (bh);
  if (done)
    done (opaque);
}

void
backend_close (struct bhandle *bh)
{
  backend_close_then (bh, NULL, NULL);
}

/* The descriptor of the handle's data that an OPEN reply j may bring:
 * the front end does the I/O on it (passthrough.c) ...
 */
static struct passthrough *
pt_from_open (struct backend_proc *bp, json_t *j, bool readonly)
{
  return passthrough_enabled () ? passthrough_from_open (bp, j, readonly)
                                : NULL;
}

/* ... or, with -D nbdkit.passthrough=0, OPEN asked for it all the same
 * ("keep"): the front end does no I/O on it, and only gives it back to
 * the next incarnation at the handle's re-open ("previous_fd"), so that
 * a backend whose data is a file only its process had open (tmpdisk's)
 * finds it again.  The descriptor, or -1.
 */
static int
kept_fd_from_open (struct backend_proc *bp, json_t *j)
{
  int fd;

  if (passthrough_enabled () ||
      !json_is_object (json_object_get (j, "passthrough")))
    return -1;                  /* its descriptor, if any, is closed */
  fd = channel_take_reply_fd (bp);
  if (fd >= 0)
    nbdkit_debug ("%s: keeping the handle's descriptor for a re-open "
                  "(passthrough is off: the backend does the I/O)",
                  bproc_name (bp));
  return fd;
}

struct open_ctx {
  struct bhandle *bh;
  backend_open_cb cb;
  void *opaque;
};

static void
on_open (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct open_ctx *ctx = opaque;
  struct bhandle *bh = ctx->bh;
  struct backend_proc *bp = bh->bp;
  struct handles *hs = &bp->hdl;
  const char *why = NULL;
  json_t *j = NULL;

  if (!reply) {
    ctx->cb (ctx->opaque, NULL, NULL, HP_EIO,
             supervisor_has_failed (bp) ? "the backend has failed"
             : "the backend stopped before it answered");
    bhandle_free (bh);
  }
  else if (reply->status) {
    ctx->cb (ctx->opaque, NULL, NULL, reply->status,
             payload ? payload : hp_error_name (reply->status));
    bhandle_free (bh);
  }
  else if (reply->handle == 0 ||
           (j = bproc_parse_json (payload, len, &why)) == NULL) {
    ctx->cb (ctx->opaque, NULL, NULL, HP_EIO,
             why ? why : "the backend's OPEN reply has no handle");
    if (reply->handle)
      bproc_close_msg (bp, reply->handle, NULL, NULL);
    bhandle_free (bh);
  }
  else {
    bh->id = reply->handle;
    bh->valid = true;
    bh->size = json_integer_value (json_object_get (j, "size"));
    bh->pt = pt_from_open (bp, j, bh->readonly);
    bh->kept_fd = kept_fd_from_open (bp, j);
    bh->next = hs->list;
    if (hs->list)
      hs->list->prev = bh;
    hs->list = bh;
    ctx->cb (ctx->opaque, bh, j, 0, NULL);
  }
  json_decref (j);
  payload_free (payload);
  free (ctx);
}

void
backend_open (struct backend_proc *bp, uint64_t connection,
              const char *export, bool readonly, bool tls, bool description,
              const char *client, backend_open_cb cb, void *opaque)
{
  struct open_ctx *ctx = calloc (1, sizeof *ctx);
  struct bhandle *bh = calloc (1, sizeof *bh);

  if (!ctx || !bh || !(bh->export = strdup (export)) ||
      !(bh->client = strdup (client))) {
    free (ctx);
    if (bh)
      bhandle_free (bh);
    cb (opaque, NULL, NULL, HP_ENOMEM, "out of memory");
    return;
  }
  bh->bp = bp;
  bh->kept_fd = bh->reopen_fd = -1;
  bh->connection = connection;
  bh->description = description;
  bh->readonly = readonly;
  bh->tls = tls;
  ctx->bh = bh;
  ctx->cb = cb;
  ctx->opaque = opaque;
  if (bproc_open_msg (bp, connection, export, readonly, tls, description,
                      client, -1, 0, on_open, ctx) == -1) {
    /* Never send {} for it: that would open the default export. */
    free (ctx);
    bhandle_free (bh);
    cb (opaque, NULL, NULL, HP_EINVAL,
        "the export name cannot be passed to the backend");
  }
}

/* ---- re-opening them all in a new incarnation ---- */

static void
on_reopen (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct bhandle *bh = opaque;
  struct backend_proc *bp = bh->bp;
  struct handles *hs = &bp->hdl;
  json_t *j = NULL;
  const char *why;

  bh->reopening = false;
  close_fd (&bh->reopen_fd);    /* sent, or never will be */
  if (reply && reply->status == 0 && reply->handle &&
      (j = bproc_parse_json (payload, len, &why)) != NULL) {
    /* Passthrough: the new incarnation's descriptor replaces the one
     * that served meanwhile (jobs still on the old one keep it until
     * they end), or none if it gave none: the backend does the I/O.
     */
    struct passthrough *pt = pt_from_open (bp, j, bh->readonly);
    int kept = kept_fd_from_open (bp, j);

    passthrough_put (bh->pt);
    bh->pt = pt;
    close_fd (&bh->kept_fd);
    bh->kept_fd = kept;
    bh->id = reply->handle;
    if ((uint64_t) json_integer_value (json_object_get (j, "size")) !=
        bh->size)
      nbdkit_error ("%s: export '%s' changed size after the backend "
                    "restarted", bproc_name (bp), bh->export);
    if (bh->closing)
      bproc_close_msg (bp, bh->id, NULL, NULL);
  }
  else if (!reply && !bh->closing && supervisor_will_restart (bp)) {
    /* This incarnation died too, before it answered: the next one
     * re-opens the handle (handles_reopen), which stays as it was --
     * its passthrough serving meanwhile -- and its requests for the
     * backend wait for that.
     */
    nbdkit_debug ("%s: the backend stopped before it re-opened export "
                  "'%s': the next one will", bproc_name (bp), bh->export);
  }
  else if (!bh->closing) {
    nbdkit_error ("%s: could not re-open export '%s' after the restart: "
                  "%s; its client gets errors", bproc_name (bp), bh->export,
                  reply && reply->status && payload
                  ? (const char *) payload : "no handle");
    bh->valid = false;
    passthrough_put (bh->pt);
    bh->pt = NULL;
    close_fd (&bh->kept_fd);
  }
  json_decref (j);
  payload_free (payload);
  if (bh->closing)
    bhandle_free (bh);
  if (--hs->nr_reopening == 0)
    supervisor_handles_reopened (bp);
}

void
handles_reopen (struct backend_proc *bp)
{
  struct handles *hs = &bp->hdl;
  struct bhandle *bh;

  hs->nr_reopening = 1;         /* guard while sending */
  for (bh = hs->list; bh; bh = bh->next) {
    int fd;

    if (!bh->valid)
      continue;
    hs->nr_reopening++;
    bh->reopening = true;
    /* The descriptor of the handle's data goes back to the backend
     * (nbdkit_previous_fd): its data may be a file that only the dead
     * process had open.  A copy, open until the re-open is answered,
     * whatever happens meanwhile to the handle's own.
     */
    fd = bh->pt ? passthrough_fd (bh->pt) : bh->kept_fd;
    if (fd >= 0) {
      bh->reopen_fd = fcntl (fd, F_DUPFD_CLOEXEC, 3);
      if (bh->reopen_fd == -1)
        nbdkit_error ("%s: export '%s': cannot give the handle's "
                      "descriptor back to the backend (%m): it re-opens "
                      "the export without it", bproc_name (bp), bh->export);
      else
        nbdkit_debug ("%s: export '%s': giving the handle's descriptor "
                      "back with its re-open", bproc_name (bp), bh->export);
    }
    if (bproc_open_msg (bp, bh->connection, bh->export, bh->readonly,
                        bh->tls, bh->description, bh->client, bh->reopen_fd,
                        CH_STARTUP, on_reopen, bh) == -1)
      on_reopen (bh, NULL, NULL, 0);
  }
  if (--hs->nr_reopening == 0)
    supervisor_handles_reopened (bp);
}

/* The server gave up on the backend: every request fails from now on,
 * passthrough ones too.
 */
void
handles_drop_passthrough (struct backend_proc *bp)
{
  struct bhandle *bh;

  for (bh = bp->hdl.list; bh; bh = bh->next) {
    passthrough_put (bh->pt);
    bh->pt = NULL;
  }
}

/* At an orderly stop: each handle is closed in the backend (if it can
 * still be told) and taken off the list.  A handle belongs to the chain
 * of its connection, which may still exist (a connection is freed when
 * its last reference goes, perhaps on a later turn of the loop): it is
 * left to backend_close to free.
 */
void
handles_close_all (struct backend_proc *bp)
{
  struct bhandle *bh;

  while ((bh = bp->hdl.list) != NULL) {
    bhandle_unlink (bh);
    if (bh->valid && channel_is_open (bp))
      bproc_close_msg (bp, bh->id, NULL, NULL);
    bh->valid = false;
  }
}
