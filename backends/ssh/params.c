/* backends/ssh/params.c: the parameters of the ssh backend.  Parses and
 * checks each one as it comes (every message names the value and says
 * what would be right), checks the whole at config_complete, and fills
 * ssh_params, from which session.c connects.  Nothing here talks to
 * the network.
 */

#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../secret.h"
#include "sshdefs.h"

#define P (ssh_params)

struct ssh_params ssh_params = {
  .verify_remote_host = true,
  .create_size = -1,
  .create_mode = 0600,
};

static bool create_mode_given;
static char *where;             /* params_where () */

void
params_free (void)
{
  size_t i;

  free (P.host);
  free (P.path);
  free (P.port);
  free (P.user);
  secret_free (P.password);
  for (i = 0; i < P.nr_identities; ++i)
    free (P.identities[i]);
  free (P.identities);
  for (i = 0; i < P.nr_known_hosts; ++i)
    free (P.known_hosts[i]);
  free (P.known_hosts);
  free (P.config);
  free (where);
}

static int
set_string (char **p, const char *value)
{
  char *s = strdup (value);

  if (!s) {
    nbdkit_error ("out of memory");
    return -1;
  }
  free (*p);
  *p = s;
  return 0;
}

static int
not_empty (const char *key, const char *value, const char *example)
{
  if (*value == '\0') {
    nbdkit_error ("%s=: the value must not be empty (e.g. %s=%s)", key,
                  key, example);
    return -1;
  }
  return 0;
}

/* Control characters would end up in the SSH protocol or in a command
 * line of the remote side: refuse them.
 */
static int
printable (const char *key, const char *value)
{
  const char *s;

  for (s = value; *s; ++s)
    if ((unsigned char) *s < ' ' || *s == 127) {
      nbdkit_error ("%s=%s: control characters (such as a newline) are not "
                    "allowed", key, value);
      return -1;
    }
  return 0;
}

static int
set_bool (bool *b, const char *value)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1)
    return -1;
  *b = r;
  return 0;
}

/* port=: a number from 1 to 65535, or a service name of
 * /etc/services, kept as the number (libssh takes numbers only).
 */
static int
set_port (const char *value)
{
  char *end, buf[16];
  long n;
  struct servent *se;

  if (not_empty ("port", value, "22") == -1)
    return -1;
  errno = 0;
  n = strtol (value, &end, 10);
  if (end != value) {
    if (errno || *end || n < 1 || n > 65535) {
      nbdkit_error ("port=%s: not a port number (use 1 to 65535, or a "
                    "service name such as ssh)", value);
      return -1;
    }
  }
  else {
    se = getservbyname (value, "tcp");
    if (!se) {
      nbdkit_error ("port=%s: no such TCP service in /etc/services (use a "
                    "port number from 1 to 65535, or a service name such "
                    "as ssh)", value);
      return -1;
    }
    n = ntohs ((uint16_t) se->s_port);
  }
  snprintf (buf, sizeof buf, "%ld", n);
  return set_string (&P.port, buf);
}

/* identity=, known-hosts=, config=: a local file.  libssh expands
 * %-sequences (%d the ~/.ssh directory, %u, %h, %r, %p, ...); a name
 * without any is checked here and made absolute (libssh wants an
 * absolute path), a name with some is passed on as given.
 */
static int
local_file (const char *key, const char *value, char **ret)
{
  struct stat st;

  if (not_empty (key, value, "/path/to/file") == -1 ||
      printable (key, value) == -1)
    return -1;
  if (strchr (value, '%')) {
    if (value[0] != '/' && value[0] != '%') {
      nbdkit_error ("%s=%s: the name must be absolute after libssh expands "
                    "%%-sequences (start with / or %%d)", key, value);
      return -1;
    }
    return set_string (ret, value);
  }
  if (stat (value, &st) == -1) {
    nbdkit_error ("%s=%s: %m", key, value);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("%s=%s: not a regular file", key, value);
    return -1;
  }
  if (access (value, R_OK) == -1) {
    nbdkit_error ("%s=%s: cannot be read: %m", key, value);
    return -1;
  }
  free (*ret);
  *ret = nbdkit_absolute_path (value);
  return *ret ? 0 : -1;
}

static int
append_file (const char *key, const char *value, char ***list, size_t *n)
{
  char *s = NULL, **l2;

  if (local_file (key, value, &s) == -1)
    return -1;
  l2 = realloc (*list, (*n + 1) * sizeof *l2);
  if (!l2) {
    free (s);
    nbdkit_error ("out of memory");
    return -1;
  }
  *list = l2;
  l2[(*n)++] = s;
  return 0;
}

/* create-mode=: octal permissions, as chmod(1) takes them. */
static int
set_create_mode (const char *value)
{
  char *end;
  unsigned long m;

  errno = 0;
  m = strtoul (value, &end, 8);
  if (*value == '\0' || *value == '-' || *value == '+' || errno || *end ||
      m > 07777) {
    nbdkit_error ("create-mode=%s: not a file mode (use octal permissions "
                  "from 0 to 07777, e.g. create-mode=0644)", value);
    return -1;
  }
  P.create_mode = (unsigned) m;
  create_mode_given = true;
  return 0;
}

static int
set_timeout (const char *value)
{
  unsigned u;

  if (nbdkit_parse_unsigned ("timeout", value, &u) == -1)
    return -1;
  if (u == 0 || u > 86400) {
    nbdkit_error ("timeout=%s: out of range (use a number of seconds from "
                  "1 to 86400)", value);
    return -1;
  }
  P.timeout = u;
  return 0;
}

int
params_config (const char *key, const char *value)
{
  if (strcmp (key, "host") == 0)
    return not_empty (key, value, "ssh.example.com") == -1 ||
      printable (key, value) == -1 ? -1 : set_string (&P.host, value);
  if (strcmp (key, "path") == 0)
    return not_empty (key, value, "disk.img") == -1 ||
      printable (key, value) == -1 ? -1 : set_string (&P.path, value);
  if (strcmp (key, "port") == 0)
    return set_port (value);
  if (strcmp (key, "user") == 0)
    return not_empty (key, value, "bob") == -1 ||
      printable (key, value) == -1 ? -1 : set_string (&P.user, value);
  if (strcmp (key, "password") == 0) {
    char *s;

    if (secret_read (key, value, &s) == -1)
      return -1;
    secret_free (P.password);
    P.password = s;
    return 0;
  }
  if (strcmp (key, "identity") == 0)
    return append_file (key, value, &P.identities, &P.nr_identities);
  if (strcmp (key, "known-hosts") == 0)
    return append_file (key, value, &P.known_hosts, &P.nr_known_hosts);
  if (strcmp (key, "verify-remote-host") == 0)
    return set_bool (&P.verify_remote_host, value);
  if (strcmp (key, "config") == 0) {
    /* Empty: read no configuration file at all. */
    if (*value == '\0')
      return set_string (&P.config, "");
    return local_file (key, value, &P.config);
  }
  if (strcmp (key, "compression") == 0)
    return set_bool (&P.compression, value);
  if (strcmp (key, "create") == 0)
    return set_bool (&P.create, value);
  if (strcmp (key, "create-size") == 0) {
    int64_t s = nbdkit_parse_size (value);

    if (s == -1)
      return -1;
    P.create_size = s;
    return 0;
  }
  if (strcmp (key, "create-mode") == 0)
    return set_create_mode (value);
  if (strcmp (key, "timeout") == 0)
    return set_timeout (value);
  nbdkit_error ("unknown parameter '%s' (see 'nbdkit ssh --help' for the "
                "parameters of this backend)", key);
  return -1;
}

int
params_config_complete (void)
{
  if (!P.host) {
    nbdkit_error ("the remote host is required: host=HOST (e.g. nbdkit ssh "
                  "host=ssh.example.com disk.img)");
    return -1;
  }
  if (!P.path) {
    nbdkit_error ("the remote file is required: [path=]PATH (e.g. nbdkit "
                  "ssh host=%s disk.img; a relative path is relative to the "
                  "remote home directory)", P.host);
    return -1;
  }
  if (P.create && P.create_size == -1) {
    nbdkit_error ("create=true needs the size of the new file: "
                  "create-size=SIZE (e.g. create-size=1G)");
    return -1;
  }
  if (!P.create && P.create_size != -1) {
    nbdkit_error ("create-size=%" PRId64 " is only used with create=true "
                  "(add create=true to create the remote file)",
                  P.create_size);
    return -1;
  }
  if (!P.create && create_mode_given) {
    nbdkit_error ("create-mode=0%o is only used with create=true (add "
                  "create=true to create the remote file)", P.create_mode);
    return -1;
  }
  P.log_level = nbdkit_debug_flag ("log", 0);
  if (P.log_level < 0 || P.log_level > 4) {
    nbdkit_error ("-D ssh.log=%d: out of range (use 0 to 4)", P.log_level);
    return -1;
  }
  if (asprintf (&where, "%s%s%s:%s%s%s%s", P.user ? P.user : "",
                P.user ? "@" : "", P.host, P.path, P.port ? " (port " : "",
                P.port ? P.port : "", P.port ? ")" : "") == -1) {
    where = NULL;
    nbdkit_error ("out of memory");
    return -1;
  }
  return 0;
}

/* Made once by config_complete, read by every thread after. */
const char *
params_where (void)
{
  return where ? where : P.path ? P.path : "?";
}
