/* nbdkit front end: --dump-config, as nbdkit-probing(1) describes.
 *
 * Prints how this server was built and where it looks for things, as
 * key=value lines in nbdkit's format, for scripts that need to know
 * before they run it.  The version keys are those of the nbdkit release
 * whose behaviour this server matches (NBDKIT_COMPAT_VERSION), so that
 * tools testing nbdkit's version see the right thing; package_version
 * is this package's own.
 */

#include <config.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "options.h"

void
probe_dump_config (void)
{
  char exe[PATH_MAX];
  ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);

  exe[n > 0 ? n : 0] = '\0';
  printf ("bindir=%s\n", BINDIR);
  printf ("binary=%s\n", exe);
  printf ("backenddir=%s\n", backend_dir ());
  printf ("exit_with_parent=yes\n");
  /* Empty: the filters are compiled into the server. */
  printf ("filterdir=\n");
  printf ("host_cpu=%s\n", HOST_CPU);
  printf ("host_os=%s\n", HOST_OS);
  printf ("libdir=%s\n", LIBDIR);
  printf ("mandir=%s\n", MANDIR);
  printf ("name=%s\n", PACKAGE_NAME);
  printf ("package_version=%s\n", PACKAGE_VERSION);
  printf ("plugindir=%s\n", backend_dir ());
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
  printf ("version=%s\n", NBDKIT_COMPAT_VERSION);
  printf ("version_major=%d\n", NBDKIT_COMPAT_MAJOR);
  printf ("version_minor=%d\n", NBDKIT_COMPAT_MINOR);
  printf ("vsock=yes\n");
}
