/* nbdkit front end: the start-up sequence.
 *
 * After the command line (options.c): starts the backend process, sends
 * it the configuration (the parameters after BACKEND, less those of the
 * filters, which are configured here), answers --help, --dump-plugin
 * and --version from it, then gets the filters ready, listens and runs
 * the loop.
 */

#include <config.h>

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "options.h"
#include "../filters/filter.h"

/* The arguments after BACKEND, resolved once the backend said hello. */
static char **backend_args;
static int nr_backend_args;

/* Is arg of the form key=value with a plausible key? */
static bool
is_key_value (const char *arg)
{
  const char *p = arg;

  if (!(isalpha ((unsigned char) *p) || *p == '_'))
    return false;
  for (; *p && *p != '='; ++p)
    if (!(isalnum ((unsigned char) *p) || strchr ("_-.", *p)))
      return false;
  return *p == '=';
}

static void
add_param (const char *key, size_t keylen, const char *value, bool bare)
{
  struct config_param *p;

  p = realloc (opt.params, (opt.nr_params + 1) * sizeof *p);
  if (!p)
    die ("out of memory");
  opt.params = p;
  p[opt.nr_params].key = strndup (key, keylen);
  /* A script on stdin or through a pipe: the backend gets a copy. */
  if (keylen == 6 && memcmp (key, "script", 6) == 0)
    value = inline_script (value);
  p[opt.nr_params].value = strdup (value);
  p[opt.nr_params].bare = bare;
  if (!p[opt.nr_params].key || !p[opt.nr_params].value)
    die ("out of memory");
  opt.nr_params++;
}

/* The filter (nearest the client first) that declares key, or NULL. */
static const struct filter *
filter_of_key (const char *key, size_t keylen)
{
  size_t i;
  const char *const *k;

  for (i = 0; i < opt.nr_filters; ++i) {
    for (k = opt.filters[i]->keys; k && *k; ++k) {
      size_t n = strlen (*k);

      if (n && (*k)[n - 1] == '*') {
        if (keylen >= n - 1 && strncmp (key, *k, n - 1) == 0)
          return opt.filters[i];
      }
      else if (n == keylen && strncmp (key, *k, keylen) == 0)
        return opt.filters[i];
    }
  }
  return NULL;
}

/* A parameter of a filter: configured now (exits 1 on a bad value). */
static void
config_filter (const struct filter *f, const char *key, size_t keylen,
               const char *value)
{
  char *k = strndup (key, keylen);

  if (!k)
    die ("out of memory");
  nbdkit_debug ("filter %s: config key=%s, value=%s", f->name, k, value);
  if (f->config && f->config (k, value) == -1)
    die ("%s filter: %s=%s: not valid (see above, or "
         "'nbdkit --filter=%s BACKEND --help')", f->name, k, value, f->name);
  free (k);
}

/* After all parameters: each filter checks it has what it needs. */
static void
filters_config_complete (void)
{
  size_t i;

  for (i = 0; i < opt.nr_filters; ++i)
    if (opt.filters[i]->config_complete &&
        opt.filters[i]->config_complete () == -1)
      die ("%s filter: the configuration is not complete (see above)",
           opt.filters[i]->name);
}

static void
filters_get_ready (void)
{
  size_t i;

  for (i = 0; i < opt.nr_filters; ++i)
    if (opt.filters[i]->get_ready && opt.filters[i]->get_ready () == -1)
      die ("%s filter: could not get ready (see above)",
           opt.filters[i]->name);
}

static void
filters_unload (void)
{
  size_t i;

  for (i = opt.nr_filters; i-- > 0; )
    if (opt.filters[i]->unload)
      opt.filters[i]->unload ();
}

/* Turn the arguments after BACKEND into key=value pairs, applying the
 * backend's magic config key (or "script" for the first bare argument
 * of a backend that has none).  A backend may change its magic key in
 * the reply to a CONFIG (the sh backend does, after loading the script
 * that declares one): the supervisor then renames the later bare ones.
 */
static void
resolve_params (struct backend_proc *bp)
{
  const struct backend_info *bi = bproc_info (bp);
  int i;

  for (i = 0; i < nr_backend_args; ++i) {
    const char *arg = backend_args[i];

    if (is_key_value (arg)) {
      size_t keylen = (size_t) (strchr (arg, '=') - arg);
      const struct filter *f = filter_of_key (arg, keylen);

      if (f)
        config_filter (f, arg, keylen, strchr (arg, '=') + 1);
      else
        add_param (arg, keylen, strchr (arg, '=') + 1, false);
    }
    else if (bi->magic_config_key)
      add_param (bi->magic_config_key, strlen (bi->magic_config_key), arg,
                 true);
    else if (i == 0)
      add_param ("script", 6, arg, true);
    else
      die ("%s: '%s': backend parameters must be key=value "
           "(this backend has no magic parameter)", bi->name, arg);
  }
  filters_config_complete ();
}

/* What the (first) backend said of itself. */
static const struct backend_info *
info (void)
{
  return bproc_info (bproc_first ());
}

static void
print_backend_help (void)
{
  size_t i;

  printf ("%s", info ()->name);
  if (info ()->longname && *info ()->longname)
    printf (" (%s)", info ()->longname);
  printf (" backend\n");
  if (info ()->description && *info ()->description)
    printf ("%s\n", info ()->description);
  if (info ()->magic_config_key)
    printf ("\nThe first bare argument is taken as %s=VALUE.\n",
            info ()->magic_config_key);
  if (info ()->config_help && *info ()->config_help)
    printf ("\nParameters:\n%s\n", info ()->config_help);
  for (i = 0; i < opt.nr_filters; ++i) {
    const struct filter *f = opt.filters[i];

    printf ("\n%s filter: %s\n", f->name, f->description);
    if (f->config_help && *f->config_help)
      printf ("%s\n", f->config_help);
  }
  printf ("\nRun 'nbdkit --help' for the server's own options, "
          "and see nbdkit-%s-backend(1).\n", info ()->name);
}

static void dump_backend (void);

/* The version reported for the backend.  A backend found by name in
 * the backend directory and built with this package is reported with
 * the version of the nbdkit release this server matches, as nbdkit's
 * bundled plugins carry nbdkit's version; any other backend's own
 * version is reported as it is.
 */
static const char *
backend_version (void)
{
  if (!info ()->version || !*info ()->version)
    return NULL;
  if (!strchr (opt.backend_name, '/') &&
      strcmp (info ()->version, PACKAGE_VERSION) == 0)
    return NBDKIT_COMPAT_VERSION;
  return info ()->version;
}

/* --version with a backend: after the "nbdkit VERSION" line (options.c),
 * one "NAME VERSION" line per filter, nearest the client first, one for
 * the backend, as nbdkit prints them.
 */
static void
print_versions (void)
{
  size_t i;

  for (i = 0; i < opt.nr_filters; ++i)
    printf ("%s %s\n", opt.filters[i]->name, NBDKIT_COMPAT_VERSION);
  printf ("%s %s\n", info ()->name,
          backend_version () ? backend_version () : "(no version)");
}

/* For --help and --dump-plugin: a backend that is only asked about
 * itself, synchronously, before anything else runs.
 */
struct sync_call {
  bool done;
  json_t *reply;
  char *msg;
};

static void
sync_done (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct sync_call *c = opaque;
  const char *why = NULL;

  c->done = true;
  if (!reply)
    c->msg = strdup ("the backend stopped before it answered");
  else if (reply->status)
    c->msg = strdup (payload ? (char *) payload : hp_error_name (reply->status));
  else if ((c->reply = bproc_parse_json (payload, len, &why)) == NULL)
    c->msg = strdup (why);
  payload_free (payload);
}

static json_t *
call_sync (uint16_t type, char **msg)
{
  struct sync_call c = { 0 };

  if (type == HP_HELLO)
    bproc_hello (bproc_first (), sync_done, &c);
  else
    bproc_dump (bproc_first (), sync_done, &c);
  while (!c.done)
    ev_run (loop, EVRUN_ONCE);
  *msg = c.msg;
  return c.reply;
}

static void
describe_backend (void)
{
  json_t *hello;
  char *msg;

  if (!backend_spawn (bproc_first ()))
    exit (EXIT_FAILURE);
  hello = call_sync (HP_HELLO, &msg);
  if (!hello)
    die ("%s: %s", opt.backend_name, msg);
  if (backend_info_from_hello (bproc_first (), hello) == -1)
    die ("%s: the backend announced an unknown thread model '%s'",
         opt.backend_name,
         json_string_value (json_object_get (hello, "thread_model")));
  json_decref (hello);
  if (want_help)
    print_backend_help ();
  else if (want_version)
    print_versions ();
  else
    dump_backend ();
  fflush (stdout);      /* never-blocks: probing, no client is served */
  channel_close (bproc_first (), false);
  while (backend_pid (bproc_first ()) > 0)
    ev_run (loop, EVRUN_ONCE);
}

static void
dump_backend (void)
{
  json_t *reply, *value;
  const char *key;
  char *msg;

  printf ("path=%s\n", opt.backend_path);
  printf ("name=%s\n", info ()->name);
  if (backend_version ())
    printf ("version=%s\n", backend_version ());
  printf ("package_version=%s\n", PACKAGE_VERSION);
  if (info ()->longname && *info ()->longname)
    printf ("longname=%s\n", info ()->longname);
  printf ("api_version=2\n");
  printf ("helper_protocol=%d\n", HP_PROTOCOL_VERSION);
  /* No filter here lowers the backend's thread model: the two agree. */
  printf ("max_thread_model=%s\n", thread_model_name (info ()->thread_model));
  printf ("thread_model=%s\n", thread_model_name (info ()->thread_model));
  if (info ()->magic_config_key)
    printf ("magic_config_key=%s\n", info ()->magic_config_key);
  {
    json_t *cb;
    size_t i;

    json_array_foreach (info ()->callbacks, i, cb)
      if (json_is_string (cb))
        printf ("has_%s=1\n", json_string_value (cb));
  }
  if ((reply = call_sync (HP_DUMP, &msg)) != NULL) {
    json_object_foreach (reply, key, value) {
      if (json_is_string (value))
        printf ("%s=%s\n", key, json_string_value (value));
      else if (json_is_integer (value))
        printf ("%s=%" JSON_INTEGER_FORMAT "\n", key,
                json_integer_value (value));
      else if (json_is_boolean (value))
        printf ("%s=%d\n", key, json_is_true (value));
    }
    json_decref (reply);
  }
  else {
    nbdkit_error ("%s: --dump-plugin: %s", info ()->name, msg ? msg : "failed");
    free (msg);
  }
}

/* -D nbdkit.backend_procs=N: how many backend processes serve. */
static unsigned
backend_procs (void)
{
  int n = server_debug_flag ("backend_procs", 1);

  if (n < 1 || n > 64)
    die ("-D nbdkit.backend_procs=%d: the number of backend processes must "
         "be 1 to 64", n);
  return n;
}

int
main (int argc, char *argv[])
{
  int first_arg, status;
  struct backend_proc *bp;

  signal (SIGPIPE, SIG_IGN);
  first_arg = parse_command_line (argc, argv);

  opt.backend_path = backend_locate (opt.backend_name);
  loop_init ();

  route_debug_flags ();
  bproc_create_all (want_help || want_dump || want_version ? 1
                    : backend_procs ());
  if (want_help || want_dump || want_version) {
    describe_backend ();
    exit (EXIT_SUCCESS);
  }
  service_resolve_ids ();
  captive_exit_with_parent ();
  log_start ();

  tls_init ();
  if (!opt.foreground)
    daemon_start ();
  /* --swap: after the fork into the background, as locks are not
   * inherited; the backend, a separate process, is not locked.
   */
  if (want_swap && mlockall (MCL_CURRENT | MCL_FUTURE) == -1)
    die ("--swap: mlockall: %m (raise the locked-memory limit, "
         "ulimit -l, or run as root; or leave out --swap)");

  backend_args = &argv[first_arg];
  nr_backend_args = argc - first_arg;
  /* The backend processes: the first one's HELLO settles how the
   * parameters are read; the others are started alike.
   */
  for (bp = bproc_first (); bp; bp = bproc_next (bp))
    supervisor_start (bp, bp == bproc_first () ? resolve_params : NULL);
  filters_get_ready ();

  if (opt.single)
    serve_single ();
  else if (opt.socket_activated)
    listen_adopt (3, service_listen_fds ());
  else
    listen_start ();
  daemon_write_pidfile ();
  captive_print_uri ();
  /* --run: as the user who started the server, as nbdkit runs it,
   * before -u and -g take effect.
   */
  captive_run ();
  service_drop_privileges ();

  daemon_ready ();
  service_ready ();
  status = captive_wait (loop_run ());
  filters_unload ();
  tls_cleanup ();
  return status;
}
