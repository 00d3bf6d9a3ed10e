/* libnbdkit-backend: the worker threads and the handle table.
 *
 * Owns the queue of jobs (requests that run on workers: OPEN, CLOSE,
 * export lists and all data requests), the pool of threads that run
 * them, the locks that give each thread model its meaning, and the
 * table of open handles.
 *
 *   serialize_connections,   one job at a time in the whole process
 *   serialize_all_requests   (the server also opens one handle at a
 *                            time for serialize_connections)
 *   serialize_requests       one job at a time per handle
 *   parallel                 as many as there are workers
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-internal.h"

#define DEFAULT_WORKERS 16

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static struct job *queue_head, **queue_tail = &queue_head;
static bool stopping;
static pthread_t *threads;
static unsigned nr_threads;

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct handle **table;
static size_t table_size;

/* ---- handles ---- */

uint32_t
handle_add (struct handle *h)
{
  size_t i;

  pthread_rwlock_wrlock (&table_lock);
  for (i = 0; i < table_size; ++i)
    if (!table[i])
      break;
  if (i == table_size) {
    size_t n = table_size ? table_size * 2 : 16;
    struct handle **t = realloc (table, n * sizeof *t);

    if (!t) {
      pthread_rwlock_unlock (&table_lock);
      return 0;
    }
    memset (t + table_size, 0, (n - table_size) * sizeof *t);
    table = t;
    table_size = n;
  }
  table[i] = h;
  h->id = (uint32_t) i + 1;
  pthread_rwlock_unlock (&table_lock);
  return h->id;
}

struct handle *
handle_lookup (uint32_t id)
{
  struct handle *h = NULL;

  pthread_rwlock_rdlock (&table_lock);
  if (id >= 1 && id <= table_size)
    h = table[id - 1];
  pthread_rwlock_unlock (&table_lock);
  return h;
}

struct handle *
handle_remove (uint32_t id)
{
  struct handle *h = NULL;

  pthread_rwlock_wrlock (&table_lock);
  if (id >= 1 && id <= table_size) {
    h = table[id - 1];
    table[id - 1] = NULL;
  }
  pthread_rwlock_unlock (&table_lock);
  return h;
}

struct handle **
handles_all (size_t *n)
{
  struct handle **all;
  size_t i;

  *n = 0;
  pthread_rwlock_rdlock (&table_lock);
  all = calloc (table_size ? table_size : 1, sizeof *all);
  if (all)
    for (i = 0; i < table_size; ++i)
      if (table[i])
        all[(*n)++] = table[i];
  pthread_rwlock_unlock (&table_lock);
  return all;
}

/* ---- running jobs ---- */

static bool
is_data (uint16_t type)
{
  return type >= HP_PREAD && type <= HP_EXTENTS;
}

static void
run (struct job *job)
{
  struct handle *h = NULL;

  switch (thread_model) {
  case NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS:
  case NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS:
    pthread_mutex_lock (&all_lock);
    op_run_job (job);
    pthread_mutex_unlock (&all_lock);
    return;
  case NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS:
    if (is_data (job->req.type))
      h = handle_lookup (job->req.handle);
    if (h)
      pthread_mutex_lock (&h->lock);
    op_run_job (job);           /* the server closes h only when idle */
    if (h)
      pthread_mutex_unlock (&h->lock);
    return;
  default:
    op_run_job (job);
  }
}

static void *
worker (void *arg)
{
  for (;;) {
    struct job *job;

    pthread_mutex_lock (&queue_lock);
    while (!queue_head && !stopping)
      pthread_cond_wait (&queue_cond, &queue_lock);
    job = queue_head;
    if (job) {
      queue_head = job->next;
      if (!queue_head)
        queue_tail = &queue_head;
    }
    pthread_mutex_unlock (&queue_lock);
    if (!job)
      return NULL;              /* stopping, and nothing left */
    run (job);
  }
}

void
workers_start (unsigned n)
{
  unsigned i;

  if (threads)
    return;
  if (n == 0)
    n = DEFAULT_WORKERS;
  /* Serialized models need one worker only. */
  if (thread_model != NBDKIT_THREAD_MODEL_PARALLEL &&
      thread_model != NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS)
    n = 1;
  threads = calloc (n, sizeof *threads);
  if (!threads) {
    fprintf (stderr, "error: out of memory\n");
    exit (EXIT_FAILURE);
  }
  for (i = 0; i < n; ++i) {
    int err = pthread_create (&threads[i], NULL, worker, NULL);

    if (err) {
      fprintf (stderr, "error: pthread_create: %s\n", strerror (err));
      exit (EXIT_FAILURE);
    }
  }
  nr_threads = n;
}

void
workers_submit (struct job *job)
{
  if (!threads)
    workers_start (0);
  job->next = NULL;
  pthread_mutex_lock (&queue_lock);
  *queue_tail = job;
  queue_tail = &job->next;
  pthread_cond_signal (&queue_cond);
  pthread_mutex_unlock (&queue_lock);
}

void
workers_stop (void)
{
  unsigned i;

  pthread_mutex_lock (&queue_lock);
  stopping = true;
  pthread_cond_broadcast (&queue_cond);
  pthread_mutex_unlock (&queue_lock);
  for (i = 0; i < nr_threads; ++i)
    pthread_join (threads[i], NULL);
  free (threads);
  threads = NULL;
  nr_threads = 0;
}
