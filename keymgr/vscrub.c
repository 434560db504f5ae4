/* vdkey audit --scrub (keymgr/vreport.h, docs/AUDIT.md): every written
 * block's MAC verified through the crypt and integrity layers, opened as
 * tapdisk opens them, and the scrub recorded as a key event. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/vreport.h"

/* audit --scrub is a key event: recorded (and anchored with the key the
 * scrub used, still in this process) after the scrub's chain is closed,
 * on a session that writes the header if the image can be written. */
static void record(const struct td_volume *v, const struct td_volkey *used, bool ok)
{
	struct td_volkey *vk = NULL;
	struct td_volume s;
	char err[1024];

	td_volume_init(&s, v->warn, v->warn_opaque);
	if (td_volume_open(&s, v->spec, TD_VOL_TRY_WRITE, err, sizeof(err)) < 0) {
		td_volume_warn(v, "%s", err);
	} else {
		if (td_volume_key_from_keyring(&s) < 0 && used) {
			vk = td_volkey_from_bytes(td_volkey_bytes(used), TD_VOLKEY_LEN);
			td_volume_adopt_key(&s, &vk);
		}
		td_volume_record(&s, TD_KEYLOG_OP_SCRUB, TD_KEYLOG_SLOT_NONE, ok, true);
		td_volume_commit(&s, TD_KEYLOG_OP_SCRUB);
	}
	td_volume_close(&s);
}

int td_volume_scrub(struct td_volume *v, td_scrub_progress_fn progress, void *opaque,
		    struct ti_scrub_result *res, struct td_volkey **key, char *err, size_t errlen)
{
	struct td_volkey *used = NULL;
	struct td_layer *integ;
	struct td_volume s;
	int rc;

	memset(res, 0, sizeof(*res));
	td_volume_init(&s, v->warn, v->warn_opaque);
	rc = td_volume_open_lower(&s, v->spec, TD_VOL_WRITE | TD_VOL_DECRYPT, err, errlen);
	if (rc < 0)
		goto out;
	/* the crypt layer inserts the integrity layer its header records
	 * right below itself (ti_scrub refuses any other layer) */
	integ =
	    strcmp(v->h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) == 0 ? s.chain->top->below : NULL;
	if (!integ) {
		snprintf(err, errlen,
			 "%s has no integrity metadata (integrity none): there are no MACs to "
			 "verify",
			 s.chain->spec);
		rc = -EINVAL;
		goto out;
	}
	rc = ti_scrub(integ, progress, opaque, res);
	if (rc < 0)
		snprintf(err, errlen, "cannot read the image: %s", strerror(-rc));
out:
	used = s.fetched;
	s.fetched = NULL;
	td_volume_close(&s);
	record(v, used, rc == 0 && !res->failed);
	if (rc == 0)
		rc = td_volume_load_header(v, err, errlen);
	if (rc == 0 && key)
		*key = used;
	else
		td_volkey_free(&used);
	return rc;
}
