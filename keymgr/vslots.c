/* Adding and removing keyslots (vdkey enroll, remove; keymgr/vops.h): the
 * header changes in memory (keymgr/keyslot.h), the event is recorded and
 * anchored, both header copies are rewritten. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keymgr/keylog.h"
#include "keymgr/keyslot.h"
#include "keymgr/secret_input.h"
#include "keymgr/vops.h"

/* What the key-event log names: the slot, or none when it is not one. */
static int log_slot(int slot)
{
	return slot >= 0 && slot < TD_HDR_KEYSLOTS ? slot : TD_KEYLOG_SLOT_NONE;
}

/* A refused enroll: recorded, and said in err. */
static void enroll_refused(struct td_volume *v, int slot, int rc, char *err, size_t errlen)
{
	td_volume_record(v, TD_KEYLOG_OP_ENROLL, log_slot(slot), false, false);
	if (rc == -ENOSPC)
		snprintf(err, errlen, "all %d keyslots are in use: remove one first (vdkey remove)",
			 TD_HDR_KEYSLOTS);
	else if (rc == -EEXIST)
		snprintf(err, errlen, "keyslot %d is already in use", slot);
	else if (rc == -EBUSY)
		snprintf(err, errlen,
			 "a volume-key rotation is under way: a keyslot added now would not open "
			 "the new key; enroll it when the rotation ends ('vdkey reencrypt SPEC "
			 "--wait')");
	else
		snprintf(err, errlen, "cannot add the keyslot: %s", strerror(-rc));
}

/* The slot changed in v->h: record, anchor and store. */
static int commit_slot(struct td_volume *v, const char *op, int slot, char *err, size_t errlen)
{
	int rc;

	td_volume_record(v, op, slot, true, true);
	rc = td_volume_store(v, err, errlen);
	if (rc < 0)
		td_volume_record(v, op, slot, false, false);
	return rc;
}

int td_volume_enroll(struct td_volume *v, int slot, const char *new_key_file,
		     const struct td_kdf_params *kp, char *err, size_t errlen)
{
	struct td_secret s = {0};
	int rc;

	if (v->h->flags & TD_HDR_FLAG_REENCRYPT) {
		enroll_refused(v, slot, -EBUSY, err, errlen);
		return -EBUSY;
	}
	rc = td_secret_read(new_key_file, "Enter the new passphrase: ", true, &s, err, errlen);
	if (rc < 0)
		goto out;
	rc = td_keyslot_add(v->h, slot, v->vk, s.buf, s.len, kp);
	if (rc < 0) {
		enroll_refused(v, slot, rc, err, errlen);
		goto out;
	}
	slot = rc;
	rc = commit_slot(v, TD_KEYLOG_OP_ENROLL, slot, err, errlen);
	if (rc == 0)
		rc = slot;
out:
	td_secret_free(&s);
	return rc;
}

int td_volume_remove_slot(struct td_volume *v, int slot, char *err, size_t errlen)
{
	int rc;

	if (v->h->flags & TD_HDR_FLAG_REENCRYPT) {
		/* the new key's slot, or the last slot of the old key, would leave
		 * a crashed rotation without a key to resume it with */
		td_volume_record(v, TD_KEYLOG_OP_REMOVE, log_slot(slot), false, false);
		snprintf(err, errlen,
			 "a volume-key rotation is under way: keyslots cannot be removed until it "
			 "ends (or say --drop-slot N when starting one)");
		return -EBUSY;
	}
	rc = td_keyslot_remove(v->h, slot);

	if (rc == 0)
		return commit_slot(v, TD_KEYLOG_OP_REMOVE, slot, err, errlen);
	td_volume_record(v, TD_KEYLOG_OP_REMOVE, log_slot(slot), false, false);
	if (rc == -EBUSY)
		snprintf(err, errlen,
			 "keyslot %d is the last active one; removing it would lose the data for "
			 "good (enroll another first)",
			 slot);
	else if (rc == -ENOENT)
		snprintf(err, errlen, "keyslot %d is not active", slot);
	else
		snprintf(err, errlen, "invalid keyslot %d (0..%d)", slot, TD_HDR_KEYSLOTS - 1);
	return rc;
}

int td_volume_enroll_token(struct td_volume *v, int slot, int kind, const uint8_t *token,
			   size_t token_len, const uint8_t *kek, size_t kek_len, char *err,
			   size_t errlen)
{
	int rc = (v->h->flags & TD_HDR_FLAG_REENCRYPT)
		     ? -EBUSY
		     : td_keyslot_add_token(v->h, slot, v->vk, (enum td_kdf_id)kind, token,
					    token_len, kek, kek_len);

	if (rc < 0) {
		enroll_refused(v, slot, rc, err, errlen);
		return rc;
	}
	slot = rc;
	rc = commit_slot(v, TD_KEYLOG_OP_ENROLL, slot, err, errlen);
	return rc == 0 ? slot : rc;
}
