/* Writes and write-zeroes.
 *
 * A write is split by extent and, in sparse extents, by grain. A flat
 * piece is written in place. A sparse piece whose grain is allocated is
 * written in place; one whose grain is not (or is a zeroed grain) claims
 * the grain (a second request wanting the same grain parks until the
 * first is done, and then finds it allocated), gets a fresh grain at the
 * end of the file, and writes only its own bytes there: the rest of a
 * fresh grain is a hole and reads as zeros. Pieces that are neighbours in
 * the same file go out as one I/O, so a sequential write of fresh grains
 * is one sequential write. Only when the data is written are the GTEs set
 * (in memory; vmdk_meta.c says when they reach the disk). Claims are
 * taken in ascending order, so waiting on one cannot deadlock.
 *
 * Write-zeroes is a write of zeros from a shared buffer, 32 MiB at a
 * time, that skips grains reading as zeros already and ZERO extents. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/vmdk/vmdk_int.h"

enum wc_kind { WC_PENDING, WC_FLAT, WC_INPLACE, WC_ALLOC, WC_SKIP };

struct vmwc {
	struct vmclaim claim;
	struct vmext *x;
	uint64_t xo;	 /* the piece's offset in its extent */
	uint64_t n;	 /* bytes */
	uint64_t boff;	 /* offset in the request's data */
	uint64_t gstart; /* offset in its grain */
	uint64_t host;	 /* where the piece goes in the file */
	uint8_t kind;
	bool claimed;
	struct vmgt *gt; /* pinned while we may set its entry */
};

#define WC_INLINE 16
#define ZCHUNK (32ull << 20)

struct vmwr {
	struct vm *v;
	struct td_req *req;
	bool zero_write;
	bool fua_direct;
	const struct iovec *iov;
	int iovcnt;
	uint64_t off, len; /* this pass (write-zeroes: one chunk) */
	uint64_t zend;	   /* write-zeroes: the end of the whole request */
	struct vmwc *wc;
	unsigned nwc, cap, cur;
	unsigned pending;
	int err;
	struct td_wait w, syncw;
	struct td_defer defer;
	struct iovec ziov[ZCHUNK / VM_ZERO_LEN];
	struct vmwc wc_in[WC_INLINE];
};

size_t vm_write_state_size(void)
{
	return sizeof(struct vmwr);
}

/* ---- claims ---------------------------------------------------------------------- */

static struct vmclaim **claim_slot(struct vm *v, uint64_t key)
{
	return &v->claims[(key * 0x9e3779b97f4a7c15ull >> 40) & (VM_CLAIM_BUCKETS - 1)];
}

static void claim_release(struct vm *v, struct vmclaim *c)
{
	struct vmclaim **pp = claim_slot(v, c->key);

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	td_wait_wake_all(&c->waiters, 0);
}

static int claim_or_wait(struct vm *v, struct vmwc *c, struct td_wait *w)
{
	struct vmclaim **s = claim_slot(v, c->claim.key), *o;

	if (c->claimed)
		return 0;
	for (o = *s; o; o = o->hnext) {
		if (o->key == c->claim.key) {
			w->next = o->waiters;
			o->waiters = w;
			return -EAGAIN;
		}
	}
	c->claim.waiters = NULL;
	c->claim.hnext = *s;
	*s = &c->claim;
	c->claimed = true;
	return 0;
}

/* ---- the state machine --------------------------------------------------------------- */

static void wr_release(struct vmwr *wr)
{
	struct vm *v = wr->v;
	unsigned i;

	for (i = 0; i < wr->nwc; i++) {
		if (wr->wc[i].gt)
			vmc_unpin(v, wr->wc[i].gt);
		wr->wc[i].gt = NULL;
	}
	for (i = 0; i < wr->nwc; i++) {
		if (wr->wc[i].claimed)
			claim_release(v, &wr->wc[i].claim);
		wr->wc[i].claimed = false;
	}
}

static void wr_free(struct vmwr *wr)
{
	if (wr->wc != wr->wc_in)
		free(wr->wc);
	td_pool_put(&wr->v->wr_pool, wr);
}

static int wr_pass(struct vmwr *wr);

static void wr_complete(struct vmwr *wr, int err)
{
	struct td_req *req = wr->req;

	if (!err && wr->zero_write && wr->off + wr->len < wr->zend) {
		/* write-zeroes: the next chunk */
		wr->off += wr->len;
		err = wr_pass(wr);
		if (!err)
			return;
	}
	wr_free(wr);
	td_req_complete(req, err);
}

static void wr_fail_deferred(void *opaque)
{
	struct vmwr *wr = opaque;
	struct td_req *req = wr->req;
	int err = wr->err;

	wr_free(wr);
	td_req_complete(req, err);
}

/* Ends the request with an error from the loop (never from submit's stack). */
static void wr_fail(struct vmwr *wr, int err)
{
	wr_release(wr);
	wr->err = err;
	td_defer_init(&wr->defer, wr_fail_deferred, wr);
	td_loop_defer(wr->v->ctx->loop, &wr->defer);
}

static void wr_synced(struct td_wait *w)
{
	struct vmwr *wr = (struct vmwr *)((uint8_t *)w - offsetof(struct vmwr, syncw));

	wr_complete(wr, w->err);
}

/* Decides how a sparse piece is written; -EAGAIN when parked (called again). */
static int resolve_sparse(struct vmwr *wr, struct vmwc *c)
{
	struct vm *v = wr->v;
	struct vmext *x = c->x;
	uint64_t gti = c->xo / x->h.gt_cover, gi = (c->xo % x->h.gt_cover) / x->h.grain_bytes;
	uint64_t host = 0;
	enum vmdk_gte_kind k;
	int rc;

	if (!c->gt) {
		struct vmgt *g;

		rc = vmc_get(v, x, gti, &wr->w, &g);
		if (rc == -ENOENT) {
			vm_log_bad(v,
				   "write at guest offset %llu: grain table %llu of '%s' is not "
				   "allocated (we do not allocate grain tables)",
				   (unsigned long long)(x->start + c->xo), (unsigned long long)gti,
				   x->f->path);
			return -EIO;
		}
		if (rc < 0)
			return rc;
		vmc_pin(g);
		c->gt = g;
	}
	k = vmdk_gte_decode(&x->h, vm_gte(c->gt, gi), x->f->size, &host);
	if (k == VMDK_GTE_DATA && !vm_clear_of_gts(x, host, x->h.grain_bytes))
		k = VMDK_GTE_INVALID;
	if (wr->zero_write && (k == VMDK_GTE_UNALLOC || k == VMDK_GTE_ZERO)) {
		c->kind = WC_SKIP;
		return 0;
	}
	switch (k) {
	case VMDK_GTE_DATA:
		c->kind = WC_INPLACE;
		c->host = host + c->gstart;
		return 0;
	case VMDK_GTE_INVALID:
		vm_log_bad(v,
			   "grain table entry for guest offset %llu is 0x%x: outside the file or "
			   "on metadata, refusing to write there",
			   (unsigned long long)(x->start + c->xo), vm_gte(c->gt, gi));
		return -EIO;
	default:
		break;
	}
	rc = claim_or_wait(v, c, &wr->w);
	if (rc < 0)
		return rc;
	rc = vm_alloc_grain(v, x, &host);
	if (rc < 0)
		return rc;
	c->kind = WC_ALLOC;
	c->host = host + c->gstart;
	return 0;
}

static void commit(struct vmwr *wr);

static void commit_deferred(void *opaque)
{
	commit(opaque);
}

static void wr_io_done(struct td_fio *o, int err)
{
	struct vmwr *wr = o->owner;

	if (err && !wr->err) {
		vm_log_bad(wr->v, "write of %llu bytes at %llu of '%s' failed: %s",
			   (unsigned long long)o->len, (unsigned long long)o->io.off,
			   vmio_file(o)->path, strerror(-err));
		wr->err = err == -ENOSPC ? err : -EIO;
	}
	if (!err) {
		vmio_file(o)->dirty = true;
		if (o->io.off + o->len > vmio_file(o)->size)
			vmio_file(o)->size = o->io.off + o->len; /* a flat file grew */
		if (o->io.off + o->len > vmio_file(o)->phys)
			vmio_file(o)->phys = o->io.off + o->len;
	}
	td_fio_put(o);
	if (--wr->pending == 0)
		commit(wr);
}

/* A FUA write whose pieces all go in place, to grains whose GTEs are
 * durable already, needs only its own data durable: RWF_DSYNC. */
static bool fua_direct_ok(const struct vmwr *wr)
{
	if (!(wr->req->flags & TD_REQ_FUA))
		return false;
	for (unsigned i = 0; i < wr->nwc; i++) {
		const struct vmwc *c = &wr->wc[i];

		if (c->kind == WC_SKIP || c->kind == WC_FLAT)
			continue;
		if (c->kind != WC_INPLACE || c->gt->dirty || c->gt->busy)
			return false;
	}
	return true;
}

static void wr_submit(struct vmwr *wr, struct td_fio *o, struct vmfile *f, uint64_t host)
{
	wr->pending++;
	vmio_write(o, f, host, wr->fua_direct);
}

/* Writes every piece, merging neighbours in one file into one I/O. */
static void write_phase(struct vmwr *wr)
{
	struct vm *v = wr->v;
	struct td_fio *o = NULL;
	struct vmfile *of = NULL;
	uint64_t o_host = 0;

	wr->pending = 1;
	wr->fua_direct = fua_direct_ok(wr);
	for (unsigned i = 0; i < wr->nwc; i++) {
		struct vmwc *c = &wr->wc[i];

		if (c->kind == WC_SKIP)
			continue;
		if (o && (of != c->x->f || o_host + o->len != c->host || td_fio_full(o))) {
			wr_submit(wr, o, of, o_host);
			o = NULL;
		}
		if (!o) {
			o = td_fio_get(&v->fio, wr_io_done, wr);
			if (!o) {
				wr->err = -ENOMEM;
				break;
			}
			of = c->x->f;
			o_host = c->host;
		}
		if (td_fio_add_slice(o, wr->iov, wr->iovcnt, c->boff, c->n) < 0) {
			wr->err = -ENOMEM;
			td_fio_put(o);
			o = NULL;
			break;
		}
	}
	if (o)
		wr_submit(wr, o, of, o_host);
	if (--wr->pending == 0) {
		/* nothing was submitted: finish from the loop */
		td_defer_init(&wr->defer, commit_deferred, wr);
		td_loop_defer(v->ctx->loop, &wr->defer);
	}
}

/* The data is written: point the GTEs at the new grains. */
static void commit(struct vmwr *wr)
{
	struct vm *v = wr->v;

	if (wr->err) {
		int err = wr->err;

		wr_release(wr);
		wr->zend = 0; /* no further chunk */
		wr_complete(wr, err);
		return;
	}
	bool allocated = false;

	for (unsigned i = 0; i < wr->nwc; i++) {
		struct vmwc *c = &wr->wc[i];
		struct vmext *x = c->x;
		uint64_t gi;

		if (c->kind != WC_ALLOC)
			continue;
		gi = (c->xo % x->h.gt_cover) / x->h.grain_bytes;
		vmdk_put_le32(c->gt->p + 4 * gi, (uint32_t)((c->host - c->gstart) / VMDK_SECTOR));
		vmc_mark_dirty(v, c->gt);
		allocated = true;
	}
	wr_release(wr);
	/* A write that allocated a grain is acknowledged only once its GTE
	 * is durable in both copies (and its data before it): a round. */
	if (allocated || ((wr->req->flags & TD_REQ_FUA) && !wr->fua_direct)) {
		wr->syncw.cb = wr_synced;
		vm_meta_sync(v, &wr->syncw);
		return;
	}
	wr_complete(wr, 0);
}

static void wr_resolve(struct vmwr *wr)
{
	while (wr->cur < wr->nwc) {
		struct vmwc *c = &wr->wc[wr->cur];
		int rc = c->kind == WC_PENDING ? resolve_sparse(wr, c) : 0;

		if (rc == -EAGAIN)
			return; /* wr_resume continues */
		if (rc < 0) {
			wr_fail(wr, rc);
			return;
		}
		wr->cur++;
	}
	write_phase(wr);
}

static void wr_resume(struct td_wait *w)
{
	struct vmwr *wr = (struct vmwr *)((uint8_t *)w - offsetof(struct vmwr, w));

	if (w->err) {
		wr_fail(wr, w->err);
		return;
	}
	wr_resolve(wr);
}

static int add_piece(struct vmwr *wr, struct vmext *x, uint64_t xo, uint64_t n, uint64_t boff,
		     uint8_t kind)
{
	struct vmwc *c;

	if (wr->nwc == wr->cap) {
		unsigned cap = wr->cap * 2;
		struct vmwc *nw = malloc(cap * sizeof(*nw));

		if (!nw)
			return -ENOMEM;
		memcpy(nw, wr->wc, wr->nwc * sizeof(*nw));
		if (wr->wc != wr->wc_in)
			free(wr->wc);
		wr->wc = nw;
		wr->cap = cap;
	}
	c = &wr->wc[wr->nwc++];
	memset(c, 0, sizeof(*c));
	c->x = x;
	c->xo = xo;
	c->n = n;
	c->boff = boff;
	c->kind = kind;
	if (kind == WC_FLAT)
		c->host = x->flat_off + xo;
	if (x->type == VMDK_EXT_SPARSE) {
		c->gstart = xo % x->h.grain_bytes;
		c->claim.key = (uint64_t)x->idx << 40 | xo / x->h.grain_bytes;
	}
	return 0;
}

/* Splits [wr->off, +len) into pieces and starts resolving them. 0, or
 * -errno without anything started. */
static int wr_pass(struct vmwr *wr)
{
	struct vm *v = wr->v;
	uint64_t pos, end;

	if (wr->zero_write) {
		uint64_t left = wr->zend - wr->off;

		wr->len = left < ZCHUNK ? left : ZCHUNK;
		for (unsigned i = 0; i < ZCHUNK / VM_ZERO_LEN; i++) {
			wr->ziov[i].iov_base = v->zeros;
			wr->ziov[i].iov_len = VM_ZERO_LEN;
		}
		wr->iov = wr->ziov;
		wr->iovcnt = (int)(ZCHUNK / VM_ZERO_LEN);
	}
	if (wr->wc != wr->wc_in)
		free(wr->wc);
	wr->wc = wr->wc_in;
	wr->cap = WC_INLINE;
	wr->nwc = wr->cur = 0;
	wr->err = 0;
	pos = wr->off;
	end = wr->off + wr->len;
	while (pos < end) {
		struct vmext *x = vm_ext_at(v, pos);
		uint64_t xo = pos - x->start;
		uint64_t n = (x->start + x->len < end ? x->start + x->len : end) - pos;
		int rc = 0;

		if (x->type == VMDK_EXT_ZERO && wr->zero_write) {
			pos += n;
			continue;
		}
		if (x->type == VMDK_EXT_ZERO || x->access != VMDK_ACC_RW) {
			vm_log_bad(v, "write at guest offset %llu: extent %u is %s",
				   (unsigned long long)pos, x->idx,
				   x->type == VMDK_EXT_ZERO	  ? "a ZERO extent"
				   : x->access == VMDK_ACC_RDONLY ? "RDONLY"
								  : "NOACCESS");
			return -EIO;
		}
		if (x->type == VMDK_EXT_FLAT) {
			rc = add_piece(wr, x, xo, n, pos - wr->off, WC_FLAT);
			pos += n;
		} else {
			uint64_t g = x->h.grain_bytes - xo % x->h.grain_bytes;

			if (n > g)
				n = g;
			rc = add_piece(wr, x, xo, n, pos - wr->off, WC_PENDING);
			pos += n;
		}
		if (rc < 0)
			return rc;
	}
	wr->w.cb = wr_resume;
	wr_resolve(wr);
	return 0;
}

static void start(struct vm *v, struct td_req *req, bool zero_write)
{
	struct vmwr *wr;
	int rc;

	if (!v->writable) {
		td_req_complete_later(v->ctx, req, -EROFS);
		return;
	}
	wr = td_pool_get(&v->wr_pool);
	if (!wr) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	memset(wr, 0, offsetof(struct vmwr, ziov));
	wr->v = v;
	wr->req = req;
	wr->zero_write = zero_write;
	wr->wc = wr->wc_in;
	wr->off = req->off;
	wr->len = req->len;
	wr->zend = req->off + req->len;
	wr->iov = req->iov;
	wr->iovcnt = req->iovcnt;
	rc = wr_pass(wr);
	if (rc < 0) {
		wr->nwc = 0;
		wr_fail(wr, rc);
	}
}

void vm_write(struct td_layer *l, struct td_req *req)
{
	start(l->priv, req, false);
}

void vm_write_zeroes(struct td_layer *l, struct td_req *req)
{
	start(l->priv, req, true);
}
