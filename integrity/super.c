/* The superblocks and the tree's top level: see super.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/super.h"

int ti_super_load(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		  struct td_hmac *mac, uint8_t *buf, struct ti_super *out, char *err, size_t errlen)
{
	struct ti_super s[2];
	int ok[2], i, rc;

	memset(s, 0, sizeof(s));
	for (i = 0; i < 2; i++) {
		s[i].version = prm->version;
		rc = td_layer_sync_io(lower, TD_OP_READ, prm->super_off + (uint64_t)i * TI_BLOCK,
				      buf, TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read the integrity superblocks: %s",
				 strerror(-rc));
			return rc;
		}
		ok[i] = ti_super_decode(buf, uuid, mac, &s[i]) == 0;
	}
	if (!ok[0] && !ok[1]) {
		snprintf(err, errlen,
			 "integrity metadata is corrupt: neither journal superblock verifies");
		return -EBADMSG;
	}
	i = ok[0] && ok[1] ? (s[1].epoch > s[0].epoch) : ok[1];
	/* the superblock of epoch e lives in slot e % 2 */
	if (s[i].epoch % 2 != (uint64_t)i) {
		snprintf(err, errlen,
			 "integrity metadata is corrupt: superblock in the wrong slot");
		return -EBADMSG;
	}
	*out = s[i];
	return 0;
}

int ti_l2_read_verify(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		      struct td_hmac *tmac, uint64_t epoch, const uint8_t want[TI_HASH_LEN],
		      uint8_t **l2out)
{
	size_t len = (size_t)prm->l2_pages * TI_BLOCK;
	uint8_t root[TI_HASH_LEN];
	int rc;

	if (posix_memalign((void **)l2out, TI_BLOCK, len)) {
		*l2out = NULL;
		return -ENOMEM;
	}
	rc = td_layer_sync_io(lower, TD_OP_READ, ti_l2_off(prm, (unsigned)(epoch % 2)), *l2out, len,
			      0);
	if (rc < 0)
		return rc;
	return ti_tree_root(tmac, uuid, prm->l2_pages, *l2out, root) == 0 &&
	       td_ct_memeq(root, want, TI_HASH_LEN);
}
