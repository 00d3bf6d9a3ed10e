/* filters/luks/luks-crypto.h: the cryptography of LUKS1 with gnutls:
 * unlocking a key slot (PBKDF2, decrypting the key material, the AF
 * merge, checking the master key digest) and encrypting or decrypting
 * sectors.  CPU-heavy and thread-safe: called on worker threads only
 * (worker_submit), never on the loop.
 */

#ifndef NBDKIT_LUKS_CRYPTO_H
#define NBDKIT_LUKS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "luks-header.h"

/* Try the passphrase on every active key slot of h, whose key material
 * is material[i] (luks_slot_material_size bytes; NULL for inactive
 * slots).  Returns the slot unlocked (0..7) with the master key in mk
 * (h->key_bytes), LUKS_NUM_SLOTS if the passphrase opens no slot, or
 * -1 with a message in err.
 */
extern int luks_unlock (const struct luks_header *h, const char *pass,
                        size_t passlen, uint8_t *const *material,
                        uint8_t *mk, char *err, size_t errlen);

/* Encrypt or decrypt nsectors 512-byte sectors of buf in place, the
 * first one being sector first_sector (counted from the start of the
 * payload), with key (h->key_bytes).  0, or -1 with a message in err.
 */
extern int luks_crypt (const struct luks_header *h, const uint8_t *key,
                       bool encrypt, uint64_t first_sector, uint8_t *buf,
                       size_t nsectors, char *err, size_t errlen);

#endif /* NBDKIT_LUKS_CRYPTO_H */
