/* The tag-table page cache: a hash of 4 KiB pages with an LRU of clean,
 * unpinned pages for eviction. Dirty pages stay until a checkpoint writes
 * them; pinned pages (used by requests in flight) are never evicted. The
 * budget bounds memory; a 1 TiB image never reads all its tags. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/integ.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"

size_t ti_cache_budget(void)
{
	const char *e = getenv("TD_INTEGRITY_CACHE_MB");
	long mb = e ? strtol(e, NULL, 10) : 0;

	if (mb <= 0 || mb > 4096)
		mb = 32;
	return (size_t)mb << 20;
}

static void lru_unlink(struct ti_page *pg)
{
	if (pg->lru_prev) {
		pg->lru_prev->lru_next = pg->lru_next;
		pg->lru_next->lru_prev = pg->lru_prev;
	}
	pg->lru_prev = pg->lru_next = NULL;
}

static void lru_push(struct ti_priv *p, struct ti_page *pg)
{
	lru_unlink(pg);
	pg->lru_next = p->lru.lru_next;
	pg->lru_prev = &p->lru;
	p->lru.lru_next->lru_prev = pg;
	p->lru.lru_next = pg;
}

int ti_cache_init(struct td_layer *l, size_t budget)
{
	struct ti_priv *p = l->priv;

	p->max_pages = budget / TI_BLOCK;
	if (p->max_pages < 64)
		p->max_pages = 64;
	p->hsize = 1;
	while (p->hsize < p->max_pages)
		p->hsize <<= 1;
	p->htab = calloc(p->hsize, sizeof(*p->htab));
	if (!p->htab)
		return -ENOMEM;
	p->lru.lru_next = p->lru.lru_prev = &p->lru;
	return 0;
}

static size_t hash(const struct ti_priv *p, int level, uint64_t idx)
{
	uint64_t k = idx ^ ((uint64_t)level << 62);

	return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 20) & (p->hsize - 1);
}

struct ti_page *ti_page_find_lvl(struct ti_priv *p, int level, uint64_t idx)
{
	struct ti_page *pg;

	for (pg = p->htab[hash(p, level, idx)]; pg; pg = pg->hnext)
		if (pg->idx == idx && pg->level == level)
			return pg;
	return NULL;
}

struct ti_page *ti_page_find(struct ti_priv *p, uint64_t idx)
{
	return ti_page_find_lvl(p, 0, idx);
}

static void page_free(struct ti_priv *p, struct ti_page *pg)
{
	struct ti_page **pp = &p->htab[hash(p, pg->level, pg->idx)];

	while (*pp != pg)
		pp = &(*pp)->hnext;
	*pp = pg->hnext;
	lru_unlink(pg);
	td_buf_put(pg->data, TI_BLOCK);
	free(pg);
	p->npages--;
}

void ti_cache_free(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	size_t i;

	for (i = 0; p->htab && i < p->hsize; i++)
		while (p->htab[i])
			page_free(p, p->htab[i]);
	free(p->htab);
	p->htab = NULL;
}

/* Drops clean, unpinned pages from the cold end while over budget. */
static void evict(struct ti_priv *p)
{
	struct ti_page *pg = p->lru.lru_prev;

	while (p->npages >= p->max_pages && pg != &p->lru) {
		struct ti_page *prev = pg->lru_prev;

		if (!pg->pins && !pg->dirty && !pg->writing && pg->loaded)
			page_free(p, pg);
		pg = prev;
	}
}

static struct ti_page *page_new(struct ti_priv *p, int level, uint64_t idx)
{
	struct ti_page *pg;
	size_t h;

	evict(p);
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
	h = hash(p, level, idx);
	pg->hnext = p->htab[h];
	p->htab[h] = pg;
	p->npages++;
	return pg;
}

uint8_t *ti_entry(struct ti_priv *p, uint64_t block)
{
	struct ti_page *pg = ti_page_find(p, block / TI_ENTRIES_PER_PAGE);

	return pg ? pg->data + (block % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN : NULL;
}

uint8_t *ti_l1_entry(struct ti_priv *p, uint64_t tag_page)
{
	struct ti_page *l1 = ti_page_find_lvl(p, 1, tag_page / TI_HASHES_PER_PAGE);

	return l1 ? l1->data + (tag_page % TI_HASHES_PER_PAGE) * TI_HASH_LEN : NULL;
}

static void mark_dirty(struct ti_priv *p, struct ti_page *pg)
{
	if (!pg->dirty) {
		pg->dirty = true;
		p->ndirty++;
	}
}

void ti_page_mark_dirty(struct ti_priv *p, struct ti_page *pg)
{
	mark_dirty(p, pg);
	/* v2: the L1 page changes with it at the next checkpoint, so it stays
	 * cached (dirty pages are never evicted) */
	if (p->tree && pg->level == 0) {
		struct ti_page *l1 = ti_page_find_lvl(p, 1, pg->idx / TI_HASHES_PER_PAGE);

		if (l1)
			mark_dirty(p, l1);
	}
}

/* ---- v2: choosing the slot that matches the tree ---------------------------- */

/* The parent entry of pg: the L2 entry of an L1 page, the L1 entry of a
 * tag page (whose L1 page is loaded). */
static const uint8_t *parent_entry(struct ti_priv *p, const struct ti_page *pg)
{
	if (pg->level == 1)
		return p->l2 + pg->idx * TI_HASH_LEN;
	return ti_l1_entry(p, pg->idx);
}

static bool is_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	while (n--)
		acc |= *b++;
	return acc == 0;
}

/* Picks the slot of raw (two slots, 8 KiB) whose hash is want; 0 and the
 * page in pg->data, or -EBADMSG when neither matches. */
static int pick_slot(struct ti_priv *p, struct ti_page *pg, const uint8_t *raw,
		     const uint8_t *want)
{
	uint8_t h[TI_HASH_LEN];
	unsigned s;
	int found = -1;

	for (s = 0; s < 2; s++) {
		if (ti_tree_hash(p->tree_mac, p->uuid, pg->level, pg->idx, raw + s * TI_BLOCK, h) <
		    0)
			continue;
		if (found < 0 && td_ct_memeq(h, want, TI_HASH_LEN))
			found = (int)s;
	}
	if (found < 0) {
		if (p->tree_bad_pages++ < 16)
			td_err("integrity: %s page %llu matches neither of its slots in the freshness "
			       "tree: replayed or corrupted metadata; the blocks it covers read as "
			       "EIO",
			       pg->level ? "tree" : "tag", (unsigned long long)pg->idx);
		return -EBADMSG;
	}
	pg->slot = (unsigned)found;
	memcpy(pg->data, raw + (size_t)found * TI_BLOCK, TI_BLOCK);
	return 0;
}

/* ---- asynchronous loads ------------------------------------------------------ */

struct page_load {
	struct td_req req;
	struct iovec iov;
	struct ti_page *pg;
	struct td_layer *l;
	uint8_t *raw; /* v2: both slots */
};

static int page_load_start(struct td_layer *l, struct ti_page *pg);

static bool req_page_needed(const struct ti_req *r, int level, uint64_t idx);

/* Wakes the requests whose pages are all settled. */
static void wake_waiters(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;
	struct ti_req *r, **pp;

	pp = &p->page_wait;
	while ((r = *pp)) {
		uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE;
		uint64_t last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;
		bool ready = true, failed = false;
		int lv;

		for (lv = 0; lv <= (p->tree ? 1 : 0); lv++) {
			uint64_t a = lv ? first / TI_HASHES_PER_PAGE : first;
			uint64_t b = lv ? last / TI_HASHES_PER_PAGE : last;

			for (i = a; i <= b; i++) {
				struct ti_page *pg;

				if (!req_page_needed(r, lv, i))
					continue;
				pg = ti_page_find_lvl(p, lv, i);
				if (pg && (pg->loading || pg->waitparent))
					ready = false;
				else if (!pg || !pg->loaded)
					failed = true;
			}
		}
		if (failed && !r->err)
			r->err = err ? err : -EIO;
		if (!ready) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		r->next = NULL;
		ti_req_continue(r);
	}
}

/* v2: a tag page whose L1 page just settled. */
static void start_child(struct td_layer *l, struct ti_page *pg)
{
	struct ti_priv *p = l->priv;
	const uint8_t *want;

	pg->waitparent = false;
	want = parent_entry(p, pg);
	if (!want || !ti_page_find_lvl(p, 1, pg->idx / TI_HASHES_PER_PAGE)->loaded)
		return; /* the L1 page failed: so does this one */
	if (is_zero(want, TI_HASH_LEN)) {
		memset(pg->data, 0, TI_BLOCK);
		pg->loaded = true;
		return;
	}
	if (page_load_start(l, pg) < 0)
		return;
}

static void settle_children(struct td_layer *l, struct ti_page *l1)
{
	struct ti_priv *p = l->priv;
	uint64_t t, t0 = l1->idx * TI_HASHES_PER_PAGE;

	for (t = t0; t < t0 + TI_HASHES_PER_PAGE && t < p->p.tags_pages; t++) {
		struct ti_page *pg = ti_page_find(p, t);

		if (pg && pg->waitparent)
			start_child(l, pg);
	}
}

static void load_done(struct td_req *req, int err)
{
	struct page_load *pl = req->opaque;
	struct td_layer *l = pl->l;
	struct ti_priv *p = l->priv;
	struct ti_page *pg = pl->pg;

	pg->loading = false;
	if (err) {
		td_err("integrity: cannot read %s page %llu: %s", pg->level ? "tree" : "tag",
		       (unsigned long long)pg->idx, strerror(-err));
		/* every request waiting for it fails; the page is dropped */
	} else if (p->tree) {
		const uint8_t *want = parent_entry(p, pg);

		if (want && pick_slot(p, pg, pl->raw, want) == 0)
			pg->loaded = true;
		else
			pg->bad = true;
	} else {
		pg->loaded = true;
	}
	if (pl->raw)
		td_buf_put(pl->raw, 2 * TI_BLOCK);
	free(pl);
	if (p->tree && pg->level == 1)
		settle_children(l, pg);
	wake_waiters(l, err ? err : (pg->bad ? -EIO : 0));
}

static int page_load_start(struct td_layer *l, struct ti_page *pg)
{
	struct ti_priv *p = l->priv;
	struct page_load *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return -ENOMEM;
	pl->pg = pg;
	pl->l = l;
	if (p->tree) { /* both slots, one read */
		pl->raw = td_buf_get(2 * TI_BLOCK);
		if (!pl->raw) {
			free(pl);
			return -ENOMEM;
		}
		td_req_init1(&pl->req, &pl->iov, TD_OP_READ,
			     pg->level ? ti_l1_page_off(&p->p, pg->idx, 0)
				       : ti_tag_page_off(&p->p, pg->idx, 0),
			     pl->raw, 2 * TI_BLOCK, load_done, pl);
	} else {
		td_req_init1(&pl->req, &pl->iov, TD_OP_READ, p->p.tags_off + pg->idx * TI_BLOCK,
			     pg->data, TI_BLOCK, load_done, pl);
	}
	pg->loading = true;
	td_layer_submit(l->below, &pl->req);
	return 0;
}

/* ---- pinning ------------------------------------------------------------------ */

/* Whether page idx of level (0 tag, 1 L1) lies wholly inside blocks
 * [b0, b0+n). */
static bool page_covered(int level, uint64_t idx, uint64_t b0, uint64_t n)
{
	uint64_t span = level ? (uint64_t)TI_ENTRIES_PER_PAGE * TI_HASHES_PER_PAGE
			      : TI_ENTRIES_PER_PAGE;

	return idx * span >= b0 && (idx + 1) * span <= b0 + n;
}

/* Which pages a request needs. A zeroing request does not need the pages
 * it covers wholly: v1 zeroes those tag pages on disk directly, v2 zeroes
 * their parent entries (nobody else can load them meanwhile: range lock). */
static bool req_page_needed(const struct ti_req *r, int level, uint64_t idx)
{
	return !(r->kind == TI_ZERO && page_covered(level, idx, r->b0, r->n));
}

static struct ti_page *pin_one(struct td_layer *l, struct ti_req *r, int level, uint64_t idx)
{
	struct ti_priv *p = l->priv;
	struct ti_page *pg = ti_page_find_lvl(p, level, idx);

	if (!pg) {
		pg = page_new(p, level, idx);
		if (!pg) {
			r->err = -ENOMEM;
			return NULL;
		}
		if (p->tree && level == 1 && is_zero(p->l2 + idx * TI_HASH_LEN, TI_HASH_LEN)) {
			memset(pg->data, 0, TI_BLOCK); /* all zeros: nothing to read */
			pg->loaded = true;
		} else if (p->tree && level == 0) {
			struct ti_page *l1 = ti_page_find_lvl(p, 1, idx / TI_HASHES_PER_PAGE);

			if (l1 && l1->loaded) {
				start_child(l, pg);
			} else if (l1 && (l1->loading)) {
				pg->waitparent = true;
			} /* else: the L1 page failed; so does this page */
		} else if (page_load_start(l, pg) < 0) {
			r->err = -ENOMEM;
		}
	}
	pg->pins++;
	lru_push(p, pg);
	return pg;
}

int ti_pages_pin(struct td_layer *l, struct ti_req *r)
{
	struct ti_priv *p = l->priv;
	uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE, last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;
	int missing = 0;
	struct ti_page *pg;

	if (p->tree) /* parents first: a tag page load needs its L1 entry */
		for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
			if (req_page_needed(r, 1, i) && (pg = pin_one(l, r, 1, i)) &&
			    pg->loading)
				missing++;
	for (i = first; i <= last; i++)
		if (req_page_needed(r, 0, i) && (pg = pin_one(l, r, 0, i)) &&
		    (pg->loading || pg->waitparent))
			missing++;
	return missing;
}

static void unpin_one(struct ti_priv *p, int level, uint64_t idx)
{
	struct ti_page *pg = ti_page_find_lvl(p, level, idx);

	if (!pg || !pg->pins)
		return;
	pg->pins--;
	if (!pg->loaded && !pg->loading && !pg->waitparent && !pg->pins)
		page_free(p, pg); /* its load failed */
}

void ti_pages_unpin(struct td_layer *l, struct ti_req *r)
{
	struct ti_priv *p = l->priv;
	uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE, last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;

	for (i = first; i <= last; i++)
		if (req_page_needed(r, 0, i))
			unpin_one(p, 0, i);
	if (p->tree)
		for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
			if (req_page_needed(r, 1, i))
				unpin_one(p, 1, i);
}

/* ---- synchronous loads (recovery) -------------------------------------------- */

static struct ti_page *get_sync(struct td_layer *l, int level, uint64_t idx, int *err)
{
	struct ti_priv *p = l->priv;
	struct ti_page *pg = ti_page_find_lvl(p, level, idx), *l1 = NULL;
	const uint8_t *want = NULL;
	uint8_t *raw = NULL;
	int rc;

	if (pg && pg->loaded)
		return pg;
	if (pg && (pg->loading || pg->waitparent)) {
		*err = -EBUSY; /* recovery runs before any request */
		return NULL;
	}
	if (p->tree && level == 0) {
		l1 = get_sync(l, 1, idx / TI_HASHES_PER_PAGE, err);
		if (!l1)
			return NULL;
		l1->pins++; /* not evicted by page_new below */
	}
	if (!pg) {
		pg = page_new(p, level, idx);
		if (!pg) {
			*err = -ENOMEM;
			goto out_unpin;
		}
	}
	if (p->tree) {
		want = level ? p->l2 + idx * TI_HASH_LEN
			     : l1->data + (idx % TI_HASHES_PER_PAGE) * TI_HASH_LEN;
		if (is_zero(want, TI_HASH_LEN)) {
			memset(pg->data, 0, TI_BLOCK);
			rc = 0;
		} else if (!(raw = td_buf_get(2 * TI_BLOCK))) {
			rc = -ENOMEM;
		} else {
			rc = td_layer_sync_io(l->below, TD_OP_READ,
					      level ? ti_l1_page_off(&p->p, idx, 0)
						    : ti_tag_page_off(&p->p, idx, 0),
					      raw, 2 * TI_BLOCK, 0);
			if (rc == 0)
				rc = pick_slot(p, pg, raw, want);
			td_buf_put(raw, 2 * TI_BLOCK);
		}
	} else {
		rc = td_layer_sync_io(l->below, TD_OP_READ, p->p.tags_off + idx * TI_BLOCK, pg->data,
				      TI_BLOCK, 0);
	}
	if (rc < 0) {
		page_free(p, pg);
		*err = rc;
		pg = NULL;
		goto out_unpin;
	}
	pg->loaded = true;
	lru_push(p, pg);
out_unpin:
	if (l1)
		l1->pins--;
	return pg;
}

struct ti_page *ti_page_get_sync(struct td_layer *l, uint64_t idx, int *err)
{
	return get_sync(l, 0, idx, err);
}

/* ---- v2 zeroing ----------------------------------------------------------------- */

int ti_tree_zero_prepare_sync(struct td_layer *l, uint64_t b0, uint64_t n)
{
	uint64_t i, first = b0 / TI_ENTRIES_PER_PAGE, last = (b0 + n - 1) / TI_ENTRIES_PER_PAGE;
	int err = 0;

	for (i = first / TI_HASHES_PER_PAGE; i <= last / TI_HASHES_PER_PAGE; i++)
		if (!page_covered(1, i, b0, n) && !get_sync(l, 1, i, &err))
			return err;
	for (i = first; i <= last; i++)
		if (!page_covered(0, i, b0, n) && !get_sync(l, 0, i, &err))
			return err;
	return 0;
}

void ti_tree_zero(struct td_layer *l, uint64_t b0, uint64_t n)
{
	struct ti_priv *p = l->priv;
	uint64_t first = b0 / TI_ENTRIES_PER_PAGE, last = (b0 + n - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t q, t;

	for (q = first / TI_HASHES_PER_PAGE; q <= last / TI_HASHES_PER_PAGE; q++) {
		struct ti_page *l1 = ti_page_find_lvl(p, 1, q);
		uint64_t t0 = q * TI_HASHES_PER_PAGE, t1 = t0 + TI_HASHES_PER_PAGE;

		if (t0 < first)
			t0 = first;
		if (t1 > last + 1)
			t1 = last + 1;
		if (page_covered(1, q, b0, n)) {
			/* the whole L1 page reads as zeros */
			memset(p->l2 + q * TI_HASH_LEN, 0, TI_HASH_LEN);
			if (l1 && l1->loaded) {
				memset(l1->data, 0, TI_BLOCK);
				mark_dirty(p, l1);
			}
			for (t = t0; t < t1; t++) {
				struct ti_page *pg = ti_page_find(p, t);

				if (!pg || !pg->loaded)
					continue;
				if (l1 && l1->loaded) {
					memset(pg->data, 0, TI_BLOCK);
					mark_dirty(p, pg);
				} else if (!pg->pins && !pg->dirty && !pg->writing) {
					page_free(p, pg); /* stale now; cannot be dirty */
				}
			}
			continue;
		}
		if (!l1 || !l1->loaded)
			continue; /* its load failed: the request has failed already */
		for (t = t0; t < t1; t++) {
			struct ti_page *pg = ti_page_find(p, t);
			uint64_t s = t * TI_ENTRIES_PER_PAGE, e = s + TI_ENTRIES_PER_PAGE;

			if (page_covered(0, t, b0, n)) {
				memset(l1->data + (t % TI_HASHES_PER_PAGE) * TI_HASH_LEN, 0,
				       TI_HASH_LEN);
				mark_dirty(p, l1);
				if (pg && pg->loaded) {
					memset(pg->data, 0, TI_BLOCK);
					mark_dirty(p, pg);
				}
				continue;
			}
			if (!pg || !pg->loaded)
				continue;
			if (s < b0)
				s = b0;
			if (e > b0 + n)
				e = b0 + n;
			memset(pg->data + (s % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN, 0,
			       (e - s) * TI_ENTRY_LEN);
			ti_page_mark_dirty(p, pg);
		}
	}
}
