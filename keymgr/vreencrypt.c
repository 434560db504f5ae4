/* Volume-key rotation, the key manager's part (keymgr/vops.h; the format
 * and the protocol: docs/FORMAT.md, "Volume-key rotation"). vdkey starts a
 * rotation — a new random volume key, a pending wrap of it in every keyslot
 * that is kept (under that slot's own KEK: the passphrase given, another
 * slot's passphrase, a token's KEK), the reencryption record in the
 * header, both keys in the keyring — and a tapdisk with the image open
 * moves the data (crypt/reencrypt.c), then makes the pending wraps the
 * slots' wraps. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/keyslot.h"
#include "keymgr/secret_input.h"
#include "keymgr/vops.h"
#include "keymgr/vtoken.h"

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

/* Whether a prompt may ask for a slot's passphrase: a terminal on stdin. */
static bool can_prompt(const struct td_reenc_keep *k)
{
	return k->prompt && isatty(STDIN_FILENO);
}

/* The options against the header: kept/dropped slots must be active and
 * not both; the slot given is kept; a file only for a passphrase slot. */
static int check_opts(const struct td_volume *v, const struct td_reenc_keep *k, int *bad, char *err,
		      size_t errlen)
{
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		const struct td_keyslot *ks = &v->h->slots[i];
		bool named = k->keep[i] || k->file[i] || k->drop[i];

		*bad = i;
		if (named && ks->state != TD_KEYSLOT_ACTIVE) {
			snprintf(err, errlen, "keyslot %d is not active (vdkey list SPEC)", i);
			return -ENOENT;
		}
		if ((k->keep[i] || k->file[i]) && k->drop[i]) {
			snprintf(err, errlen, "keyslot %d is both kept and dropped", i);
			return -EINVAL;
		}
		if (k->drop[i] && i == v->slot) {
			snprintf(err, errlen,
				 "keyslot %d is the one the passphrase given opens: the rotation "
				 "always keeps it (give another slot's passphrase with --key-file "
				 "to drop this one)",
				 i);
			return -EINVAL;
		}
		if (k->file[i] && td_kdf_is_token(ks->kdf.id)) {
			snprintf(err, errlen,
				 "keyslot %d is a %s slot: it takes no passphrase (--keep-slot %d, "
				 "without a file; its token re-wraps it)",
				 i, td_keyslot_kind_name((int)ks->kdf.id), i);
			return -EINVAL;
		}
	}
	*bad = TD_KEYLOG_SLOT_NONE;
	return 0;
}

/* The KEK of slot i, the rotation's way: the passphrase given for v->slot,
 * the token for a token slot, --keep-slot's file or a prompt for another
 * passphrase slot. 1 when the slot is to be dropped instead (said so),
 * 0 with kek, or -errno (err names the slot and the ways out). */
static int slot_kek(struct td_volume *v, int i, const struct td_reenc_keep *k,
		    const struct td_secret *given, uint8_t *kek, char *err, size_t errlen)
{
	const struct td_keyslot *ks = &v->h->slots[i];
	const char *kind = td_keyslot_kind_name((int)ks->kdf.id);
	struct td_secret s = {0};
	char why[768], prompt[64];
	int rc;

	if (i == v->slot)
		return td_keyslot_kek(v->h, i, given->buf, given->len, kek, TD_AEAD_KEY_LEN);
	if (k->drop[i] || (k->keep_only && !k->keep[i] && !k->file[i]))
		return 1;
	if (td_kdf_is_token(ks->kdf.id)) {
		why[0] = 0;
		rc = td_token_kek(&k->tok, ks, kek, TD_AEAD_KEY_LEN, why, sizeof(why));
		if (rc < 0)
			snprintf(
			    err, errlen,
			    "keyslot %d (%s): cannot recover its key now to re-wrap the new "
			    "one (%s); the rotation would drop it: make it work (the TPM, its "
			    "PCRs, the Tang server) and retry, or say --drop-slot %d to drop it",
			    i, kind, why, i);
		return rc;
	}
	if (!k->file[i] && !can_prompt(k)) {
		snprintf(err, errlen,
			 "keyslot %d (passphrase) would be dropped by the rotation: give its "
			 "passphrase with --keep-slot %d:FILE, or say --drop-slot %d (or "
			 "--keep-only) to drop it",
			 i, i, i);
		return -ENOKEY;
	}
	snprintf(prompt, sizeof(prompt), "Passphrase of keyslot %d (to keep it): ", i);
	rc = td_secret_read(k->file[i], prompt, false, &s, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "keyslot %d: %s", i, why);
		return rc;
	}
	rc = td_keyslot_kek(v->h, i, s.buf, s.len, kek, TD_AEAD_KEY_LEN);
	td_secret_free(&s);
	if (rc < 0)
		snprintf(err, errlen, "keyslot %d: cannot run its KDF: %s", i,
			 td_keyslot_strerror(rc));
	return rc;
}

int td_volume_reencrypt_start(struct td_volume *v, const char *key_file,
			      const struct td_reenc_keep *k, struct td_reenc_slots *res, char *err,
			      size_t errlen)
{
	struct td_secret s = {0};
	struct td_volkey *nk = NULL;
	struct td_reenc_rec r;
	uint8_t id[TD_IMAGE_ID_LEN];
	uint8_t *kek = NULL;
	int rc, bad = TD_KEYLOG_SLOT_NONE;

	memset(res, 0, sizeof(*res));
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
	rc = check_opts(v, k, &bad, err, errlen);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	kek = td_secure_alloc(TD_AEAD_KEY_LEN);
	if (!kek || !(nk = td_volkey_new_random())) {
		snprintf(err, errlen, "cannot make a new volume key (out of locked memory)");
		goto fail;
	}
	memset(&r, 0, sizeof(r));
	if ((rc = td_hdr_vk_digest(nk, r.new_digest)) < 0)
		goto fail;
	/* every kept slot's pending wrap, in memory; written below in one
	 * header update with the record, or not at all */
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (v->h->slots[i].state != TD_KEYSLOT_ACTIVE)
			continue;
		bad = i;
		rc = slot_kek(v, i, k, &s, kek, err, errlen);
		if (rc == 1) {
			res->dropped |= 1u << i;
			continue;
		}
		if (rc < 0)
			goto fail;
		rc = td_keyslot_wrap_pending(v->h, i, kek, TD_AEAD_KEY_LEN, nk);
		td_wipe(kek, TD_AEAD_KEY_LEN);
		if (rc < 0) {
			snprintf(err, errlen,
				 rc == -EPERM ? "keyslot %d (%s): %s does not open it"
					      : "keyslot %d (%s): cannot re-wrap the new key (%s)",
				 i, td_keyslot_kind_name((int)v->h->slots[i].kdf.id),
				 rc != -EPERM ? td_keyslot_strerror(rc)
				 : td_kdf_is_token((int)v->h->slots[i].kdf.id)
				     ? "the key its token released"
				     : "the passphrase given for it");
			goto fail;
		}
		res->rewrapped |= 1u << i;
	}
	bad = TD_KEYLOG_SLOT_NONE;
	r.new_slot = (uint32_t)v->slot;
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	td_hdr_reenc_set(v->h, &r);
	/* both keys in the keyring first: the tapdisk needs them to open */
	rc = td_keyring_store_next(v->h->uuid, id, nk, 0, err, errlen);
	if (rc >= 0 && !td_keyring_present(v->h->uuid, id))
		rc = td_keyring_store(v->h->uuid, id, v->vk, 0, 0, err, errlen);
	if (rc < 0)
		goto fail;
	td_volume_record(v, TD_KEYLOG_OP_REENC_START, v->slot, true, true);
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (res->rewrapped & (1u << i))
			td_volume_record(v, TD_KEYLOG_OP_REENC_REWRAP, i, true, true);
		else if (res->dropped & (1u << i))
			td_volume_record(v, TD_KEYLOG_OP_REENC_DROP, i, true, true);
	}
	rc = td_volume_store(v, err, errlen);
	if (rc < 0) {
		td_volume_record(v, TD_KEYLOG_OP_REENC_START, v->slot, false, false);
		td_keyring_remove_next(v->h->uuid, id);
		goto out;
	}
	res->slot = v->slot;
	rc = 0;
	goto out;
fail:
	td_volume_record(v, TD_KEYLOG_OP_REENC_START, bad, false, false);
out:
	if (kek)
		td_secure_free(kek);
	td_volkey_free(&nk);
	td_secret_free(&s);
	return rc;
}

/* The common start of both loads of a rotation's new key: 0 when no
 * rotation is under way, 1 with its record and the image's identity, or
 * an error. */
static int next_key_start(struct td_volume *v, struct td_reenc_rec *r, uint8_t id[TD_IMAGE_ID_LEN],
			  char *err, size_t errlen)
{
	int rc = td_hdr_reenc_get(v->h, r, err, errlen);

	if (rc <= 0)
		return rc;
	rc = td_volume_identity(v, id, err, errlen);
	return rc < 0 ? rc : 1;
}

int td_volume_load_next(struct td_volume *v, const void *pass, size_t passlen, char *err,
			size_t errlen)
{
	struct td_volkey *nk = NULL;
	struct td_reenc_rec r;
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc = next_key_start(v, &r, id, err, errlen);

	if (rc <= 0)
		return rc;
	if (v->slot >= 0 && v->slot < TD_HDR_KEYSLOTS && v->h->slots[v->slot].pending) {
		/* the slot that opened the old key has a pending wrap of the new */
		uint8_t *kek = td_secure_alloc(TD_AEAD_KEY_LEN);

		rc = kek ? td_keyslot_kek(v->h, v->slot, pass, passlen, kek, TD_AEAD_KEY_LEN)
			 : -ENOMEM;
		if (rc == 0)
			rc = td_keyslot_open_pending(v->h, v->slot, kek, TD_AEAD_KEY_LEN,
						     r.new_digest, &nk);
		if (kek)
			td_secure_free(kek);
	} else {
		/* a record from before pending wraps: the new slot's own wrap */
		rc = unwrap_slot(v->h, (int)r.new_slot, pass, passlen, r.new_digest, &nk);
	}
	if (rc < 0) {
		snprintf(err, errlen,
			 "a volume-key rotation is under way and this passphrase does not open its "
			 "new key (keyslot %d is dropped at its end): give the passphrase of a "
			 "slot the rotation keeps ('vdkey audit SPEC --json': rotation.rewrapped)",
			 v->slot);
		return rc;
	}
	rc = td_keyring_store_next(v->h->uuid, id, nk, 0, err, errlen);
	td_volkey_free(&nk);
	return rc < 0 ? rc : 1;
}

int td_volume_load_next_token(struct td_volume *v, const struct td_token_opts *o, char *err,
			      size_t errlen)
{
	struct td_volkey *nk = NULL;
	struct td_reenc_rec r;
	uint8_t id[TD_IMAGE_ID_LEN];
	uint8_t *kek = NULL;
	char why[768];
	int rc = next_key_start(v, &r, id, err, errlen);

	if (rc <= 0)
		return rc;
	if (v->slot < 0 || v->slot >= TD_HDR_KEYSLOTS || !v->h->slots[v->slot].pending) {
		snprintf(err, errlen,
			 "a volume-key rotation is under way and keyslot %d has no wrap of its new "
			 "key (it is dropped at its end): give the passphrase of a slot the "
			 "rotation keeps",
			 v->slot);
		return -EPERM;
	}
	kek = td_secure_alloc(TD_AEAD_KEY_LEN);
	if (!kek)
		return -ENOMEM;
	/* the token releases the KEK a second time (the first opened the old key) */
	why[0] = 0;
	rc = td_token_kek(o, &v->h->slots[v->slot], kek, TD_AEAD_KEY_LEN, why, sizeof(why));
	if (rc == 0)
		rc =
		    td_keyslot_open_pending(v->h, v->slot, kek, TD_AEAD_KEY_LEN, r.new_digest, &nk);
	else
		snprintf(err, errlen, "keyslot %d: %s", v->slot, why);
	td_secure_free(kek);
	if (rc == 0) {
		rc = td_keyring_store_next(v->h->uuid, id, nk, 0, err, errlen);
		td_volkey_free(&nk);
		return rc < 0 ? rc : 1;
	}
	if (why[0] == 0)
		snprintf(err, errlen, "keyslot %d: its pending wrap does not open the new key",
			 v->slot);
	return rc;
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
