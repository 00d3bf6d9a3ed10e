/* backends/curl/pool.c: the pool of libcurl easy handles of the curl
 * backend, and every request made with them.
 *
 * Owns struct curl_handle: an easy handle with all the options of the
 * parameters set, its error buffer, the headers of its current request
 * and the state of the transfer in progress.  At most connections=
 * handles exist; they are made when first needed and kept until the
 * backend exits, so that each keeps its connection to the server alive.
 * A callback (on a worker thread of libnbdkit-backend) takes one with
 * pool_get, makes its request with curl_easy_perform on its own thread,
 * and gives it back with pool_put; when all are busy it waits.  The
 * handles share a DNS cache, TLS sessions and cookies (CURLSH).
 *
 * Also owns the meaning of the outcome of a request: HTTP status codes
 * and libcurl errors become a message naming the URL and the request,
 * and an errno (404 ENOENT, 401/403 EPERM, 416 EINVAL, 5xx EIO...).
 * Transient failures (5xx, connection refused or reset, timeouts, a
 * transfer cut short) are tried again up to -D curl.retries=N times
 * (default 5), after 1, 2, 4, 8 and 16 seconds.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "nbdkit-backend.h"
#include "curldefs.h"
#include "../curl-share.h"

enum kind {
  T_HEAD,                       /* the size (NOBODY) */
  T_GET_HEADERS,                /* the size with GET, stopped at the body */
  T_READ,                       /* a byte range */
  T_WRITE,                      /* PUT of a byte range */
};

struct transfer {
  /* The request. */
  enum kind kind;
  char *rbuf;                   /* T_READ: where the data goes */
  const char *wbuf;             /* T_WRITE: the data */
  uint32_t count;
  uint64_t offset;
  int64_t size;                 /* T_WRITE: of the file, for Content-Range */

  /* What came back, reset for each attempt. */
  uint32_t done;                /* bytes received (T_READ) or sent */
  bool checked;                 /* T_READ: the status was looked at */
  bool whole;                   /* T_READ: 200 at offset 0: the whole file */
  bool enough;                  /* T_READ: stopped once count arrived */
  bool range_ignored;           /* T_READ: 200 for a range not at 0 */
  bool range_wrong;             /* T_READ: 206 for another range */
  bool body_started;            /* T_GET_HEADERS: stopped at the body */
  bool accept_ranges;           /* "Accept-Ranges: bytes" */
  int64_t cr_start;             /* start of Content-Range, or -1 */
};

struct curl_handle {
  CURL *c;
  char errbuf[CURL_ERROR_SIZE];
  struct curl_slist *req_headers; /* of the current request */
  struct transfer t;
  bool in_use;
};

/* The outcome of a failed request. */
struct failure {
  char msg[1024];
  int err;
  long code;                    /* HTTP status, or 0 */
  bool transient;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct curl_handle **pool;
static size_t pool_len;

static CURLSH *share;

/* ---- setting the options ---- */

static int
refused (const char *key, const char *value, CURLcode rc)
{
  const curl_version_info_data *d = curl_version_info (CURLVERSION_NOW);

  nbdkit_error ("%s=%s: libcurl %s (%s) cannot do this: %s", key,
                value ? value : "", d->version,
                d->ssl_version ? d->ssl_version : "no TLS",
                curl_easy_strerror (rc));
  return -1;
}

#define SETOPT(opt, val, key, shown)                                    \
  do {                                                                  \
    CURLcode rc_ = curl_easy_setopt (c, (opt), (val));                  \
    if (rc_ != CURLE_OK)                                                \
      return refused ((key), (shown), rc_);                             \
  } while (0)

int
setup_easy_handle (CURL *c)
{
  char n[32];

  SETOPT (CURLOPT_URL, url, "url", url);
  SETOPT (CURLOPT_NOSIGNAL, 1L, "url", url);
  SETOPT (CURLOPT_FAILONERROR, 1L, "url", url);
  SETOPT (CURLOPT_FOLLOWLOCATION, (long) followlocation, "followlocation",
          followlocation ? "true" : "false");
  SETOPT (CURLOPT_AUTOREFERER, 1L, "followlocation", "true");
  if (debug_verbose) {
    SETOPT (CURLOPT_VERBOSE, 1L, "-D curl.verbose", "1");
    SETOPT (CURLOPT_DEBUGFUNCTION, cshare_debug_cb, "-D curl.verbose", "1");
  }
  if (cainfo)
    SETOPT (CURLOPT_CAINFO, *cainfo ? cainfo : NULL, "cainfo", cainfo);
  if (capath)
    SETOPT (CURLOPT_CAPATH, capath, "capath", capath);
  if (cookie)
    SETOPT (CURLOPT_COOKIE, cookie, "cookie", "...");
  if (cookiefile)
    SETOPT (CURLOPT_COOKIEFILE, cookiefile, "cookiefile", cookiefile);
  if (cookiejar)
    SETOPT (CURLOPT_COOKIEJAR, cookiejar, "cookiejar", cookiejar);
  if (http_version != CURL_HTTP_VERSION_NONE)
    SETOPT (CURLOPT_HTTP_VERSION, http_version, "http-version",
            http_version_name);
  if (user)
    SETOPT (CURLOPT_USERNAME, user, "user", user);
  if (password)
    SETOPT (CURLOPT_PASSWORD, password, "password", "...");
  if (protocols) {
#if LIBCURL_VERSION_NUM >= 0x075500     /* 7.85.0 */
    SETOPT (CURLOPT_PROTOCOLS_STR, protocols, "protocols", protocols);
    SETOPT (CURLOPT_REDIR_PROTOCOLS_STR, protocols, "protocols", protocols);
#else
    return refused ("protocols", protocols, CURLE_NOT_BUILT_IN);
#endif
  }
  if (proxy)
    SETOPT (CURLOPT_PROXY, proxy, "proxy", proxy);
  if (proxy_user)
    SETOPT (CURLOPT_PROXYUSERNAME, proxy_user, "proxy-user", proxy_user);
  if (proxy_password)
    SETOPT (CURLOPT_PROXYPASSWORD, proxy_password, "proxy-password", "...");
  if (!sslverify) {
    SETOPT (CURLOPT_SSL_VERIFYPEER, 0L, "sslverify", "false");
    SETOPT (CURLOPT_SSL_VERIFYHOST, 0L, "sslverify", "false");
  }
  if (ssl_version != CURL_SSLVERSION_DEFAULT)
    SETOPT (CURLOPT_SSLVERSION, ssl_version, "ssl-version",
            ssl_version_name);
  if (ssl_cipher_list)
    SETOPT (CURLOPT_SSL_CIPHER_LIST, ssl_cipher_list, "ssl-cipher-list",
            ssl_cipher_list);
  if (tls13_ciphers)
    SETOPT (CURLOPT_TLS13_CIPHERS, tls13_ciphers, "tls13-ciphers",
            tls13_ciphers);
  if (tcp_keepalive)
    SETOPT (CURLOPT_TCP_KEEPALIVE, 1L, "tcp-keepalive", "true");
  if (!tcp_nodelay)
    SETOPT (CURLOPT_TCP_NODELAY, 0L, "tcp-nodelay", "false");
  if (timeout > 0) {
    snprintf (n, sizeof n, "%ld", timeout);
    SETOPT (CURLOPT_TIMEOUT, timeout, "timeout", n);
  }
  if (unix_socket_path)
    SETOPT (CURLOPT_UNIX_SOCKET_PATH, unix_socket_path, "unix-socket-path",
            unix_socket_path);
  if (user_agent)
    SETOPT (CURLOPT_USERAGENT, user_agent, "user-agent", user_agent);
  return 0;
}

/* ---- the transfer callbacks ---- */

static bool
header_is (const char *p, size_t len, const char *name)
{
  size_t n = strlen (name);

  return len > n && strncasecmp (p, name, n) == 0 && p[n] == ':';
}

static size_t
header_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct curl_handle *ch = opaque;
  struct transfer *t = &ch->t;
  size_t len = size * nmemb;

  if (len >= 5 && strncmp (p, "HTTP/", 5) == 0) {
    /* A new response (after a redirect, or a 100 Continue). */
    t->accept_ranges = false;
    t->cr_start = -1;
  }
  else if (header_is (p, len, "accept-ranges")) {
    const char *v = p + strlen ("accept-ranges:"), *end = p + len;

    /* A comma-separated list of range units. */
    while (v < end) {
      size_t n;

      while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
        v++;
      n = 0;
      while (v + n < end && v[n] != ',' && v[n] != ' ' && v[n] != '\t' &&
             v[n] != '\r' && v[n] != '\n')
        n++;
      if (n == 5 && strncasecmp (v, "bytes", 5) == 0)
        t->accept_ranges = true;
      v += n ? n : 1;
    }
  }
  else if (header_is (p, len, "content-range")) {
    const char *v = p + strlen ("content-range:");
    char *end;

    while (*v == ' ' || *v == '\t')
      v++;
    if (strncasecmp (v, "bytes ", 6) == 0) {
      unsigned long long n;

      errno = 0;
      n = strtoull (v + 6, &end, 10);
      if (errno == 0 && end != v + 6 && *end == '-' && n <= INT64_MAX)
        t->cr_start = (int64_t) n;
    }
  }
  return len;
}

/* Is the response being received an HTTP one (the URL, or where a
 * redirect led)?
 */
static bool
response_is_http (struct curl_handle *ch)
{
  char *scheme = NULL;

  if (curl_easy_getinfo (ch->c, CURLINFO_SCHEME, &scheme) != CURLE_OK ||
      !scheme)
    return url_is_http;
  return strncasecmp (scheme, "http", 4) == 0;
}

static size_t
write_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct curl_handle *ch = opaque;
  struct transfer *t = &ch->t;
  size_t len = size * nmemb, n;
  long code = 0;

  switch (t->kind) {
  case T_HEAD:
  case T_WRITE:
    return len;                 /* a body we do not need */
  case T_GET_HEADERS:
    t->body_started = true;
    return 0;                   /* the headers are all we wanted */
  case T_READ:
    break;
  }

  if (!t->checked) {
    t->checked = true;
    if (response_is_http (ch) &&
        curl_easy_getinfo (ch->c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK) {
      /* A server may answer a range with the whole file (200): right
       * only for a range at 0, of which we keep the beginning.
       */
      if (code == 200 && t->offset != 0) {
        t->range_ignored = true;
        return 0;
      }
      t->whole = code == 200;
      if (code == 206 && t->cr_start >= 0 &&
          (uint64_t) t->cr_start != t->offset) {
        t->range_wrong = true;
        return 0;
      }
    }
  }
  n = t->count - t->done;
  if (n > len)
    n = len;
  memcpy (t->rbuf + t->done, p, n);
  t->done += (uint32_t) n;
  if (t->whole && t->done == t->count) {
    t->enough = true;
    return 0;                   /* stop the download of the whole file */
  }
  return len;                   /* more than asked for: dropped */
}

static size_t
read_cb (char *p, size_t size, size_t nmemb, void *opaque)
{
  struct curl_handle *ch = opaque;
  struct transfer *t = &ch->t;
  size_t n = t->count - t->done;

  if (n > size * nmemb)
    n = size * nmemb;
  memcpy (p, t->wbuf + t->done, n);
  t->done += (uint32_t) n;
  return n;
}

/* libcurl may have to send the data again (a redirect, or an
 * authentication that needs two requests).
 */
static int
seek_cb (void *opaque, curl_off_t offset, int origin)
{
  struct curl_handle *ch = opaque;

  if (origin != SEEK_SET || offset < 0 || offset > ch->t.count)
    return CURL_SEEKFUNC_CANTSEEK;
  ch->t.done = (uint32_t) offset;
  return CURL_SEEKFUNC_OK;
}

/* ---- the pool ---- */

int
pool_init (void)
{
  pool = calloc (connections, sizeof *pool);
  if (!pool) {
    nbdkit_error ("out of memory");
    return -1;
  }
  share = cshare_new (CSHARE_BIT (CURL_LOCK_DATA_DNS) |
                      CSHARE_BIT (CURL_LOCK_DATA_SSL_SESSION) |
                      (cookiefile || cookiejar ?
                       CSHARE_BIT (CURL_LOCK_DATA_COOKIE) : 0));
  return share ? 0 : -1;
}

static void
free_handle (struct curl_handle *ch)
{
  curl_easy_cleanup (ch->c);
  curl_slist_free_all (ch->req_headers);
  free (ch);
}

void
pool_free (void)
{
  size_t i;

  if (pool_len)
    nbdkit_debug ("%zu of %u connections were used", pool_len,
                  connections);
  for (i = 0; i < pool_len; ++i)
    free_handle (pool[i]);
  free (pool);
  pool = NULL;
  pool_len = 0;
  cshare_free (share);
  share = NULL;
}

static struct curl_handle *
new_handle (void)
{
  struct curl_handle *ch = calloc (1, sizeof *ch);

  if (!ch) {
    nbdkit_error ("out of memory");
    return NULL;
  }
  ch->c = curl_easy_init ();
  if (!ch->c) {
    nbdkit_error ("curl_easy_init failed");
    free (ch);
    return NULL;
  }
  if (setup_easy_handle (ch->c) == -1) {
    free_handle (ch);
    return NULL;
  }
  if (share)
    curl_easy_setopt (ch->c, CURLOPT_SHARE, share);
  curl_easy_setopt (ch->c, CURLOPT_ERRORBUFFER, ch->errbuf);
  curl_easy_setopt (ch->c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt (ch->c, CURLOPT_HEADERDATA, ch);
  curl_easy_setopt (ch->c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (ch->c, CURLOPT_WRITEDATA, ch);
  curl_easy_setopt (ch->c, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt (ch->c, CURLOPT_READDATA, ch);
  curl_easy_setopt (ch->c, CURLOPT_SEEKFUNCTION, seek_cb);
  curl_easy_setopt (ch->c, CURLOPT_SEEKDATA, ch);
  return ch;
}

struct curl_handle *
pool_get (void)
{
  struct curl_handle *ch = NULL;
  size_t i;

  pthread_mutex_lock (&lock);
  for (;;) {
    for (i = 0; i < pool_len; ++i)
      if (!pool[i]->in_use) {
        ch = pool[i];
        goto found;
      }
    if (pool_len < connections) {
      if ((ch = new_handle ()) == NULL)
        break;
      pool[pool_len++] = ch;
      nbdkit_debug ("made curl handle %zu (of at most %u)", pool_len,
                    connections);
      goto found;
    }
    pthread_cond_wait (&cond, &lock);
  }
  pthread_mutex_unlock (&lock);
  return NULL;

 found:
  ch->in_use = true;
  pthread_mutex_unlock (&lock);
  return ch;
}

void
pool_put (struct curl_handle *ch)
{
  pthread_mutex_lock (&lock);
  ch->in_use = false;
  pthread_cond_signal (&cond);
  pthread_mutex_unlock (&lock);
}

/* ---- the outcome of a request ---- */

static const char *
reason_phrase (long code)
{
  switch (code) {
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 416: return "Range Not Satisfiable";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  default: return "";
  }
}

/* An HTTP error status: errno, whether to try again, a hint. */
static void
http_failure (struct failure *f, enum kind kind)
{
  const char *hint = "";

  f->transient = false;
  switch (f->code) {
  case 400: case 411: case 413: case 416:
    f->err = EINVAL; break;
  case 401:
    f->err = EPERM; hint = " (check user= and password=)"; break;
  case 403:
    f->err = EPERM; break;
  case 407:
    f->err = EPERM; hint = " (check proxy-user= and proxy-password=)"; break;
  case 404: case 410:
    f->err = ENOENT; break;
  case 405: case 501:
    f->err = kind == T_WRITE ? EPERM : ENOTSUP;
    if (kind == T_WRITE)
      hint = " (the server does not take PUT: serve it with -r)";
    break;
  case 507:
    f->err = ENOSPC; break;
  case 408: case 429:
    f->err = EIO; f->transient = true; break;
  default:
    f->err = EIO;
    f->transient = f->code >= 500 && f->code != 505;
  }
  snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
            "HTTP %ld%s%s%s", f->code, *reason_phrase (f->code) ? " " : "",
            reason_phrase (f->code), hint);
}

/* A libcurl error: errno, and whether to try again. */
static void
curl_failure (struct failure *f, struct curl_handle *ch, CURLcode rc)
{
  f->transient = false;
  switch (rc) {
  case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    f->err = EIO; f->transient = true; break;
  case CURLE_LOGIN_DENIED: case CURLE_REMOTE_ACCESS_DENIED:
    f->err = EPERM; break;
  case CURLE_REMOTE_FILE_NOT_FOUND: case CURLE_FILE_COULDNT_READ_FILE:
    f->err = ENOENT; break;
  case CURLE_UNSUPPORTED_PROTOCOL:
    f->err = ENOTSUP; break;
  case CURLE_URL_MALFORMAT: case CURLE_RANGE_ERROR:
  case CURLE_BAD_DOWNLOAD_RESUME:
    f->err = EINVAL; break;
  case CURLE_OUT_OF_MEMORY:
    f->err = ENOMEM; break;
  default:
    f->err = EIO;
  }
  snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
            "%s%s%s", curl_easy_strerror (rc), *ch->errbuf ? ": " : "",
            ch->errbuf);
}

/* Judge one attempt: 0 if it worked, else -1 with f filled in. */
static int
judge (struct curl_handle *ch, CURLcode rc, const char *what,
       struct failure *f)
{
  struct transfer *t = &ch->t;
  long code = 0;
  bool http = response_is_http (ch);

  if (http)
    curl_easy_getinfo (ch->c, CURLINFO_RESPONSE_CODE, &code);
  snprintf (f->msg, sizeof f->msg, "%s: %s: ", display_url, what);
  f->code = http ? code : 0;
  f->transient = false;
  f->err = EIO;

  /* Our own stops of the transfer. */
  if (rc == CURLE_WRITE_ERROR) {
    if ((t->kind == T_READ && t->enough) ||
        (t->kind == T_GET_HEADERS && t->body_started))
      rc = CURLE_OK;
    else if (t->range_ignored) {
      strcat (f->msg, "the server answered with the whole file (HTTP 200) "
              "instead of the range asked for");
      return -1;
    }
    else if (t->range_wrong) {
      snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
                "the server sent bytes from %" PRId64 " instead of %"
                PRIu64, t->cr_start, t->offset);
      return -1;
    }
  }
  if (rc == CURLE_HTTP_RETURNED_ERROR && code >= 400) {
    http_failure (f, t->kind);
    return -1;
  }
  if (rc != CURLE_OK) {
    curl_failure (f, ch, rc);
    return -1;
  }
  if (http && (code < 200 || code > 299)) {
    char *loc = NULL;

    curl_easy_getinfo (ch->c, CURLINFO_REDIRECT_URL, &loc);
    if (code >= 300 && code <= 399 && loc)
      snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
                "the server redirects (HTTP %ld) to %s, which "
                "followlocation=false does not follow", code, loc);
    else
      snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
                "unexpected answer HTTP %ld", code);
    return -1;
  }
  if (t->kind == T_READ && t->done < t->count) {
    snprintf (f->msg + strlen (f->msg), sizeof f->msg - strlen (f->msg),
              "the server sent %" PRIu32 " of the %" PRIu32 " bytes "
              "(has the file shrunk?)", t->done, t->count);
    return -1;
  }
  return 0;
}

/* Make the request of ch->t, trying again after transient failures.
 * 0; or -1 with f filled in (nothing reported yet); or -2 when
 * nbdkit_error was called already (a script failed), f->err set.
 */
static int
perform (struct curl_handle *ch, const char *what, struct failure *f)
{
  struct transfer *t = &ch->t;
  CURL *c = ch->c;
  int attempt;

  for (attempt = 0;; ++attempt) {
    struct curl_slist *l = NULL, *l2;
    char *ck = NULL, range[64], cr[96];
    CURLcode rc;

    t->done = 0;
    t->checked = t->whole = t->enough = false;
    t->range_ignored = t->range_wrong = t->body_started = false;
    t->accept_ranges = false;
    t->cr_start = -1;
    ch->errbuf[0] = '\0';

    /* The headers (of header= or of the script) and the cookie. */
    if (scripts_get (&l, &ck) == -1) {
      f->err = EIO;
      return -2;                /* reported already */
    }
    if (t->kind == T_WRITE) {
      /* The range written; and no "Expect: 100-continue" round trip. */
      const char *extra[2] = { cr, "Expect:" };

      snprintf (cr, sizeof cr, "Content-Range: bytes %" PRIu64 "-%" PRIu64
                "/%" PRId64, t->offset, t->offset + t->count - 1, t->size);
      for (int i = 0; i < 2; ++i) {
        if ((l2 = curl_slist_append (l, extra[i])) == NULL) {
          curl_slist_free_all (l);
          free (ck);
          nbdkit_error ("out of memory");
          f->err = ENOMEM;
          return -2;
        }
        l = l2;
      }
    }
    curl_easy_setopt (c, CURLOPT_HTTPHEADER, l);
    curl_slist_free_all (ch->req_headers);
    ch->req_headers = l;
    if (cookie_script)
      curl_easy_setopt (c, CURLOPT_COOKIE, ck);
    free (ck);

    switch (t->kind) {
    case T_HEAD:
      curl_easy_setopt (c, CURLOPT_RANGE, NULL);
      curl_easy_setopt (c, CURLOPT_UPLOAD, 0L);
      curl_easy_setopt (c, CURLOPT_NOBODY, 1L);
      break;
    case T_GET_HEADERS:
      curl_easy_setopt (c, CURLOPT_RANGE, NULL);
      curl_easy_setopt (c, CURLOPT_UPLOAD, 0L);
      curl_easy_setopt (c, CURLOPT_NOBODY, 0L);
      curl_easy_setopt (c, CURLOPT_HTTPGET, 1L);
      break;
    case T_READ:
      snprintf (range, sizeof range, "%" PRIu64 "-%" PRIu64, t->offset,
                t->offset + t->count - 1);
      curl_easy_setopt (c, CURLOPT_UPLOAD, 0L);
      curl_easy_setopt (c, CURLOPT_NOBODY, 0L);
      curl_easy_setopt (c, CURLOPT_HTTPGET, 1L);
      curl_easy_setopt (c, CURLOPT_RANGE, range);
      break;
    case T_WRITE:
      curl_easy_setopt (c, CURLOPT_RANGE, NULL);
      curl_easy_setopt (c, CURLOPT_NOBODY, 0L);
      curl_easy_setopt (c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt (c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->count);
      break;
    }

    rc = curl_easy_perform (c);
    if (judge (ch, rc, what, f) == 0)
      return 0;
    if (!f->transient || attempt >= max_retries)
      return -1;
    nbdkit_debug ("%s; trying again in %d s (%d of %d)", f->msg,
                  1 << (attempt < 4 ? attempt : 4), attempt + 1,
                  max_retries);
    sleep (1u << (attempt < 4 ? attempt : 4));
  }
}

static int
report (int r, const struct failure *f)
{
  if (r == -1)
    nbdkit_error ("%s", f->msg);
  nbdkit_set_error (f->err);
  return -1;
}

/* ---- the requests ---- */

int
pool_size (struct curl_handle *ch, int64_t *size)
{
  struct failure f = { .err = EIO };
  curl_off_t len = -1;
  int r;

  memset (&ch->t, 0, sizeof ch->t);
  ch->t.kind = T_HEAD;
  r = perform (ch, url_is_http ? "HEAD request for the size" :
               "request for the size", &f);
  if (r == 0)
    curl_easy_getinfo (ch->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);

  /* Some servers refuse HEAD (URLs signed for GET only), or leave the
   * size out of its answer: ask with GET, stopped at the body.
   */
  if (url_is_http && (r == 0 ? len < 0 :
                      r == -1 && (f.code == 400 || f.code == 403 ||
                                  f.code == 405 || f.code == 501))) {
    nbdkit_debug ("%s: %s; asking for the size with GET",
                  display_url, r == 0 ? "no size in the answer to HEAD"
                  : f.msg);
    struct failure head = f;
    bool head_failed = r == -1;

    ch->t.kind = T_GET_HEADERS;
    r = perform (ch, "GET request for the size", &f);
    if (r == 0)
      curl_easy_getinfo (ch->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    /* Refused the same way: the answer to HEAD says it (403...). */
    else if (r == -1 && head_failed && f.code == head.code)
      f = head;
  }
  if (r != 0)
    return report (r, &f);

  if (len < 0) {
    nbdkit_error ("%s: the server did not give the size of the file "
                  "(no Content-Length)", display_url);
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  if (response_is_http (ch) && !ch->t.accept_ranges) {
    nbdkit_error ("%s: the server does not support byte range requests "
                  "(no 'Accept-Ranges: bytes' in its answer), which are "
                  "needed to read parts of the file", display_url);
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  nbdkit_debug ("%s: %" PRId64 " bytes", display_url, (int64_t) len);
  *size = len;
  return 0;
}

int
pool_read (struct curl_handle *ch, void *buf, uint32_t count,
           uint64_t offset)
{
  struct failure f;
  char what[96];
  int r;

  memset (&ch->t, 0, sizeof ch->t);
  ch->t.kind = T_READ;
  ch->t.rbuf = buf;
  ch->t.count = count;
  ch->t.offset = offset;
  snprintf (what, sizeof what, "%s of bytes %" PRIu64 "-%" PRIu64,
            url_is_http ? "GET" : "read", offset, offset + count - 1);
  r = perform (ch, what, &f);
  return r == 0 ? 0 : report (r, &f);
}

int
pool_write (struct curl_handle *ch, const void *buf, uint32_t count,
            uint64_t offset, int64_t size)
{
  struct failure f;
  char what[96];
  int r;

  memset (&ch->t, 0, sizeof ch->t);
  ch->t.kind = T_WRITE;
  ch->t.wbuf = buf;
  ch->t.count = count;
  ch->t.offset = offset;
  ch->t.size = size;
  snprintf (what, sizeof what, "PUT of bytes %" PRIu64 "-%" PRIu64,
            offset, offset + count - 1);
  r = perform (ch, what, &f);
  return r == 0 ? 0 : report (r, &f);
}
