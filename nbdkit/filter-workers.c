/* nbdkit front end, filter framework: a small pool of threads for
 * CPU-heavy filter work (decompression, hashing) and blocking I/O
 * (filter-tmpfile.c, passthrough.c) so that the event loop never waits
 * on it.
 *
 * worker_submit queues (work, done, arg); a worker thread runs work
 * (arg), and the loop is woken through an ev_async to run done (arg).
 * The threads start on first use.  work must not touch front-end state
 * and must not block forever.
 *
 * The loop never waits for the queues' mutex either: it only tries it
 * (pthread_mutex_trylock).  Jobs it could not hand over wait in a list
 * of its own, and done jobs in the workers' list, for the next turn,
 * which the ev_async (sent to itself) makes come at once.  It wakes the
 * workers with a semaphore (one post per job), not a condition
 * variable, whose signal may wait for earlier waiters.
 */

#include <config.h>

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>

#include "../filters/filter.h"

#define NR_WORKERS 2

struct job {
  struct job *next;
  void (*work) (void *);
  void (*done) (void *);
  void *arg;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t todo_count;        /* jobs in todo, not yet taken */
static struct job *todo_head, *todo_tail;      /* for the workers */
static struct job *done_head, *done_tail;      /* for the loop */
static struct job *new_head, *new_tail;        /* the loop's, not handed over */
static struct job *ready_head, *ready_tail;    /* done, taken by the loop */
static ev_async wakeup;
static bool started;
static unsigned pending;        /* jobs whose done has not run */

static void
push (struct job **head, struct job **tail, struct job *j)
{
  j->next = NULL;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

static struct job *
pop (struct job **head, struct job **tail)
{
  struct job *j = *head;

  if (j) {
    *head = j->next;
    if (!*head)
      *tail = NULL;
  }
  return j;
}

static void *
worker (void *unused)
{
  for (;;) {
    struct job *j;

    while (sem_wait (&todo_count) == -1)     /* never-blocks: a worker */
      ;
    pthread_mutex_lock (&lock);
    j = pop (&todo_head, &todo_tail);        /* one for each post */
    pthread_mutex_unlock (&lock);

    j->work (j->arg);

    pthread_mutex_lock (&lock);
    push (&done_head, &done_tail, j);
    pthread_mutex_unlock (&lock);
    ev_async_send (loop, &wakeup);
  }
  return NULL;
}

/* On the loop: give the new jobs to the workers, unless one of them
 * holds the mutex (then on the next turn).
 */
static void
hand_over (void)
{
  struct job *j;
  unsigned n = 0;

  if (!new_head)
    return;
  if (pthread_mutex_trylock (&lock) != 0) {
    ev_async_send (loop, &wakeup);
    return;
  }
  for (j = new_head; j; j = j->next)
    n++;
  if (todo_tail)
    todo_tail->next = new_head;
  else
    todo_head = new_head;
  todo_tail = new_tail;
  new_head = new_tail = NULL;
  pthread_mutex_unlock (&lock);
  while (n-- > 0)
    sem_post (&todo_count);
}

/* Done callbacks run per turn of the loop, at most: a burst of jobs
 * (passthrough I/O finishing together) is spread over a few turns, so
 * that the clients' sockets are served in between.
 */
#define DONE_PER_TURN 32

static void
on_wakeup (struct ev_loop *l, ev_async *w, int revents)
{
  struct job *j;
  unsigned n;

  if (pthread_mutex_trylock (&lock) != 0)
    ev_async_send (loop, &wakeup);      /* a worker has it: next turn */
  else {
    if (done_head) {
      if (ready_tail)
        ready_tail->next = done_head;
      else
        ready_head = done_head;
      ready_tail = done_tail;
    }
    done_head = done_tail = NULL;
    pthread_mutex_unlock (&lock);
  }
  for (n = 0; n < DONE_PER_TURN && (j = pop (&ready_head, &ready_tail));
       ++n) {
    if (--pending == 0)
      ev_unref (loop);          /* nothing to wait for */
    j->done (j->arg);
    free (j);
  }
  if (ready_head)
    ev_async_send (loop, &wakeup);      /* the rest on the next turn */
  hand_over ();
}

static void
start_workers (void)
{
  sigset_t all, old;
  pthread_t t;
  int i;

  sem_init (&todo_count, 0, 0);
  ev_async_init (&wakeup, on_wakeup);
  ev_async_start (loop, &wakeup);
  ev_unref (loop);              /* only jobs in progress keep the loop */
  /* The workers take no signals: the loop's thread handles them. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  for (i = 0; i < NR_WORKERS; ++i)
    if (pthread_create (&t, NULL, worker, NULL) == 0)
      pthread_detach (t);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  started = true;
}

void
worker_submit (void (*work) (void *), void (*done) (void *), void *arg)
{
  struct job *j = malloc (sizeof *j);

  if (!j) {
    /* No memory for the job: do it here, late rather than never. */
    work (arg);
    done (arg);
    return;
  }
  if (!started)
    start_workers ();
  j->work = work;
  j->done = done;
  j->arg = arg;
  if (pending++ == 0)
    ev_ref (loop);
  push (&new_head, &new_tail, j);
  hand_over ();
}
