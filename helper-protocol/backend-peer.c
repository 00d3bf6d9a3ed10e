/* libnbdkit-backend: where the client of the current connection is.
 *
 * Owns nbdkit_peer_name: the "client" string of the OPEN request
 * ("tcp:ADDRESS:PORT", "tcp:[ADDRESS]:PORT", "unix:", "vsock:CID:PORT"
 * or "stdin", see nbdkit-helper-protocol(5)) turned back into the
 * struct sockaddr that nbdkit's function of the same name returns.
 * The backend never has the client's socket, so this is the only way
 * it learns the address.  Pure parsing: no system call.
 */

#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "backend-internal.h"

/* A decimal number up to max, the whole of [s, end). */
static int
parse_num (const char *s, const char *end, unsigned long max,
           unsigned long *r)
{
  unsigned long v = 0;

  if (s == end)
    return -1;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    v = v * 10 + (*s - '0');
    if (v > max)
      return -1;
  }
  *r = v;
  return 0;
}

/* "ADDRESS:PORT" or "[ADDRESS]:PORT" into ss. */
static int
parse_tcp (const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
  const char *colon = strrchr (s, ':');
  char host[INET6_ADDRSTRLEN + 1];
  unsigned long port;
  size_t n;

  if (!colon || parse_num (colon + 1, colon + strlen (colon), 65535,
                           &port) == -1)
    return -1;
  n = colon - s;
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) ss;

    if (n - 2 >= sizeof host)
      return -1;
    memcpy (host, s + 1, n - 2);
    host[n - 2] = '\0';
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons (port);
    if (inet_pton (AF_INET6, host, &sin6->sin6_addr) != 1)
      return -1;
    *len = sizeof *sin6;
  }
  else {
    struct sockaddr_in *sin = (struct sockaddr_in *) ss;

    if (n >= sizeof host)
      return -1;
    memcpy (host, s, n);
    host[n] = '\0';
    sin->sin_family = AF_INET;
    sin->sin_port = htons (port);
    if (inet_pton (AF_INET, host, &sin->sin_addr) != 1)
      return -1;
    *len = sizeof *sin;
  }
  return 0;
}

/* "CID:PORT" into ss. */
static int
parse_vsock (const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
  struct sockaddr_vm *vm = (struct sockaddr_vm *) ss;
  const char *colon = strchr (s, ':');
  unsigned long cid, port;

  if (!colon || parse_num (s, colon, UINT32_MAX, &cid) == -1 ||
      parse_num (colon + 1, colon + strlen (colon), UINT32_MAX, &port) == -1)
    return -1;
  vm->svm_family = AF_VSOCK;
  vm->svm_cid = cid;
  vm->svm_port = port;
  *len = sizeof *vm;
  return 0;
}

int
nbdkit_peer_name (struct sockaddr *addr, socklen_t *addrlen)
{
  const char *peer = nbdkit__context_get ()->peer;
  struct sockaddr_storage ss;
  socklen_t len = 0;
  int r = -1;

  if (!addr || !addrlen) {
    nbdkit_error ("nbdkit_peer_name: addr and addrlen must not be NULL");
    errno = EINVAL;
    return -1;
  }
  if (!peer) {
    nbdkit_error ("nbdkit_peer_name: no client connection here (call it "
                  "in open, close or a data or capability callback)");
    errno = EINVAL;
    return -1;
  }
  if (strcmp (peer, "stdin") == 0) {
    nbdkit_error ("nbdkit_peer_name: the client is on the server's "
                  "standard input (nbdkit -s), which has no address");
    errno = ENOTSOCK;
    return -1;
  }
  memset (&ss, 0, sizeof ss);
  if (strncmp (peer, "tcp:", 4) == 0)
    r = parse_tcp (peer + 4, &ss, &len);
  else if (strncmp (peer, "vsock:", 6) == 0)
    r = parse_vsock (peer + 6, &ss, &len);
  else if (strncmp (peer, "unix:", 5) == 0) {
    struct sockaddr_un *sun = (struct sockaddr_un *) &ss;
    size_t n = strlen (peer + 5);

    if (n < sizeof sun->sun_path) {
      sun->sun_family = AF_UNIX;
      memcpy (sun->sun_path, peer + 5, n);
      len = offsetof (struct sockaddr_un, sun_path) + (n ? n + 1 : 0);
      r = 0;
    }
  }
  if (r == -1) {
    nbdkit_error ("nbdkit_peer_name: the server gave the client's address "
                  "as '%s', which is not one nbdkit-helper-protocol(5) "
                  "defines", peer);
    errno = EINVAL;
    return -1;
  }
  /* As getpeername(2): truncate to the buffer, return the full size. */
  memcpy (addr, &ss, len < *addrlen ? len : *addrlen);
  *addrlen = len;
  return 0;
}
