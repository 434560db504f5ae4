/* The sector-bitmap cache.
 *
 * Most blocks have an all-ones bitmap (QEMU's and our own dynamic
 * blocks): the first time such a block is met its bitmap is read, found
 * full, and from then on one bit per block (vimg.full) says so; nothing
 * stays in the cache. Partial bitmaps (differencing disks) are kept in an
 * LRU cache of bounded size. A load is an asynchronous read; every request
 * needing the same bitmap parks on the same load. Entries being loaded,
 * dirty, in a round's snapshot or pinned by a write are never evicted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vhd/vhd_int.h"

static unsigned bucket(uint32_t img, uint32_t blk)
{
	return (unsigned)(((uint64_t)blk * 0x9e3779b97f4a7c15ull + img) >> 40) &
	       (VHD_BM_BUCKETS - 1);
}

static struct vbm *find(struct vhd *v, uint32_t img, uint32_t blk)
{
	for (struct vbm *e = v->bmc.hash[bucket(img, blk)]; e; e = e->hnext)
		if (e->img == img && e->blk == blk)
			return e;
	return NULL;
}

static struct vbm *bm_of(struct td_lru_link *k)
{
	return td_lru_entry(k, struct vbm, lru);
}

static size_t bm_len(struct vhd *v, uint32_t img)
{
	return v->img[img]->h.bitmap_bytes;
}

static void entry_free(struct vhd *v, struct vbm *e)
{
	struct vbm **pp = &v->bmc.hash[bucket(e->img, e->blk)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	td_lru_unlink(&v->bmc.lru, &e->lru);
	v->bmc.used -= bm_len(v, e->img);
	td_buf_put(e->buf, bm_len(v, e->img));
	free(e);
}

static bool evictable(const struct vbm *e)
{
	return !e->loading && !e->dirty && !e->busy && !e->pins;
}

static void shrink(struct vhd *v)
{
	struct vbm *e = bm_of(v->bmc.lru.tail);

	while (e && v->bmc.used > v->bmc.budget) {
		struct vbm *prev = bm_of(e->lru.prev);

		if (evictable(e))
			entry_free(v, e);
		e = prev;
	}
}

static struct vbm *entry_new(struct vhd *v, uint32_t img, uint32_t blk)
{
	struct vbm *e = calloc(1, sizeof(*e));
	unsigned b = bucket(img, blk);

	if (!e)
		return NULL;
	e->buf = td_buf_get(bm_len(v, img));
	if (!e->buf) {
		free(e);
		return NULL;
	}
	e->img = img;
	e->blk = blk;
	e->hnext = v->bmc.hash[b];
	v->bmc.hash[b] = e;
	td_lru_push_head(&v->bmc.lru, &e->lru);
	v->bmc.used += bm_len(v, img);
	return e;
}

static void load_done(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;
	struct vbm *e = o->owner;
	struct vimg *im = v->img[e->img];
	struct td_wait *waiters = e->waiters;

	td_fio_put(o);
	e->load = NULL;
	e->loading = false;
	e->waiters = NULL;
	if (err) {
		v_log_bad(v, e->img, "cannot read the bitmap of block %u: %s", e->blk,
			  strerror(-err));
		entry_free(v, e);
	} else if (vhd_bitmap_all(e->buf, 0, im->h.block_size / VHD_SECTOR) && !e->pins) {
		/* the common case: remember one bit, drop the buffer */
		v_set_full(im, e->blk);
		entry_free(v, e);
	}
	shrink(v);
	td_wait_wake_all(&waiters, err);
}

int vbm_get(struct vhd *v, uint32_t img, uint32_t blk, struct td_wait *w, struct vbm **out)
{
	struct vimg *im = v->img[img];
	struct vbm *e;
	struct td_fio *o;
	uint32_t ent;

	*out = NULL;
	if (v_full(im, blk))
		return 0;
	e = find(v, img, blk);
	if (e) {
		if (e->loading) {
			w->next = e->waiters;
			e->waiters = w;
			return -EAGAIN;
		}
		td_lru_touch(&v->bmc.lru, &e->lru);
		*out = e;
		return 0;
	}
	ent = v_bat(im, blk);
	if (ent == VHD_BAT_UNUSED)
		return -EIO; /* callers ask only for allocated blocks */
	e = entry_new(v, img, blk);
	if (!e)
		return -ENOMEM;
	o = td_fio_get(&v->fio, load_done, e);
	if (!o || td_fio_add(o, e->buf, bm_len(v, img)) < 0) {
		if (o)
			td_fio_put(o);
		entry_free(v, e);
		return -ENOMEM;
	}
	e->loading = true;
	e->load = o;
	w->next = NULL;
	e->waiters = w;
	vio_read(o, img, (uint64_t)ent * VHD_SECTOR);
	return -EAGAIN;
}

void vbm_insert(struct vhd *v, uint32_t img, uint32_t blk, uint8_t *buf)
{
	struct vimg *im = v->img[img];
	struct vbm *e = find(v, img, blk);

	if (vhd_bitmap_all(buf, 0, im->h.block_size / VHD_SECTOR) || e) {
		if (!e)
			v_set_full(im, blk);
		td_buf_put(buf, bm_len(v, img));
		return;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		td_buf_put(buf, bm_len(v, img)); /* it is on disk: a later load reads it */
		return;
	}
	e->buf = buf;
	e->img = img;
	e->blk = blk;
	e->hnext = v->bmc.hash[bucket(img, blk)];
	v->bmc.hash[bucket(img, blk)] = e;
	td_lru_push_head(&v->bmc.lru, &e->lru);
	v->bmc.used += bm_len(v, img);
	shrink(v);
}

void vbm_pin(struct vbm *e)
{
	e->pins++;
}

void vbm_unpin(struct vhd *v, struct vbm *e)
{
	e->pins--;
	if (!e->pins)
		shrink(v);
}

void vbm_mark_dirty(struct vhd *v, struct vbm *e)
{
	if (e->dirty)
		return;
	e->dirty = true;
	e->dprev = NULL;
	e->dnext = v->bmc.dirty_head;
	if (v->bmc.dirty_head)
		v->bmc.dirty_head->dprev = e;
	v->bmc.dirty_head = e;
	v->bmc.ndirty++;
}

void vbm_take_dirty(struct vhd *v, struct vbm *e)
{
	if (!e->dirty)
		return;
	if (e->dprev)
		e->dprev->dnext = e->dnext;
	else
		v->bmc.dirty_head = e->dnext;
	if (e->dnext)
		e->dnext->dprev = e->dprev;
	e->dprev = e->dnext = NULL;
	e->dirty = false;
	v->bmc.ndirty--;
}

void vbm_unbusy(struct vhd *v, struct vbm *e)
{
	e->busy--;
	if (!e->busy)
		shrink(v);
}

void vbm_cache_free(struct vhd *v)
{
	while (v->bmc.lru.head) {
		struct vbm *e = bm_of(v->bmc.lru.head);

		entry_free(v, e); /* nothing is in flight at close */
	}
	v->bmc.dirty_head = NULL;
	v->bmc.ndirty = 0;
}
