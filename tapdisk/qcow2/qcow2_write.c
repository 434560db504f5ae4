/* Writes and copy-on-write on the top image.
 *
 * A write is split into its clusters. Each is either written in place
 * (allocated, refcount 1) or allocated: the request claims the guest
 * cluster (a second request wanting to allocate the same cluster parks
 * until the first is done, then finds it allocated), gets a fresh cluster
 * at the end of the file, fills what the guest does not write from the
 * backing chain (or zeros), and writes. Neighbouring host clusters become
 * one I/O, so a sequential write of fresh clusters is one sequential
 * write. Only when the data is written are the L2 entries set (see
 * qcow2_meta.c for when they reach the disk). Claims are taken in
 * ascending cluster order, so waiting on one cannot deadlock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/util.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"

enum wc_kind { WC_PENDING, WC_INPLACE, WC_ALLOC, WC_SKIP };
enum wc_src { SRC_ZERO, SRC_BELOW };

struct q2wc {
	struct q2claim claim;
	uint64_t host;	     /* host cluster */
	uint32_t start, end; /* bytes of the cluster the guest writes */
	uint64_t boff;	     /* request buffer offset of `start` */
	uint8_t kind, src;
	bool claimed, fresh;
	struct q2cent *l2; /* pinned while we may set its entry */
	uint8_t *bounce;   /* the whole cluster, for partial allocations */
	struct td_mread *cow;
	struct q2wr *wr;
};

#define WC_INLINE 16

struct q2wr {
	struct q2 *q;
	struct td_req *req;
	bool zero_write; /* writing zeros: clusters that read as zeros are skipped */
	bool fua_direct; /* FUA served by RWF_DSYNC on the data (see fua_direct_ok) */
	const struct iovec *iov;
	int iovcnt;
	struct q2wc *wc;
	unsigned nwc, cur;
	unsigned pending;
	int err;
	struct td_wait w, syncw;
	struct td_defer defer;
	struct q2wc wc_in[WC_INLINE];
};

/* ---- claims: guest clusters being allocated --------------------------------- */

static struct q2claim **claim_slot(struct q2 *q, uint64_t gc)
{
	return &q->claims[(gc * 0x9e3779b97f4a7c15ull >> 40) & (Q2_CLAIM_BUCKETS - 1)];
}

static struct q2claim *claim_find(struct q2 *q, uint64_t gc)
{
	struct q2claim *c;

	for (c = *claim_slot(q, gc); c; c = c->hnext)
		if (c->gc == gc)
			return c;
	return NULL;
}

static void claim_take(struct q2 *q, struct q2claim *c, uint64_t gc)
{
	struct q2claim **s = claim_slot(q, gc);

	c->gc = gc;
	c->waiters = NULL;
	c->hnext = *s;
	*s = c;
}

void q2_claim_release(struct q2 *q, struct q2claim *c)
{
	struct q2claim **pp = claim_slot(q, c->gc);

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	td_wait_wake_all(&c->waiters, 0);
}

/* -EAGAIN with w parked when another request holds the claim on gc. */
int q2_claim_or_wait(struct q2 *q, struct q2claim *mine, bool *held, uint64_t gc, struct td_wait *w)
{
	struct q2claim *other;

	if (*held)
		return 0;
	other = claim_find(q, gc);
	if (other) {
		w->next = other->waiters;
		other->waiters = w;
		return -EAGAIN;
	}
	claim_take(q, mine, gc);
	*held = true;
	return 0;
}

/* A host cluster we may write guest data into: not the header, the L1
 * table or the refcount table, and inside the file as we know it. */
bool q2_host_ok(struct q2 *q, uint64_t host)
{
	const struct qcow2_hdr *h = &q->img[0]->h;
	uint64_t cs = h->cluster_size, end = q->alloc_next;

	if (q->img[0]->file_size > end)
		end = q->img[0]->file_size;
	if (host < cs || host + cs > end)
		return false;
	if (host < h->l1_offset + (uint64_t)h->l1_size * 8 && h->l1_offset < host + cs)
		return false;
	if (host < h->rt_offset + (uint64_t)h->rt_clusters * cs && h->rt_offset < host + cs)
		return false;
	return true;
}

/* ---- the write state machine -------------------------------------------------- */

static struct q2wr *wr_get(struct q2 *q)
{
	struct q2wr *wr = td_pool_get(&q->wr_pool);

	if (!wr)
		return NULL;
	memset(wr, 0, offsetof(struct q2wr, wc_in));
	wr->q = q;
	return wr;
}

static void wr_put(struct q2wr *wr)
{
	struct q2 *q = wr->q;

	if (wr->wc != wr->wc_in)
		free(wr->wc);
	td_pool_put(&q->wr_pool, wr);
}

size_t q2_write_state_size(void)
{
	return sizeof(struct q2wr);
}

/* Drops claims, pins and buffers; wakes the waiters. */
static void wr_release(struct q2wr *wr)
{
	struct q2 *q = wr->q;
	uint32_t cs = (uint32_t)q->img[0]->h.cluster_size;
	unsigned i;

	for (i = 0; i < wr->nwc; i++) {
		struct q2wc *c = &wr->wc[i];

		if (c->l2)
			q2c_unpin(c->l2);
		c->l2 = NULL;
		if (c->bounce)
			td_buf_put(c->bounce, cs);
		c->bounce = NULL;
	}
	for (i = 0; i < wr->nwc; i++) {
		if (wr->wc[i].claimed)
			q2_claim_release(q, &wr->wc[i].claim);
		wr->wc[i].claimed = false;
	}
}

static void wr_complete(struct q2wr *wr, int err)
{
	struct td_req *req = wr->req;

	wr_put(wr);
	td_req_complete(req, err);
}

static void wr_fail_deferred(void *opaque)
{
	struct q2wr *wr = opaque;

	wr_complete(wr, wr->err);
}

/* Ends the request with an error from the loop (never from submit's stack). */
static void wr_fail(struct q2wr *wr, int err)
{
	wr_release(wr);
	wr->err = err;
	td_defer_init(&wr->defer, wr_fail_deferred, wr);
	td_loop_defer(wr->q->ctx->loop, &wr->defer);
}

static void wr_synced(struct td_wait *w)
{
	struct q2wr *wr = (struct q2wr *)((uint8_t *)w - offsetof(struct q2wr, syncw));

	wr_complete(wr, w->err);
}

static bool reads_as_zero(struct q2 *q, enum qcow2_ckind k)
{
	return k == QCOW2_C_ZERO_PLAIN || k == QCOW2_C_ZERO_ALLOC ||
	       (k == QCOW2_C_UNALLOC && q->nimg == 1);
}

/* Decides how cluster c is written; -EAGAIN when parked (called again). */
static int resolve_one(struct q2wr *wr, struct q2wc *c)
{
	struct q2 *q = wr->q;
	struct q2img *im = q->img[0];
	const struct qcow2_hdr *h = &im->h;
	uint64_t gc = c->claim.gc, l1i = gc >> h->l2_bits, l2i = gc & ((1ull << h->l2_bits) - 1);
	uint64_t l2off, host = 0, entry = 0;
	enum qcow2_ckind kind;
	bool copied;
	int k, rc;

again:
	if (!c->l2) {
		k = qcow2_l1_decode(q2_l1_entry(im, l1i), h->cluster_bits, &l2off);
		if (k < 0)
			return -EIO;
		if (k) {
			struct q2cent *e;

			rc = q2c_get(&q->l2c, 0, l2off, &wr->w, &e);
			if (rc < 0)
				return rc;
			q2c_pin(e);
			c->l2 = e;
		}
	}
	if (c->l2)
		entry = qcow2_be64(c->l2->buf + 8 * l2i);
	kind = qcow2_l2_decode(entry, h->version, h->cluster_bits, &host, &copied);
	if (wr->zero_write && reads_as_zero(q, kind)) {
		c->kind = WC_SKIP;
		return 0;
	}
	switch (kind) {
	case QCOW2_C_NORMAL:
		if (!copied) {
			q2_log_bad(q, 0, "cluster for guest offset %llu is shared (refcount > 1)",
				   (unsigned long long)(gc << h->cluster_bits));
			return -EIO;
		}
		if (!q2_host_ok(q, host)) {
			q2_log_bad(q, 0,
				   "L2 entry for guest offset %llu points at %llu: refusing "
				   "to write there",
				   (unsigned long long)(gc << h->cluster_bits),
				   (unsigned long long)host);
			return -EIO;
		}
		c->kind = WC_INPLACE;
		c->host = host;
		return 0;
	case QCOW2_C_COMPRESSED:
		q2_log_bad(q, 0, "compressed cluster at guest offset %llu: not supported",
			   (unsigned long long)(gc << h->cluster_bits));
		return -EIO;
	case QCOW2_C_INVALID:
		q2_log_bad(q, 0, "invalid L2 entry for guest offset %llu",
			   (unsigned long long)(gc << h->cluster_bits));
		return -EIO;
	default:
		break;
	}
	rc = q2_claim_or_wait(q, &c->claim, &c->claimed, gc, &wr->w);
	if (rc < 0)
		return rc;
	if (!c->l2) {
		struct q2cent *e;
		uint64_t l2host;

		if (qcow2_l1_decode(q2_l1_entry(im, l1i), h->cluster_bits, &l2off) != 0)
			goto again; /* another request allocated the table meanwhile */
		rc = q2_alloc_cluster(q, &wr->w, &l2host);
		if (rc < 0)
			return rc;
		e = q2c_create(&q->l2c, 0, l2host);
		if (!e)
			return -EIO;
		q2_l1_set(q, l1i, l2host | QCOW2_OFLAG_COPIED);
		q2c_pin(e);
		c->l2 = e;
		kind = QCOW2_C_UNALLOC;
	}
	c->src = kind == QCOW2_C_UNALLOC && q->nimg > 1 ? SRC_BELOW : SRC_ZERO;
	if (kind == QCOW2_C_ZERO_ALLOC && q2_host_ok(q, host)) {
		c->host = host; /* ours already: reuse it */
		c->fresh = false;
	} else {
		rc = q2_alloc_cluster(q, &wr->w, &c->host);
		if (rc < 0)
			return rc;
		c->fresh = true;
	}
	c->kind = WC_ALLOC;
	return 0;
}

static void write_phase(struct q2wr *wr);

static void cow_done(struct td_mread *r, int err)
{
	struct q2wc *c = r->opaque;
	struct q2wr *wr = c->wr;
	bool any = r->any_data;

	q2rd_put(r);
	c->cow = NULL;
	if (err && !wr->err)
		wr->err = err;
	if (!err && !any && c->fresh) {
		/* the backing chain has only zeros here and the new cluster
		 * already reads as zeros: write just the guest's part */
		td_buf_put(c->bounce, (size_t)wr->q->img[0]->h.cluster_size);
		c->bounce = NULL;
	}
	if (--wr->pending == 0)
		write_phase(wr);
}

/* Partial allocations: fill the rest of the cluster from below. */
static void cow_phase(struct q2wr *wr)
{
	struct q2 *q = wr->q;
	uint64_t cs = q->img[0]->h.cluster_size;
	unsigned i;

	wr->pending = 1;
	for (i = 0; i < wr->nwc; i++) {
		struct q2wc *c = &wr->wc[i];
		struct td_mread *r;

		if (c->kind != WC_ALLOC || (c->start == 0 && c->end == cs))
			continue;
		if (c->src == SRC_ZERO && c->fresh)
			continue; /* a fresh cluster reads as zeros already */
		c->bounce = td_buf_get((size_t)cs);
		if (!c->bounce) {
			wr->err = -ENOMEM;
			break;
		}
		if (c->src == SRC_ZERO) {
			memset(c->bounce, 0, (size_t)cs);
			continue;
		}
		r = q2rd_get(q);
		if (!r) {
			wr->err = -ENOMEM;
			break;
		}
		c->wr = wr;
		c->cow = r;
		r->level = 1;
		r->off = c->claim.gc << q->img[0]->h.cluster_bits;
		r->len = cs;
		r->iov_own.iov_base = c->bounce;
		r->iov_own.iov_len = (size_t)cs;
		r->iov = &r->iov_own;
		r->iovcnt = 1;
		r->done = cow_done;
		r->opaque = c;
		wr->pending++;
		td_mread_start(r);
	}
	if (--wr->pending == 0)
		write_phase(wr);
}

static void commit(struct q2wr *wr);

static void commit_deferred(void *opaque)
{
	commit(opaque);
}

static void wr_io_done(struct td_fio *o, int err)
{
	struct q2wr *wr = o->owner;

	td_fio_put(o);
	if (err && !wr->err)
		wr->err = err;
	if (--wr->pending == 0)
		commit(wr);
}

static void wr_submit(struct q2wr *wr, struct td_fio *o, uint64_t host)
{
	wr->pending++;
	if (wr->fua_direct)
		q2io_write_dsync(o, host);
	else
		q2io_write(o, host);
}

/* A FUA write that only overwrites clusters whose mapping is already
 * durable (their L2 tables are neither dirty, new, nor being written back)
 * needs only its own data durable: RWF_DSYNC on the data write instead of
 * a metadata writeback round (three fdatasyncs when other writes allocate). */
static bool fua_direct_ok(const struct q2wr *wr)
{
	unsigned i;

	if (!(wr->req->flags & TD_REQ_FUA))
		return false;
	for (i = 0; i < wr->nwc; i++) {
		const struct q2wc *c = &wr->wc[i];

		if (c->kind == WC_SKIP)
			continue;
		if (c->kind != WC_INPLACE || c->bounce || !c->l2 || c->l2->dirty || c->l2->fresh ||
		    c->l2->busy)
			return false;
	}
	return true;
}

/* Writes every cluster, merging neighbours in the file into one I/O. */
static void write_phase(struct q2wr *wr)
{
	struct q2 *q = wr->q;
	uint64_t cs = q->img[0]->h.cluster_size, o_host = 0;
	struct td_fio *o = NULL;
	unsigned i, submitted = 0;

	if (wr->err) {
		wr_fail(wr, wr->err);
		return;
	}
	wr->pending = 1;
	wr->fua_direct = fua_direct_ok(wr);
	for (i = 0; i < wr->nwc; i++) {
		struct q2wc *c = &wr->wc[i];
		uint64_t host, len;
		int rc;

		if (c->kind == WC_SKIP)
			continue;
		if (c->bounce) {
			td_iov_copy_out(wr->iov, wr->iovcnt, c->boff, c->bounce + c->start,
					c->end - c->start);
			host = c->host;
			len = cs;
		} else {
			host = c->host + c->start;
			len = c->end - c->start;
		}
		if (o && (o_host + o->len != host || td_fio_full(o))) {
			wr_submit(wr, o, o_host);
			submitted++;
			o = NULL;
		}
		if (!o) {
			o = td_fio_get(&q->fio, wr_io_done, wr);
			if (!o) {
				wr->err = -ENOMEM;
				break;
			}
			o_host = host;
		}
		rc = c->bounce ? td_fio_add(o, c->bounce, cs)
			       : td_fio_add_slice(o, wr->iov, wr->iovcnt, c->boff, len);
		if (rc < 0) {
			wr->err = rc;
			td_fio_put(o);
			o = NULL;
			break;
		}
	}
	if (o) {
		wr_submit(wr, o, o_host);
		submitted++;
	}
	if (--wr->pending == 0) {
		/* nothing was submitted: finish from the loop */
		td_defer_init(&wr->defer, commit_deferred, wr);
		td_loop_defer(q->ctx->loop, &wr->defer);
	}
	(void)submitted;
}

/* The data is written: point the L2 entries at the new clusters. */
static void commit(struct q2wr *wr)
{
	struct q2 *q = wr->q;
	struct q2img *im = q->img[0];
	const struct qcow2_hdr *h = &im->h;
	unsigned i;

	if (wr->err) {
		wr_release(wr);
		wr_complete(wr, wr->err);
		return;
	}
	for (i = 0; i < wr->nwc; i++) {
		struct q2wc *c = &wr->wc[i];
		uint64_t end;

		if (c->kind == WC_SKIP)
			continue;
		end = c->host + (c->bounce ? h->cluster_size : c->end);
		if (end > im->file_size)
			im->file_size = end;
		if (c->kind == WC_ALLOC) {
			uint64_t l2i = c->claim.gc & ((1ull << h->l2_bits) - 1);

			qcow2_put_be64(c->l2->buf + 8 * l2i, qcow2_l2_normal(c->host));
			q2c_mark_dirty(c->l2);
		}
	}
	wr_release(wr);
	if ((wr->req->flags & TD_REQ_FUA) && !wr->fua_direct) {
		wr->syncw.cb = wr_synced;
		q2_meta_sync(q, &wr->syncw);
		return;
	}
	wr_complete(wr, 0);
}

static void wr_resolve(struct q2wr *wr)
{
	while (wr->cur < wr->nwc) {
		int rc = resolve_one(wr, &wr->wc[wr->cur]);

		if (rc == -EAGAIN)
			return; /* wr_resume continues */
		if (rc < 0) {
			wr_fail(wr, rc);
			return;
		}
		wr->cur++;
	}
	cow_phase(wr);
}

static void wr_resume(struct td_wait *w)
{
	struct q2wr *wr = (struct q2wr *)((uint8_t *)w - offsetof(struct q2wr, w));

	if (w->err) {
		wr_fail(wr, w->err);
		return;
	}
	wr_resolve(wr);
}

void q2_write_start(struct q2 *q, struct td_req *req, bool zero_write)
{
	const struct qcow2_hdr *h = &q->img[0]->h;
	uint64_t cs = h->cluster_size, first, last, i;
	struct q2wr *wr;

	if (!q->writable) {
		td_req_complete_later(q->ctx, req, -EROFS);
		return;
	}
	wr = wr_get(q);
	if (!wr) {
		td_req_complete_later(q->ctx, req, -ENOMEM);
		return;
	}
	wr->req = req;
	wr->zero_write = zero_write;
	wr->iov = req->iov;
	wr->iovcnt = req->iovcnt;
	first = req->off >> h->cluster_bits;
	last = (req->off + req->len - 1) >> h->cluster_bits;
	wr->nwc = (unsigned)(last - first + 1);
	wr->wc = wr->nwc <= WC_INLINE ? wr->wc_in : malloc(wr->nwc * sizeof(*wr->wc));
	if (!wr->wc) {
		wr->wc = wr->wc_in;
		wr->nwc = 0;
		wr_fail(wr, -ENOMEM);
		return;
	}
	memset(wr->wc, 0, wr->nwc * sizeof(*wr->wc));
	for (i = 0; i < wr->nwc; i++) {
		struct q2wc *c = &wr->wc[i];
		uint64_t gstart = (first + i) << h->cluster_bits;

		c->claim.gc = first + i;
		c->start = (uint32_t)(i == 0 ? req->off - gstart : 0);
		c->end = (uint32_t)(i == wr->nwc - 1 ? req->off + req->len - gstart : cs);
		c->boff = gstart + c->start - req->off;
		c->kind = WC_PENDING;
		c->wr = wr;
	}
	wr->w.cb = wr_resume;
	wr_resolve(wr);
}

void q2_write(struct td_layer *l, struct td_req *req)
{
	q2_write_start(l->priv, req, false);
}
