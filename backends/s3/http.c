/* backends/s3/http.c: the S3 requests of the s3 backend.  This file
 * owns the pool of libcurl easy handles, the multi handle of each
 * thread, the URL and headers of a request, its signature, its
 * retries, and the reading of S3's XML error bodies into messages.
 *
 * How requests run.  The backend's callbacks run on the worker threads
 * of libnbdkit-backend (parallel thread model), and each must return
 * with its answer: the library has no asynchronous completion.  So a
 * callback's thread is the natural place to drive that callback's
 * transfers, and each thread has its own libcurl multi handle (made on
 * first use, freed when the thread ends).  s3_perform_all runs a set of
 * requests on it at once, with its own poll loop (curl_multi_poll):
 * the objects of a split disk that one NBD request spans, the ranges
 * fetched to fill a whole-object copy, each proceed in parallel without
 * a thread each, and requests of different NBD requests proceed in
 * parallel on their own threads.  A request that fails transiently
 * (5xx, 429, SlowDown and other throttling codes, a connection refused
 * or cut, or stalled for STALL_SECS) is taken off the multi and added
 * again after its backoff (100 ms, doubling to 5 s, retries= times)
 * while the others go on.
 * At most S3_PARALLEL transfers of a set run at once; the others wait
 * for a place.  The easy handles come from one pool and share DNS
 * answers and TLS sessions (../curl-share.c); the connections are the
 * multi's, so each thread keeps its own alive from one set to the next
 * (libcurl does not support a connection cache shared by threads that
 * run transfers at the same time).
 *
 * Signing.  Requests are signed by libcurl itself (CURLOPT_AWS_SIGV4).
 * libcurl 7.88 does not send x-amz-content-sha256, which radosgw (and
 * AWS, for most requests) needs; given as a header, libcurl signs it as
 * the payload's hash.  It is sent here: the SHA-256 of a body in memory
 * (given as POSTFIELDS), the caller's SHA-256 of a body streamed from a
 * file, that of nothing for GET, HEAD and DELETE.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>

#include "nbdkit-backend.h"
#include "s3defs.h"
#include "../curl-share.h"

/* Seconds without a byte sent or received after which a transfer is
 * given up and tried again.
 */
#define STALL_SECS 60

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static CURL **pool;                     /* idle handles */
static size_t pool_n, pool_cap;
static CURLSH *share;
static pthread_key_t multi_key;         /* this thread's CURLM */
static bool multi_key_made;

static void
free_multi (void *m)
{
  curl_multi_cleanup (m);
}

int
http_init (void)
{
  if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    nbdkit_error ("curl_global_init failed");
    return -1;
  }
  share = cshare_new (CSHARE_BIT (CURL_LOCK_DATA_DNS) |
                      CSHARE_BIT (CURL_LOCK_DATA_SSL_SESSION));
  if (share == NULL)
    return -1;
  if (pthread_key_create (&multi_key, free_multi) != 0) {
    nbdkit_error ("pthread_key_create: %m");
    return -1;
  }
  multi_key_made = true;
  return 0;
}

void
http_free (void)
{
  size_t i;
  CURLM *m;

  if (multi_key_made && (m = pthread_getspecific (multi_key)) != NULL) {
    curl_multi_cleanup (m);
    pthread_setspecific (multi_key, NULL);
  }
  for (i = 0; i < pool_n; i++)
    curl_easy_cleanup (pool[i]);
  free (pool);
  pool = NULL;
  pool_n = pool_cap = 0;
  cshare_free (share);
  share = NULL;
}

static CURLM *
thread_multi (void)
{
  CURLM *m = pthread_getspecific (multi_key);

  if (m == NULL) {
    m = curl_multi_init ();
    if (m == NULL) {
      nbdkit_error ("curl_multi_init failed");
      return NULL;
    }
    pthread_setspecific (multi_key, m);
  }
  return m;
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

void
s3_sha256_hex (const void *data, size_t len, char out[65])
{
  unsigned char d[32];
  int i;

  gnutls_hash_fast (GNUTLS_DIG_SHA256, data, len, d);
  for (i = 0; i < 32; i++)
    sprintf (out + 2 * i, "%02x", d[i]);
}

/* ---- one transfer ---- */

/* One request of a set, with everything of its current attempt. */
struct xfer {
  struct s3_request *q;
  struct s3_response *r;
  CURL *c;
  struct curl_slist *h;
  char *url;
  char err[4096];               /* an error body, cut */
  size_t err_len;
  bool overflow;                /* a GET sent more than was asked */
  int io_errno;                 /* reading or writing q->fd failed */
  unsigned attempt;
  long delay_ms;                /* the next backoff */
  struct timespec retry_at;     /* waiting: when to start again */
  enum { X_IDLE, X_RUNNING, X_WAITING, X_DONE } state;
  int ret;                      /* when X_DONE: 0, or -1 and errnum */
  int errnum;
};

static size_t
write_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  struct s3_request *q = x->q;
  size_t n = size * nmemb;
  long status = 0;

  curl_easy_getinfo (x->c, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    if (q->out || q->use_fd) {
      if (q->out_got + n > q->out_len) {
        x->overflow = true;
        return 0;
      }
      if (q->use_fd) {
        size_t done = 0;
        while (done < n) {
          ssize_t w = pwrite (q->fd, p + done, n - done,
                              q->fd_off + q->out_got + done);
          if (w <= 0) {
            x->io_errno = w == 0 ? EIO : errno;
            return 0;
          }
          done += w;
        }
      }
      else
        memcpy ((char *) q->out + q->out_got, p, n);
      q->out_got += n;
    }
    else {
      char *a;
      if (q->out_got + n > 64 << 20) {  /* a listing is never that big */
        x->overflow = true;
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
  if (x->err_len < sizeof x->err - 1) {
    size_t k = n < sizeof x->err - 1 - x->err_len ?
      n : sizeof x->err - 1 - x->err_len;
    memcpy (x->err + x->err_len, p, k);
    x->err_len += k;
    x->err[x->err_len] = '\0';
  }
  return n;
}

/* A PUT's body from q->fd: [fd_off, fd_off + body_len). */
static size_t
read_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  struct s3_request *q = x->q;
  size_t n = size * nmemb;
  ssize_t r;

  if (n > q->body_len - q->body_sent)
    n = q->body_len - q->body_sent;
  if (n == 0)
    return 0;
  r = pread (q->fd, p, n, q->fd_off + q->body_sent);
  if (r <= 0) {
    x->io_errno = r == 0 ? EIO : errno;   /* the file shrank: never */
    return CURL_READFUNC_ABORT;
  }
  q->body_sent += r;
  return r;
}

/* libcurl may have to send the body again (a redirect, a 100-continue
 * refused then retried).
 */
static int
seek_cb (void *opaque, curl_off_t offset, int origin)
{
  struct xfer *x = opaque;

  if (origin != SEEK_SET || offset < 0 ||
      (uint64_t) offset > x->q->body_len)
    return CURL_SEEKFUNC_CANTSEEK;
  x->q->body_sent = offset;
  return CURL_SEEKFUNC_OK;
}

static size_t
header_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  size_t n = size * nmemb, k;

  if (n > 5 && strncasecmp (p, "etag:", 5) == 0) {
    const char *v = p + 5;
    while (*v == ' ' || *v == '\t')
      v++;
    k = p + n - v;
    while (k > 0 && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
      k--;
    if (k < sizeof x->r->etag) {
      memcpy (x->r->etag, v, k);
      x->r->etag[k] = '\0';
    }
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

/* Append "name: value" to *h.  -1 when out of memory. */
static int
add_header (struct curl_slist **h, const char *name, const char *value)
{
  char *s;
  struct curl_slist *t;

  if (asprintf (&s, "%s: %s", name, value) == -1)
    return -1;
  t = curl_slist_append (*h, s);
  free (s);
  if (t == NULL)
    return -1;
  *h = t;
  return 0;
}

/* Set up x->c for an attempt of x->q: its URL, options and headers.
 * Returns 0, or -1 after nbdkit_error.
 */
static int
setup (struct xfer *x)
{
  struct s3_request *q = x->q;
  CURL *c = x->c;
  char sigv4[256], sum[65], *enc = NULL, range[80];
  bool put = strcmp (q->method, "PUT") == 0;
  static const char empty_sha[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

  if (x->url == NULL) {
    if (q->object && (enc = s3_encode (q->object, true)) == NULL)
      return -1;
    if (asprintf (&x->url, "%s/%s%s%s%s%s", endpoint, bucket,
                  enc ? "/" : "", enc ? enc : "",
                  q->query ? "?" : "", q->query ? q->query : "") == -1) {
      nbdkit_error ("asprintf: %m");
      x->url = NULL;
      free (enc);
      return -1;
    }
    free (enc);
  }

  curl_easy_reset (c);
  curl_easy_setopt (c, CURLOPT_SHARE, share);
  curl_easy_setopt (c, CURLOPT_URL, x->url);
  curl_easy_setopt (c, CURLOPT_PRIVATE, x);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_SSL_VERIFYPEER, sslverify ? 1L : 0L);
  curl_easy_setopt (c, CURLOPT_SSL_VERIFYHOST, sslverify ? 2L : 0L);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, 30L);
  /* A transfer that moves nothing for STALL_SECS is abandoned (and,
   * as a timeout, tried again).
   */
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_TIME, (long) STALL_SECS);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, x);
  curl_easy_setopt (c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt (c, CURLOPT_HEADERDATA, x);
  snprintf (sigv4, sizeof sigv4, "aws:amz:%s:s3", region);
  curl_easy_setopt (c, CURLOPT_AWS_SIGV4, sigv4);
  curl_easy_setopt (c, CURLOPT_USERNAME, access_key);
  curl_easy_setopt (c, CURLOPT_PASSWORD, secret_key);
  if (nbdkit_debug_flag ("verbose", 0)) {
    curl_easy_setopt (c, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt (c, CURLOPT_DEBUGFUNCTION, cshare_debug_cb);
  }

  if (put && q->use_fd) {
    /* Streamed from the file, never all in memory. */
    curl_easy_setopt (c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt (c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt (c, CURLOPT_READDATA, x);
    curl_easy_setopt (c, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt (c, CURLOPT_SEEKDATA, x);
    curl_easy_setopt (c, CURLOPT_INFILESIZE_LARGE,
                      (curl_off_t) q->body_len);
    q->body_sent = 0;
    snprintf (sum, sizeof sum, "%s", q->body_sha256);
  }
  else if (put) {
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt (c, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    curl_easy_setopt (c, CURLOPT_POSTFIELDSIZE_LARGE,
                      (curl_off_t) q->body_len);
    s3_sha256_hex (q->body ? q->body : "", q->body_len, sum);
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
  /* (No "Expect:" to turn 100-continue off: libcurl 7.88 would sign
   * that empty header without sending it.)
   */
  x->h = NULL;
  if (q->range)
    snprintf (range, sizeof range, "bytes=%s", q->range);
  if (add_header (&x->h, "x-amz-content-sha256", sum) == -1 ||
      (put && add_header (&x->h, "Content-Type",
                          "application/octet-stream") == -1) ||
      (q->range && add_header (&x->h, "Range", range) == -1) ||
      (session_token &&
       add_header (&x->h, "x-amz-security-token", session_token) == -1)) {
    nbdkit_error ("curl_slist_append: out of memory");
    curl_slist_free_all (x->h);
    x->h = NULL;
    return -1;
  }
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, x->h);
  return 0;
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

/* Start an attempt: reset what the last one left, add it to m. */
static int
start (CURLM *m, struct xfer *x)
{
  struct s3_request *q = x->q;

  memset (x->r, 0, sizeof *x->r);
  x->r->content_length = -1;
  x->err_len = 0;
  x->err[0] = '\0';
  x->overflow = false;
  x->io_errno = 0;
  q->out_got = 0;
  free (q->out_alloc);
  q->out_alloc = NULL;
  if (setup (x) == -1)
    return -1;
  if (curl_multi_add_handle (m, x->c) != CURLM_OK) {
    nbdkit_error ("curl_multi_add_handle failed");
    curl_slist_free_all (x->h);
    x->h = NULL;
    return -1;
  }
  x->state = X_RUNNING;
  return 0;
}

/* The request is over: ret 0 (an HTTP answer came), or -1 after
 * nbdkit_error with err.
 */
static void
done (struct xfer *x, int ret, int err)
{
  x->state = X_DONE;
  x->ret = ret;
  x->errnum = err;
}

/* An attempt ended with rc: judge it; the request is then done, or
 * waits for its next attempt.
 */
static void
finish (CURLM *m, struct xfer *x, CURLcode rc)
{
  struct s3_request *q = x->q;
  struct s3_response *r = x->r;
  curl_off_t cl = -1;

  curl_multi_remove_handle (m, x->c);
  curl_slist_free_all (x->h);
  x->h = NULL;
  curl_easy_getinfo (x->c, CURLINFO_RESPONSE_CODE, &r->status);
  if (curl_easy_getinfo (x->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
      CURLE_OK)
    r->content_length = cl;
  if (x->err_len) {
    xml_field (x->err, "Code", r->code, sizeof r->code);
    xml_field (x->err, "Message", r->message, sizeof r->message);
  }
  if (x->io_errno) {
    errno = x->io_errno;
    nbdkit_error ("%s %s: the local file: %m", q->method, x->url);
    done (x, -1, x->io_errno);
    return;
  }
  if (rc == CURLE_WRITE_ERROR && x->overflow) {
    nbdkit_error ("%s %s: the server sent more than was asked",
                  q->method, x->url);
    done (x, -1, EIO);
    return;
  }
  if (!transient (rc, r) || x->attempt >= max_retries) {
    if (rc != CURLE_OK && r->status == 0) {
      nbdkit_error ("%s %s: %s%s", q->method, x->url,
                    curl_easy_strerror (rc),
                    x->attempt ? " (after retries)" : "");
      done (x, -1, EIO);
    }
    else
      done (x, 0, 0);
    return;
  }
  nbdkit_debug ("%s %s: %s (HTTP %ld %s): trying again in %ld ms",
                q->method, x->url, curl_easy_strerror (rc), r->status,
                r->code, x->delay_ms);
  clock_gettime (CLOCK_MONOTONIC, &x->retry_at);
  x->retry_at.tv_sec += x->delay_ms / 1000;
  x->retry_at.tv_nsec += (x->delay_ms % 1000) * 1000000;
  if (x->retry_at.tv_nsec >= 1000000000) {
    x->retry_at.tv_sec++;
    x->retry_at.tv_nsec -= 1000000000;
  }
  if (x->delay_ms < 5000)
    x->delay_ms *= 2;
  x->attempt++;
  x->state = X_WAITING;
}

/* Milliseconds from now to t (0 if past). */
static long
ms_until (const struct timespec *t)
{
  struct timespec now;
  long ms;

  clock_gettime (CLOCK_MONOTONIC, &now);
  ms = (t->tv_sec - now.tv_sec) * 1000 +
    (t->tv_nsec - now.tv_nsec) / 1000000;
  return ms > 0 ? ms : 0;
}

int
s3_perform_all (struct s3_request *q, struct s3_response *r, size_t n)
{
  CURLM *m;
  struct xfer *xs;
  size_t i, left = n, nrunning = 0;
  int ret = 0, err = 0, still;

  if (n == 0)
    return 0;
  if ((m = thread_multi ()) == NULL)
    return -1;
  xs = calloc (n, sizeof *xs);
  if (xs == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  for (i = 0; i < n; i++) {
    xs[i].q = &q[i];
    xs[i].r = &r[i];
    xs[i].delay_ms = 100;
    xs[i].state = X_IDLE;
  }

  while (left > 0) {
    CURLMsg *msg;
    int k;
    long wait_ms = 1000;

    /* Start what is due: new requests while there is a place, and the
     * retries whose backoff is over; how long until the next retry.
     */
    for (i = 0; i < n; i++) {
      struct xfer *x = &xs[i];
      long ms = 0;
      if (x->state == X_WAITING && (ms = ms_until (&x->retry_at)) > 0) {
        if (ms < wait_ms)
          wait_ms = ms;
        continue;
      }
      if ((x->state == X_IDLE && nrunning < S3_PARALLEL) ||
          x->state == X_WAITING) {
        if ((x->c == NULL && (x->c = pool_get ()) == NULL) ||
            start (m, x) == -1) {
          done (x, -1, ENOMEM);
          left--;
        }
        else
          nrunning++;
      }
    }
    if (left == 0)
      break;
    if (nrunning == 0) {                /* all waiting for a retry */
      struct timespec ts = { wait_ms / 1000, (wait_ms % 1000) * 1000000 };
      nanosleep (&ts, NULL);
      continue;
    }
    if (curl_multi_perform (m, &still) != CURLM_OK) {
      nbdkit_error ("curl_multi_perform failed");
      break;
    }
    while ((msg = curl_multi_info_read (m, &k)) != NULL) {
      struct xfer *x = NULL;
      if (msg->msg != CURLMSG_DONE)
        continue;
      curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &x);
      nrunning--;
      finish (m, x, msg->data.result);
      if (x->state == X_DONE)
        left--;
    }
    /* Wait for the transfers still running (or a retry to be due);
     * with none, go round at once to start the next ones.
     */
    if (left > 0 && still > 0 &&
        curl_multi_poll (m, NULL, 0, wait_ms, NULL) != CURLM_OK) {
      nbdkit_error ("curl_multi_poll failed");
      break;
    }
  }

  for (i = 0; i < n; i++) {
    struct xfer *x = &xs[i];
    if (x->state == X_RUNNING) {        /* the multi failed */
      curl_multi_remove_handle (m, x->c);
      curl_slist_free_all (x->h);
    }
    if (x->state != X_DONE)
      done (x, -1, EIO);
    if (x->ret == -1 && ret == 0) {
      ret = -1;
      err = x->errnum ? x->errnum : EIO;
    }
    if (x->c)
      pool_put (x->c);
    free (x->url);
  }
  free (xs);
  if (ret == -1)
    errno = err;
  return ret;
}

int
s3_perform (struct s3_request *q, struct s3_response *r)
{
  return s3_perform_all (q, r, 1);
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
