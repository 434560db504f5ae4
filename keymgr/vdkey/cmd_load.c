/* vdkey load and unload: the volume key into and out of the kernel keyring
 * (keymgr/vops.h, vload.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/secret_input.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"
#include "keymgr/vtoken.h"

int vdkey_load(const char *spec, const struct vdkey_opts *o)
{
	unsigned flags =
	    (o->once ? TD_KEYRING_ONCE : 0) | (o->user_readable ? TD_KEYRING_USER_READABLE : 0);
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	struct td_volume v;
	/* for writing when it can be, to move the key-event log's anchor */
	int rc = vdkey_open(&v, spec, TD_VOL_TRY_WRITE, true);

	struct td_secret s = {0};
	bool rotating = false, tokens_done = false;

	if (rc == 0)
		rotating = (v.h->flags & TD_HDR_FLAG_REENCRYPT) != 0;
	if (rc == 0 && !rotating)
		rc = vdkey_unlock_any(&v, o, TD_KEYLOG_OP_LOAD);
	if (rc == 0 && !rotating)
		rc = vdkey_anchor_check(&v, o, TD_KEYLOG_OP_LOAD);
	if (rc == 0 && rotating && td_token_slots(v.h) > 0) {
		/* a volume-key rotation under way: a kept token slot opens the old
		 * key and its pending wrap the new one (the tapdisk needs both) */
		struct td_token_opts to = {.tpm2_device = o->tpm2_device};

		if (td_volume_unlock_tokens(&v, &to, TD_KEYLOG_OP_LOAD, err, sizeof(err)) == 0 &&
		    td_volume_load_next_token(&v, &to, err, sizeof(err)) >= 0) {
			tokens_done = true;
		} else if (o->token_only) {
			vdkey_say("%s; not asking for a passphrase (--token-only)", err);
			rc = -EPERM;
		} else {
			vdkey_say("%s; falling back to the passphrase", err);
			td_volkey_free(&v.vk);
			v.slot = -1;
		}
	}
	if (rc == 0 && rotating && !tokens_done) {
		/* a volume-key rotation under way: the passphrase opens the old
		 * key and its slot's pending wrap the new one (docs/FORMAT.md) */
		rc = td_secret_read(o->key_file, "Passphrase: ", false, &s, err, sizeof(err));
		if (rc == 0)
			rc = td_volume_unlock_pass(&v, s.buf, s.len, TD_KEYLOG_OP_LOAD, err,
						   sizeof(err));
		if (rc == 0)
			rc = td_volume_load_next(&v, s.buf, s.len, err, sizeof(err));
		if (rc < 0)
			vdkey_say("%s", err);
		else
			rc = 0;
		td_secret_free(&s);
	}
	if (rc == 0 && (rc = td_volume_load(&v, flags, o->timeout_s, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		printf("loaded the key of image %s (keyslot %d) into the user keyring%s\n", uuid,
		       v.slot, o->once ? "; the first tapdisk to open it removes it" : "");
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_unload(const char *spec)
{
	struct td_volume v;
	char err[1024];
	int rc = vdkey_open(&v, spec, TD_VOL_TRY_WRITE, true);

	if (rc == 0 && (rc = td_volume_unload(&v, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	else if (rc == 0)
		printf("removed the key from the keyring\n");
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
