/* Tang keyslots in vdkey: enroll --tang, and what audit says of a Tang
 * slot. Unlocking any token slot (Tang, TPM2) is keymgr/vtoken.h's table
 * of unlockers by KDF id. */
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

/* What audit and list say of a Tang slot's token (keymgr/vtoken.h does
 * the unlocking for every token kind, TPM2's description is in
 * cmd_report.c). */
void vdkey_slot_describe(const struct td_keyslot *ks, char *json, size_t jlen, char *text,
			 size_t tlen)
{
	struct td_tang_token t;
	char err[160], url[2 * TD_TANG_URL_MAX + 8], thp[48];

	json[0] = text[0] = 0;
	if (ks->kdf.id != TD_KDF_TANG || ks->token_len > TD_HDR_TOKEN_MAX)
		return;
	if (td_tang_token_decode(ks->token, ks->token_len, &t, err, sizeof(err)) < 0) {
		snprintf(json, jlen, ", \"tang\": {\"error\": \"malformed token\"}");
		snprintf(text, tlen, " (malformed token: %s)", err);
		return;
	}
	td_json_str(url, sizeof(url), t.url);
	td_tang_thp_str(t.signer, thp, sizeof(thp));
	snprintf(json, jlen, ", \"tang\": {\"url\": %s, \"thumbprint\": \"%s\", \"curve\": \"%s\"}",
		 url, thp, td_tang_curve_name(t.curve));
	snprintf(text, tlen, " %s (signer %s)", t.url, thp);
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
		vdkey_note_unlocked_heap();
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
