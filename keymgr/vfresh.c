/* Freshness (SECURITY.md, "Freshness"): the image's generation against the
 * one this host trusts, and the freshness tree's root, for vdkey audit
 * (keymgr/vreport.h); accepting a rollback (vdkey accept-rollback,
 * keymgr/vops.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/vops.h"
#include "keymgr/vreport.h"

int td_volume_fresh_status(const struct td_volume *v, const struct td_volkey *vk,
			   struct ti_fresh_status *st, char *err, size_t errlen)
{
	struct ti_params prm;
	uint8_t *k = NULL;
	int rc;

	rc = ti_params_decode(v->h->integrity_params, v->chain->top->size, &prm, err, errlen);
	if (rc == 0 && !(k = td_volkey_integrity_keys(vk))) {
		snprintf(err, errlen, "out of secure memory");
		rc = -ENOMEM;
	}
	if (rc == 0)
		rc = ti_fresh_status(v->chain->top, &prm, v->h->uuid, k, k + 32, st, err, errlen);
	if (k)
		td_secure_free(k);
	return rc;
}

int td_volume_accept_rollback(struct td_volume *v, struct ti_fresh_status *st, bool *accepted,
			      char *err, size_t errlen)
{
	char uuid[TD_HDR_UUID_STR_LEN];
	int rc;

	*accepted = false;
	if (strcmp(v->h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) != 0) {
		td_hdr_uuid_str(v->h->uuid, uuid);
		snprintf(err, errlen,
			 "image %s has no integrity metadata, hence no generation: nothing to "
			 "accept",
			 uuid);
		return -EINVAL;
	}
	rc = td_volume_fresh_status(v, v->vk, st, err, errlen);
	if (rc < 0 || !st->rollback)
		return rc;
	rc = ti_accept_generation(v->ctx.trust, v->h->uuid, st->generation, err, errlen);
	td_volume_record(v, TD_KEYLOG_OP_ACCEPT_ROLLBACK, v->slot, rc == 0, true);
	td_volume_commit(v, TD_KEYLOG_OP_ACCEPT_ROLLBACK);
	*accepted = rc == 0;
	return rc;
}
