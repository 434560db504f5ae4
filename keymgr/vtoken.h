/* Token keyslots on a session (keymgr/volume.h): slots a machine opens
 * without a passphrase (docs/FORMAT.md, "Keyslot tokens"). One unlocker
 * per KDF id in a small table (vtoken.c): TPM2 (keymgr/tpm2.h) and Tang
 * (keymgr/tang.h); another kind adds a row. */
#ifndef TD_KEYMGR_VTOKEN_H
#define TD_KEYMGR_VTOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keymgr/volume.h"

/* What the unlockers may need from the command line. */
struct td_token_opts {
	const char *tpm2_device; /* keymgr/tpm2.h; NULL: the environment's */
};

/* "passphrase", "tpm2", "tang" (the kind of a keyslot, for reports). */
const char *td_keyslot_kind_name(int kdf_id);
/* Number of active token slots of h. */
int td_token_slots(const struct td_crypt_hdr *h);

/* Tries every active token slot of v->h whose kind has an unlocker, in
 * slot order, until one opens: 0 with v->vk and v->slot. Every slot that
 * fails is a warning on the session naming the slot and why (a PCR policy
 * that does not hold, a TPM that cannot be reached, ...) and, with op, a
 * failed key event. -ENOENT when v->h has no token slot, else the error of
 * the last slot tried (keymgr/tpm2.h) with err summing up. */
int td_volume_unlock_tokens(struct td_volume *v, const struct td_token_opts *o, const char *op,
			    char *err, size_t errlen);

/* Recovers the 32-byte KEK of token slot ks (kek_len 32, secure memory)
 * through its kind's unlocker: 0, or an error with the reason in err (a
 * PCR policy that fails, a Tang server that does not answer, ...). */
int td_token_kek(const struct td_token_opts *o, const struct td_keyslot *ks, uint8_t *kek,
		 size_t kek_len, char *err, size_t errlen);

/* Adds a TPM2 slot (slot, or the first free one when -1): seals a fresh
 * KEK to the TPM under PolicyPCR over pcrs (bit i = PCR i) and wraps the
 * volume key under it; v unlocked and writable. Returns the slot index. */
int td_volume_enroll_tpm2(struct td_volume *v, int slot, const struct td_token_opts *o,
			  uint32_t pcrs, char *err, size_t errlen);

#endif
