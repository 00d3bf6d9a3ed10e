/* backends/ssh/ssh.c: the ssh backend, a file of a remote machine
 * served over SFTP (libssh), as nbdkit-ssh-plugin does.  This file owns
 * the backend's table, --help and --dump-plugin, and the callbacks;
 * params.c owns the parameters, session.c the SSH sessions and the
 * SFTP requests made on them.
 *
 * Each client connection gets an SSH session of its own, opened in
 * open and closed in close, as with nbdkit.  A session is not
 * thread-safe, so the thread model is serialize_requests: one request
 * at a time per connection, connections in parallel.  All of it blocks
 * on the network, in this process only (the server's event loop only
 * waits for the answers).  A restarted backend opens new sessions for
 * the connections that were open.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nbdkit-backend.h"
#include "sshdefs.h"

static void
sshbe_load (void)
{
  ssh_init ();
}

static void
sshbe_unload (void)
{
  params_free ();
  ssh_finalize ();
}

static int
sshbe_config_complete (void)
{
  if (params_config_complete () == -1)
    return -1;
  if (ssh_params.log_level > 0)
    session_set_logging (ssh_params.log_level);
  return 0;
}

static void
sshbe_dump_plugin (void)
{
  printf ("libssh_version=%s\n", ssh_version (0));
  fflush (stdout);
}

static void *
sshbe_open (int readonly)
{
  return session_open (readonly);
}

static void
sshbe_close (void *handle)
{
  session_close (handle);
}

static int64_t
sshbe_get_size (void *handle)
{
  return session_size (handle);
}

static int
sshbe_can_write (void *handle)
{
  struct ssh_conn *c = handle;

  return !c->readonly;
}

/* fsync@openssh.com (OpenSSH >= 6.5) makes a flush possible. */
static int
sshbe_can_flush (void *handle)
{
  struct ssh_conn *c = handle;

  return c->can_fsync;
}

/* As nbdkit: OpenSSH's sftp-server writes through at once with
 * pwrite(2), so every connection (each its own session and server
 * process) sees the writes of the others, and fsync(2) on one makes
 * them all durable.  Other servers may cache: fsync@openssh.com, the
 * mark of OpenSSH, stands for "safe".
 */
static int
sshbe_can_multi_conn (void *handle)
{
  struct ssh_conn *c = handle;

  return c->can_fsync;
}

static int
sshbe_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  (void) flags;
  return session_pread (handle, buf, count, offset);
}

static int
sshbe_pwrite (void *handle, const void *buf, uint32_t count,
              uint64_t offset, uint32_t flags)
{
  (void) flags;
  return session_pwrite (handle, buf, count, offset);
}

static int
sshbe_flush (void *handle, uint32_t flags)
{
  (void) flags;
  return session_fsync (handle);
}

static struct nbdkit_backend ssh_backend = {
  .name = "ssh",
  .longname = "nbdkit ssh backend",
  .version = PACKAGE_VERSION,
  .description = "Serve a file of a remote machine over SSH (SFTP, libssh).",
  .config_help =
    "host=<HOST>            (required) The remote host.\n"
    "[path=]<PATH>          (required) The remote file (relative to the\n"
    "                       remote home directory unless absolute).\n"
    "port=<PORT>            The remote port (22).\n"
    "user=<USER>            The remote user name (the local one).\n"
    "password=<PASSWORD>    The password; +FILE, - or -FD to read it.\n"
    "identity=<FILENAME>    A private key to try first; repeatable.\n"
    "known-hosts=<FILENAME> Known hosts file(s) to check the host key\n"
    "                       against; repeatable.\n"
    "verify-remote-host=false\n"
    "                       Do not check the host key (unsafe).\n"
    "config=<CONFIG_FILE>   The ssh configuration to read (empty: none).\n"
    "compression=true       Compress the SSH traffic.\n"
    "create=true            Create (or replace) the remote file.\n"
    "create-mode=<MODE>     Permissions of the created file (0600).\n"
    "create-size=<SIZE>     The size of the created file.\n"
    "timeout=<SECS>         Time limit to connect.",
  .magic_config_key = "path",
  .thread_model = NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS,
  .wants_memfd = true,          /* ../secret.c: what was read, for restarts */
  .load = sshbe_load,
  .unload = sshbe_unload,
  .config = params_config,
  .config_complete = sshbe_config_complete,
  .dump_plugin = sshbe_dump_plugin,
  .open = sshbe_open,
  .close = sshbe_close,
  .get_size = sshbe_get_size,
  .can_write = sshbe_can_write,
  .can_flush = sshbe_can_flush,
  .can_multi_conn = sshbe_can_multi_conn,
  .pread = sshbe_pread,
  .pwrite = sshbe_pwrite,
  .flush = sshbe_flush,
};

NBDKIT_REGISTER_BACKEND (ssh_backend)
