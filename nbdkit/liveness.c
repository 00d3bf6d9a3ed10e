/* nbdkit front end: is the backend alive?  PING and its answer.
 *
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

#include "internal.h"

static bool offered;            /* this incarnation listed "ping" */
static ev_timer ping_timer;     /* every opt.ping_interval */
static ev_timer pong_timer;     /* opt.ping_timeout after a PING */
static bool in_flight;
static ev_tstamp sent_at;

static const char *
name (void)
{
  return binfo.name ? binfo.name : opt.backend_name;
}

void
liveness_offered (bool yes)
{
  offered = yes;
}

bool
supervisor_backend_answers_ping (void)
{
  return offered;
}

static void
on_pong (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  free (payload);
  in_flight = false;
  ev_timer_stop (loop, &pong_timer);
  if (reply && ev_now (loop) - sent_at >= 1.0)
    nbdkit_debug ("%s: the backend answered a ping in %.1f seconds",
                  name (), ev_now (loop) - sent_at);
}

static void
on_pong_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  if (!in_flight || !supervisor_is_ready ())
    return;
  nbdkit_error ("backend %s did not answer a ping in %g s: killing it",
                name (), opt.ping_timeout);
  supervisor_backend_hung ();   /* fails the PING: on_pong runs */
}

static void
on_ping_timer (struct ev_loop *l, ev_timer *w, int revents)
{
  struct hp_header h = { .type = HP_PING };

  if (!offered || in_flight || !supervisor_is_ready () ||
      !channel_is_open ())
    return;
  in_flight = true;
  sent_at = ev_now (loop);
  ev_timer_set (&pong_timer, opt.ping_timeout, 0);
  ev_timer_start (loop, &pong_timer);
  /* CH_STARTUP: never held nor sent again; it asks this process. */
  channel_send (&h, NULL, NULL, 0, CH_STARTUP, on_pong, NULL);
}

/* From the first READY to the stop, doing nothing while the backend is
 * not READY; the timer does not keep the loop alive.
 */
void
liveness_start (void)
{
  if (offered && opt.ping_interval > 0)
    nbdkit_debug ("%s: pinging the backend every %g seconds (timeout %g "
                  "seconds)", name (), opt.ping_interval, opt.ping_timeout);
  if (opt.ping_interval <= 0 || ev_is_active (&ping_timer))
    return;
  ev_timer_init (&pong_timer, on_pong_timer, opt.ping_timeout, 0);
  ev_timer_init (&ping_timer, on_ping_timer, opt.ping_interval,
                 opt.ping_interval);
  ev_timer_start (loop, &ping_timer);
  ev_unref (loop);
}

void
liveness_stop (void)
{
  if (ev_is_active (&ping_timer)) {
    ev_ref (loop);
    ev_timer_stop (loop, &ping_timer);
  }
  ev_timer_stop (loop, &pong_timer);
}
