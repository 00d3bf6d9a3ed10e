/* backends/curl-share.c: the libcurl share of the curl and s3
 * backends (DNS cache, TLS sessions, connections, cookies, used by
 * the easy handles of every thread) with its locks, and libcurl's
 * trace as debug messages.  See curl-share.h.
 */

#include <config.h>

#include <pthread.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "nbdkit-backend.h"
#include "curl-share.h"

static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
static pthread_once_t locks_once = PTHREAD_ONCE_INIT;

static void
init_locks (void)
{
  size_t i;

  for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init (&share_locks[i], NULL);
}

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

CURLSH *
cshare_new (unsigned kinds)
{
  CURLSH *share;
  int k;

  pthread_once (&locks_once, init_locks);
  share = curl_share_init ();
  if (share == NULL) {
    nbdkit_error ("curl_share_init: out of memory");
    return NULL;
  }
  curl_share_setopt (share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt (share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  for (k = 0; k < CURL_LOCK_DATA_LAST; k++)
    if (kinds & CSHARE_BIT (k))
      curl_share_setopt (share, CURLSHOPT_SHARE, (curl_lock_data) k);
  return share;
}

void
cshare_free (CURLSH *share)
{
  if (share)
    curl_share_cleanup (share);
}

int
cshare_debug_cb (CURL *c, curl_infotype type, char *data, size_t size,
                 void *opaque)
{
  const char *prefix;

  switch (type) {
  case CURLINFO_TEXT: prefix = "*"; break;
  case CURLINFO_HEADER_IN: prefix = "<"; break;
  case CURLINFO_HEADER_OUT: prefix = ">"; break;
  default:
    return 0;                   /* data: not printed */
  }
  while (size > 0) {
    size_t n = 0;

    while (n < size && data[n] != '\n')
      n++;
    if (n > 0 && data[n - 1] == '\r')
      nbdkit_debug ("%s %.*s", prefix, (int) n - 1, data);
    else if (n > 0)
      nbdkit_debug ("%s %.*s", prefix, (int) n, data);
    if (n < size)
      n++;
    data += n;
    size -= n;
  }
  return 0;
}
