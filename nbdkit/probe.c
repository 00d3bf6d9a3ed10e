/* nbdkit front end: --dump-config, as nbdkit-probing(1) describes.
 *
 * Prints how this server was built and where it looks for things, as
 * key=value lines in nbdkit's format, for scripts that need to know
 * before they run it.
 */

#include <config.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

void
probe_dump_config (void)
{
  char exe[PATH_MAX];
  ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
  unsigned major = 0, minor = 0, micro = 0;

  exe[n > 0 ? n : 0] = '\0';
  sscanf (PACKAGE_VERSION, "%u.%u.%u", &major, &minor, &micro);
  printf ("bindir=%s\n", BINDIR);
  printf ("binary=%s\n", exe);
  printf ("backenddir=%s\n", BACKENDDIR);
  printf ("exit_with_parent=yes\n");
  printf ("filterdir=%s\n", FILTERDIR);
  printf ("host_cpu=%s\n", HOST_CPU);
  printf ("host_os=%s\n", HOST_OS);
  printf ("libdir=%s\n", LIBDIR);
  printf ("mandir=%s\n", MANDIR);
  printf ("name=%s\n", PACKAGE_NAME);
  printf ("plugindir=%s\n", BACKENDDIR);
  printf ("root_tls_certificates_dir=%s/pki/%s\n", SYSCONFDIR, PROGRAM_NAME);
  printf ("sbindir=%s\n", SBINDIR);
#ifdef HAVE_LIBSELINUX
  printf ("selinux=yes\n");
#else
  printf ("selinux=no\n");
#endif
  printf ("socket_activation=yes\n");
  printf ("sysconfdir=%s\n", SYSCONFDIR);
  printf ("tls=yes\n");
  printf ("version=%s\n", PACKAGE_VERSION);
  printf ("version_major=%u\n", major);
  printf ("version_minor=%u\n", minor);
  printf ("vsock=yes\n");
}
