/* The key events of a session (keymgr/volume.h): each one appended to the
 * image's key-event log (keymgr/keylog.h) and, when made with the volume
 * key, anchored in the authenticated header. Best effort: a log that cannot
 * be written is a warning, never a failure of the command (SECURITY.md,
 * "The key-event log"). */
#include <stdbool.h>

#include "keymgr/keylog.h"
#include "keymgr/volume.h"

void td_volume_record(struct td_volume *v, const char *op, int slot, bool ok, bool anchor)
{
	struct td_keylog_anchor cur, next;
	char err[1024];

	anchor = anchor && v->vk;
	if (anchor && td_hdr_keylog_anchor_get(v->h, &cur, err, sizeof(err)) < 0) {
		td_volume_warn(v, "warning: %s event not recorded: %s", op, err);
		return;
	}
	if (td_keylog_append(v->h->uuid, op, slot, ok ? TD_KEYLOG_OK : TD_KEYLOG_FAIL,
			     anchor ? &cur : NULL, &next, err, sizeof(err)) < 0) {
		td_volume_warn(v, "warning: %s event not recorded in the key-event log: %s", op,
			       err);
		return;
	}
	if (anchor) {
		td_hdr_keylog_anchor_set(v->h, &next);
		v->anchor_moved = true;
	}
}

void td_volume_commit(struct td_volume *v, const char *op)
{
	char err[1024];

	if (!v->anchor_moved)
		return;
	if (v->writable && td_volume_store(v, err, sizeof(err)) == 0) {
		v->anchor_moved = false;
		return;
	}
	if (v->writable)
		td_volume_warn(v, "%s", err);
	td_volume_warn(v,
		       "note: the %s event is in the key-event log but not anchored in the "
		       "header (%s); the next event with the key anchors it",
		       op, v->writable ? "cannot write the header" : v->ro_why);
}
