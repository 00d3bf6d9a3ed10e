/* backends/curl/curldefs.h: what the files of the curl backend share.
 *
 * curl.c owns the parameters (the globals below, set by config and
 * checked by config_complete) and the backend's callbacks; pool.c the
 * pool of libcurl easy handles and every request made with them
 * (HEAD/GET/PUT, retries, the mapping of HTTP and libcurl errors to
 * errno); scripts.c the header-script and cookie-script; ../secret.c
 * (shared with the ssh backend) the reading of password=,
 * proxy-password= and cookie= from a file, a descriptor or the
 * terminal; ../curl-share.c (shared with the s3 backend) the CURLSH of
 * the pool and libcurl's trace for -D curl.verbose=1.
 */

#ifndef NBDKIT_CURL_CURLDEFS_H
#define NBDKIT_CURL_CURLDEFS_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

/* ---- the parameters (curl.c) ---- */

extern char *url;                   /* url=, as given */
extern char *display_url;           /* url= without a password, for messages */
extern bool url_is_http;            /* http:// or https:// */
extern char *cainfo, *capath;
extern unsigned connections;        /* the size of the pool */
extern char *cookie;                /* cookie= (read by secret.c) */
extern char *cookiefile, *cookiejar;
extern char *cookie_script, *header_script;
extern unsigned cookie_script_renew, header_script_renew;
extern bool followlocation;
extern struct curl_slist *headers;  /* header=, in order */
extern long http_version;
extern const char *http_version_name;
extern char *password, *proxy_password;
extern char *protocols;             /* protocols=, checked */
extern char *proxy, *proxy_user;
extern bool sslverify;
extern char *ssl_cipher_list, *tls13_ciphers;
extern long ssl_version;
extern const char *ssl_version_name;
extern bool tcp_keepalive, tcp_nodelay;
extern long timeout;                /* seconds, 0: libcurl's default */
extern char *unix_socket_path;
extern char *user, *user_agent;

/* -D curl.verbose=1, -D curl.scripts=1, -D curl.retries=N. */
extern int debug_verbose, debug_scripts, max_retries;

/* ---- pool.c ---- */

struct curl_handle;

/* Set every option of the parameters on c.  Returns 0, or -1 after
 * nbdkit_error naming the parameter libcurl refused.
 */
extern int setup_easy_handle (CURL *c);

/* Start and end of the pool (config_complete, unload). */
extern int pool_init (void);
extern void pool_free (void);

/* Take a handle (waiting while all 'connections' are busy), give it
 * back.  NULL after nbdkit_error.
 */
extern struct curl_handle *pool_get (void);
extern void pool_put (struct curl_handle *ch);

/* The requests.  Each returns 0, or -1 after nbdkit_error and
 * nbdkit_set_error.  pool_size also checks that an HTTP server takes
 * byte ranges.
 */
extern int pool_size (struct curl_handle *ch, int64_t *size);
extern int pool_read (struct curl_handle *ch, void *buf, uint32_t count,
                      uint64_t offset);
extern int pool_write (struct curl_handle *ch, const void *buf,
                       uint32_t count, uint64_t offset, int64_t size);

/* ---- scripts.c ---- */

/* Run header-script and cookie-script if they never ran or are due for
 * renewal.  Then *hdrs gets a copy of the headers to send (of the
 * script, or of header=) and *cookie_out a copy of the cookie to send
 * (of the script, or NULL: cookie= is set once per handle).  Returns 0,
 * or -1 after nbdkit_error.
 */
extern int scripts_get (struct curl_slist **hdrs, char **cookie_out);
extern void scripts_unload (void);

/* ---- ../secret.c: secret_read, secret_free (see ../secret.h) ---- */

#include "../secret.h"

#endif /* NBDKIT_CURL_CURLDEFS_H */
