/* libnbdkit-backend: the connections the server numbers, and the
 * names of exports.
 *
 * OPEN, LIST_EXPORTS and DEFAULT_EXPORT carry the server's number of
 * the client connection they are for ("connection", 0 = none).  As in
 * nbdkit, where these callbacks run on the connection's own thread,
 * preconnect runs once per connection, before anything else of it (an
 * error fails the message, and so the connection's open), and
 * default_export once per connection: its answer is kept for the
 * connection's later opens and listings.  A small table remembers the
 * latest connections; one that falls out of it would only run them
 * again.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend-internal.h"

#define REMEMBERED 64

struct remembered {
  uint64_t connection;          /* 0 = free */
  bool refused;                 /* preconnect failed: all of it fails */
  char *default_name;           /* NULL = not asked yet */
  bool readonly, tls;           /* what default_export was asked with */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct remembered table[REMEMBERED];

/* The entry of connection, made if new (the oldest goes); *is_new says
 * which.  Called with lock held.
 */
static struct remembered *
lookup (uint64_t connection, bool *is_new)
{
  struct remembered *oldest = &table[0];
  size_t i;

  for (i = 0; i < REMEMBERED; ++i) {
    if (table[i].connection == connection) {
      *is_new = false;
      return &table[i];
    }
    if (table[i].connection < oldest->connection)
      oldest = &table[i];
  }
  free (oldest->default_name);
  memset (oldest, 0, sizeof *oldest);
  oldest->connection = connection;
  *is_new = true;
  return oldest;
}

int
nbdkit__connection_start (uint64_t connection, bool readonly)
{
  struct remembered *e;
  bool is_new, refused;

  if (connection == 0 || !nbdkit__be->preconnect)
    return 0;
  pthread_mutex_lock (&lock);
  e = lookup (connection, &is_new);
  refused = e->refused;
  pthread_mutex_unlock (&lock);
  if (refused) {
    nbdkit_error ("preconnect refused this connection");
    nbdkit_set_error (EPERM);
    return -1;
  }
  if (!is_new || nbdkit__be->preconnect (readonly) == 0)
    return 0;
  pthread_mutex_lock (&lock);
  e = lookup (connection, &is_new);
  e->refused = true;
  pthread_mutex_unlock (&lock);
  return -1;
}

char *
nbdkit__default_export (uint64_t connection, bool readonly, bool tls)
{
  struct remembered *e;
  const char *name;
  char *copy = NULL;
  bool is_new;

  if (connection) {
    pthread_mutex_lock (&lock);
    e = lookup (connection, &is_new);
    if (e->default_name && e->readonly == readonly && e->tls == tls)
      copy = strdup (e->default_name);
    pthread_mutex_unlock (&lock);
    if (copy)
      return copy;
  }
  name = nbdkit__be->default_export ? nbdkit__be->default_export (readonly,
                                                                   tls)
                                    : "";
  if (!name)
    return NULL;
  if (strlen (name) > 4096) {
    nbdkit_error ("default_export returned a name longer than 4096 bytes");
    return NULL;
  }
  copy = strdup (name);
  if (!copy) {
    nbdkit_set_error (ENOMEM);
    return NULL;
  }
  if (connection) {
    char *kept = strdup (copy);

    pthread_mutex_lock (&lock);
    e = lookup (connection, &is_new);
    free (e->default_name);
    e->default_name = kept;
    e->readonly = readonly;
    e->tls = tls;
    pthread_mutex_unlock (&lock);
  }
  return copy;
}

char *
nbdkit_connection_default_export (int readonly, int is_tls)
{
  return nbdkit__default_export (nbdkit__context_get ()->connection,
                                 readonly, is_tls);
}

void
nbdkit__op_list_exports (const struct hp_header *req, json_t *j)
{
  bool readonly = json_is_true (json_object_get (j, "readonly"));
  bool tls = json_is_true (json_object_get (j, "tls"));
  uint64_t connection = json_integer_value (json_object_get (j,
                                                            "connection"));
  struct nbdkit_exports *e = nbdkit__exports_new ();
  int r = 0;

  nbdkit__context_begin (true, NULL, tls);
  nbdkit__context_get ()->connection = connection;
  if (!e) {
    nbdkit_error ("out of memory");
    r = -1;
  }
  else if (nbdkit__connection_start (connection, readonly) == -1)
    r = -1;
  else if (nbdkit__be->list_exports)
    r = nbdkit__be->list_exports (readonly, tls, e);
  else {
    char *name = nbdkit__default_export (connection, readonly, tls);

    r = name ? nbdkit_add_export (e, name, NULL) : -1;
    free (name);
  }
  if (r == -1)
    nbdkit__send_error_reply (req, 0);
  else
    nbdkit__send_json_reply (req, 0, nbdkit__exports_to_json (e));
  nbdkit__context_end ();
  nbdkit__exports_free (e);
}

void
nbdkit__op_default_export (const struct hp_header *req, json_t *j)
{
  bool readonly = json_is_true (json_object_get (j, "readonly"));
  bool tls = json_is_true (json_object_get (j, "tls"));
  uint64_t connection = json_integer_value (json_object_get (j,
                                                            "connection"));
  char *name = NULL;
  json_t *reply = NULL;

  nbdkit__context_begin (true, NULL, tls);
  if (nbdkit__connection_start (connection, readonly) == 0)
    name = nbdkit__default_export (connection, readonly, tls);
  if (name && !(reply = json_pack ("{s:s}", "name", name)))
    nbdkit_error ("default_export returned a name that is not valid UTF-8");
  if (!reply)
    nbdkit__send_error_reply (req, HP_EINVAL);
  else
    nbdkit__send_json_reply (req, 0, reply);
  nbdkit__context_end ();
  free (name);
}

#ifdef NBDKIT_FUZZING
void
nbdkit__fuzz_reset_exports (void)
{
  size_t i;

  for (i = 0; i < REMEMBERED; ++i) {
    free (table[i].default_name);
    memset (&table[i], 0, sizeof table[i]);
  }
}
#endif
