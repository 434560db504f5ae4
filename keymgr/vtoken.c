/* Token keyslots (keymgr/vtoken.h): the table of unlockers by KDF id
 * (TPM2: keymgr/tpm2.h, Tang: keymgr/tang.h), the unlock that tries them,
 * and enrolling a TPM2 slot (Tang's enroll: td_volume_enroll_token). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "keymgr/keylog.h"
#include "keymgr/keyslot.h"
#include "keymgr/tang.h"
#include "keymgr/tpm2.h"
#include "keymgr/vops.h"
#include "keymgr/vtoken.h"

/* An unlocker: recovers a token slot's 32-byte KEK (into secure memory)
 * from its token payload, or says why not. */
struct token_unlocker {
	int kind; /* TD_KDF_* */
	const char *name;
	int (*unlock)(const struct td_token_opts *o, const uint8_t *token, size_t len, uint8_t *kek,
		      char *err, size_t errlen);
};

static int tpm2_unlock(const struct td_token_opts *o, const uint8_t *token, size_t len,
		       uint8_t *kek, char *err, size_t errlen)
{
	return td_tpm2_unseal(o ? o->tpm2_device : NULL, token, len, kek, err, errlen);
}

static int tang_unlock(const struct td_token_opts *o, const uint8_t *token, size_t len,
		       uint8_t *kek, char *err, size_t errlen)
{
	(void)o;
	return td_tang_recover(token, len, 0, kek, err, errlen);
}

static const struct token_unlocker unlockers[] = {
    {TD_KDF_TPM2, "tpm2", tpm2_unlock},
    {TD_KDF_TANG, "tang", tang_unlock},
};

#define TOKEN_KEK_LEN 32

static const struct token_unlocker *unlocker_of(int kind)
{
	for (size_t i = 0; i < sizeof(unlockers) / sizeof(unlockers[0]); i++)
		if (unlockers[i].kind == kind)
			return &unlockers[i];
	return NULL;
}

const char *td_keyslot_kind_name(int kdf_id)
{
	switch (kdf_id) {
	case TD_KDF_TPM2:
		return "tpm2";
	case TD_KDF_TANG:
		return "tang";
	default:
		return "passphrase";
	}
}

int td_token_slots(const struct td_crypt_hdr *h)
{
	int n = 0;

	for (int i = 0; i < TD_HDR_KEYSLOTS; i++)
		n += h->slots[i].state == TD_KEYSLOT_ACTIVE && td_kdf_is_token(h->slots[i].kdf.id);
	return n;
}

int td_volume_unlock_tokens(struct td_volume *v, const struct td_token_opts *o, const char *op,
			    char *err, size_t errlen)
{
	uint8_t *kek = td_secure_alloc(TOKEN_KEK_LEN);
	int rc = -ENOENT, tried = 0;
	char why[768];

	if (!kek) {
		snprintf(err, errlen, "out of locked memory");
		return -ENOMEM;
	}
	snprintf(err, errlen, "the image has no keyslot this vdkey can open without a passphrase");
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		const struct td_keyslot *ks = &v->h->slots[i];
		const struct token_unlocker *u;

		if (ks->state != TD_KEYSLOT_ACTIVE || !td_kdf_is_token(ks->kdf.id))
			continue;
		u = unlocker_of((int)ks->kdf.id);
		if (!u) {
			td_volume_warn(v, "keyslot %d (%s): this vdkey has no unlocker for it", i,
				       td_keyslot_kind_name((int)ks->kdf.id));
			continue;
		}
		tried++;
		why[0] = 0;
		rc = u->unlock(o, ks->token, ks->token_len, kek, why, sizeof(why));
		if (rc == 0) {
			rc = td_keyslot_unlock_token(v->h, i, kek, TOKEN_KEK_LEN, &v->vk);
			td_wipe(kek, TOKEN_KEK_LEN);
			if (rc == 0) {
				v->slot = i;
				break;
			}
			snprintf(why, sizeof(why), "%s",
				 rc == -EPERM
				     ? "the released key does not open this keyslot (its "
				       "token was copied from another image or altered, or "
				       "a server answered with another key)"
				     : td_keyslot_strerror(rc));
		}
		td_volume_warn(v, "keyslot %d (%s): %s", i, u->name, why);
		snprintf(err, errlen, "no keyslot opened without a passphrase (keyslot %d: %s)", i,
			 why);
		if (op)
			td_volume_record(v, op, i, false, false);
	}
	td_secure_free(kek);
	if (rc == 0)
		return 0;
	return tried ? rc : -ENOENT;
}

int td_token_kek(const struct td_token_opts *o, const struct td_keyslot *ks, uint8_t *kek,
		 size_t kek_len, char *err, size_t errlen)
{
	const struct token_unlocker *u;

	if (!ks || ks->state != TD_KEYSLOT_ACTIVE || !td_kdf_is_token(ks->kdf.id) ||
	    kek_len != TOKEN_KEK_LEN) {
		snprintf(err, errlen, "not a token keyslot");
		return -EINVAL;
	}
	u = unlocker_of((int)ks->kdf.id);
	if (!u) {
		snprintf(err, errlen, "this vdkey has no unlocker for it");
		return -ENOTSUP;
	}
	return u->unlock(o, ks->token, ks->token_len, kek, err, errlen);
}

int td_volume_enroll_tpm2(struct td_volume *v, int slot, const struct td_token_opts *o,
			  uint32_t pcrs, char *err, size_t errlen)
{
	uint8_t *kek = td_secure_alloc(TD_TPM2_KEK_LEN);
	uint8_t token[TD_HDR_TOKEN_MAX];
	size_t len = 0;
	int rc;

	if (!kek) {
		snprintf(err, errlen, "out of locked memory");
		return -ENOMEM;
	}
	rc = td_tpm2_seal(o ? o->tpm2_device : NULL, pcrs, token, sizeof(token), &len, kek, err,
			  errlen);
	if (rc == 0)
		rc = td_volume_enroll_token(v, slot, TD_KDF_TPM2, token, len, kek, TD_TPM2_KEK_LEN,
					    err, errlen);
	else
		td_volume_record(v, TD_KEYLOG_OP_ENROLL,
				 slot >= 0 && slot < TD_HDR_KEYSLOTS ? slot : TD_KEYLOG_SLOT_NONE,
				 false, false);
	td_secure_free(kek);
	return rc;
}
