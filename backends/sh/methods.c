/* backends/sh/methods.c: the callbacks of the sh and eval backends.
 *
 * Each callback runs one method of the script (run_method, which asks
 * the program for the command and call.c to run it) and turns the exit
 * status and output into what libnbdkit-backend expects, following
 * nbdkit-sh-plugin(3): the arguments of each method, "true"/"false"
 * for booleans, flags as comma-separated words and the defaults of a
 * missing method (exit status 2); what a method prints is parsed by
 * parse.c.  Also owns the private temporary directory that
 * scripts see as $tmpdir.  Callbacks may run on several worker threads
 * at once: after start-up, the state here is read-only, except the
 * handles, which belong to one connection each.
 *
 * This file has what every method needs (running one, its messages,
 * the conventions of its arguments and output) and the methods of
 * start-up, exports and connections; methods-caps.c has the
 * capabilities (can_*), methods-data.c the data methods.
 */

#include <config.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "methods.h"
#include "methods-internal.h"

/* The arguments of a method: at most this many after its name. */
#define MAX_METHOD_ARGS 8

static char *tmpdir;            /* $tmpdir of the scripts */
/* What the script's thread_model printed (methods-caps.c). */
int script_thread_model = NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
static char **child_env;        /* the environment of the scripts */

/* The names default_export returned, which must outlive the call: each
 * distinct name is kept once, until unload.
 */
static struct name {
  struct name *next;
  char s[];
} *default_names;
static pthread_mutex_t default_names_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- messages ---- */

int
bad_false (const char *method)
{
  method_error (EIO, method, "exit status 3 (false) is only meaningful "
                "for the can_* and is_rotational methods");
  return -1;
}

/* ---- the temporary directory ---- */

/* The directory a previous process of this backend made, if its path
 * is in the memfd and it is still our private directory.
 */
static char *
reuse_tmpdir (int fd)
{
  char path[PATH_MAX];
  ssize_t n = pread (fd, path, sizeof path - 1, 0);
  struct stat st;

  if (n <= 0)
    return NULL;
  path[n] = '\0';
  if (path[0] != '/' || lstat (path, &st) == -1 || !S_ISDIR (st.st_mode) ||
      st.st_uid != geteuid () || (st.st_mode & 077) != 0)
    return NULL;
  return strdup (path);
}

static int
make_child_env (void)
{
  extern char **environ;
  size_t n = 0, i, j = 0;

  for (i = 0; environ[i]; ++i)
    n++;
  child_env = calloc (n + 2, sizeof *child_env);
  if (!child_env)
    return -1;
  /* The backend's environment (the server's, unless
   * --backend-clean-environment), without the channel's variable: the
   * channel is not open in the scripts.
   */
  for (i = 0; environ[i]; ++i)
    if (strncmp (environ[i], "tmpdir=", 7) != 0 &&
        strncmp (environ[i], "NBDKIT_HELPER_FD=", 17) != 0)
      child_env[j++] = environ[i];
  if (asprintf (&child_env[j], "tmpdir=%s", tmpdir) == -1) {
    free (child_env);
    child_env = NULL;
    return -1;
  }
  return 0;
}

int
methods_tmpdir (const char *prefix)
{
  int fd = nbdkit_memfd ();

  if (tmpdir)
    return 0;
  if (fd >= 0)
    tmpdir = reuse_tmpdir (fd);
  if (tmpdir)
    nbdkit_debug ("tmpdir: %s (kept from the previous process)", tmpdir);
  else {
    const char *base = getenv ("TMPDIR");
    char *t;

    if (!base || !*base)
      base = "/tmp";
    if (asprintf (&t, "%s/nbdkit-%s-XXXXXX", base, prefix) == -1) {
      nbdkit_error ("out of memory");
      return -1;
    }
    if (mkdtemp (t) == NULL) {
      nbdkit_error ("cannot create a temporary directory in %s: %m "
                    "(set TMPDIR to a writable directory)", base);
      free (t);
      return -1;
    }
    tmpdir = t;
    nbdkit_debug ("tmpdir: %s", tmpdir);
    /* So that the next process of this backend, after a crash, finds
     * the scripts' state where they left it.
     */
    if (fd >= 0 &&
        (ftruncate (fd, 0) == -1 ||
         pwrite (fd, tmpdir, strlen (tmpdir), 0) != (ssize_t) strlen (tmpdir)))
      nbdkit_debug ("cannot record tmpdir in the memfd: %m");
  }
  if (make_child_env () == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  return 0;
}

static int
remove_entry (const char *path, const struct stat *st, int flag,
              struct FTW *ftw)
{
  if (flag == FTW_DP ? rmdir (path) : unlink (path))
    nbdkit_debug ("cannot remove %s: %m", path);
  return 0;
}

/* ---- running methods ---- */

enum call_status
run_method (const char *method, const char *const *args, struct call_io *io)
{
  extern char **environ;
  const char *argv[METHOD_CMD_MAX + MAX_METHOD_ARGS + 1];
  size_t n = script_command (method, argv), i;

  if (n == 0)
    return CALL_MISSING;
  for (i = 0; args && args[i] && i < MAX_METHOD_ARGS; ++i)
    argv[n++] = args[i];
  argv[n] = NULL;
  return call_run (argv, child_env ? child_env : environ, script_label,
                   method, io);
}

enum call_status
run_handle_method (struct sh_handle *h, const char *method,
                   const char *const *args, struct call_io *io)
{
  enum call_status r = run_method (method, args, io);

  /* The library fails the client's later requests with ESHUTDOWN, and
   * with 6 has the server drop the connection at once.
   */
  if (call_disconnect)
    nbdkit_disconnect (call_disconnect == 6);
  return r;
}

int
method_result (enum call_status r, const char *method, int if_missing)
{
  switch (r) {
  case CALL_OK:
    return 0;
  case CALL_MISSING:
    return if_missing;
  case CALL_FALSE:
    return bad_false (method);
  default:
    return -1;
  }
}

int
simple_handle_method (struct sh_handle *h, const char *method,
                      const char *const *args, struct call_io *io,
                      int if_missing)
{
  return method_result (run_handle_method (h, method, args, io), method,
                        if_missing);
}

int
simple_method (const char *method, const char *const *args,
               struct call_io *io, int if_missing)
{
  return method_result (run_method (method, args, io), method, if_missing);
}

void
flags_string (uint32_t flags, char *buf, size_t len)
{
  static const struct { uint32_t flag; const char *word; } words[] = {
    { NBDKIT_FLAG_FUA, "fua" },
    { NBDKIT_FLAG_MAY_TRIM, "may_trim" },
    { NBDKIT_FLAG_REQ_ONE, "req_one" },
    { NBDKIT_FLAG_FAST_ZERO, "fast" },
  };
  size_t i, used = 0;

  buf[0] = '\0';
  for (i = 0; i < sizeof words / sizeof words[0]; ++i)
    if (flags & words[i].flag) {
      int r = snprintf (buf + used, len - used, "%s%s",
                        used ? "," : "", words[i].word);

      if (r > 0 && (size_t) r < len - used)
        used += (size_t) r;
    }
}

static const char *
bool_string (int b)
{
  return b ? "true" : "false";
}

/* ---- start-up ---- */

int
methods_config (const char *key, const char *value)
{
  const char *args[] = { key, value, NULL };

  switch (run_method ("config", args, NULL)) {
  case CALL_OK:
    return 0;
  case CALL_MISSING:
    nbdkit_error ("%s%sunknown parameter '%s=%s': the script has no "
                  "config method to take it", script_label,
                  *script_label ? ": " : "", key, value);
    nbdkit_set_error (EINVAL);
    return -1;
  case CALL_FALSE:
    return bad_false ("config");
  default:
    return -1;
  }
}

int
methods_config_complete (void)
{
  return simple_method ("config_complete", NULL, NULL, 0);
}

int
methods_thread_model (void)
{
  struct call_io io = { .want_out = 1 };
  int model = NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS;

  switch (run_method ("thread_model", NULL, &io)) {
  case CALL_OK: {
    int m = parse_thread_model (io.out);

    if (m != -1)
      script_thread_model = model = m;
    free (io.out);
    return model;
  }
  case CALL_MISSING:
    return model;
  case CALL_FALSE:
    return bad_false ("thread_model");
  default:
    return -1;
  }
}

int
methods_get_ready (void)
{
  /* The backend is already a process of its own, as nbdkit is after
   * forking into the background: after_fork follows get_ready.
   */
  if (simple_method ("get_ready", NULL, NULL, 0) == -1)
    return -1;
  return simple_method ("after_fork", NULL, NULL, 0);
}

void
methods_unload (void)
{
  int fd = nbdkit_memfd ();

  /* Errors are ignored (the library has printed them). */
  run_method ("unload", NULL, NULL);
  if (tmpdir) {
    nftw (tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (fd >= 0 && ftruncate (fd, 0) == -1)
      nbdkit_debug ("cannot clear the memfd: %m");
    free (tmpdir);
    tmpdir = NULL;
  }
  while (default_names) {
    struct name *next = default_names->next;

    free (default_names);
    default_names = next;
  }
  if (child_env) {
    size_t i;

    for (i = 0; child_env[i]; ++i)
      if (strncmp (child_env[i], "tmpdir=", 7) == 0)
        free (child_env[i]);
    free (child_env);
    child_env = NULL;
  }
}

void
methods_dump_plugin (void)
{
  /* As nbdkit: exit statuses up to 8 have a meaning (see the manual
   * for what this server can do with 4 to 8).
   */
  printf ("max_known_status=8\n");
}

/* ---- exports ---- */

static const char *
intern_name (const char *s)
{
  struct name *n;
  const char *r = NULL;

  pthread_mutex_lock (&default_names_lock);
  for (n = default_names; n && !r; n = n->next)
    if (strcmp (n->s, s) == 0)
      r = n->s;
  if (!r && (n = malloc (sizeof *n + strlen (s) + 1)) != NULL) {
    strcpy (n->s, s);
    n->next = default_names;
    default_names = n;
    r = n->s;
  }
  pthread_mutex_unlock (&default_names_lock);
  if (!r)
    nbdkit_set_error (ENOMEM);
  return r;
}

const char *
methods_default_export (int readonly, int is_tls)
{
  const char *args[] = { bool_string (readonly), bool_string (is_tls), NULL };
  struct call_io io = { .want_out = 1 };
  const char *name;

  switch (run_method ("default_export", args, &io)) {
  case CALL_OK:
    name = parse_default_export (io.out);
    if (name)
      name = intern_name (name);
    free (io.out);
    return name;
  case CALL_MISSING:
    return "";
  case CALL_FALSE:
    bad_false ("default_export");
    return NULL;
  default:
    return NULL;
  }
}

int
methods_list_exports (int readonly, int is_tls,
                      struct nbdkit_exports *exports)
{
  const char *args[] = { bool_string (readonly), bool_string (is_tls), NULL };
  struct call_io io = { .want_out = 1 };
  int r;

  switch (run_method ("list_exports", args, &io)) {
  case CALL_OK:
    break;
  case CALL_MISSING: {
    /* As nbdkit: the one export of default_export, and when that
     * fails (its error is logged), an empty list.
     */
    char *name = nbdkit_connection_default_export (readonly, is_tls);

    r = name ? nbdkit_add_export (exports, name, NULL) : 0;
    free (name);
    return r;
  }
  case CALL_FALSE:
    return bad_false ("list_exports");
  default:
    return -1;
  }

  r = parse_exports (io.out, exports);
  free (io.out);
  return r;
}

/* ---- connections ---- */

/* Once per client connection, before its listing or open: an error
 * refuses it.
 */
int
methods_preconnect (int readonly)
{
  const char *args[] = { bool_string (readonly), NULL };

  return simple_method ("preconnect", args, NULL, 0);
}

void *
methods_open (int readonly)
{
  const char *export = nbdkit_export_name ();
  const char *tls = bool_string (nbdkit_is_tls ());
  const char *args[] = { bool_string (readonly), export ? export : "", tls,
                         NULL };
  struct call_io io = { .want_out = 1 };
  struct sh_handle *h;

  h = calloc (1, sizeof *h);
  if (!h) {
    nbdkit_set_error (ENOMEM);
    return NULL;
  }
  switch (run_method ("open", args, &io)) {
  case CALL_OK:
    parse_handle (io.out, &io.outlen);
    h->h = io.out;
    break;
  case CALL_MISSING:
    h->h = strdup ("");
    if (!h->h) {
      free (h);
      nbdkit_set_error (ENOMEM);
      return NULL;
    }
    break;
  case CALL_FALSE:
    bad_false ("open");
    /* fallthrough */
  default:
    free (h);
    return NULL;
  }
  return h;
}

void
methods_close (void *handle)
{
  struct sh_handle *h = handle;
  const char *args[] = { h->h, NULL };

  run_method ("close", args, NULL);     /* errors are only logged */
  free (h->h);
  free (h->description);
  free (h);
}

int64_t
methods_get_size (void *handle)
{
  struct sh_handle *h = handle;
  const char *args[] = { h->h, NULL };
  struct call_io io = { .want_out = 1 };
  int64_t size;

  switch (run_method ("get_size", args, &io)) {
  case CALL_OK:
    size = parse_size (io.out);
    free (io.out);
    return size;
  case CALL_MISSING:
    method_error (EIO, "get_size", "the script must have a get_size method");
    return -1;
  case CALL_FALSE:
    return bad_false ("get_size");
  default:
    return -1;
  }
}

const char *
methods_export_description (void *handle)
{
  struct sh_handle *h = handle;
  const char *args[] = { h->h, NULL };
  struct call_io io = { .want_out = 1 };

  /* No way to fail here: an error means no description (logged). */
  if (run_method ("export_description", args, &io) != CALL_OK)
    return NULL;
  chomp (io.out, &io.outlen);
  free (h->description);
  h->description = io.out;
  return h->description;
}

int
methods_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                    uint32_t *maximum)
{
  struct sh_handle *h = handle;
  const char *args[] = { h->h, NULL };
  struct call_io io = { .want_out = 1 };
  int r;

  *minimum = *preferred = *maximum = 0;
  switch (run_method ("block_size", args, &io)) {
  case CALL_OK:
    break;
  case CALL_MISSING:
    return 0;
  case CALL_FALSE:
    return bad_false ("block_size");
  default:
    return -1;
  }
  r = parse_block_size (io.out, minimum, preferred, maximum);
  free (io.out);
  return r;
}
