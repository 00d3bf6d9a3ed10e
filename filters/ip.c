/* filters/ip.c: allow or deny clients by address (nbdkit-ip-filter(1)).
 *
 * allow= and deny= take comma-separated rules (and may be given more
 * than once): all, anyipv4, anyipv6, an IPv4 or IPv6 address with an
 * optional /prefix, unix, vsock, and for unix-socket clients uid:N,
 * gid:N and pid:N (from SO_PEERCRED).  A client that matches an allow
 * rule is let in; else one that matches a deny rule is refused; else
 * it is let in.
 */

#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "filter.h"

enum rule_type { R_ALL, R_ANY4, R_ANY6, R_IP4, R_IP6, R_UNIX, R_VSOCK,
                 R_UID, R_GID, R_PID };

struct rule {
  enum rule_type type;
  unsigned char addr[16];
  unsigned prefix;
  long id;
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
parse_id (const char *key, const char *rule, const char *s, long *id)
{
  char *end;

  errno = 0;
  *id = strtol (s, &end, 10);
  if (errno || end == s || *end || *id < 0) {
    nbdkit_error ("%s=...%s...: '%s' is not a number", key, rule, s);
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
  else if (strcmp (s, "anyipv4") == 0 || strcmp (s, "anyv4") == 0)
    r->type = R_ANY4;
  else if (strcmp (s, "anyipv6") == 0 || strcmp (s, "anyv6") == 0)
    r->type = R_ANY6;
  else if (strcmp (s, "unix") == 0)
    r->type = R_UNIX;
  else if (strcmp (s, "vsock") == 0)
    r->type = R_VSOCK;
  else if (strncmp (s, "uid:", 4) == 0) {
    r->type = R_UID;
    return parse_id (key, s, s + 4, &r->id);
  }
  else if (strncmp (s, "gid:", 4) == 0) {
    r->type = R_GID;
    return parse_id (key, s, s + 4, &r->id);
  }
  else if (strncmp (s, "pid:", 4) == 0) {
    r->type = R_PID;
    return parse_id (key, s, s + 4, &r->id);
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
  nbdkit_error ("%s=...%s...: not a rule: use all, anyipv4, anyipv6, an "
                "address with an optional /prefix, unix, vsock, uid:N, "
                "gid:N or pid:N", key, s);
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
  long uid, gid, pid;
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
    "  RULE: all, anyipv4, anyipv6, ADDR[/PREFIX], unix, vsock,\n"
    "        uid:N, gid:N, pid:N",
  .keys = keys,
  .config = ip_config,
  .unload = ip_unload,
  .accept = ip_accept,
};
