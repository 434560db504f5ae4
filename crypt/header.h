/* The on-disk crypt header (docs/FORMAT.md, "The crypt header"): two
 * 16 KiB copies at bytes 0 and 65536 of the lower image, each with a
 * checksum (accidents) and, once the volume key is known, a MAC (tampering).
 *
 * Everything here is a pure function on memory: no I/O.  A writer does
 *
 *	h.seqno++;
 *	td_hdr_seal(&h, vk);            (MAC under the new contents)
 *	td_hdr_encode(&h, buf);
 *	write buf over the copy td_hdr_pick did not choose (B if both were
 *	valid), flush, then over the chosen copy, flush
 *
 * so that the copy being overwritten is never the only intact one.  A
 * reader reads both copies, calls td_hdr_pick, reports *other_bad, then
 * unlocks a keyslot (keymgr/keyslot.h), which also verifies the MAC. */
#ifndef TD_CRYPT_HEADER_H
#define TD_CRYPT_HEADER_H

#include <stddef.h>
#include <stdint.h>

struct td_volkey;

#define TD_HDR_MAGIC "TDCRYPT" /* 8 bytes with the NUL */
#define TD_HDR_MAGIC_LEN 8
#define TD_HDR_VERSION 1
#define TD_HDR_COPY_SIZE 16384 /* bytes of one encoded copy */
#define TD_HDR_SLOT_SIZE 65536 /* room reserved for each copy */
#define TD_HDR_OFFSET_A 0      /* primary */
#define TD_HDR_OFFSET_B 65536  /* secondary */
#define TD_HDR_AREA_MIN 131072 /* smallest legal data offset */
#define TD_HDR_DATA_OFFSET_DEFAULT 1048576
#define TD_HDR_DATA_OFFSET_MAX 1073741824

#define TD_HDR_CIPHER_XTS "aes-xts-plain64"
#define TD_HDR_KEY_BITS 512
#define TD_HDR_SECTOR_SIZE 4096
#define TD_HDR_TWEAK_PLAIN64 1 /* 64-bit LE block number, rest of the tweak zero */
#define TD_HDR_INTEGRITY_NONE "none"
#define TD_HDR_INTEGRITY_HMAC_SHA256 "hmac-sha256"

#define TD_HDR_STR_LEN 32 /* cipher and integrity spec fields, NUL included */
#define TD_HDR_UUID_LEN 16
#define TD_HDR_DIGEST_LEN 32
#define TD_HDR_MAC_LEN 32
#define TD_HDR_INTEGRITY_PARAMS_LEN 256
#define TD_HDR_FRESHNESS_LEN 256

/* flags: the low 32 bits are incompatible features (refused unless
 * known), the high 32 compatible ones (kept, ignored). */
#define TD_HDR_FLAGS_INCOMPAT_MASK 0xffffffffULL
/* bit 0: a volume-key rotation is under way (the reencryption record) */
#define TD_HDR_FLAG_REENCRYPT 0x1ULL
#define TD_HDR_FLAGS_INCOMPAT_KNOWN TD_HDR_FLAG_REENCRYPT

#define TD_HDR_KEYSLOTS 16
#define TD_HDR_KEYSLOT_SIZE 256
#define TD_HDR_KEYSLOTS_OFFSET 1024
#define TD_HDR_SALT_LEN 32
#define TD_HDR_NONCE_LEN 12
#define TD_HDR_WRAPPED_LEN 64 /* the volume key */
#define TD_HDR_TAG_LEN 16
#define TD_HDR_AAD_LEN 70  /* label 18 + uuid 16 + index 4 + slot bytes 0..31 */
#define TD_HDR_AAD_MAX 102 /* ... + SHA-256 of the token, for a token slot */

/* Keyslot tokens (docs/FORMAT.md, "Keyslot tokens"): 640 bytes per slot
 * at copy offset 5120 + 640 * i, for the slots a machine opens. */
#define TD_HDR_TOKENS_OFFSET 5120
#define TD_HDR_TOKEN_SIZE 640
#define TD_HDR_TOKEN_MAX 632 /* payload bytes */

/* KDF limits a header may ask for (larger values are refused as hostile). */
#define TD_KDF_ARGON2_T_MAX 64
#define TD_KDF_ARGON2_M_MAX 4194304 /* KiB = 4 GiB */
#define TD_KDF_ARGON2_P_MAX 16
#define TD_KDF_PBKDF2_ITER_MAX 2147483647u
#define TD_KDF_SCRYPT_N_MAX (1ULL << 30)
#define TD_KDF_SCRYPT_R_MAX 64
#define TD_KDF_SCRYPT_P_MAX 16
#define TD_KDF_SCRYPT_MEM_MAX (1ULL << 32) /* 128 * r * N bytes */

enum td_kdf_id {
	TD_KDF_NONE = 0,
	TD_KDF_ARGON2ID = 1,
	TD_KDF_PBKDF2_SHA256 = 2,
	TD_KDF_SCRYPT = 3,
	/* No passphrase: the 32-byte KEK comes from the slot's token. */
	TD_KDF_TPM2 = 4,
	TD_KDF_TANG = 5,
};

/* Whether slots of this KDF id are opened through a token. */
static inline int td_kdf_is_token(int id)
{
	return id == TD_KDF_TPM2 || id == TD_KDF_TANG;
}

/* Only the fields of the chosen KDF are used; the others are ignored on
 * encode and zero after decode. */
struct td_kdf_params {
	enum td_kdf_id id;
	uint32_t t_cost;      /* argon2id: passes */
	uint32_t m_cost_kib;  /* argon2id: memory */
	uint32_t parallelism; /* argon2id: lanes (and threads) */
	uint32_t iterations;  /* pbkdf2-sha256 */
	uint64_t n;	      /* scrypt: CPU/memory cost, a power of two */
	uint32_t r;	      /* scrypt: block size */
	uint32_t p;	      /* scrypt: parallelism */
};

enum td_keyslot_state {
	TD_KEYSLOT_INACTIVE = 0,
	TD_KEYSLOT_ACTIVE = 1,
};

struct td_keyslot {
	uint32_t state; /* enum td_keyslot_state */
	struct td_kdf_params kdf;
	uint8_t salt[TD_HDR_SALT_LEN];
	uint8_t nonce[TD_HDR_NONCE_LEN];
	uint8_t wrapped[TD_HDR_WRAPPED_LEN];
	uint8_t tag[TD_HDR_TAG_LEN];
	/* a pending wrap of the next volume key under the same KEK and AAD
	 * (docs/FORMAT.md, "Pending wraps"): only while a rotation is under
	 * way (flag bit 0); pending 0 = none and the fields are zero */
	uint32_t pending;
	uint8_t pending_nonce[TD_HDR_NONCE_LEN];
	uint8_t pending_wrapped[TD_HDR_WRAPPED_LEN];
	uint8_t pending_tag[TD_HDR_TAG_LEN];
	/* token slots only (td_kdf_is_token(kdf.id)); zero otherwise */
	uint32_t token_len;
	uint8_t token[TD_HDR_TOKEN_MAX];
};

/* One parsed copy, host byte order.  Magic, version, header size and the
 * keyslot geometry are constants of version 1 and not stored here. */
struct td_crypt_hdr {
	uint64_t seqno;
	uint8_t uuid[TD_HDR_UUID_LEN];
	uint64_t flags;
	char cipher[TD_HDR_STR_LEN]; /* NUL-terminated */
	uint32_t key_bits;
	uint32_t sector_size;
	uint32_t tweak_mode;
	uint64_t data_offset;		/* bytes; where virtual block 0 starts */
	uint64_t data_size;		/* bytes exported above the crypt layer */
	char integrity[TD_HDR_STR_LEN]; /* NUL-terminated */
	uint32_t tag_size;
	uint8_t vk_digest[TD_HDR_DIGEST_LEN];
	uint8_t integrity_params[TD_HDR_INTEGRITY_PARAMS_LEN];
	uint8_t freshness[TD_HDR_FRESHNESS_LEN];
	struct td_keyslot slots[TD_HDR_KEYSLOTS];
	uint8_t mac[TD_HDR_MAC_LEN];
};

/* Which copy td_hdr_pick did not choose, and why (*other_bad). */
enum td_hdr_other {
	TD_HDR_OTHER_OK = 0,	  /* valid and identical */
	TD_HDR_OTHER_CORRUPT = 1, /* failed to decode: rewrite it */
	TD_HDR_OTHER_STALE = 2,	  /* valid but older or different: rewrite it */
};

/* A new header for a lower image of lower_size bytes: random UUID,
 * sequence 1, aes-xts-plain64 / 512 / 4096 / plain64, data at 1 MiB,
 * data_size = what remains rounded down to the sector size, no keyslots,
 * no digest, no MAC.  integrity is "none" or "hmac-sha256"; the integrity
 * layer may then shrink data_size and fill integrity_params.
 * -EINVAL for an unknown integrity spec, -ENOSPC when the image cannot
 * hold the header area and one sector. */
int td_hdr_init_new(struct td_crypt_hdr *h, uint64_t lower_size, const char *integrity);

/* Writes exactly TD_HDR_COPY_SIZE bytes (MAC field from h->mac, checksum
 * computed).  -EINVAL, with nothing written, if h would not decode. */
int td_hdr_encode(const struct td_crypt_hdr *h, uint8_t *buf);

/* Parses and validates one copy (the first TD_HDR_COPY_SIZE of len
 * bytes).  Hostile input is refused, never trusted: every field, every
 * reserved byte and the encoding itself are checked.  The MAC is not (it
 * needs the key).  Returns 0, -ENOMSG (no magic: not a tdcrypt header),
 * -EPROTONOSUPPORT (unknown version) or -EBADMSG (corrupt or invalid);
 * err gets a one-line reason.  out is untouched on failure. */
int td_hdr_decode(const uint8_t *buf, size_t len, struct td_crypt_hdr *out, char *err,
		  size_t errlen);

/* Decodes both copies (either pointer may be NULL for "unreadable") and
 * returns the valid one with the higher sequence number (A on a tie):
 * *which = 0 for A, 1 for B; *other_bad = enum td_hdr_other, with the
 * reason in err when it is not TD_HDR_OTHER_OK.  When neither copy is
 * valid: -ENOMSG if neither has the magic, else the first decode error,
 * with both reasons in err. */
int td_hdr_pick(const uint8_t *copy_a, const uint8_t *copy_b, size_t len, struct td_crypt_hdr *out,
		int *which, int *other_bad, char *err, size_t errlen);

/* HMAC-SHA256 under the "header" subkey over bytes 0..16319 of the
 * encoding of h (everything but the MAC and checksum fields). */
int td_hdr_compute_mac(const struct td_crypt_hdr *h, const struct td_volkey *vk,
		       uint8_t mac[TD_HDR_MAC_LEN]);
/* h->mac = td_hdr_compute_mac(h, vk). */
int td_hdr_seal(struct td_crypt_hdr *h, const struct td_volkey *vk);
/* 0 if h->mac is right (constant-time compare), -EBADMSG if not. */
int td_hdr_verify_mac(const struct td_crypt_hdr *h, const struct td_volkey *vk);

/* The volume key digest: HMAC-SHA256(subkey "digest", fixed label). */
int td_hdr_vk_digest(const struct td_volkey *vk, uint8_t out[TD_HDR_DIGEST_LEN]);
/* 0 if vk matches h->vk_digest (constant time), -EPERM if not. */
int td_hdr_check_volkey(const struct td_crypt_hdr *h, const struct td_volkey *vk);

/* The AES-GCM associated data of keyslot index ks (docs/FORMAT.md):
 * returns its length (TD_HDR_AAD_LEN, or TD_HDR_AAD_MAX for a token slot,
 * whose AAD ends with the SHA-256 of its encoded token), or -EINVAL. */
int td_hdr_keyslot_aad(const uint8_t uuid[TD_HDR_UUID_LEN], int index, const struct td_keyslot *ks,
		       uint8_t aad[TD_HDR_AAD_MAX]);

/* 0 if p is a KDF with parameters a header may carry, else -EINVAL with
 * the reason in err. */
int td_kdf_params_check(const struct td_kdf_params *p, char *err, size_t errlen);

/* ---- key-event log anchor: bytes 0..63 of the freshness field ---------
 * (docs/FORMAT.md, "Key-event log").  All 64 bytes zero = no anchor.
 * Bytes 64..255 belong to the anti-rollback record and are left alone. */
#define TD_HDR_KEYLOG_MAGIC "TDKEYLOG" /* 8 bytes, no NUL */
#define TD_HDR_KEYLOG_MAGIC_LEN 8
#define TD_HDR_KEYLOG_VERSION 1
#define TD_HDR_KEYLOG_ANCHOR_OFF 0 /* in h->freshness */
#define TD_HDR_KEYLOG_ANCHOR_LEN 64
#define TD_HDR_KEYLOG_HEAD_LEN 32

struct td_keylog_anchor {
	uint64_t count;			      /* entries covered; 0 = no anchor */
	uint8_t head[TD_HDR_KEYLOG_HEAD_LEN]; /* hash of entry count-1 */
};

/* Reads the anchor out of h->freshness: 0 with a->count = 0 (head zero)
 * when the 64 bytes are all zero, 0 with the anchor, or -EBADMSG (err
 * says why) when they are neither.  Trust it only after the header MAC
 * was verified with the volume key. */
int td_hdr_keylog_anchor_get(const struct td_crypt_hdr *h, struct td_keylog_anchor *a, char *err,
			     size_t errlen);
/* Writes a into bytes 0..63 of h->freshness (a->count 0 clears them);
 * bytes 64..255 are untouched.  The caller then seals and stores h. */
void td_hdr_keylog_anchor_set(struct td_crypt_hdr *h, const struct td_keylog_anchor *a);

/* ---- reencryption record: bytes 128..255 of the freshness field -------
 * (docs/FORMAT.md, "Volume-key rotation"). Present iff flag bit 0. */
#define TD_HDR_REENC_MAGIC "TDREENC1" /* 8 bytes, no NUL */
#define TD_HDR_REENC_OFF 128	      /* in h->freshness */
#define TD_HDR_REENC_LEN 128
#define TD_HDR_REENC_WINDOW_MAX 128 /* blocks staged at a time */
#define TD_HDR_REENC_STAGING_DEFAULT 262144
struct td_reenc_rec {
	uint32_t new_slot;			   /* the keyslot wrapping the new key */
	uint64_t boundary;			   /* blocks below are under the new key */
	uint64_t window;			   /* staged blocks from boundary, 0 = none */
	uint64_t staging_off;			   /* bytes, in the lower image */
	uint8_t new_digest[TD_HDR_DIGEST_LEN];	   /* of the new volume key */
	uint8_t staging_digest[TD_HDR_DIGEST_LEN]; /* SHA-256 of the staged bytes */
};
/* 1 with *r filled when flag bit 0 is set and the record is well formed,
 * 0 (r zeroed) when the flag is clear and the bytes are zero, -EBADMSG
 * with a reason otherwise. Trust it only after the MAC was verified. */
int td_hdr_reenc_get(const struct td_crypt_hdr *h, struct td_reenc_rec *r, char *err,
		     size_t errlen);
/* Writes r and sets flag bit 0; r NULL clears both. */
void td_hdr_reenc_set(struct td_crypt_hdr *h, const struct td_reenc_rec *r);
/* The keyslots at the end of a rotation whose record names new_slot
 * (docs/FORMAT.md, "The end"): a slot with a pending wrap takes it as its
 * wrap (pending cleared); new_slot without one keeps its wrap (a record
 * written before pending wraps); every other slot is cleared. The caller
 * then clears the record, sets the new digest and seals. */
void td_hdr_reenc_switch_slots(struct td_crypt_hdr *h, uint32_t new_slot);
/* Number of active slots with a pending wrap. */
int td_hdr_pending_slots(const struct td_crypt_hdr *h);

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus NUL. */
#define TD_HDR_UUID_STR_LEN 37
void td_hdr_uuid_str(const uint8_t uuid[TD_HDR_UUID_LEN], char out[TD_HDR_UUID_STR_LEN]);

#endif
