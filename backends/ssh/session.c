/* backends/ssh/session.c: one SSH session of the ssh backend -- the
 * connection to sshd, the check of its host key against the known
 * hosts, the login, the SFTP channel and the remote file opened on it
 * (created first with create=true, once per run of the server) -- and
 * the reads, writes and fsyncs made on that file.  It also owns the
 * mapping of libssh and SFTP errors to errno, and every message naming
 * the remote host and file.
 *
 * Everything here blocks on the network: it runs on the backend
 * library's worker threads, in this backend's own process, one request
 * at a time per session (thread model serialize_requests).  A session
 * is never used by two threads at once.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/callbacks.h>

#include "nbdkit-backend.h"
#include "../secret.h"
#include "sshdefs.h"

#define P (ssh_params)

/* Requests of the SFTP protocol are cut to this size: OpenSSH's
 * sftp-server takes messages of up to 256 KiB, and other servers less
 * (draft-ietf-secsh-filexfer asks every server to take 32 KiB).
 */
#define MAX_CHUNK (64 * 1024)

/* ---- errors ---- */

static const char *
sftp_error_name (int code)
{
  switch (code) {
  case SSH_FX_OK: return "no error";
  case SSH_FX_EOF: return "end of file";
  case SSH_FX_NO_SUCH_FILE: return "no such file";
  case SSH_FX_PERMISSION_DENIED: return "permission denied";
  case SSH_FX_FAILURE: return "failure";
  case SSH_FX_BAD_MESSAGE: return "bad message";
  case SSH_FX_NO_CONNECTION: return "no connection";
  case SSH_FX_CONNECTION_LOST: return "connection lost";
  case SSH_FX_OP_UNSUPPORTED: return "operation not supported";
  case SSH_FX_INVALID_HANDLE: return "invalid handle";
  case SSH_FX_NO_SUCH_PATH: return "no such path";
  case SSH_FX_FILE_ALREADY_EXISTS: return "file already exists";
  case SSH_FX_WRITE_PROTECT: return "write-protected";
  case SSH_FX_NO_MEDIA: return "no media";
  default: return "unknown SFTP error";
  }
}

/* The errno for the SFTP status code.  A permission error is EACCES
 * when opening and EPERM on the data path (what NBD clients know).
 */
static int
sftp_errno (int code, bool opening)
{
  switch (code) {
  case SSH_FX_NO_SUCH_FILE:
  case SSH_FX_NO_SUCH_PATH: return ENOENT;
  case SSH_FX_PERMISSION_DENIED: return opening ? EACCES : EPERM;
  case SSH_FX_WRITE_PROTECT: return EROFS;
  case SSH_FX_OP_UNSUPPORTED: return ENOTSUP;
  default: return EIO;
  }
}

/* Report a failed SFTP operation on c: "ssh: WHERE: WHAT: SFTP error
 * (libssh's message)", with errno set.  Returns -1.
 */
static int
sftp_fail_code (struct ssh_conn *c, int code, bool opening, const char *what)
{
  const char *detail = ssh_get_error (c->session);

  /* A lost connection shows as SSH_FX_OK or a failure with no status
   * from the server: say what libssh knows.
   */
  if (code == SSH_FX_OK)
    code = SSH_FX_CONNECTION_LOST;
  nbdkit_error ("ssh: %s: %s: %s%s%s%s", params_where (), what,
                sftp_error_name (code), detail && *detail ? " (" : "",
                detail && *detail ? detail : "",
                detail && *detail ? ")" : "");
  errno = sftp_errno (code, opening);
  return -1;
}

/* The same, with the status of the last SFTP request. */
static int
sftp_fail (struct ssh_conn *c, bool opening, const char *what)
{
  return sftp_fail_code (c, c->sftp ? sftp_get_error (c->sftp) :
                         SSH_FX_NO_CONNECTION, opening, what);
}

/* ---- logging ---- */

static void
log_to_debug (int priority, const char *function, const char *buffer,
              void *userdata)
{
  (void) userdata;
  nbdkit_debug ("libssh[%d]: %s: %s", priority, function, buffer);
}

void
session_set_logging (int level)
{
  ssh_set_log_callback (log_to_debug);
  ssh_set_log_level (level);
}

/* ---- connecting ---- */

static int
set_option (struct ssh_conn *c, enum ssh_options_e opt, const void *value,
            const char *what, const char *shown)
{
  if (ssh_options_set (c->session, opt, value) != SSH_OK) {
    nbdkit_error ("ssh: %s: libssh does not take %s=%s: %s", params_where (),
                  what, shown, ssh_get_error (c->session));
    errno = EINVAL;
    return -1;
  }
  return 0;
}

static int
set_options (struct ssh_conn *c)
{
  size_t i;
  int level = P.log_level;

  if (set_option (c, SSH_OPTIONS_HOST, P.host, "host", P.host) == -1 ||
      set_option (c, SSH_OPTIONS_LOG_VERBOSITY, &level, "-D ssh.log",
                  "N") == -1)
    return -1;
  if (P.port &&
      set_option (c, SSH_OPTIONS_PORT_STR, P.port, "port", P.port) == -1)
    return -1;
  if (P.user &&
      set_option (c, SSH_OPTIONS_USER, P.user, "user", P.user) == -1)
    return -1;
  if (P.compression &&
      set_option (c, SSH_OPTIONS_COMPRESSION, "yes", "compression",
                  "true") == -1)
    return -1;
  if (P.timeout > 0 &&
      set_option (c, SSH_OPTIONS_TIMEOUT, &P.timeout, "timeout", "N") == -1)
    return -1;
  /* Each ADD_IDENTITY goes before the others: add them in reverse to
   * keep the order of the command line.
   */
  for (i = P.nr_identities; i > 0; --i)
    if (set_option (c, SSH_OPTIONS_ADD_IDENTITY, P.identities[i - 1],
                    "identity", P.identities[i - 1]) == -1)
      return -1;
  if (P.nr_known_hosts > 0 &&
      set_option (c, SSH_OPTIONS_KNOWNHOSTS, P.known_hosts[0],
                  "known-hosts", P.known_hosts[0]) == -1)
    return -1;
  /* The configuration files last: the host name must be set first.
   * config= (empty): none, not even those ssh_connect would read.
   */
  if (P.config && !*P.config) {
    bool no = false;

    if (set_option (c, SSH_OPTIONS_PROCESS_CONFIG, &no, "config", "") == -1)
      return -1;
  }
  else {
    if (ssh_options_parse_config (c->session, P.config) != SSH_OK) {
      nbdkit_error ("ssh: %s: cannot read the ssh configuration %s: %s",
                    params_where (), P.config ? P.config :
                    "(~/.ssh/config, /etc/ssh/ssh_config)",
                    ssh_get_error (c->session));
      errno = EINVAL;
      return -1;
    }
  }
  return 0;
}

/* The server's host key as "TYPE SHA256:...", for messages. */
static char *
server_key_text (struct ssh_conn *c)
{
  ssh_key key = NULL;
  unsigned char *hash = NULL;
  size_t len = 0;
  char *fp = NULL, *r = NULL;

  if (ssh_get_server_publickey (c->session, &key) == SSH_OK &&
      ssh_get_publickey_hash (key, SSH_PUBLICKEY_HASH_SHA256, &hash,
                              &len) == 0 &&
      (fp = ssh_get_fingerprint_hash (SSH_PUBLICKEY_HASH_SHA256, hash,
                                      len)) != NULL) {
    if (asprintf (&r, "%s %s", ssh_key_type_to_char (ssh_key_type (key)),
                  fp) == -1)
      r = NULL;
  }
  if (fp)
    ssh_string_free_char (fp);
  if (hash)
    ssh_clean_pubkey_hash (&hash);
  ssh_key_free (key);
  return r;
}

/* Check the server's host key against each known-hosts= file (or
 * libssh's default ones): accepted when one knows it; refused when it
 * is unknown, and when a file knows another key for the host (as
 * ssh(1) does, a changed key is an attack until shown otherwise).
 */
static int
verify_host (struct ssh_conn *c)
{
  size_t n = P.nr_known_hosts ? P.nr_known_hosts : 1, i;
  enum ssh_known_hosts_e r, worst = SSH_KNOWN_HOSTS_UNKNOWN;
  const char *file = NULL;
  char *key;

  for (i = 0; i < n; ++i) {
    if (P.nr_known_hosts &&
        set_option (c, SSH_OPTIONS_KNOWNHOSTS, P.known_hosts[i],
                    "known-hosts", P.known_hosts[i]) == -1)
      return -1;
    r = ssh_session_is_known_server (c->session);
    if (r == SSH_KNOWN_HOSTS_OK)
      return 0;
    if (r == SSH_KNOWN_HOSTS_ERROR) {
      nbdkit_error ("ssh: %s: cannot check the host key: %s",
                    params_where (), ssh_get_error (c->session));
      errno = EIO;
      return -1;
    }
    if (r == SSH_KNOWN_HOSTS_CHANGED || r == SSH_KNOWN_HOSTS_OTHER) {
      worst = r;
      file = P.nr_known_hosts ? P.known_hosts[i] : "~/.ssh/known_hosts";
    }
  }
  key = server_key_text (c);
  if (worst == SSH_KNOWN_HOSTS_UNKNOWN)
    nbdkit_error ("ssh: %s: the host key of %s (%s) is not in the known "
                  "hosts (%s): add it, e.g. by connecting once with ssh(1), "
                  "or give known-hosts=FILE (verify-remote-host=false "
                  "turns the check off, which allows man-in-the-middle "
                  "attacks)", params_where (), P.host, key ? key : "?",
                  P.nr_known_hosts ? "known-hosts=" :
                  "~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts");
  else
    nbdkit_error ("ssh: %s: the host key of %s (%s) is not the one %s "
                  "knows for it%s: refusing to connect (someone may be "
                  "impersonating the host; if its key really changed, "
                  "update %s)", params_where (), P.host, key ? key : "?",
                  file, worst == SSH_KNOWN_HOSTS_OTHER ?
                  " (it knows a key of another type)" : "", file);
  free (key);
  errno = EACCES;
  return -1;
}

static const char *
methods_text (int methods, char *buf, size_t size)
{
  snprintf (buf, size, "%s%s%s%s", methods & SSH_AUTH_METHOD_PUBLICKEY ?
            " publickey" : "", methods & SSH_AUTH_METHOD_PASSWORD ?
            " password" : "", methods & SSH_AUTH_METHOD_INTERACTIVE ?
            " keyboard-interactive" : "", methods & SSH_AUTH_METHOD_GSSAPI_MIC ?
            " gssapi-with-mic" : "");
  return buf[0] ? buf + 1 : "none";
}

/* Log in with "none", then public keys (ssh-agent, identity=, libssh's
 * default identities), then password=, as nbdkit's plugin does.
 */
static int
authenticate (struct ssh_conn *c)
{
  int methods, r;
  bool tried_key = false, tried_password = false;
  char buf[128];

  r = ssh_userauth_none (c->session, NULL);
  if (r == SSH_AUTH_SUCCESS)
    return 0;
  if (r == SSH_AUTH_ERROR)
    goto error;
  methods = ssh_userauth_list (c->session, NULL);
  if (methods & SSH_AUTH_METHOD_PUBLICKEY) {
    tried_key = true;
    r = ssh_userauth_publickey_auto (c->session, NULL, NULL);
    if (r == SSH_AUTH_SUCCESS)
      return 0;
    if (r == SSH_AUTH_ERROR)
      goto error;
  }
  if (P.password && (methods & SSH_AUTH_METHOD_PASSWORD)) {
    tried_password = true;
    r = ssh_userauth_password (c->session, NULL, P.password);
    if (r == SSH_AUTH_SUCCESS)
      return 0;
    if (r == SSH_AUTH_ERROR)
      goto error;
  }
  nbdkit_error ("ssh: %s: authentication failed (tried:%s%s%s; the server "
                "takes: %s)%s", params_where (),
                tried_key ? " publickey" : "",
                tried_password ? " password" : "",
                !tried_key && !tried_password ? " none" : "",
                methods_text (methods, buf, sizeof buf),
                P.password && !(methods & SSH_AUTH_METHOD_PASSWORD) ?
                ": the server does not take a password" :
                tried_password ? ": wrong user or password?" :
                ": no key was accepted (give identity=FILE, or run "
                "ssh-agent, or password=)");
  errno = EACCES;
  return -1;

 error:
  nbdkit_error ("ssh: %s: authentication: %s", params_where (),
                ssh_get_error (c->session));
  errno = EIO;
  return -1;
}

/* ---- the remote file ---- */

/* create=true: the file is created (replacing any) by the first
 * connection of this run of the server, and never again: not by later
 * connections, nor by a restarted backend re-opening a connection
 * after writes were acknowledged.  The mark is kept in the server's
 * memory file for this backend (../secret.h).
 */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static bool created;
#define CREATED_MARK "ssh: create=true: created"

static int
create_file (struct ssh_conn *c)
{
  sftp_file f;
  struct sftp_attributes_struct attr;
  char *mark;
  int r = -1;

  pthread_mutex_lock (&create_lock);
  if (!created && (mark = secret_kept_find (CREATED_MARK)) != NULL) {
    free (mark);
    created = true;
  }
  if (created) {
    r = 0;
    goto out;
  }
  f = sftp_open (c->sftp, P.path, O_WRONLY | O_CREAT | O_TRUNC,
                 (mode_t) P.create_mode);
  if (!f) {
    sftp_fail (c, true, "create=true: cannot create the remote file");
    goto out;
  }
  sftp_close (f);
  memset (&attr, 0, sizeof attr);
  /* The mode too: O_CREAT does not change that of a file replaced. */
  attr.flags = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS;
  attr.size = (uint64_t) P.create_size;
  attr.permissions = P.create_mode;
  if (sftp_setstat (c->sftp, P.path, &attr) != SSH_OK) {
    sftp_fail (c, true, "create=true: cannot set the size and mode of the new "
               "file");
    goto out;
  }
  nbdkit_debug ("created %s, %" PRId64 " bytes, mode 0%o", params_where (),
                P.create_size, P.create_mode);
  created = true;
  secret_keep (CREATED_MARK, "1");
  r = 0;
 out:
  pthread_mutex_unlock (&create_lock);
  return r;
}

static int
open_file (struct ssh_conn *c, bool readonly)
{
  sftp_attributes attrs;
  int code = SSH_FX_OK;

  if (P.create && create_file (c) == -1)
    return -1;
  c->readonly = readonly;
  c->file = sftp_open (c->sftp, P.path, readonly ? O_RDONLY : O_RDWR, 0);
  if (!c->file && !readonly) {
    code = sftp_get_error (c->sftp);
    if (code == SSH_FX_PERMISSION_DENIED || code == SSH_FX_WRITE_PROTECT) {
      nbdkit_debug ("%s cannot be opened for writing (%s): serving it "
                    "read-only", params_where (), sftp_error_name (code));
      c->readonly = true;
      c->file = sftp_open (c->sftp, P.path, O_RDONLY, 0);
    }
  }
  /* A directory fails to open for writing with a mere "failure", and
   * opens for reading: say what it is.
   */
  if (!c->file)
    code = sftp_get_error (c->sftp);
  attrs = c->file ? sftp_fstat (c->file) : sftp_stat (c->sftp, P.path);
  if (attrs && attrs->type == SSH_FILEXFER_TYPE_DIRECTORY) {
    sftp_attributes_free (attrs);
    nbdkit_error ("ssh: %s: is a directory (give the path of a file)",
                  params_where ());
    errno = EISDIR;
    return -1;
  }
  sftp_attributes_free (attrs);
  if (!c->file)
    return sftp_fail_code (c, code, true, "cannot open the remote file");
  c->can_fsync = sftp_extension_supported (c->sftp, "fsync@openssh.com",
                                           "1");
  return 0;
}

struct ssh_conn *
session_open (bool readonly)
{
  struct ssh_conn *c = calloc (1, sizeof *c);
  int e;

  if (!c) {
    nbdkit_error ("out of memory");
    errno = ENOMEM;
    return NULL;
  }
  c->session = ssh_new ();
  if (!c->session) {
    nbdkit_error ("ssh: cannot make an SSH session (ssh_new failed)");
    errno = ENOMEM;
    goto err;
  }
  if (set_options (c) == -1)
    goto err;
  if (ssh_connect (c->session) != SSH_OK) {
    nbdkit_error ("ssh: %s: cannot connect: %s", params_where (),
                  ssh_get_error (c->session));
    errno = EIO;
    goto err;
  }
  if (P.verify_remote_host && verify_host (c) == -1)
    goto err;
  if (authenticate (c) == -1)
    goto err;
  c->sftp = sftp_new (c->session);
  if (!c->sftp) {
    nbdkit_error ("ssh: %s: cannot start SFTP: %s", params_where (),
                  ssh_get_error (c->session));
    errno = EIO;
    goto err;
  }
  if (sftp_init (c->sftp) != SSH_OK) {
    sftp_fail (c, true, "cannot start SFTP (is the sftp subsystem enabled "
               "in the server's sshd_config?)");
    goto err;
  }
  if (open_file (c, readonly) == -1)
    goto err;
  nbdkit_debug ("opened %s%s; fsync@openssh.com: %s", params_where (),
                c->readonly ? " read-only" : "", c->can_fsync ? "yes" : "no");
  return c;

 err:
  e = errno;
  session_close (c);
  errno = e;
  return NULL;
}

void
session_close (struct ssh_conn *c)
{
  if (!c)
    return;
  if (c->file)
    sftp_close (c->file);
  if (c->sftp)
    sftp_free (c->sftp);
  if (c->session) {
    if (ssh_is_connected (c->session))
      ssh_disconnect (c->session);
    ssh_free (c->session);
  }
  free (c);
}

/* ---- the data ---- */

int64_t
session_size (struct ssh_conn *c)
{
  sftp_attributes attrs = sftp_fstat (c->file);
  int64_t size;

  if (!attrs)
    return sftp_fail (c, false, "cannot get the size of the remote file");
  if (!(attrs->flags & SSH_FILEXFER_ATTR_SIZE) || attrs->size > INT64_MAX) {
    sftp_attributes_free (attrs);
    nbdkit_error ("ssh: %s: the server did not tell the size of the file",
                  params_where ());
    errno = EIO;
    return -1;
  }
  size = (int64_t) attrs->size;
  sftp_attributes_free (attrs);
  return size;
}

int
session_pread (struct ssh_conn *c, void *buf, uint32_t count,
               uint64_t offset)
{
  char *p = buf;

  if (sftp_seek64 (c->file, offset) == -1)
    return sftp_fail (c, false, "seek");
  while (count > 0) {
    ssize_t r = sftp_read (c->file, p, count < MAX_CHUNK ? count : MAX_CHUNK);

    if (r < 0)
      return sftp_fail (c, false, "read");
    if (r == 0) {
      nbdkit_error ("ssh: %s: read at offset %" PRIu64 ": unexpected end of "
                    "file (was the file truncated?)", params_where (),
                    offset);
      errno = EIO;
      return -1;
    }
    p += r;
    offset += r;
    count -= r;
  }
  return 0;
}

int
session_pwrite (struct ssh_conn *c, const void *buf, uint32_t count,
                uint64_t offset)
{
  const char *p = buf;

  if (sftp_seek64 (c->file, offset) == -1)
    return sftp_fail (c, false, "seek");
  while (count > 0) {
    ssize_t r = sftp_write (c->file, p, count < MAX_CHUNK ? count : MAX_CHUNK);

    if (r <= 0)
      return sftp_fail (c, false, "write");
    p += r;
    count -= r;
  }
  return 0;
}

int
session_fsync (struct ssh_conn *c)
{
  if (sftp_fsync (c->file) != 0)
    return sftp_fail (c, false, "fsync");
  return 0;
}
