/* What vdkey runs on an image without opening the layer: the format step
 * (fresh metadata), the freshness report of `vdkey audit`, and accepting
 * a rollback. Synchronous I/O: tool paths only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/integrity.h"
#include "integrity/super.h"
#include "tapdisk/core/bufpool.h"

/* The journal is written with real zeros so that its blocks are
 * allocated now: a FUA write into an unallocated range of a file costs a
 * filesystem journal commit every time. */
static int zero_journal(struct td_layer *lower, const struct ti_params *prm)
{
	size_t chunk = 1u << 20;
	uint8_t *z = td_buf_get(chunk);
	uint64_t off, end = prm->journal_off + (uint64_t)prm->journal_blocks * TI_BLOCK;
	int rc = 0;

	if (!z)
		return -ENOMEM;
	memset(z, 0, chunk);
	for (off = prm->journal_off; rc == 0 && off < end; off += chunk)
		rc = td_layer_sync_io(lower, TD_OP_WRITE, off, z,
				      end - off < chunk ? end - off : chunk, 0);
	td_buf_put(z, chunk);
	return rc;
}

int ti_format(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
	      const uint8_t mac_key[32], char *err, size_t errlen)
{
	struct td_hmac *mac = td_hmac_new(mac_key, 32);
	uint8_t *buf = td_buf_get(2 * TI_BLOCK);
	struct ti_super s = {.version = prm->version, .epoch = 0, .seq_base = 1};
	int rc = -ENOMEM;

	if (!mac || !buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* no stale journal or tags may survive from an earlier format;
	 * unmapping allowed: a sparse image stays sparse (8 GiB of tags for
	 * 1 TiB of data are allocated only as they are written); v2: the root
	 * of an all-zero tree is zero (docs/FORMAT.md) */
	rc = td_layer_sync_io(lower, TD_OP_WRITE_ZEROES, prm->tags_off, NULL,
			      ti_layout_end(prm) - prm->tags_off, 0);
	if (rc == 0)
		rc = zero_journal(lower, prm);
	if (rc < 0) {
		snprintf(err, errlen, "cannot clear the integrity metadata area: %s",
			 strerror(-rc));
		goto out;
	}
	/* epoch 0 in slot 0; slot 1 holds an invalid (zero) block */
	ti_super_encode(&s, uuid, mac, buf);
	memset(buf + TI_BLOCK, 0, TI_BLOCK);
	rc = td_layer_sync_io(lower, TD_OP_WRITE, prm->super_off, buf, 2 * TI_BLOCK, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the integrity superblock: %s", strerror(-rc));
out:
	td_hmac_free(mac);
	td_buf_put(buf, 2 * TI_BLOCK);
	return rc;
}

int ti_fresh_status(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		    const uint8_t mac_key[32], const uint8_t tree_key[32],
		    struct ti_fresh_status *st, char *err, size_t errlen)
{
	const struct td_trust_ops *trust = lower->ctx->trust;
	struct td_hmac *mac = td_hmac_new(mac_key, 32);
	struct td_hmac *tmac = tree_key ? td_hmac_new(tree_key, 32) : NULL;
	uint8_t *buf = td_buf_get(TI_BLOCK), *l2 = NULL;
	struct ti_super sb;
	int rc = -ENOMEM;

	memset(st, 0, sizeof(*st));
	st->version = prm->version;
	st->root_ok = -1;
	if (!mac || !buf || (prm->version >= 2 && !tmac)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = ti_super_load(lower, prm, uuid, mac, buf, &sb, err, errlen);
	if (rc < 0)
		goto out;
	st->generation = sb.epoch;
	rc = trust ? trust->gen_read(uuid, &st->trusted, err, errlen) : 0;
	if (rc < 0)
		goto out;
	st->rollback = st->generation < st->trusted;
	if (prm->version >= 2) {
		rc = ti_l2_read_verify(lower, prm, uuid, tmac, sb.epoch, sb.root, &l2);
		if (rc == -ENOMEM)
			goto out;
		st->root_ok = rc == 1; /* unreadable counts as not verified */
	}
	rc = 0;
out:
	td_hmac_free(mac);
	td_hmac_free(tmac);
	td_buf_put(buf, TI_BLOCK);
	free(l2);
	return rc;
}

int ti_accept_generation(const struct td_trust_ops *trust, const uint8_t uuid[16],
			 uint64_t generation, char *err, size_t errlen)
{
	if (!trust) {
		snprintf(err, errlen, "this program keeps no trusted generations");
		return -ENOTSUP;
	}
	return trust->gen_write(uuid, generation, err, errlen);
}
