/* nbdkit front end: what a backend says of itself.
 *
 * Owns struct backend_info, the part of a backend_proc (backend-proc.h)
 * that holds the HELLO reply of its first incarnation (name, version,
 * thread model, features, ...), and the thread model that GET_READY
 * may lower.  The reply is the backend's: every member is checked
 * before it is used, and a bad one is reported, never fatal here (the
 * caller decides: main.c and the supervisor stop the server).
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "backend-proc.h"

/* The thread model called s (NULL: the default, parallel); false if
 * there is none of that name.
 */
static bool
parse_thread_model (const char *s, enum thread_model *m)
{
  if (!s || strcmp (s, "parallel") == 0)
    *m = THREAD_MODEL_PARALLEL;
  else if (strcmp (s, "serialize_requests") == 0)
    *m = THREAD_MODEL_SERIALIZE_REQUESTS;
  else if (strcmp (s, "serialize_all_requests") == 0)
    *m = THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
  else if (strcmp (s, "serialize_connections") == 0)
    *m = THREAD_MODEL_SERIALIZE_CONNECTIONS;
  else
    return false;
  return true;
}

/* GET_READY may name a more serialized thread model than HELLO did (a
 * script backend learns its script's only after loading it).
 */
void
backend_lower_thread_model (struct backend_proc *bp, const char *s)
{
  enum thread_model m;

  if (!s)
    return;
  if (!parse_thread_model (s, &m)) {
    nbdkit_debug ("get_ready: unknown thread model '%s' ignored", s);
    return;
  }
  if (m < bp->info.thread_model) {
    nbdkit_debug ("%s: thread model lowered to %s", bp->info.name,
                  thread_model_name (m));
    bp->info.thread_model = m;
  }
}

static char *
dup_member (json_t *j, const char *key)
{
  const char *s = json_string_value (json_object_get (j, key));

  return s ? strdup (s) : NULL;
}

const char *
thread_model_name (enum thread_model m)
{
  switch (m) {
  case THREAD_MODEL_SERIALIZE_CONNECTIONS: return "serialize_connections";
  case THREAD_MODEL_SERIALIZE_ALL_REQUESTS: return "serialize_all_requests";
  case THREAD_MODEL_SERIALIZE_REQUESTS: return "serialize_requests";
  case THREAD_MODEL_PARALLEL: return "parallel";
  }
  return "unknown";
}

/* The HELLO reply of the first incarnation: -1 (nothing set) if its
 * thread model is not one of the four.
 */
int
backend_info_from_hello (struct backend_proc *bp, json_t *reply)
{
  json_t *features = json_object_get (reply, "features"), *f;
  size_t i;

  if (!parse_thread_model (json_string_value (json_object_get
                                              (reply, "thread_model")),
                           &bp->info.thread_model))
    return -1;
  bp->info.name = dup_member (reply, "name");
  if (!bp->info.name || !*bp->info.name) {
    free (bp->info.name);
    bp->info.name = strdup (opt.backend_name);
  }
  bp->info.version = dup_member (reply, "version");
  bp->info.longname = dup_member (reply, "longname");
  bp->info.description = dup_member (reply, "description");
  bp->info.magic_config_key = dup_member (reply, "magic_config_key");
  bp->info.config_help = dup_member (reply, "config_help");
  bp->info.callbacks = json_incref (json_object_get (reply, "callbacks"));
  bp->info.fd_keys = json_incref (json_object_get (reply, "fd_keys"));
  json_array_foreach (features, i, f)
    if (json_is_string (f) &&
        strcmp (json_string_value (f), HP_FEATURE_MEMFD) == 0)
      bp->info.wants_memfd = true;
    else if (json_is_string (f) &&
             strcmp (json_string_value (f), HP_FEATURE_SHM) == 0)
      bp->info.wants_shm = true;
  nbdkit_debug ("backend %s %s, pid %d, thread model %s",
                bp->info.name, bp->info.version ? bp->info.version : "",
                (int) backend_pid (bp),
                thread_model_name (bp->info.thread_model));
  return 0;
}
