/* filters/ip.c: allow or deny clients by address (nbdkit-ip-filter(1)).
 *
 * allow= and deny= take comma-separated rules (and may be given more
 * than once), spelled as nbdkit spells them: all/any,
 * allipv4/anyipv4, allipv6/anyipv6, allunix/anyunix,
 * allvsock/anyvsock, an IPv4 or IPv6 address with an optional
 * /prefix, for unix-socket clients uid:N, gid:N and pid:N (from
 * SO_PEERCRED), and for vsock clients vsock-cid:N and vsock-port:N.
 * A client that matches an allow rule is let in; else one that
 * matches a deny rule is refused; else it is let in.
 */

#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#ifdef HAVE_LINUX_VM_SOCKETS_H
#include <linux/vm_sockets.h>
#endif

#include "filter.h"

enum rule_type { R_ALL, R_ANY4, R_ANY6, R_IP4, R_IP6, R_UNIX, R_VSOCK,
                 R_UID, R_GID, R_PID, R_VSOCK_CID, R_VSOCK_PORT };

struct rule {
  enum rule_type type;
  unsigned char addr[16];
  unsigned prefix;
  int64_t id;
};

struct rules {
  struct rule *r;
  size_t n;
};

static struct rules allow, deny;

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int
parse_id (const char *key, const char *rule, const char *s, int64_t max,
          int64_t *id)
{
  char *end;

  errno = 0;
  *id = strtoll (s, &end, 10);
  if (errno || end == s || *end || *id < 0 || *id > max ||
      !(*s >= '0' && *s <= '9')) {
    nbdkit_error ("%s=...%s...: '%s' is not a number from 0 to %" PRId64,
                  key, rule, s, max);
    return -1;
  }
  return 0;
}

static int
parse_rule (const char *key, const char *s, struct rule *r)
{
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash;
  size_t len;
  unsigned maxprefix;

  memset (r, 0, sizeof *r);
  if (strcmp (s, "all") == 0 || strcmp (s, "any") == 0)
    r->type = R_ALL;
  else if (strcmp (s, "allipv4") == 0 || strcmp (s, "anyipv4") == 0)
    r->type = R_ANY4;
  else if (strcmp (s, "allipv6") == 0 || strcmp (s, "anyipv6") == 0)
    r->type = R_ANY6;
  else if (strcmp (s, "allunix") == 0 || strcmp (s, "anyunix") == 0)
    r->type = R_UNIX;
  else if (strcmp (s, "allvsock") == 0 || strcmp (s, "anyvsock") == 0)
    r->type = R_VSOCK;
  else if (strncmp (s, "uid:", 4) == 0) {
    r->type = R_UID;
    return parse_id (key, s, s + 4, UINT32_MAX, &r->id);
  }
  else if (strncmp (s, "gid:", 4) == 0) {
    r->type = R_GID;
    return parse_id (key, s, s + 4, UINT32_MAX, &r->id);
  }
  else if (strncmp (s, "pid:", 4) == 0) {
    r->type = R_PID;
    return parse_id (key, s, s + 4, INT32_MAX, &r->id);
  }
  else if (strncmp (s, "vsock-cid:", 10) == 0) {
    r->type = R_VSOCK_CID;
    return parse_id (key, s, s + 10, UINT32_MAX, &r->id);
  }
  else if (strncmp (s, "vsock-port:", 11) == 0) {
    r->type = R_VSOCK_PORT;
    return parse_id (key, s, s + 11, UINT32_MAX, &r->id);
  }
  else {
    slash = strchr (s, '/');
    len = slash ? (size_t) (slash - s) : strlen (s);
    if (len >= sizeof addr)
      goto bad;
    memcpy (addr, s, len);
    addr[len] = '\0';
    if (inet_pton (AF_INET, addr, r->addr) == 1) {
      r->type = R_IP4;
      maxprefix = 32;
    }
    else if (inet_pton (AF_INET6, addr, r->addr) == 1) {
      r->type = R_IP6;
      maxprefix = 128;
    }
    else
      goto bad;
    r->prefix = maxprefix;
    if (slash) {
      char *end;
      long p;

      errno = 0;
      p = strtol (slash + 1, &end, 10);
      if (errno || end == slash + 1 || *end || p < 0 ||
          p > (long) maxprefix) {
        nbdkit_error ("%s=...%s...: the prefix length must be 0 to %u",
                      key, s, maxprefix);
        return -1;
      }
      r->prefix = (unsigned) p;
    }
  }
  return 0;
 bad:
  nbdkit_error ("%s=...%s...: not a rule: use all, allipv4, allipv6, "
                "allunix, allvsock (or any..., the same), an address with "
                "an optional /prefix, uid:N, gid:N, pid:N, vsock-cid:N or "
                "vsock-port:N", key, s);
  return -1;
}

static int
ip_config (const char *key, const char *value)
{
  struct rules *rs = strcmp (key, "allow") == 0 ? &allow : &deny;
  char *copy = strdup (value), *tok, *save = NULL;

  if (!copy) {
    nbdkit_error ("ip filter: %s=%s: out of memory", key, value);
    return -1;
  }
  for (tok = strtok_r (copy, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    struct rule *n = realloc (rs->r, (rs->n + 1) * sizeof *n);

    if (!n) {
      nbdkit_error ("ip filter: %s=%s: out of memory", key, value);
      free (copy);
      return -1;
    }
    rs->r = n;
    if (parse_rule (key, tok, &rs->r[rs->n]) == -1) {
      free (copy);
      return -1;
    }
    rs->n++;
  }
  free (copy);
  return 0;
}

static void
ip_unload (void)
{
  free (allow.r);
  free (deny.r);
}

static bool
prefix_match (const unsigned char *a, const unsigned char *b,
              unsigned prefix)
{
  unsigned full = prefix / 8, rest = prefix % 8;

  if (memcmp (a, b, full) != 0)
    return false;
  if (rest == 0)
    return true;
  return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

/* What is known of the client. */
struct client {
  int family;                   /* AF_INET (also v4-mapped v6), ... */
  unsigned char addr[16];
  bool have_cred;
  int64_t uid, gid, pid;
  bool have_vsock;
  int64_t cid, port;            /* of a vsock peer */
};

static bool
matches (const struct rules *rs, const struct client *c)
{
  size_t i;

  for (i = 0; i < rs->n; ++i) {
    const struct rule *r = &rs->r[i];

    switch (r->type) {
    case R_ALL: return true;
    case R_ANY4: if (c->family == AF_INET) return true; break;
    case R_ANY6: if (c->family == AF_INET6) return true; break;
    case R_UNIX: if (c->family == AF_UNIX) return true; break;
    case R_VSOCK: if (c->family == AF_VSOCK) return true; break;
    case R_IP4:
      if (c->family == AF_INET && prefix_match (r->addr, c->addr, r->prefix))
        return true;
      break;
    case R_IP6:
      if (c->family == AF_INET6 && prefix_match (r->addr, c->addr, r->prefix))
        return true;
      break;
    case R_UID: if (c->have_cred && c->uid == r->id) return true; break;
    case R_GID: if (c->have_cred && c->gid == r->id) return true; break;
    case R_PID: if (c->have_cred && c->pid == r->id) return true; break;
    case R_VSOCK_CID:
      if (c->have_vsock && c->cid == r->id) return true;
      break;
    case R_VSOCK_PORT:
      if (c->have_vsock && c->port == r->id) return true;
      break;
    }
  }
  return false;
}

static bool
ip_accept (int fd, const char *peer)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  struct client c = { .family = -1 };

  if (getpeername (fd, (struct sockaddr *) &ss, &len) == 0) {
    c.family = ss.ss_family;
    if (ss.ss_family == AF_INET)
      memcpy (c.addr, &((struct sockaddr_in *) &ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6) {
      const struct in6_addr *a = &((struct sockaddr_in6 *) &ss)->sin6_addr;

      if (IN6_IS_ADDR_V4MAPPED (a)) {
        c.family = AF_INET;
        memcpy (c.addr, &a->s6_addr[12], 4);
      }
      else
        memcpy (c.addr, a, 16);
    }
    else if (ss.ss_family == AF_UNIX) {
      struct ucred cred;
      socklen_t clen = sizeof cred;

      if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
        c.have_cred = true;
        c.uid = cred.uid;
        c.gid = cred.gid;
        c.pid = cred.pid;
      }
    }
#ifdef HAVE_LINUX_VM_SOCKETS_H
    else if (ss.ss_family == AF_VSOCK) {
      const struct sockaddr_vm *vm = (const struct sockaddr_vm *) &ss;

      c.have_vsock = true;
      c.cid = vm->svm_cid;
      c.port = vm->svm_port;
    }
#endif
  }
  if (matches (&allow, &c))
    return true;
  if (matches (&deny, &c)) {
    nbdkit_error ("ip filter: %s: client refused (deny rule)", peer);
    return false;
  }
  return true;
}

static const char *const keys[] = { "allow", "deny", NULL };

const struct filter ip_filter = {
  .name = "ip",
  .description = "allow or deny clients by address or credentials",
  .config_help =
    "allow=RULE[,RULE...]  let these clients in\n"
    "deny=RULE[,RULE...]   refuse these (unless allowed)\n"
    "  RULE: all (any), allipv4 (anyipv4), allipv6 (anyipv6),\n"
    "        allunix (anyunix), allvsock (anyvsock), ADDR[/PREFIX],\n"
    "        uid:N, gid:N, pid:N, vsock-cid:N, vsock-port:N",
  .keys = keys,
  .config = ip_config,
  .unload = ip_unload,
  .accept = ip_accept,
};
