/* Encoding, decoding and authentication of the crypt header.  The byte
 * layout is docs/FORMAT.md; the offsets below are that table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/header.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "tapdisk/core/seterr.h"

/* Offsets in one copy. */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_HDR_SIZE = 12,
	OFF_SEQNO = 16,
	OFF_UUID = 24,
	OFF_FLAGS = 40,
	OFF_CIPHER = 48,
	OFF_KEY_BITS = 80,
	OFF_SECTOR_SIZE = 84,
	OFF_TWEAK_MODE = 88,
	OFF_RSV0 = 92,
	OFF_DATA_OFFSET = 96,
	OFF_DATA_SIZE = 104,
	OFF_INTEGRITY = 112,
	OFF_TAG_SIZE = 144,
	OFF_KS_COUNT = 148,
	OFF_KS_SIZE = 152,
	OFF_KS_OFFSET = 156,
	OFF_DIGEST = 160,
	OFF_RSV1 = 192,
	OFF_INTEGRITY_PARAMS = 256,
	OFF_FRESHNESS = 512,
	OFF_RSV2 = 768,
	OFF_KEYSLOTS = 1024,
	OFF_TOKENS = TD_HDR_TOKENS_OFFSET,
	OFF_RSV3 = TD_HDR_TOKENS_OFFSET + TD_HDR_KEYSLOTS * TD_HDR_TOKEN_SIZE, /* 15360 */
	OFF_MAC = 16320,
	OFF_CHECKSUM = 16352,
};

/* Offsets in one keyslot. */
enum {
	KS_STATE = 0,
	KS_KDF_ID = 4,
	KS_PARAM_A = 8,
	KS_PARAM_B = 16,
	KS_PARAM_C = 20,
	KS_KEY_LEN = 24,
	KS_RSV0 = 28,
	KS_SALT = 32,
	KS_NONCE = 64,
	KS_RSV1 = 76,
	KS_WRAPPED = 80,
	KS_TAG = 144,
	KS_PEND_NONCE = 160, /* the pending wrap (docs/FORMAT.md, "Pending wraps") */
	KS_PEND_STATE = 172,
	KS_PEND_WRAPPED = 176,
	KS_PEND_TAG = 240,
	KS_PARAMS_LEN = 32, /* bytes 0..31 go into the AAD */
};

_Static_assert(OFF_KEYSLOTS + TD_HDR_KEYSLOTS * TD_HDR_KEYSLOT_SIZE == OFF_TOKENS, "layout");
_Static_assert(OFF_RSV3 <= OFF_MAC, "layout");
_Static_assert(8 + TD_HDR_TOKEN_MAX == TD_HDR_TOKEN_SIZE, "token layout");
_Static_assert(OFF_MAC + TD_HDR_MAC_LEN == OFF_CHECKSUM, "layout");
_Static_assert(OFF_CHECKSUM + TD_SHA256_LEN == TD_HDR_COPY_SIZE, "layout");
_Static_assert(KS_TAG + TD_HDR_TAG_LEN == KS_PEND_NONCE, "layout");
_Static_assert(KS_PEND_NONCE + TD_HDR_NONCE_LEN == KS_PEND_STATE, "layout");
_Static_assert(KS_PEND_WRAPPED + TD_HDR_WRAPPED_LEN == KS_PEND_TAG, "layout");
_Static_assert(KS_PEND_TAG + TD_HDR_TAG_LEN == TD_HDR_KEYSLOT_SIZE, "layout");
_Static_assert(TD_HDR_COPY_SIZE <= TD_HDR_SLOT_SIZE, "layout");

static const struct {
	unsigned off, len;
} hdr_reserved[] = {
    {OFF_RSV0, 4},
    {OFF_RSV1, OFF_INTEGRITY_PARAMS - OFF_RSV1},
    {OFF_RSV2, OFF_KEYSLOTS - OFF_RSV2},
    {OFF_RSV3, OFF_MAC - OFF_RSV3},
};

static const struct {
	unsigned off, len;
} ks_reserved[] = {
    {KS_RSV0, 4},
    {KS_RSV1, 4},
};

#define AAD_LABEL "tdcrypt v1 keyslot"
#define DIGEST_LABEL "tdcrypt v1 volume key digest"

_Static_assert(sizeof(AAD_LABEL) - 1 + TD_HDR_UUID_LEN + 4 + KS_PARAMS_LEN == TD_HDR_AAD_LEN,
	       "aad");
_Static_assert(TD_HDR_AAD_LEN + TD_SHA256_LEN == TD_HDR_AAD_MAX, "aad of a token slot");

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static void put_str(uint8_t *p, const char *s)
{
	size_t n = strnlen(s, TD_HDR_STR_LEN - 1);

	memset(p, 0, TD_HDR_STR_LEN);
	memcpy(p, s, n);
}

/* A string field from disk: printable ASCII, a NUL, then only zeros.
 * Anything else is refused so that err messages can quote it safely. */
static int get_str(const uint8_t *p, char out[TD_HDR_STR_LEN])
{
	size_t n = 0;
	int ret = -1;

	while (n < TD_HDR_STR_LEN && p[n] != 0) {
		if (p[n] < 0x21 || p[n] > 0x7e)
			goto out;
		n++;
	}
	if (n == TD_HDR_STR_LEN || !all_zero(p + n, TD_HDR_STR_LEN - n))
		goto out;
	memset(out, 0, TD_HDR_STR_LEN);
	memcpy(out, p, n);
	ret = 0;
out:
	return ret;
}

int td_kdf_params_check(const struct td_kdf_params *p, char *err, size_t errlen)
{
	int ret = -EINVAL;

	if (!p) {
		td_seterr(err, errlen, "no KDF parameters");
		goto out;
	}
	switch (p->id) {
	case TD_KDF_ARGON2ID:
		if (p->t_cost < 1 || p->t_cost > TD_KDF_ARGON2_T_MAX) {
			td_seterr(err, errlen, "argon2id passes %u out of range 1..%u", p->t_cost,
				  TD_KDF_ARGON2_T_MAX);
			goto out;
		}
		if (p->parallelism < 1 || p->parallelism > TD_KDF_ARGON2_P_MAX) {
			td_seterr(err, errlen, "argon2id parallelism %u out of range 1..%u",
				  p->parallelism, TD_KDF_ARGON2_P_MAX);
			goto out;
		}
		if (p->m_cost_kib < 8 * p->parallelism || p->m_cost_kib > TD_KDF_ARGON2_M_MAX) {
			td_seterr(err, errlen, "argon2id memory %u KiB out of range %u..%u",
				  p->m_cost_kib, 8 * p->parallelism, TD_KDF_ARGON2_M_MAX);
			goto out;
		}
		break;
	case TD_KDF_PBKDF2_SHA256:
		if (p->iterations < 1 || p->iterations > TD_KDF_PBKDF2_ITER_MAX) {
			td_seterr(err, errlen, "pbkdf2 iterations %u out of range", p->iterations);
			goto out;
		}
		break;
	case TD_KDF_SCRYPT:
		if (p->n < 2 || p->n > TD_KDF_SCRYPT_N_MAX || (p->n & (p->n - 1)) != 0) {
			td_seterr(err, errlen, "scrypt N %llu is not a power of two in 2..2^30",
				  (unsigned long long)p->n);
			goto out;
		}
		if (p->r < 1 || p->r > TD_KDF_SCRYPT_R_MAX || p->p < 1 ||
		    p->p > TD_KDF_SCRYPT_P_MAX) {
			td_seterr(err, errlen, "scrypt r %u / p %u out of range", p->r, p->p);
			goto out;
		}
		if (128ULL * p->r * p->n > TD_KDF_SCRYPT_MEM_MAX) {
			td_seterr(err, errlen, "scrypt needs more than 4 GiB (N %llu, r %u)",
				  (unsigned long long)p->n, p->r);
			goto out;
		}
		break;
	case TD_KDF_TPM2:
	case TD_KDF_TANG:
		break; /* no parameters: the KEK comes from the token */
	default:
		td_seterr(err, errlen, "unknown KDF id %u", (unsigned)p->id);
		goto out;
	}
	ret = 0;
out:
	return ret;
}

/* The semantic rules of docs/FORMAT.md, shared by encode (refuse to write
 * what could not be read back) and decode. */
static int hdr_validate(const struct td_crypt_hdr *h, char *err, size_t errlen)
{
	uint64_t incompat = h->flags & TD_HDR_FLAGS_INCOMPAT_MASK & ~TD_HDR_FLAGS_INCOMPAT_KNOWN;
	char why[128];
	int ret = -EINVAL;

	if (incompat) {
		td_seterr(err, errlen, "unknown incompatible feature flags 0x%llx",
			  (unsigned long long)incompat);
		goto out;
	}
	if (strnlen(h->cipher, TD_HDR_STR_LEN) == TD_HDR_STR_LEN ||
	    strcmp(h->cipher, TD_HDR_CIPHER_XTS) != 0) {
		td_seterr(err, errlen, "unsupported cipher spec '%.31s'", h->cipher);
		goto out;
	}
	if (h->key_bits != TD_HDR_KEY_BITS) {
		td_seterr(err, errlen, "unsupported key size %u bits", h->key_bits);
		goto out;
	}
	if (h->sector_size != TD_HDR_SECTOR_SIZE) {
		td_seterr(err, errlen, "unsupported sector size %u", h->sector_size);
		goto out;
	}
	if (h->tweak_mode != TD_HDR_TWEAK_PLAIN64) {
		td_seterr(err, errlen, "unsupported tweak mode %u", h->tweak_mode);
		goto out;
	}
	if (h->data_offset % 4096 != 0 || h->data_offset % h->sector_size != 0 ||
	    h->data_offset < TD_HDR_AREA_MIN || h->data_offset > TD_HDR_DATA_OFFSET_MAX) {
		td_seterr(err, errlen, "data offset %llu invalid (multiple of 4096 in %u..%u)",
			  (unsigned long long)h->data_offset, TD_HDR_AREA_MIN,
			  TD_HDR_DATA_OFFSET_MAX);
		goto out;
	}
	if (h->data_size == 0 || h->data_size % h->sector_size != 0 ||
	    h->data_size > (uint64_t)INT64_MAX - h->data_offset) {
		td_seterr(err, errlen, "data size %llu invalid", (unsigned long long)h->data_size);
		goto out;
	}
	if (strnlen(h->integrity, TD_HDR_STR_LEN) == TD_HDR_STR_LEN) {
		td_seterr(err, errlen, "integrity spec not terminated");
		goto out;
	}
	if (strcmp(h->integrity, TD_HDR_INTEGRITY_NONE) == 0) {
		if (h->tag_size != 0) {
			td_seterr(err, errlen, "tag size %u with integrity none", h->tag_size);
			goto out;
		}
		if (!all_zero(h->integrity_params, sizeof(h->integrity_params))) {
			td_seterr(err, errlen, "integrity parameters set with integrity none");
			goto out;
		}
	} else if (strcmp(h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) == 0) {
		if (h->tag_size != 24) {
			td_seterr(err, errlen, "tag size %u, hmac-sha256 needs 24", h->tag_size);
			goto out;
		}
	} else {
		td_seterr(err, errlen, "unsupported integrity spec '%.31s'", h->integrity);
		goto out;
	}
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		const struct td_keyslot *ks = &h->slots[i];

		if (ks->state == TD_KEYSLOT_INACTIVE)
			continue;
		if (ks->state != TD_KEYSLOT_ACTIVE) {
			td_seterr(err, errlen, "keyslot %d: unknown state %u", i, ks->state);
			goto out;
		}
		if (td_kdf_params_check(&ks->kdf, why, sizeof(why)) < 0) {
			td_seterr(err, errlen, "keyslot %d: %s", i, why);
			goto out;
		}
		if (ks->pending > 1 || (ks->pending && !(h->flags & TD_HDR_FLAG_REENCRYPT))) {
			td_seterr(err, errlen, "keyslot %d: a pending wrap without a rotation", i);
			goto out;
		}
		if (td_kdf_is_token(ks->kdf.id) &&
		    (ks->token_len == 0 || ks->token_len > TD_HDR_TOKEN_MAX)) {
			td_seterr(err, errlen, "keyslot %d: token length %u out of range 1..%u", i,
				  ks->token_len, TD_HDR_TOKEN_MAX);
			goto out;
		}
	}
	ret = 0;
out:
	return ret;
}

/* Keyslot bytes 0..31: state, KDF id and parameters, key length. */
static void put_slot_params(uint8_t *p, const struct td_keyslot *ks)
{
	const struct td_kdf_params *k = &ks->kdf;

	memset(p, 0, KS_PARAMS_LEN);
	put_le32(p + KS_STATE, ks->state);
	put_le32(p + KS_KDF_ID, (uint32_t)k->id);
	switch (k->id) {
	case TD_KDF_ARGON2ID:
		put_le64(p + KS_PARAM_A, k->t_cost);
		put_le32(p + KS_PARAM_B, k->m_cost_kib);
		put_le32(p + KS_PARAM_C, k->parallelism);
		break;
	case TD_KDF_PBKDF2_SHA256:
		put_le64(p + KS_PARAM_A, k->iterations);
		break;
	case TD_KDF_SCRYPT:
		put_le64(p + KS_PARAM_A, k->n);
		put_le32(p + KS_PARAM_B, k->r);
		put_le32(p + KS_PARAM_C, k->p);
		break;
	default:
		break;
	}
	put_le32(p + KS_KEY_LEN, TD_HDR_WRAPPED_LEN);
}

/* The 640 token bytes of a slot: all zero unless it is a token slot. */
static void put_token(uint8_t *p, const struct td_keyslot *ks)
{
	memset(p, 0, TD_HDR_TOKEN_SIZE);
	if (ks->state != TD_KEYSLOT_ACTIVE || !td_kdf_is_token(ks->kdf.id) ||
	    ks->token_len > TD_HDR_TOKEN_MAX)
		return;
	put_le32(p, (uint32_t)ks->kdf.id);
	put_le32(p + 4, ks->token_len);
	memcpy(p + 8, ks->token, ks->token_len);
}

static void put_slot(uint8_t *p, const struct td_keyslot *ks)
{
	memset(p, 0, TD_HDR_KEYSLOT_SIZE);
	if (ks->state != TD_KEYSLOT_ACTIVE)
		return;
	put_slot_params(p, ks);
	memcpy(p + KS_SALT, ks->salt, TD_HDR_SALT_LEN);
	memcpy(p + KS_NONCE, ks->nonce, TD_HDR_NONCE_LEN);
	memcpy(p + KS_WRAPPED, ks->wrapped, TD_HDR_WRAPPED_LEN);
	memcpy(p + KS_TAG, ks->tag, TD_HDR_TAG_LEN);
	if (ks->pending) {
		memcpy(p + KS_PEND_NONCE, ks->pending_nonce, TD_HDR_NONCE_LEN);
		put_le32(p + KS_PEND_STATE, ks->pending);
		memcpy(p + KS_PEND_WRAPPED, ks->pending_wrapped, TD_HDR_WRAPPED_LEN);
		memcpy(p + KS_PEND_TAG, ks->pending_tag, TD_HDR_TAG_LEN);
	}
}

/* Everything but the MAC and checksum fields. */
static void write_body(const struct td_crypt_hdr *h, uint8_t *buf)
{
	memset(buf, 0, TD_HDR_COPY_SIZE);
	memcpy(buf + OFF_MAGIC, TD_HDR_MAGIC, TD_HDR_MAGIC_LEN);
	put_le32(buf + OFF_VERSION, TD_HDR_VERSION);
	put_le32(buf + OFF_HDR_SIZE, TD_HDR_COPY_SIZE);
	put_le64(buf + OFF_SEQNO, h->seqno);
	memcpy(buf + OFF_UUID, h->uuid, TD_HDR_UUID_LEN);
	put_le64(buf + OFF_FLAGS, h->flags);
	put_str(buf + OFF_CIPHER, h->cipher);
	put_le32(buf + OFF_KEY_BITS, h->key_bits);
	put_le32(buf + OFF_SECTOR_SIZE, h->sector_size);
	put_le32(buf + OFF_TWEAK_MODE, h->tweak_mode);
	put_le64(buf + OFF_DATA_OFFSET, h->data_offset);
	put_le64(buf + OFF_DATA_SIZE, h->data_size);
	put_str(buf + OFF_INTEGRITY, h->integrity);
	put_le32(buf + OFF_TAG_SIZE, h->tag_size);
	put_le32(buf + OFF_KS_COUNT, TD_HDR_KEYSLOTS);
	put_le32(buf + OFF_KS_SIZE, TD_HDR_KEYSLOT_SIZE);
	put_le32(buf + OFF_KS_OFFSET, TD_HDR_KEYSLOTS_OFFSET);
	memcpy(buf + OFF_DIGEST, h->vk_digest, TD_HDR_DIGEST_LEN);
	memcpy(buf + OFF_INTEGRITY_PARAMS, h->integrity_params, TD_HDR_INTEGRITY_PARAMS_LEN);
	memcpy(buf + OFF_FRESHNESS, h->freshness, TD_HDR_FRESHNESS_LEN);
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		put_slot(buf + OFF_KEYSLOTS + i * TD_HDR_KEYSLOT_SIZE, &h->slots[i]);
		put_token(buf + OFF_TOKENS + i * TD_HDR_TOKEN_SIZE, &h->slots[i]);
	}
}

int td_hdr_encode(const struct td_crypt_hdr *h, uint8_t *buf)
{
	int ret = -EINVAL;

	if (!h || !buf)
		goto out;
	ret = hdr_validate(h, NULL, 0);
	if (ret < 0)
		goto out;
	write_body(h, buf);
	memcpy(buf + OFF_MAC, h->mac, TD_HDR_MAC_LEN);
	ret = td_sha256(buf, OFF_CHECKSUM, buf + OFF_CHECKSUM);
out:
	return ret;
}

/* The raw, structural checks of one keyslot; the KDF parameter ranges are
 * left to hdr_validate. */
static int get_slot(const uint8_t *p, int i, struct td_keyslot *ks, char *err, size_t errlen)
{
	uint32_t state = get_le32(p + KS_STATE);
	uint32_t id = get_le32(p + KS_KDF_ID);
	uint64_t a = get_le64(p + KS_PARAM_A);
	uint32_t b = get_le32(p + KS_PARAM_B);
	uint32_t c = get_le32(p + KS_PARAM_C);
	int ret = -EBADMSG;

	memset(ks, 0, sizeof(*ks));
	if (state == TD_KEYSLOT_INACTIVE) {
		if (!all_zero(p, TD_HDR_KEYSLOT_SIZE)) {
			td_seterr(err, errlen, "keyslot %d: inactive but not zeroed", i);
			goto out;
		}
		ret = 0;
		goto out;
	}
	if (state != TD_KEYSLOT_ACTIVE) {
		td_seterr(err, errlen, "keyslot %d: unknown state %u", i, state);
		goto out;
	}
	if (get_le32(p + KS_KEY_LEN) != TD_HDR_WRAPPED_LEN) {
		td_seterr(err, errlen, "keyslot %d: key length %u, expected %u", i,
			  get_le32(p + KS_KEY_LEN), TD_HDR_WRAPPED_LEN);
		goto out;
	}
	for (size_t r = 0; r < sizeof(ks_reserved) / sizeof(ks_reserved[0]); r++) {
		if (!all_zero(p + ks_reserved[r].off, ks_reserved[r].len)) {
			td_seterr(err, errlen, "keyslot %d: reserved bytes at %u not zero", i,
				  ks_reserved[r].off);
			goto out;
		}
	}
	ks->kdf.id = (enum td_kdf_id)id;
	switch (id) {
	case TD_KDF_ARGON2ID:
		if (a > UINT32_MAX) {
			td_seterr(err, errlen, "keyslot %d: argon2id passes out of range", i);
			goto out;
		}
		ks->kdf.t_cost = (uint32_t)a;
		ks->kdf.m_cost_kib = b;
		ks->kdf.parallelism = c;
		break;
	case TD_KDF_PBKDF2_SHA256:
		if (a > UINT32_MAX || b != 0 || c != 0) {
			td_seterr(err, errlen, "keyslot %d: malformed pbkdf2 parameters", i);
			goto out;
		}
		ks->kdf.iterations = (uint32_t)a;
		break;
	case TD_KDF_SCRYPT:
		ks->kdf.n = a;
		ks->kdf.r = b;
		ks->kdf.p = c;
		break;
	case TD_KDF_TPM2:
	case TD_KDF_TANG:
		if (a != 0 || b != 0 || c != 0) {
			td_seterr(err, errlen, "keyslot %d: a %s slot has KDF parameters", i,
				  id == TD_KDF_TPM2 ? "tpm2" : "tang");
			goto out;
		}
		break;
	default:
		td_seterr(err, errlen, "keyslot %d: unknown KDF id %u", i, id);
		goto out;
	}
	ks->state = TD_KEYSLOT_ACTIVE;
	memcpy(ks->salt, p + KS_SALT, TD_HDR_SALT_LEN);
	memcpy(ks->nonce, p + KS_NONCE, TD_HDR_NONCE_LEN);
	memcpy(ks->wrapped, p + KS_WRAPPED, TD_HDR_WRAPPED_LEN);
	memcpy(ks->tag, p + KS_TAG, TD_HDR_TAG_LEN);
	ks->pending = get_le32(p + KS_PEND_STATE);
	if (ks->pending > 1 ||
	    (!ks->pending && !all_zero(p + KS_PEND_NONCE, TD_HDR_KEYSLOT_SIZE - KS_PEND_NONCE))) {
		td_seterr(err, errlen, "keyslot %d: malformed pending wrap (state %u)", i,
			  ks->pending);
		goto out;
	}
	if (ks->pending) {
		memcpy(ks->pending_nonce, p + KS_PEND_NONCE, TD_HDR_NONCE_LEN);
		memcpy(ks->pending_wrapped, p + KS_PEND_WRAPPED, TD_HDR_WRAPPED_LEN);
		memcpy(ks->pending_tag, p + KS_PEND_TAG, TD_HDR_TAG_LEN);
	}
	ret = 0;
out:
	return ret;
}

/* Slot i's token (p: its 640 bytes), after get_slot parsed the slot. */
static int get_token(const uint8_t *p, int i, struct td_keyslot *ks, char *err, size_t errlen)
{
	uint32_t kind = get_le32(p);
	uint32_t len = get_le32(p + 4);
	int ret = -EBADMSG;

	if (ks->state != TD_KEYSLOT_ACTIVE || !td_kdf_is_token(ks->kdf.id)) {
		if (!all_zero(p, TD_HDR_TOKEN_SIZE)) {
			td_seterr(err, errlen,
				  "keyslot %d: token bytes on a slot that has no token", i);
			goto out;
		}
		ret = 0;
		goto out;
	}
	if (kind != (uint32_t)ks->kdf.id) {
		td_seterr(err, errlen, "keyslot %d: token kind %u differs from the KDF id %u", i,
			  kind, (unsigned)ks->kdf.id);
		goto out;
	}
	if (len == 0 || len > TD_HDR_TOKEN_MAX) {
		td_seterr(err, errlen, "keyslot %d: token length %u out of range 1..%u", i, len,
			  TD_HDR_TOKEN_MAX);
		goto out;
	}
	if (!all_zero(p + 8 + len, TD_HDR_TOKEN_MAX - len)) {
		td_seterr(err, errlen, "keyslot %d: bytes after the token payload not zero", i);
		goto out;
	}
	ks->token_len = len;
	memcpy(ks->token, p + 8, len);
	ret = 0;
out:
	return ret;
}

/* Structure first (magic, version, size, checksum, reserved bytes), then
 * the field values, then the canonical-encoding check that makes the MAC
 * over our re-encoding equal to the MAC over the disk bytes. */
int td_hdr_decode(const uint8_t *buf, size_t len, struct td_crypt_hdr *out, char *err,
		  size_t errlen)
{
	struct td_crypt_hdr h;
	uint8_t sum[TD_SHA256_LEN];
	uint8_t *re = NULL;
	uint32_t v;
	int ret = -EINVAL;

	if (!buf || !out) {
		td_seterr(err, errlen, "no buffer");
		goto out;
	}
	ret = -EBADMSG;
	if (len < TD_HDR_COPY_SIZE) {
		td_seterr(err, errlen, "truncated: %zu bytes, a header copy is %u", len,
			  TD_HDR_COPY_SIZE);
		goto out;
	}
	ret = -ENOMSG;
	if (memcmp(buf + OFF_MAGIC, TD_HDR_MAGIC, TD_HDR_MAGIC_LEN) != 0) {
		td_seterr(err, errlen, "no tdcrypt magic");
		goto out;
	}
	ret = -EPROTONOSUPPORT;
	v = get_le32(buf + OFF_VERSION);
	if (v != TD_HDR_VERSION) {
		td_seterr(err, errlen, "unsupported format version %u", v);
		goto out;
	}
	ret = -EBADMSG;
	v = get_le32(buf + OFF_HDR_SIZE);
	if (v != TD_HDR_COPY_SIZE) {
		td_seterr(err, errlen, "header size %u, expected %u", v, TD_HDR_COPY_SIZE);
		goto out;
	}
	if (td_sha256(buf, OFF_CHECKSUM, sum) < 0) {
		td_seterr(err, errlen, "cannot compute checksum");
		goto out;
	}
	if (!td_ct_memeq(sum, buf + OFF_CHECKSUM, TD_SHA256_LEN)) {
		td_seterr(err, errlen, "checksum mismatch");
		goto out;
	}
	if (get_le32(buf + OFF_KS_COUNT) != TD_HDR_KEYSLOTS ||
	    get_le32(buf + OFF_KS_SIZE) != TD_HDR_KEYSLOT_SIZE ||
	    get_le32(buf + OFF_KS_OFFSET) != TD_HDR_KEYSLOTS_OFFSET) {
		td_seterr(err, errlen, "keyslot geometry %u x %u at %u, expected %u x %u at %u",
			  get_le32(buf + OFF_KS_COUNT), get_le32(buf + OFF_KS_SIZE),
			  get_le32(buf + OFF_KS_OFFSET), TD_HDR_KEYSLOTS, TD_HDR_KEYSLOT_SIZE,
			  TD_HDR_KEYSLOTS_OFFSET);
		goto out;
	}
	for (size_t r = 0; r < sizeof(hdr_reserved) / sizeof(hdr_reserved[0]); r++) {
		if (!all_zero(buf + hdr_reserved[r].off, hdr_reserved[r].len)) {
			td_seterr(err, errlen, "reserved bytes at offset %u not zero",
				  hdr_reserved[r].off);
			goto out;
		}
	}
	memset(&h, 0, sizeof(h));
	h.seqno = get_le64(buf + OFF_SEQNO);
	memcpy(h.uuid, buf + OFF_UUID, TD_HDR_UUID_LEN);
	h.flags = get_le64(buf + OFF_FLAGS);
	if (get_str(buf + OFF_CIPHER, h.cipher) < 0) {
		td_seterr(err, errlen, "cipher spec field is not a printable string");
		goto out;
	}
	h.key_bits = get_le32(buf + OFF_KEY_BITS);
	h.sector_size = get_le32(buf + OFF_SECTOR_SIZE);
	h.tweak_mode = get_le32(buf + OFF_TWEAK_MODE);
	h.data_offset = get_le64(buf + OFF_DATA_OFFSET);
	h.data_size = get_le64(buf + OFF_DATA_SIZE);
	if (get_str(buf + OFF_INTEGRITY, h.integrity) < 0) {
		td_seterr(err, errlen, "integrity spec field is not a printable string");
		goto out;
	}
	h.tag_size = get_le32(buf + OFF_TAG_SIZE);
	memcpy(h.vk_digest, buf + OFF_DIGEST, TD_HDR_DIGEST_LEN);
	memcpy(h.integrity_params, buf + OFF_INTEGRITY_PARAMS, TD_HDR_INTEGRITY_PARAMS_LEN);
	memcpy(h.freshness, buf + OFF_FRESHNESS, TD_HDR_FRESHNESS_LEN);
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (get_slot(buf + OFF_KEYSLOTS + i * TD_HDR_KEYSLOT_SIZE, i, &h.slots[i], err,
			     errlen) < 0)
			goto out;
		if (get_token(buf + OFF_TOKENS + i * TD_HDR_TOKEN_SIZE, i, &h.slots[i], err,
			      errlen) < 0)
			goto out;
	}
	memcpy(h.mac, buf + OFF_MAC, TD_HDR_MAC_LEN);
	if (hdr_validate(&h, err, errlen) < 0)
		goto out;
	re = malloc(TD_HDR_COPY_SIZE);
	if (!re) {
		ret = -ENOMEM;
		td_seterr(err, errlen, "out of memory");
		goto out;
	}
	if (td_hdr_encode(&h, re) < 0 || memcmp(re, buf, TD_HDR_COPY_SIZE) != 0) {
		td_seterr(err, errlen, "non-canonical encoding");
		goto out;
	}
	*out = h;
	ret = 0;
out:
	free(re);
	return ret;
}

static const char *copy_name(int which)
{
	return which == 0 ? "primary" : "secondary";
}

int td_hdr_pick(const uint8_t *copy_a, const uint8_t *copy_b, size_t len, struct td_crypt_hdr *out,
		int *which, int *other_bad, char *err, size_t errlen)
{
	struct td_crypt_hdr h[2];
	const uint8_t *copy[2] = {copy_a, copy_b};
	char why[2][160];
	int rc[2];
	int pick;
	int ret = -EINVAL;

	if (!out || !which || !other_bad) {
		td_seterr(err, errlen, "no output");
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		rc[i] = -ENOMSG;
		snprintf(why[i], sizeof(why[i]), "unreadable");
		if (copy[i])
			rc[i] = td_hdr_decode(copy[i], len, &h[i], why[i], sizeof(why[i]));
	}
	if (rc[0] < 0 && rc[1] < 0) {
		if (rc[0] == -ENOMSG && rc[1] == -ENOMSG) {
			ret = -ENOMSG;
			td_seterr(err, errlen,
				  "no tdcrypt header found (primary: %s; secondary: %s)", why[0],
				  why[1]);
		} else {
			ret = rc[0] != -ENOMSG ? rc[0] : rc[1];
			td_seterr(err, errlen,
				  "both header copies are unusable (primary: %s; secondary: %s)",
				  why[0], why[1]);
		}
		goto out;
	}
	pick = (rc[0] == 0 && (rc[1] < 0 || h[0].seqno >= h[1].seqno)) ? 0 : 1;
	*out = h[pick];
	*which = pick;
	*other_bad = TD_HDR_OTHER_OK;
	if (rc[!pick] < 0) {
		*other_bad = TD_HDR_OTHER_CORRUPT;
		td_seterr(err, errlen, "%s header copy unusable (%s); using the %s copy",
			  copy_name(!pick), why[!pick], copy_name(pick));
	} else if (h[!pick].seqno != h[pick].seqno || !copy[0] || !copy[1] ||
		   memcmp(copy[0], copy[1], TD_HDR_COPY_SIZE) != 0) {
		*other_bad = TD_HDR_OTHER_STALE;
		td_seterr(err, errlen, "%s header copy is stale (sequence %llu, %s has %llu)",
			  copy_name(!pick), (unsigned long long)h[!pick].seqno, copy_name(pick),
			  (unsigned long long)h[pick].seqno);
	} else {
		td_seterr(err, errlen, "both header copies valid");
	}
	ret = 0;
out:
	return ret;
}

/* A 32-byte subkey of vk in secure memory; the caller td_secure_free()s. */
static uint8_t *subkey32(const struct td_volkey *vk, const char *purpose, int *ret)
{
	uint8_t *k = td_secure_alloc(32);

	*ret = -ENOMEM;
	if (!k)
		return NULL;
	*ret = td_volkey_derive(vk, purpose, k, 32);
	if (*ret < 0) {
		td_secure_free(k);
		return NULL;
	}
	return k;
}

int td_hdr_compute_mac(const struct td_crypt_hdr *h, const struct td_volkey *vk,
		       uint8_t mac[TD_HDR_MAC_LEN])
{
	uint8_t *key = NULL;
	uint8_t *buf = NULL;
	int ret = -EINVAL;

	if (!h || !vk || !mac)
		goto out;
	ret = hdr_validate(h, NULL, 0);
	if (ret < 0)
		goto out;
	ret = -ENOMEM;
	buf = malloc(TD_HDR_COPY_SIZE);
	if (!buf)
		goto out;
	write_body(h, buf);
	key = subkey32(vk, TD_SUBKEY_HEADER, &ret);
	if (!key)
		goto out;
	ret = td_hmac_sha256(key, 32, buf, OFF_MAC, mac);
out:
	td_secure_free(key);
	free(buf);
	return ret;
}

int td_hdr_seal(struct td_crypt_hdr *h, const struct td_volkey *vk)
{
	uint8_t mac[TD_HDR_MAC_LEN];
	int ret = -EINVAL;

	if (!h)
		goto out;
	ret = td_hdr_compute_mac(h, vk, mac);
	if (ret < 0)
		goto out;
	memcpy(h->mac, mac, sizeof(mac));
out:
	return ret;
}

int td_hdr_verify_mac(const struct td_crypt_hdr *h, const struct td_volkey *vk)
{
	uint8_t mac[TD_HDR_MAC_LEN];
	int ret = -EINVAL;

	if (!h || !vk)
		goto out;
	ret = td_hdr_compute_mac(h, vk, mac);
	if (ret < 0)
		goto out;
	ret = -EBADMSG;
	if (!td_ct_memeq(mac, h->mac, TD_HDR_MAC_LEN))
		goto out;
	ret = 0;
out:
	return ret;
}

int td_hdr_vk_digest(const struct td_volkey *vk, uint8_t out[TD_HDR_DIGEST_LEN])
{
	uint8_t *key = NULL;
	int ret = -EINVAL;

	if (!vk || !out)
		goto out;
	key = subkey32(vk, TD_SUBKEY_DIGEST, &ret);
	if (!key)
		goto out;
	ret = td_hmac_sha256(key, 32, DIGEST_LABEL, sizeof(DIGEST_LABEL) - 1, out);
out:
	td_secure_free(key);
	return ret;
}

int td_hdr_check_volkey(const struct td_crypt_hdr *h, const struct td_volkey *vk)
{
	uint8_t digest[TD_HDR_DIGEST_LEN];
	int ret = -EINVAL;

	if (!h || !vk)
		goto out;
	ret = td_hdr_vk_digest(vk, digest);
	if (ret < 0)
		goto out;
	ret = -EPERM;
	if (!td_ct_memeq(digest, h->vk_digest, TD_HDR_DIGEST_LEN))
		goto out;
	ret = 0;
out:
	return ret;
}

int td_hdr_keyslot_aad(const uint8_t uuid[TD_HDR_UUID_LEN], int index, const struct td_keyslot *ks,
		       uint8_t aad[TD_HDR_AAD_MAX])
{
	uint8_t token[TD_HDR_TOKEN_SIZE];
	uint8_t *p = aad;
	int ret = -EINVAL;

	if (!uuid || !ks || !aad || index < 0 || index >= TD_HDR_KEYSLOTS)
		goto out;
	memcpy(p, AAD_LABEL, sizeof(AAD_LABEL) - 1);
	p += sizeof(AAD_LABEL) - 1;
	memcpy(p, uuid, TD_HDR_UUID_LEN);
	p += TD_HDR_UUID_LEN;
	put_le32(p, (uint32_t)index);
	p += 4;
	put_slot_params(p, ks);
	p += KS_PARAMS_LEN;
	ret = TD_HDR_AAD_LEN;
	if (td_kdf_is_token(ks->kdf.id)) {
		ret = -EINVAL;
		if (ks->token_len == 0 || ks->token_len > TD_HDR_TOKEN_MAX)
			goto out;
		put_token(token, ks);
		if (td_sha256(token, sizeof(token), p) < 0)
			goto out;
		ret = TD_HDR_AAD_MAX;
	}
out:
	return ret;
}

int td_hdr_init_new(struct td_crypt_hdr *h, uint64_t lower_size, const char *integrity)
{
	struct td_crypt_hdr n;
	int ret = -EINVAL;

	if (!h || !integrity || lower_size > (uint64_t)INT64_MAX)
		goto out;
	memset(&n, 0, sizeof(n));
	if (strcmp(integrity, TD_HDR_INTEGRITY_NONE) == 0) {
		n.tag_size = 0;
	} else if (strcmp(integrity, TD_HDR_INTEGRITY_HMAC_SHA256) == 0) {
		n.tag_size = 24;
	} else {
		goto out;
	}
	snprintf(n.integrity, sizeof(n.integrity), "%s", integrity);
	ret = -ENOSPC;
	if (lower_size < (uint64_t)TD_HDR_DATA_OFFSET_DEFAULT + TD_HDR_SECTOR_SIZE)
		goto out;
	ret = td_random_bytes(n.uuid, sizeof(n.uuid));
	if (ret < 0)
		goto out;
	n.uuid[6] = (uint8_t)((n.uuid[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
	n.uuid[8] = (uint8_t)((n.uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	n.seqno = 1;
	snprintf(n.cipher, sizeof(n.cipher), "%s", TD_HDR_CIPHER_XTS);
	n.key_bits = TD_HDR_KEY_BITS;
	n.sector_size = TD_HDR_SECTOR_SIZE;
	n.tweak_mode = TD_HDR_TWEAK_PLAIN64;
	n.data_offset = TD_HDR_DATA_OFFSET_DEFAULT;
	n.data_size = (lower_size - n.data_offset) / TD_HDR_SECTOR_SIZE * TD_HDR_SECTOR_SIZE;
	*h = n;
	ret = 0;
out:
	return ret;
}

void td_hdr_uuid_str(const uint8_t uuid[TD_HDR_UUID_LEN], char out[TD_HDR_UUID_STR_LEN])
{
	char *p = out;

	for (int i = 0; i < TD_HDR_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		snprintf(p, 3, "%02x", uuid[i]);
		p += 2;
	}
	*p = '\0';
}

/* ---- key-event log anchor ------------------------------------------------ */

enum {
	KLA_MAGIC = 0,
	KLA_VERSION = 8,
	KLA_RSV0 = 12,
	KLA_COUNT = 16,
	KLA_HEAD = 24,
	KLA_RSV1 = 56,
};
_Static_assert(KLA_HEAD + TD_HDR_KEYLOG_HEAD_LEN == KLA_RSV1, "anchor layout");
_Static_assert(KLA_RSV1 + 8 == TD_HDR_KEYLOG_ANCHOR_LEN, "anchor layout");
_Static_assert(TD_HDR_KEYLOG_ANCHOR_OFF + TD_HDR_KEYLOG_ANCHOR_LEN <= TD_HDR_FRESHNESS_LEN,
	       "anchor layout");

int td_hdr_keylog_anchor_get(const struct td_crypt_hdr *h, struct td_keylog_anchor *a, char *err,
			     size_t errlen)
{
	const uint8_t *p = h->freshness + TD_HDR_KEYLOG_ANCHOR_OFF;
	int ret = -EBADMSG;

	memset(a, 0, sizeof(*a));
	if (all_zero(p, TD_HDR_KEYLOG_ANCHOR_LEN)) {
		ret = 0; /* no anchor yet */
		goto out;
	}
	if (memcmp(p + KLA_MAGIC, TD_HDR_KEYLOG_MAGIC, TD_HDR_KEYLOG_MAGIC_LEN) != 0) {
		td_seterr(err, errlen, "malformed key-event log anchor: bad magic");
		goto out;
	}
	if (get_le32(p + KLA_VERSION) != TD_HDR_KEYLOG_VERSION) {
		td_seterr(err, errlen, "malformed key-event log anchor: unknown version %u",
			  get_le32(p + KLA_VERSION));
		goto out;
	}
	if (!all_zero(p + KLA_RSV0, 4) || !all_zero(p + KLA_RSV1, 8)) {
		td_seterr(err, errlen, "malformed key-event log anchor: reserved bytes not zero");
		goto out;
	}
	if (get_le64(p + KLA_COUNT) == 0) {
		td_seterr(err, errlen, "malformed key-event log anchor: count 0");
		goto out;
	}
	a->count = get_le64(p + KLA_COUNT);
	memcpy(a->head, p + KLA_HEAD, TD_HDR_KEYLOG_HEAD_LEN);
	ret = 0;
out:
	return ret;
}

void td_hdr_keylog_anchor_set(struct td_crypt_hdr *h, const struct td_keylog_anchor *a)
{
	uint8_t *p = h->freshness + TD_HDR_KEYLOG_ANCHOR_OFF;

	memset(p, 0, TD_HDR_KEYLOG_ANCHOR_LEN);
	if (!a || a->count == 0)
		return;
	memcpy(p + KLA_MAGIC, TD_HDR_KEYLOG_MAGIC, TD_HDR_KEYLOG_MAGIC_LEN);
	put_le32(p + KLA_VERSION, TD_HDR_KEYLOG_VERSION);
	put_le64(p + KLA_COUNT, a->count);
	memcpy(p + KLA_HEAD, a->head, TD_HDR_KEYLOG_HEAD_LEN);
}

/* ---- reencryption record ---------------------------------------------------- */

enum {
	RE_MAGIC = 0,
	RE_SLOT = 8,
	RE_RSV0 = 12,
	RE_BOUNDARY = 16,
	RE_WINDOW = 24,
	RE_STAGING = 32,
	RE_NEWDIG = 40,
	RE_STGDIG = 72,
	RE_RSV1 = 104,
};
_Static_assert(RE_RSV1 + 24 == TD_HDR_REENC_LEN, "reencryption record layout");
_Static_assert(TD_HDR_REENC_OFF + TD_HDR_REENC_LEN <= TD_HDR_FRESHNESS_LEN,
	       "reencryption record layout");

int td_hdr_reenc_get(const struct td_crypt_hdr *h, struct td_reenc_rec *r, char *err, size_t errlen)
{
	const uint8_t *p = h->freshness + TD_HDR_REENC_OFF;
	uint64_t blocks = h->sector_size ? h->data_size / h->sector_size : 0;
	uint64_t win_bytes = (uint64_t)TD_HDR_REENC_WINDOW_MAX * TD_HDR_SECTOR_SIZE;

	memset(r, 0, sizeof(*r));
	if (!(h->flags & TD_HDR_FLAG_REENCRYPT)) {
		if (!all_zero(p, TD_HDR_REENC_LEN)) {
			td_seterr(err, errlen,
				  "malformed reencryption record: bytes set without the flag");
			return -EBADMSG;
		}
		return 0;
	}
	if (memcmp(p + RE_MAGIC, TD_HDR_REENC_MAGIC, 8) != 0) {
		td_seterr(err, errlen, "malformed reencryption record: bad magic");
		return -EBADMSG;
	}
	r->new_slot = get_le32(p + RE_SLOT);
	r->boundary = get_le64(p + RE_BOUNDARY);
	r->window = get_le64(p + RE_WINDOW);
	r->staging_off = get_le64(p + RE_STAGING);
	memcpy(r->new_digest, p + RE_NEWDIG, TD_HDR_DIGEST_LEN);
	memcpy(r->staging_digest, p + RE_STGDIG, TD_HDR_DIGEST_LEN);
	if (!all_zero(p + RE_RSV0, 4) || !all_zero(p + RE_RSV1, 24) ||
	    r->new_slot >= TD_HDR_KEYSLOTS || h->slots[r->new_slot].state != TD_KEYSLOT_ACTIVE ||
	    r->boundary > blocks || r->window > TD_HDR_REENC_WINDOW_MAX ||
	    r->window > blocks - r->boundary ||
	    (r->window == 0 && !all_zero(r->staging_digest, TD_HDR_DIGEST_LEN)) ||
	    r->staging_off % 4096 || r->staging_off < TD_HDR_AREA_MIN ||
	    r->staging_off > h->data_offset || h->data_offset - r->staging_off < win_bytes) {
		memset(r, 0, sizeof(*r));
		td_seterr(err, errlen, "malformed reencryption record: a field is out of range");
		return -EBADMSG;
	}
	return 1;
}

void td_hdr_reenc_set(struct td_crypt_hdr *h, const struct td_reenc_rec *r)
{
	uint8_t *p = h->freshness + TD_HDR_REENC_OFF;

	memset(p, 0, TD_HDR_REENC_LEN);
	if (!r) {
		h->flags &= ~TD_HDR_FLAG_REENCRYPT;
		return;
	}
	h->flags |= TD_HDR_FLAG_REENCRYPT;
	memcpy(p + RE_MAGIC, TD_HDR_REENC_MAGIC, 8);
	put_le32(p + RE_SLOT, r->new_slot);
	put_le64(p + RE_BOUNDARY, r->boundary);
	put_le64(p + RE_WINDOW, r->window);
	put_le64(p + RE_STAGING, r->staging_off);
	memcpy(p + RE_NEWDIG, r->new_digest, TD_HDR_DIGEST_LEN);
	memcpy(p + RE_STGDIG, r->staging_digest, TD_HDR_DIGEST_LEN);
}

void td_hdr_reenc_switch_slots(struct td_crypt_hdr *h, uint32_t new_slot)
{
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		struct td_keyslot *ks = &h->slots[i];

		if (ks->state == TD_KEYSLOT_ACTIVE && ks->pending) {
			memcpy(ks->nonce, ks->pending_nonce, TD_HDR_NONCE_LEN);
			memcpy(ks->wrapped, ks->pending_wrapped, TD_HDR_WRAPPED_LEN);
			memcpy(ks->tag, ks->pending_tag, TD_HDR_TAG_LEN);
		} else if ((uint32_t)i != new_slot) {
			memset(ks, 0, sizeof(*ks));
			continue;
		}
		ks->pending = 0;
		memset(ks->pending_nonce, 0, TD_HDR_NONCE_LEN);
		memset(ks->pending_wrapped, 0, TD_HDR_WRAPPED_LEN);
		memset(ks->pending_tag, 0, TD_HDR_TAG_LEN);
	}
}

int td_hdr_pending_slots(const struct td_crypt_hdr *h)
{
	int n = 0;

	for (int i = 0; i < TD_HDR_KEYSLOTS; i++)
		n += h->slots[i].state == TD_KEYSLOT_ACTIVE && h->slots[i].pending;
	return n;
}
