/* A volume-key rotation seen from the integrity layer (docs/FORMAT.md,
 * "Volume-key rotation with the integrity layer"): the tag boundary the
 * crypt layer moves with its windows, and the final rekey of the tree,
 * the superblock and the journal, done at an open (synchronous I/O). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "integrity/priv.h"
#include "tapdisk/core/log.h"

void ti_keys_free_new(struct ti_core *c)
{
	int i;

	for (i = 0; c->macs_new && i < c->nmacs; i++)
		td_hmac_free(c->macs_new[i]);
	free(c->macs_new);
	c->macs_new = NULL;
	td_hmac_free(c->mac_loop_new);
	c->mac_loop_new = NULL;
	if (c->new_mac_key)
		td_secure_free(c->new_mac_key);
	c->new_mac_key = NULL;
	if (c->new_tree_key)
		td_secure_free(c->new_tree_key);
	c->new_tree_key = NULL;
}

void ti_reenc_set_boundary(struct td_layer *l, uint64_t t)
{
	struct ti_priv *p = l->priv;

	__atomic_store_n(&p->c.tag_boundary, t, __ATOMIC_RELEASE);
}

/* Every non-zero tag page, and so its L1 page, dirty: the checkpoint
 * rehashes them under the tree key it then holds. */
static int dirty_whole_tree(struct ti_priv *p, char *err, size_t errlen)
{
	uint64_t t;

	for (t = 0; t < p->c.p.tags_pages; t++) {
		int e = 0;
		struct ti_page *pg = ti_page_get_sync(&p->tc, t, &e);

		if (!pg) {
			snprintf(
			    err, errlen,
			    "integrity: the volume-key rotation cannot load tag page %llu: %s%s",
			    (unsigned long long)t, strerror(-e),
			    e == -ENOMEM ? " (the final step holds every tag page of the "
					   "image in the tag cache: open with a larger tag-cache=)"
					 : "");
			return e ? e : -EIO;
		}
		if (!ti_all_zero(pg->data, TI_BLOCK))
			ti_page_mark_dirty(&p->tc, pg);
	}
	return 0;
}

/* From here on, only the new key: old contexts freed, new ones in place. */
static int switch_keys(struct ti_core *c)
{
	struct td_hmac *tm = NULL;
	int i;

	if (c->tree && !(tm = td_hmac_new(c->new_tree_key, 32)))
		return -ENOMEM;
	for (i = 0; i < c->nmacs; i++) {
		td_hmac_free(c->macs[i]);
		c->macs[i] = c->macs_new[i];
	}
	free(c->macs_new);
	c->macs_new = NULL;
	td_hmac_free(c->mac_loop);
	c->mac_loop = c->mac_loop_new;
	c->mac_loop_new = NULL;
	memcpy(c->mac_key, c->new_mac_key, 32);
	if (c->tree) {
		td_hmac_free(c->tree_mac);
		c->tree_mac = tm;
		memcpy(c->tree_key, c->new_tree_key, 32);
	}
	__atomic_store_n(&c->tag_boundary, 0, __ATOMIC_RELEASE);
	ti_keys_free_new(c);
	return 0;
}

int ti_reenc_rekey_sync(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_core *c = &p->c;
	int rc;

	if (!c->macs_new ||
	    __atomic_load_n(&c->tag_boundary, __ATOMIC_ACQUIRE) < c->p.data_blocks) {
		snprintf(err, errlen, "integrity: no finished volume-key rotation to switch to");
		return -EINVAL;
	}
	/* 1. everything durable under the old keys (epoch e) */
	rc = ti_ckpt_sync(&p->ck);
	/* 2. the tree rehashed, the superblock of e+1 sealed, under the new
	 * keys; the pages go to the slots the tree of e does not use */
	if (rc == 0 && c->tree)
		rc = dirty_whole_tree(p, err, errlen);
	if (rc == 0)
		rc = switch_keys(c);
	if (rc == 0) {
		p->ck.sync_force = true;
		p->ck.sync_hold_gen = true;
		rc = ti_ckpt_sync(&p->ck);
		p->ck.sync_force = false;
		p->ck.sync_hold_gen = false;
	}
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen,
				 "integrity: the volume-key rotation's final checkpoint failed: %s",
				 strerror(-rc));
		c->broken = c->broken ? c->broken : rc;
		return rc;
	}
	td_info("integrity: tags, tree and superblock of generation %llu are under the new "
		"volume key",
		(unsigned long long)p->j.epoch);
	return 0;
}

void ti_reenc_gen_commit(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	ti_gen_advance_sync(p->gen, p->j.epoch);
}
