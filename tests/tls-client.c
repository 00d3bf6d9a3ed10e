/* tests/tls-client: many eager NBD-over-TLS clients (gnutls), counting
 * the connections that never get an answer.
 *
 *   tls-client SOCKET (--x509 DIR | --psk USER:HEXKEY) [options]
 *
 * Each connection does the NBD handshake up to NBD_OPT_STARTTLS, then
 * the TLS handshake, and sends NBD_OPT_GO the moment its side of the
 * handshake is done.  Everything the TLS library writes is held back
 * until it must wait for the server, so the last handshake bytes and
 * the option leave in one write(2) where the protocol allows it: TLS
 * 1.3, whose client is done after sending Finished, and TLS 1.2 with
 * --false-start (the client may send before the server's Finished).
 * With --pipeline a READ follows the option in the same write, so the
 * request is already in the server's buffers when negotiation ends.
 * The client then reads the replies, checks them, and disconnects.
 * Two more eager habits, each with a READ whose reply must come:
 * --key-update asks for a TLS 1.3 key update (both directions) in the
 * same write as the request, and --close-with-request sends its last
 * request and close_notify together, closing its side of the session.
 *
 * A connection without a complete answer within --timeout seconds is
 * a stall, one with a wrong answer an error.  Prints one line,
 *   N connections, N answered, N stalled, N errors
 * and exits 0 only when every connection was answered.
 *
 * Options:
 *   --count N        connections (default 1000)
 *   --parallel N     processes making them at once (default 4)
 *   --tls 1.2|1.3|any  the versions to offer (default any)
 *   --false-start    TLS 1.2 False Start (with --tls 1.2)
 *   --pipeline       a READ right behind the option
 *   --key-update     a KeyUpdate and a READ together (with --tls 1.3)
 *   --close-with-request  the last READ and close_notify together
 *   --timeout S      per-connection limit in seconds (default 20)
 *   --max-stalls N   give up after N stalls (default 5): the run has
 *                    failed already, and each stall costs --timeout
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#define IHAVEOPT 0x49484156454F5054ULL
#define REPLY_MAGIC 0x3E889045565A9ULL
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_GO 7
#define NBD_REP_ACK 1
#define NBD_REP_INFO 3
#define NBD_REQUEST_MAGIC 0x25609513
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698
#define NBD_CMD_READ 0
#define NBD_CMD_DISC 2
#define READ_LEN 4096
#define READ_HANDLE 0x1234

enum result { ANSWERED, STALLED, FAILED };

static const char *sockpath;
static const char *x509_dir;
static char *psk_user;
static gnutls_datum_t psk_key;
static const char *tls_version = "any";
static bool false_start, pipeline, key_update, close_with_request;
static int count = 1000, parallel = 4, max_stalls = 5;
static double timeout_secs = 20;

/* The results, shared by the worker processes. */
struct tally {
  int next;
  int answered, stalled, failed;
  int printed;
};
static struct tally *tally;

/* One connection: the socket and the bytes held back. */
struct conn {
  int fd;
  gnutls_session_t session;
  unsigned char *held;
  size_t held_len, held_size;
  bool timed_out;
  char why[256];
};

static void
put32 (unsigned char *p, uint32_t v)
{
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void
put64 (unsigned char *p, uint64_t v)
{
  put32 (p, v >> 32);
  put32 (p + 4, v);
}

static uint32_t
get32 (const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static uint64_t
get64 (const unsigned char *p)
{
  return (uint64_t) get32 (p) << 32 | get32 (p + 4);
}

static int
write_all (struct conn *c, const void *buf, size_t len)
{
  const unsigned char *p = buf;

  while (len > 0) {
    ssize_t r = write (c->fd, p, len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      snprintf (c->why, sizeof c->why, "write: %s", strerror (errno));
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

/* Read exactly len plaintext bytes (before TLS). */
static int
read_all (struct conn *c, void *buf, size_t len)
{
  unsigned char *p = buf;

  while (len > 0) {
    ssize_t r = read (c->fd, p, len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->timed_out = true;
      snprintf (c->why, sizeof c->why, "no answer before STARTTLS");
      return -1;
    }
    if (r <= 0) {
      snprintf (c->why, sizeof c->why, "read: %s",
                r == 0 ? "the server closed the connection" : strerror (errno));
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

static int
send_held (struct conn *c)
{
  int r = 0;

  if (c->held_len)
    r = write_all (c, c->held, c->held_len);
  c->held_len = 0;
  return r;
}

/* gnutls writes: held back until we must wait for the server. */
static ssize_t
push (gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
  struct conn *c = ptr;

  if (c->held_len + len > c->held_size) {
    size_t n = (c->held_len + len) * 2;
    unsigned char *p = realloc (c->held, n);
    if (!p) {
      gnutls_transport_set_errno (c->session, ENOMEM);
      return -1;
    }
    c->held = p;
    c->held_size = n;
  }
  memcpy (c->held + c->held_len, buf, len);
  c->held_len += len;
  return len;
}

static ssize_t
pull (gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
  struct conn *c = ptr;
  ssize_t r;

  if (send_held (c) == -1) {
    gnutls_transport_set_errno (c->session, EIO);
    return -1;
  }
  do
    r = read (c->fd, buf, len);
  while (r == -1 && errno == EINTR);
  if (r == -1) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      c->timed_out = true;      /* SO_RCVTIMEO expired */
    gnutls_transport_set_errno (c->session, EIO);
  }
  return r;
}

static int
tls_read_all (struct conn *c, void *buf, size_t len)
{
  unsigned char *p = buf;

  while (len > 0) {
    ssize_t r = gnutls_record_recv (c->session, p, len);
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN) {
      if (c->timed_out) {
        snprintf (c->why, sizeof c->why, "no answer (%zu bytes missing)",
                  len);
        return -1;
      }
      continue;
    }
    if (r <= 0) {
      snprintf (c->why, sizeof c->why, "TLS read: %s",
                r == 0 ? "end of session"
                : c->timed_out ? "no answer" : gnutls_strerror (r));
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

static int
tls_write (struct conn *c, const void *buf, size_t len)
{
  ssize_t r = gnutls_record_send (c->session, buf, len);

  if (r != (ssize_t) len) {
    snprintf (c->why, sizeof c->why, "TLS write: %s",
              r < 0 ? gnutls_strerror (r) : "short");
    return -1;
  }
  return 0;
}

static int
psk_callback (gnutls_session_t s, char **username, gnutls_datum_t *key)
{
  *username = gnutls_malloc (strlen (psk_user) + 1);
  key->data = gnutls_malloc (psk_key.size);
  if (!*username || !key->data)
    return -1;
  strcpy (*username, psk_user);
  memcpy (key->data, psk_key.data, psk_key.size);
  key->size = psk_key.size;
  return 0;
}

static gnutls_certificate_credentials_t x509_creds;
static gnutls_psk_client_credentials_t psk_creds;

static void
load_credentials (void)
{
  char ca[4096], cert[4096], key[4096];

  if (psk_user) {
    if (gnutls_psk_allocate_client_credentials (&psk_creds) < 0)
      exit (2);
    gnutls_psk_set_client_credentials_function (psk_creds, psk_callback);
    return;
  }
  snprintf (ca, sizeof ca, "%s/ca-cert.pem", x509_dir);
  snprintf (cert, sizeof cert, "%s/client-cert.pem", x509_dir);
  snprintf (key, sizeof key, "%s/client-key.pem", x509_dir);
  if (gnutls_certificate_allocate_credentials (&x509_creds) < 0 ||
      gnutls_certificate_set_x509_trust_file (x509_creds, ca,
                                              GNUTLS_X509_FMT_PEM) < 0) {
    fprintf (stderr, "tls-client: cannot load %s\n", ca);
    exit (2);
  }
  if (access (cert, R_OK) == 0 &&
      gnutls_certificate_set_x509_key_file (x509_creds, cert, key,
                                            GNUTLS_X509_FMT_PEM) < 0) {
    fprintf (stderr, "tls-client: cannot load %s\n", cert);
    exit (2);
  }
}

static const char *cipher;      /* --cipher: the only one offered */

static const char *
priority (void)
{
  static char buf[256];
  const char *vers =
    strcmp (tls_version, "1.2") == 0 ? ":-VERS-ALL:+VERS-TLS1.2"
    : strcmp (tls_version, "1.3") == 0 ? ":-VERS-ALL:+VERS-TLS1.3" : "";

  snprintf (buf, sizeof buf, "NORMAL%s%s%s%s", vers,
            psk_user ? ":+ECDHE-PSK:+DHE-PSK:+PSK" : "",
            cipher ? ":-CIPHER-ALL:+" : "", cipher ? cipher : "");
  return buf;
}

/* The plaintext part: greeting, flags, STARTTLS and its ACK. */
static int
starttls (struct conn *c)
{
  unsigned char buf[20], opt[16];
  uint32_t len;

  if (read_all (c, buf, 18) == -1)
    return -1;
  if (memcmp (buf, "NBDMAGIC", 8) != 0 || get64 (buf + 8) != IHAVEOPT) {
    snprintf (c->why, sizeof c->why, "not a newstyle greeting");
    return -1;
  }
  put32 (buf, 3);               /* FIXED_NEWSTYLE | NO_ZEROES */
  put64 (opt, IHAVEOPT);
  put32 (opt + 8, NBD_OPT_STARTTLS);
  put32 (opt + 12, 0);
  if (write_all (c, buf, 4) == -1 || write_all (c, opt, 16) == -1 ||
      read_all (c, buf, 20) == -1)
    return -1;
  len = get32 (buf + 16);
  if (get64 (buf) != REPLY_MAGIC || get32 (buf + 8) != NBD_OPT_STARTTLS ||
      get32 (buf + 12) != NBD_REP_ACK || len != 0) {
    snprintf (c->why, sizeof c->why, "STARTTLS refused (reply %#x)",
              get32 (buf + 12));
    return -1;
  }
  return 0;
}

static size_t
put_read_request (unsigned char *msg)
{
  put32 (msg, NBD_REQUEST_MAGIC);
  msg[4] = msg[5] = 0;
  msg[6] = 0; msg[7] = NBD_CMD_READ;
  put64 (msg + 8, READ_HANDLE);
  put64 (msg + 16, 0);
  put32 (msg + 24, READ_LEN);
  return 28;
}

static int
read_read_reply (struct conn *c)
{
  unsigned char hdr[16], data[READ_LEN];

  if (tls_read_all (c, hdr, 16) == -1)
    return -1;
  if (get32 (hdr) != NBD_SIMPLE_REPLY_MAGIC || get32 (hdr + 4) != 0 ||
      get64 (hdr + 8) != READ_HANDLE) {
    snprintf (c->why, sizeof c->why, "bad reply to the READ");
    return -1;
  }
  return tls_read_all (c, data, READ_LEN);
}

/* The replies to NBD_OPT_GO, and to the pipelined READ. */
static int
read_replies (struct conn *c)
{
  unsigned char hdr[20], data[1024];
  bool have_size = false;

  for (;;) {
    uint32_t rep, len;

    if (tls_read_all (c, hdr, 20) == -1)
      return -1;
    rep = get32 (hdr + 12);
    len = get32 (hdr + 16);
    if (get64 (hdr) != REPLY_MAGIC || get32 (hdr + 8) != NBD_OPT_GO ||
        len > sizeof data) {
      snprintf (c->why, sizeof c->why, "bad option reply");
      return -1;
    }
    if (tls_read_all (c, data, len) == -1)
      return -1;
    if (rep == NBD_REP_ACK)
      break;
    if (rep & 0x80000000) {
      snprintf (c->why, sizeof c->why, "NBD_OPT_GO failed (%#x)", rep);
      return -1;
    }
    if (rep == NBD_REP_INFO && len >= 12 && data[0] == 0 && data[1] == 0)
      have_size = true;
  }
  if (!have_size) {
    snprintf (c->why, sizeof c->why, "no NBD_INFO_EXPORT before the ACK");
    return -1;
  }
  if (pipeline)
    return read_read_reply (c);
  return 0;
}

static enum result
one_connection (void)
{
  struct conn c = { .fd = -1 };
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct timeval tv = {
    .tv_sec = (time_t) timeout_secs,
    .tv_usec = (timeout_secs - (time_t) timeout_secs) * 1e6,
  };
  unsigned char msg[22 + 28];
  size_t msglen = 22;
  enum result res = FAILED;
  unsigned flags = GNUTLS_CLIENT;
  int r;

  c.fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  snprintf (addr.sun_path, sizeof addr.sun_path, "%s", sockpath);
  if (c.fd == -1 ||
      setsockopt (c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1 ||
      connect (c.fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    snprintf (c.why, sizeof c.why, "connect: %s", strerror (errno));
    goto out;
  }
  if (starttls (&c) == -1)
    goto out;

  if (false_start)
    flags |= GNUTLS_ENABLE_FALSE_START;
  if (gnutls_init (&c.session, flags) < 0 ||
      gnutls_priority_set_direct (c.session, priority (), NULL) < 0 ||
      (psk_creds
       ? gnutls_credentials_set (c.session, GNUTLS_CRD_PSK, psk_creds)
       : gnutls_credentials_set (c.session, GNUTLS_CRD_CERTIFICATE,
                                 x509_creds)) < 0) {
    snprintf (c.why, sizeof c.why, "TLS session set-up failed");
    goto out;
  }
  if (!psk_creds) {
    gnutls_server_name_set (c.session, GNUTLS_NAME_DNS, "localhost", 9);
    gnutls_session_set_verify_cert (c.session, "localhost", 0);
  }
  gnutls_transport_set_ptr (c.session, &c);
  gnutls_transport_set_push_function (c.session, push);
  gnutls_transport_set_pull_function (c.session, pull);
  do
    r = gnutls_handshake (c.session);
  while (r < 0 && !gnutls_error_is_fatal (r) && !c.timed_out);
  if (r < 0) {
    snprintf (c.why, sizeof c.why, "TLS handshake: %s",
              c.timed_out ? "no answer" : gnutls_strerror (r));
    goto out;
  }

  /* NBD_OPT_GO for the default export, no information requests. */
  put64 (msg, IHAVEOPT);
  put32 (msg + 8, NBD_OPT_GO);
  put32 (msg + 12, 6);
  put32 (msg + 16, 0);
  msg[20] = msg[21] = 0;
  if (pipeline)
    msglen += put_read_request (msg + 22);
  /* The option (and request) join the held handshake bytes. */
  if (tls_write (&c, msg, msglen) == -1 || send_held (&c) == -1)
    goto out;
  if (read_replies (&c) == -1)
    goto out;

  if (key_update) {
    r = gnutls_session_key_update (c.session, GNUTLS_KU_PEER);
    if (r < 0) {
      snprintf (c.why, sizeof c.why, "key update: %s", gnutls_strerror (r));
      goto out;
    }
    if (tls_write (&c, msg, put_read_request (msg)) == -1 ||
        send_held (&c) == -1 || read_read_reply (&c) == -1)
      goto out;
  }
  if (close_with_request) {
    /* The server sees the request and the end of the session at once:
     * it must still answer.
     */
    if (tls_write (&c, msg, put_read_request (msg)) == -1)
      goto out;
    gnutls_bye (c.session, GNUTLS_SHUT_WR);
    if (send_held (&c) == -1 || read_read_reply (&c) == -1)
      goto out;
  }
  else {
    memset (msg, 0, 28);
    put32 (msg, NBD_REQUEST_MAGIC);
    msg[7] = NBD_CMD_DISC;
    if (tls_write (&c, msg, 28) == -1)
      goto out;
    gnutls_bye (c.session, GNUTLS_SHUT_WR);
    send_held (&c);
  }
  res = ANSWERED;

 out:
  if (res != ANSWERED && c.timed_out)
    res = STALLED;
  if (res != ANSWERED &&
      __atomic_fetch_add (&tally->printed, 1, __ATOMIC_SEQ_CST) < 5)
    fprintf (stderr, "tls-client: %s: %s\n",
             res == STALLED ? "stalled" : "error", c.why);
  if (c.session)
    gnutls_deinit (c.session);
  if (c.fd >= 0)
    close (c.fd);
  free (c.held);
  return res;
}

static void
worker (void)
{
  while (__atomic_load_n (&tally->stalled, __ATOMIC_SEQ_CST) < max_stalls &&
         __atomic_fetch_add (&tally->next, 1, __ATOMIC_SEQ_CST) < count) {
    switch (one_connection ()) {
    case ANSWERED:
      __atomic_fetch_add (&tally->answered, 1, __ATOMIC_SEQ_CST);
      break;
    case STALLED:
      __atomic_fetch_add (&tally->stalled, 1, __ATOMIC_SEQ_CST);
      break;
    default:
      __atomic_fetch_add (&tally->failed, 1, __ATOMIC_SEQ_CST);
    }
  }
}

static void
usage (void)
{
  fprintf (stderr,
           "usage: tls-client SOCKET (--x509 DIR | --psk USER:HEXKEY)\n"
           "       [--count N] [--parallel N] [--tls 1.2|1.3|any]\n"
           "       [--false-start] [--pipeline] [--key-update]\n"
           "       [--close-with-request] [--timeout S] [--max-stalls N]\n"
           "       [--cipher GNUTLS-CIPHER-NAME]\n");
  exit (2);
}

static void
parse_psk (const char *arg)
{
  const char *colon = strchr (arg, ':');
  gnutls_datum_t hex;

  if (!colon || colon == arg)
    usage ();
  psk_user = strndup (arg, colon - arg);
  hex.data = (unsigned char *) colon + 1;
  hex.size = strlen (colon + 1);
  if (!psk_user || gnutls_hex_decode2 (&hex, &psk_key) < 0) {
    fprintf (stderr, "tls-client: --psk: the key is not hexadecimal\n");
    exit (2);
  }
}

int
main (int argc, char *argv[])
{
  int i, w;

  if (argc < 2)
    usage ();
  sockpath = argv[1];
  for (i = 2; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;

    if (strcmp (a, "--false-start") == 0)
      false_start = true;
    else if (strcmp (a, "--pipeline") == 0)
      pipeline = true;
    else if (strcmp (a, "--key-update") == 0)
      key_update = true;
    else if (strcmp (a, "--close-with-request") == 0)
      close_with_request = true;
    else if (!v)
      usage ();
    else {
      i++;
      if (strcmp (a, "--x509") == 0)
        x509_dir = v;
      else if (strcmp (a, "--psk") == 0)
        parse_psk (v);
      else if (strcmp (a, "--tls") == 0)
        tls_version = v;
      else if (strcmp (a, "--cipher") == 0)
        cipher = v;
      else if (strcmp (a, "--count") == 0)
        count = atoi (v);
      else if (strcmp (a, "--parallel") == 0)
        parallel = atoi (v);
      else if (strcmp (a, "--timeout") == 0)
        timeout_secs = atof (v);
      else if (strcmp (a, "--max-stalls") == 0)
        max_stalls = atoi (v);
      else
        usage ();
    }
  }
  if (!x509_dir == !psk_user || count < 0 || parallel < 1 ||
      timeout_secs <= 0)
    usage ();

  tally = mmap (NULL, sizeof *tally, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (tally == MAP_FAILED) {
    perror ("mmap");
    exit (2);
  }
  if (gnutls_global_init () < 0)
    exit (2);
  load_credentials ();

  for (w = 0; w < parallel; ++w) {
    pid_t pid = fork ();
    if (pid == -1) {
      perror ("fork");
      exit (2);
    }
    if (pid == 0) {
      worker ();
      _exit (0);
    }
  }
  while (wait (NULL) > 0 || errno == EINTR)
    ;
  printf ("%d connections, %d answered, %d stalled, %d errors\n",
          count, tally->answered, tally->stalled, tally->failed);
  return tally->answered == count ? 0 : 1;
}
