/* libFuzzer harness for the crypt header parser (crypt/header.c):
 * td_hdr_decode on each copy and td_hdr_pick on the pair.
 *
 * Input: byte 0 mode, bytes 1-2 the length of copy A (little endian,
 * clamped), then copy A, then copy B. Each copy is zero-padded (or cut) to
 * 16 KiB in a heap buffer of exactly the length passed, so reads past it
 * are ASan reports. Mode bits:
 *   0x01  recompute A's checksum     0x02  recompute B's checksum
 *   0x04  B is a copy of A           0x08  pass the raw (unpadded) length
 *                                          of A instead of 16 KiB
 * Without the checksum fix-ups nearly every mutation would die at the
 * checksum; with them the field, keyslot and canonical-encoding checks
 * get hostile values (and the reencryption record, td_hdr_reenc_get, in
 * the freshness field, with the keyslots' pending wraps and the switch). Anything that decodes must
 * re-encode to the same bytes and decode again to the same struct. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/header.h"
#include "fuzz/fuzz_common.h"

static uint8_t *copy_of(const uint8_t *p, size_t n, size_t len)
{
	uint8_t *c = calloc(1, len ? len : 1);

	if (c)
		memcpy(c, p, n < len ? n : len);
	return c;
}

static void check_decoded(const uint8_t *buf, const struct td_crypt_hdr *h)
{
	struct td_crypt_hdr h2;
	uint8_t *re = malloc(TD_HDR_COPY_SIZE);
	char err[256], uuid[TD_HDR_UUID_STR_LEN];
	uint8_t aad[TD_HDR_AAD_MAX];

	assert(re);
	assert(td_hdr_encode(h, re) == 0);
	assert(memcmp(re, buf, TD_HDR_COPY_SIZE) == 0); /* decode only takes canonical bytes */
	assert(td_hdr_decode(re, TD_HDR_COPY_SIZE, &h2, err, sizeof(err)) == 0);
	assert(fz_hdr_equal(h, &h2));
	assert(h->cipher[TD_HDR_STR_LEN - 1] == 0 && h->integrity[TD_HDR_STR_LEN - 1] == 0);
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
			continue;
		assert(td_kdf_params_check(&h->slots[i].kdf, err, sizeof(err)) == 0);
		assert(td_hdr_keyslot_aad(h->uuid, i, &h->slots[i], aad) ==
		       (td_kdf_is_token(h->slots[i].kdf.id) ? TD_HDR_AAD_MAX : TD_HDR_AAD_LEN));
	}
	td_hdr_uuid_str(h->uuid, uuid);
	assert(strlen(uuid) == TD_HDR_UUID_STR_LEN - 1);
	{
		/* the reencryption record: what it accepts stays in range and
		 * re-encodes to the same bytes */
		struct td_reenc_rec r;
		struct td_crypt_hdr h3 = *h;
		int rr = td_hdr_reenc_get(h, &r, err, sizeof(err));

		assert(rr == 0 || rr == 1 || rr == -EBADMSG);
		if (rr == 1) {
			assert(r.new_slot < TD_HDR_KEYSLOTS && r.window <= TD_HDR_REENC_WINDOW_MAX);
			assert(r.boundary + r.window <= h->data_size / TD_HDR_SECTOR_SIZE);
			td_hdr_reenc_set(&h3, &r);
			assert(memcmp(&h3, h, sizeof(h3)) == 0);
			/* the switch keeps what has a pending wrap (and the
			 * new slot) and the result encodes without the record */
			td_hdr_reenc_switch_slots(&h3, r.new_slot);
			td_hdr_reenc_set(&h3, NULL);
			assert(td_hdr_pending_slots(&h3) == 0);
			assert(h3.slots[r.new_slot].state == TD_KEYSLOT_ACTIVE);
			assert(td_hdr_encode(&h3, re) == 0);
		} else if (!(h->flags & TD_HDR_FLAG_REENCRYPT)) {
			assert(td_hdr_pending_slots(h) == 0); /* only with a rotation */
		}
	}
	free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct td_crypt_hdr ha, hb, hp;
	uint8_t *a, *b;
	size_t alen, blen, len;
	char err[512];
	int mode, ra, rb, rp, which = -1, other = -1;

	if (size < 3)
		return 0;
	mode = data[0];
	alen = data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (alen > size)
		alen = size;
	blen = size - alen;
	len = (mode & 0x08) ? alen : TD_HDR_COPY_SIZE;
	a = copy_of(data, alen, len);
	b = (mode & 0x04) ? copy_of(data, alen, len) : copy_of(data + alen, blen, len);
	if (!a || !b)
		goto out;
	if (len >= TD_HDR_COPY_SIZE) {
		if (mode & 0x01)
			fz_hdr_fix_checksum(a);
		if (mode & 0x04)
			memcpy(b, a, len);
		else if (mode & 0x02)
			fz_hdr_fix_checksum(b);
	}

	ra = td_hdr_decode(a, len, &ha, err, sizeof(err));
	assert(ra == 0 || ra == -ENOMSG || ra == -EPROTONOSUPPORT || ra == -EBADMSG);
	if (ra == 0)
		check_decoded(a, &ha);
	rb = td_hdr_decode(b, len, &hb, err, sizeof(err));
	assert(rb == 0 || rb == -ENOMSG || rb == -EPROTONOSUPPORT || rb == -EBADMSG);
	if (rb == 0)
		check_decoded(b, &hb);

	err[0] = 0;
	rp = td_hdr_pick(a, b, len, &hp, &which, &other, err, sizeof(err));
	if (ra < 0 && rb < 0) {
		assert(rp < 0);
		assert(rp ==
		       ((ra == -ENOMSG && rb == -ENOMSG) ? -ENOMSG : (ra != -ENOMSG ? ra : rb)));
	} else {
		assert(rp == 0 && (which == 0 || which == 1));
		assert(which == 0 ? ra == 0 : rb == 0);
		assert(fz_hdr_equal(&hp, which == 0 ? &ha : &hb));
		if (ra == 0 && rb == 0)
			assert(hp.seqno == (ha.seqno >= hb.seqno ? ha.seqno : hb.seqno));
		if (ra < 0 || rb < 0)
			assert(other == TD_HDR_OTHER_CORRUPT);
		else
			assert(other == (memcmp(a, b, TD_HDR_COPY_SIZE) ? TD_HDR_OTHER_STALE
									: TD_HDR_OTHER_OK));
	}
	/* one copy unreadable */
	rp = td_hdr_pick(NULL, b, len, &hp, &which, &other, err, sizeof(err));
	assert(rp == (rb == 0 ? 0 : rb));
	rp = td_hdr_pick(a, NULL, len, &hp, &which, &other, err, sizeof(err));
	assert(rp == (ra == 0 ? 0 : ra));
out:
	free(a);
	free(b);
	return 0;
}
