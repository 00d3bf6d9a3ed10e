/* backends/s3/s3.c: the s3 backend, a disk kept in an S3-compatible
 * object store (AWS S3, Ceph's radosgw, MinIO, ...), as nbdkit's S3
 * plugin does, in C over libcurl.  This file owns the parameters, the
 * two layouts and the backend's callbacks; credentials.c finds the
 * credentials not given as parameters, http.c makes the requests,
 * whole.c makes one object writable.
 *
 * Without size=, the disk is one object, read with byte ranges (a
 * large read as several ranges at once); it is read-only unless
 * write-whole-object=true, where whole.c keeps a local copy and PUTs
 * it whole on flush.  With size= and object-size=, the disk is split into
 * objects of object-size bytes named KEY/%016x by their number (the
 * names of nbdkit's S3 plugin, so either can serve the other's disks);
 * an object that does not exist reads as zeroes.  A write of part of
 * an object reads it, changes it and writes it back, under a lock of
 * that object (within this process); zeroing a whole object deletes
 * it, and so does writing one that is all zeroes.  The objects that one
 * request spans are read, written or deleted at once (s3_perform_all).
 * Block status lists which objects exist.
 */

#include <config.h>

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
char *profile;
static int64_t dev_size = -1, obj_size = -1;
static int64_t single_size = -1;        /* one object: its size */

#define MAX_OBJECT_SIZE (64 << 20)
/* A read of the one object larger than this is made of several ranges
 * at once.
 */
#define ONE_CHUNK (4 << 20)
/* At most this many objects of a split disk are locked at once for one
 * request (the rest of it waits its turn).
 */
#define BATCH (2 * S3_PARALLEL)

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
  if (is (k, "write-whole-object")) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    write_whole = r;
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
                "write-whole-object=, sslverify= and retries=; see "
                "nbdkit s3 --help)", k);
  return -1;
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
  if (write_whole && dev_size != -1) {
    nbdkit_error ("write-whole-object=true is for a disk that is one object: "
                  "a disk split with size= and object-size= is writable "
                  "without it");
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

int
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

void
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

/* Part of one object that a request touches. */
struct piece {
  uint64_t n;                   /* the object */
  uint32_t off, len;            /* the part of it */
  char *buf;                    /* a read's bytes; a write's (NULL: zeroes) */
  bool exists;                  /* read: whether the object exists */
};

/* The requests of np pieces, with their names and ranges. */
struct batch {
  struct s3_request q[BATCH];
  struct s3_response r[BATCH];
  char *name[BATCH];
  char range[BATCH][64];
};

static void
batch_free (struct batch *b, size_t np)
{
  size_t i;

  for (i = 0; i < np; i++)
    free (b->name[i]);
}

/* Read the pieces p[0..np-1] (np <= BATCH) at once: a missing object,
 * or the part past the end of a short one, reads as zeroes.
 */
static int
obj_read_all (struct piece *p, size_t np)
{
  struct batch b;
  size_t i;
  int ret = 0;

  memset (&b, 0, sizeof b);
  for (i = 0; i < np; i++) {
    if ((b.name[i] = object_name (p[i].n)) == NULL) {
      batch_free (&b, i);
      return -1;
    }
    snprintf (b.range[i], sizeof b.range[i], "%" PRIu32 "-%" PRIu64,
              p[i].off, (uint64_t) p[i].off + p[i].len - 1);
    b.q[i] = (struct s3_request) { .method = "GET", .object = b.name[i],
                                   .range = b.range[i], .out = p[i].buf,
                                   .out_len = p[i].len };
  }
  if (s3_perform_all (b.q, b.r, np) == -1) {
    batch_free (&b, np);
    return -1;
  }
  for (i = 0; ret == 0 && i < np; i++) {
    struct s3_response *r = &b.r[i];
    if (r->status == 404 && strcmp (r->code, "NoSuchBucket") != 0) {
      memset (p[i].buf, 0, p[i].len);
      p[i].exists = false;
    }
    else if (r->status == 416) {        /* an object shorter than off */
      memset (p[i].buf, 0, p[i].len);
      p[i].exists = true;
    }
    else if (r->status == 200 || r->status == 206) {
      if (r->status == 200 && p[i].off != 0) {
        nbdkit_error ("GET s3://%s/%s: the server ignored the byte range",
                      bucket, b.name[i]);
        errno = EIO;
        ret = -1;
      }
      else if (b.q[i].out_got < p[i].len)
        memset (p[i].buf + b.q[i].out_got, 0, p[i].len - b.q[i].out_got);
      p[i].exists = true;
    }
    else
      ret = s3_fail ("GET", b.name[i], r);
  }
  batch_free (&b, np);
  return ret;
}

static bool
all_zero (const char *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

/* Write the whole objects of the pieces p[0..np-1] (np <= BATCH) at
 * once; one whose data is NULL or all zeroes is deleted.  The caller
 * holds their locks.
 */
static int
obj_put_all (struct piece *p, size_t np)
{
  struct batch b;
  size_t i;
  int ret = 0;

  memset (&b, 0, sizeof b);
  for (i = 0; i < np; i++) {
    bool del = p[i].buf == NULL || all_zero (p[i].buf, obj_size);
    if ((b.name[i] = object_name (p[i].n)) == NULL) {
      batch_free (&b, i);
      return -1;
    }
    b.q[i] = (struct s3_request) { .method = del ? "DELETE" : "PUT",
                                   .object = b.name[i],
                                   .body = del ? NULL : p[i].buf,
                                   .body_len = del ? 0 : obj_size };
  }
  if (s3_perform_all (b.q, b.r, np) == -1) {
    batch_free (&b, np);
    return -1;
  }
  for (i = 0; ret == 0 && i < np; i++) {
    long st = b.r[i].status;
    if (b.q[i].body ? st != 200 : (st != 204 && st != 200 && st != 404))
      ret = s3_fail (b.q[i].method, b.name[i], &b.r[i]);
  }
  batch_free (&b, np);
  return ret;
}

/* Change part of object n, locked by the caller: data (NULL: zeroes)
 * of the piece.
 */
static int
obj_modify (const struct piece *p)
{
  struct piece whole = { .n = p->n, .off = 0, .len = obj_size };
  int r = -1;

  whole.buf = malloc (obj_size);
  if (whole.buf == NULL) {
    nbdkit_error ("malloc: %m");
    return -1;
  }
  if (obj_read_all (&whole, 1) == -1)
    goto out;
  if (!whole.exists && p->buf == NULL) {        /* zeroes already */
    r = 0;
    goto out;
  }
  if (p->buf)
    memcpy (whole.buf + p->off, p->buf, p->len);
  else
    memset (whole.buf + p->off, 0, p->len);
  r = obj_put_all (&whole, 1);
 out:
  free (whole.buf);
  return r;
}

/* The pieces of [offset, offset+count) from pos on, at most BATCH;
 * returns how many, and moves pos past them.  buf is the request's
 * (NULL: zeroes).
 */
static size_t
pieces (struct piece *p, const char *buf, uint64_t offset, uint64_t count,
        uint64_t *pos)
{
  size_t np = 0;

  while (np < BATCH && *pos < offset + count) {
    uint64_t n = *pos / obj_size, boff = *pos % obj_size;
    uint64_t len = obj_size - boff;
    if (len > offset + count - *pos)
      len = offset + count - *pos;
    p[np] = (struct piece) { .n = n, .off = boff, .len = len,
                             .buf = buf ? (char *) buf + (*pos - offset)
                                        : NULL };
    np++;
    *pos += len;
  }
  return np;
}

static int
split_pread (void *buf, uint32_t count, uint64_t offset)
{
  struct piece p[BATCH];
  uint64_t pos = offset;
  size_t np;

  while ((np = pieces (p, buf, offset, count, &pos)) > 0)
    if (obj_read_all (p, np) == -1)
      return -1;
  return 0;
}

/* Write buf (NULL: zeroes) at [offset, offset+count): the whole
 * objects at once, the parts of objects (at most the first and the
 * last) by read-modify-write, each batch under the locks of its
 * objects (taken in increasing order, so two requests never wait for
 * each other).
 */
static int
split_write (const void *buf, uint32_t count, uint64_t offset)
{
  struct piece p[BATCH], whole[BATCH];
  uint64_t pos = offset;
  size_t np, nw, i, nlocked;
  int r = 0;

  while (r == 0 && (np = pieces (p, buf, offset, count, &pos)) > 0) {
    for (nlocked = 0; nlocked < np; nlocked++)
      if (obj_lock (p[nlocked].n) == -1) {
        r = -1;
        break;
      }
    for (i = nw = 0; r == 0 && i < np; i++) {
      if (p[i].len == obj_size)
        whole[nw++] = p[i];
      else
        r = obj_modify (&p[i]);
    }
    if (r == 0)
      r = obj_put_all (whole, nw);
    for (i = 0; i < nlocked; i++)
      obj_unlock (p[i].n);
  }
  return r;
}

/* The one object: [offset, offset+count) by ranges of ONE_CHUNK, into
 * buf or, with fd >= 0, into that file at the same offsets.
 */
int
one_read (void *buf, int fd, uint64_t count, uint64_t offset)
{
  struct batch b;
  uint64_t pos = offset, end = offset + count;
  size_t np, i;

  while (pos < end) {
    memset (&b, 0, sizeof b);
    for (np = 0; np < BATCH && pos < end; np++) {
      uint64_t len = end - pos < ONE_CHUNK ? end - pos : ONE_CHUNK;
      snprintf (b.range[np], sizeof b.range[np], "%" PRIu64 "-%" PRIu64,
                pos, pos + len - 1);
      b.q[np] = (struct s3_request) { .method = "GET", .object = key,
                                      .range = b.range[np],
                                      .out_len = len };
      if (fd >= 0) {
        b.q[np].use_fd = true;
        b.q[np].fd = fd;
        b.q[np].fd_off = pos;
      }
      else
        b.q[np].out = (char *) buf + (pos - offset);
      pos += len;
    }
    if (s3_perform_all (b.q, b.r, np) == -1)
      return -1;
    for (i = 0; i < np; i++) {
      struct s3_response *r = &b.r[i];
      uint64_t first = strtoull (b.range[i], NULL, 10);
      if (r->status != 206 && !(r->status == 200 && first == 0))
        return s3_fail ("GET", key, r);
      if (b.q[i].out_got != b.q[i].out_len) {
        nbdkit_error ("GET s3://%s/%s: %zu bytes at %" PRIu64 " instead of "
                      "%zu (was the object replaced?)", bucket, key,
                      b.q[i].out_got, first, b.q[i].out_len);
        errno = EIO;
        return -1;
      }
    }
  }
  return 0;
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
      return whole_get_ready (single_size);
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
  if (write_whole)
    whole_unload ();
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

/* The handles: all alike but for being read-only. */
static int handle_ro, handle_rw;

static void *
s3_open (int readonly)
{
  return readonly ? &handle_ro : &handle_rw;
}

/* A connection closes: what it wrote to a whole-object copy is PUT
 * (whatever the client did not flush).
 */
static void
s3_close (void *h)
{
  if (write_whole && h == &handle_rw && whole_flush () == -1)
    nbdkit_error ("write-whole-object: the PUT at the close of a "
                  "connection failed: tried again at the next flush or "
                  "close, and when the server stops");
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

static int
s3_can_write (void *h)
{
  return dev_size != -1 || (write_whole && h == &handle_rw);
}

/* One writer of a whole-object copy: another server's connection
 * would not see its writes before they are PUT.
 */
static int
s3_can_multi_conn (void *h)
{
  return !write_whole;
}

/* Every PUT of a split disk is durable when answered: FUA is free.  A
 * whole-object copy is durable once PUT: FUA is a flush.
 */
static int
s3_fua (void *h)
{
  return write_whole ? NBDKIT_FUA_EMULATE : NBDKIT_FUA_NATIVE;
}

static int s3_yes (void *h) { return 1; }

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

static int
s3_pread (void *h, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  if (dev_size != -1)
    return split_pread (buf, count, offset);
  if (write_whole)
    return whole_pread (buf, count, offset);
  return one_read (buf, -1, count, offset);
}

static int
s3_pwrite (void *h, const void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  if (write_whole)
    return whole_pwrite (buf, count, offset);
  return split_write (buf, count, offset);
}

static int
s3_flush (void *h, uint32_t flags)
{
  if (write_whole)
    return whole_flush ();
  return 0;                     /* each PUT is durable when answered */
}

/* Trim is zero: whole objects are deleted, parts are written zeroes
 * (in a whole-object copy: holes punched).
 */
static int
s3_zero (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (write_whole)
    return whole_zero (count, offset);
  return split_write (NULL, count, offset);
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
    "write-whole-object=true\n"
    "                       Without size=: the one object is writable,\n"
    "                       through a local copy in $TMPDIR PUT whole on\n"
    "                       flush and at close.\n"
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
  .close = s3_close,
  .get_size = s3_get_size,
  .block_size = s3_block_size,
  .can_write = s3_can_write,
  .can_flush = s3_yes,
  .can_trim = s3_can_write,
  .can_zero = s3_can_write,
  .can_extents = s3_split,
  .can_multi_conn = s3_can_multi_conn,
  .can_fua = s3_fua,
  .pread = s3_pread,
  .pwrite = s3_pwrite,
  .flush = s3_flush,
  .trim = s3_zero,
  .zero = s3_zero,
  .extents = s3_extents,
};

NBDKIT_REGISTER_BACKEND (s3_backend)
