/* Keyslots: each wraps the volume key under a key derived from one
 * passphrase (or key file) with Argon2id, PBKDF2-SHA256 or scrypt.  The
 * slot layout and the AAD are in docs/FORMAT.md.  These functions change
 * the parsed header in memory only; the caller bumps the sequence number,
 * re-seals the MAC and writes both copies (see crypt/header.h). */
#ifndef TD_KEYMGR_KEYSLOT_H
#define TD_KEYMGR_KEYSLOT_H

#include <stddef.h>
#include <stdint.h>

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
/* A KDF and its parameters for people: "argon2id t=3 m=262144 KiB p=4",
 * "pbkdf2-sha256 iterations=600000", "scrypt N=131072 r=8 p=1" ("unknown"
 * for another id). */
void td_kdf_desc(const struct td_kdf_params *k, char *buf, size_t len);

/* ---- the KDF budget ----------------------------------------------------------
 *
 * A header chooses its keyslots' KDF parameters, and every slot is tried
 * before the header MAC can say whether the header is authentic: a hostile
 * header could ask 16 slots of Argon2id at 4 GiB and 64 passes each. So no
 * KDF runs unless its parameters fit a budget: the memory one slot may
 * use, the work one slot may cost, and the work all the slots tried for one
 * passphrase may cost together. Slots over the budget are not tried (the
 * others still are, cheapest first, so a slot costing at most a sixteenth
 * of the total budget is always reached whatever else the header holds).
 *
 * Work is counted in units of 1 KiB passed through the KDF's core:
 * argon2id t * m KiB; scrypt 256 * N * r * p bytes (ROMix runs BlockMix 2N
 * times over 128 * r bytes, p times); pbkdf2-sha256 128 bytes (two SHA-256
 * blocks) per iteration. TD_KDF_UNITS_PER_SECOND units (1 GiB) make a
 * "reference second", about one second of one current x86-64 core
 * (measured: argon2id 0.6-1.0 us per unit, scrypt 0.9-1.6, pbkdf2 1.7). */
#define TD_KDF_UNITS_PER_SECOND (1ull << 20)
/* Defaults: 1 GiB (or half the RAM, when less) and 16 reference seconds
 * per slot, 32 for all the slots tried for one passphrase. */
#define TD_KDF_BUDGET_MEMORY (1ull << 30)
#define TD_KDF_BUDGET_COST (16 * TD_KDF_UNITS_PER_SECOND)
#define TD_KDF_BUDGET_TOTAL_COST (32 * TD_KDF_UNITS_PER_SECOND)

struct td_kdf_budget {
	uint64_t max_memory;	 /* bytes one slot's KDF may allocate */
	uint64_t max_cost;	 /* units one slot may cost */
	uint64_t max_total_cost; /* units all the slots tried for one passphrase may cost */
};

/* The defaults above, the memory capped at half of the physical RAM. */
struct td_kdf_budget td_kdf_budget_default(void);
/* No limit but the format's (--allow-expensive-kdf): all UINT64_MAX. */
struct td_kdf_budget td_kdf_budget_unlimited(void);
/* The process-wide budget that td_kdf_derive and td_keyslot_unlock obey
 * (the default until set; NULL sets the default). Set it once, before any
 * KDF runs. */
void td_kdf_budget_set(const struct td_kdf_budget *b);
struct td_kdf_budget td_kdf_budget_get(void);
/* What a KDF with parameters kp allocates (bytes) and costs (units). */
uint64_t td_kdf_memory(const struct td_kdf_params *kp);
uint64_t td_kdf_cost(const struct td_kdf_params *kp);

enum td_kdf_over {
	TD_KDF_FITS = 0,
	TD_KDF_OVER_MEMORY,	/* max_memory */
	TD_KDF_OVER_COST,	/* max_cost */
	TD_KDF_OVER_TOTAL_COST, /* max_total_cost, with the slots tried before it */
};

/* Whether kp fits b's per-slot limits: TD_KDF_FITS, or which limit it
 * exceeds with a message naming the parameter, its value and the limit
 * in why (may be NULL). */
enum td_kdf_over td_kdf_budget_check(const struct td_kdf_budget *b, const struct td_kdf_params *kp,
				     char *why, size_t whylen);

/* Which active slots an unlock of h (slot -1: all of them) with budget b
 * tries, in order (cheapest first, then by index), and which it does not
 * and why. Depends only on the header and the budget. */
struct td_unlock_plan {
	int ntry;
	int order[TD_HDR_KEYSLOTS];
	int nskip;
	int skipped[TD_HDR_KEYSLOTS];
	enum td_kdf_over over[TD_HDR_KEYSLOTS];
	char why[TD_HDR_KEYSLOTS][256];
};
void td_keyslot_plan(const struct td_crypt_hdr *h, int slot, const struct td_kdf_budget *b,
		     struct td_unlock_plan *plan);

/* The KDF output for a passphrase: KEK = KDF(pass, salt, params).
 * -E2BIG, without running it, when kp exceeds the process-wide budget's
 * per-slot limits. */
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

/* Tries slot (or every active slot when slot is -1, in the order of
 * td_keyslot_plan under the process-wide budget: slots over it are not
 * tried, so their KDF never runs).  A slot
 * opens when its AES-GCM tag verifies and the unwrapped key matches the
 * header's volume key digest (constant-time compare).  Then the header
 * MAC is verified with that key; *out gets the key (the caller owns it)
 * and *slot_used the index (slot_used may be NULL).
 * Returns 0, -EPERM (wrong passphrase: no slot opened), -ENOENT (the
 * requested slot is not active), -EBADMSG (passphrase right but the
 * header MAC fails: the header was altered), -E2BIG (no slot tried opened
 * and some were not tried: over the KDF budget), -EINVAL, or the error of a
 * KDF that could not run (-ENOMEM, ...) when no slot opened.
 * *out is NULL on failure. */
int td_keyslot_unlock(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		      struct td_volkey **out, int *slot_used);

/* Token slots (docs/FORMAT.md, "Keyslot tokens"): kind TD_KDF_TPM2 or
 * TD_KDF_TANG, a token of 1..TD_HDR_TOKEN_MAX bytes (the unlocker's own
 * layout) and the 32-byte KEK the unlocker released for it.  Wraps vk
 * into slot (-1: the first free one); vk must already be this header's key
 * (a passphrase slot comes first, so a person can always recover it).
 * Returns the slot index or the errors of td_keyslot_add. */
int td_keyslot_add_token(struct td_crypt_hdr *h, int slot, const struct td_volkey *vk,
			 enum td_kdf_id kind, const uint8_t *token, size_t token_len,
			 const uint8_t *kek, size_t kek_len);
/* Opens token slot `slot` with the KEK its unlocker recovered, checks the
 * digest, then the header MAC.  0 and *out, or -EPERM (the KEK does not
 * open it), -EBADMSG (header altered), -ENOENT, -EINVAL (not a token
 * slot, bad arguments).  td_keyslot_unlock never tries token slots, and
 * returns -ENOTSUP when asked for one. */
int td_keyslot_unlock_token(const struct td_crypt_hdr *h, int slot, const uint8_t *kek,
			    size_t kek_len, struct td_volkey **out);

/* ---- pending wraps (docs/FORMAT.md, "Pending wraps") ----
 * A slot's KEK: td_keyslot_kek for a passphrase slot (its KDF over pass;
 * -EINVAL for a token slot, -E2BIG over the budget), an unlocker for a
 * token slot (keymgr/vtoken.h). kek_len is 32. */
int td_keyslot_kek(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		   uint8_t *kek, size_t kek_len);
/* Checks that kek opens slot's own wrap (the header's key: -EPERM if not),
 * then wraps next under it with the slot's AAD and a fresh nonce into the
 * slot's pending wrap. h must carry a rotation (flag bit 0) before it is
 * encoded. */
int td_keyslot_wrap_pending(struct td_crypt_hdr *h, int slot, const uint8_t *kek, size_t kek_len,
			    const struct td_volkey *next);
/* Opens slot's pending wrap under kek: 0 and *out when the key's digest
 * is `digest` (the record's new key digest), -EPERM otherwise (or no
 * pending wrap), -ENOENT inactive, -EINVAL. No header MAC check: the
 * caller verified the header with the current key. */
int td_keyslot_open_pending(const struct td_crypt_hdr *h, int slot, const uint8_t *kek,
			    size_t kek_len, const uint8_t digest[TD_HDR_DIGEST_LEN],
			    struct td_volkey **out);

/* Clears slot.  -EINVAL bad index, -ENOENT not active, -EBUSY it is the
 * last active slot (removing it would lose the volume key for good). */
int td_keyslot_remove(struct td_crypt_hdr *h, int slot);

/* A one-line, user-facing explanation of an error returned above
 * ("wrong passphrase (no keyslot opened)", "all 16 keyslots are in use",
 * ...); strerror() text for anything else. */
const char *td_keyslot_strerror(int err);

#endif
