/* vdkey anchor --tpm2-nv, and the rollback check vdkey load makes with it
 * (keymgr/vanchor.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "keymgr/keylog.h"
#include "keymgr/vanchor.h"
#include "keymgr/vdkey/vdkey.h"

int vdkey_anchor(const char *spec, const struct vdkey_opts *o)
{
	struct td_nv_anchor a;
	uint32_t index = 0;
	struct td_volume v;
	char err[1024], *end;
	int rc;

	if (!o->tpm2_nv) {
		fprintf(stderr, "%s anchor: say where: --tpm2-nv\n", VDKEY_PROG);
		return 2;
	}
	if (o->nv_index) {
		unsigned long x = strtoul(o->nv_index, &end, 0);

		if (*end || end == o->nv_index || x < 0x01000000ul || x > 0x01fffffful) {
			fprintf(stderr, "%s anchor: bad --nv-index '%s' (0x01000000-0x01ffffff)\n",
				VDKEY_PROG, o->nv_index);
			return 2;
		}
		index = (uint32_t)x;
	}
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_ANCHOR);
	if (rc == 0) {
		rc = td_volume_anchor_tpm2(&v, o->tpm2_device, index, &a, err, sizeof(err));
		if (rc < 0)
			vdkey_say("%s", err);
		else
			printf("anchored the image at TPM NV counter 0x%08x, value %" PRIu64
			       " (generation %" PRIu64 ")\n",
			       a.index, a.counter, a.generation);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_anchor_check(struct td_volume *v, const struct vdkey_opts *o, const char *op)
{
	char err[1024];
	bool bumped;
	int rc = td_volume_anchor_check(v, o->tpm2_device, &bumped, err, sizeof(err));

	if (rc < 0) {
		vdkey_say("%s", err);
		if (op)
			td_volume_record(v, op, v->slot, false, false);
	}
	return rc;
}
