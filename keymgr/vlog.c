/* The key-event log of a session's image (vdkey log; keymgr/keylog.h): the
 * header's anchor, walking the entries, and the reset that restarts a
 * damaged log (keymgr/vreport.h, keymgr/vops.h). */
#include <errno.h>
#include <stdio.h>

#include "keymgr/keylog.h"
#include "keymgr/vops.h"
#include "keymgr/vreport.h"

int td_volume_log_anchor(const struct td_volume *v, struct td_keylog_anchor *a, char *err,
			 size_t errlen)
{
	char e[768], uuid[TD_HDR_UUID_STR_LEN];
	int rc = td_hdr_keylog_anchor_get(v->h, a, e, sizeof(e));

	if (rc < 0) {
		td_hdr_uuid_str(v->h->uuid, uuid);
		snprintf(err, errlen, "image %s: %s", uuid, e);
	}
	return rc;
}

int td_vlog_next(const char *buf, size_t len, size_t *off, struct td_keylog_entry *e, char *why,
		 size_t whylen)
{
	const char *line;
	size_t ll;
	int r = td_keylog_next_line(buf, len, off, &line, &ll);

	if (r < 0)
		snprintf(why, whylen, "torn last line (no newline)");
	else if (r > 0 && td_keylog_parse_line(line, ll, e, why, whylen) < 0)
		r = -EBADMSG;
	return r;
}

int td_volume_log_reset(struct td_volume *v, uint64_t *reset_at, char *err, size_t errlen)
{
	struct td_keylog_anchor cur, next;
	char e[1024], uuid[TD_HDR_UUID_STR_LEN];
	int rc;

	td_hdr_uuid_str(v->h->uuid, uuid);
	rc = td_hdr_keylog_anchor_get(v->h, &cur, e, sizeof(e));
	if (rc == 0)
		rc = td_keylog_reset(v->h->uuid, &cur, &next, e, sizeof(e));
	if (rc < 0) {
		snprintf(err, errlen, "image %s: cannot reset the key-event log: %s", uuid, e);
		return rc;
	}
	td_hdr_keylog_anchor_set(v->h, &next);
	rc = td_volume_store(v, e, sizeof(e));
	if (rc < 0) {
		td_volume_warn(v, "%s", e);
		snprintf(err, errlen,
			 "image %s: the new log is in place but the header could not be "
			 "rewritten; run 'vdkey log SPEC --reset' again",
			 uuid);
		return rc;
	}
	*reset_at = cur.count;
	return 0;
}
