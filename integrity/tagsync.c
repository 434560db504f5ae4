/* Synchronous loads of tag and tree pages, for the paths that may run the
 * loop: recovery at open and the scrub of vdkey (td_layer_sync_io). No
 * request is in flight then, so no page is half-loaded. */
#include <errno.h>
#include <string.h>

#include "integrity/tagcache.h"
#include "tapdisk/core/bufpool.h"

static struct ti_page *get_sync(struct ti_cache *tc, int level, uint64_t idx, int *err)
{
	struct ti_core *c = tc->c;
	struct ti_page *pg = ti_page_find(tc, level, idx), *l1 = NULL;
	const uint8_t *want = NULL;
	uint8_t *raw = NULL;
	int rc;

	if (pg && pg->loaded)
		return pg;
	if (pg && (pg->loading || pg->waitparent)) {
		*err = -EBUSY; /* recovery runs before any request */
		return NULL;
	}
	if (c->tree && level == 0) {
		l1 = get_sync(tc, 1, idx / TI_HASHES_PER_PAGE, err);
		if (!l1)
			return NULL;
		l1->pins++; /* not evicted by ti_page_new below */
	}
	if (!pg) {
		pg = ti_page_new(tc, level, idx);
		if (!pg) {
			*err = -ENOMEM;
			goto out_unpin;
		}
	}
	if (c->tree) {
		want = level ? tc->l2 + idx * TI_HASH_LEN
			     : l1->data + (idx % TI_HASHES_PER_PAGE) * TI_HASH_LEN;
		if (ti_all_zero(want, TI_HASH_LEN)) {
			memset(pg->data, 0, TI_BLOCK);
			rc = 0;
		} else if (!(raw = td_buf_get(2 * TI_BLOCK))) {
			rc = -ENOMEM;
		} else {
			rc = td_layer_sync_io(ti_lower(c), TD_OP_READ,
					      level ? ti_l1_page_off(&c->p, idx, 0)
						    : ti_tag_page_off(&c->p, idx, 0),
					      raw, 2 * TI_BLOCK, 0);
			if (rc == 0)
				rc = ti_pick_slot(tc, pg, raw, want);
			td_buf_put(raw, 2 * TI_BLOCK);
		}
	} else {
		rc = td_layer_sync_io(ti_lower(c), TD_OP_READ, c->p.tags_off + idx * TI_BLOCK,
				      pg->data, TI_BLOCK, 0);
	}
	if (rc < 0) {
		ti_page_free(tc, pg);
		*err = rc;
		pg = NULL;
		goto out_unpin;
	}
	pg->loaded = true;
	ti_page_touch(tc, pg);
out_unpin:
	if (l1)
		l1->pins--;
	return pg;
}

struct ti_page *ti_page_get_sync(struct ti_cache *tc, uint64_t idx, int *err)
{
	return get_sync(tc, 0, idx, err);
}

int ti_entry_set_sync(struct ti_cache *tc, uint64_t b, uint64_t seq, const uint8_t *tag)
{
	int err = 0;

	if (!ti_page_get_sync(tc, b / TI_ENTRIES_PER_PAGE, &err))
		return err;
	ti_entry_set(tc, b, seq, tag);
	return 0;
}

int ti_tree_zero_prepare_sync(struct ti_cache *tc, uint64_t b0, uint64_t n)
{
	uint64_t i, first = b0 / TI_ENTRIES_PER_PAGE, last = (b0 + n - 1) / TI_ENTRIES_PER_PAGE;
	int err = 0;

	for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
		if (!ti_page_covered(1, i, b0, n) && !get_sync(tc, 1, i, &err))
			return err;
	for (i = first; i <= last; i++)
		if (!ti_page_covered(0, i, b0, n) && !get_sync(tc, 0, i, &err))
			return err;
	return 0;
}
