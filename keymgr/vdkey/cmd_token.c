/* Token keyslots in vdkey: the table of unlockers keyed by KDF id (a slot
 * opened by a machine, not a person: docs/FORMAT.md, "Keyslot tokens"),
 * load trying them before the passphrase, enroll --tang, and what audit
 * says of a token slot. One row per unlocker; the Tang one is here
 * (keymgr/tang.h), a TPM2 one adds its row beside it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/keyslot.h"
#include "keymgr/tang.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"
#include "tapdisk/core/util.h"

struct vdkey_unlocker {
	int kind;	  /* TD_KDF_* */
	const char *name; /* the kind audit reports */
	/* The slot's 32-byte KEK from its token; 0 or a negative errno with
	 * the reason in err. */
	int (*recover)(const uint8_t *token, size_t len, const struct vdkey_opts *o,
		       uint8_t kek[32], char *err, size_t errlen);
	/* The token's non-secret details: JSON members (`, "x": ...`) and a
	 * short text; both empty when it cannot be decoded. */
	void (*describe)(const uint8_t *token, size_t len, char *json, size_t jlen, char *text,
			 size_t tlen);
};

static int tang_recover(const uint8_t *token, size_t len, const struct vdkey_opts *o,
			uint8_t kek[32], char *err, size_t errlen)
{
	(void)o;
	return td_tang_recover(token, len, 0, kek, err, errlen);
}

static void tang_describe(const uint8_t *token, size_t len, char *json, size_t jlen, char *text,
			  size_t tlen)
{
	struct td_tang_token t;
	char err[160], url[2 * TD_TANG_URL_MAX + 8], thp[48];

	json[0] = text[0] = 0;
	if (td_tang_token_decode(token, len, &t, err, sizeof(err)) < 0)
		return;
	td_json_str(url, sizeof(url), t.url);
	td_tang_thp_str(t.signer, thp, sizeof(thp));
	snprintf(json, jlen, ", \"tang\": {\"url\": %s, \"thumbprint\": \"%s\", \"curve\": \"%s\"}",
		 url, thp, td_tang_curve_name(t.curve));
	snprintf(text, tlen, " %s (signer %s)", t.url, thp);
}

static const struct vdkey_unlocker unlockers[] = {
    {TD_KDF_TANG, "tang", tang_recover, tang_describe},
};

static const struct vdkey_unlocker *unlocker_of(int kind)
{
	for (size_t i = 0; i < sizeof(unlockers) / sizeof(unlockers[0]); i++)
		if (unlockers[i].kind == kind)
			return &unlockers[i];
	return NULL;
}

const char *vdkey_slot_kind(const struct td_keyslot *ks)
{
	const struct vdkey_unlocker *u = unlocker_of((int)ks->kdf.id);

	if (u)
		return u->name;
	return td_kdf_is_token((int)ks->kdf.id) ? td_kdf_name(ks->kdf.id) : "passphrase";
}

void vdkey_slot_describe(const struct td_keyslot *ks, char *json, size_t jlen, char *text,
			 size_t tlen)
{
	const struct vdkey_unlocker *u = unlocker_of((int)ks->kdf.id);

	json[0] = text[0] = 0;
	if (u && ks->token_len <= TD_HDR_TOKEN_MAX)
		u->describe(ks->token, ks->token_len, json, jlen, text, tlen);
}

int vdkey_unlock_tokens(struct td_volume *v, const struct vdkey_opts *o)
{
	uint8_t *kek = td_secure_alloc(32);
	int tried = 0, rc = -ENOENT;
	char err[1024];

	if (!kek)
		return -ENOMEM;
	for (int i = 0; i < TD_HDR_KEYSLOTS && !v->vk; i++) {
		const struct td_keyslot *ks = &v->h->slots[i];
		const struct vdkey_unlocker *u;
		struct td_volkey *vk = NULL;

		if (ks->state != TD_KEYSLOT_ACTIVE || !td_kdf_is_token((int)ks->kdf.id))
			continue;
		if (o->slot >= 0 && o->slot != i)
			continue;
		u = unlocker_of((int)ks->kdf.id);
		tried++;
		if (!u) {
			vdkey_say("keyslot %d (%s): this vdkey has no unlocker for it", i,
				  td_kdf_name(ks->kdf.id));
			continue;
		}
		rc = u->recover(ks->token, ks->token_len, o, kek, err, sizeof(err));
		if (rc == 0) {
			rc = td_keyslot_unlock_token(v->h, i, kek, 32, &vk);
			if (rc == -EPERM)
				snprintf(err, sizeof(err),
					 "the recovered key does not open it (the token was "
					 "altered, or the server answered with another key)");
			else if (rc == -EBADMSG)
				snprintf(err, sizeof(err),
					 "header authentication failed: the header was changed "
					 "without the volume key");
			else if (rc < 0)
				snprintf(err, sizeof(err), "%s", td_keyslot_strerror(rc));
		}
		td_wipe(kek, 32);
		if (rc == 0) {
			v->vk = vk;
			v->slot = i;
			break;
		}
		vdkey_say("keyslot %d (%s): %s", i, u->name, err);
	}
	td_secure_free(kek);
	if (v->vk)
		return 0;
	return tried ? rc : -ENOENT;
}

/* On a terminal: whether to trust an unpinned Tang server. */
static bool confirm_tang(const char *url, const char *thps, void *opaque)
{
	char line[16];

	(void)opaque;
	fprintf(stderr,
		"The Tang server at %s signs its advertisement with key(s)\n  %s\n"
		"Compare with 'tang-show-keys' on the server. Trust it? [y/N] ",
		url, thps);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

int vdkey_enroll_tang(const char *spec, const struct vdkey_opts *o)
{
	struct td_tang_enroll a = {
	    .url = o->tang,
	    .thumbprint = o->tang_thumbprint,
	    .trust = o->tang_trust,
	    .confirm = isatty(STDIN_FILENO) && isatty(STDERR_FILENO) ? confirm_tang : NULL,
	};
	uint8_t token[TD_TANG_TOKEN_MAX], *kek = NULL;
	struct td_volume v;
	char err[1024];
	size_t len = 0;
	int rc;

	if (o->tang_thumbprint && o->tang_trust) {
		vdkey_say("enroll: --tang-thumbprint pins the server, --tang-trust does not: give "
			  "one or the other");
		return 2;
	}
	if (td_tang_url_check(o->tang, err, sizeof(err)) < 0) {
		vdkey_say("enroll: %s", err);
		return 2;
	}
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_ENROLL);
	if (rc == 0 && !(kek = td_secure_alloc(TD_TANG_KEK_LEN)))
		rc = -ENOMEM;
	if (rc == 0) {
		rc = td_tang_provision(&a, token, sizeof(token), &len, kek, err, sizeof(err));
		if (rc < 0) {
			vdkey_say("%s", err);
			td_volume_record(&v, TD_KEYLOG_OP_ENROLL, TD_KEYLOG_SLOT_NONE, false,
					 false);
		}
	}
	if (rc == 0) {
		rc = td_volume_enroll_token(&v, o->slot >= 0 ? (int)o->slot : -1, TD_KDF_TANG,
					    token, len, kek, TD_TANG_KEK_LEN, err, sizeof(err));
		if (rc < 0) {
			vdkey_say("%s", err);
		} else {
			char thp[48];
			struct td_tang_token t;

			td_tang_token_decode(token, len, &t, err, sizeof(err));
			td_tang_thp_str(t.signer, thp, sizeof(thp));
			printf("added keyslot %d (tang %s, signing key %s)\n", rc, o->tang, thp);
		}
	}
	td_secure_free(kek);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
