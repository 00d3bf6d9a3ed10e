/* filters/lru.h: a list kept in the order of use, most recent first,
 * for the filters that cache what they read from below (xz's blocks,
 * qcow2dec's L2 tables).  The link is a member of the cached thing
 * (LRU_ENTRY gets back to it); the list counts its members so that a
 * filter can trim it from the tail, the least recently used.
 */

#ifndef NBDKIT_FILTERS_LRU_H
#define NBDKIT_FILTERS_LRU_H

#include <stddef.h>

struct lru_link {
  struct lru_link *prev, *next;
};

struct lru {
  struct lru_link *head, *tail;
  unsigned n;
};

/* The thing of type TYPE whose MEMBER is the link L (NULL for NULL). */
#define LRU_ENTRY(l, type, member)                                    \
  ((l) ? (type *) (void *) ((char *) (l) - offsetof (type, member))   \
       : (type *) NULL)

static inline void
lru_unlink (struct lru *lru, struct lru_link *e)
{
  if (e->prev)
    e->prev->next = e->next;
  else
    lru->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    lru->tail = e->prev;
  e->prev = e->next = NULL;
  lru->n--;
}

/* Put e (not in the list) at the head, as the most recently used. */
static inline void
lru_push (struct lru *lru, struct lru_link *e)
{
  e->prev = NULL;
  e->next = lru->head;
  if (lru->head)
    lru->head->prev = e;
  else
    lru->tail = e;
  lru->head = e;
  lru->n++;
}

/* e (in the list) was just used: move it to the head. */
static inline void
lru_touch (struct lru *lru, struct lru_link *e)
{
  if (lru->head != e) {
    lru_unlink (lru, e);
    lru_push (lru, e);
  }
}

#endif /* NBDKIT_FILTERS_LRU_H */
