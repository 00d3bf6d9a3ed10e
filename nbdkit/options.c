/* nbdkit front end: the command line.
 *
 * Owns struct options.  Parses and validates every option (usage errors
 * exit 1 with the bad value named), with the usage text, the -D flags
 * (the server's, and those handed to the backend) and --filter; main.c
 * then runs the start-up sequence.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "options.h"
#include "../filters/filter.h"

struct options opt = {
  .exportname = "",
  .mask_handshake = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES,
  .max_restarts = 5,
  .restart_window = 10,
  .ping_interval = 10,
  .ping_timeout = 30,
  .unix_socket_mode = -1,
};

bool want_help, want_dump, want_version;
bool want_swap;
bool backend_clean_environment;
int listen_family = AF_UNSPEC;
static bool want_newstyle;

enum {
  HELP_OPTION = 256,
  DUMP_PLUGIN_OPTION,
  FILTER_OPTION,
  NO_SR_OPTION,
  MASK_HANDSHAKE_OPTION,
  TLS_OPTION,
  TLS_CERTIFICATES_OPTION,
  TLS_PSK_OPTION,
  TLS_PRIORITY_OPTION,
  TLS_VERIFY_PEER_OPTION,
  RUN_OPTION,
  PRINT_URI_OPTION,
  EXIT_WITH_PARENT_OPTION,
  DUMP_CONFIG_OPTION,
  VSOCK_OPTION,
  LOG_OPTION,
  SELINUX_LABEL_OPTION,
  BACKEND_TIMEOUT_OPTION,
  BACKEND_MAX_RESTARTS_OPTION,
  BACKEND_RESTART_WINDOW_OPTION,
  BACKEND_FAILURE_OPTION,
  BACKEND_USER_OPTION,
  BACKEND_GROUP_OPTION,
  BACKEND_RLIMIT_OPTION,
  BACKEND_PING_INTERVAL_OPTION,
  BACKEND_PING_TIMEOUT_OPTION,
  BACKEND_CLEAN_ENV_OPTION,
  SHORT_OPTIONS_OPTION,
  LONG_OPTIONS_OPTION,
  SWAP_OPTION,
  UNIX_SOCKET_MODE_OPTION,
};

/* In nbdkit's order, which --short-options and --long-options keep. */
static const char short_options[] = "+46D:e:fg:i:nop:P:rst:u:U:vV";
static const struct option long_options[] = {
  { "ipv4-only",    no_argument,       NULL, '4' },
  { "ipv6-only",    no_argument,       NULL, '6' },
  { "debug",        required_argument, NULL, 'D' },
  { "dump-config",  no_argument,       NULL, DUMP_CONFIG_OPTION },
  { "dump-plugin",  no_argument,       NULL, DUMP_PLUGIN_OPTION },
  { "exit-with-parent", no_argument,   NULL, EXIT_WITH_PARENT_OPTION },
  { "export",       required_argument, NULL, 'e' },
  { "export-name",  required_argument, NULL, 'e' },
  { "exportname",   required_argument, NULL, 'e' },
  { "filter",       required_argument, NULL, FILTER_OPTION },
  { "foreground",   no_argument,       NULL, 'f' },
  { "no-fork",      no_argument,       NULL, 'f' },
  { "group",        required_argument, NULL, 'g' },
  { "help",         no_argument,       NULL, HELP_OPTION },
  { "ip-addr",      required_argument, NULL, 'i' },
  { "ipaddr",       required_argument, NULL, 'i' },
  { "log",          required_argument, NULL, LOG_OPTION },
  { "mask-handshake", required_argument, NULL, MASK_HANDSHAKE_OPTION },
  { "new-style",    no_argument,       NULL, 'n' },
  { "newstyle",     no_argument,       NULL, 'n' },
  { "no-sr",        no_argument,       NULL, NO_SR_OPTION },
  { "old-style",    no_argument,       NULL, 'o' },
  { "oldstyle",     no_argument,       NULL, 'o' },
  { "pid-file",     required_argument, NULL, 'P' },
  { "pidfile",      required_argument, NULL, 'P' },
  { "port",         required_argument, NULL, 'p' },
  { "read-only",    no_argument,       NULL, 'r' },
  { "readonly",     no_argument,       NULL, 'r' },
  { "run",          required_argument, NULL, RUN_OPTION },
  { "selinux-label", required_argument, NULL, SELINUX_LABEL_OPTION },
  { "single",       no_argument,       NULL, 's' },
  { "stdin",        no_argument,       NULL, 's' },
  { "swap",         no_argument,       NULL, SWAP_OPTION },
  { "threads",      required_argument, NULL, 't' },
  { "tls",          required_argument, NULL, TLS_OPTION },
  { "tls-certificates", required_argument, NULL, TLS_CERTIFICATES_OPTION },
  { "tls-psk",      required_argument, NULL, TLS_PSK_OPTION },
  { "tls-verify-peer", no_argument,    NULL, TLS_VERIFY_PEER_OPTION },
  { "unix",         required_argument, NULL, 'U' },
  { "user",         required_argument, NULL, 'u' },
  { "verbose",      no_argument,       NULL, 'v' },
  { "version",      no_argument,       NULL, 'V' },
  { "vsock",        no_argument,       NULL, VSOCK_OPTION },
  /* This nbdkit's own, after those nbdkit has. */
  { "backend-clean-environment", no_argument, NULL,
    BACKEND_CLEAN_ENV_OPTION },
  { "backend-failure",  required_argument, NULL, BACKEND_FAILURE_OPTION },
  { "backend-group",    required_argument, NULL, BACKEND_GROUP_OPTION },
  { "backend-max-restarts", required_argument, NULL,
    BACKEND_MAX_RESTARTS_OPTION },
  { "backend-restart-window", required_argument, NULL,
    BACKEND_RESTART_WINDOW_OPTION },
  { "backend-ping-interval", required_argument, NULL,
    BACKEND_PING_INTERVAL_OPTION },
  { "backend-ping-timeout", required_argument, NULL,
    BACKEND_PING_TIMEOUT_OPTION },
  { "backend-rlimit",   required_argument, NULL, BACKEND_RLIMIT_OPTION },
  { "backend-timeout",  required_argument, NULL, BACKEND_TIMEOUT_OPTION },
  { "backend-user",     required_argument, NULL, BACKEND_USER_OPTION },
  { "long-options", no_argument,       NULL, LONG_OPTIONS_OPTION },
  { "no-structured-replies", no_argument, NULL, NO_SR_OPTION },
  { "print-uri",    no_argument,       NULL, PRINT_URI_OPTION },
  { "short-options", no_argument,      NULL, SHORT_OPTIONS_OPTION },
  { "tls-priority", required_argument, NULL, TLS_PRIORITY_OPTION },
  { "unix-socket-mode", required_argument, NULL, UNIX_SOCKET_MODE_OPTION },
  { NULL },
};

static void
usage (void)
{
  printf (
"nbdkit [-4|-6] [-D BACKEND.FLAG=N] [-e EXPORTNAME] [-f] [-i IPADDR]\n"
"       [--mask-handshake MASK] [-n] [--no-sr] [-o] [-P PIDFILE]\n"
"       [-p PORT] [-r] [-s] [-t THREADS] [--tls=off|on|require]\n"
"       [--tls-certificates DIR] [--tls-psk FILE] [--tls-verify-peer]\n"
"       [--tls-priority PRIORITY] [-U SOCKET] [-u USER] [-g GROUP]\n"
"       [--run CMD] [--print-uri] [--exit-with-parent] [--log DEST]\n"
"       [--vsock] [--swap] [-v] [--filter=FILTER ...]\n"
"       BACKEND [key=value ...]\n"
"\n"
"Serve BACKEND over the Network Block Device protocol.  BACKEND is a\n"
"backend name (memory, file, null, example1, ...) or the path of any\n"
"executable that speaks nbdkit-helper-protocol(5).\n"
"\n"
"Options:\n"
"  -4, --ipv4-only             TCP: listen on IPv4 only (-i NAME: resolve\n"
"                              it to IPv4 addresses only)\n"
"  -6, --ipv6-only             TCP: listen on IPv6 only (likewise)\n"
"  -D, --debug BACKEND.FLAG=N  set a backend debug flag\n"
"      --dump-plugin           print information about BACKEND and exit\n"
"  -e, --exportname NAME       the export name used in the URI\n"
"  -f, --foreground            do not fork into the background\n"
"      --filter FILTER         stack FILTER in front of the backend (the\n"
"                              first given is nearest the client); its\n"
"                              parameters go with the backend's\n"
"  -i, --ipaddr IPADDR         listen on this address only\n"
"      --mask-handshake MASK   offer only these handshake flags (1 fixed\n"
"                              newstyle, 2 no zeroes; default 3)\n"
"  -n, --newstyle              newstyle NBD protocol (the default)\n"
"      --no-sr                 do not offer structured replies\n"
"  -o, --oldstyle              oldstyle NBD protocol (no export names)\n"
"  -P, --pidfile PIDFILE       write the server's pid once it is ready\n"
"  -p, --port PORT             TCP port (default 10809)\n"
"  -r, --readonly              the export is read-only\n"
"  -s, --single                serve one connection on stdin/stdout\n"
"      --swap                  the export is swap space on this machine:\n"
"                              lock the server into memory (mlockall)\n"
"  -t, --threads THREADS       requests of a connection at once, and the\n"
"                              backend's worker threads (default 16)\n"
"      --tls off|on|require    TLS: not offered (default), offered, or\n"
"                              required before any export is served\n"
"      --tls-certificates DIR  ca-cert.pem, server-cert.pem, server-key.pem\n"
"      --tls-psk FILE          pre-shared keys (psktool format) instead\n"
"      --tls-priority STRING   gnutls priority string (default NORMAL)\n"
"      --tls-verify-peer       require a client certificate from the CA\n"
"  -U, --unix SOCKET           listen on a unix socket (- = private)\n"
"      --unix-socket-mode MODE permissions of the -U socket, in octal:\n"
"                              0660 lets the group connect too (default:\n"
"                              0755 less the umask, the owner only)\n"
"  -v, --verbose               debug messages on stderr\n"
"\n"
"Captive use and services (see nbdkit-captive(1), nbdkit-service(1)):\n"
"      --run CMD               run CMD once ready ($uri, $nbd, $port,\n"
"                              $unixsocket, $exportname, $tls set), then\n"
"                              exit with its status\n"
"      --print-uri             print the URI clients use once ready\n"
"      --exit-with-parent      exit when the parent process exits\n"
"      --log stderr|syslog|null  where messages go\n"
"  -u, --user USER, -g, --group GROUP\n"
"                              run as USER/GROUP once the sockets are bound\n"
"      --vsock                 listen on AF_VSOCK (port: -p)\n"
"      --selinux-label LABEL   label the sockets (needs SELinux support)\n"
"      --dump-config           print how this nbdkit was built\n"
"  -V, --version               print the version (of the nbdkit release\n"
"                              this matches; --dump-config shows this\n"
"                              package's own) and exit\n"
"      --short-options, --long-options\n"
"                              list the options, one a line, and exit\n"
"\n"
"Supervision of the backend process (see nbdkit-supervision(1)):\n"
"  --backend-timeout SECS      restart a backend that takes longer than\n"
"                              this to answer a request (default: off)\n"
"  --backend-ping-interval SECS  ping a backend that answers pings this\n"
"                              often (default 10; 0: never)\n"
"  --backend-ping-timeout SECS   restart it if a ping is not answered\n"
"                              within this (default 30 seconds)\n"
"  --backend-max-restarts N    restarts allowed within the window (5)\n"
"  --backend-restart-window SECS  the window (default 10 seconds)\n"
"  --backend-failure exit|error   past the limit: exit 1 (default), or\n"
"                              keep serving, failing requests with EIO\n"
"  --backend-user USER, --backend-group GROUP\n"
"                              run the backend as this user and group\n"
"  --backend-rlimit RES=N[,RES=N...]  resource limits of the backend:\n"
"                              as, core, cpu, data, fsize, nofile,\n"
"                              nproc, stack (sizes take k, M, G, ...)\n"
"  --backend-clean-environment  give the backend a minimal environment\n"
"                              instead of the server's\n"
"      --help                  this help; 'nbdkit BACKEND --help' shows\n"
"                              the backend's parameters\n"
"\n"
"Examples:\n"
"  nbdkit memory 1G\n"
"  nbdkit -r file disk.img\n"
"  nbdkit -U /tmp/nbd.sock null size=1M\n"
"  nbdkit --filter=partition file disk.img partition=1\n"
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

/* A number with an optional k/M/G/T/P/E suffix (powers of 1024). */
static bool
parse_limit (const char *s, bool is_size, unsigned long long *r)
{
  static const char suffixes[] = "kMGTPE";
  char *end;
  const char *p;
  int shift;

  if (!isdigit ((unsigned char) s[0]))
    return false;
  errno = 0;
  *r = strtoull (s, &end, 10);
  if (errno)
    return false;
  if (*end == '\0')
    return true;
  if (!is_size || end[1] != '\0')
    return false;
  p = strchr (suffixes, *end == 'K' ? 'k' : *end);
  if (!p || !*p)
    return false;
  shift = 10 * (int) (p - suffixes + 1);
  if (*r > (ULLONG_MAX >> shift))
    return false;
  *r <<= shift;
  return true;
}

/* -D NAME.FLAG=N */
static void
parse_debug_flag (const char *arg)
{
  const char *dot = strchr (arg, '.');
  const char *eq = strchr (arg, '=');
  char *end, *key;
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
  key = strndup (arg, (size_t) (eq - arg));
  if (!opt.server_debug || !key)
    die ("out of memory");
  json_object_set_new (opt.server_debug, key, json_integer (v));  /* copies */
  free (key);
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

bool
server_is_single (void)
{
  return opt.single;
}

bool
server_is_readonly (void)
{
  return opt.readonly;
}

int
server_debug_flag (const char *flag, int def)
{
  char key[128];
  json_t *v;

  snprintf (key, sizeof key, "%s.%s", PROGRAM_NAME, flag);
  v = opt.server_debug ? json_object_get (opt.server_debug, key) : NULL;
  return json_is_integer (v) ? (int) json_integer_value (v) : def;
}

int
filter_debug_flag (const char *filter, const char *flag, int def)
{
  char key[128];
  json_t *v;

  snprintf (key, sizeof key, "%s.%s", filter, flag);
  v = opt.server_debug ? json_object_get (opt.server_debug, key) : NULL;
  return json_is_integer (v) ? (int) json_integer_value (v) : def;
}

/* Is NAME the name of a --filter of this server? */
static bool
is_filter_name (const char *key)
{
  size_t i, n = strcspn (key, ".");

  for (i = 0; i < opt.nr_filters; ++i)
    if (strlen (opt.filters[i]->name) == n &&
        strncmp (opt.filters[i]->name, key, n) == 0)
      return true;
  return false;
}

/* Hand -D flags named after the backend to the backend (in HELLO);
 * those of the server and of its filters stay here.
 */
void
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
      else if (strncmp (key, PROGRAM_NAME ".", strlen (PROGRAM_NAME) + 1)
               != 0 && !is_filter_name (key))
        /* nbdkit's words, for a flag nothing reads. */
        server_warning ("debug flag -D %s was not used", key);
    }
  }
  free (name);
}

/* --filter=NAME: the filters are stacked in command-line order. */
static void
add_filter (const char *name)
{
  const struct filter *f = filter_lookup (name);
  const struct filter **fs;
  char names[512];

  if (!f) {
    filter_list_names (names, sizeof names);
    die ("--filter=%s: no such filter (the filters are: %s)", name, names);
  }
  fs = realloc (opt.filters, (opt.nr_filters + 1) * sizeof *fs);
  if (!fs)
    die ("out of memory");
  opt.filters = fs;
  opt.filters[opt.nr_filters++] = f;
}

/* A duration in seconds: a positive decimal number. */
static double
parse_seconds (const char *option, const char *arg, bool zero_means_off)
{
  char *end;
  double d;

  errno = 0;
  d = strtod (arg, &end);
  if (errno || end == arg || *end || !(d > 0 || (zero_means_off && d == 0)) ||
      d > 1e6)
    die ("%s %s: expected a number of seconds greater than 0, "
         "such as 30 or 0.5%s", option, arg,
         zero_means_off ? ", or 0 for none" : "");
  return d;
}

static void
parse_user (const char *arg)
{
  struct passwd *pw = getpwnam (arg);
  unsigned long n;

  if (pw) {
    opt.backend_uid = pw->pw_uid;
    if (!opt.backend_gid_set) {
      opt.backend_gid = pw->pw_gid;
      opt.backend_gid_set = true;
    }
  }
  else if (parse_unsigned (arg, UINT32_MAX - 1, &n))
    opt.backend_uid = (uid_t) n;
  else
    die ("--backend-user %s: no such user (give a user name or number)", arg);
  opt.backend_uid_set = true;
}

static void
parse_group (const char *arg)
{
  struct group *gr = getgrnam (arg);
  unsigned long n;

  if (gr)
    opt.backend_gid = gr->gr_gid;
  else if (parse_unsigned (arg, UINT32_MAX - 1, &n))
    opt.backend_gid = (gid_t) n;
  else
    die ("--backend-group %s: no such group (give a group name or number)",
         arg);
  opt.backend_gid_set = true;
}

/* --backend-rlimit as=1G,nofile=64,cpu=60 */
static void
parse_rlimits (const char *arg)
{
  static const struct { const char *name; int resource; bool is_size; } res[] = {
    { "as", RLIMIT_AS, true }, { "core", RLIMIT_CORE, true },
    { "cpu", RLIMIT_CPU, false }, { "data", RLIMIT_DATA, true },
    { "fsize", RLIMIT_FSIZE, true }, { "nofile", RLIMIT_NOFILE, false },
    { "nproc", RLIMIT_NPROC, false }, { "stack", RLIMIT_STACK, true },
  };
  char *copy = strdup (arg), *item, *save = NULL;

  if (!copy)
    die ("out of memory");
  for (item = strtok_r (copy, ",", &save); item;
       item = strtok_r (NULL, ",", &save)) {
    char *eq = strchr (item, '=');
    size_t i;
    unsigned long long v;
    struct backend_rlimit *r;

    if (!eq)
      die ("--backend-rlimit %s: '%s' is not RESOURCE=VALUE "
           "(e.g. as=1G,nofile=64,cpu=60)", arg, item);
    *eq = '\0';
    for (i = 0; i < sizeof res / sizeof res[0]; ++i)
      if (strcmp (item, res[i].name) == 0)
        break;
    if (i == sizeof res / sizeof res[0])
      die ("--backend-rlimit: unknown resource '%s' (use as, core, cpu, "
           "data, fsize, nofile, nproc or stack)", item);
    if (!parse_limit (eq + 1, res[i].is_size, &v))
      die ("--backend-rlimit: %s=%s: expected a number%s", item, eq + 1,
           res[i].is_size ? " with an optional k, M, G, T, P or E suffix"
                          : "");
    r = realloc (opt.rlimits, (opt.nr_rlimits + 1) * sizeof *r);
    if (!r)
      die ("out of memory");
    opt.rlimits = r;
    r[opt.nr_rlimits].resource = res[i].resource;
    r[opt.nr_rlimits].value = v;
    opt.nr_rlimits++;
  }
  free (copy);
}

int
parse_command_line (int argc, char *argv[])
{
  int c;
  unsigned long n;

  /* Permute: options may follow the backend name, as in
   * 'nbdkit memory --help'.  Skip the leading '+' of short_options.
   */
  while ((c = getopt_long (argc, argv, short_options + 1, long_options,
                           NULL)) != -1) {
    switch (c) {
    case '4':
      listen_family = AF_INET;
      break;
    case '6':
      listen_family = AF_INET6;
      break;
    case SWAP_OPTION:
      want_swap = true;
      break;
    case SHORT_OPTIONS_OPTION: {
      const char *p;

      for (p = short_options + 1; *p; ++p)
        if (*p != ':')
          printf ("-%c\n", *p);
      exit (EXIT_SUCCESS);
    }
    case LONG_OPTIONS_OPTION: {
      const struct option *o;

      for (o = long_options; o->name; ++o)
        if (strcmp (o->name, "short-options") != 0 &&
            strcmp (o->name, "long-options") != 0)
          printf ("--%s\n", o->name);
      exit (EXIT_SUCCESS);
    }
    case 'D':
      parse_debug_flag (optarg);
      break;
    case BACKEND_TIMEOUT_OPTION:
      opt.backend_timeout = parse_seconds ("--backend-timeout", optarg, false);
      break;
    case BACKEND_MAX_RESTARTS_OPTION:
      if (!parse_unsigned (optarg, 1000000, &n))
        die ("--backend-max-restarts %s: expected a number of restarts "
             "(0 or more)", optarg);
      opt.max_restarts = (unsigned) n;
      break;
    case BACKEND_RESTART_WINDOW_OPTION:
      opt.restart_window = parse_seconds ("--backend-restart-window", optarg, false);
      break;
    case BACKEND_PING_INTERVAL_OPTION:
      opt.ping_interval = parse_seconds ("--backend-ping-interval", optarg,
                                         true);
      break;
    case BACKEND_PING_TIMEOUT_OPTION:
      opt.ping_timeout = parse_seconds ("--backend-ping-timeout", optarg, false);
      break;
    case BACKEND_FAILURE_OPTION:
      if (strcmp (optarg, "exit") == 0)
        opt.on_failure_error = false;
      else if (strcmp (optarg, "error") == 0)
        opt.on_failure_error = true;
      else
        die ("--backend-failure %s: expected 'exit' or 'error'", optarg);
      break;
    case BACKEND_CLEAN_ENV_OPTION:
      backend_clean_environment = true;
      break;
    case BACKEND_USER_OPTION:
      parse_user (optarg);
      break;
    case BACKEND_GROUP_OPTION:
      parse_group (optarg);
      break;
    case BACKEND_RLIMIT_OPTION:
      parse_rlimits (optarg);
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
      add_filter (optarg);
      break;
    case 'f':
      opt.foreground = true;
      break;
    case HELP_OPTION:
      want_help = true;
      break;
    case 'i':
      opt.ipaddr = optarg;
      break;
    case MASK_HANDSHAKE_OPTION: {
      char *end;
      unsigned long m;

      errno = 0;
      m = strtoul (optarg, &end, 0);
      if (!isdigit ((unsigned char) optarg[0]) || *end || errno ||
          m > UINT32_MAX)
        die ("--mask-handshake=%s: not a number; give a bit mask such as "
             "0 (plain newstyle), 1 (fixed newstyle) or 3 (everything, "
             "the default)", optarg);
      opt.mask_handshake = (unsigned) m;
      break;
    }
    case 'n':
      want_newstyle = true;
      break;
    case RUN_OPTION:
      opt.run = optarg;
      break;
    case PRINT_URI_OPTION:
      opt.print_uri = true;
      break;
    case EXIT_WITH_PARENT_OPTION:
      opt.exit_with_parent = true;
      break;
    case DUMP_CONFIG_OPTION:
      probe_dump_config ();
      exit (EXIT_SUCCESS);
    case VSOCK_OPTION:
      opt.vsock = true;
      break;
    case LOG_OPTION:
      if (strcmp (optarg, "stderr") == 0)
        opt.log = LOGDEST_STDERR;
      else if (strcmp (optarg, "syslog") == 0)
        opt.log = LOGDEST_SYSLOG;
      else if (strcmp (optarg, "null") == 0)
        opt.log = LOGDEST_NULL;
      else
        die ("--log=%s: expected stderr, syslog or null", optarg);
      break;
    case SELINUX_LABEL_OPTION:
      opt.selinux_label = optarg;
      break;
    case 'u':
      opt.user = optarg;
      break;
    case 'g':
      opt.group = optarg;
      break;
    case TLS_OPTION:
      if (strcmp (optarg, "off") == 0)
        opt.tls = TLS_OFF;
      else if (strcmp (optarg, "on") == 0)
        opt.tls = TLS_ON;
      else if (strcmp (optarg, "require") == 0)
        opt.tls = TLS_REQUIRE;
      else
        die ("--tls=%s: expected off, on or require", optarg);
      break;
    case TLS_CERTIFICATES_OPTION:
      opt.tls_certificates = optarg;
      break;
    case TLS_PSK_OPTION:
      opt.tls_psk = optarg;
      break;
    case TLS_PRIORITY_OPTION:
      opt.tls_priority = optarg;
      break;
    case TLS_VERIFY_PEER_OPTION:
      opt.tls_verify_peer = true;
      break;
    case NO_SR_OPTION:
      opt.no_sr = true;
      break;
    case 'o':
      opt.oldstyle = true;
      break;
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
      /* 0: the default, as nbdkit takes it. */
      if (!parse_unsigned (optarg, 1024, &n))
        die ("-t %s: the number of threads must be an integer "
             "between 1 and 1024 (or 0 for the default)", optarg);
      opt.threads = (unsigned) n;
      break;
    case 'U':
      opt.unixsocket = optarg;
      break;
    case UNIX_SOCKET_MODE_OPTION: {
      char *end;
      unsigned long m;

      errno = 0;
      m = strtoul (optarg, &end, 8);
      if (!isdigit ((unsigned char) optarg[0]) || *end || errno || m > 0777)
        die ("--unix-socket-mode=%s: expected permissions in octal, such "
             "as 0600 (the owner only) or 0660 (the group too), at most "
             "0777", optarg);
      opt.unix_socket_mode = (int) m;
      break;
    }
    case 'v':
      opt.verbose = true;
      break;
    case 'V':
      want_version = true;
      break;
    default:
      fprintf (stderr, "%s: try '%s --help' for the list of options\n",
               PROGRAM_NAME, PROGRAM_NAME);
      exit (EXIT_FAILURE);
    }
  }

  if (want_version) {
    printf ("%s %s\n", PROGRAM_NAME, NBDKIT_COMPAT_VERSION);
    if (optind >= argc)
      exit (EXIT_SUCCESS);
  }
  if (optind >= argc) {
    if (want_help) {
      usage ();
      exit (EXIT_SUCCESS);
    }
    die ("no backend given: try 'nbdkit memory 1G', or 'nbdkit --help'");
  }
  opt.backend_name = argv[optind++];

  /* nbdkit's message, word for word: scripts may look for it. */
  if (want_dump && opt.single)
    die ("--dump-plugin, -p, --run, -s, -U or --vsock options cannot be "
         "used in this combination");
  if (opt.single && (opt.unixsocket || opt.port || opt.ipaddr))
    die ("-s cannot be combined with -U, -p or -i: it serves one "
         "connection on stdin/stdout");
  if (opt.unixsocket && (opt.port || opt.ipaddr))
    die ("-U cannot be combined with -p or -i");
  if (opt.single)
    opt.foreground = true;
  if (opt.run && opt.single)
    die ("--run cannot be combined with -s: the command needs a socket "
         "to connect to");
  if (opt.vsock && (opt.unixsocket || opt.single || opt.ipaddr))
    die ("--vsock cannot be combined with -U, -s or -i");
  if (opt.unix_socket_mode >= 0 && !opt.unixsocket)
    die ("--unix-socket-mode is the mode of the -U socket: it needs -U "
         "(with socket activation, systemd's SocketMode= sets it)");
  if (opt.run || opt.exit_with_parent)
    opt.foreground = true;
  /* As nbdkit does: a relative socket path is made absolute, so that
   * $unixsocket and the URI work from any directory.
   */
  if (opt.unixsocket && strcmp (opt.unixsocket, "-") != 0 &&
      opt.unixsocket[0] != '/') {
    char *cwd = getcwd (NULL, 0), *abs;

    if (!cwd)
      die ("-U %s: cannot find the current directory to make the path "
           "absolute: %m (give an absolute path)", opt.unixsocket);
    if (asprintf (&abs, "%s/%s", cwd, opt.unixsocket) == -1)
      die ("out of memory");
    free (cwd);
    opt.unixsocket = abs;
  }
  if (opt.selinux_label)
    listen_check_selinux_label ();
  if (service_listen_fds () > 0) {
    if (opt.ipaddr || opt.port || opt.run || opt.single || opt.unixsocket ||
        opt.vsock)
      die ("socket activation (LISTEN_FDS is set): -i, -p, --run, -s, -U "
           "and --vsock cannot be used; the sockets come from systemd");
    opt.socket_activated = true;
    opt.foreground = true;
  }
  if (opt.oldstyle && want_newstyle)
    die ("-n/--newstyle and -o/--oldstyle cannot both be given");
  if (opt.oldstyle && opt.tls != TLS_OFF)
    die ("--tls=%s: the oldstyle protocol (-o) has no TLS; use the "
         "newstyle protocol (the default)",
         opt.tls == TLS_ON ? "on" : "require");
  if (opt.tls_certificates && opt.tls_psk)
    die ("--tls-certificates and --tls-psk: give only one of them");
  if (opt.oldstyle && *opt.exportname)
    die ("-e %s: the oldstyle protocol (-o) has no export names; "
         "leave out -e or use the newstyle protocol", opt.exportname);
  return optind;
}
