/* filters/luks/luks-crypto.c: LUKS1 cryptography with gnutls (see
 * luks-crypto.h).  Runs on worker threads: each call makes its own
 * gnutls cipher handles, so calls never share state.
 *
 * A sector's IV is its number from the start of the payload (or of the
 * key material), little-endian: 32 bits (plain), 64 bits (plain64), or
 * 64 bits encrypted with AES keyed by the hash of the key (essiv).
 * AES-CBC and AES-XTS come from gnutls; the single AES blocks of ESSIV
 * are AES-CBC with a zero IV.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#include "luks-crypto.h"

#define MAX_HASH 64

static gnutls_mac_algorithm_t
mac_alg (enum luks_hash hash)
{
  switch (hash) {
  case LUKS_HASH_MD5: return GNUTLS_MAC_MD5;
  case LUKS_HASH_SHA1: return GNUTLS_MAC_SHA1;
  case LUKS_HASH_SHA224: return GNUTLS_MAC_SHA224;
  case LUKS_HASH_SHA256: return GNUTLS_MAC_SHA256;
  case LUKS_HASH_SHA384: return GNUTLS_MAC_SHA384;
  case LUKS_HASH_SHA512: return GNUTLS_MAC_SHA512;
  }
  return GNUTLS_MAC_UNKNOWN;
}

static gnutls_digest_algorithm_t
dig_alg (enum luks_hash hash)
{
  switch (hash) {
  case LUKS_HASH_MD5: return GNUTLS_DIG_MD5;
  case LUKS_HASH_SHA1: return GNUTLS_DIG_SHA1;
  case LUKS_HASH_SHA224: return GNUTLS_DIG_SHA224;
  case LUKS_HASH_SHA256: return GNUTLS_DIG_SHA256;
  case LUKS_HASH_SHA384: return GNUTLS_DIG_SHA384;
  case LUKS_HASH_SHA512: return GNUTLS_DIG_SHA512;
  }
  return GNUTLS_DIG_UNKNOWN;
}

static gnutls_cipher_algorithm_t
aes_cbc (unsigned bits)
{
  switch (bits) {
  case 128: return GNUTLS_CIPHER_AES_128_CBC;
  case 192: return GNUTLS_CIPHER_AES_192_CBC;
  case 256: return GNUTLS_CIPHER_AES_256_CBC;
  }
  return GNUTLS_CIPHER_UNKNOWN;
}

static void
seterr (char *err, size_t errlen, const char *what, int r)
{
  snprintf (err, errlen, "%s: %s", what, gnutls_strerror (r));
}

/* ---- sectors ---- */

struct sector_ctx {
  const struct luks_header *h;
  gnutls_cipher_hd_t cipher;
  gnutls_cipher_hd_t essiv;           /* NULL unless LUKS_IV_ESSIV */
};

static int
ctx_init (struct sector_ctx *c, const struct luks_header *h,
          const uint8_t *key, char *err, size_t errlen)
{
  gnutls_datum_t k = { (unsigned char *) key, h->key_bytes };
  gnutls_cipher_algorithm_t alg;
  int r;

  c->h = h;
  c->cipher = c->essiv = NULL;
  if (h->mode == LUKS_MODE_XTS)
    alg = h->aes_bits == 128 ? GNUTLS_CIPHER_AES_128_XTS
      : GNUTLS_CIPHER_AES_256_XTS;
  else
    alg = aes_cbc (h->aes_bits);
  r = gnutls_cipher_init (&c->cipher, alg, &k, NULL);
  if (r < 0) {
    c->cipher = NULL;
    seterr (err, errlen, "gnutls_cipher_init", r);
    return -1;
  }
  if (h->ivgen == LUKS_IV_ESSIV) {
    uint8_t salt[MAX_HASH];
    size_t sl = luks_hash_len (h->essiv_hash);
    gnutls_datum_t sk = { salt, (unsigned) sl };

    r = gnutls_hash_fast (dig_alg (h->essiv_hash), key, h->key_bytes, salt);
    if (r >= 0)
      r = gnutls_cipher_init (&c->essiv, aes_cbc ((unsigned) sl * 8), &sk,
                              NULL);
    explicit_bzero (salt, sizeof salt);
    if (r < 0) {
      c->essiv = NULL;
      gnutls_cipher_deinit (c->cipher);
      c->cipher = NULL;
      seterr (err, errlen, "ESSIV", r);
      return -1;
    }
  }
  return 0;
}

static void
ctx_free (struct sector_ctx *c)
{
  if (c->cipher)
    gnutls_cipher_deinit (c->cipher);
  if (c->essiv)
    gnutls_cipher_deinit (c->essiv);
}

static int
sector_iv (struct sector_ctx *c, uint64_t sector, uint8_t iv[16])
{
  static const uint8_t zero[16];
  unsigned i, n = c->h->ivgen == LUKS_IV_PLAIN ? 4 : 8;

  memset (iv, 0, 16);
  for (i = 0; i < n; ++i)
    iv[i] = (uint8_t) (sector >> (8 * i));
  if (c->essiv) {
    gnutls_cipher_set_iv (c->essiv, (void *) zero, 16);
    if (gnutls_cipher_encrypt (c->essiv, iv, 16) < 0)
      return -1;
  }
  return 0;
}

static int
ctx_crypt (struct sector_ctx *c, bool encrypt, uint64_t first,
           uint8_t *buf, size_t nsectors, char *err, size_t errlen)
{
  size_t i;

  for (i = 0; i < nsectors; ++i) {
    uint8_t iv[16], *p = buf + i * LUKS_SECTOR;
    int r;

    if (sector_iv (c, first + i, iv) == -1) {
      snprintf (err, errlen, "ESSIV: encryption failed");
      return -1;
    }
    gnutls_cipher_set_iv (c->cipher, iv, 16);
    r = encrypt
      ? gnutls_cipher_encrypt2 (c->cipher, p, LUKS_SECTOR, p, LUKS_SECTOR)
      : gnutls_cipher_decrypt2 (c->cipher, p, LUKS_SECTOR, p, LUKS_SECTOR);
    if (r < 0) {
      seterr (err, errlen, encrypt ? "encrypting" : "decrypting", r);
      return -1;
    }
  }
  return 0;
}

int
luks_crypt (const struct luks_header *h, const uint8_t *key, bool encrypt,
            uint64_t first_sector, uint8_t *buf, size_t nsectors,
            char *err, size_t errlen)
{
  struct sector_ctx c;
  int r;

  if (ctx_init (&c, h, key, err, errlen) == -1)
    return -1;
  r = ctx_crypt (&c, encrypt, first_sector, buf, nsectors, err, errlen);
  ctx_free (&c);
  return r;
}

/* ---- unlocking ---- */

/* The AF splitter's diffusion: each digest-sized block i of d becomes
 * the first bytes of hash (be32 (i) || block).
 */
static int
diffuse (enum luks_hash hash, uint8_t *d, size_t len)
{
  size_t ds = luks_hash_len (hash), i, blocks = (len + ds - 1) / ds;
  uint8_t out[MAX_HASH];

  for (i = 0; i < blocks; ++i) {
    gnutls_hash_hd_t hd;
    uint8_t iv[4] = { (uint8_t) (i >> 24), (uint8_t) (i >> 16),
                      (uint8_t) (i >> 8), (uint8_t) i };
    size_t n = len - i * ds < ds ? len - i * ds : ds;

    if (gnutls_hash_init (&hd, dig_alg (hash)) < 0)
      return -1;
    gnutls_hash (hd, iv, 4);
    gnutls_hash (hd, d + i * ds, n);
    gnutls_hash_deinit (hd, out);
    memcpy (d + i * ds, out, n);
  }
  explicit_bzero (out, sizeof out);
  return 0;
}

/* AF merge: stripes of len bytes in src into the key dst. */
static int
af_merge (enum luks_hash hash, const uint8_t *src, uint32_t stripes,
          size_t len, uint8_t *dst)
{
  uint32_t i;
  size_t j;

  memset (dst, 0, len);
  for (i = 0; i + 1 < stripes; ++i) {
    for (j = 0; j < len; ++j)
      dst[j] ^= src[i * len + j];
    if (diffuse (hash, dst, len) == -1)
      return -1;
  }
  for (j = 0; j < len; ++j)
    dst[j] ^= src[(size_t) (stripes - 1) * len + j];
  return 0;
}

static bool
same (const uint8_t *a, const uint8_t *b, size_t n)
{
  uint8_t d = 0;
  size_t i;

  for (i = 0; i < n; ++i)
    d |= a[i] ^ b[i];
  return d == 0;
}

/* 1 if the passphrase opens slot s (master key in mk), 0 if not, -1
 * on error.
 */
static int
try_slot (const struct luks_header *h, const struct luks_slot *s,
          const char *pass, size_t passlen, const uint8_t *material,
          uint8_t *mk, char *err, size_t errlen)
{
  uint8_t derived[LUKS_MAX_KEY_BYTES], digest[LUKS_DIGEST_SIZE];
  gnutls_datum_t pk = { (unsigned char *) pass, (unsigned) passlen };
  gnutls_datum_t salt = { (unsigned char *) s->salt, LUKS_SALT_SIZE };
  uint64_t size = luks_slot_material_size (h, s);
  uint8_t *split = malloc (size);
  int r, ret = -1;

  if (!split) {
    snprintf (err, errlen, "out of memory");
    return -1;
  }
  r = gnutls_pbkdf2 (mac_alg (h->hash), &pk, &salt, s->iterations, derived,
                     h->key_bytes);
  if (r < 0) {
    seterr (err, errlen, "gnutls_pbkdf2", r);
    goto out;
  }
  memcpy (split, material, size);
  if (luks_crypt (h, derived, false, 0, split, size / LUKS_SECTOR,
                  err, errlen) == -1)
    goto out;
  if (af_merge (h->hash, split, s->stripes, h->key_bytes, mk) == -1) {
    snprintf (err, errlen, "the AF merge: hashing failed");
    goto out;
  }
  pk.data = mk;
  pk.size = h->key_bytes;
  salt.data = (unsigned char *) h->mk_digest_salt;
  r = gnutls_pbkdf2 (mac_alg (h->hash), &pk, &salt, h->mk_digest_iterations,
                     digest, LUKS_DIGEST_SIZE);
  if (r < 0) {
    seterr (err, errlen, "gnutls_pbkdf2", r);
    goto out;
  }
  ret = same (digest, h->mk_digest, LUKS_DIGEST_SIZE);
 out:
  explicit_bzero (derived, sizeof derived);
  explicit_bzero (split, size);
  free (split);
  return ret;
}

int
luks_unlock (const struct luks_header *h, const char *pass, size_t passlen,
             uint8_t *const *material, uint8_t *mk, char *err,
             size_t errlen)
{
  int i;

  for (i = 0; i < LUKS_NUM_SLOTS; ++i) {
    int r;

    if (h->slots[i].active != LUKS_SLOT_ACTIVE || !material[i])
      continue;
    r = try_slot (h, &h->slots[i], pass, passlen, material[i], mk, err,
                  errlen);
    if (r == -1)
      return -1;
    if (r == 1)
      return i;
  }
  explicit_bzero (mk, h->key_bytes);
  return LUKS_NUM_SLOTS;
}
