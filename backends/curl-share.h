/* backends/curl-share.h: what the curl and s3 backends share of
 * libcurl: the CURLSH that lets their easy handles share DNS answers,
 * TLS sessions and connections across threads (with its locks), and
 * libcurl's trace as debug messages.  Implemented in curl-share.c.
 */

#ifndef NBDKIT_BACKENDS_CURL_SHARE_H
#define NBDKIT_BACKENDS_CURL_SHARE_H

#include <curl/curl.h>

/* A share of the given CURL_LOCK_DATA_* kinds (a bit mask of
 * 1 << CURL_LOCK_DATA_...), locked for use by several threads.  NULL
 * (after nbdkit_error) if libcurl has no memory for it.  One per
 * process: the locks are static.
 */
#define CSHARE_BIT(kind) (1u << (kind))
extern CURLSH *cshare_new (unsigned kinds);
extern void cshare_free (CURLSH *share);

/* For CURLOPT_DEBUGFUNCTION: libcurl's informational lines and the
 * headers sent and received, each as one nbdkit_debug line ("*", ">"
 * or "<" first); the data is not shown.
 */
extern int cshare_debug_cb (CURL *c, curl_infotype type, char *data,
                            size_t size, void *opaque);

#endif /* NBDKIT_BACKENDS_CURL_SHARE_H */
