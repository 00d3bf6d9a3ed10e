/* nbdkit front end, filter framework: range locks for filters
 * (filters/filter.h, frange_*).  A filter that must not let two
 * requests touch the same range at once (read-modify-write, a cache
 * that must not go stale) embeds a struct frange_lock in each request:
 * requests that overlap one held or waited for wait, and are started
 * in arrival order.  On the loop thread only; nothing blocks.
 */

#include <config.h>

#include <stddef.h>

#include "../filters/filter.h"

static bool
blocked (const struct frange_lock *l, const struct frange_lock *list,
         const struct frange_lock *stop)
{
  for (; list && list != stop; list = list->next)
    if (l->lo < list->hi && list->lo < l->hi)
      return true;
  return false;
}

bool
frange_busy (const struct frange_locks *s, uint64_t lo, uint64_t hi)
{
  struct frange_lock l = { .lo = lo, .hi = hi };

  return blocked (&l, s->held, NULL) || blocked (&l, s->waiting, NULL);
}

void
frange_acquire (struct frange_locks *s, struct frange_lock *l)
{
  struct frange_lock **p;

  if (!blocked (l, s->held, NULL) && !blocked (l, s->waiting, NULL)) {
    l->next = s->held;
    s->held = l;
    l->start (l);
    return;
  }
  for (p = &s->waiting; *p; p = &(*p)->next)
    ;
  l->next = NULL;
  *p = l;
}

void
frange_release (struct frange_locks *s, struct frange_lock *l)
{
  struct frange_lock **p, *w, *start = NULL, **tail = &start;

  for (p = &s->held; *p != l; p = &(*p)->next)
    ;
  *p = l->next;
  /* Grant every waiter that overlaps no lock held and no earlier
   * waiter; start them once the lists are consistent (a start may
   * finish at once and release again).
   */
  p = &s->waiting;
  while ((w = *p) != NULL) {
    if (!blocked (w, s->held, NULL) && !blocked (w, s->waiting, w)) {
      *p = w->next;
      w->next = s->held;
      s->held = w;
      w->start_next = NULL;
      *tail = w;
      tail = &w->start_next;
    }
    else
      p = &w->next;
  }
  while (start) {
    w = start;
    start = w->start_next;
    w->start (w);
  }
}
