/* nbdkit nbd backend: the parameters.  Parses and checks each one
 * (naming the value in every message), works out the defaults that
 * depend on others (shared=, tls=) and fills upstream_config, from
 * which upstream.c connects.
 */

#include <config.h>

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "upstream.h"

#define C (upstream_config)

static char *what;              /* the parameter naming the server */
static int shared = -1;         /* shared=, or -1: not given */
static char **args;             /* arg=, in order */
static size_t nr_args;

void
params_free (void)
{
  size_t i;

  free (what);
  free (C.socket);
  free (C.hostname);
  free (C.port);
  free (C.uri);
  if (C.argv) {                 /* command=, then arg=s from config_complete */
    free (C.argv[0]);
    for (i = 1; i < C.argc; ++i)
      free (C.argv[i]);
    free (C.argv);
  }
  for (i = 0; i < nr_args; ++i)
    free (args[i]);
  free (args);
  if (C.fd >= 0)
    close (C.fd);
  free (C.export);
  free (C.tls_certificates);
  free (C.tls_username);
  free (C.tls_psk);
}

static char *
dup_or_error (const char *s)
{
  char *r = strdup (s);

  if (!r)
    nbdkit_error ("out of memory");
  return r;
}

/* Replace *p by a copy of value. */
static int
set_string (char **p, const char *value)
{
  char *s = dup_or_error (value);

  if (!s)
    return -1;
  free (*p);
  *p = s;
  return 0;
}

/* The keys that say how to reach the server: the same one again
 * replaces the earlier value, two different ones are an error.
 */
static int
set_transport (enum transport t, const char *key, const char *value)
{
  char *w;

  if (C.transport != TRANSPORT_NONE && C.transport != t) {
    nbdkit_error ("%s and %s=%s: give only one way to reach the NBD server "
                  "(socket=, hostname= [port=], vsock= [port=], uri=, "
                  "command= [arg=...] or socket-fd=)", what, key, value);
    return -1;
  }
  if (asprintf (&w, "%s=%s", key, value) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  free (what);
  what = w;
  C.transport = t;
  return 0;
}

static const char *const uri_schemes[] = {
  "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
  "nbd+vsock://", "nbds+vsock://", NULL
};

static int
config_uri (const char *value)
{
  const char *const *s;
  struct nbd_handle *nbd;
  int supported;

  for (s = uri_schemes; *s; ++s)
    if (strncmp (value, *s, strlen (*s)) == 0)
      break;
  if (!*s) {
    nbdkit_error ("uri=%s: not an NBD URI: it starts with nbd://, nbds://, "
                  "nbd+unix://, nbds+unix://, nbd+vsock:// or nbds+vsock:// "
                  "(e.g. nbd://localhost/export or "
                  "nbd+unix:///export?socket=/path)", value);
    return -1;
  }
  nbd = nbd_create ();
  supported = nbd ? nbd_supports_uri (nbd) : 1;
  if (nbd)
    nbd_close (nbd);
  if (supported != 1) {
    nbdkit_error ("uri=%s: this libnbd was built without URI support: use "
                  "socket=, hostname= or vsock=", value);
    return -1;
  }
  if (set_transport (TRANSPORT_URI, "uri", value) == -1)
    return -1;
  return set_string (&C.uri, value);
}

static int
config_socket (const char *value)
{
  struct sockaddr_un sun;
  char *path;

  if (!*value) {
    nbdkit_error ("socket=: the path of the unix socket is empty");
    return -1;
  }
  if ((path = nbdkit_absolute_path (value)) == NULL)
    return -1;
  if (strlen (path) >= sizeof sun.sun_path) {
    nbdkit_error ("socket=%s: the path is too long for a unix socket (%zu "
                  "bytes, at most %zu)", value, strlen (path),
                  sizeof sun.sun_path - 1);
    free (path);
    return -1;
  }
  if (set_transport (TRANSPORT_UNIX, "socket", value) == -1) {
    free (path);
    return -1;
  }
  free (C.socket);
  C.socket = path;
  return 0;
}

static int
config_socket_fd (const char *value)
{
  int n, fd;

  if (nbdkit_parse_int ("socket-fd", value, &n) == -1)
    return -1;
  fd = nbdkit_config_fd ();
  if (fd == -1) {
    nbdkit_error ("socket-fd=%s: no file descriptor came with the parameter "
                  "(the nbdkit server passes the one it inherited)", value);
    return -1;
  }
  if (set_transport (TRANSPORT_FD, "socket-fd", value) == -1) {
    close (fd);
    return -1;
  }
  if (C.fd >= 0)
    close (C.fd);
  C.fd = fd;
  return 0;
}

static int
config_bool (const char *value, bool *b)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1)
    return -1;
  *b = r;
  return 0;
}

static int
config_tls (const char *value)
{
  int r;

  if (strcasecmp (value, "require") == 0 ||
      strcasecmp (value, "required") == 0 ||
      strcasecmp (value, "force") == 0) {
    C.tls = LIBNBD_TLS_REQUIRE;
    return 0;
  }
  if (strcasecmp (value, "on") == 0 || strcasecmp (value, "off") == 0 ||
      strcasecmp (value, "true") == 0 || strcasecmp (value, "false") == 0 ||
      strcasecmp (value, "yes") == 0 || strcasecmp (value, "no") == 0 ||
      strcasecmp (value, "y") == 0 || strcasecmp (value, "n") == 0 ||
      strcasecmp (value, "t") == 0 || strcasecmp (value, "f") == 0 ||
      strcmp (value, "1") == 0 || strcmp (value, "0") == 0) {
    r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    C.tls = r ? LIBNBD_TLS_ALLOW : LIBNBD_TLS_DISABLE;
    return 0;
  }
  nbdkit_error ("tls=%s: unknown TLS mode (use tls=off, tls=on or "
                "tls=require)", value);
  return -1;
}

static int
config_path (const char *key, const char *value, char **p)
{
  char *path;

  if (!*value) {
    nbdkit_error ("%s=: the path is empty", key);
    return -1;
  }
  if ((path = nbdkit_absolute_path (value)) == NULL)
    return -1;
  free (*p);
  *p = path;
  return 0;
}

int
params_config (const char *key, const char *value)
{
  if (strcmp (key, "uri") == 0)
    return config_uri (value);
  if (strcmp (key, "socket") == 0)
    return config_socket (value);
  if (strcmp (key, "hostname") == 0) {
    if (!*value) {
      nbdkit_error ("hostname=: the host name is empty");
      return -1;
    }
    if (set_transport (TRANSPORT_TCP, key, value) == -1)
      return -1;
    return set_string (&C.hostname, value);
  }
  if (strcmp (key, "vsock") == 0) {
    unsigned cid;

    if (nbdkit_parse_unsigned ("vsock", value, &cid) == -1 ||
        set_transport (TRANSPORT_VSOCK, key, value) == -1)
      return -1;
    C.cid = cid;
    return 0;
  }
  if (strcmp (key, "port") == 0) {
    if (!*value) {
      nbdkit_error ("port=: the port is empty");
      return -1;
    }
    return set_string (&C.port, value);
  }
  if (strcmp (key, "command") == 0) {
    if (!*value) {
      nbdkit_error ("command=: the command is empty");
      return -1;
    }
    if (set_transport (TRANSPORT_COMMAND, key, value) == -1)
      return -1;
    if (!C.argv && !(C.argv = calloc (1, sizeof *C.argv))) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return set_string (&C.argv[0], value);
  }
  if (strcmp (key, "arg") == 0) {
    char **a = realloc (args, (nr_args + 1) * sizeof *args);

    if (!a) {
      nbdkit_error ("out of memory");
      return -1;
    }
    args = a;
    if ((args[nr_args] = dup_or_error (value)) == NULL)
      return -1;
    nr_args++;
    return 0;
  }
  if (strcmp (key, "socket-fd") == 0)
    return config_socket_fd (value);
  if (strcmp (key, "export") == 0) {
    if (strlen (value) > 4096) {
      nbdkit_error ("export=%.20s...: the export name is longer than 4096 "
                    "bytes (%zu), the most NBD allows", value, strlen (value));
      return -1;
    }
    return set_string (&C.export, value);
  }
  if (strcmp (key, "dynamic-export") == 0)
    return config_bool (value, &C.dynamic_export);
  if (strcmp (key, "retry") == 0)
    return nbdkit_parse_unsigned ("retry", value, &C.retry);
  if (strcmp (key, "shared") == 0) {
    bool b;

    if (config_bool (value, &b) == -1)
      return -1;
    shared = b;
    return 0;
  }
  if (strcmp (key, "tls") == 0)
    return config_tls (value);
  if (strcmp (key, "tls-certificates") == 0)
    return config_path (key, value, &C.tls_certificates);
  if (strcmp (key, "tls-psk") == 0)
    return config_path (key, value, &C.tls_psk);
  if (strcmp (key, "tls-username") == 0)
    return set_string (&C.tls_username, value);
  if (strcmp (key, "tls-verify") == 0) {
    bool b;

    if (config_bool (value, &b) == -1)
      return -1;
    C.tls_verify = b;
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (see 'nbdkit nbd --help')", key);
  return -1;
}

/* port=: a TCP port (a number or a service name), or a vsock port (a
 * number).
 */
static int
check_port (void)
{
  unsigned n;

  if (!C.port)
    return 0;
  if (C.transport != TRANSPORT_TCP && C.transport != TRANSPORT_VSOCK) {
    nbdkit_error ("port=%s: port= goes with hostname= or vsock=, not with "
                  "%s", C.port, what ? what : "no server at all");
    return -1;
  }
  if (C.transport == TRANSPORT_VSOCK)
    return nbdkit_parse_unsigned ("port", C.port, &n);
  if (C.port[0] >= '0' && C.port[0] <= '9') {
    if (nbdkit_parse_unsigned ("port", C.port, &n) == -1)
      return -1;
    if (n == 0 || n > 65535) {
      nbdkit_error ("port=%s: out of range (use 1 to 65535, or a service "
                    "name)", C.port);
      return -1;
    }
    return 0;
  }
  if (!getservbyname (C.port, "tcp")) {
    nbdkit_error ("port=%s: neither a port number nor a known TCP service "
                  "name (see /etc/services)", C.port);
    return -1;
  }
  return 0;
}

/* The TLS parameters: the default mode, and the files exist. */
static int
check_tls (void)
{
  struct nbd_handle *nbd;
  struct stat st;
  int supported;

  if (C.tls == -1)
    C.tls = C.tls_certificates || C.tls_psk || C.tls_username ||
      C.tls_verify >= 0 ? LIBNBD_TLS_ALLOW : LIBNBD_TLS_DISABLE;
  if (C.tls == LIBNBD_TLS_DISABLE)
    return 0;
  nbd = nbd_create ();
  supported = nbd ? nbd_supports_tls (nbd) : 1;
  if (nbd)
    nbd_close (nbd);
  if (supported != 1) {
    nbdkit_error ("tls=%s: this libnbd was built without TLS support",
                  C.tls == LIBNBD_TLS_REQUIRE ? "require" : "on");
    return -1;
  }
  if (C.tls_certificates &&
      (stat (C.tls_certificates, &st) == -1 || !S_ISDIR (st.st_mode))) {
    if (errno == 0 || !S_ISDIR (st.st_mode))
      errno = ENOTDIR;
    nbdkit_error ("tls-certificates=%s: %m (give the directory of "
                  "ca-cert.pem, client-cert.pem and client-key.pem)",
                  C.tls_certificates);
    return -1;
  }
  if (C.tls_psk && access (C.tls_psk, R_OK) == -1) {
    nbdkit_error ("tls-psk=%s: %m", C.tls_psk);
    return -1;
  }
  return 0;
}

int
params_config_complete (void)
{
  size_t i;

  if (C.transport == TRANSPORT_NONE) {
    nbdkit_error ("the NBD server to connect to is required: give its URI "
                  "('nbdkit nbd nbd://HOST/EXPORT'), or socket=, hostname= "
                  "[port=], vsock= [port=], command= [arg=...] or "
                  "socket-fd=");
    return -1;
  }
  if (check_port () == -1)
    return -1;
  if (nr_args && C.transport != TRANSPORT_COMMAND) {
    nbdkit_error ("arg=%s: arg= goes with command=, not with %s",
                  args[0], what);
    return -1;
  }
  if (C.transport == TRANSPORT_COMMAND) {
    char **argv = realloc (C.argv, (nr_args + 2) * sizeof *argv);

    if (!argv) {
      nbdkit_error ("out of memory");
      return -1;
    }
    C.argv = argv;
    for (i = 0; i < nr_args; ++i)
      argv[i + 1] = args[i];
    argv[nr_args + 1] = NULL;
    C.argc = nr_args + 1;
    free (args);
    args = NULL;
    nr_args = 0;
  }
  if (C.transport == TRANSPORT_URI && C.export) {
    nbdkit_error ("export=%s: with uri= the export name is part of the URI "
                  "(nbd://HOST/%s)", C.export, C.export);
    return -1;
  }
  C.shared = shared == -1
    ? C.transport == TRANSPORT_COMMAND || C.transport == TRANSPORT_FD
    : shared;
  if (C.transport == TRANSPORT_FD && !C.shared) {
    nbdkit_error ("%s with shared=false: a socket carries one NBD connection, "
                  "which all clients must share", what);
    return -1;
  }
  if (C.dynamic_export && C.shared) {
    nbdkit_error ("dynamic-export=true cannot be used with a shared "
                  "connection (shared=true, the default of command= and "
                  "socket-fd=)");
    return -1;
  }
  if (C.dynamic_export && C.export) {
    nbdkit_error ("export=%s and dynamic-export=true: give only one (with "
                  "dynamic-export=true each client's export name is used)",
                  C.export);
    return -1;
  }
  return check_tls ();
}
