/* backends/s3/s3.c: the s3 backend, a disk kept in an S3-compatible
 * object store (AWS S3, Ceph's radosgw, MinIO, ...), as nbdkit's S3
 * plugin does, in C over libcurl.  This file owns the parameters, the
 * credentials (parameters, environment, ~/.aws/credentials), the two
 * layouts and the backend's callbacks; http.c makes the requests.
 *
 * Without size=, the disk is one object, read with byte ranges and
 * never written.  With size= and object-size=, the disk is split into
 * objects of object-size bytes named KEY/%016x by their number (the
 * names of nbdkit's S3 plugin, so either can serve the other's disks);
 * an object that does not exist reads as zeroes.  A write of part of
 * an object reads it, changes it and writes it back, under a lock of
 * that object (within this process); zeroing a whole object deletes
 * it, and so does writing one that is all zeroes.  Block status lists
 * which objects exist.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "nbdkit-backend.h"
#include "s3defs.h"
#include "../secret.h"

char *bucket, *key, *endpoint, *region;
char *access_key, *secret_key, *session_token;
bool sslverify = true;
unsigned max_retries = 5;
static char *profile;
static int64_t dev_size = -1, obj_size = -1;
static int64_t single_size = -1;        /* one object: its size */

#define MAX_OBJECT_SIZE (64 << 20)

static int
set_str (const char *k, const char *value, char **r)
{
  if (*value == '\0') {
    nbdkit_error ("%s=: the value must not be empty", k);
    return -1;
  }
  free (*r);
  *r = strdup (value);
  if (*r == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

static int
set_secret (const char *k, const char *value, char **r)
{
  if (*value == '\0') {
    nbdkit_error ("%s=: the value must not be empty", k);
    return -1;
  }
  secret_free (*r);
  *r = NULL;
  return secret_read (k, value, r);
}

/* nbdkit's S3 plugin also takes these keys with '_' for '-'. */
static bool
is (const char *k, const char *name)
{
  size_t i;

  for (i = 0; name[i]; i++)
    if (k[i] != name[i] && !(name[i] == '-' && k[i] == '_'))
      return false;
  return k[i] == '\0';
}

static int
s3_config (const char *k, const char *value)
{
  if (is (k, "bucket"))
    return set_str (k, value, &bucket);
  if (is (k, "key"))
    return set_str (k, value, &key);
  if (is (k, "endpoint-url")) {
    size_t n;
    if (strncmp (value, "http://", 7) != 0 &&
        strncmp (value, "https://", 8) != 0) {
      nbdkit_error ("endpoint-url=%s: not an http:// or https:// URL "
                    "(e.g. endpoint-url=https://s3.example.com)", value);
      return -1;
    }
    if (set_str (k, value, &endpoint) == -1)
      return -1;
    n = strlen (endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
      endpoint[--n] = '\0';
    if (strchr (endpoint, '?') || strchr (endpoint, '#')) {
      nbdkit_error ("endpoint-url=%s: the URL of the service, without a "
                    "query or fragment", value);
      return -1;
    }
    return 0;
  }
  if (is (k, "region"))
    return set_str (k, value, &region);
  if (is (k, "profile"))
    return set_str (k, value, &profile);
  if (is (k, "access-key"))
    return set_secret (k, value, &access_key);
  if (is (k, "secret-key"))
    return set_secret (k, value, &secret_key);
  if (is (k, "session-token"))
    return set_secret (k, value, &session_token);
  if (is (k, "size")) {
    dev_size = nbdkit_parse_size (value);
    return dev_size == -1 ? -1 : 0;
  }
  if (is (k, "object-size")) {
    obj_size = nbdkit_parse_size (value);
    if (obj_size == -1)
      return -1;
    if (obj_size < 512 || obj_size > MAX_OBJECT_SIZE) {
      nbdkit_error ("object-size=%s: out of range (use 512 bytes to 64M, "
                    "e.g. object-size=1M)", value);
      return -1;
    }
    return 0;
  }
  if (is (k, "sslverify")) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    sslverify = r;
    return 0;
  }
  if (is (k, "retries")) {
    if (nbdkit_parse_unsigned ("retries", value, &max_retries) == -1)
      return -1;
    if (max_retries > 20) {
      nbdkit_error ("retries=%s: out of range (use 0 to 20)", value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the s3 backend takes bucket=, "
                "key=, endpoint-url=, region=, access-key=, secret-key=, "
                "session-token=, profile=, size=, object-size=, "
                "sslverify= and retries=; see nbdkit s3 --help)", k);
  return -1;
}

/* ---- credentials ---- */

static char *
trim (char *s)
{
  char *e;

  while (isspace ((unsigned char) *s))
    s++;
  e = s + strlen (s);
  while (e > s && isspace ((unsigned char) e[-1]))
    *--e = '\0';
  return s;
}

/* The profile's keys of an AWS credentials file (INI). */
static int
read_credentials_file (const char *file, const char *prof)
{
  FILE *fp = fopen (file, "r");
  char line[4096];
  bool in = false, found = false;

  if (fp == NULL) {
    nbdkit_error ("no AWS credentials: none given with access-key= and "
                  "secret-key=, none in AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, and %s: %m", file);
    return -1;
  }
  while (fgets (line, sizeof line, fp)) {
    char *l = trim (line), *eq;
    if (*l == '#' || *l == ';' || *l == '\0')
      continue;
    if (*l == '[') {
      char *e = strchr (l, ']');
      if (e) *e = '\0';
      in = strcmp (trim (l + 1), prof) == 0;
      found |= in;
      continue;
    }
    if (!in || (eq = strchr (l, '=')) == NULL)
      continue;
    *eq = '\0';
    l = trim (l);
    eq = trim (eq + 1);
    if (strcmp (l, "aws_access_key_id") == 0 && !access_key)
      access_key = strdup (eq);
    else if (strcmp (l, "aws_secret_access_key") == 0 && !secret_key)
      secret_key = strdup (eq);
    else if (strcmp (l, "aws_session_token") == 0 && !session_token)
      session_token = strdup (eq);
  }
  fclose (fp);
  if (!found) {
    nbdkit_error ("profile [%s] is not in the AWS credentials file %s%s",
                  prof, file, profile ? " (see profile=)" : "");
    return -1;
  }
  if (!access_key || !secret_key) {
    nbdkit_error ("profile [%s] of %s lacks %s", prof, file,
                  !access_key ? "aws_access_key_id" : "aws_secret_access_key");
    return -1;
  }
  nbdkit_debug ("credentials from profile [%s] of %s", prof, file);
  return 0;
}

static int
find_credentials (void)
{
  const char *e_id, *e_secret, *e_token, *file, *prof;
  char *path = NULL;
  int r;

  if (access_key || secret_key) {
    if (!access_key || !secret_key) {
      nbdkit_error ("%s= is given without %s=: give both, or neither (to "
                    "take the credentials from the environment or "
                    "~/.aws/credentials)",
                    access_key ? "access-key" : "secret-key",
                    access_key ? "secret-key" : "access-key");
      return -1;
    }
    if (profile) {
      nbdkit_error ("profile=%s and access-key= do not go together: the "
                    "keys are either given or taken from the profile",
                    profile);
      return -1;
    }
    return 0;
  }
  if (session_token) {
    nbdkit_error ("session-token= needs access-key= and secret-key=");
    return -1;
  }
  e_id = getenv ("AWS_ACCESS_KEY_ID");
  e_secret = getenv ("AWS_SECRET_ACCESS_KEY");
  e_token = getenv ("AWS_SESSION_TOKEN");
  if (!profile && (e_id && *e_id) != (e_secret && *e_secret)) {
    nbdkit_error ("%s is set in the environment without %s",
                  e_id && *e_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                  e_id && *e_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    return -1;
  }
  if (!profile && e_id && *e_id) {
    access_key = strdup (e_id);
    secret_key = strdup (e_secret);
    if (e_token && *e_token)
      session_token = strdup (e_token);
    if (!access_key || !secret_key) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    nbdkit_debug ("credentials from the environment");
    return 0;
  }
  file = getenv ("AWS_SHARED_CREDENTIALS_FILE");
  if (file == NULL || *file == '\0') {
    const char *home = getenv ("HOME");
    if (home == NULL || *home == '\0') {
      nbdkit_error ("no AWS credentials: none given with access-key= and "
                    "secret-key=, none in the environment, and no $HOME "
                    "for ~/.aws/credentials");
      return -1;
    }
    if (asprintf (&path, "%s/.aws/credentials", home) == -1) {
      nbdkit_error ("asprintf: %m");
      return -1;
    }
    file = path;
  }
  prof = profile;
  if (prof == NULL)
    prof = getenv ("AWS_PROFILE");
  if (prof == NULL || *prof == '\0')
    prof = "default";
  r = read_credentials_file (file, prof);
  free (path);
  return r;
}

static int
s3_config_complete (void)
{
  const char *r;

  if (bucket == NULL) {
    nbdkit_error ("the bucket is required: bucket=BUCKET");
    return -1;
  }
  if (key == NULL) {
    nbdkit_error ("the object is required: [key=]KEY (the object, or the "
                  "prefix of the objects with size=)");
    return -1;
  }
  if ((dev_size == -1) != (obj_size == -1)) {
    nbdkit_error ("size= and object-size= go together: both split the disk "
                  "into objects (neither: the disk is the one object KEY)");
    return -1;
  }
  if (dev_size != -1 && (dev_size == 0 || dev_size % obj_size != 0)) {
    nbdkit_error ("size=%" PRId64 " must be a multiple of object-size=%"
                  PRId64 " (and not 0)", dev_size, obj_size);
    return -1;
  }
  if (region == NULL) {
    r = getenv ("AWS_REGION");
    if (r == NULL || *r == '\0')
      r = getenv ("AWS_DEFAULT_REGION");
    if (r == NULL || *r == '\0')
      r = "us-east-1";
    if ((region = strdup (r)) == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
  }
  if (endpoint == NULL &&
      asprintf (&endpoint, "https://s3.%s.amazonaws.com", region) == -1) {
    nbdkit_error ("asprintf: %m");
    return -1;
  }
  return find_credentials ();
}

/* ---- the objects ---- */

static char *
object_name (uint64_t n)
{
  char *s;

  if (asprintf (&s, "%s/%016" PRIx64, key, n) == -1) {
    nbdkit_error ("asprintf: %m");
    return NULL;
  }
  return s;
}

/* One object's lock, for read-modify-write: the numbers of the objects
 * locked now.
 */
static pthread_mutex_t locks_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t locks_cond = PTHREAD_COND_INITIALIZER;
static uint64_t *locked;
static size_t nlocked, caplocked;

static int
obj_lock (uint64_t n)
{
  size_t i;

  pthread_mutex_lock (&locks_lock);
 again:
  for (i = 0; i < nlocked; i++)
    if (locked[i] == n) {
      pthread_cond_wait (&locks_cond, &locks_lock);
      goto again;
    }
  if (nlocked == caplocked) {
    size_t c = caplocked ? caplocked * 2 : 64;
    uint64_t *p = realloc (locked, c * sizeof *p);
    if (p == NULL) {
      pthread_mutex_unlock (&locks_lock);
      nbdkit_error ("realloc: %m");
      return -1;
    }
    locked = p;
    caplocked = c;
  }
  locked[nlocked++] = n;
  pthread_mutex_unlock (&locks_lock);
  return 0;
}

static void
obj_unlock (uint64_t n)
{
  size_t i;

  pthread_mutex_lock (&locks_lock);
  for (i = 0; i < nlocked; i++)
    if (locked[i] == n) {
      locked[i] = locked[--nlocked];
      break;
    }
  pthread_cond_broadcast (&locks_cond);
  pthread_mutex_unlock (&locks_lock);
}

/* Read len bytes at off of object n into buf: a missing object, or the
 * part past the end of a short one, reads as zeroes.  *exists says
 * whether it exists (may be NULL).
 */
static int
obj_read (uint64_t n, void *buf, uint32_t len, uint32_t off, bool *exists)
{
  char range[64], *name = object_name (n);
  struct s3_request q = { .method = "GET", .object = name, .range = range,
                          .out = buf, .out_len = len };
  struct s3_response r;
  int ret = 0;

  if (name == NULL)
    return -1;
  snprintf (range, sizeof range, "%" PRIu32 "-%" PRIu64, off,
            (uint64_t) off + len - 1);
  if (s3_perform (&q, &r) == -1)
    ret = -1;
  else if (r.status == 404 && strcmp (r.code, "NoSuchBucket") != 0) {
    memset (buf, 0, len);
    if (exists) *exists = false;
  }
  else if (r.status == 416) {           /* an object shorter than off */
    memset (buf, 0, len);
    if (exists) *exists = true;
  }
  else if (r.status == 200 || r.status == 206) {
    if (r.status == 200 && off != 0) {
      nbdkit_error ("GET s3://%s/%s: the server ignored the byte range",
                    bucket, name);
      errno = EIO;
      ret = -1;
    }
    else if (q.out_got < len)
      memset ((char *) buf + q.out_got, 0, len - q.out_got);
    if (exists) *exists = true;
  }
  else
    ret = s3_fail ("GET", name, &r);
  free (name);
  return ret;
}

static bool
all_zero (const char *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

static int
obj_delete (uint64_t n)
{
  char *name = object_name (n);
  struct s3_request q = { .method = "DELETE", .object = name };
  struct s3_response r;
  int ret = 0;

  if (name == NULL)
    return -1;
  if (s3_perform (&q, &r) == -1)
    ret = -1;
  else if (r.status != 204 && r.status != 200 && r.status != 404)
    ret = s3_fail ("DELETE", name, &r);
  free (name);
  return ret;
}

/* Write the whole object n (all zeroes: delete it). */
static int
obj_write (uint64_t n, const void *buf)
{
  char *name;
  struct s3_request q = { .method = "PUT", .body = buf,
                          .body_len = obj_size };
  struct s3_response r;
  int ret = 0;

  if (all_zero (buf, obj_size))
    return obj_delete (n);
  if ((name = object_name (n)) == NULL)
    return -1;
  q.object = name;
  if (s3_perform (&q, &r) == -1)
    ret = -1;
  else if (r.status != 200)
    ret = s3_fail ("PUT", name, &r);
  free (name);
  return ret;
}

/* Change part of object n: data (NULL: zeroes) at off, len bytes. */
static int
obj_modify (uint64_t n, const void *data, uint32_t len, uint32_t off)
{
  char *tmp;
  bool exists;
  int r = -1;

  if (obj_lock (n) == -1)
    return -1;
  if (off == 0 && len == obj_size) {
    r = data ? obj_write (n, data) : obj_delete (n);
    obj_unlock (n);
    return r;
  }
  tmp = malloc (obj_size);
  if (tmp == NULL) {
    nbdkit_error ("malloc: %m");
    goto out;
  }
  if (obj_read (n, tmp, obj_size, 0, &exists) == -1)
    goto out;
  if (!exists && data == NULL) {        /* zeroes already */
    r = 0;
    goto out;
  }
  if (data)
    memcpy (tmp + off, data, len);
  else
    memset (tmp + off, 0, len);
  r = obj_write (n, tmp);
 out:
  free (tmp);
  obj_unlock (n);
  return r;
}

/* ---- the callbacks ---- */

static int
s3_get_ready (void)
{
  struct s3_response r;

  if (http_init () == -1)
    return -1;
  if (dev_size == -1) {
    /* One object: its size, and a clear refusal if it is not there. */
    struct s3_request q = { .method = "HEAD", .object = key };
    if (s3_perform (&q, &r) == -1)
      return -1;
    if (r.status == 200 && r.content_length >= 0) {
      single_size = r.content_length;
      return 0;
    }
    if (r.status == 200) {
      nbdkit_error ("HEAD s3://%s/%s: no Content-Length", bucket, key);
      return -1;
    }
    /* A HEAD has no error body: ask again with a GET for the reason. */
    {
      char one[1];
      struct s3_request g = { .method = "GET", .object = key,
                              .range = "0-0", .out = one, .out_len = 1 };
      struct s3_response r2;
      if (s3_perform (&g, &r2) == 0 && r2.status >= 400)
        r = r2;
    }
    s3_fail ("HEAD", key, &r);
    return -1;
  }
  else {
    /* Split: the bucket must be there and the credentials good. */
    char *p = s3_encode (key, false), *query;
    struct s3_request q = { .method = "GET" };
    int ret = 0;
    if (p == NULL)
      return -1;
    if (asprintf (&query, "list-type=2&max-keys=1&prefix=%s%%2F", p) == -1) {
      nbdkit_error ("asprintf: %m");
      free (p);
      return -1;
    }
    free (p);
    q.query = query;
    if (s3_perform (&q, &r) == -1)
      ret = -1;
    else if (r.status != 200)
      ret = s3_fail ("list", NULL, &r);
    free (q.out_alloc);
    free (query);
    return ret;
  }
}

static void
s3_unload (void)
{
  http_free ();
  free (bucket);
  free (key);
  free (endpoint);
  free (region);
  free (profile);
  secret_free (access_key);
  secret_free (secret_key);
  secret_free (session_token);
  free (locked);
}

static void
s3_dump_plugin (void)
{
  printf ("libcurl_version=%s\n", curl_version_info (CURLVERSION_NOW)->version);
  fflush (stdout);
}

static int handle_dummy;

static void *
s3_open (int readonly)
{
  return &handle_dummy;
}

static int64_t
s3_get_size (void *h)
{
  return dev_size != -1 ? dev_size : single_size;
}

static int
s3_split (void *h)
{
  return dev_size != -1;
}

static int s3_yes (void *h) { return 1; }
static int s3_fua (void *h) { return NBDKIT_FUA_NATIVE; }

static int
s3_block_size (void *h, uint32_t *minimum, uint32_t *preferred,
               uint32_t *maximum)
{
  *minimum = 1;
  *preferred = 4096;
  if (dev_size != -1 && (obj_size & (obj_size - 1)) == 0 &&
      obj_size <= 32 << 20)
    *preferred = obj_size;
  *maximum = 0xffffffff;
  return 0;
}

/* Walk [offset, offset+count) object by object. */
#define FOR_EACH_PIECE(offset, count)                                   \
  for (uint64_t o_ = (offset), e_ = (offset) + (count); o_ < e_; )      \
    for (uint64_t n = o_ / obj_size, boff_ = o_ % obj_size,             \
           len_ = (uint64_t) obj_size - boff_ < e_ - o_ ?               \
           (uint64_t) obj_size - boff_ : e_ - o_, once_ = 1;            \
         once_; once_ = 0, o_ += len_)

static int
s3_pread (void *h, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  if (dev_size == -1) {
    char range[64];
    struct s3_request q = { .method = "GET", .object = key, .range = range,
                            .out = buf, .out_len = count };
    struct s3_response r;
    snprintf (range, sizeof range, "%" PRIu64 "-%" PRIu64, offset,
              offset + count - 1);
    if (s3_perform (&q, &r) == -1)
      return -1;
    if (r.status != 206 && !(r.status == 200 && offset == 0))
      return s3_fail ("GET", key, &r);
    if (q.out_got != count) {
      nbdkit_error ("GET s3://%s/%s: %zu bytes at %" PRIu64 " instead of %"
                    PRIu32 " (was the object replaced?)", bucket, key,
                    q.out_got, offset, count);
      errno = EIO;
      return -1;
    }
    return 0;
  }
  FOR_EACH_PIECE (offset, count) {
    if (obj_read (n, (char *) buf + (o_ - offset), len_, boff_, NULL) == -1)
      return -1;
  }
  return 0;
}

static int
s3_pwrite (void *h, const void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  FOR_EACH_PIECE (offset, count) {
    if (obj_modify (n, (const char *) buf + (o_ - offset), len_, boff_) == -1)
      return -1;
  }
  return 0;
}

static int
s3_flush (void *h, uint32_t flags)
{
  return 0;                     /* each PUT is durable when answered */
}

/* Trim is zero: whole objects are deleted, parts are written zeroes. */
static int
s3_zero (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  FOR_EACH_PIECE (offset, count) {
    if (obj_modify (n, NULL, len_, boff_) == -1)
      return -1;
  }
  return 0;
}

/* Add the objects first..n-1 with type to the extents. */
static int
add_objects (struct nbdkit_extents *ex, uint64_t first, uint64_t n,
             uint32_t type)
{
  if (n <= first)
    return 0;
  return nbdkit_add_extent (ex, first * obj_size, (n - first) * obj_size,
                            type);
}

/* The encoded continuation token of a truncated listing into *token
 * (NULL when there is none).
 */
static int
next_token (const char *xml, char **token)
{
  static const char open[] = "<NextContinuationToken>";
  const char *a = strstr (xml, open), *b;
  char t[1024];

  *token = NULL;
  if (a == NULL)
    return 0;
  a += sizeof open - 1;
  b = strstr (a, "</NextContinuationToken>");
  if (b == NULL || (size_t) (b - a) >= sizeof t)
    return 0;
  memcpy (t, a, b - a);
  t[b - a] = '\0';
  *token = s3_encode (t, false);
  return *token ? 0 : -1;
}

static int
s3_extents (void *h, uint32_t count, uint64_t offset, uint32_t flags,
            struct nbdkit_extents *ex)
{
  const uint32_t hole = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
  uint64_t first = offset / obj_size;
  uint64_t last = (offset + count + obj_size - 1) / obj_size;
  uint64_t pos = first;         /* objects before pos are added */
  char *prefix = NULL, *start = NULL, *token = NULL;
  size_t plen;
  int ret = -1;

  prefix = s3_encode (key, false);
  if (prefix == NULL)
    return -1;
  if (first > 0) {
    char *s = object_name (first - 1);
    if (s == NULL) goto out;
    start = s3_encode (s, false);
    free (s);
    if (start == NULL) goto out;
  }
  plen = strlen (key) + 1;
  for (;;) {
    struct s3_request q = { .method = "GET" };
    struct s3_response r;
    char *query, *p;
    bool more, done = false;

    if (asprintf (&query, "%s%s%slist-type=2&prefix=%s%%2F%s%s",
                  token ? "continuation-token=" : "", token ? token : "",
                  token ? "&" : "", prefix,
                  start && !token ? "&start-after=" : "",
                  start && !token ? start : "") == -1) {
      nbdkit_error ("asprintf: %m");
      goto out;
    }
    q.query = query;
    if (s3_perform (&q, &r) == -1) {
      free (query);
      goto out;
    }
    free (query);
    if (r.status != 200) {
      free (q.out_alloc);
      s3_fail ("list", NULL, &r);
      goto out;
    }
    for (p = q.out_alloc; p && (p = strstr (p, "<Key>")) != NULL; ) {
      char *k = p + 5, *e = strstr (k, "</Key>");
      uint64_t n;
      char hex[17];
      if (e == NULL)
        break;
      p = e;
      /* KEY/ and 16 lowercase hex digits: an object of the disk. */
      if ((size_t) (e - k) != plen + 16 || k[plen - 1] != '/')
        continue;
      memcpy (hex, k + plen, 16);
      hex[16] = '\0';
      if (strspn (hex, "0123456789abcdef") != 16)
        continue;
      n = strtoull (hex, NULL, 16);
      if (n < pos)
        continue;
      if (n >= last) {
        done = true;
        break;
      }
      if (add_objects (ex, pos, n, hole) == -1 ||
          add_objects (ex, n, n + 1, 0) == -1)
        goto out_free;
      pos = n + 1;
    }
    more = q.out_alloc && strstr (q.out_alloc, "<IsTruncated>true<") != NULL;
    free (token);
    token = NULL;
    if (more && !done && next_token (q.out_alloc, &token) == -1)
      goto out_free;
    free (q.out_alloc);
    if (!more || done || token == NULL)
      break;
    continue;
  out_free:
    free (q.out_alloc);
    goto out;
  }
  if (add_objects (ex, pos, last, hole) == -1)
    goto out;
  ret = 0;
 out:
  free (prefix);
  free (start);
  free (token);
  return ret;
}

static struct nbdkit_backend s3_backend = {
  .name = "s3",
  .longname = "nbdkit s3 backend",
  .version = PACKAGE_VERSION,
  .description = "A disk kept in an S3-compatible object store (libcurl).",
  .config_help =
    "bucket=<BUCKET>        (required) The bucket.\n"
    "[key=]<KEY>            (required) The object; with size=, the prefix\n"
    "                       of the objects (KEY/0000000000000000, ...).\n"
    "endpoint-url=<URL>     The service (https://s3.REGION.amazonaws.com).\n"
    "region=<REGION>        The region to sign for ($AWS_REGION, us-east-1).\n"
    "access-key=<KEY>       The access key id; +FILE, - or -FD to read it.\n"
    "secret-key=<KEY>       The secret key; +FILE, - or -FD to read it.\n"
    "session-token=<TOKEN>  A session token; +FILE, - or -FD to read it.\n"
    "profile=<PROFILE>      The profile of ~/.aws/credentials ($AWS_PROFILE,\n"
    "                       default).\n"
    "size=<SIZE>            With object-size=: the size of a disk split\n"
    "object-size=<SIZE>     into objects of object-size, writable.\n"
    "sslverify=false        Do not check the server's certificate.\n"
    "retries=<N>            Retries of a request on 5xx or throttling (5).",
  .magic_config_key = "key",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,          /* ../secret.c: what was read, for restarts */
  .config = s3_config,
  .config_complete = s3_config_complete,
  .get_ready = s3_get_ready,
  .unload = s3_unload,
  .dump_plugin = s3_dump_plugin,
  .open = s3_open,
  .get_size = s3_get_size,
  .block_size = s3_block_size,
  .can_write = s3_split,
  .can_flush = s3_yes,
  .can_trim = s3_split,
  .can_zero = s3_split,
  .can_extents = s3_split,
  .can_multi_conn = s3_yes,
  .can_fua = s3_fua,
  .pread = s3_pread,
  .pwrite = s3_pwrite,
  .flush = s3_flush,
  .trim = s3_zero,
  .zero = s3_zero,
  .extents = s3_extents,
};

NBDKIT_REGISTER_BACKEND (s3_backend)
