/* backends/s3/s3defs.h: what the files of the s3 backend share.
 *
 * s3.c owns the parameters and the backend's callbacks (one object, or
 * a disk split into objects); credentials.c the credentials not given
 * as parameters (environment, ~/.aws/credentials); whole.c the
 * writable one-object disk (write-whole-object=true: a local copy,
 * PUT whole on flush); http.c the libcurl handles and every S3
 * request made with them (signing with libcurl's SigV4, several at
 * once on the thread's multi handle, retries, the mapping of HTTP
 * status and S3 error codes to messages and errno).
 */

#ifndef NBDKIT_S3_S3DEFS_H
#define NBDKIT_S3_S3DEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the parameters (s3.c) ---- */

extern char *bucket, *key, *endpoint, *region;
extern char *access_key, *secret_key, *session_token;
extern char *profile;
extern bool sslverify;
extern unsigned max_retries;            /* retries= */

/* ---- credentials.c ---- */

/* Fill access_key, secret_key and session_token from the environment
 * or the credentials file when the parameters did not give them.
 * Returns 0, or -1 after nbdkit_error.
 */
extern int find_credentials (void);

/* ---- http.c ---- */

/* At most this many requests of one s3_perform_all run at once (each
 * on a connection of its own).
 */
#define S3_PARALLEL 16

/* A response: the HTTP status (0 when none came) and, for an error, the
 * S3 error code and message of its XML body.
 */
struct s3_response {
  long status;
  char code[64];
  char message[256];
  char etag[80];                /* the ETag header, quotes kept */
  int64_t content_length;       /* of a HEAD, -1 if none */
};

extern int http_init (void);
extern void http_free (void);

/* One request.
 *   method:  "GET", "HEAD", "PUT" or "DELETE"
 *   object:  the key of the object (NULL: the bucket itself)
 *   query:   already encoded and sorted, or NULL
 *   range:   "FIRST-LAST" for a GET, or NULL
 *   body, body_len: of a PUT
 *   out, out_len: where a GET's body goes; *out_got gets its length
 *   (a GET with out == NULL and !use_fd collects into a malloc'd
 *   *out_alloc, for listings).
 *   use_fd:  the body is in the file fd instead: a PUT sends
 *   [fd_off, fd_off + body_len) of it, whose SHA-256 (hex) the caller
 *   gives in body_sha256; a GET writes at most out_len bytes at fd_off.
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
  bool use_fd;
  int fd;
  uint64_t fd_off;
  const char *body_sha256;
  size_t body_sent;             /* (http.c's: the PUT's progress) */
};

/* Make the n requests q[0..n-1], at once (S3_PARALLEL at a time), each
 * tried again on 5xx, throttling and transport errors (retries=, with
 * backoff); r[i] gets the answer of q[i].  Returns 0 when an HTTP
 * answer came for every request (whatever its status: the caller
 * judges r[i].status), -1 with errno after nbdkit_error when one could
 * not be had.
 */
extern int s3_perform_all (struct s3_request *q, struct s3_response *r,
                           size_t n);
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

extern void s3_sha256_hex (const void *data, size_t len, char out[65]);

/* ---- s3.c, for whole.c ---- */

/* Lock number n against the other users of the same number (the
 * objects of a split disk, the blocks of a whole-object copy: never
 * both in one process).  obj_lock returns -1 after nbdkit_error.
 */
extern int obj_lock (uint64_t n);
extern void obj_unlock (uint64_t n);

/* Read [offset, offset+count) of the one object KEY by byte ranges
 * (into buf, or with use_fd into that file at the same offset),
 * several ranges at once for a large count.  -1 after nbdkit_error.
 */
extern int one_read (void *buf, int fd, uint64_t count, uint64_t offset);

/* ---- whole.c ---- */

extern bool write_whole;                /* write-whole-object=true */

/* get_ready: take up the local copy of an earlier incarnation of this
 * backend, if there is one.  size: of the object.
 */
extern int whole_get_ready (int64_t size);
extern int whole_pread (void *buf, uint32_t count, uint64_t offset);
extern int whole_pwrite (const void *buf, uint32_t count, uint64_t offset);
extern int whole_zero (uint32_t count, uint64_t offset);
/* PUT the local copy if it has writes not yet PUT. */
extern int whole_flush (void);
/* At unload: a last flush, then the local copy removed (kept, and
 * said where, if the flush failed).
 */
extern void whole_unload (void);

#endif /* NBDKIT_S3_S3DEFS_H */
