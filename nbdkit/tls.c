/* nbdkit front end: TLS with gnutls.
 *
 * Owns the credentials (X.509 certificates from --tls-certificates or
 * the default directories, or a PSK file from --tls-psk), the priority
 * string, and struct tls: one gnutls session on a client's
 * non-blocking socket.  Nothing here blocks: the handshake and record
 * calls return "again" with the direction to wait for, and conn.c waits
 * for it in the event loop.  The backend never sees any of it.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "internal.h"

/* The base priority when --tls-priority is not given.  PSK key
 * exchanges are added when a PSK file is used.
 */
#define DEFAULT_PRIORITY "NORMAL"
#define PSK_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"
/* A TLS 1.3 external PSK is bound to SHA-256, which leaves
 * CHACHA20-POLY1305 and AES-128-GCM, in that order in NORMAL, and
 * gnutls follows the client's order: so every PSK session used
 * ChaCha20 -- a tenth of AES-GCM's speed on a CPU with AES
 * instructions (gnutls-cli --benchmark-ciphers: 0.37 against 3.3
 * GB/s here).  On such a CPU, by default, the server puts ChaCha20
 * last and its own order first.
 */
#define PSK_AES_FIRST ":-CHACHA20-POLY1305:+CHACHA20-POLY1305:%SERVER_PRECEDENCE"

static bool
cpu_has_aes (void)
{
#if defined (__x86_64__) || defined (__i386__)
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("aes") && __builtin_cpu_supports ("pclmul");
#else
  return false;
#endif
}

static gnutls_certificate_credentials_t x509_creds;
static gnutls_psk_server_credentials_t psk_creds;
static gnutls_priority_t priority;
static char *cert_dir;          /* where the certificates were found */

struct tls {
  gnutls_session_t session;
  int rfd, wfd;
  /* Bytes the client sent after STARTTLS that were already read into
   * the plaintext buffer: the start of the TLS stream.
   */
  unsigned char *early;
  size_t early_len, early_pos;
};

static bool
is_dir (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

static bool
is_file (const char *dir, const char *name)
{
  char path[4096];
  struct stat st;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return stat (path, &st) == 0 && S_ISREG (st.st_mode);
}

/* The directory to load certificates from: --tls-certificates, or
 * the first of the default places that has a server certificate.
 * NULL if none; *tried lists where we looked.
 */
static char *
find_cert_dir (char *tried, size_t tried_len)
{
  const char *home = getenv ("HOME");
  const char *xdg = getenv ("XDG_CONFIG_HOME");
  char cands[3][4096];
  int n = 0, i;

  if (opt.tls_certificates)
    return strdup (opt.tls_certificates);
  if (geteuid () == 0)
    snprintf (cands[n++], sizeof cands[0], "%s/pki/%s", SYSCONFDIR,
              PROGRAM_NAME);
  else {
    if (xdg && *xdg)
      snprintf (cands[n++], sizeof cands[0], "%s/pki/%s", xdg, PROGRAM_NAME);
    if (home && *home) {
      snprintf (cands[n++], sizeof cands[0], "%s/.pki/%s", home,
                PROGRAM_NAME);
      snprintf (cands[n++], sizeof cands[0], "%s/.config/pki/%s", home,
                PROGRAM_NAME);
    }
  }
  tried[0] = '\0';
  for (i = 0; i < n; ++i) {
    if (is_file (cands[i], "server-cert.pem"))
      return strdup (cands[i]);
    snprintf (tried + strlen (tried), tried_len - strlen (tried), "%s%s",
              i ? ", " : "", cands[i]);
  }
  return NULL;
}

static void
load_x509 (void)
{
  char tried[3 * 4096 + 8], cert[4096], key[4096], ca[4096], crl[4096];
  int r;

  cert_dir = find_cert_dir (tried, sizeof tried);
  if (!cert_dir)
    die ("--tls: no certificates found (looked in %s); give "
         "--tls-certificates=DIR with ca-cert.pem, server-cert.pem and "
         "server-key.pem, or --tls-psk=FILE (see nbdkit-tls(1))",
         *tried ? tried : "no default place: HOME is not set");
  if (!is_dir (cert_dir))
    die ("--tls-certificates=%s: not a directory", cert_dir);
  snprintf (cert, sizeof cert, "%s/server-cert.pem", cert_dir);
  snprintf (key, sizeof key, "%s/server-key.pem", cert_dir);
  snprintf (ca, sizeof ca, "%s/ca-cert.pem", cert_dir);
  snprintf (crl, sizeof crl, "%s/ca-crl.pem", cert_dir);

  if (gnutls_certificate_allocate_credentials (&x509_creds) < 0)
    die ("out of memory for the TLS credentials");
  if (is_file (cert_dir, "ca-cert.pem")) {
    r = gnutls_certificate_set_x509_trust_file (x509_creds, ca,
                                                GNUTLS_X509_FMT_PEM);
    if (r < 0)
      die ("%s: %s", ca, gnutls_strerror (r));
  }
  else if (opt.tls_verify_peer)
    die ("--tls-verify-peer: %s is missing: it is needed to verify the "
         "clients' certificates", ca);
  if (is_file (cert_dir, "ca-crl.pem")) {
    r = gnutls_certificate_set_x509_crl_file (x509_creds, crl,
                                              GNUTLS_X509_FMT_PEM);
    if (r < 0)
      die ("%s: %s", crl, gnutls_strerror (r));
  }
  r = gnutls_certificate_set_x509_key_file (x509_creds, cert, key,
                                            GNUTLS_X509_FMT_PEM);
  if (r < 0)
    die ("%s and %s: %s", cert, key, gnutls_strerror (r));
  gnutls_certificate_set_known_dh_params (x509_creds,
                                          GNUTLS_SEC_PARAM_MEDIUM);
  nbdkit_debug ("TLS: X.509 certificates from %s", cert_dir);
}

static void
load_psk (void)
{
  FILE *fp;
  char line[1024];
  unsigned lineno = 0;

  /* Check the file's format here, with a clear error, rather than
   * let every handshake fail.
   */
  fp = fopen (opt.tls_psk, "r");      /* never-blocks: before the loop */
  if (!fp)
    die ("--tls-psk=%s: %m", opt.tls_psk);
  while (fgets (line, sizeof line, fp)) {   /* never-blocks: idem */
    char *colon = strchr (line, ':');
    size_t i, klen;

    lineno++;
    line[strcspn (line, "\r\n")] = '\0';
    if (!*line)
      continue;
    klen = colon ? strlen (colon + 1) : 0;
    for (i = 0; colon && i < klen; ++i)
      if (!strchr ("0123456789abcdefABCDEF", colon[1 + i]))
        break;
    if (!colon || colon == line || klen == 0 || i < klen || klen % 2) {
      fclose (fp);
      die ("--tls-psk=%s: line %u is not USERNAME:HEXKEY (make the file "
           "with psktool)", opt.tls_psk, lineno);
    }
  }
  fclose (fp);
  if (gnutls_psk_allocate_server_credentials (&psk_creds) < 0)
    die ("out of memory for the TLS credentials");
  if (gnutls_psk_set_server_credentials_file (psk_creds, opt.tls_psk) < 0)
    die ("--tls-psk=%s: could not be loaded", opt.tls_psk);
  nbdkit_debug ("TLS: pre-shared keys from %s", opt.tls_psk);
}

void
tls_init (void)
{
  const char *base = opt.tls_priority ? opt.tls_priority : DEFAULT_PRIORITY;
  char *prio;
  const char *err = NULL;
  int r;

  if (opt.tls == TLS_OFF)
    return;
  r = gnutls_global_init ();
  if (r < 0)
    die ("gnutls_global_init: %s", gnutls_strerror (r));
  if (opt.tls_psk)
    load_psk ();
  else
    load_x509 ();

  if (asprintf (&prio, "%s%s%s", base, opt.tls_psk ? PSK_PRIORITY : "",
                !opt.tls_priority && opt.tls_psk && cpu_has_aes ()
                ? PSK_AES_FIRST : "") == -1)
    die ("out of memory");
  nbdkit_debug ("TLS priority: %s", prio);
  r = gnutls_priority_init (&priority, prio, &err);
  if (r < 0)
    die ("--tls-priority=%s: %s (at '%s')", base, gnutls_strerror (r),
         err ? err : "");
  free (prio);
}

void
tls_cleanup (void)
{
  if (opt.tls == TLS_OFF)
    return;
  if (priority)
    gnutls_priority_deinit (priority);
  if (x509_creds)
    gnutls_certificate_free_credentials (x509_creds);
  if (psk_creds)
    gnutls_psk_free_server_credentials (psk_creds);
  free (cert_dir);
  gnutls_global_deinit ();
}

const char *
tls_certificates_dir (void)
{
  return cert_dir;
}

/* ---- the transport: the client's non-blocking socket ---- */

static ssize_t
pull (gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
  struct tls *t = ptr;
  ssize_t r;

  if (t->early_pos < t->early_len) {
    size_t n = t->early_len - t->early_pos;

    if (n > len)
      n = len;
    memcpy (buf, t->early + t->early_pos, n);
    t->early_pos += n;
    return n;
  }
  do
    r = read (t->rfd, buf, len);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    gnutls_transport_set_errno (t->session, errno);
  return r;
}

static ssize_t
push (gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
  struct tls *t = ptr;
  ssize_t r;

  do
    r = write (t->wfd, buf, len);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    gnutls_transport_set_errno (t->session, errno);
  return r;
}

struct tls *
tls_new (int rfd, int wfd, const void *early, size_t early_len)
{
  struct tls *t = calloc (1, sizeof *t);
  int r;

  if (!t)
    return NULL;
  if (early_len && !(t->early = malloc (early_len))) {
    free (t);
    return NULL;
  }
  if (early_len)
    memcpy (t->early, early, early_len);
  t->early_len = early_len;
  t->rfd = rfd;
  t->wfd = wfd;
  r = gnutls_init (&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK);
  if (r < 0) {
    nbdkit_error ("gnutls_init: %s", gnutls_strerror (r));
    free (t->early);
    free (t);
    return NULL;
  }
  r = gnutls_priority_set (t->session, priority);
  if (r == 0) {
    if (psk_creds)
      r = gnutls_credentials_set (t->session, GNUTLS_CRD_PSK, psk_creds);
    else {
      r = gnutls_credentials_set (t->session, GNUTLS_CRD_CERTIFICATE,
                                  x509_creds);
      if (r == 0 && opt.tls_verify_peer) {
        gnutls_certificate_server_set_request (t->session,
                                               GNUTLS_CERT_REQUIRE);
        /* The handshake fails unless the client's certificate chains
         * to our CA (and is not revoked).
         */
        gnutls_session_set_verify_cert (t->session, NULL, 0);
      }
    }
  }
  if (r < 0) {
    nbdkit_error ("TLS session set-up: %s", gnutls_strerror (r));
    tls_free (t);
    return NULL;
  }
  gnutls_transport_set_ptr (t->session, t);
  gnutls_transport_set_pull_function (t->session, pull);
  gnutls_transport_set_push_function (t->session, push);
  return t;
}

void
tls_free (struct tls *t)
{
  if (!t)
    return;
  gnutls_deinit (t->session);
  free (t->early);
  free (t);
}

/* Log what was agreed, with -D nbdkit.tls.session=1 (or -v). */
static void
log_session (struct tls *t, const char *peer)
{
  gnutls_session_t s = t->session;
  char *desc = gnutls_session_get_desc (s);
  const char *who = NULL;
  char dn[1024] = "";

  if (psk_creds)
    who = gnutls_psk_server_get_username (s);
  else {
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers (s, &n);
    gnutls_x509_crt_t crt;
    size_t len = sizeof dn;

    if (certs && n > 0 && gnutls_x509_crt_init (&crt) == 0) {
      if (gnutls_x509_crt_import (crt, &certs[0], GNUTLS_X509_FMT_DER) == 0)
        gnutls_x509_crt_get_dn (crt, dn, &len);
      gnutls_x509_crt_deinit (crt);
      who = dn;
    }
  }
  if (opt.verbose || server_debug_flag ("tls.session", 0))
    log_debug_always ("%s: TLS session: %s, %s %s",
                      peer, desc ? desc : "?",
                      psk_creds ? "PSK user" : "client certificate",
                      who && *who ? who : "(none)");
  gnutls_free (desc);
}

int
tls_handshake (struct tls *t, const char *peer)
{
  int r = gnutls_handshake (t->session);

  if (r == GNUTLS_E_SUCCESS) {
    log_session (t, peer);
    return TLS_DONE;
  }
  if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED ||
      !gnutls_error_is_fatal (r))
    return gnutls_record_get_direction (t->session) ? TLS_WANT_WRITE
                                                    : TLS_WANT_READ;
  nbdkit_error ("%s: TLS handshake failed: %s", peer, gnutls_strerror (r));
  return TLS_ERROR;
}

/* Read decrypted bytes.  Whatever gnutls holds back is found by the
 * caller: a record read only in part stays in gnutls's buffer
 * (tls_pending), and a record of any other kind is dealt with here and
 * the read goes on, so "would block" always means the socket is empty.
 */
ssize_t
tls_recv (struct tls *t, void *buf, size_t len)
{
  ssize_t r;

  for (;;) {
    r = gnutls_record_recv (t->session, buf, len);
    if (r >= 0)
      return r;
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r == GNUTLS_E_AGAIN) {
      /* A post-handshake message (a TLS 1.3 KeyUpdate, a ticket) may
       * end a call with data still to come from gnutls's buffers.
       */
      if (gnutls_record_check_pending (t->session) > 0)
        continue;
      errno = EAGAIN;
      return -1;
    }
    if (r == GNUTLS_E_PREMATURE_TERMINATION)
      return 0;                 /* the client hung up without a bye */
    if (!gnutls_error_is_fatal (r))
      continue;                 /* for example a warning alert */
    nbdkit_debug ("TLS receive: %s", gnutls_strerror ((int) r));
    errno = EIO;
    return -1;
  }
}

ssize_t
tls_send (void *opaque, const void *buf, size_t len)
{
  struct tls *t = opaque;
  ssize_t r;

  do
    r = gnutls_record_send (t->session, buf, len);
  while (r == GNUTLS_E_INTERRUPTED);
  if (r >= 0)
    return r;
  if (r == GNUTLS_E_AGAIN) {
    errno = EAGAIN;
    return -1;
  }
  nbdkit_debug ("TLS send: %s", gnutls_strerror ((int) r));
  errno = EIO;
  return -1;
}

size_t
tls_pending (struct tls *t)
{
  return gnutls_record_check_pending (t->session);
}

void
tls_bye (struct tls *t)
{
  /* Best effort, never waiting: the socket closes right after. */
  gnutls_bye (t->session, GNUTLS_SHUT_WR);
}
