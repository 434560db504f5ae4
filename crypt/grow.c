/* Online grow of a crypt layer (td_driver.grow; docs/FORMAT.md
 * "Growing"): the layers below grow first (the integrity layer writes its
 * metadata for the larger data area, or the new range of the lower image
 * is zeroed), then the header is rewritten with the new data size (and
 * integrity parameters) by the A/B update protocol. That header write is
 * the commit point: a crash before it leaves the old size, after it the
 * new one, and both open. Runs on an idle, freshly opened chain of a
 * paused VBD, at the top of the loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/crypt.h"
#include "crypt/hdrio.h"
#include "integrity/integrity.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"

#define ZERO_CHUNK (32ull << 20)

/* The new range of the lower image must read as zeros (an all-zero
 * ciphertext block is a zero block): it may hold anything on a block
 * device. Beyond the old data area: invisible until the commit. */
static int zero_new_range(struct td_layer *lo, uint64_t off, uint64_t len)
{
	int rc = 0;

	while (len && rc == 0) {
		uint64_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;

		rc = td_layer_sync_io(lo, TD_OP_WRITE_ZEROES, off, NULL, n, 0);
		off += n;
		len -= n;
	}
	return rc ? rc : td_layer_sync_io(lo, TD_OP_FLUSH, 0, NULL, 0, 0);
}

#ifdef TD_TEST_BUILD
static bool test_header_first;

void td_crypt_grow_test_break(bool header_first)
{
	test_header_first = header_first;
}
#endif

/* The new size in the header, re-sealed, by the A/B update protocol. */
static int commit(struct td_layer *hl, struct td_crypt_hdr *h, const struct td_volkey *vk,
		  uint64_t new_size, int which, char *err, size_t errlen)
{
	int rc;

	h->data_size = new_size;
	h->seqno++;
	rc = td_hdr_seal(h, vk);
	if (rc < 0) {
		snprintf(err, errlen, "crypt: cannot seal the header");
		return rc;
	}
	return td_hdr_store(hl, h, which, err, errlen);
}

int td_crypt_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	/* the integrity layer this layer inserted sits between it and the
	 * header's layer */
	bool integ = l->below->drv == &td_drv_integrity;
	struct td_layer *hl = integ ? l->below->below : l->below;
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_volkey *vk = NULL;
	uint8_t id[TD_IMAGE_ID_LEN];
	char note[512], where[512], uuid[TD_HDR_UUID_STR_LEN];
	int rc, which, other_bad;
	uint64_t old_size;

	if (!h)
		return -ENOMEM;
	rc = td_hdr_load(hl, h, &which, &other_bad, note, sizeof(note), err, errlen);
	if (rc < 0)
		goto out;
	td_hdr_uuid_str(h->uuid, uuid);
	rc = td_layer_identity(hl, id, where, sizeof(where));
	if (rc < 0) {
		snprintf(err, errlen, "crypt: image %s: cannot tell which image this is", uuid);
		goto out;
	}
	rc = -ENOKEY;
	if (!l->ctx->get_key) {
		snprintf(err, errlen, "crypt: image %s: no key source in this program", uuid);
		goto out;
	}
	rc = l->ctx->get_key(l->ctx->key_opaque, h->uuid, id, where, &vk, err, errlen);
	if (rc < 0)
		goto out;
	rc = -EBADMSG;
	if (td_hdr_check_volkey(h, vk) != 0 || td_hdr_verify_mac(h, vk) != 0) {
		snprintf(err, errlen, "crypt: image %s: the header does not verify with the key",
			 uuid);
		goto out;
	}
	rc = -EBUSY;
	if (h->flags & TD_HDR_FLAG_REENCRYPT) {
		snprintf(err, errlen,
			 "crypt: image %s: a volume-key rotation is under way; let it finish "
			 "(vdkey reencrypt --wait) and resize then",
			 uuid);
		goto out;
	}
	rc = -EINVAL;
	if (new_size < h->data_size) {
		snprintf(err, errlen,
			 "crypt: shrinking is not supported (%llu bytes now, %llu asked)",
			 (unsigned long long)h->data_size, (unsigned long long)new_size);
		goto out;
	}
	if (new_size % h->sector_size || new_size > (uint64_t)INT64_MAX - h->data_offset) {
		snprintf(err, errlen, "crypt: %llu bytes is not a valid data size",
			 (unsigned long long)new_size);
		goto out;
	}
	if (new_size == h->data_size) {
		rc = 0;
		goto out;
	}
	old_size = h->data_size;
	if (integ) {
		struct ti_params op, np;

		rc = ti_params_decode(h->integrity_params, hl->size, &op, err, errlen);
		if (rc == 0 && (rc = ti_grow_layout(&op, new_size / TD_BLOCK_SIZE, &np)) < 0)
			snprintf(err, errlen, "crypt: %llu bytes is beyond what integrity covers",
				 (unsigned long long)new_size);
		if (rc < 0)
			goto out;
		ti_params_encode(&np, h->integrity_params);
	}
#ifdef TD_TEST_BUILD
	if (test_header_first && (rc = commit(hl, h, vk, new_size, which, err, errlen)) < 0)
		goto out;
#endif
	if (integ) {
		rc = td_layer_grow(l->below, new_size, err, errlen);
		if (rc < 0)
			goto out;
	} else {
		rc = td_layer_grow(hl, h->data_offset + new_size, err, errlen);
		if (rc < 0)
			goto out;
		rc = zero_new_range(hl, h->data_offset + old_size, new_size - old_size);
		if (rc < 0) {
			snprintf(err, errlen, "crypt: cannot zero the new range: %s",
				 strerror(-rc));
			goto out;
		}
	}
#ifdef TD_TEST_BUILD
	if (!test_header_first)
#endif
		/* the commit point */
		rc = commit(hl, h, vk, new_size, which, err, errlen);
	if (rc < 0)
		goto out;
	td_info("crypt: image %s grown to %llu bytes (header sequence %llu)", uuid,
		(unsigned long long)new_size, (unsigned long long)h->seqno);
	l->size = new_size;
out:
	td_volkey_free(&vk);
	td_wipe(h, sizeof(*h));
	free(h);
	return rc;
}
