/* Reads: guest offset -> extent -> (sparse) grain table entry -> file.
 *
 * A request is walked from its start: a ZERO extent, an unallocated or
 * zeroed grain, or a GD entry of 0 reads as zeros; a flat extent and an
 * allocated grain are read from the file, and pieces that are neighbours
 * in the same file go out as one I/O. A grain table not in the cache
 * parks the walk, which resumes where it stopped. A compressed grain is
 * read whole (marker and data) and inflated on a worker thread into a
 * buffer of exactly one grain. A GTE that points outside the file or into
 * metadata fails the request with EIO and one logged line; the server
 * keeps serving. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/util.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vmdk/vmdk_int.h"

struct vmrd {
	struct vm *v;
	struct td_req *req;
	uint64_t pos, end;
	unsigned pending;
	int err;
	struct td_wait w;
	struct td_defer defer;
	struct td_fio *cur; /* the I/O being gathered */
	struct vmfile *cur_f;
	uint64_t cur_host;
};

/* a compressed grain being read and inflated */
struct vmcg {
	struct td_work w;
	struct vmrd *r;
	struct vmext *x;
	uint8_t *raw;
	uint64_t rawcap, avail;
	uint8_t *grain;
	uint64_t lba; /* the grain's first sector in the extent */
	uint64_t host;
	uint64_t gstart, n, boff;
	int err;
	char why[160];
};

size_t vm_read_state_size(void)
{
	return sizeof(struct vmrd);
}

void vm_log_bad(struct vm *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	td_image_vlog_bad(&v->log_left, "vmdk", v->path, " (no more such messages for this image)",
			  fmt, ap);
	va_end(ap);
}

struct vmext *vm_ext_at(struct vm *v, uint64_t pos)
{
	unsigned lo = 0, hi = v->next;

	while (hi - lo > 1) {
		unsigned mid = lo + (hi - lo) / 2;

		if (v->ext[mid].start <= pos)
			lo = mid;
		else
			hi = mid;
	}
	return &v->ext[lo];
}

bool vm_clear_of_gts(const struct vmext *x, uint64_t host, uint64_t len)
{
	size_t lo = 0, hi = x->ngt_offs;

	/* the last GT starting before host + len is the only one that can
	 * reach into the range: they all have the same length */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (x->gt_offs[mid] < host + len)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 || x->gt_offs[lo - 1] + x->h.gt_span <= host;
}

static void rd_finish(struct vmrd *r)
{
	struct vm *v = r->v;
	struct td_req *req = r->req;
	int err = r->err;

	td_pool_put(&v->rd_pool, r);
	td_req_complete(req, err);
}

static void rd_finish_deferred(void *opaque)
{
	rd_finish(opaque);
}

static void rd_put(struct vmrd *r)
{
	if (--r->pending == 0)
		rd_finish(r);
}

static void rd_io_done(struct td_fio *o, int err)
{
	struct vmrd *r = o->owner;

	if (err && !r->err) {
		vm_log_bad(r->v, "read of %llu bytes at %llu of '%s' failed: %s",
			   (unsigned long long)o->len, (unsigned long long)o->io.off,
			   vmio_file(o)->path, strerror(-err));
		r->err = -EIO;
	}
	td_fio_put(o);
	rd_put(r);
}

static void flush_cur(struct vmrd *r)
{
	struct td_fio *o = r->cur;

	if (!o)
		return;
	r->cur = NULL;
	r->pending++;
	vmio_read(o, r->cur_f, r->cur_host);
}

/* Reads n bytes at host of f into the request buffer at boff. */
static void emit(struct vmrd *r, struct vmfile *f, uint64_t host, uint64_t boff, uint64_t n)
{
	struct td_req *req = r->req;

	if (r->cur && (r->cur_f != f || r->cur_host + r->cur->len != host || td_fio_full(r->cur)))
		flush_cur(r);
	if (!r->cur) {
		r->cur = td_fio_get(&r->v->fio, rd_io_done, r);
		if (!r->cur) {
			r->err = -ENOMEM;
			return;
		}
		r->cur_f = f;
		r->cur_host = host;
	}
	if (td_fio_add_slice(r->cur, req->iov, req->iovcnt, boff, n) < 0)
		r->err = -ENOMEM;
}

/* ---- compressed grains ------------------------------------------------------- */

static void cg_free(struct vmcg *cg)
{
	if (cg->raw)
		td_buf_put(cg->raw, cg->rawcap);
	if (cg->grain)
		td_buf_put(cg->grain, cg->x->h.grain_bytes);
	free(cg);
}

/* on a worker thread: pure functions only */
static void cg_inflate(struct td_work *w, int worker)
{
	struct vmcg *cg = (struct vmcg *)w;
	const struct vmdk_hdr *h = &cg->x->h;
	uint32_t size;

	cg->err =
	    vmdk_marker_parse(h, cg->raw, cg->avail, cg->lba, &size, cg->why, sizeof(cg->why));
	if (cg->err < 0)
		return;
	cg->err =
	    vmdk_inflate_grain(cg->raw + VMDK_GRAIN_MARKER_LEN, size, cg->grain, h->grain_bytes);
	if (cg->err < 0)
		snprintf(cg->why, sizeof(cg->why),
			 "compressed data (%u bytes) does not inflate to exactly one grain", size);
}

static void cg_inflated(struct td_work *w)
{
	struct vmcg *cg = (struct vmcg *)w;
	struct vmrd *r = cg->r;

	if (cg->err < 0) {
		vm_log_bad(r->v, "compressed grain at %llu of '%s' (guest sector %llu): %s",
			   (unsigned long long)cg->host, cg->x->f->path,
			   (unsigned long long)((cg->x->start / VMDK_SECTOR) + cg->lba), cg->why);
		if (!r->err)
			r->err = -EIO;
	} else {
		td_iov_copy_in(r->req->iov, r->req->iovcnt, cg->boff, cg->grain + cg->gstart,
			       cg->n);
	}
	cg_free(cg);
	rd_put(r);
}

static void cg_read_done(struct td_fio *o, int err)
{
	struct vmcg *cg = o->owner;
	struct vmrd *r = cg->r;

	td_fio_put(o);
	if (err) {
		vm_log_bad(r->v, "cannot read the compressed grain at %llu of '%s': %s",
			   (unsigned long long)cg->host, cg->x->f->path, strerror(-err));
		if (!r->err)
			r->err = -EIO;
		cg_free(cg);
		rd_put(r);
		return;
	}
	cg->w.fn = cg_inflate;
	cg->w.done = cg_inflated;
	td_workers_submit(r->v->ctx->workers, &cg->w);
}

static void start_compressed(struct vmrd *r, struct vmext *x, uint64_t host, uint64_t grain_no,
			     uint64_t gstart, uint64_t n, uint64_t boff)
{
	struct vmcg *cg = calloc(1, sizeof(*cg));
	struct td_fio *o;

	if (!cg) {
		r->err = -ENOMEM;
		return;
	}
	cg->r = r;
	cg->x = x;
	cg->host = host;
	cg->lba = grain_no * x->h.grain_sectors;
	cg->gstart = gstart;
	cg->n = n;
	cg->boff = boff;
	cg->rawcap = vmdk_marker_max_read(&x->h);
	cg->avail = x->f->size - host < cg->rawcap ? x->f->size - host : cg->rawcap;
	cg->raw = td_buf_get(cg->rawcap);
	cg->grain = td_buf_get(x->h.grain_bytes);
	o = cg->raw && cg->grain ? td_fio_get(&r->v->fio, cg_read_done, cg) : NULL;
	if (!o || td_fio_add(o, cg->raw, cg->rawcap) < 0) {
		if (o)
			td_fio_put(o);
		cg_free(cg);
		r->err = -ENOMEM;
		return;
	}
	r->pending++;
	vmio_read(o, x->f, host);
}

/* ---- the walk -------------------------------------------------------------------- */

static void rd_walk(struct vmrd *r)
{
	struct vm *v = r->v;
	struct td_req *req = r->req;

	while (r->pos < r->end && !r->err) {
		struct vmext *x = vm_ext_at(v, r->pos);
		uint64_t xo = r->pos - x->start, boff = r->pos - req->off;
		uint64_t n = (x->start + x->len < r->end ? x->start + x->len : r->end) - r->pos;
		uint64_t gstart, gti, gi, host = 0;
		enum vmdk_gte_kind k;
		struct vmgt *g;
		int rc;

		if (x->access == VMDK_ACC_NOACCESS) {
			vm_log_bad(v, "read of guest offset %llu: extent %u is NOACCESS",
				   (unsigned long long)r->pos, x->idx);
			r->err = -EIO;
			break;
		}
		if (x->type == VMDK_EXT_ZERO) {
			td_iov_zero(req->iov, req->iovcnt, boff, n);
			r->pos += n;
			continue;
		}
		if (x->type == VMDK_EXT_FLAT) {
			emit(r, x->f, x->flat_off + xo, boff, n);
			r->pos += n;
			continue;
		}
		gstart = xo % x->h.grain_bytes;
		if (n > x->h.grain_bytes - gstart)
			n = x->h.grain_bytes - gstart;
		gti = xo / x->h.gt_cover;
		gi = (xo % x->h.gt_cover) / x->h.grain_bytes;
		rc = vmc_get(v, x, gti, &r->w, &g);
		if (rc == -EAGAIN) {
			flush_cur(r);
			return; /* rd_resume continues */
		}
		if (rc == -ENOENT) {
			td_iov_zero(req->iov, req->iovcnt, boff, n);
			r->pos += n;
			continue;
		}
		if (rc < 0) {
			r->err = rc;
			break;
		}
		k = vmdk_gte_decode(&x->h, vm_gte(g, gi), x->f->size, &host);
		if (k == VMDK_GTE_DATA &&
		    !vm_clear_of_gts(x, host,
				     x->h.compressed ? VMDK_GRAIN_MARKER_LEN : x->h.grain_bytes))
			k = VMDK_GTE_INVALID;
		switch (k) {
		case VMDK_GTE_UNALLOC:
		case VMDK_GTE_ZERO:
			td_iov_zero(req->iov, req->iovcnt, boff, n);
			break;
		case VMDK_GTE_INVALID:
			vm_log_bad(v,
				   "grain table entry %llu of GT %llu of '%s' (guest offset %llu) "
				   "is 0x%x: outside the file or on metadata",
				   (unsigned long long)gi, (unsigned long long)gti, x->f->path,
				   (unsigned long long)r->pos, vm_gte(g, gi));
			r->err = -EIO;
			break;
		case VMDK_GTE_DATA:
			if (x->h.compressed)
				start_compressed(r, x, host, xo / x->h.grain_bytes, gstart, n,
						 boff);
			else
				emit(r, x->f, host + gstart, boff, n);
			break;
		}
		r->pos += n;
	}
	flush_cur(r);
	/* the walk's own reference: complete from the loop, never from the
	 * submitter's stack */
	if (--r->pending == 0) {
		td_defer_init(&r->defer, rd_finish_deferred, r);
		td_loop_defer(v->ctx->loop, &r->defer);
	}
}

static void rd_resume(struct td_wait *w)
{
	struct vmrd *r = (struct vmrd *)((uint8_t *)w - offsetof(struct vmrd, w));

	if (w->err && !r->err)
		r->err = w->err;
	rd_walk(r);
}

void vm_read(struct td_layer *l, struct td_req *req)
{
	struct vm *v = l->priv;
	struct vmrd *r = td_pool_get(&v->rd_pool);

	if (!r) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	memset(r, 0, sizeof(*r));
	r->v = v;
	r->req = req;
	r->pos = req->off;
	r->end = req->off + req->len;
	r->pending = 1;
	r->w.cb = rd_resume;
	rd_walk(r);
}
