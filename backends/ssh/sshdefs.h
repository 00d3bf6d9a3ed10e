/* backends/ssh/sshdefs.h: what the files of the ssh backend share.
 *
 * params.c owns the parameters (struct ssh_params, filled by config and
 * checked by config_complete); session.c one SSH session with its SFTP
 * channel and open remote file (connecting, checking the host key,
 * logging in, opening or creating the file) and the mapping of libssh
 * and SFTP errors to errno; ssh.c the backend's table and callbacks,
 * which read and write the open file.
 */

#ifndef NBDKIT_SSH_SSHDEFS_H
#define NBDKIT_SSH_SSHDEFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libssh/libssh.h>
#include <libssh/sftp.h>

/* ---- the parameters (params.c) ---- */

struct ssh_params {
  char *host;                   /* host=, required */
  char *path;                   /* [path=], required */
  char *port;                   /* port=, as a number (a name is resolved) */
  char *user;                   /* user= */
  char *password;               /* password= (read by ../secret.c) */
  char **identities;            /* identity=, in command line order */
  size_t nr_identities;
  char **known_hosts;           /* known-hosts=, in command line order */
  size_t nr_known_hosts;
  bool verify_remote_host;      /* verify-remote-host=, default true */
  char *config;                 /* config=; NULL: the default files */
  bool compression;             /* compression= */
  bool create;                  /* create= */
  int64_t create_size;          /* create-size=, or -1 */
  unsigned create_mode;         /* create-mode=, default 0600 */
  long timeout;                 /* timeout= in seconds, 0: libssh's */
  int log_level;                /* -D ssh.log=N */
};

extern struct ssh_params ssh_params;

extern int params_config (const char *key, const char *value);
extern int params_config_complete (void);
extern void params_free (void);

/* "[user@]host:path[ (port N)]", as scp(1) names it, for messages. */
extern const char *params_where (void);

/* ---- one session (session.c) ---- */

struct ssh_conn {
  ssh_session session;
  sftp_session sftp;
  sftp_file file;
  bool readonly;                /* opened read-only (asked, or the file is) */
  bool can_fsync;               /* the server has fsync@openssh.com */
};

/* Connect, check the host key, log in, start SFTP and open the remote
 * file (creating it first with create=true, once per server run).
 * readonly: the connection was asked to be read-only; a file that
 * cannot be opened for writing is opened read-only too.  NULL after
 * nbdkit_error and errno set (ENOENT, EACCES, EIO, ...).
 */
extern struct ssh_conn *session_open (bool readonly);
extern void session_close (struct ssh_conn *c);

/* The size of the open file, or -1 after nbdkit_error and errno. */
extern int64_t session_size (struct ssh_conn *c);

/* Each returns 0, or -1 after nbdkit_error with errno set. */
extern int session_pread (struct ssh_conn *c, void *buf, uint32_t count,
                          uint64_t offset);
extern int session_pwrite (struct ssh_conn *c, const void *buf,
                           uint32_t count, uint64_t offset);
extern int session_fsync (struct ssh_conn *c);

/* The libssh log goes to nbdkit_debug (-D ssh.log=N). */
extern void session_set_logging (int level);

#endif /* NBDKIT_SSH_SSHDEFS_H */
