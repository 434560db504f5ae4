/* The v2 freshness tree in memory (docs/FORMAT.md "Freshness tree"):
 * which slot of a page matches its parent entry, the hashes a checkpoint
 * writes, and zeroed ranges. The L2 array is resident (tc->l2); L1 pages
 * and tag pages go through the cache. */
#include <errno.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/tagcache.h"
#include "tapdisk/core/log.h"

bool ti_all_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	while (n--)
		acc |= *b++;
	return acc == 0;
}

bool ti_page_covered(int level, uint64_t idx, uint64_t b0, uint64_t n)
{
	uint64_t span =
	    level ? (uint64_t)TI_ENTRIES_PER_PAGE * TI_HASHES_PER_PAGE : TI_ENTRIES_PER_PAGE;

	return idx * span >= b0 && (idx + 1) * span <= b0 + n;
}

uint8_t *ti_l1_entry(struct ti_cache *tc, uint64_t t)
{
	struct ti_page *l1 = ti_page_find(tc, 1, t / TI_HASHES_PER_PAGE);

	return l1 ? l1->data + (t % TI_HASHES_PER_PAGE) * TI_HASH_LEN : NULL;
}

const uint8_t *ti_parent_entry(struct ti_cache *tc, const struct ti_page *pg)
{
	if (pg->level == 1)
		return tc->l2 + pg->idx * TI_HASH_LEN;
	return ti_l1_entry(tc, pg->idx);
}

int ti_pick_slot(struct ti_cache *tc, struct ti_page *pg, const uint8_t *raw, const uint8_t *want)
{
	struct ti_core *c = tc->c;
	uint8_t h[TI_HASH_LEN];
	unsigned s;
	int found = -1;

	for (s = 0; s < 2; s++) {
		if (ti_tree_hash(c->tree_mac, c->uuid, pg->level, pg->idx, raw + s * TI_BLOCK, h) <
		    0)
			continue;
		if (found < 0 && td_ct_memeq(h, want, TI_HASH_LEN))
			found = (int)s;
	}
	if (found < 0) {
		if (tc->tree_bad_pages++ < 16)
			td_err(
			    "integrity: %s page %llu matches neither of its slots in the freshness "
			    "tree: replayed or corrupted metadata; the blocks it covers read as "
			    "EIO",
			    pg->level ? "tree" : "tag", (unsigned long long)pg->idx);
		return -EBADMSG;
	}
	pg->slot = (unsigned)found;
	memcpy(pg->data, raw + (size_t)found * TI_BLOCK, TI_BLOCK);
	return 0;
}

void ti_tree_start_child(struct ti_cache *tc, struct ti_page *pg)
{
	const uint8_t *want;

	pg->waitparent = false;
	want = ti_parent_entry(tc, pg);
	if (!want || !ti_page_find(tc, 1, pg->idx / TI_HASHES_PER_PAGE)->loaded)
		return; /* the L1 page failed: so does this one */
	if (ti_all_zero(want, TI_HASH_LEN)) {
		memset(pg->data, 0, TI_BLOCK);
		pg->loaded = true;
		return;
	}
	(void)ti_page_load_start(tc, pg); /* out of memory: the page fails */
}

void ti_tree_settle_children(struct ti_cache *tc, struct ti_page *l1)
{
	uint64_t t, t0 = l1->idx * TI_HASHES_PER_PAGE;

	for (t = t0; t < t0 + TI_HASHES_PER_PAGE && t < tc->c->p.tags_pages; t++) {
		struct ti_page *pg = ti_page_find(tc, 0, t);

		if (pg && pg->waitparent)
			ti_tree_start_child(tc, pg);
	}
}

/* ---- a checkpoint's new tree -------------------------------------------------- */

static int hash_into_parent(struct ti_page *pg, void *opaque)
{
	struct ti_cache *tc = opaque;
	struct ti_core *c = tc->c;
	uint8_t *dst = pg->level ? tc->l2 + pg->idx * TI_HASH_LEN : ti_l1_entry(tc, pg->idx);

	if (!dst) {
		td_err("integrity: tag page %llu is dirty without its tree page",
		       (unsigned long long)pg->idx);
		return -EIO;
	}
	if (ti_tree_hash(c->tree_mac, c->uuid, pg->level, pg->idx, pg->data, dst) < 0)
		return -EIO;
	return 0;
}

int ti_tree_update(struct ti_cache *tc, uint8_t root[TI_HASH_LEN])
{
	struct ti_core *c = tc->c;
	int rc;

	/* tag pages first: their hashes change the L1 pages */
	rc = ti_cache_foreach_dirty(tc, 0, hash_into_parent, tc);
	if (!rc)
		rc = ti_cache_foreach_dirty(tc, 1, hash_into_parent, tc);
	if (rc)
		return rc;
	return ti_tree_root(c->tree_mac, c->uuid, c->p.l2_pages, tc->l2, root);
}

/* ---- zeroed ranges ----------------------------------------------------------------- */

/* Every block of L1 page q (tag pages [t0, t1) in range) reads as zeros. */
static void zero_l1_page(struct ti_cache *tc, uint64_t q, uint64_t t0, uint64_t t1)
{
	struct ti_page *l1 = ti_page_find(tc, 1, q);
	uint64_t t;

	memset(tc->l2 + q * TI_HASH_LEN, 0, TI_HASH_LEN);
	if (l1 && l1->loaded) {
		memset(l1->data, 0, TI_BLOCK);
		ti_page_set_dirty(tc, l1);
	}
	for (t = t0; t < t1; t++) {
		struct ti_page *pg = ti_page_find(tc, 0, t);

		if (!pg || !pg->loaded)
			continue;
		if (l1 && l1->loaded) {
			memset(pg->data, 0, TI_BLOCK);
			ti_page_set_dirty(tc, pg);
		} else if (!pg->pins && !pg->dirty && !pg->writing) {
			ti_page_free(tc, pg); /* stale now; cannot be dirty */
		}
	}
}

void ti_tree_zero(struct ti_cache *tc, uint64_t b0, uint64_t n)
{
	uint64_t first = b0 / TI_ENTRIES_PER_PAGE, last = (b0 + n - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t q, t;

	for (q = first / TI_HASHES_PER_PAGE; q <= last / TI_HASHES_PER_PAGE; q++) {
		struct ti_page *l1 = ti_page_find(tc, 1, q);
		uint64_t t0 = q * TI_HASHES_PER_PAGE, t1 = t0 + TI_HASHES_PER_PAGE;

		if (t0 < first)
			t0 = first;
		if (t1 > last + 1)
			t1 = last + 1;
		if (ti_page_covered(1, q, b0, n)) {
			zero_l1_page(tc, q, t0, t1);
			continue;
		}
		if (!l1 || !l1->loaded)
			continue; /* its load failed: the request has failed already */
		for (t = t0; t < t1; t++) {
			struct ti_page *pg = ti_page_find(tc, 0, t);
			uint64_t s = t * TI_ENTRIES_PER_PAGE, e = s + TI_ENTRIES_PER_PAGE;

			if (ti_page_covered(0, t, b0, n)) {
				memset(l1->data + (t % TI_HASHES_PER_PAGE) * TI_HASH_LEN, 0,
				       TI_HASH_LEN);
				ti_page_set_dirty(tc, l1);
				if (pg && pg->loaded) {
					memset(pg->data, 0, TI_BLOCK);
					ti_page_set_dirty(tc, pg);
				}
				continue;
			}
			if (!pg || !pg->loaded)
				continue;
			ti_page_zero_tags(tc, pg, s, e, b0, n);
		}
	}
}
