/* tests/fuzz/fuzz-luks.c: libFuzzer target "luks", the luks filter's
 * parser of the LUKS1 header (filters/luks/luks-header.c), alone: no
 * I/O, no cryptography.  See tests/fuzz/README.
 *
 * One input is the size of the disk (8 bytes, little-endian), then the
 * bytes at its start, as the filter reads them (at most the 592 of the
 * header, but the parser is given all there are).  Checked, besides
 * ASan (no read beyond the bytes given) and UBSan:
 *
 *   - a refusal says why (a message in err);
 *   - an accepted header: its names are NUL-terminated, the key length
 *     is one the ciphers take (XTS 32 or 64 bytes, CBC 16, 24 or 32),
 *     the AES key size is 128, 192 or 256 bits, the hashes are known,
 *     the payload starts after the header and within the disk, and
 *     every active key slot has iterations, at most LUKS_MAX_STRIPES
 *     stripes, and key material between the header and the payload;
 *     at least one slot is active.
 */

#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz-bug.h"
#include "luks-header.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct luks_header h;
  char err[256];
  uint64_t disk_size = 0, payload;
  unsigned i, active = 0;
  int r;

  if (size < 8)
    return 0;
  for (i = 0; i < 8; ++i)
    disk_size |= (uint64_t) data[i] << (8 * i);
  err[0] = '\0';
  r = luks_header_parse (data + 8, size - 8, disk_size, &h, err, sizeof err);
  if (r == -1) {
    if (err[0] == '\0')
      fuzz_bug ("a refused header without a message");
    return 0;
  }
  if (r != 0)
    fuzz_bug ("luks_header_parse returned %d", r);
  if (strnlen (h.cipher_name, sizeof h.cipher_name) == sizeof h.cipher_name ||
      strnlen (h.cipher_mode, sizeof h.cipher_mode) == sizeof h.cipher_mode ||
      strnlen (h.hash_spec, sizeof h.hash_spec) == sizeof h.hash_spec ||
      strnlen (h.uuid, sizeof h.uuid) == sizeof h.uuid)
    fuzz_bug ("a name is not terminated");
  if (h.mode == LUKS_MODE_XTS ? h.key_bytes != 32 && h.key_bytes != 64
      : h.key_bytes != 16 && h.key_bytes != 24 && h.key_bytes != 32)
    fuzz_bug ("a %u-byte key accepted for mode %d", (unsigned) h.key_bytes,
              (int) h.mode);
  if (h.aes_bits != 128 && h.aes_bits != 192 && h.aes_bits != 256)
    fuzz_bug ("AES-%u accepted", h.aes_bits);
  if (luks_hash_len (h.hash) == 0 ||
      (h.ivgen == LUKS_IV_ESSIV &&
       luks_hash_len (h.essiv_hash) != 16 &&
       luks_hash_len (h.essiv_hash) != 32 &&
       luks_hash_len (h.essiv_hash) != 24))
    fuzz_bug ("an unknown or unusable hash accepted");
  payload = (uint64_t) h.payload_offset * LUKS_SECTOR;
  if (payload < LUKS_HEADER_SIZE || payload > disk_size)
    fuzz_bug ("payload at %llu accepted on a disk of %llu bytes",
              (unsigned long long) payload, (unsigned long long) disk_size);
  if (h.mk_digest_iterations == 0)
    fuzz_bug ("0 digest iterations accepted");
  for (i = 0; i < LUKS_NUM_SLOTS; ++i) {
    const struct luks_slot *s = &h.slots[i];
    uint64_t start, end;

    if (s->active != LUKS_SLOT_ACTIVE) {
      if (s->active != LUKS_SLOT_INACTIVE)
        fuzz_bug ("slot %u: state 0x%x accepted", i, (unsigned) s->active);
      continue;
    }
    active++;
    if (s->iterations == 0 || s->stripes == 0 ||
        s->stripes > LUKS_MAX_STRIPES)
      fuzz_bug ("slot %u: %u iterations, %u stripes accepted", i,
                (unsigned) s->iterations, (unsigned) s->stripes);
    start = (uint64_t) s->key_offset * LUKS_SECTOR;
    end = start + luks_slot_material_size (&h, s);
    if (start < LUKS_HEADER_SIZE || end > payload || end <= start)
      fuzz_bug ("slot %u: key material %llu..%llu accepted, payload at "
                "%llu", i, (unsigned long long) start,
                (unsigned long long) end, (unsigned long long) payload);
  }
  if (active == 0)
    fuzz_bug ("a header without an active slot accepted");
  return 0;
}
