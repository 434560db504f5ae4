/* The grain table cache: whole GTs keyed by (extent, GD index), least
 * recently used first out, within a byte budget.
 *
 * A miss reads both copies of the GT (the one the GD names and the one
 * the redundant GD names) at once and reconciles them entry by entry
 * (docs/FORMAT-vmdk.md, "Redundant tables"): the primary wins where it is
 * valid, the redundant entry is used where only it is; a GT whose copies
 * differed is logged and, when we write, marked dirty so the next round
 * rewrites both copies from the reconciled one. From then on only that
 * one copy is kept: the writeback writes it to both places.
 *
 * Every caller asking for a GT while it loads parks on the entry. Dirty,
 * pinned and busy (being written back) entries are never evicted; when
 * only such entries are left over budget, a round is started. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/vmdk/vmdk_int.h"

static unsigned bucket(const struct vmcache *c, uint32_t ext, uint64_t gti)
{
	uint64_t k = (gti ^ ((uint64_t)ext << 40)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(k >> 40) & (c->nbuckets - 1);
}

static struct vmgt *gt_of(struct td_lru_link *k)
{
	return td_lru_entry(k, struct vmgt, lru);
}

int vmc_init(struct vm *v, uint64_t budget)
{
	struct vmcache *c = &v->cache;

	memset(c, 0, sizeof(*c));
	c->budget = budget;
	c->nbuckets = td_cache_buckets(budget, 2048);
	c->hash = calloc(c->nbuckets, sizeof(*c->hash));
	return c->hash ? 0 : -ENOMEM;
}

static struct vmgt *lookup(struct vmcache *c, uint32_t ext, uint64_t gti)
{
	struct vmgt *g;

	for (g = c->hash[bucket(c, ext, gti)]; g; g = g->hnext)
		if (g->gti == gti && g->ext == ext)
			return g;
	return NULL;
}

static void entry_free(struct vm *v, struct vmgt *g)
{
	struct vmcache *c = &v->cache;
	struct vmgt **pp = &c->hash[bucket(c, g->ext, g->gti)];

	while (*pp && *pp != g)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = g->hnext;
	td_lru_unlink(&c->lru, &g->lru);
	if (g->dirty)
		c->ndirty--;
	c->used -= v->ext[g->ext].h.gt_bytes + sizeof(*g);
	free(g->p);
	free(g->r);
	free(g);
}

void vmc_destroy(struct vm *v)
{
	struct vmcache *c = &v->cache;

	while (c->lru.head)
		entry_free(v, gt_of(c->lru.head));
	free(c->hash);
	c->hash = NULL;
}

void vmc_pin(struct vmgt *g)
{
	g->pins++;
}

void vmc_unpin(struct vm *v, struct vmgt *g)
{
	g->pins--;
	if (!g->pins && v->cache.used > v->cache.budget)
		vmc_shrink(v);
}

void vmc_mark_dirty(struct vm *v, struct vmgt *g)
{
	if (!g->dirty) {
		g->dirty = true;
		v->cache.ndirty++;
	}
	vm_meta_dirtied(v);
}

void vmc_clean(struct vm *v, struct vmgt *g)
{
	if (g->dirty) {
		g->dirty = false;
		v->cache.ndirty--;
	}
}

void vmc_for_dirty(struct vm *v, void (*fn)(struct vm *v, struct vmgt *g, void *opaque),
		   void *opaque)
{
	struct vmgt *g, *next;

	if (!v->cache.ndirty)
		return;
	for (g = gt_of(v->cache.lru.head); g; g = next) {
		next = gt_of(g->lru.next);
		if (g->dirty)
			fn(v, g, opaque);
	}
}

void vmc_shrink(struct vm *v)
{
	struct vmcache *c = &v->cache;
	struct vmgt *g = gt_of(c->lru.tail);
	bool stuck = false;

	while (c->used > c->budget && g) {
		struct vmgt *prev = gt_of(g->lru.prev);

		if (g->dirty)
			stuck = true;
		else if (!g->loading && !g->pins && !g->busy)
			entry_free(v, g);
		g = prev;
	}
	if (c->used > c->budget && stuck)
		vm_meta_kick(v);
}

/* Is e (a GTE of x) usable: unallocated, zeroed, or a grain inside the
 * file clear of every piece of metadata? */
static bool gte_valid(const struct vmext *x, uint32_t e)
{
	uint64_t host = 0;
	enum vmdk_gte_kind k = vmdk_gte_decode(&x->h, e, x->f->size, &host);

	if (k == VMDK_GTE_INVALID)
		return false;
	if (k != VMDK_GTE_DATA)
		return true;
	return vm_clear_of_gts(x, host, x->h.compressed ? VMDK_GRAIN_MARKER_LEN : x->h.grain_bytes);
}

static void reconcile(struct vm *v, struct vmgt *g)
{
	struct vmext *x = &v->ext[g->ext];
	unsigned differ = 0, fallback = 0;

	if (!g->r)
		return;
	for (uint64_t i = 0; i < x->h.gtes_per_gt; i++) {
		uint32_t pe = vmdk_le32(g->p + 4 * i), re = vmdk_le32(g->r + 4 * i);

		if (pe == re)
			continue;
		if (gte_valid(x, pe)) {
			differ++;
		} else if (gte_valid(x, re)) {
			vmdk_put_le32(g->p + 4 * i, re);
			fallback++;
		}
	}
	free(g->r);
	g->r = NULL;
	if (!differ && !fallback)
		return;
	td_warn("vmdk: '%s': grain table %llu: %u entries differ from the redundant copy (the "
		"primary is used), %u invalid in the primary taken from the redundant copy%s",
		x->f->path, (unsigned long long)g->gti, differ, fallback,
		x->f->writable ? "; both copies are rewritten at the next writeback" : "");
	if (x->f->writable)
		vmc_mark_dirty(v, g);
}

static void load_done(struct td_fio *o, int err)
{
	struct vm *v = o->drv;
	struct vmgt *g = o->owner;

	td_fio_put(o);
	if (err && !g->load_err)
		g->load_err = err;
	if (--g->pending_loads)
		return;
	g->loading = false;
	if (g->load_err) {
		struct td_wait *w = g->waiters;

		g->waiters = NULL;
		td_err("vmdk: '%s': cannot read grain table %llu: %s", v->ext[g->ext].f->path,
		       (unsigned long long)g->gti, strerror(-g->load_err));
		entry_free(v, g);
		td_wait_wake_all(&w, -EIO);
		return;
	}
	reconcile(v, g);
	td_wait_wake_all(&g->waiters, 0);
	vmc_shrink(v);
}

static int load_copy(struct vm *v, struct vmgt *g, uint8_t *buf, uint32_t sect)
{
	struct vmext *x = &v->ext[g->ext];
	struct td_fio *o = td_fio_get(&v->fio, load_done, g);

	if (!o || td_fio_add(o, buf, x->h.gt_bytes) < 0) {
		if (o)
			td_fio_put(o);
		return -ENOMEM;
	}
	g->pending_loads++;
	vmio_read(o, x->f, (uint64_t)sect * VMDK_SECTOR);
	return 0;
}

int vmc_get(struct vm *v, struct vmext *x, uint64_t gti, struct td_wait *w, struct vmgt **out)
{
	struct vmcache *c = &v->cache;
	struct vmgt *g = lookup(c, x->idx, gti);

	if (g) {
		if (g->loading) {
			w->next = g->waiters;
			g->waiters = w;
			return -EAGAIN;
		}
		td_lru_touch(&c->lru, &g->lru);
		*out = g;
		return 0;
	}
	if (!x->gd[gti])
		return -ENOENT;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->ext = x->idx;
	g->gti = gti;
	g->p = calloc(1, x->h.gt_bytes);
	g->r = x->rgd && x->rgd[gti] ? calloc(1, x->h.gt_bytes) : NULL;
	if (!g->p || (x->rgd && x->rgd[gti] && !g->r)) {
		free(g->p);
		free(g->r);
		free(g);
		return -ENOMEM;
	}
	g->loading = true;
	g->hnext = c->hash[bucket(c, x->idx, gti)];
	c->hash[bucket(c, x->idx, gti)] = g;
	td_lru_push_head(&c->lru, &g->lru);
	c->used += x->h.gt_bytes + sizeof(*g);
	w->next = NULL;
	g->waiters = w;
	/* both reads are issued before either can complete (completions
	 * come from the loop), so pending_loads reaches its total first */
	if (load_copy(v, g, g->p, x->gd[gti]) < 0 ||
	    (g->r && load_copy(v, g, g->r, x->rgd[gti]) < 0)) {
		g->load_err = -ENOMEM;
		if (!g->pending_loads) {
			g->waiters = NULL;
			entry_free(v, g);
			return -ENOMEM;
		}
	}
	return -EAGAIN;
}
