/* nbdkit info backend: a small read-only disk that tells the client
 * about its own connection, as nbdkit's info plugin.
 *
 * Owns the modes and what each serves: the export name (as given, or
 * base64-decoded), the client's address (nbdkit_peer_name, formatted
 * as nbdkit does: "ADDR:PORT", "[ADDR6]:PORT", "unix", "vsock:CID:PORT")
 * or a time as 12 big-endian bytes (seconds, microseconds): the wall
 * clock at each read, the server's uptime, or the time since this
 * connection opened.  The server's start time is kept in the server's
 * memfd, so the uptime does not restart with the backend process.
 */

#include <config.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit-backend.h"

enum mode {
  MODE_EXPORTNAME, MODE_BASE64EXPORTNAME, MODE_ADDRESS,
  MODE_TIME, MODE_UPTIME, MODE_CONNTIME,
};
static const char *const mode_names[] = {
  "exportname", "base64exportname", "address", "time", "uptime", "conntime",
};
#define NR_MODES (sizeof mode_names / sizeof mode_names[0])

static enum mode mode = MODE_EXPORTNAME;
static struct timespec server_start;    /* CLOCK_MONOTONIC */

#define TIME_SIZE 12

struct handle {
  char *data;                   /* the disk, or NULL for the time modes */
  size_t size;
  struct timespec opened;       /* CLOCK_MONOTONIC */
};

static int
info_config (const char *key, const char *value)
{
  size_t i;

  if (strcmp (key, "mode") != 0) {
    nbdkit_error ("unknown parameter '%s' (the info backend takes "
                  "mode=exportname|base64exportname|address|time|uptime|"
                  "conntime)", key);
    return -1;
  }
  for (i = 0; i < NR_MODES; i++)
    if (strcmp (value, mode_names[i]) == 0) {
      mode = i;
      return 0;
    }
  nbdkit_error ("mode=%s: unknown mode (use exportname, base64exportname, "
                "address, time, uptime or conntime)", value);
  return -1;
}

/* The server's start: the first process of this backend writes its
 * time into the memfd (16 bytes: seconds and nanoseconds, big-endian);
 * a restarted one reads it back.
 */
static int
info_get_ready (void)
{
  int fd = nbdkit_memfd ();
  uint64_t b[2];
  struct stat st;

  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size == sizeof b &&
      pread (fd, b, sizeof b, 0) == sizeof b) {
    server_start.tv_sec = be64toh (b[0]);
    server_start.tv_nsec = be64toh (b[1]);
    return 0;
  }
  clock_gettime (CLOCK_MONOTONIC, &server_start);
  if (fd >= 0) {
    b[0] = htobe64 (server_start.tv_sec);
    b[1] = htobe64 (server_start.tv_nsec);
    if (pwrite (fd, b, sizeof b, 0) != sizeof b) {
      nbdkit_error ("cannot keep the start time in the memfd: %m");
      return -1;
    }
  }
  return 0;
}

/* Base64 (RFC 4648, with '=' padding); white space is skipped, as
 * nbdkit's decoder does.
 */
static int
b64_value (int c)
{
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static int
b64_decode (const char *text, char **out, size_t *outlen)
{
  size_t n = 0, i, o = 0;
  char *r, *s;

  if (!(s = malloc (strlen (text) + 1)))
    return -1;
  for (i = 0; text[i]; i++)
    if (!strchr (" \t\r\n\f\v", text[i]))
      s[n++] = text[i];
  s[n] = '\0';
  if (n % 4 != 0 || !(r = malloc (n / 4 * 3 + 1))) {
    free (s);
    return -1;
  }
  for (i = 0; i < n; i += 4) {
    int v[4], k, pad = 0;

    for (k = 0; k < 4; k++) {
      if (s[i + k] == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
        continue;
      }
      if (pad || (v[k] = b64_value ((unsigned char) s[i + k])) == -1) {
        free (r);
        free (s);
        return -1;
      }
    }
    r[o++] = (v[0] << 2) | (v[1] >> 4);
    if (pad < 2)
      r[o++] = ((v[1] & 15) << 4) | (v[2] >> 2);
    if (pad < 1)
      r[o++] = ((v[2] & 3) << 6) | v[3];
  }
  free (s);
  *out = r;
  *outlen = o;
  return 0;
}

/* The client's address as nbdkit's info plugin writes it. */
static int
format_address (char **out, size_t *outlen)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN];
  char *s = NULL;
  int n = -1;

  memset (&ss, 0, sizeof ss);
  if (nbdkit_peer_name ((struct sockaddr *) &ss, &len) == -1)
    return -1;
  switch (ss.ss_family) {
  case AF_INET: {
    struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

    inet_ntop (AF_INET, &sin->sin_addr, host, sizeof host);
    n = asprintf (&s, "%s:%u", host, ntohs (sin->sin_port));
    break;
  }
  case AF_INET6: {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

    inet_ntop (AF_INET6, &sin6->sin6_addr, host, sizeof host);
    n = asprintf (&s, "[%s]:%u", host, ntohs (sin6->sin6_port));
    break;
  }
  case AF_UNIX: {
    struct sockaddr_un *sun = (struct sockaddr_un *) &ss;

    n = len > offsetof (struct sockaddr_un, sun_path) && sun->sun_path[0]
      ? asprintf (&s, "unix:%s", sun->sun_path)
      : asprintf (&s, "unix");
    break;
  }
  case AF_VSOCK: {
    struct sockaddr_vm *vm = (struct sockaddr_vm *) &ss;

    n = asprintf (&s, "vsock:%u:%u", vm->svm_cid, vm->svm_port);
    break;
  }
  default:
    nbdkit_error ("the client's address is of unknown family %d",
                  ss.ss_family);
    return -1;
  }
  if (n == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  *out = s;
  *outlen = n;
  return 0;
}

static void *
info_open (int readonly)
{
  struct handle *h = calloc (1, sizeof *h);
  const char *name = nbdkit_export_name ();

  if (!h) {
    nbdkit_error ("out of memory");
    return NULL;
  }
  clock_gettime (CLOCK_MONOTONIC, &h->opened);
  switch (mode) {
  case MODE_EXPORTNAME:
    if (!(h->data = strdup (name))) {
      nbdkit_error ("out of memory");
      goto err;
    }
    h->size = strlen (name);
    break;
  case MODE_BASE64EXPORTNAME:
    if (b64_decode (name, &h->data, &h->size) == -1) {
      nbdkit_error ("mode=base64exportname: the export name '%.64s%s' is "
                    "not base64 (RFC 4648: A-Z a-z 0-9 + /, '=' padding)",
                    name, strlen (name) > 64 ? "..." : "");
      nbdkit_set_error (EINVAL);
      goto err;
    }
    break;
  case MODE_ADDRESS:
    if (format_address (&h->data, &h->size) == -1)
      goto err;
    break;
  case MODE_TIME: case MODE_UPTIME: case MODE_CONNTIME:
    h->size = TIME_SIZE;
    break;
  }
  return h;

err:
  free (h);
  return NULL;
}

static void
info_close (void *handle)
{
  struct handle *h = handle;

  free (h->data);
  free (h);
}

static int64_t
info_get_size (void *handle)
{
  struct handle *h = handle;

  return h->size;
}

static int
info_can_multi_conn (void *handle)
{
  /* The same export name gives the same disk on every connection. */
  return mode == MODE_EXPORTNAME || mode == MODE_BASE64EXPORTNAME;
}

static int
info_can_cache (void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

/* now - then, or now itself when then is NULL, as 12 bytes. */
static void
encode_time (unsigned char *b, const struct timespec *now,
             const struct timespec *then)
{
  int64_t sec = now->tv_sec, nsec = now->tv_nsec;
  uint64_t s_be;
  uint32_t us_be;

  if (then) {
    sec -= then->tv_sec;
    nsec -= then->tv_nsec;
    if (nsec < 0) {
      nsec += 1000000000;
      sec--;
    }
  }
  s_be = htobe64 ((uint64_t) sec);
  us_be = htobe32 ((uint32_t) (nsec / 1000));
  memcpy (b, &s_be, 8);
  memcpy (b + 8, &us_be, 4);
}

static int
info_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct handle *h = handle;
  unsigned char t[TIME_SIZE];
  struct timespec now;

  switch (mode) {
  case MODE_TIME:
    clock_gettime (CLOCK_REALTIME, &now);
    encode_time (t, &now, NULL);
    break;
  case MODE_UPTIME:
    clock_gettime (CLOCK_MONOTONIC, &now);
    encode_time (t, &now, &server_start);
    break;
  case MODE_CONNTIME:
    clock_gettime (CLOCK_MONOTONIC, &now);
    encode_time (t, &now, &h->opened);
    break;
  default:
    /* The library keeps offset + count within the size. */
    memcpy (buf, h->data + offset, count);
    return 0;
  }
  memcpy (buf, t + offset, count);
  return 0;
}

static struct nbdkit_backend info = {
  .name = "info",
  .longname = "nbdkit info backend",
  .version = PACKAGE_VERSION,
  .description = "Serve information about the client's connection.",
  .config_help =
    "mode=exportname|base64exportname|address|time|uptime|conntime\n"
    "                             What to serve (default: exportname).",
  .magic_config_key = "mode",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = info_config,
  .get_ready = info_get_ready,
  .open = info_open,
  .close = info_close,
  .get_size = info_get_size,
  .can_multi_conn = info_can_multi_conn,
  .can_cache = info_can_cache,
  .pread = info_pread,
};

NBDKIT_REGISTER_BACKEND (info)
