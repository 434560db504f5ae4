/* Loading the volume key into the kernel keyring for tapdisk, and removing
 * it (vdkey load, unload; keymgr/vops.h, keymgr/keyring.h). The key is
 * bound to the image file the session opened. */
#include <errno.h>

#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/vops.h"

int td_volume_load(struct td_volume *v, unsigned flags, unsigned timeout_s, char *err,
		   size_t errlen)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc = td_volume_identity(v, id, err, errlen);

	if (rc == 0)
		rc = td_keyring_store(v->h->uuid, id, v->vk, flags, timeout_s, err, errlen);
	td_volume_record(v, TD_KEYLOG_OP_LOAD, v->slot, rc >= 0, true);
	td_volume_commit(v, TD_KEYLOG_OP_LOAD);
	return rc < 0 ? rc : 0;
}

int td_volume_unload(struct td_volume *v, char *err, size_t errlen)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc;

	td_volume_key_from_keyring(v); /* none: the event stays unanchored */
	rc = td_volume_identity(v, id, err, errlen);
	if (rc == 0)
		rc = td_keyring_remove(v->h->uuid, id, err, errlen);
	if (rc == 0 || rc == -ENOKEY)
		td_keyring_remove_next(v->h->uuid, id); /* a rotation's new key */
	td_volume_record(v, TD_KEYLOG_OP_UNLOAD, TD_KEYLOG_SLOT_NONE, rc == 0, true);
	td_volume_commit(v, TD_KEYLOG_OP_UNLOAD);
	return rc;
}
