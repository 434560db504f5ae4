/* Keyslots: each wraps the volume key under a key derived from one
 * passphrase (or key file) with Argon2id, PBKDF2-SHA256 or scrypt.  The
 * slot layout and the AAD are in docs/FORMAT.md.  These functions change
 * the parsed header in memory only; the caller bumps the sequence number,
 * re-seals the MAC and writes both copies (see crypt/header.h). */
#ifndef TD_KEYMGR_KEYSLOT_H
#define TD_KEYMGR_KEYSLOT_H

#include <stddef.h>

#include "crypt/header.h"

struct td_volkey;

/* Production defaults: argon2id t=3, 256 MiB, 4 lanes; pbkdf2-sha256
 * 600000 iterations; scrypt N=2^17, r=8, p=1.  id TD_KDF_NONE for an
 * unknown kind. */
struct td_kdf_params td_kdf_params_default(enum td_kdf_id kind);
/* The cheapest parameters a header accepts (argon2id t=1, 8 KiB, 1 lane;
 * pbkdf2 1000; scrypt N=16, r=1, p=1).  For tests only: they protect
 * nothing. */
struct td_kdf_params td_kdf_params_minimal(enum td_kdf_id kind);
/* "argon2id", "pbkdf2-sha256", "scrypt"; "unknown" otherwise. */
const char *td_kdf_name(enum td_kdf_id id);
/* Accepts the names above plus "pbkdf2"; TD_KDF_NONE if unknown. */
enum td_kdf_id td_kdf_from_name(const char *name);

/* The KDF output for a passphrase: KEK = KDF(pass, salt, params). */
int td_kdf_derive(const struct td_kdf_params *kp, const void *pass, size_t passlen,
		  const uint8_t salt[TD_HDR_SALT_LEN], void *out, size_t outlen);

/* Number of active keyslots. */
int td_keyslot_count_active(const struct td_crypt_hdr *h);

/* Wraps vk under pass into slot (or the first free one when slot is -1)
 * with fresh salt and nonce.  The first slot of a header also records
 * vk's digest; later slots require vk to match it.  Returns the slot index,
 * or -ENOSPC (all TD_HDR_KEYSLOTS slots in use), -EEXIST (slot active),
 * -EINVAL (bad slot number, bad KDF parameters, empty passphrase, or vk is
 * not this header's volume key), -ENOMEM, -EIO.  h is unchanged on
 * failure. */
int td_keyslot_add(struct td_crypt_hdr *h, int slot, const struct td_volkey *vk, const void *pass,
		   size_t passlen, const struct td_kdf_params *kp);

/* Tries slot (or every active slot in order when slot is -1).  A slot
 * opens when its AES-GCM tag verifies and the unwrapped key matches the
 * header's volume key digest (constant-time compare).  Then the header
 * MAC is verified with that key; *out gets the key (the caller owns it)
 * and *slot_used the index (slot_used may be NULL).
 * Returns 0, -EPERM (wrong passphrase: no slot opened), -ENOENT (the
 * requested slot is not active), -EBADMSG (passphrase right but the
 * header MAC fails: the header was altered), -EINVAL, or the error of a
 * KDF that could not run (-ENOMEM, ...) when no slot opened.
 * *out is NULL on failure. */
int td_keyslot_unlock(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		      struct td_volkey **out, int *slot_used);

/* Clears slot.  -EINVAL bad index, -ENOENT not active, -EBUSY it is the
 * last active slot (removing it would lose the volume key for good). */
int td_keyslot_remove(struct td_crypt_hdr *h, int slot);

/* A one-line, user-facing explanation of an error returned above
 * ("wrong passphrase (no keyslot opened)", "all 16 keyslots are in use",
 * ...); strerror() text for anything else. */
const char *td_keyslot_strerror(int err);

#endif
