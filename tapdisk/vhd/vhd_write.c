/* Writes and write-zeroes: block claims and allocation.
 *
 * A request is cut into pieces, one per block of the top image (a fixed
 * disk: pieces of at most 2 MiB), run in parallel; it completes when the
 * last piece does. A piece is one of (docs/FORMAT-vhd.md, "How the vhd
 * driver orders metadata"):
 *
 *  - plain: the sectors' bits are set (or the disk is fixed): the data is
 *    written in place (FUA: RWF_DSYNC). If the block's BAT entry or bitmap
 *    is still only in memory, the piece joins a round before completing,
 *    so nothing is acknowledged that a crash could make unreachable;
 *  - bits to set (an existing block whose bitmap lacks some of them): the
 *    data is written in place, then the bits are set in the cached bitmap
 *    and the piece joins a round;
 *  - new block: the piece claims the block (others wait for it), gets a
 *    place from v_alloc_block, writes its bitmap (all ones for a dynamic
 *    disk, the written sectors for a differencing one) and its data into
 *    space nothing points to, then sets the BAT entry in memory, releases
 *    the claim and joins a round.
 *
 * Write-zeroes is a write from a buffer of zeros, except on blocks of a
 * dynamic disk that are not allocated (they read as zeros already). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vhd/vhd_int.h"

#define FIXED_PIECE (2ull << 20)

struct vwr;

struct vpiece {
	struct vwr *w;
	uint32_t blk;
	uint64_t g;    /* guest offset */
	uint64_t in;   /* offset inside the block */
	uint64_t len;  /* bytes */
	uint64_t boff; /* offset in the request's buffer */
	uint64_t host; /* the block's offset (bitmap first) when allocating */
	uint8_t *bm;   /* a new block's bitmap */
	struct vbm *e; /* a pinned bitmap whose bits we set */
	struct vclaim claim;
	bool claimed;
	bool round; /* join a round before completing */
	unsigned ios;
	int err;
	struct td_wait wait;
};

struct vwr {
	struct vhd *v;
	struct td_req *req;
	bool zeroes;
	bool fua;
	unsigned pending;
	int err;
	struct iovec *ziov; /* write-zeroes: the source, zeros repeated */
	int ziovcnt;
	unsigned npieces;
	struct vpiece *pieces;
	struct td_defer defer;
};

size_t v_write_state_size(void)
{
	return sizeof(struct vwr);
}

/* ---- claims ----------------------------------------------------------------------- */

static unsigned cbucket(uint32_t blk)
{
	return (blk * 2654435761u) >> 24 & (VHD_CLAIM_BUCKETS - 1);
}

static struct vclaim *claim_find(struct vhd *v, uint32_t blk)
{
	for (struct vclaim *c = v->claims[cbucket(blk)]; c; c = c->hnext)
		if (c->blk == blk)
			return c;
	return NULL;
}

static void claim_take(struct vhd *v, struct vpiece *p)
{
	unsigned b = cbucket(p->blk);

	p->claim.blk = p->blk;
	p->claim.waiters = NULL;
	p->claim.hnext = v->claims[b];
	v->claims[b] = &p->claim;
	p->claimed = true;
}

static void claim_release(struct vhd *v, struct vpiece *p)
{
	struct vclaim **pp = &v->claims[cbucket(p->blk)];

	if (!p->claimed)
		return;
	while (*pp && *pp != &p->claim)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->claim.hnext;
	p->claimed = false;
	td_wait_wake_all(&p->claim.waiters, 0);
}

/* ---- request completion -------------------------------------------------------------- */

static void wr_finish(struct vwr *w)
{
	struct vhd *v = w->v;
	struct td_req *req = w->req;
	int err = w->err;

	free(w->pieces);
	free(w->ziov);
	td_pool_put(&v->wr_pool, w);
	td_req_complete(req, err);
}

static void wr_finish_deferred(void *opaque)
{
	wr_finish(opaque);
}

static void wr_put(struct vwr *w, bool deferred)
{
	if (--w->pending)
		return;
	if (deferred) {
		td_defer_init(&w->defer, wr_finish_deferred, w);
		td_loop_defer(w->v->ctx->loop, &w->defer);
		return;
	}
	wr_finish(w);
}

static void pc_complete(struct td_wait *wt)
{
	struct vpiece *p = (struct vpiece *)((uint8_t *)wt - offsetof(struct vpiece, wait));
	struct vwr *w = p->w;

	if (wt->err && !p->err)
		p->err = -EIO;
	if (p->err && !w->err)
		w->err = p->err;
	wr_put(w, false);
}

/* The piece's I/O is done (err) */
static void pc_end(struct vpiece *p, int err)
{
	struct vhd *v = p->w->v;

	if (err && !p->err)
		p->err = err;
	if (!p->err && p->round) {
		p->wait.cb = pc_complete;
		v_meta_join(v, &p->wait, p->w->fua);
		return;
	}
	p->wait.err = 0;
	pc_complete(&p->wait);
}

/* ---- I/O -------------------------------------------------------------------------------- */

static int add_source(struct vpiece *p, struct td_fio *o)
{
	struct vwr *w = p->w;

	if (w->zeroes)
		return td_fio_add_slice(o, w->ziov, w->ziovcnt, 0, p->len);
	return td_fio_add_slice(o, w->req->iov, w->req->iovcnt, p->boff, p->len);
}

static void plain_done(struct td_fio *o, int err)
{
	struct vpiece *p = o->owner;
	struct vhd *v = o->drv;

	td_fio_put(o);
	if (p->e) {
		if (!err) {
			vhd_bitmap_set(p->e->buf, p->in / VHD_SECTOR, p->len / VHD_SECTOR);
			vbm_mark_dirty(v, p->e);
			p->round = true;
		}
		vbm_unpin(v, p->e);
		p->e = NULL;
	}
	if (err)
		v_log_bad(v, 0, "write of %llu bytes at offset %llu failed: %s",
			  (unsigned long long)p->len, (unsigned long long)p->g, strerror(-err));
	pc_end(p, err ? -EIO : 0);
}

static void plain_write(struct vpiece *p, uint64_t host, bool dsync)
{
	struct td_fio *o = td_fio_get(&p->w->v->fio, plain_done, p);
	int rc;

	if (!o) {
		pc_end(p, -ENOMEM);
		return;
	}
	rc = add_source(p, o);
	if (rc < 0) {
		td_fio_put(o);
		pc_end(p, rc);
		return;
	}
	vio_write(o, host, dsync);
}

static void alloc_io_done(struct td_fio *o, int err)
{
	struct vpiece *p = o->owner;
	struct vhd *v = o->drv;

	td_fio_put(o);
	if (err && !p->err)
		p->err = err;
	if (--p->ios)
		return;
	if (p->err) {
		v_log_bad(v, 0, "write of a new block at offset %llu failed: %s",
			  (unsigned long long)p->host, strerror(-p->err));
		td_buf_put(p->bm, v->img[0]->h.bitmap_bytes);
		p->bm = NULL;
		claim_release(v, p); /* the space leaks; nothing points to it */
		pc_end(p, -EIO);
		return;
	}
	v_bat_set(v, p->blk, p->host);
	vbm_insert(v, 0, p->blk, p->bm);
	p->bm = NULL;
	p->round = true;
	claim_release(v, p);
	pc_end(p, 0);
}

static void pc_alloc(struct vpiece *p);

static void pc_alloc_resume(struct td_wait *wt)
{
	struct vpiece *p = (struct vpiece *)((uint8_t *)wt - offsetof(struct vpiece, wait));

	if (wt->err) {
		claim_release(p->w->v, p);
		pc_end(p, wt->err);
		return;
	}
	pc_alloc(p);
}

static void pc_alloc(struct vpiece *p)
{
	struct vhd *v = p->w->v;
	struct vimg *top = v->img[0];
	uint32_t bmb = top->h.bitmap_bytes;
	struct td_fio *o1, *o2 = NULL;
	int rc;

	p->wait.cb = pc_alloc_resume;
	rc = v_alloc_block(v, &p->wait, &p->host);
	if (rc == -EAGAIN)
		return;
	if (rc < 0) {
		claim_release(v, p);
		pc_end(p, rc == -ENOSPC ? -ENOSPC : rc);
		return;
	}
	p->bm = td_buf_get(bmb);
	if (!p->bm) {
		claim_release(v, p);
		pc_end(p, -ENOMEM);
		return;
	}
	if (top->diff) {
		memset(p->bm, 0, bmb);
		vhd_bitmap_set(p->bm, p->in / VHD_SECTOR, p->len / VHD_SECTOR);
	} else {
		memset(p->bm, 0xff, bmb);
	}
	o1 = td_fio_get(&v->fio, alloc_io_done, p);
	if (o1 && p->in)
		o2 = td_fio_get(&v->fio, alloc_io_done, p);
	rc = !o1 || (p->in && !o2) ? -ENOMEM : 0;
	if (!rc)
		rc = td_fio_add(o1, p->bm, bmb);
	if (!rc)
		rc = add_source(p, p->in ? o2 : o1);
	if (rc < 0) {
		if (o1)
			td_fio_put(o1);
		if (o2)
			td_fio_put(o2);
		td_buf_put(p->bm, bmb);
		p->bm = NULL;
		claim_release(v, p);
		pc_end(p, rc);
		return;
	}
	p->ios = o2 ? 2 : 1;
	vio_write(o1, p->host, false);
	if (o2)
		vio_write(o2, p->host + bmb + p->in, false);
}

static void pc_start(struct vpiece *p);

static void pc_resume(struct td_wait *wt)
{
	struct vpiece *p = (struct vpiece *)((uint8_t *)wt - offsetof(struct vpiece, wait));

	if (wt->err) {
		pc_end(p, wt->err == -ENOMEM ? -ENOMEM : -EIO);
		return;
	}
	pc_start(p);
}

static void pc_start(struct vpiece *p)
{
	struct vwr *w = p->w;
	struct vhd *v = w->v;
	struct vimg *top = v->img[0];
	struct vclaim *c;
	struct vbm *e;
	uint32_t ent;
	uint64_t host;
	int rc;

	if (top->fixed) {
		plain_write(p, p->g, w->fua);
		return;
	}
	ent = v_bat(top, p->blk);
	if (ent == VHD_BAT_UNUSED) {
		if (w->zeroes && !top->diff) {
			pc_end(p, 0); /* reads as zeros already */
			return;
		}
		c = claim_find(v, p->blk);
		if (c) {
			p->wait.cb = pc_resume;
			p->wait.next = c->waiters;
			c->waiters = &p->wait;
			return;
		}
		claim_take(v, p);
		pc_alloc(p);
		return;
	}
	host = (uint64_t)ent * VHD_SECTOR + top->h.bitmap_bytes + p->in;
	p->wait.cb = pc_resume;
	rc = vbm_get(v, 0, p->blk, &p->wait, &e);
	if (rc == -EAGAIN)
		return;
	if (rc < 0) {
		pc_end(p, rc);
		return;
	}
	p->round = v_bat_unsettled(v, p->blk);
	if (!e || vhd_bitmap_all(e->buf, p->in / VHD_SECTOR, p->len / VHD_SECTOR)) {
		if (e && (e->dirty || e->busy))
			p->round = true;
		plain_write(p, host, w->fua && !p->round);
		return;
	}
	vbm_pin(e);
	p->e = e;
	plain_write(p, host, false);
}

/* ---- entry points ---------------------------------------------------------------------- */

static int zero_iov(struct vwr *w, uint64_t len)
{
	struct vhd *v = w->v;
	uint64_t n = (len + VHD_ZERO_BUF - 1) / VHD_ZERO_BUF;

	w->ziov = calloc(n, sizeof(*w->ziov));
	if (!w->ziov)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		w->ziov[i].iov_base = v->zeros;
		w->ziov[i].iov_len = VHD_ZERO_BUF;
	}
	w->ziovcnt = (int)n;
	return 0;
}

static void submit(struct td_layer *l, struct td_req *req, bool zeroes)
{
	struct vhd *v = l->priv;
	struct vimg *top = v->img[0];
	uint64_t step = top->fixed ? FIXED_PIECE : top->h.block_size, pos, maxp = 0;
	struct vwr *w;
	unsigned n = 0;

	if (!v->writable) {
		td_req_complete_later(v->ctx, req, -EROFS);
		return;
	}
	w = td_pool_get(&v->wr_pool);
	if (!w) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	memset(w, 0, sizeof(*w));
	w->v = v;
	w->req = req;
	w->zeroes = zeroes;
	w->fua = (req->flags & TD_REQ_FUA) != 0;
	for (pos = req->off; pos < req->off + req->len; n++)
		pos = (pos / step + 1) * step;
	w->pieces = calloc(n ? n : 1, sizeof(*w->pieces));
	if (!w->pieces) {
		w->pending = 1;
		w->err = -ENOMEM;
		wr_put(w, true);
		return;
	}
	w->npieces = n;
	pos = req->off;
	for (unsigned i = 0; i < n; i++) {
		struct vpiece *p = &w->pieces[i];
		uint64_t end = (pos / step + 1) * step;

		if (end > req->off + req->len)
			end = req->off + req->len;
		p->w = w;
		p->g = pos;
		p->in = top->fixed ? 0 : pos & (step - 1);
		p->blk = top->fixed ? 0 : (uint32_t)(pos / step);
		p->len = end - pos;
		p->boff = pos - req->off;
		if (p->len > maxp)
			maxp = p->len;
		pos = end;
	}
	if (zeroes && zero_iov(w, maxp) < 0) {
		w->pending = 1;
		w->err = -ENOMEM;
		wr_put(w, true);
		return;
	}
	w->pending = 1; /* held until every piece has started */
	for (unsigned i = 0; i < n; i++) {
		w->pending++;
		pc_start(&w->pieces[i]);
	}
	wr_put(w, true);
}

void v_write(struct td_layer *l, struct td_req *req)
{
	submit(l, req, false);
}

void v_write_zeroes(struct td_layer *l, struct td_req *req)
{
	submit(l, req, true);
}
