/* The tag-table page cache: a hash of 4 KiB pages with an LRU of clean,
 * unpinned pages for eviction. Dirty pages stay until a checkpoint writes
 * them; pinned pages (used by requests in flight) are never evicted. The
 * budget bounds memory; a 1 TiB image never reads all its tags. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/integ.h"
#include "tapdisk/bufpool.h"
#include "tapdisk/log.h"

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

static size_t hash(const struct ti_priv *p, uint64_t idx)
{
	return (size_t)((idx * 0x9e3779b97f4a7c15ull) >> 20) & (p->hsize - 1);
}

struct ti_page *ti_page_find(struct ti_priv *p, uint64_t idx)
{
	struct ti_page *pg;

	for (pg = p->htab[hash(p, idx)]; pg; pg = pg->hnext)
		if (pg->idx == idx)
			return pg;
	return NULL;
}

static void page_free(struct ti_priv *p, struct ti_page *pg)
{
	struct ti_page **pp = &p->htab[hash(p, pg->idx)];

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

static struct ti_page *page_new(struct ti_priv *p, uint64_t idx)
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
	h = hash(p, idx);
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

void ti_page_mark_dirty(struct ti_priv *p, struct ti_page *pg)
{
	if (!pg->dirty) {
		pg->dirty = true;
		p->ndirty++;
	}
}

struct page_load {
	struct td_req req;
	struct iovec iov;
	struct ti_page *pg;
	struct td_layer *l;
};

static void load_done(struct td_req *req, int err)
{
	struct page_load *pl = req->opaque;
	struct td_layer *l = pl->l;
	struct ti_priv *p = l->priv;
	struct ti_req *r, **pp;

	pl->pg->loading = false;
	if (err) {
		td_err("integrity: cannot read tag page %llu: %s", (unsigned long long)pl->pg->idx,
		       strerror(-err));
		/* every request waiting for it fails; the page is dropped */
	} else {
		pl->pg->loaded = true;
	}
	/* wake the requests whose pages are now all present */
	pp = &p->page_wait;
	while ((r = *pp)) {
		uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE;
		uint64_t last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;
		bool ready = true, failed = false;

		for (i = first; i <= last; i++) {
			struct ti_page *pg = ti_page_find(p, i);

			/* pages a zeroing request did not pin do not exist */
			if (pg && pg->loading)
				ready = false;
			else if (pg && !pg->loaded)
				failed = true;
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
	free(pl);
}

static int page_load_start(struct td_layer *l, struct ti_page *pg)
{
	struct ti_priv *p = l->priv;
	struct page_load *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return -ENOMEM;
	pl->pg = pg;
	pl->l = l;
	pl->iov.iov_base = pg->data;
	pl->iov.iov_len = TI_BLOCK;
	pl->req.op = TD_OP_READ;
	pl->req.off = p->p.tags_off + pg->idx * TI_BLOCK;
	pl->req.len = TI_BLOCK;
	pl->req.iov = &pl->iov;
	pl->req.iovcnt = 1;
	pl->req.done = load_done;
	pl->req.opaque = pl;
	pg->loading = true;
	td_layer_submit(l->below, &pl->req);
	return 0;
}

int ti_pages_pin(struct td_layer *l, struct ti_req *r, bool zeroing)
{
	struct ti_priv *p = l->priv;
	uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE, last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;
	int missing = 0;

	for (i = first; i <= last; i++) {
		struct ti_page *pg = ti_page_find(p, i);
		bool full = (i * TI_ENTRIES_PER_PAGE >= r->b0) &&
			    ((i + 1) * TI_ENTRIES_PER_PAGE <= r->b0 + r->n);

		if (!pg) {
			/* a page a zeroing request covers wholly is zeroed on disk
			 * directly; nobody else can load it meanwhile (range lock) */
			if (zeroing && full)
				continue;
			pg = page_new(p, i);
			if (!pg) {
				r->err = -ENOMEM;
				continue;
			}
			if (page_load_start(l, pg) < 0)
				r->err = -ENOMEM;
		}
		pg->pins++;
		lru_push(p, pg);
		if (pg->loading)
			missing++;
	}
	return missing;
}

void ti_pages_unpin(struct td_layer *l, struct ti_req *r)
{
	struct ti_priv *p = l->priv;
	uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE, last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;

	for (i = first; i <= last; i++) {
		struct ti_page *pg = ti_page_find(p, i);

		if (!pg || !pg->pins)
			continue;
		pg->pins--;
		if (!pg->loaded && !pg->loading && !pg->pins)
			page_free(p, pg); /* its load failed */
	}
}

struct ti_page *ti_page_get_sync(struct td_layer *l, uint64_t idx, int *err)
{
	struct ti_priv *p = l->priv;
	struct ti_page *pg = ti_page_find(p, idx);
	int rc;

	if (pg && pg->loaded)
		return pg;
	if (!pg) {
		pg = page_new(p, idx);
		if (!pg) {
			*err = -ENOMEM;
			return NULL;
		}
	}
	rc = td_layer_sync_io(l->below, TD_OP_READ, p->p.tags_off + idx * TI_BLOCK, pg->data,
			      TI_BLOCK, 0);
	if (rc < 0) {
		page_free(p, pg);
		*err = rc;
		return NULL;
	}
	pg->loaded = true;
	lru_push(p, pg);
	return pg;
}
