/* filters/luks/luks-header.c: parse and check a LUKS1 header (see
 * luks-header.h).  Pure: it reads only the bytes it is given, checks
 * every length and offset before using it, and allocates nothing.
 *
 * The LUKS1 header (all numbers big-endian):
 *
 *     0  magic "LUKS\xba\xbe"        6  version (2 bytes)
 *     8  cipher name (32)           40  cipher mode (32)
 *    72  hash spec (32)            104  payload offset (sectors)
 *   108  key bytes                 112  master key digest (20)
 *   132  its salt (32)             164  its PBKDF2 iterations
 *   168  uuid (40)                 208  8 key slots of 48 bytes:
 *        active, iterations, salt (32), key material offset
 *        (sectors), stripes
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "luks-header.h"

static const uint8_t magic[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

static const struct {
  const char *name;
  enum luks_hash hash;
  size_t len;
} hashes[] = {
  { "md5", LUKS_HASH_MD5, 16 },
  { "sha1", LUKS_HASH_SHA1, 20 },
  { "sha224", LUKS_HASH_SHA224, 28 },
  { "sha256", LUKS_HASH_SHA256, 32 },
  { "sha384", LUKS_HASH_SHA384, 48 },
  { "sha512", LUKS_HASH_SHA512, 64 },
};
#define NR_HASHES (sizeof hashes / sizeof hashes[0])

size_t
luks_hash_len (enum luks_hash hash)
{
  size_t i;

  for (i = 0; i < NR_HASHES; ++i)
    if (hashes[i].hash == hash)
      return hashes[i].len;
  return 0;
}

const char *
luks_hash_name (enum luks_hash hash)
{
  size_t i;

  for (i = 0; i < NR_HASHES; ++i)
    if (hashes[i].hash == hash)
      return hashes[i].name;
  return "unknown";
}

static int
hash_lookup (const char *name, enum luks_hash *hash)
{
  size_t i;

  for (i = 0; i < NR_HASHES; ++i)
    if (strcasecmp (name, hashes[i].name) == 0) {
      *hash = hashes[i].hash;
      return 0;
    }
  return -1;
}

static uint32_t
be32 (const uint8_t *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 |
    (uint32_t) p[2] << 8 | p[3];
}

static int
fail (char *err, size_t errlen, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static int
fail (char *err, size_t errlen, const char *fmt, ...)
{
  va_list args;

  if (errlen) {
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
  }
  return -1;
}

/* A fixed-size text field: NUL-terminated within its n bytes. */
static bool
text_field (const uint8_t *p, size_t n, char *out)
{
  size_t k = strnlen ((const char *) p, n);

  if (k == n)
    return false;
  memcpy (out, p, k);
  out[k] = '\0';
  return true;
}

uint64_t
luks_slot_material_size (const struct luks_header *h,
                         const struct luks_slot *s)
{
  uint64_t n = (uint64_t) h->key_bytes * s->stripes;

  return (n + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
}

/* The cipher mode, "MODE-IVGEN[:HASH]", and the key length. */
static int
parse_cipher (struct luks_header *h, char *err, size_t errlen)
{
  const char *spec = h->cipher_mode, *iv;
  unsigned aes_key;

  if (strcasecmp (h->cipher_name, "aes") != 0)
    return fail (err, errlen, "LUKS cipher \"%s\" is not supported (only "
                 "aes is)", h->cipher_name);
  iv = strchr (spec, '-');
  if (!iv)
    return fail (err, errlen, "LUKS cipher mode \"%s\" is not supported "
                 "(expecting xts or cbc with an IV generator, e.g. "
                 "xts-plain64)", spec);
  if (iv - spec == 3 && strncasecmp (spec, "xts", 3) == 0)
    h->mode = LUKS_MODE_XTS;
  else if (iv - spec == 3 && strncasecmp (spec, "cbc", 3) == 0)
    h->mode = LUKS_MODE_CBC;
  else
    return fail (err, errlen, "LUKS cipher mode \"%s\" is not supported "
                 "(expecting xts or cbc)", spec);
  iv++;
  if (strcasecmp (iv, "plain") == 0)
    h->ivgen = LUKS_IV_PLAIN;
  else if (strcasecmp (iv, "plain64") == 0)
    h->ivgen = LUKS_IV_PLAIN64;
  else if (strncasecmp (iv, "essiv:", 6) == 0) {
    size_t l;

    h->ivgen = LUKS_IV_ESSIV;
    if (hash_lookup (iv + 6, &h->essiv_hash) == -1)
      return fail (err, errlen, "LUKS cipher mode \"%s\": unknown ESSIV "
                   "hash \"%s\"", spec, iv + 6);
    l = luks_hash_len (h->essiv_hash);
    if (l != 16 && l != 24 && l != 32)
      return fail (err, errlen, "LUKS cipher mode \"%s\": no AES key is %zu "
                   "bytes long, the length of %s (use essiv:sha256)", spec, l,
                   iv + 6);
  }
  else
    return fail (err, errlen, "unknown IV generation algorithm in LUKS "
                 "cipher mode \"%s\" (expecting plain, plain64 or "
                 "essiv:HASH)", spec);

  /* XTS takes two keys of the same length. */
  if (h->mode == LUKS_MODE_XTS) {
    if (h->key_bytes != 32 && h->key_bytes != 64)
      return fail (err, errlen, "LUKS aes-%s with a %" PRIu32 "-byte key is "
                   "not supported (AES-128-XTS and AES-256-XTS, with 32 and "
                   "64-byte keys, are)", spec, h->key_bytes);
    aes_key = h->key_bytes / 2;
  }
  else {
    if (h->key_bytes != 16 && h->key_bytes != 24 && h->key_bytes != 32)
      return fail (err, errlen, "LUKS aes-%s with a %" PRIu32 "-byte key is "
                   "not supported (16, 24 or 32 bytes are)", spec,
                   h->key_bytes);
    aes_key = h->key_bytes;
  }
  h->aes_bits = aes_key * 8;
  return 0;
}

int
luks_header_parse (const uint8_t *buf, size_t len, uint64_t disk_size,
                   struct luks_header *h, char *err, size_t errlen)
{
  uint16_t version;
  uint64_t payload;
  unsigned i, active = 0;

  memset (h, 0, sizeof *h);
  if (len < sizeof magic || memcmp (buf, magic, sizeof magic) != 0)
    return fail (err, errlen, "this disk does not contain a LUKS header");
  if (len < 8)
    return fail (err, errlen, "the LUKS header is truncated");
  version = (uint16_t) (buf[6] << 8 | buf[7]);
  if (version == 2)
    return fail (err, errlen, "this disk contains a LUKS version 2 header, "
                 "but this filter only supports LUKSv1 (convert it with "
                 "cryptsetup convert --type luks1)");
  if (version != 1)
    return fail (err, errlen, "this disk contains a LUKS header of unknown "
                 "version %u (only version 1 is supported)", version);
  if (len < LUKS_HEADER_SIZE || disk_size < LUKS_HEADER_SIZE)
    return fail (err, errlen, "the LUKS header is truncated (%" PRIu64
                 " bytes, it takes %d)", disk_size < len ? disk_size :
                 (uint64_t) len, LUKS_HEADER_SIZE);

  if (!text_field (buf + 8, 32, h->cipher_name) ||
      !text_field (buf + 40, 32, h->cipher_mode) ||
      !text_field (buf + 72, 32, h->hash_spec))
    return fail (err, errlen, "the LUKS header is damaged (a cipher or hash "
                 "name is not terminated)");
  h->payload_offset = be32 (buf + 104);
  h->key_bytes = be32 (buf + 108);
  memcpy (h->mk_digest, buf + 112, LUKS_DIGEST_SIZE);
  memcpy (h->mk_digest_salt, buf + 132, LUKS_SALT_SIZE);
  h->mk_digest_iterations = be32 (buf + 164);
  memcpy (h->uuid, buf + 168, 40);
  h->uuid[40] = '\0';

  if (hash_lookup (h->hash_spec, &h->hash) == -1)
    return fail (err, errlen, "LUKS hash \"%s\" is not supported (md5, "
                 "sha1, sha224, sha256, sha384 and sha512 are)", h->hash_spec);
  if (h->key_bytes == 0 || h->key_bytes > LUKS_MAX_KEY_BYTES)
    return fail (err, errlen, "the LUKS header is damaged: the master key "
                 "is %" PRIu32 " bytes long", h->key_bytes);
  if (parse_cipher (h, err, errlen) == -1)
    return -1;
  if (h->mk_digest_iterations == 0)
    return fail (err, errlen, "the LUKS header is damaged: 0 iterations for "
                 "the master key digest");

  payload = (uint64_t) h->payload_offset * LUKS_SECTOR;
  if (payload < LUKS_HEADER_SIZE)
    return fail (err, errlen, "the LUKS payload offset %" PRIu32 " (sectors) "
                 "is inside the header (a detached header is not "
                 "supported)", h->payload_offset);
  if (payload > disk_size)
    return fail (err, errlen, "the LUKS payload offset %" PRIu64 " is "
                 "beyond the end of the disk (%" PRIu64 " bytes): the disk "
                 "is truncated", payload, disk_size);

  for (i = 0; i < LUKS_NUM_SLOTS; ++i) {
    const uint8_t *p = buf + 208 + i * 48;
    struct luks_slot *s = &h->slots[i];
    uint64_t start, end;

    s->active = be32 (p);
    s->iterations = be32 (p + 4);
    memcpy (s->salt, p + 8, LUKS_SALT_SIZE);
    s->key_offset = be32 (p + 40);
    s->stripes = be32 (p + 44);
    if (s->active == LUKS_SLOT_INACTIVE)
      continue;
    if (s->active != LUKS_SLOT_ACTIVE)
      return fail (err, errlen, "the LUKS header is damaged: key slot %u is "
                   "neither active nor inactive (0x%08" PRIx32 ")", i,
                   s->active);
    if (s->iterations == 0)
      return fail (err, errlen, "the LUKS header is damaged: key slot %u has "
                   "0 iterations", i);
    if (s->stripes == 0 || s->stripes > LUKS_MAX_STRIPES)
      return fail (err, errlen, "the LUKS header is damaged: key slot %u has "
                   "%" PRIu32 " stripes (1 to %d are supported)", i,
                   s->stripes, LUKS_MAX_STRIPES);
    start = (uint64_t) s->key_offset * LUKS_SECTOR;
    end = start + luks_slot_material_size (h, s);
    if (start < LUKS_HEADER_SIZE || end > payload)
      return fail (err, errlen, "the LUKS header is damaged: the key "
                   "material of key slot %u (bytes %" PRIu64 " to %" PRIu64
                   ") is not between the header and the payload (at %"
                   PRIu64 ")", i, start, end, payload);
    active++;
  }
  if (active == 0)
    return fail (err, errlen, "the LUKS header has no active key slot");
  return 0;
}
