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

int vdkey_load(const char *spec, const struct vdkey_opts *o)
{
	unsigned flags =
	    (o->once ? TD_KEYRING_ONCE : 0) | (o->user_readable ? TD_KEYRING_USER_READABLE : 0);
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	struct td_volume v;
	/* for writing when it can be, to move the key-event log's anchor */
	int rc = vdkey_open(&v, spec, TD_VOL_TRY_WRITE, true);

	struct td_secret s = {0};
	bool rotating = false;

	if (rc == 0)
		rotating = (v.h->flags & TD_HDR_FLAG_REENCRYPT) != 0;
	if (rc == 0 && !rotating)
		rc = vdkey_unlock_any(&v, o, TD_KEYLOG_OP_LOAD);
	if (rc == 0 && !rotating)
		rc = vdkey_anchor_check(&v, o, TD_KEYLOG_OP_LOAD);
	if (rc == 0 && rotating) {
		/* a volume-key rotation under way: the same passphrase opens the
		 * new key's slot too, and the tapdisk needs both keys (token
		 * keyslots are dropped by a rotation: docs/FORMAT.md) */
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
