/* Write-zeroes and discard on the top image.
 *
 * Whole clusters become zero clusters: an allocated cluster keeps its host
 * cluster with the zero flag (no refcount change; its range is punched
 * out of the file unless the client asked to keep it allocated), an
 * unallocated one over a backing file gets the plain zero flag, one that
 * already reads as zeros is left alone. Partial clusters: write-zeroes
 * writes zeros through the write path (qcow2_write.c); discard ignores
 * them (it is advisory). Each cluster is changed under the same claim
 * allocating writes take, so the two never race on one L2 entry. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"

struct q2zr {
	struct q2 *q;
	struct td_req *req;
	uint64_t gc, gc_end; /* whole clusters still to do */
	bool discard, punch;
	struct q2claim claim;
	bool claimed;
	uint64_t punch_at, punch_len;
	struct td_wait w, syncw;
	struct td_req part[2];
	struct iovec piov[2];
	unsigned pending;
	int err;
	struct td_defer defer;
};

static void zr_complete(struct q2zr *z, int err)
{
	struct td_req *req = z->req;

	free(z);
	td_req_complete(req, err);
}

static void zr_synced(struct td_wait *w)
{
	struct q2zr *z = (struct q2zr *)((uint8_t *)w - offsetof(struct q2zr, syncw));

	zr_complete(z, w->err);
}

static void zr_dec(struct q2zr *z)
{
	if (--z->pending)
		return;
	if (!z->err && (z->req->flags & TD_REQ_FUA)) {
		z->syncw.cb = zr_synced;
		q2_meta_sync(z->q, &z->syncw);
		return;
	}
	zr_complete(z, z->err);
}

static void zr_guard(void *opaque)
{
	zr_dec(opaque);
}

static void zr_child_done(struct td_req *req, int err)
{
	struct q2zr *z = req->opaque;

	if (err && !z->err)
		z->err = err;
	zr_dec(z);
}

static void punch_flush(struct q2zr *z)
{
	struct q2img *im = z->q->img[0];

	if (!z->punch_len)
		return;
	if (fallocate(im->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)z->punch_at,
		      (off_t)z->punch_len) < 0)
		td_dbg("qcow2: '%s': punching %llu bytes at %llu: %m", im->path,
		       (unsigned long long)z->punch_len, (unsigned long long)z->punch_at);
	z->punch_len = 0;
}

static void punch_add(struct q2zr *z, uint64_t host, uint64_t len)
{
	if (z->punch_len && z->punch_at + z->punch_len == host) {
		z->punch_len += len;
		return;
	}
	punch_flush(z);
	z->punch_at = host;
	z->punch_len = len;
}

/* One whole cluster: 1 done, 0 parked (-EAGAIN handled), <0 error. */
static int zr_one(struct q2zr *z)
{
	struct q2 *q = z->q;
	struct q2img *im = q->img[0];
	const struct qcow2_hdr *h = &im->h;
	uint64_t gc = z->gc, l1i = gc >> h->l2_bits, l2i = gc & ((1ull << h->l2_bits) - 1);
	uint64_t l2off, host, entry = 0, newe;
	struct q2cent *e = NULL;
	enum qcow2_ckind kind;
	bool copied, punch = false;
	int k, rc;

	k = qcow2_l1_decode(q2_l1_entry(im, l1i), h->cluster_bits, &l2off);
	if (k < 0)
		return -EIO;
	if (k == 0 && q->nimg == 1) {
		/* no table, no backing file: the whole table's range reads as zeros */
		uint64_t next = (l1i + 1) << h->l2_bits;

		z->gc = next < z->gc_end ? next : z->gc_end;
		return 1;
	}
	if (k) {
		rc = q2c_get(&q->l2c, 0, l2off, &z->w, &e);
		if (rc < 0)
			return rc;
		entry = qcow2_be64(e->buf + 8 * l2i);
	}
	kind = qcow2_l2_decode(entry, h->version, h->cluster_bits, &host, &copied);
	switch (kind) {
	case QCOW2_C_ZERO_PLAIN:
	case QCOW2_C_ZERO_ALLOC:
		z->gc++;
		return 1;
	case QCOW2_C_UNALLOC:
		if (q->nimg == 1) {
			z->gc++;
			return 1;
		}
		newe = qcow2_l2_zero_plain();
		break;
	case QCOW2_C_NORMAL:
		if (!copied || !q2_host_ok(q, host)) {
			q2_log_bad(q, 0,
				   "cannot zero the cluster at guest offset %llu: shared or "
				   "out of place",
				   (unsigned long long)(gc << h->cluster_bits));
			return -EIO;
		}
		newe = qcow2_l2_zero_alloc(host);
		punch = z->punch;
		break;
	default:
		q2_log_bad(q, 0,
			   "cannot zero the cluster at guest offset %llu: compressed or "
			   "invalid",
			   (unsigned long long)(gc << h->cluster_bits));
		return -EIO;
	}
	rc = q2_claim_or_wait(q, &z->claim, &z->claimed, gc, &z->w);
	if (rc < 0)
		return rc;
	if (!e) {
		uint64_t l2host;

		rc = q2_alloc_cluster(q, &z->w, &l2host);
		if (rc < 0)
			return rc; /* claim kept; the L1 entry is checked again */
		e = q2c_create(&q->l2c, 0, l2host);
		if (!e)
			return -EIO;
		q2_l1_set(q, l1i, l2host | QCOW2_OFLAG_COPIED);
	}
	qcow2_put_be64(e->buf + 8 * l2i, newe);
	q2c_mark_dirty(e);
	if (punch)
		punch_add(z, host, h->cluster_size);
	z->claimed = false;
	q2_claim_release(q, &z->claim);
	z->gc++;
	return 1;
}

static void zr_run(struct q2zr *z)
{
	while (z->gc < z->gc_end) {
		int rc = zr_one(z);

		if (rc == -EAGAIN) {
			punch_flush(z);
			return; /* zr_resume continues */
		}
		if (rc < 0) {
			if (z->claimed) {
				z->claimed = false;
				q2_claim_release(z->q, &z->claim);
			}
			if (!z->err)
				z->err = rc;
			break;
		}
	}
	punch_flush(z);
	zr_dec(z);
}

static void zr_resume(struct td_wait *w)
{
	struct q2zr *z = (struct q2zr *)((uint8_t *)w - offsetof(struct q2zr, w));

	if (w->err) {
		if (z->claimed) {
			z->claimed = false;
			q2_claim_release(z->q, &z->claim);
		}
		if (!z->err)
			z->err = w->err;
		zr_dec(z);
		return;
	}
	zr_run(z);
}

static void zero_op(struct td_layer *l, struct td_req *req, bool discard)
{
	struct q2 *q = l->priv;
	const struct qcow2_hdr *h = &q->img[0]->h;
	uint64_t cs = h->cluster_size, off = req->off, end = req->off + req->len;
	uint64_t fs = (off + cs - 1) & ~(cs - 1), fe = end & ~(cs - 1);
	uint64_t head_end, tail_start;
	struct q2zr *z;
	int n = 0;

	if (!q->writable) {
		td_req_complete_later(q->ctx, req, -EROFS);
		return;
	}
	z = calloc(1, sizeof(*z));
	if (!z) {
		td_req_complete_later(q->ctx, req, -ENOMEM);
		return;
	}
	if (end >= q->img[0]->vsize)
		fe = (end + cs - 1) & ~(cs - 1); /* the image's last, partial cluster */
	head_end = fs < end ? fs : end;
	tail_start = fe > head_end ? fe : head_end;
	z->q = q;
	z->req = req;
	z->discard = discard;
	z->punch = discard || !(req->flags & TD_REQ_NO_UNMAP);
	z->pending = 1; /* the guard, dropped from the loop */
	z->w.cb = zr_resume;
	if (!discard) {
		uint64_t ps[2], pe[2];
		int np = 0;

		if (off < head_end) {
			ps[np] = off;
			pe[np++] = head_end;
		}
		if (tail_start < end) {
			ps[np] = tail_start;
			pe[np++] = end;
		}
		for (n = 0; n < np; n++) {
			struct td_req *p = &z->part[n];

			memset(p, 0, sizeof(*p));
			p->op = TD_OP_WRITE;
			p->off = ps[n];
			p->len = pe[n] - ps[n];
			z->piov[n].iov_base = q->zeros;
			z->piov[n].iov_len = (size_t)p->len;
			p->iov = &z->piov[n];
			p->iovcnt = 1;
			p->done = zr_child_done;
			p->opaque = z;
			z->pending++;
		}
	}
	if (fs < fe) {
		z->gc = fs >> h->cluster_bits;
		z->gc_end = fe >> h->cluster_bits;
		z->pending++;
	}
	for (int i = 0; i < n; i++)
		q2_write_start(q, &z->part[i], true);
	if (fs < fe)
		zr_run(z);
	td_defer_init(&z->defer, zr_guard, z);
	td_loop_defer(q->ctx->loop, &z->defer);
}

void q2_write_zeroes(struct td_layer *l, struct td_req *req)
{
	zero_op(l, req, false);
}

void q2_discard(struct td_layer *l, struct td_req *req)
{
	zero_op(l, req, true);
}
