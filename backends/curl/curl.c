/* nbdkit curl backend: serve a file of a web (or FTP, or file://)
 * server, as nbdkit-curl-plugin does, with libcurl.
 *
 * This file owns the parameters (parsed and checked here, each error
 * naming the parameter and its value), --dump-plugin, and the backend's
 * callbacks.  Each client connection asks the server for the size
 * (HEAD) when it opens; reads are GET requests of byte ranges, writes
 * (HTTP and HTTPS only, as nbdkit does them: PUT with a Content-Range)
 * are PUT requests.  The requests are made by pool.c on the worker
 * thread of the callback, with an easy handle borrowed from a pool of at
 * most connections= handles, each keeping its own connection to the
 * server alive: see nbdkit-curl-backend(1), "Connections".
 */

#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "nbdkit-backend.h"
#include "curldefs.h"

/* ---- the parameters (see curldefs.h) ---- */

char *url;
char *display_url;
bool url_is_http;
char *cainfo, *capath;
unsigned connections = 16;
char *cookie;
char *cookiefile, *cookiejar;
char *cookie_script, *header_script;
unsigned cookie_script_renew, header_script_renew;
bool followlocation = true;
struct curl_slist *headers;
long http_version = CURL_HTTP_VERSION_NONE;
const char *http_version_name = "none";
char *password, *proxy_password;
char *protocols;
char *proxy, *proxy_user;
bool sslverify = true;
char *ssl_cipher_list, *tls13_ciphers;
long ssl_version = CURL_SSLVERSION_DEFAULT;
const char *ssl_version_name = "default";
bool tcp_keepalive, tcp_nodelay = true;
long timeout;
char *unix_socket_path;
char *user, *user_agent;

int debug_verbose, debug_scripts, max_retries = 5;

#define MAX_CONNECTIONS 1024

static bool global_init_ok;

static void
curl_load (void)
{
  global_init_ok = curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static void
curl_unload (void)
{
  pool_free ();
  scripts_unload ();
  free (url);
  free (display_url);
  free (cainfo);
  free (capath);
  secret_free (cookie);
  free (cookiefile);
  free (cookiejar);
  free (cookie_script);
  free (header_script);
  curl_slist_free_all (headers);
  secret_free (password);
  secret_free (proxy_password);
  free (protocols);
  free (proxy);
  free (proxy_user);
  free (ssl_cipher_list);
  free (tls13_ciphers);
  free (unix_socket_path);
  free (user);
  free (user_agent);
  if (global_init_ok)
    curl_global_cleanup ();
}

/* ---- checking values ---- */

/* *p = a copy of value (the earlier value is freed): the last counts. */
static int
set_string (char **p, const char *value)
{
  char *s = strdup (value);

  if (!s) {
    nbdkit_error ("out of memory");
    return -1;
  }
  free (*p);
  *p = s;
  return 0;
}

static int
not_empty (const char *key, const char *value)
{
  if (*value == '\0') {
    nbdkit_error ("%s=: the value must not be empty", key);
    return -1;
  }
  return 0;
}

/* A value that goes into a request line or a header as it is. */
static int
one_line (const char *key, const char *value)
{
  if (strpbrk (value, "\r\n")) {
    nbdkit_error ("%s=%s: the value must not contain a line break", key,
                  value);
    return -1;
  }
  return 0;
}

/* A path, made absolute (the server may change its directory after
 * start-up).  must: 'f' a readable regular file, 'd' a directory, 0
 * anything (it need not exist).
 */
static int
set_path (char **p, const char *key, const char *value, char must)
{
  struct stat st;
  char *abs;

  if (not_empty (key, value) == -1)
    return -1;
  if (must && stat (value, &st) == -1) {
    nbdkit_error ("%s=%s: %m", key, value);
    return -1;
  }
  if (must == 'f' && !S_ISREG (st.st_mode)) {
    nbdkit_error ("%s=%s: not a regular file", key, value);
    return -1;
  }
  if (must == 'd' && !S_ISDIR (st.st_mode)) {
    nbdkit_error ("%s=%s: not a directory", key, value);
    return -1;
  }
  if (must && access (value, must == 'd' ? R_OK | X_OK : R_OK) == -1) {
    nbdkit_error ("%s=%s: %m", key, value);
    return -1;
  }
  if ((abs = nbdkit_absolute_path (value)) == NULL)
    return -1;
  free (*p);
  *p = abs;
  return 0;
}

static int
set_bool (bool *b, const char *value)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1)
    return -1;
  *b = r;
  return 0;
}

/* header=: "Name: value", "Name:" (remove a header of libcurl's) or
 * "Name;" (a header with an empty value), as CURLOPT_HTTPHEADER takes.
 */
static int
check_header (const char *key, const char *value)
{
  size_t n = strcspn (value, ":;");
  size_t i;

  if (one_line (key, value) == -1)
    return -1;
  if (value[n] == '\0' || n == 0) {
    nbdkit_error ("%s=%s: not an HTTP header (use 'Name: value', 'Name:' "
                  "to remove a header, or 'Name;' for one with an empty "
                  "value)", key, value);
    return -1;
  }
  for (i = 0; i < n; ++i)
    if (value[i] <= ' ' || value[i] >= 127 || strchr ("\"(),/<=>?@[\\]{}",
                                                      value[i])) {
      nbdkit_error ("%s=%s: '%.*s' is not a valid header name", key, value,
                    (int) n, value);
      return -1;
    }
  return 0;
}

/* Is name one of the protocols of this libcurl? */
static bool
libcurl_has_protocol (const char *name, size_t len)
{
  const curl_version_info_data *d = curl_version_info (CURLVERSION_NOW);
  const char *const *p;

  for (p = d->protocols; *p; ++p)
    if (strlen (*p) == len && strncasecmp (*p, name, len) == 0)
      return true;
  return false;
}

static void
print_protocols (FILE *fp)
{
  const curl_version_info_data *d = curl_version_info (CURLVERSION_NOW);
  const char *const *p;

  for (p = d->protocols; *p; ++p)
    fprintf (fp, "%s%s", p == d->protocols ? "" : ",", *p);
}

/* The list of protocols of this libcurl, malloc'd ("?" if out of
 * memory), for messages.
 */
static char *
known_protocols (void)
{
  char *s = NULL;
  size_t len = 0;
  FILE *fp = open_memstream (&s, &len);

  if (!fp)
    return strdup ("?");
  print_protocols (fp);
  fclose (fp);
  return s;
}

static int
check_protocols (const char *key, const char *value)
{
  const char *p = value;
  char *known;

  if (not_empty (key, value) == -1)
    return -1;
  while (*p) {
    size_t n = strcspn (p, ",");

    if (n == 0 || !libcurl_has_protocol (p, n)) {
      known = known_protocols ();
      if (n == 0)
        nbdkit_error ("%s=%s: an empty protocol name in the list (use a "
                      "comma-separated list of: %s)", key, value, known);
      else
        nbdkit_error ("%s=%s: unknown protocol '%.*s' (this libcurl "
                      "knows: %s)", key, value, (int) n, p, known);
      free (known);
      return -1;
    }
    p += n;
    if (*p == ',' && *++p == '\0') {
      nbdkit_error ("%s=%s: the list ends with a comma", key, value);
      return -1;
    }
  }
  return 0;
}

static const struct {
  const char *name;
  long value;
} ssl_versions[] = {
  { "default", CURL_SSLVERSION_DEFAULT },
  { "tlsv1", CURL_SSLVERSION_TLSv1 },
  { "sslv2", CURL_SSLVERSION_SSLv2 },
  { "sslv3", CURL_SSLVERSION_SSLv3 },
  { "tlsv1.0", CURL_SSLVERSION_TLSv1_0 },
  { "tlsv1.1", CURL_SSLVERSION_TLSv1_1 },
  { "tlsv1.2", CURL_SSLVERSION_TLSv1_2 },
  { "tlsv1.3", CURL_SSLVERSION_TLSv1_3 },
  { "max-default", CURL_SSLVERSION_MAX_DEFAULT },
  { "max-tlsv1.0", CURL_SSLVERSION_MAX_TLSv1_0 },
  { "max-tlsv1.1", CURL_SSLVERSION_MAX_TLSv1_1 },
  { "max-tlsv1.2", CURL_SSLVERSION_MAX_TLSv1_2 },
  { "max-tlsv1.3", CURL_SSLVERSION_MAX_TLSv1_3 },
}, http_versions[] = {
  { "none", CURL_HTTP_VERSION_NONE },
  { "1.0", CURL_HTTP_VERSION_1_0 },
  { "1.1", CURL_HTTP_VERSION_1_1 },
  { "2.0", CURL_HTTP_VERSION_2_0 },
  { "2TLS", CURL_HTTP_VERSION_2TLS },
  { "2-prior-knowledge", CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE },
#if LIBCURL_VERSION_NUM >= 0x074200     /* 7.66.0 */
  { "3", CURL_HTTP_VERSION_3 },
#endif
#if LIBCURL_VERSION_NUM >= 0x075800     /* 7.88.0 */
  { "3only", CURL_HTTP_VERSION_3ONLY },
#endif
};

#define LOOKUP(table, key, value, ret, name)                            \
  lookup_name (key, value, ret, name, table, sizeof table / sizeof table[0])

static int
lookup_name (const char *key, const char *value, long *ret,
             const char **name, const void *table, size_t n)
{
  const struct { const char *name; long value; } *t = table;
  size_t i;
  char *list = NULL;
  size_t len = 0;
  FILE *fp;

  for (i = 0; i < n; ++i)
    if (strcmp (t[i].name, value) == 0) {
      *ret = t[i].value;
      *name = t[i].name;
      return 0;
    }
  fp = open_memstream (&list, &len);
  if (fp) {
    for (i = 0; i < n; ++i)
      fprintf (fp, "%s%s", i ? ", " : "", t[i].name);
    fclose (fp);
  }
  nbdkit_error ("%s=%s: unknown value (use one of: %s)", key, value,
                list ? list : "?");
  free (list);
  return -1;
}

static int
set_secret (char **p, const char *key, const char *value)
{
  char *s;

  if (secret_read (key, value, &s) == -1)
    return -1;
  secret_free (*p);
  *p = s;
  return 0;
}

static int
curl_config (const char *key, const char *value)
{
  unsigned u;

  if (strcmp (key, "url") == 0)
    return not_empty (key, value) == -1 ? -1 : set_string (&url, value);
  if (strcmp (key, "cainfo") == 0) {
    /* Empty: do not use libcurl's default bundle. */
    if (*value == '\0')
      return set_string (&cainfo, "");
    return set_path (&cainfo, key, value, 'f');
  }
  if (strcmp (key, "capath") == 0)
    return set_path (&capath, key, value, 'd');
  if (strcmp (key, "connections") == 0) {
    if (nbdkit_parse_unsigned (key, value, &u) == -1)
      return -1;
    if (u == 0 || u > MAX_CONNECTIONS) {
      nbdkit_error ("connections=%s: out of range (use 1 to %d)", value,
                    MAX_CONNECTIONS);
      return -1;
    }
    connections = u;
    return 0;
  }
  if (strcmp (key, "cookie") == 0) {
    if (set_secret (&cookie, key, value) == -1)
      return -1;
    if (strpbrk (cookie, "\r\n")) {
      /* Not the cookie itself in the message: it may be a secret. */
      nbdkit_error ("cookie=%s: the cookie must be a single line",
                    *value == '+' || *value == '-' ? value : "...");
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cookiefile") == 0 || strcmp (key, "cookiejar") == 0) {
    char **p = key[6] == 'f' ? &cookiefile : &cookiejar;

    if (strcmp (value, "-") == 0) {
      nbdkit_error ("%s=-: standard input and output cannot hold cookies "
                    "(give a file name)", key);
      return -1;
    }
    /* cookiefile= with no value: cookies on, starting with none. */
    if (*value == '\0' && p == &cookiefile)
      return set_string (p, "");
    return set_path (p, key, value, p == &cookiefile ? 'f' : 0);
  }
  if (strcmp (key, "cookie-script") == 0)
    return not_empty (key, value) == -1 ? -1 :
      set_string (&cookie_script, value);
  if (strcmp (key, "header-script") == 0)
    return not_empty (key, value) == -1 ? -1 :
      set_string (&header_script, value);
  if (strcmp (key, "cookie-script-renew") == 0)
    return nbdkit_parse_unsigned (key, value, &cookie_script_renew);
  if (strcmp (key, "header-script-renew") == 0)
    return nbdkit_parse_unsigned (key, value, &header_script_renew);
  if (strcmp (key, "followlocation") == 0)
    return set_bool (&followlocation, value);
  if (strcmp (key, "header") == 0) {
    struct curl_slist *l2;

    if (check_header (key, value) == -1)
      return -1;
    if ((l2 = curl_slist_append (headers, value)) == NULL) {
      nbdkit_error ("out of memory");
      return -1;
    }
    headers = l2;
    return 0;
  }
  if (strcmp (key, "http-version") == 0)
    return LOOKUP (http_versions, key, value, &http_version,
                   &http_version_name);
  if (strcmp (key, "password") == 0)
    return set_secret (&password, key, value);
  if (strcmp (key, "protocols") == 0)
    return check_protocols (key, value) == -1 ? -1 :
      set_string (&protocols, value);
  if (strcmp (key, "proxy") == 0)
    return not_empty (key, value) == -1 || one_line (key, value) == -1 ? -1 :
      set_string (&proxy, value);
  if (strcmp (key, "proxy-password") == 0)
    return set_secret (&proxy_password, key, value);
  if (strcmp (key, "proxy-user") == 0)
    return set_string (&proxy_user, value);
  if (strcmp (key, "sslverify") == 0)
    return set_bool (&sslverify, value);
  if (strcmp (key, "ssl-version") == 0)
    return LOOKUP (ssl_versions, key, value, &ssl_version,
                   &ssl_version_name);
  if (strcmp (key, "ssl-cipher-list") == 0)
    return not_empty (key, value) == -1 ? -1 :
      set_string (&ssl_cipher_list, value);
  if (strcmp (key, "tls13-ciphers") == 0)
    return not_empty (key, value) == -1 ? -1 :
      set_string (&tls13_ciphers, value);
  if (strcmp (key, "tcp-keepalive") == 0)
    return set_bool (&tcp_keepalive, value);
  if (strcmp (key, "tcp-nodelay") == 0)
    return set_bool (&tcp_nodelay, value);
  if (strcmp (key, "timeout") == 0) {
    if (nbdkit_parse_unsigned (key, value, &u) == -1)
      return -1;
    timeout = (long) u;         /* 0: libcurl's default, no limit */
    return 0;
  }
  if (strcmp (key, "unix-socket-path") == 0 ||
      strcmp (key, "unix_socket_path") == 0)
    return set_path (&unix_socket_path, key, value, 0);
  if (strcmp (key, "user") == 0)
    return set_string (&user, value);
  if (strcmp (key, "user-agent") == 0)
    return one_line (key, value) == -1 ? -1 : set_string (&user_agent, value);

  nbdkit_error ("unknown parameter '%s' (see 'nbdkit curl --help' for the "
                "parameters of the curl backend)", key);
  return -1;
}

/* Check url= with libcurl's URL parser: what libcurl would accept,
 * with a protocol it has (and that protocols= allows).  Sets
 * url_is_http and display_url.
 */
static int
check_url (void)
{
  CURLU *u = curl_url ();
  CURLUcode rc;
  char *scheme = NULL, *shown = NULL;
  int ret = -1;

  if (!u) {
    nbdkit_error ("out of memory");
    return -1;
  }
  rc = curl_url_set (u, CURLUPART_URL, url,
                     CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) {
    nbdkit_error ("url=%s: not a URL that libcurl can use: %s", url,
                  curl_url_strerror (rc));
    goto out;
  }
  if (curl_url_get (u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
    nbdkit_error ("url=%s: the URL has no protocol (use e.g. "
                  "https://HOST/PATH)", url);
    goto out;
  }
  if (!libcurl_has_protocol (scheme, strlen (scheme))) {
    char *known = known_protocols ();

    nbdkit_error ("url=%s: libcurl does not support the protocol '%s' "
                  "(it supports: %s)", url, scheme, known);
    free (known);
    goto out;
  }
  if (protocols) {
    const char *p = protocols;
    bool found = false;

    while (*p && !found) {
      size_t n = strcspn (p, ",");

      found = n == strlen (scheme) && strncasecmp (p, scheme, n) == 0;
      p += n + (p[n] == ',');
    }
    if (!found) {
      nbdkit_error ("url=%s: the protocol '%s' is not one of "
                    "protocols=%s", url, scheme, protocols);
      goto out;
    }
  }
  url_is_http = strcasecmp (scheme, "http") == 0 ||
    strcasecmp (scheme, "https") == 0;

  /* For messages: the URL without a password in it. */
  curl_url_set (u, CURLUPART_PASSWORD, NULL, 0);
  if (curl_url_get (u, CURLUPART_URL, &shown, 0) == CURLUE_OK) {
    display_url = strdup (shown);
    curl_free (shown);
  }
  else
    display_url = strdup (url);
  if (!display_url) {
    nbdkit_error ("out of memory");
    goto out;
  }
  ret = 0;
 out:
  curl_free (scheme);
  curl_url_cleanup (u);
  return ret;
}

static int
curl_config_complete (void)
{
  CURL *c;
  int r;

  if (!url) {
    nbdkit_error ("the URL to serve is required, e.g. 'nbdkit -r curl "
                  "https://example.com/disk.img' or url=URL");
    return -1;
  }
  if (headers && header_script) {
    nbdkit_error ("header= and header-script= cannot be used together "
                  "(the script gives all the headers)");
    return -1;
  }
  if (cookie && cookie_script) {
    nbdkit_error ("cookie= and cookie-script= cannot be used together "
                  "(the script gives the cookie)");
    return -1;
  }
  if (header_script_renew && !header_script) {
    nbdkit_error ("header-script-renew=%u: there is no header-script= to "
                  "run again", header_script_renew);
    return -1;
  }
  if (cookie_script_renew && !cookie_script) {
    nbdkit_error ("cookie-script-renew=%u: there is no cookie-script= to "
                  "run again", cookie_script_renew);
    return -1;
  }
  if (!global_init_ok) {
    nbdkit_error ("libcurl failed to initialize (curl_global_init)");
    return -1;
  }
  if (check_url () == -1)
    return -1;

  debug_verbose = nbdkit_debug_flag ("verbose", 0);
  debug_scripts = nbdkit_debug_flag ("scripts", 0);
  max_retries = nbdkit_debug_flag ("retries", 5);
  if (max_retries < 0)
    max_retries = 0;

  /* Every option on a handle now, so that one libcurl refuses (one it
   * was built without, say) is reported at start-up.
   */
  c = curl_easy_init ();
  if (!c) {
    nbdkit_error ("curl_easy_init failed");
    return -1;
  }
  r = setup_easy_handle (c);
  curl_easy_cleanup (c);
  if (r == -1)
    return -1;
  return pool_init ();
}

static void
curl_dump_plugin (void)
{
  const curl_version_info_data *d = curl_version_info (CURLVERSION_NOW);
  const char *const *p;

  printf ("curl_version=%s\n", d->version);
  printf ("curl_ssl_version=%s\n", d->ssl_version ? d->ssl_version : "");
  printf ("curl_libz_version=%s\n", d->libz_version ? d->libz_version : "");
  for (p = d->protocols; *p; ++p)
    printf ("curl_protocol_%s=yes\n", *p);
}

/* ---- connections ---- */

struct handle {
  bool readonly;
  int64_t size;                 /* from the server when the client opened */
};

static void *
curl_open (int readonly)
{
  struct handle *h = calloc (1, sizeof *h);
  struct curl_handle *ch;
  int r;

  if (!h) {
    nbdkit_error ("out of memory");
    return NULL;
  }
  h->readonly = readonly;
  if ((ch = pool_get ()) == NULL) {
    free (h);
    return NULL;
  }
  r = pool_size (ch, &h->size);
  pool_put (ch);
  if (r == -1) {
    free (h);
    return NULL;
  }
  return h;
}

static void
curl_close (void *handle)
{
  free (handle);
}

static int64_t
curl_get_size (void *handle)
{
  struct handle *h = handle;

  return h->size;
}

/* Writes are PUT requests, which only HTTP has: a PUT ("upload") over
 * FTP or file:// would replace the whole file with the block written.
 */
static int
curl_can_write (void *handle)
{
  struct handle *h = handle;

  return !h->readonly && url_is_http;
}

/* Read-only, every connection sees the same remote file.  Writable,
 * there is no flush to make one connection's writes reach the others.
 */
static int
curl_can_multi_conn (void *handle)
{
  struct handle *h = handle;

  return h->readonly;
}

static int
curl_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct curl_handle *ch = pool_get ();
  int r;

  if (!ch)
    return -1;
  r = pool_read (ch, buf, count, offset);
  pool_put (ch);
  return r;
}

static int
curl_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  struct handle *h = handle;
  struct curl_handle *ch = pool_get ();
  int r;

  if (!ch)
    return -1;
  r = pool_write (ch, buf, count, offset, h->size);
  pool_put (ch);
  return r;
}

static struct nbdkit_backend curl_backend = {
  .name = "curl",
  .longname = "nbdkit curl backend",
  .version = PACKAGE_VERSION,
  .description = "Serve a file of a web, FTP or other server (libcurl).",
  .config_help =
    "[url=]<URL>            (required) The file to serve (http://, https://,\n"
    "                       ftp://, ftps://, file://...).\n"
    "cainfo=<FILE>          Certificates of the CAs to trust (empty: none\n"
    "                       of libcurl's own).\n"
    "capath=<DIR>           Directory of CA certificates.\n"
    "connections=<N>        At most N requests to the server at once (16).\n"
    "cookie=<COOKIE>        Cookie(s) to send; +FILE, - or -FD to read it.\n"
    "cookiefile=[<FILE>]    Turn cookies on, starting with those of FILE.\n"
    "cookiejar=<FILE>       Turn cookies on, and save them in FILE at exit.\n"
    "cookie-script=<SCRIPT> Shell script printing the cookie to send.\n"
    "cookie-script-renew=<SECS>\n"
    "                       Run cookie-script again after SECS seconds.\n"
    "followlocation=false   Do not follow redirects.\n"
    "header=<HEADER>        Header to send ('Name: value'); repeatable.\n"
    "header-script=<SCRIPT> Shell script printing the headers to send.\n"
    "header-script-renew=<SECS>\n"
    "                       Run header-script again after SECS seconds.\n"
    "http-version=<VERSION> none, 1.0, 1.1, 2.0, 2TLS, 2-prior-knowledge...\n"
    "password=<PASSWORD>    Password of user=; +FILE, - or -FD to read it.\n"
    "protocols=<P1,P2,..>   Allow only these protocols (redirects too).\n"
    "proxy=<PROXY>          Proxy URL.\n"
    "proxy-password=<PASSWORD>\n"
    "                       Password of proxy-user=; +FILE, - or -FD.\n"
    "proxy-user=<USER>      User name for the proxy.\n"
    "sslverify=false        Do not check the server's certificate.\n"
    "ssl-cipher-list=<C1:C2:..>\n"
    "                       TLS cipher suites to use.\n"
    "ssl-version=<VERSION>  TLS version: tlsv1.2, tlsv1.3, max-tlsv1.2...\n"
    "tcp-keepalive=true     Send TCP keepalives.\n"
    "tcp-nodelay=false      Turn Nagle's algorithm on.\n"
    "timeout=<SECS>         Time limit of each request (0: none).\n"
    "tls13-ciphers=<C1:C2:..>\n"
    "                       TLS 1.3 cipher suites to use.\n"
    "unix-socket-path=<PATH>\n"
    "                       Connect to this Unix socket instead of TCP.\n"
    "user=<USER>            User name to log in with.\n"
    "user-agent=<AGENT>     User-Agent header to send.",
  .magic_config_key = "url",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,          /* ../secret.c: what was read, for restarts */
  .load = curl_load,
  .unload = curl_unload,
  .config = curl_config,
  .config_complete = curl_config_complete,
  .dump_plugin = curl_dump_plugin,
  .open = curl_open,
  .close = curl_close,
  .get_size = curl_get_size,
  .can_write = curl_can_write,
  .can_multi_conn = curl_can_multi_conn,
  .pread = curl_pread,
  .pwrite = curl_pwrite,
};

NBDKIT_REGISTER_BACKEND (curl_backend)
