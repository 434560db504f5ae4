/* The tag-table page cache: see tagcache.h. Requests pin the pages of
 * their blocks; a request whose pages are loading parks its struct ti_pin
 * and is woken when every one of them has settled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/tagcache.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"

static void lru_unlink(struct ti_page *pg)
{
	if (pg->lru_prev) {
		pg->lru_prev->lru_next = pg->lru_next;
		pg->lru_next->lru_prev = pg->lru_prev;
	}
	pg->lru_prev = pg->lru_next = NULL;
}

void ti_page_touch(struct ti_cache *tc, struct ti_page *pg)
{
	lru_unlink(pg);
	pg->lru_next = tc->lru.lru_next;
	pg->lru_prev = &tc->lru;
	tc->lru.lru_next->lru_prev = pg;
	tc->lru.lru_next = pg;
}

int ti_cache_init(struct ti_cache *tc, struct ti_core *c, uint64_t budget)
{
	tc->c = c;
	tc->max_pages = (size_t)(budget / TI_BLOCK);
	if (tc->max_pages < 64)
		tc->max_pages = 64;
	tc->hsize = 1;
	while (tc->hsize < tc->max_pages)
		tc->hsize <<= 1;
	tc->htab = calloc(tc->hsize, sizeof(*tc->htab));
	if (!tc->htab)
		return -ENOMEM;
	tc->lru.lru_next = tc->lru.lru_prev = &tc->lru;
	return 0;
}

static size_t hash(const struct ti_cache *tc, int level, uint64_t idx)
{
	uint64_t k = idx ^ ((uint64_t)level << 62);

	return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 20) & (tc->hsize - 1);
}

struct ti_page *ti_page_find(struct ti_cache *tc, int level, uint64_t idx)
{
	struct ti_page *pg;

	for (pg = tc->htab[hash(tc, level, idx)]; pg; pg = pg->hnext)
		if (pg->idx == idx && pg->level == level)
			return pg;
	return NULL;
}

void ti_page_free(struct ti_cache *tc, struct ti_page *pg)
{
	struct ti_page **pp = &tc->htab[hash(tc, pg->level, pg->idx)];

	while (*pp != pg)
		pp = &(*pp)->hnext;
	*pp = pg->hnext;
	lru_unlink(pg);
	td_buf_put(pg->data, TI_BLOCK);
	free(pg);
	tc->npages--;
}

void ti_cache_free(struct ti_cache *tc)
{
	size_t i;

	for (i = 0; tc->htab && i < tc->hsize; i++)
		while (tc->htab[i])
			ti_page_free(tc, tc->htab[i]);
	free(tc->htab);
	tc->htab = NULL;
	free(tc->l2);
	tc->l2 = NULL;
}

/* Drops clean, unpinned pages from the cold end while over budget. */
static void evict(struct ti_cache *tc)
{
	struct ti_page *pg = tc->lru.lru_prev;

	while (tc->npages >= tc->max_pages && pg != &tc->lru) {
		struct ti_page *prev = pg->lru_prev;

		if (!pg->pins && !pg->dirty && !pg->writing && pg->loaded)
			ti_page_free(tc, pg);
		pg = prev;
	}
}

struct ti_page *ti_page_new(struct ti_cache *tc, int level, uint64_t idx)
{
	struct ti_page *pg;
	size_t h;

	evict(tc);
	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return NULL;
	pg->data = td_buf_get(TI_BLOCK);
	if (!pg->data) {
		free(pg);
		return NULL;
	}
	pg->idx = idx;
	pg->level = level;
	h = hash(tc, level, idx);
	pg->hnext = tc->htab[h];
	tc->htab[h] = pg;
	tc->npages++;
	return pg;
}

/* ---- entries and dirty pages ------------------------------------------------ */

uint8_t *ti_entry(struct ti_cache *tc, uint64_t b)
{
	struct ti_page *pg = ti_page_find(tc, 0, b / TI_ENTRIES_PER_PAGE);

	return pg ? pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN : NULL;
}

void ti_page_set_dirty(struct ti_cache *tc, struct ti_page *pg)
{
	if (!pg->dirty) {
		pg->dirty = true;
		tc->ndirty++;
	}
}

void ti_page_mark_dirty(struct ti_cache *tc, struct ti_page *pg)
{
	ti_page_set_dirty(tc, pg);
	/* v2: the L1 page changes with it at the next checkpoint, so it stays
	 * cached (dirty pages are never evicted) */
	if (tc->c->tree && pg->level == 0) {
		struct ti_page *l1 = ti_page_find(tc, 1, pg->idx / TI_HASHES_PER_PAGE);

		if (l1)
			ti_page_set_dirty(tc, l1);
	}
}

void ti_entry_set(struct ti_cache *tc, uint64_t b, uint64_t seq, const uint8_t *tag)
{
	struct ti_page *pg = ti_page_find(tc, 0, b / TI_ENTRIES_PER_PAGE);
	uint8_t *e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;

	ti_put64(e, seq);
	if (tag)
		memcpy(e + 8, tag, TI_TAG_LEN);
	else
		memset(e + 8, 0, TI_TAG_LEN);
	ti_page_mark_dirty(tc, pg);
}

void ti_entries_zero(struct ti_cache *tc, uint64_t b0, uint64_t n)
{
	uint64_t i, first = b0 / TI_ENTRIES_PER_PAGE, last = (b0 + n - 1) / TI_ENTRIES_PER_PAGE;

	if (tc->c->tree) {
		ti_tree_zero(tc, b0, n);
		return;
	}
	for (i = first; i <= last; i++) {
		struct ti_page *pg = ti_page_find(tc, 0, i);
		uint64_t s = i * TI_ENTRIES_PER_PAGE, e = s + TI_ENTRIES_PER_PAGE;

		if (!pg)
			continue; /* zeroed on disk */
		ti_page_zero_tags(tc, pg, s, e, b0, n);
	}
}

void ti_page_zero_tags(struct ti_cache *tc, struct ti_page *pg, uint64_t s, uint64_t e, uint64_t b0,
		       uint64_t n)
{
	if (s < b0)
		s = b0;
	if (e > b0 + n)
		e = b0 + n;
	memset(pg->data + (s % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN, 0, (e - s) * TI_ENTRY_LEN);
	ti_page_mark_dirty(tc, pg);
}

bool ti_cache_full(const struct ti_cache *tc)
{
	return tc->ndirty * 2 >= tc->max_pages;
}

int ti_cache_foreach_dirty(struct ti_cache *tc, int level,
			   int (*fn)(struct ti_page *pg, void *opaque), void *opaque)
{
	size_t i;
	int rc;

	for (i = 0; i < tc->hsize; i++) {
		struct ti_page *pg, *next;

		for (pg = tc->htab[i]; pg; pg = next) {
			next = pg->hnext;
			if (!pg->dirty || (level >= 0 && pg->level != level))
				continue;
			rc = fn(pg, opaque);
			if (rc)
				return rc;
		}
	}
	return 0;
}

void ti_page_write_begin(struct ti_cache *tc, struct ti_page *pg)
{
	pg->dirty = false;
	tc->ndirty--;
	pg->writing = true;
	pg->pins++;
}

void ti_page_write_end(struct ti_cache *tc, struct ti_page *pg, int err)
{
	pg->writing = false;
	if (err)
		ti_page_mark_dirty(tc, pg);
	else if (tc->c->tree)
		pg->slot ^= 1; /* the new tree uses the slot just written */
	pg->pins--;
}

/* ---- asynchronous loads ------------------------------------------------------ */

struct page_load {
	struct td_req req;
	struct iovec iov;
	struct ti_page *pg;
	struct ti_cache *tc;
	uint8_t *raw; /* v2: both slots */
};

/* Which pages a pin needs. */
static bool pin_needs(const struct ti_pin *pin, int level, uint64_t idx)
{
	return !(pin->zero && ti_page_covered(level, idx, pin->b0, pin->n));
}

/* Whether every page pin needs has settled; failed: one did not load. */
static bool pin_settled(struct ti_cache *tc, const struct ti_pin *pin, bool *failed)
{
	uint64_t i, first = pin->b0 / TI_ENTRIES_PER_PAGE;
	uint64_t last = (pin->b0 + pin->n - 1) / TI_ENTRIES_PER_PAGE;
	bool ready = true;
	int lv;

	*failed = false;
	for (lv = 0; lv <= (tc->c->tree ? 1 : 0); lv++) {
		uint64_t a = lv ? first / TI_HASHES_PER_PAGE : first;
		uint64_t b = lv ? last / TI_HASHES_PER_PAGE : last;

		for (i = a; i <= b; i++) {
			struct ti_page *pg;

			if (!pin_needs(pin, lv, i))
				continue;
			pg = ti_page_find(tc, lv, i);
			if (pg && (pg->loading || pg->waitparent))
				ready = false;
			else if (!pg || !pg->loaded)
				*failed = true;
		}
	}
	return ready;
}

/* A load ended: wakes the pins whose pages have all settled, in order. */
static void wake_pins(struct ti_cache *tc, int err)
{
	struct ti_wait *w = tc->pins.head;

	tc->pins.head = tc->pins.tail = NULL;
	while (w) {
		struct ti_wait *next = w->next;
		struct ti_pin *pin = TI_CONTAINER(w, struct ti_pin, w);
		bool failed, ready = pin_settled(tc, pin, &failed);

		w->next = NULL;
		w->queued = false;
		if (failed && !pin->err)
			pin->err = err ? err : -EIO;
		if (ready)
			ti_wake(w, pin->err);
		else
			ti_park(&tc->pins, w);
		w = next;
	}
}

static void load_done(struct td_req *req, int err)
{
	struct page_load *pl = req->opaque;
	struct ti_cache *tc = pl->tc;
	struct ti_page *pg = pl->pg;

	pg->loading = false;
	if (err) {
		td_err("integrity: cannot read %s page %llu: %s", pg->level ? "tree" : "tag",
		       (unsigned long long)pg->idx, strerror(-err));
		/* every request waiting for it fails; the page is dropped */
	} else if (tc->c->tree) {
		const uint8_t *want = ti_parent_entry(tc, pg);

		if (want && ti_pick_slot(tc, pg, pl->raw, want) == 0)
			pg->loaded = true;
		else
			pg->bad = true;
	} else {
		pg->loaded = true;
	}
	if (pl->raw)
		td_buf_put(pl->raw, 2 * TI_BLOCK);
	free(pl);
	if (tc->c->tree && pg->level == 1)
		ti_tree_settle_children(tc, pg);
	wake_pins(tc, err ? err : (pg->bad ? -EIO : 0));
}

int ti_page_load_start(struct ti_cache *tc, struct ti_page *pg)
{
	const struct ti_params *prm = &tc->c->p;
	struct page_load *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return -ENOMEM;
	pl->pg = pg;
	pl->tc = tc;
	if (tc->c->tree) { /* both slots, one read */
		pl->raw = td_buf_get(2 * TI_BLOCK);
		if (!pl->raw) {
			free(pl);
			return -ENOMEM;
		}
		td_req_init1(&pl->req, &pl->iov, TD_OP_READ,
			     pg->level ? ti_l1_page_off(prm, pg->idx, 0)
				       : ti_tag_page_off(prm, pg->idx, 0),
			     pl->raw, 2 * TI_BLOCK, load_done, pl);
	} else {
		td_req_init1(&pl->req, &pl->iov, TD_OP_READ, prm->tags_off + pg->idx * TI_BLOCK,
			     pg->data, TI_BLOCK, load_done, pl);
	}
	pg->loading = true;
	td_layer_submit(ti_lower(tc->c), &pl->req);
	return 0;
}

/* ---- pinning ------------------------------------------------------------------ */

static struct ti_page *pin_one(struct ti_cache *tc, struct ti_pin *pin, int level, uint64_t idx)
{
	struct ti_page *pg = ti_page_find(tc, level, idx);

	if (!pg) {
		pg = ti_page_new(tc, level, idx);
		if (!pg) {
			pin->err = -ENOMEM;
			return NULL;
		}
		if (tc->c->tree && level == 1 &&
		    ti_all_zero(tc->l2 + idx * TI_HASH_LEN, TI_HASH_LEN)) {
			memset(pg->data, 0, TI_BLOCK); /* all zeros: nothing to read */
			pg->loaded = true;
		} else if (tc->c->tree && level == 0) {
			struct ti_page *l1 = ti_page_find(tc, 1, idx / TI_HASHES_PER_PAGE);

			if (l1 && l1->loaded)
				ti_tree_start_child(tc, pg);
			else if (l1 && l1->loading)
				pg->waitparent = true;
			/* else: the L1 page failed; so does this page */
		} else if (ti_page_load_start(tc, pg) < 0) {
			pin->err = -ENOMEM;
		}
	}
	pg->pins++;
	ti_page_touch(tc, pg);
	return pg;
}

int ti_pages_pin(struct ti_cache *tc, struct ti_pin *pin)
{
	uint64_t i, first = pin->b0 / TI_ENTRIES_PER_PAGE;
	uint64_t last = (pin->b0 + pin->n - 1) / TI_ENTRIES_PER_PAGE;
	int missing = 0;
	struct ti_page *pg;

	pin->err = 0;
	if (tc->c->tree) /* parents first: a tag page load needs its L1 entry */
		for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
			if (pin_needs(pin, 1, i) && (pg = pin_one(tc, pin, 1, i)) && pg->loading)
				missing++;
	for (i = first; i <= last; i++)
		if (pin_needs(pin, 0, i) && (pg = pin_one(tc, pin, 0, i)) &&
		    (pg->loading || pg->waitparent))
			missing++;
	if (missing) {
		ti_park(&tc->pins, &pin->w);
		return -EAGAIN;
	}
	return pin->err;
}

static void unpin_one(struct ti_cache *tc, int level, uint64_t idx)
{
	struct ti_page *pg = ti_page_find(tc, level, idx);

	if (!pg || !pg->pins)
		return;
	pg->pins--;
	if (!pg->loaded && !pg->loading && !pg->waitparent && !pg->pins)
		ti_page_free(tc, pg); /* its load failed */
}

void ti_pages_unpin(struct ti_cache *tc, struct ti_pin *pin)
{
	uint64_t i, first = pin->b0 / TI_ENTRIES_PER_PAGE;
	uint64_t last = (pin->b0 + pin->n - 1) / TI_ENTRIES_PER_PAGE;

	for (i = first; i <= last; i++)
		if (pin_needs(pin, 0, i))
			unpin_one(tc, 0, i);
	if (tc->c->tree)
		for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
			if (pin_needs(pin, 1, i))
				unpin_one(tc, 1, i);
}
