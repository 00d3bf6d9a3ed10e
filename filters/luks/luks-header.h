/* filters/luks/luks-header.h: the LUKS1 on-disk header, parsed by
 * pure, bounds-checked functions (luks-header.c) that touch no I/O and
 * no crypto library, so that they can be fuzzed alone
 * (tests/fuzz/fuzz-luks.c).
 */

#ifndef NBDKIT_LUKS_HEADER_H
#define NBDKIT_LUKS_HEADER_H

#include <stddef.h>
#include <stdint.h>

#define LUKS_SECTOR 512
#define LUKS_HEADER_SIZE 592          /* the phdr, before the key material */
#define LUKS_NUM_SLOTS 8
#define LUKS_DIGEST_SIZE 20
#define LUKS_SALT_SIZE 32
#define LUKS_SLOT_ACTIVE 0x00AC71F3
#define LUKS_SLOT_INACTIVE 0x0000DEAD
/* Limits of this filter (a bigger value is refused, not allocated):
 * the longest master key of the ciphers here (aes-256-xts: 64 bytes),
 * and the most stripes a key slot may have (cryptsetup and qemu write
 * 4000).
 */
#define LUKS_MAX_KEY_BYTES 64
#define LUKS_MAX_STRIPES 65536

enum luks_cipher_mode { LUKS_MODE_CBC, LUKS_MODE_XTS };
enum luks_ivgen { LUKS_IV_PLAIN, LUKS_IV_PLAIN64, LUKS_IV_ESSIV };
enum luks_hash {
  LUKS_HASH_MD5, LUKS_HASH_SHA1, LUKS_HASH_SHA224, LUKS_HASH_SHA256,
  LUKS_HASH_SHA384, LUKS_HASH_SHA512,
};

struct luks_slot {
  uint32_t active;                    /* LUKS_SLOT_ACTIVE or _INACTIVE */
  uint32_t iterations;
  uint8_t salt[LUKS_SALT_SIZE];
  uint32_t key_offset;                /* in sectors */
  uint32_t stripes;
};

struct luks_header {
  char cipher_name[33], cipher_mode[33], hash_spec[33];   /* NUL-ended */
  uint32_t payload_offset;            /* in sectors */
  uint32_t key_bytes;
  uint8_t mk_digest[LUKS_DIGEST_SIZE];
  uint8_t mk_digest_salt[LUKS_SALT_SIZE];
  uint32_t mk_digest_iterations;
  char uuid[41];
  struct luks_slot slots[LUKS_NUM_SLOTS];
  /* What the names mean (luks_header_parse checks them). */
  unsigned aes_bits;                  /* 128, 192, 256: of one AES key */
  enum luks_cipher_mode mode;
  enum luks_ivgen ivgen;
  enum luks_hash hash;                /* PBKDF2 and the AF splitter */
  enum luks_hash essiv_hash;          /* with LUKS_IV_ESSIV */
};

/* Parse and check the first len bytes of a disk of disk_size bytes.
 * 0 on success; -1 with a message in err (errlen bytes) if it is not
 * LUKS, not version 1, damaged, or uses what this filter does not
 * support.  Every key slot marked active is checked to lie inside the
 * disk, after the header and before the payload.
 */
extern int luks_header_parse (const uint8_t *buf, size_t len,
                              uint64_t disk_size, struct luks_header *h,
                              char *err, size_t errlen);

/* The bytes of a key slot's key material on disk (whole sectors). */
extern uint64_t luks_slot_material_size (const struct luks_header *h,
                                         const struct luks_slot *s);

/* Digest length of a hash, and its name as in the header. */
extern size_t luks_hash_len (enum luks_hash hash);
extern const char *luks_hash_name (enum luks_hash hash);

#endif /* NBDKIT_LUKS_HEADER_H */
