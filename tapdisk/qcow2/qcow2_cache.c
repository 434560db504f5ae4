/* The metadata cache: whole L2 tables (of every image of the chain) or
 * refcount blocks (of the top image), keyed by (image, host offset),
 * least recently used first out, within a byte budget.
 *
 * A miss starts an asynchronous read and parks the caller; every caller
 * asking for the same table while it loads parks on the same entry. Dirty
 * entries, entries a request holds a pointer to across a wait (pinned)
 * and entries a writeback round is writing (busy) are never evicted;
 * when only such entries are left over budget, a writeback round is
 * started, which cleans them. So the cache may exceed its budget for the
 * length of one round, never more. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"

static unsigned bucket(const struct q2cache *c, uint32_t img, uint64_t off)
{
	uint64_t k = ((off >> 12) ^ ((uint64_t)img << 48)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(k >> 40) & (c->nbuckets - 1);
}

static struct q2cent *ent(struct td_lru_link *k)
{
	return td_lru_entry(k, struct q2cent, lru);
}

int q2c_init(struct q2cache *c, struct q2 *q, const char *what, uint64_t budget)
{
	memset(c, 0, sizeof(*c));
	c->q = q;
	c->what = what;
	c->budget = budget;
	c->nbuckets = td_cache_buckets(budget, 4096);
	c->hash = calloc(c->nbuckets, sizeof(*c->hash));
	return c->hash ? 0 : -ENOMEM;
}

static struct q2cent *lookup(struct q2cache *c, uint32_t img, uint64_t off)
{
	struct q2cent *e;

	for (e = c->hash[bucket(c, img, off)]; e; e = e->hnext)
		if (e->off == off && e->img == img)
			return e;
	return NULL;
}

static void entry_free(struct q2cache *c, struct q2cent *e)
{
	struct q2cent **pp = &c->hash[bucket(c, e->img, e->off)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	td_lru_unlink(&c->lru, &e->lru);
	q2c_clean(e);
	c->used -= e->len;
	td_buf_put(e->buf, e->len);
	free(e);
}

static struct q2cent *entry_new(struct q2cache *c, uint32_t img, uint64_t off)
{
	struct q2cent *e = calloc(1, sizeof(*e));
	unsigned b = bucket(c, img, off);

	if (!e)
		return NULL;
	e->len = (uint32_t)c->q->img[img]->h.cluster_size;
	e->buf = td_buf_get(e->len);
	if (!e->buf) {
		free(e);
		return NULL;
	}
	e->off = off;
	e->img = img;
	e->c = c;
	e->hnext = c->hash[b];
	c->hash[b] = e;
	td_lru_push_head(&c->lru, &e->lru);
	c->used += e->len;
	return e;
}

void q2c_destroy(struct q2cache *c)
{
	if (!c->hash)
		return;
	while (c->lru.head)
		entry_free(c, ent(c->lru.head));
	free(c->hash);
	c->hash = NULL;
}

void q2c_mark_dirty(struct q2cent *e)
{
	struct q2cache *c = e->c;

	if (e->dirty)
		return;
	e->dirty = true;
	e->dprev = NULL;
	e->dnext = c->dirty_head;
	if (c->dirty_head)
		c->dirty_head->dprev = e;
	c->dirty_head = e;
	c->ndirty++;
	q2_meta_dirtied(c->q);
}

void q2c_clean(struct q2cent *e)
{
	struct q2cache *c = e->c;

	if (!e->dirty)
		return;
	e->dirty = false;
	if (e->dprev)
		e->dprev->dnext = e->dnext;
	else
		c->dirty_head = e->dnext;
	if (e->dnext)
		e->dnext->dprev = e->dprev;
	e->dprev = e->dnext = NULL;
	c->ndirty--;
}

void q2c_pin(struct q2cent *e)
{
	e->pins++;
}

void q2c_unpin(struct q2cent *e)
{
	e->pins--;
}

void q2c_shrink(struct q2cache *c)
{
	struct q2cent *e = ent(c->lru.tail);
	bool stuck = false;

	/* never the most recently used: whoever just asked for it is about
	 * to use it */
	while (c->used > c->budget && e && &e->lru != c->lru.head) {
		struct q2cent *prev = ent(e->lru.prev);

		if (!e->loading && !e->dirty && !e->pins && !e->busy)
			entry_free(c, e);
		else if (e->dirty)
			stuck = true;
		e = prev;
	}
	if (c->used > c->budget && stuck)
		q2_meta_kick(c->q);
}

static void load_done(struct td_fio *o, int err)
{
	struct q2cent *e = o->owner;
	struct q2cache *c = e->c;
	struct td_wait *waiters = e->waiters;

	td_fio_put(o);
	e->loading = false;
	e->waiters = NULL;
	if (err) {
		td_err("qcow2: '%s': cannot read the %s table at %llu: %s", c->q->img[e->img]->path,
		       c->what, (unsigned long long)e->off, strerror(-err));
		entry_free(c, e);
		td_wait_wake_all(&waiters, -EIO);
		return;
	}
	td_lru_touch(&c->lru, &e->lru);
	q2c_shrink(c); /* e is the most recently used: it stays */
	td_wait_wake_all(&waiters, 0);
}

int q2c_get(struct q2cache *c, uint32_t img, uint64_t off, struct td_wait *w, struct q2cent **out)
{
	struct q2cent *e = lookup(c, img, off);
	struct td_fio *o;

	if (e && !e->loading) {
		td_lru_touch(&c->lru, &e->lru);
		*out = e;
		return 0;
	}
	if (!e) {
		e = entry_new(c, img, off);
		o = e ? td_fio_get(&c->q->fio, load_done, e) : NULL;
		if (!o || td_fio_add(o, e->buf, e->len) < 0) {
			if (o)
				td_fio_put(o);
			if (e)
				entry_free(c, e);
			return -ENOMEM;
		}
		e->loading = true;
		q2io_read(o, img, off);
		q2c_shrink(c);
	}
	w->next = e->waiters;
	e->waiters = w;
	return -EAGAIN;
}

struct q2cent *q2c_create(struct q2cache *c, uint32_t img, uint64_t off)
{
	struct q2cent *e;

	if (lookup(c, img, off)) {
		td_err("qcow2: '%s': new %s table at %llu is already cached: image is corrupt",
		       c->q->img[img]->path, c->what, (unsigned long long)off);
		return NULL;
	}
	e = entry_new(c, img, off);
	if (!e)
		return NULL;
	memset(e->buf, 0, e->len);
	e->fresh = true;
	q2c_mark_dirty(e);
	q2c_shrink(c);
	return e;
}
