/* nbdkit front end: is the backend alive?  PING and its answer.
 *
 * Owns struct liveness, that part of a backend_proc (backend-proc.h).
 * A backend that listed "ping" in its HELLO features is sent PING
 * every --backend-ping-interval seconds while the supervisor has it
 * READY, busy or not.  Its library answers from the thread that reads
 * the channel, so a slow request does not delay the answer; no answer
 * within --backend-ping-timeout seconds means the process is stopped
 * or deadlocked, and the supervisor is told (supervisor_backend_hung),
 * which kills and restarts it like a backend past --backend-timeout.
 * One PING at a time; timers only, never blocks.
 */

#include <config.h>

#include <stdlib.h>

#include "backend-proc.h"

void
liveness_offered (struct backend_proc *bp, bool yes)
{
  bp->live.offered = yes;
}

bool
supervisor_backend_answers_ping (const struct backend_proc *bp)
{
  return bp->live.offered;
}

static void
on_pong (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct backend_proc *bp = opaque;
  struct liveness *lv = &bp->live;

  payload_free (payload);
  lv->in_flight = false;
  ev_timer_stop (loop, &lv->pong_timer);
  if (reply && ev_now (loop) - lv->sent_at >= 1.0)
    nbdkit_debug ("%s: the backend answered a ping in %.1f seconds",
                  bproc_name (bp), ev_now (loop) - lv->sent_at);
}

static void
on_pong_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, live.pong_timer);

  if (!bp->live.in_flight || !supervisor_is_ready (bp))
    return;
  nbdkit_error ("backend %s did not answer a ping in %g s: killing it",
                bproc_name (bp), opt.ping_timeout);
  supervisor_backend_hung (bp); /* fails the PING: on_pong runs */
}

static void
on_ping_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, live.ping_timer);
  struct liveness *lv = &bp->live;

  if (!lv->offered || lv->in_flight || !supervisor_is_ready (bp) ||
      !channel_is_open (bp))
    return;
  lv->in_flight = true;
  lv->sent_at = ev_now (loop);
  ev_timer_set (&lv->pong_timer, opt.ping_timeout, 0);
  ev_timer_start (loop, &lv->pong_timer);
  /* CH_STARTUP: never held nor sent again; it asks this process. */
  bproc_ping (bp, CH_STARTUP, on_pong, bp);
}

/* From the first READY to the stop, doing nothing while the backend is
 * not READY; the timer does not keep the loop alive.
 */
void
liveness_start (struct backend_proc *bp)
{
  struct liveness *lv = &bp->live;

  if (lv->offered && opt.ping_interval > 0)
    nbdkit_debug ("%s: pinging the backend every %g seconds (timeout %g "
                  "seconds)", bproc_name (bp), opt.ping_interval,
                  opt.ping_timeout);
  if (opt.ping_interval <= 0 || ev_is_active (&lv->ping_timer))
    return;
  ev_timer_start (loop, &lv->ping_timer);
  ev_unref (loop);
}

void
liveness_stop (struct backend_proc *bp)
{
  struct liveness *lv = &bp->live;

  if (ev_is_active (&lv->ping_timer)) {
    ev_ref (loop);
    ev_timer_stop (loop, &lv->ping_timer);
  }
  ev_timer_stop (loop, &lv->pong_timer);
}

void
liveness_init (struct backend_proc *bp)
{
  struct liveness *lv = &bp->live;

  ev_timer_init (&lv->pong_timer, on_pong_timer, opt.ping_timeout, 0);
  ev_timer_init (&lv->ping_timer, on_ping_timer, opt.ping_interval,
                 opt.ping_interval);
}
