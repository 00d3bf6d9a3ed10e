/* backends/s3/s3defs.h: what the files of the s3 backend share.
 *
 * s3.c owns the parameters, the credentials and the backend's
 * callbacks (one object, or a disk split into objects); http.c owns
 * the pool of libcurl handles and every S3 request made with them
 * (signing with libcurl's SigV4, retries, the mapping of HTTP status
 * and S3 error codes to messages and errno).
 */

#ifndef NBDKIT_S3_S3DEFS_H
#define NBDKIT_S3_S3DEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the parameters (s3.c) ---- */

extern char *bucket, *key, *endpoint, *region;
extern char *access_key, *secret_key, *session_token;
extern bool sslverify;
extern unsigned max_retries;            /* retries= */

/* ---- http.c ---- */

/* A response: the HTTP status (0 when none came) and, for an error, the
 * S3 error code and message of its XML body.
 */
struct s3_response {
  long status;
  char code[64];
  char message[256];
  int64_t content_length;       /* of a HEAD, -1 if none */
};

extern int http_init (void);
extern void http_free (void);

/* One request, with retries on 5xx, throttling and transport errors.
 *   method:  "GET", "HEAD", "PUT" or "DELETE"
 *   object:  the key of the object (NULL: the bucket itself)
 *   query:   already encoded and sorted, or NULL
 *   range:   "FIRST-LAST" for a GET, or NULL
 *   body, body_len: of a PUT
 *   out, out_len: where a GET's body goes; *out_got gets its length
 *   (a GET with out == NULL collects into a malloc'd *out_alloc,
 *   for listings).
 * Returns 0 when an HTTP answer came (whatever its status: the caller
 * judges r->status), -1 after nbdkit_error when none could be had.
 */
struct s3_request {
  const char *method;
  const char *object;
  const char *query;
  const char *range;
  const void *body;
  size_t body_len;
  void *out;
  size_t out_len;
  size_t out_got;
  char *out_alloc;
};

extern int s3_perform (struct s3_request *q, struct s3_response *r);

/* The message of a failed response (for nbdkit_error) and its errno:
 * 403 EACCES, 404 ENOENT, else EIO.  what names the operation.
 */
extern int s3_fail (const char *what, const char *object,
                    const struct s3_response *r);

/* Percent-encode s (RFC 3986 unreserved kept; '/' kept when keep_slash)
 * into a malloc'd string.
 */
extern char *s3_encode (const char *s, bool keep_slash);

#endif /* NBDKIT_S3_S3DEFS_H */
