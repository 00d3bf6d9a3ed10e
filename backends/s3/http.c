/* backends/s3/http.c: the S3 requests of the s3 backend.  This file
 * owns the pool of libcurl easy handles (shared DNS cache and
 * connections), the URL and headers of a request, its signature, its
 * retries, and the reading of S3's XML error bodies into messages.
 *
 * Requests are signed by libcurl itself (CURLOPT_AWS_SIGV4).  libcurl
 * 7.88 does not send x-amz-content-sha256, which radosgw (and AWS, for
 * most requests) needs: it is sent here, the SHA-256 of the payload
 * (that of nothing for GET, HEAD and DELETE).  A PUT's body is given as
 * POSTFIELDS, which is what libcurl hashes for its signature, so both
 * agree.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>

#include "nbdkit-backend.h"
#include "s3defs.h"

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static CURL **pool;                     /* idle handles */
static size_t pool_n, pool_cap;
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static void
share_lock (CURL *c, curl_lock_data data, curl_lock_access access, void *p)
{
  pthread_mutex_lock (&share_locks[data]);
}

static void
share_unlock (CURL *c, curl_lock_data data, void *p)
{
  pthread_mutex_unlock (&share_locks[data]);
}

int
http_init (void)
{
  size_t i;

  if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    nbdkit_error ("curl_global_init failed");
    return -1;
  }
  for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init (&share_locks[i], NULL);
  share = curl_share_init ();
  if (share == NULL) {
    nbdkit_error ("curl_share_init failed");
    return -1;
  }
  curl_share_setopt (share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt (share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt (share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt (share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  return 0;
}

void
http_free (void)
{
  size_t i;

  for (i = 0; i < pool_n; i++)
    curl_easy_cleanup (pool[i]);
  free (pool);
  pool = NULL;
  pool_n = pool_cap = 0;
  if (share)
    curl_share_cleanup (share);
  share = NULL;
}

static CURL *
pool_get (void)
{
  CURL *c = NULL;

  pthread_mutex_lock (&pool_lock);
  if (pool_n > 0)
    c = pool[--pool_n];
  pthread_mutex_unlock (&pool_lock);
  if (c == NULL && (c = curl_easy_init ()) == NULL)
    nbdkit_error ("curl_easy_init failed");
  return c;
}

static void
pool_put (CURL *c)
{
  pthread_mutex_lock (&pool_lock);
  if (pool_n == pool_cap) {
    size_t n = pool_cap ? pool_cap * 2 : 16;
    CURL **p = realloc (pool, n * sizeof *p);
    if (p == NULL) {
      pthread_mutex_unlock (&pool_lock);
      curl_easy_cleanup (c);
      return;
    }
    pool = p;
    pool_cap = n;
  }
  pool[pool_n++] = c;
  pthread_mutex_unlock (&pool_lock);
}

char *
s3_encode (const char *s, bool keep_slash)
{
  static const char hex[] = "0123456789ABCDEF";
  char *r = malloc (strlen (s) * 3 + 1), *p = r;

  if (r == NULL) {
    nbdkit_error ("malloc: %m");
    return NULL;
  }
  for (; *s; s++) {
    unsigned char ch = *s;
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
        (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
        ch == '~' || (keep_slash && ch == '/'))
      *p++ = ch;
    else {
      *p++ = '%';
      *p++ = hex[ch >> 4];
      *p++ = hex[ch & 15];
    }
  }
  *p = '\0';
  return r;
}

/* What a response's body goes to. */
struct sink {
  CURL *c;
  struct s3_request *q;
  char err[4096];               /* an error body, cut */
  size_t err_len;
  bool overflow;                /* a GET sent more than was asked */
};

static size_t
write_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct sink *s = opaque;
  size_t n = size * nmemb;
  long status = 0;

  curl_easy_getinfo (s->c, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    struct s3_request *q = s->q;
    if (q->out) {
      if (q->out_got + n > q->out_len) {
        s->overflow = true;
        return 0;
      }
      memcpy ((char *) q->out + q->out_got, p, n);
      q->out_got += n;
    }
    else {
      char *a;
      if (q->out_got + n > 64 << 20) {  /* a listing is never that big */
        s->overflow = true;
        return 0;
      }
      a = realloc (q->out_alloc, q->out_got + n + 1);
      if (a == NULL)
        return 0;
      q->out_alloc = a;
      memcpy (a + q->out_got, p, n);
      q->out_got += n;
      a[q->out_got] = '\0';
    }
    return n;
  }
  if (s->err_len < sizeof s->err - 1) {
    size_t k = n < sizeof s->err - 1 - s->err_len ?
      n : sizeof s->err - 1 - s->err_len;
    memcpy (s->err + s->err_len, p, k);
    s->err_len += k;
    s->err[s->err_len] = '\0';
  }
  return n;
}

/* The text of <tag>...</tag> in xml, into buf. */
static void
xml_field (const char *xml, const char *tag, char *buf, size_t len)
{
  char open[64], close[64];
  const char *a, *b;

  buf[0] = '\0';
  snprintf (open, sizeof open, "<%s>", tag);
  snprintf (close, sizeof close, "</%s>", tag);
  a = strstr (xml, open);
  if (a == NULL)
    return;
  a += strlen (open);
  b = strstr (a, close);
  if (b == NULL)
    return;
  if ((size_t) (b - a) >= len)
    b = a + len - 1;
  memcpy (buf, a, b - a);
  buf[b - a] = '\0';
}

static void
sha256_hex (const void *data, size_t len, char out[65])
{
  unsigned char d[32];
  int i;

  gnutls_hash_fast (GNUTLS_DIG_SHA256, data, len, d);
  for (i = 0; i < 32; i++)
    sprintf (out + 2 * i, "%02x", d[i]);
}

/* Set up c for q.  Returns the header list (to free), or NULL after
 * nbdkit_error.
 */
static struct curl_slist *
setup (CURL *c, struct s3_request *q, struct sink *s, char **urlp)
{
  struct curl_slist *h = NULL, *t;
  char hdr[512], sigv4[256], *enc = NULL, *url;
  char sum[65];
  static const char empty_sha[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

  if (q->object && (enc = s3_encode (q->object, true)) == NULL)
    return NULL;
  if (asprintf (&url, "%s/%s%s%s%s%s", endpoint, bucket,
                enc ? "/" : "", enc ? enc : "",
                q->query ? "?" : "", q->query ? q->query : "") == -1) {
    nbdkit_error ("asprintf: %m");
    free (enc);
    return NULL;
  }
  free (enc);
  *urlp = url;

  curl_easy_reset (c);
  curl_easy_setopt (c, CURLOPT_SHARE, share);
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_SSL_VERIFYPEER, sslverify ? 1L : 0L);
  curl_easy_setopt (c, CURLOPT_SSL_VERIFYHOST, sslverify ? 2L : 0L);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, s);
  snprintf (sigv4, sizeof sigv4, "aws:amz:%s:s3", region);
  curl_easy_setopt (c, CURLOPT_AWS_SIGV4, sigv4);
  curl_easy_setopt (c, CURLOPT_USERNAME, access_key);
  curl_easy_setopt (c, CURLOPT_PASSWORD, secret_key);
  if (nbdkit_debug_flag ("verbose", 0))
    curl_easy_setopt (c, CURLOPT_VERBOSE, 1L);

  if (strcmp (q->method, "PUT") == 0) {
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt (c, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    curl_easy_setopt (c, CURLOPT_POSTFIELDSIZE_LARGE,
                      (curl_off_t) q->body_len);
    sha256_hex (q->body ? q->body : "", q->body_len, sum);
  }
  else {
    if (strcmp (q->method, "HEAD") == 0)
      curl_easy_setopt (c, CURLOPT_NOBODY, 1L);
    else if (strcmp (q->method, "DELETE") == 0)
      curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, "DELETE");
    else
      curl_easy_setopt (c, CURLOPT_HTTPGET, 1L);
    strcpy (sum, empty_sha);
  }
  snprintf (hdr, sizeof hdr, "x-amz-content-sha256: %s", sum);
  h = curl_slist_append (h, hdr);
  /* (No "Expect:" to turn 100-continue off: libcurl 7.88 would sign
   * that empty header without sending it.)
   */
  if (h && strcmp (q->method, "PUT") == 0)
    h = curl_slist_append (h, "Content-Type: application/octet-stream");
  if (h && q->range) {
    snprintf (hdr, sizeof hdr, "Range: bytes=%s", q->range);
    h = curl_slist_append (h, hdr);
  }
  if (h && session_token) {
    char *st;
    if (asprintf (&st, "x-amz-security-token: %s", session_token) == -1)
      st = NULL;
    t = st ? curl_slist_append (h, st) : NULL;
    free (st);
    if (t == NULL)
      curl_slist_free_all (h);
    h = t;
  }
  if (h == NULL) {
    nbdkit_error ("curl_slist_append: out of memory");
    free (url);
    return NULL;
  }
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
  return h;
}

/* Worth another try: the server is busy, throttles, or was not
 * reached.
 */
static bool
transient (CURLcode rc, const struct s3_response *r)
{
  if (rc != CURLE_OK)
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
      rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
      rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE ||
      rc == CURLE_COULDNT_RESOLVE_HOST;
  return r->status >= 500 || r->status == 429 ||
    strcmp (r->code, "SlowDown") == 0 ||
    strcmp (r->code, "RequestTimeout") == 0 ||
    strcmp (r->code, "Throttling") == 0 ||
    strcmp (r->code, "ThrottlingException") == 0 ||
    strcmp (r->code, "RequestTimeTooSkewed") == 0;
}

int
s3_perform (struct s3_request *q, struct s3_response *r)
{
  CURL *c;
  unsigned attempt;
  long delay_ms = 100;

  c = pool_get ();
  if (c == NULL)
    return -1;
  for (attempt = 0;; attempt++) {
    struct sink s = { .c = c, .q = q };
    struct curl_slist *h;
    char *url = NULL;
    CURLcode rc;
    curl_off_t cl = -1;

    memset (r, 0, sizeof *r);
    r->content_length = -1;
    q->out_got = 0;
    free (q->out_alloc);
    q->out_alloc = NULL;
    h = setup (c, q, &s, &url);
    if (h == NULL) {
      pool_put (c);
      return -1;
    }
    rc = curl_easy_perform (c);
    curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo (c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
        CURLE_OK)
      r->content_length = cl;
    curl_slist_free_all (h);
    if (s.err_len) {
      xml_field (s.err, "Code", r->code, sizeof r->code);
      xml_field (s.err, "Message", r->message, sizeof r->message);
    }
    if (rc == CURLE_WRITE_ERROR && s.overflow) {
      nbdkit_error ("%s %s: the server sent more than was asked",
                    q->method, url);
      free (url);
      pool_put (c);
      errno = EIO;
      return -1;
    }
    if (!transient (rc, r) || attempt >= max_retries) {
      if (rc != CURLE_OK && r->status == 0) {
        nbdkit_error ("%s %s: %s%s", q->method, url,
                      curl_easy_strerror (rc),
                      attempt ? " (after retries)" : "");
        free (url);
        pool_put (c);
        errno = EIO;
        return -1;
      }
      free (url);
      pool_put (c);
      return 0;
    }
    nbdkit_debug ("%s %s: %s (HTTP %ld %s): trying again in %ld ms",
                  q->method, url, curl_easy_strerror (rc), r->status,
                  r->code, delay_ms);
    free (url);
    {
      struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000 };
      nanosleep (&ts, NULL);
    }
    if (delay_ms < 5000)
      delay_ms *= 2;
  }
}

int
s3_fail (const char *what, const char *object, const struct s3_response *r)
{
  const char *hint = "";
  int err = EIO;

  if (r->status == 403) {
    err = EACCES;
    if (strcmp (r->code, "InvalidAccessKeyId") == 0)
      hint = ": the server does not know this access key (check access-key=, "
        "AWS_ACCESS_KEY_ID or the credentials file)";
    else if (strcmp (r->code, "SignatureDoesNotMatch") == 0)
      hint = ": the secret key does not match the access key (check "
        "secret-key=, AWS_SECRET_ACCESS_KEY or the credentials file; or "
        "region=)";
    else
      hint = ": access denied (the credentials are not allowed this)";
  }
  else if (r->status == 404) {
    err = ENOENT;
    if (strcmp (r->code, "NoSuchBucket") == 0)
      hint = ": the bucket does not exist";
    else
      hint = ": no such object";
  }
  nbdkit_error ("%s s3://%s/%s: HTTP %ld%s%s%s%s%s", what, bucket,
                object ? object : "", r->status,
                r->code[0] ? " " : "", r->code, hint,
                r->message[0] ? ": " : "", r->message);
  nbdkit_set_error (err);
  errno = err;
  return -1;
}
