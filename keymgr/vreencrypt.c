/* Volume-key rotation, the key manager's part (keymgr/vops.h; the format
 * and the protocol: docs/FORMAT.md, "Volume-key rotation"). vdkey starts a
 * rotation — a new random volume key, wrapped with the passphrase given
 * into a free keyslot, the reencryption record in the header, both keys in
 * the keyring — and a tapdisk with the image open moves the data
 * (crypt/reencrypt.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/keyslot.h"
#include "keymgr/secret_input.h"
#include "keymgr/vops.h"

/* Opens keyslot `slot` of h with pass without the header's digest or MAC
 * (the new key's slot during a rotation): the unwrapped key when its
 * digest is `digest`. */
static int unwrap_slot(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		       const uint8_t digest[TD_HDR_DIGEST_LEN], struct td_volkey **out)
{
	const struct td_keyslot *ks = &h->slots[slot];
	uint8_t aad[TD_HDR_AAD_MAX], dig[TD_HDR_DIGEST_LEN];
	uint8_t *kek = td_secure_alloc(TD_AEAD_KEY_LEN), *raw = td_secure_alloc(TD_VOLKEY_LEN);
	int aadlen = -1;
	int rc = -ENOMEM;

	*out = NULL;
	if (!kek || !raw)
		goto out;
	rc = -EPERM;
	/* a passphrase slot only: token slots never take a passphrase */
	if (ks->state != TD_KEYSLOT_ACTIVE || td_kdf_is_token(ks->kdf.id) ||
	    (aadlen = td_hdr_keyslot_aad(h->uuid, slot, ks, aad)) < 0)
		goto out;
	if ((rc = td_kdf_derive(&ks->kdf, pass, passlen, ks->salt, kek, TD_AEAD_KEY_LEN)) < 0)
		goto out;
	rc = -EPERM;
	if (td_aead_open(kek, ks->nonce, aad, (size_t)aadlen, ks->wrapped, TD_VOLKEY_LEN, ks->tag,
			 raw) < 0)
		goto out;
	rc = -ENOMEM;
	if (!(*out = td_volkey_from_bytes(raw, TD_VOLKEY_LEN)))
		goto out;
	rc = 0;
	if (td_hdr_vk_digest(*out, dig) < 0 || !td_ct_memeq(dig, digest, sizeof(dig))) {
		td_volkey_free(out);
		rc = -EPERM;
	}
out:
	if (kek)
		td_secure_free(kek);
	if (raw)
		td_secure_free(raw);
	return rc;
}

int td_volume_reencrypt_start(struct td_volume *v, const char *key_file, int *new_slot, char *err,
			      size_t errlen)
{
	struct td_secret s = {0};
	struct td_volkey *nk = NULL;
	struct td_reenc_rec r;
	uint8_t id[TD_IMAGE_ID_LEN], saved[TD_HDR_DIGEST_LEN];
	int rc, slot;

	rc = td_hdr_reenc_get(v->h, &r, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		snprintf(err, errlen,
			 "a volume-key rotation is already under way (block %llu of %llu): a "
			 "tapdisk with the image open continues it; 'vdkey reencrypt SPEC --wait' "
			 "follows it",
			 (unsigned long long)r.boundary,
			 (unsigned long long)(v->h->data_size / TD_BLOCK_SIZE));
		return -EBUSY;
	}
	if (v->h->data_offset <
	    TD_HDR_REENC_STAGING_DEFAULT + (uint64_t)TD_HDR_REENC_WINDOW_MAX * TD_BLOCK_SIZE) {
		snprintf(err, errlen,
			 "the image's data starts at byte %llu: too early for the 512 KiB staging "
			 "area a rotation needs at byte %u",
			 (unsigned long long)v->h->data_offset, TD_HDR_REENC_STAGING_DEFAULT);
		return -ENOSPC;
	}
	rc = td_volume_identity(v, id, err, errlen);
	if (rc < 0)
		return rc;
	rc = td_secret_read(key_file, "Passphrase: ", false, &s, err, errlen);
	if (rc < 0)
		goto out;
	rc = td_volume_unlock_pass(v, s.buf, s.len, TD_KEYLOG_OP_REENC_START, err, errlen);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	if (!(nk = td_volkey_new_random())) {
		snprintf(err, errlen, "cannot make a new volume key");
		goto out;
	}
	memset(&r, 0, sizeof(r));
	if ((rc = td_hdr_vk_digest(nk, r.new_digest)) < 0)
		goto out;
	/* the new slot wraps the new key: it is checked against the new
	 * digest while it is added, then the header is the old key's again */
	memcpy(saved, v->h->vk_digest, sizeof(saved));
	memcpy(v->h->vk_digest, r.new_digest, sizeof(saved));
	slot = td_keyslot_add(v->h, -1, nk, s.buf, s.len, &v->h->slots[v->slot].kdf);
	memcpy(v->h->vk_digest, saved, sizeof(saved));
	if (slot < 0) {
		rc = slot;
		snprintf(err, errlen,
			 slot == -ENOSPC ? "all %d keyslots are in use: a rotation needs a free "
					   "one for the new key (vdkey remove one first)"
					 : "cannot add the new key's keyslot (%d)",
			 slot == -ENOSPC ? TD_HDR_KEYSLOTS : slot);
		td_volume_record(v, TD_KEYLOG_OP_REENC_START, TD_KEYLOG_SLOT_NONE, false, false);
		goto out;
	}
	r.new_slot = (uint32_t)slot;
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	td_hdr_reenc_set(v->h, &r);
	/* both keys in the keyring first: the tapdisk needs them to open */
	rc = td_keyring_store_next(v->h->uuid, id, nk, 0, err, errlen);
	if (rc >= 0 && !td_keyring_present(v->h->uuid, id))
		rc = td_keyring_store(v->h->uuid, id, v->vk, 0, 0, err, errlen);
	if (rc < 0)
		goto out;
	td_volume_record(v, TD_KEYLOG_OP_REENC_START, slot, true, true);
	rc = td_volume_store(v, err, errlen);
	if (rc < 0) {
		td_volume_record(v, TD_KEYLOG_OP_REENC_START, slot, false, false);
		td_keyring_remove_next(v->h->uuid, id);
		goto out;
	}
	*new_slot = slot;
	rc = 0;
out:
	td_volkey_free(&nk);
	td_secret_free(&s);
	return rc;
}

int td_volume_load_next(struct td_volume *v, const void *pass, size_t passlen, char *err,
			size_t errlen)
{
	struct td_volkey *nk = NULL;
	struct td_reenc_rec r;
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc = td_hdr_reenc_get(v->h, &r, err, errlen);

	if (rc <= 0)
		return rc;
	rc = td_volume_identity(v, id, err, errlen);
	if (rc < 0)
		return rc;
	rc = unwrap_slot(v->h, (int)r.new_slot, pass, passlen, r.new_digest, &nk);
	if (rc < 0) {
		snprintf(err, errlen,
			 "a volume-key rotation is under way and this passphrase does not open its "
			 "new key (keyslot %u): give the passphrase 'vdkey reencrypt' was given",
			 r.new_slot);
		return rc;
	}
	rc = td_keyring_store_next(v->h->uuid, id, nk, 0, err, errlen);
	td_volkey_free(&nk);
	return rc < 0 ? rc : 1;
}

int td_volume_reencrypt_adopt(struct td_volume *v, char *err, size_t errlen)
{
	struct td_volkey *nk = NULL;
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc = td_volume_identity(v, id, err, errlen);

	if (rc < 0)
		return rc;
	if (td_keyring_fetch_next(v->h->uuid, id, &nk, err, errlen) < 0)
		return 0; /* nothing to move */
	if (td_hdr_check_volkey(v->h, nk) == 0) {
		rc = td_keyring_store(v->h->uuid, id, nk, 0, 0, err, errlen);
		if (rc >= 0)
			td_keyring_remove_next(v->h->uuid, id);
	}
	td_volkey_free(&nk);
	return rc < 0 ? rc : 0;
}
