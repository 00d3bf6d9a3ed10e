/* libnbdkit-backend: the threads that serve requests, and the handle
 * table.
 *
 * Owns the pool of threads, the free list that job structures (OPEN,
 * CLOSE, export lists and all data requests) are recycled through, the
 * locks that give each thread model its meaning, and the table of open
 * handles.
 *
 * The threads work as leader and followers: one thread at a time (the
 * leader) reads the channel; when it has read a job it hands the
 * reading over to an idle thread and runs the job itself.  A request
 * therefore runs on the thread that read it, with no hand-over between
 * threads on its way, while the next request is already being read by
 * another thread.  The main thread is one of the pool.
 *
 * Keeping the lead: handing the reading over wakes a thread, which on a
 * small machine costs more than a fast job.  So when the read buffer
 * holds nothing more, the reader keeps the lead while it runs the job
 * itself (lead_in_job), and asks the watcher of the channel
 * (backend-main.c) to watch for input meanwhile, with epoll: no thread
 * wakes unless a frame comes.  If one comes before the job ends, the
 * watcher takes the lead away (nbdkit__workers_input_arrived) and an
 * idle thread reads it, as it would have; if not, the reader goes back
 * to reading when its job is done, and no thread was woken.
 *
 * The channel is never left unread: a leader that finds no idle thread
 * to hand the reading to keeps it, and queues the job for the next
 * thread that finishes one.  So a PING (which the reader answers) and
 * the requests behind a slow one are read at once, however busy the
 * workers are.  The pool has one thread more than may run jobs at once
 * (two in the serialized models), for the reading.
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
#include <unistd.h>

#include "backend-internal.h"

#define DEFAULT_WORKERS 16

static pthread_mutex_t lead_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lead_cond = PTHREAD_COND_INITIALIZER;
static bool leader_busy;        /* a thread is reading the channel */
static bool lead_in_job;        /* ... or runs a job, keeping the lead */
static bool input_watched;      /* nbdkit__watch_input (true) is on */
static bool done;               /* the channel ended: all threads stop */
static unsigned nr_idle;        /* threads waiting for the lead */
/* Jobs read while no thread was idle to take over the reading, oldest
 * first; not empty only while nr_idle is 0.  Under lead_lock.
 */
static struct job *queue_head, **queue_tail = &queue_head;
static int (*read_job) (struct job **job);
static pthread_t *threads;
static unsigned nr_threads;

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct handle **table;
static size_t table_size;

/* ---- jobs ---- */

#define MAX_FREE_JOBS 256

static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *free_jobs;
static unsigned nr_free_jobs;

struct job *
nbdkit__job_new (void)
{
  struct job *job;

  pthread_mutex_lock (&free_lock);
  job = free_jobs;
  if (job) {
    free_jobs = job->next;
    nr_free_jobs--;
  }
  pthread_mutex_unlock (&free_lock);
  if (!job) {
    job = malloc (sizeof *job);
    if (!job) {
      fprintf (stderr, "error: out of memory\n");
      exit (EXIT_FAILURE);
    }
  }
  memset (job, 0, sizeof *job);
  job->fd = -1;
  return job;
}

void
nbdkit__job_free (struct job *job)
{
  if (job->payload)
    nbdkit__buf_free (job->payload, payload_size (&job->req));
  job->payload = NULL;
  if (job->fd >= 0)
    close (job->fd);
  job->fd = -1;
  pthread_mutex_lock (&free_lock);
  if (nr_free_jobs < MAX_FREE_JOBS) {
    job->next = free_jobs;
    free_jobs = job;
    nr_free_jobs++;
    job = NULL;
  }
  pthread_mutex_unlock (&free_lock);
  free (job);
}

/* ---- handles ---- */

uint32_t
nbdkit__handle_add (struct handle *h)
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
nbdkit__handle_lookup (uint32_t id)
{
  struct handle *h = NULL;

  pthread_rwlock_rdlock (&table_lock);
  if (id >= 1 && id <= table_size)
    h = table[id - 1];
  pthread_rwlock_unlock (&table_lock);
  return h;
}

struct handle *
nbdkit__handle_remove (uint32_t id)
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
nbdkit__handles_all (size_t *n)
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
run_job (struct job *job)
{
  struct handle *h = NULL;

  switch (nbdkit__thread_model) {
  case NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS:
  case NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS:
    pthread_mutex_lock (&all_lock);
    nbdkit__op_run_job (job);
    pthread_mutex_unlock (&all_lock);
    return;
  case NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS:
    if (is_data (job->req.type))
      h = nbdkit__handle_lookup (job->req.handle);
    if (h)
      pthread_mutex_lock (&h->lock);
    nbdkit__op_run_job (job);   /* the server closes h only when idle */
    if (h)
      pthread_mutex_unlock (&h->lock);
    return;
  default:
    nbdkit__op_run_job (job);
  }
}

static void
run (struct job *job)
{
  if (nbdkit__request_begin ()) {
    run_job (job);
    nbdkit__request_end ();
  }
  else                          /* the channel has ended: no reply */
    nbdkit__job_free (job);
}

/* Run a queued job if there is one, else lead (read the channel) when
 * no other thread does.  On reading a job, pass the lead on to an idle
 * thread and run the job; with no idle thread, queue the job and read
 * on.  Control messages that need no job are handled by the reader,
 * which keeps the lead.  Jobs still queued when the channel ends are
 * dropped: nobody would take their replies.
 */
static void *
serve (void *arg)
{
  for (;;) {
    struct job *job = NULL;
    int r;

    pthread_mutex_lock (&lead_lock);
    while (!queue_head && leader_busy && !done) {
      nr_idle++;
      pthread_cond_wait (&lead_cond, &lead_lock);
      nr_idle--;
    }
    if (done) {
      while ((job = queue_head) != NULL) {
        queue_head = job->next;
        nbdkit__job_free (job);
      }
      queue_tail = &queue_head;
      pthread_mutex_unlock (&lead_lock);
      return NULL;
    }
    if (queue_head) {
      job = queue_head;
      queue_head = job->next;
      if (!queue_head)
        queue_tail = &queue_head;
      pthread_mutex_unlock (&lead_lock);
      job->next = NULL;
      run (job);
      continue;
    }
    leader_busy = true;
    pthread_mutex_unlock (&lead_lock);

    for (;;) {
      r = read_job (&job);
      if (r == -1) {
        pthread_mutex_lock (&lead_lock);
        break;
      }
      if (!job)
        continue;
      pthread_mutex_lock (&lead_lock);
      if (nr_idle > 0 && nr_threads > 1 && !done &&
          !nbdkit__input_buffered () && nbdkit__can_watch_input ()) {
        /* Keep the lead while running the job (see above). */
        lead_in_job = input_watched = true;
        nbdkit__watch_input (true);
        pthread_mutex_unlock (&lead_lock);
        run (job);
        job = NULL;
        pthread_mutex_lock (&lead_lock);
        if (lead_in_job) {
          lead_in_job = false;
          if (input_watched) {
            input_watched = false;
            nbdkit__watch_input (false);
          }
          pthread_mutex_unlock (&lead_lock);
          continue;             /* still the leader */
        }
        break;                  /* the lead was passed on meanwhile */
      }
      /* Before the pool starts (nr_threads 0) the reader runs it. */
      if (nr_idle > 0 || nr_threads <= 1)
        break;
      job->next = NULL;
      *queue_tail = job;
      queue_tail = &job->next;
      pthread_mutex_unlock (&lead_lock);
      job = NULL;
    }

    /* lead_lock is held. */
    if (r != -1 && !job) {
      /* The watcher passed the lead on during our job: not ours. */
      pthread_mutex_unlock (&lead_lock);
      continue;
    }
    leader_busy = false;
    if (r == -1) {
      done = true;
      pthread_cond_broadcast (&lead_cond);
    }
    else
      pthread_cond_signal (&lead_cond);
    pthread_mutex_unlock (&lead_lock);
    if (job)
      run (job);
  }
}

void
nbdkit__workers_input_arrived (void)
{
  pthread_mutex_lock (&lead_lock);
  if (input_watched) {          /* EPOLLONESHOT disarmed it: the end only */
    input_watched = false;
    nbdkit__watch_input (false);
  }
  if (lead_in_job) {
    lead_in_job = false;
    leader_busy = false;
    pthread_cond_signal (&lead_cond);
  }
  pthread_mutex_unlock (&lead_lock);
}

void
nbdkit__workers_start (unsigned n)
{
  unsigned i;

#ifdef NBDKIT_FUZZING
  return;                       /* one thread: the reader runs every job */
#endif
  if (threads)
    return;
  if (n == 0)
    n = DEFAULT_WORKERS;
  /* Serialized models need one thread only to run jobs. */
  if (nbdkit__thread_model != NBDKIT_THREAD_MODEL_PARALLEL &&
      nbdkit__thread_model != NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS)
    n = 1;
  /* One more, so that one reads while n run jobs; the main thread is
   * one of them.
   */
  n++;
  threads = calloc (n, sizeof *threads);
  if (!threads) {
    fprintf (stderr, "error: out of memory\n");
    exit (EXIT_FAILURE);
  }
  for (i = 1; i < n; ++i) {
    int err = pthread_create (&threads[i], NULL, serve, NULL);

    if (err) {
      fprintf (stderr, "error: pthread_create: %s\n", strerror (err));
      exit (EXIT_FAILURE);
    }
  }
  nr_threads = n;
}

void
nbdkit__workers_serve (int (*read) (struct job **job))
{
  unsigned i;

  read_job = read;
  serve (NULL);
  for (i = 1; i < nr_threads; ++i)
    pthread_join (threads[i], NULL);
  free (threads);
  threads = NULL;
  nr_threads = 0;
}

#ifdef NBDKIT_FUZZING
void
nbdkit__fuzz_reset_workers (void)
{
  struct job *job;

  while ((job = queue_head) != NULL) {
    queue_head = job->next;
    nbdkit__job_free (job);
  }
  queue_tail = &queue_head;
  while ((job = free_jobs) != NULL) {
    free_jobs = job->next;
    free (job);
  }
  nr_free_jobs = 0;
  leader_busy = false;
  done = false;
  free (table);
  table = NULL;
  table_size = 0;
}
#endif
