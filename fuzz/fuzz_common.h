/* Helpers shared by the crypt-header harnesses (fuzz/fuzz_crypt_header.c,
 * fuzz/fuzz_keyslot.c) and the seed generator. Header-only on purpose:
 * each harness is one translation unit plus the project sources. */
#ifndef TD_FUZZ_COMMON_H
#define TD_FUZZ_COMMON_H

#include <stdint.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/header.h"

/* Where the checksum sits in one copy (docs/FORMAT.md): SHA-256 over
 * every byte before it. */
#define FZ_HDR_CHECKSUM_OFF (TD_HDR_COPY_SIZE - TD_SHA256_LEN)

/* Recomputes the checksum of a 16 KiB copy so that mutated contents get
 * past it and reach the field checks behind it; without this almost every
 * mutation stops at "checksum mismatch". */
static inline void fz_hdr_fix_checksum(uint8_t *copy)
{
	td_sha256(copy, FZ_HDR_CHECKSUM_OFF, copy + FZ_HDR_CHECKSUM_OFF);
}

/* Field-by-field equality of two parsed headers (the structs have
 * padding, so memcmp would compare garbage). */
static inline int fz_kdf_equal(const struct td_kdf_params *a, const struct td_kdf_params *b)
{
	return a->id == b->id && a->t_cost == b->t_cost && a->m_cost_kib == b->m_cost_kib &&
	       a->parallelism == b->parallelism && a->iterations == b->iterations && a->n == b->n &&
	       a->r == b->r && a->p == b->p;
}

static inline int fz_hdr_equal(const struct td_crypt_hdr *a, const struct td_crypt_hdr *b)
{
	if (a->seqno != b->seqno || memcmp(a->uuid, b->uuid, sizeof(a->uuid)) ||
	    a->flags != b->flags || strcmp(a->cipher, b->cipher) || a->key_bits != b->key_bits ||
	    a->sector_size != b->sector_size || a->tweak_mode != b->tweak_mode ||
	    a->data_offset != b->data_offset || a->data_size != b->data_size ||
	    strcmp(a->integrity, b->integrity) || a->tag_size != b->tag_size ||
	    memcmp(a->vk_digest, b->vk_digest, sizeof(a->vk_digest)) ||
	    memcmp(a->integrity_params, b->integrity_params, sizeof(a->integrity_params)) ||
	    memcmp(a->freshness, b->freshness, sizeof(a->freshness)) ||
	    memcmp(a->mac, b->mac, sizeof(a->mac)))
		return 0;
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		const struct td_keyslot *x = &a->slots[i], *y = &b->slots[i];

		if (x->state != y->state || !fz_kdf_equal(&x->kdf, &y->kdf) ||
		    memcmp(x->salt, y->salt, sizeof(x->salt)) ||
		    memcmp(x->nonce, y->nonce, sizeof(x->nonce)) ||
		    memcmp(x->wrapped, y->wrapped, sizeof(x->wrapped)) ||
		    memcmp(x->tag, y->tag, sizeof(x->tag)) || x->pending != y->pending ||
		    memcmp(x->pending_nonce, y->pending_nonce, sizeof(x->pending_nonce)) ||
		    memcmp(x->pending_wrapped, y->pending_wrapped, sizeof(x->pending_wrapped)) ||
		    memcmp(x->pending_tag, y->pending_tag, sizeof(x->pending_tag)) ||
		    x->token_len != y->token_len ||
		    (x->token_len <= TD_HDR_TOKEN_MAX && memcmp(x->token, y->token, x->token_len)))
			return 0;
	}
	return 1;
}

#endif
