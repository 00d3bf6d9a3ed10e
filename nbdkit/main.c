/* nbdkit front end: the command line and the start-up sequence.
 *
 * Owns struct options.  Parses and validates every option (usage errors
 * exit 1 with the bad value named), starts the backend process, sends
 * it the configuration, then listens and runs the loop.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct options opt = { .exportname = "" };

static bool want_help, want_dump;

enum {
  HELP_OPTION = 256,
  DUMP_PLUGIN_OPTION,
  FILTER_OPTION,
};

static const char short_options[] = "+D:e:fi:noP:p:rst:U:vV";
static const struct option long_options[] = {
  { "debug",        required_argument, NULL, 'D' },
  { "dump-plugin",  no_argument,       NULL, DUMP_PLUGIN_OPTION },
  { "export",       required_argument, NULL, 'e' },
  { "export-name",  required_argument, NULL, 'e' },
  { "exportname",   required_argument, NULL, 'e' },
  { "filter",       required_argument, NULL, FILTER_OPTION },
  { "foreground",   no_argument,       NULL, 'f' },
  { "no-fork",      no_argument,       NULL, 'f' },
  { "help",         no_argument,       NULL, HELP_OPTION },
  { "ip-addr",      required_argument, NULL, 'i' },
  { "ipaddr",       required_argument, NULL, 'i' },
  { "newstyle",     no_argument,       NULL, 'n' },
  { "oldstyle",     no_argument,       NULL, 'o' },
  { "pid-file",     required_argument, NULL, 'P' },
  { "pidfile",      required_argument, NULL, 'P' },
  { "port",         required_argument, NULL, 'p' },
  { "read-only",    no_argument,       NULL, 'r' },
  { "readonly",     no_argument,       NULL, 'r' },
  { "single",       no_argument,       NULL, 's' },
  { "stdin",        no_argument,       NULL, 's' },
  { "threads",      required_argument, NULL, 't' },
  { "unix",         required_argument, NULL, 'U' },
  { "verbose",      no_argument,       NULL, 'v' },
  { "version",      no_argument,       NULL, 'V' },
  { NULL },
};

static void
usage (void)
{
  printf (
"nbdkit [-D BACKEND.FLAG=N] [-e EXPORTNAME] [-f] [-i IPADDR] [-n]\n"
"       [-P PIDFILE] [-p PORT] [-r] [-s] [-t THREADS] [-U SOCKET] [-v]\n"
"       BACKEND [key=value ...]\n"
"\n"
"Serve BACKEND over the Network Block Device protocol.  BACKEND is a\n"
"backend name (memory, file, null, example1, ...) or the path of any\n"
"executable that speaks nbdkit-helper-protocol(5).\n"
"\n"
"Options:\n"
"  -D, --debug BACKEND.FLAG=N  set a backend debug flag\n"
"      --dump-plugin           print information about BACKEND and exit\n"
"  -e, --exportname NAME       the export name used in the URI\n"
"  -f, --foreground            do not fork into the background\n"
"  -i, --ipaddr IPADDR         listen on this address only\n"
"  -n, --newstyle              newstyle NBD protocol (the default)\n"
"  -P, --pidfile PIDFILE       write the server's pid once it is ready\n"
"  -p, --port PORT             TCP port (default 10809)\n"
"  -r, --readonly              the export is read-only\n"
"  -s, --single                serve one connection on stdin/stdout\n"
"  -t, --threads THREADS       worker threads in the backend (default 16)\n"
"  -U, --unix SOCKET           listen on a unix socket (- = private)\n"
"  -v, --verbose               debug messages on stderr\n"
"  -V, --version               print the version and exit\n"
"      --help                  this help; 'nbdkit BACKEND --help' shows\n"
"                              the backend's parameters\n"
"\n"
"Examples:\n"
"  nbdkit memory 1G\n"
"  nbdkit -r file disk.img\n"
"  nbdkit -U - null size=1M\n"
"\n"
"See nbdkit(1) for everything.\n");
}

/* Strictly parse a decimal unsigned number: the whole string, in range. */
static bool
parse_unsigned (const char *s, unsigned long max, unsigned long *r)
{
  char *end;

  if (!isdigit ((unsigned char) s[0]))
    return false;
  errno = 0;
  *r = strtoul (s, &end, 10);
  return errno == 0 && *end == '\0' && *r <= max;
}

/* -D NAME.FLAG=N */
static void
parse_debug_flag (const char *arg)
{
  const char *dot = strchr (arg, '.');
  const char *eq = strchr (arg, '=');
  char *end;
  long v;

  if (!dot || !eq || dot == arg || eq < dot + 2 || eq[1] == '\0')
    die ("-D %s: expected NAME.FLAG=N, for example -D memory.dir=1", arg);
  errno = 0;
  v = strtol (eq + 1, &end, 0);
  if (errno || *end || v < INT_MIN || v > INT_MAX)
    die ("-D %s: the value '%s' is not an integer", arg, eq + 1);

  /* The owner of the flag is only known once the backend name is: keep
   * them all as "NAME.FLAG" and sort them out later.
   */
  if (!opt.server_debug)
    opt.server_debug = json_object ();
  json_object_set_new (opt.server_debug,
                       strndup (arg, (size_t) (eq - arg)), json_integer (v));
}

/* The name -D flags use for the backend: its name, or for a path the
 * file name without "nbdkit-" and "-backend".
 */
static char *
backend_short_name (void)
{
  const char *base = strrchr (opt.backend_name, '/');
  char *name, *suffix;

  base = base ? base + 1 : opt.backend_name;
  if (strncmp (base, "nbdkit-", 7) == 0)
    base += 7;
  name = strdup (base);
  if (!name)
    die ("out of memory");
  suffix = strstr (name, "-backend");
  if (suffix && suffix[8] == '\0')
    *suffix = '\0';
  return name;
}

/* Hand -D flags named after the backend to the backend (in HELLO). */
static void
route_debug_flags (void)
{
  const char *key;
  json_t *value;
  void *tmp;
  char *name = backend_short_name ();
  size_t n = strlen (name);

  opt.backend_debug = json_object ();
  if (opt.server_debug) {
    json_object_foreach_safe (opt.server_debug, tmp, key, value) {
      if (strncmp (key, name, n) == 0 && key[n] == '.') {
        json_object_set (opt.backend_debug, key + n + 1, value);
        json_object_del (opt.server_debug, key);
      }
      else
        nbdkit_debug ("-D %s: no backend or filter of that name, ignored",
                      key);
    }
  }
  free (name);
}

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
add_param (const char *key, size_t keylen, const char *value)
{
  struct config_param *p;

  p = realloc (opt.params, (opt.nr_params + 1) * sizeof *p);
  if (!p)
    die ("out of memory");
  opt.params = p;
  p[opt.nr_params].key = strndup (key, keylen);
  p[opt.nr_params].value = strdup (value);
  if (!p[opt.nr_params].key || !p[opt.nr_params].value)
    die ("out of memory");
  opt.nr_params++;
}

/* Turn the arguments after BACKEND into key=value pairs, applying the
 * backend's magic config key (or "script" for the first bare argument
 * of a backend that has none).
 */
static void
resolve_params (char **args, int nr_args)
{
  int i;

  for (i = 0; i < nr_args; ++i) {
    const char *arg = args[i];

    if (is_key_value (arg))
      add_param (arg, (size_t) (strchr (arg, '=') - arg), strchr (arg, '=') + 1);
    else if (binfo.magic_config_key)
      add_param (binfo.magic_config_key, strlen (binfo.magic_config_key), arg);
    else if (i == 0)
      add_param ("script", 6, arg);
    else
      die ("%s: '%s': backend parameters must be key=value "
           "(this backend has no magic parameter)", binfo.name, arg);
  }
}

static void
send_config (void)
{
  size_t i;
  json_t *reply;
  char *msg;
  uint32_t status;

  for (i = 0; i < opt.nr_params; ++i) {
    nbdkit_debug ("config key=%s, value=%s",
                  opt.params[i].key, opt.params[i].value);
    status = channel_call_sync (HP_CONFIG,
                                json_pack ("{s:s, s:s}",
                                           "key", opt.params[i].key,
                                           "value", opt.params[i].value),
                                &reply, &msg);
    if (status)
      die ("%s: %s", binfo.name, msg ? msg : hp_error_name (status));
    json_decref (reply);
  }

  status = channel_call_sync (HP_CONFIG_COMPLETE, NULL, &reply, &msg);
  if (status)
    die ("%s: %s", binfo.name, msg ? msg : hp_error_name (status));
  json_decref (reply);
  status = channel_call_sync (HP_GET_READY, NULL, &reply, &msg);
  if (status)
    die ("%s: %s", binfo.name, msg ? msg : hp_error_name (status));
  json_decref (reply);
}

static void
print_backend_help (void)
{
  printf ("%s", binfo.name);
  if (binfo.longname && *binfo.longname)
    printf (" (%s)", binfo.longname);
  printf (" backend\n");
  if (binfo.description && *binfo.description)
    printf ("%s\n", binfo.description);
  if (binfo.magic_config_key)
    printf ("\nThe first bare argument is taken as %s=VALUE.\n",
            binfo.magic_config_key);
  if (binfo.config_help && *binfo.config_help)
    printf ("\nParameters:\n%s\n", binfo.config_help);
  printf ("\nRun 'nbdkit --help' for the server's own options, "
          "and see nbdkit-%s-backend(1).\n", binfo.name);
}

static const char *
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

static void
dump_backend (void)
{
  json_t *reply, *value;
  const char *key;
  char *msg;

  printf ("path=%s\n", opt.backend_path);
  printf ("name=%s\n", binfo.name);
  if (binfo.version && *binfo.version)
    printf ("version=%s\n", binfo.version);
  if (binfo.longname && *binfo.longname)
    printf ("longname=%s\n", binfo.longname);
  printf ("helper_protocol=%d\n", HP_PROTOCOL_VERSION);
  printf ("thread_model=%s\n", thread_model_name (binfo.thread_model));
  if (binfo.magic_config_key)
    printf ("magic_config_key=%s\n", binfo.magic_config_key);
  if (channel_call_sync (HP_DUMP, NULL, &reply, &msg) == 0) {
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
    nbdkit_error ("%s: --dump-plugin: %s", binfo.name, msg ? msg : "failed");
    free (msg);
  }
}

int
main (int argc, char *argv[])
{
  int c;
  unsigned long n;

  signal (SIGPIPE, SIG_IGN);

  /* Permute: options may follow the backend name, as in
   * 'nbdkit memory --help'.  Skip the leading '+' of short_options.
   */
  while ((c = getopt_long (argc, argv, short_options + 1, long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'D':
      parse_debug_flag (optarg);
      break;
    case DUMP_PLUGIN_OPTION:
      want_dump = true;
      break;
    case 'e':
      if (strlen (optarg) > NBD_MAX_STRING)
        die ("-e: the export name is longer than %d bytes", NBD_MAX_STRING);
      opt.exportname = optarg;
      break;
    case FILTER_OPTION:
      die ("--filter=%s: this version has no filters yet", optarg);
    case 'f':
      opt.foreground = true;
      break;
    case HELP_OPTION:
      want_help = true;
      break;
    case 'i':
      opt.ipaddr = optarg;
      break;
    case 'n':
      break;
    case 'o':
      die ("-o/--oldstyle: the oldstyle protocol is not supported by this "
           "version; use the newstyle protocol (the default)");
    case 'P':
      opt.pidfile = optarg;
      break;
    case 'p':
      if (!(parse_unsigned (optarg, 65535, &n) && n > 0) &&
          (isdigit ((unsigned char) optarg[0]) || !*optarg ||
           getservbyname (optarg, "tcp") == NULL))
        die ("-p %s: not a port number (1-65535) or a known TCP service "
             "name", optarg);
      opt.port = optarg;
      break;
    case 'r':
      opt.readonly = true;
      break;
    case 's':
      opt.single = true;
      break;
    case 't':
      if (!parse_unsigned (optarg, 1024, &n) || n == 0)
        die ("-t %s: the number of threads must be an integer "
             "between 1 and 1024", optarg);
      opt.threads = (unsigned) n;
      break;
    case 'U':
      opt.unixsocket = optarg;
      break;
    case 'v':
      opt.verbose = true;
      break;
    case 'V':
      printf ("%s %s\n", PROGRAM_NAME, PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    default:
      fprintf (stderr, "%s: try '%s --help' for the list of options\n",
               PROGRAM_NAME, PROGRAM_NAME);
      exit (EXIT_FAILURE);
    }
  }

  if (optind >= argc) {
    if (want_help) {
      usage ();
      exit (EXIT_SUCCESS);
    }
    die ("no backend given: try 'nbdkit memory 1G', or 'nbdkit --help'");
  }
  opt.backend_name = argv[optind++];

  if (opt.single && (opt.unixsocket || opt.port || opt.ipaddr))
    die ("-s cannot be combined with -U, -p or -i: it serves one "
         "connection on stdin/stdout");
  if (opt.unixsocket && (opt.port || opt.ipaddr))
    die ("-U cannot be combined with -p or -i");
  if (opt.single)
    opt.foreground = true;

  opt.backend_path = backend_locate (opt.backend_name);
  loop_init ();

  route_debug_flags ();
  if (want_help || want_dump) {
    backend_spawn ();
    if (want_help)
      print_backend_help ();
    else
      dump_backend ();
    fflush (stdout);
    backend_stop ();
    exit (EXIT_SUCCESS);
  }

  if (!opt.foreground)
    daemon_start ();

  backend_spawn ();
  resolve_params (&argv[optind], argc - optind);
  send_config ();

  if (opt.single)
    serve_single ();
  else
    listen_start ();

  daemon_ready ();
  return loop_run ();
}
