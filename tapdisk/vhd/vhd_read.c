/* Guest -> file mapping down the chain, and the read path.
 *
 * A read is resolved piece by piece into extents (data at an offset of
 * some image of the chain, or zeros), neighbours merged so that data
 * contiguous in a file is one I/O. For each image, from the top down: past
 * its size reads zeros; a fixed disk is data; an unallocated block falls
 * through (differencing) or reads zeros (dynamic); in an allocated block
 * the bitmap decides per run of sectors, set bits being data and unset
 * ones falling through (differencing) or zeros (dynamic). Resolution
 * parks while a bitmap loads and resumes where it stopped. Every BAT
 * entry was checked at open (inside the file, clear of the metadata). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/vhd/vhd_int.h"

void v_log_bad(struct vhd *v, uint32_t img, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (!v->log_left)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	td_err("vhd: '%s': %s%s", v->img[img]->path, msg,
	       --v->log_left ? "" : " (further messages suppressed)");
}

/* The first piece of guest bytes [g, g+n) (multiples of 512). */
static int v_map(struct vhd *v, uint64_t g, uint64_t n, struct td_wait *w, struct vext *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < v->nimg; i++) {
		struct vimg *im = v->img[i];
		uint64_t blk, in, host;
		uint32_t ent;
		struct vbm *e;
		bool set;
		int rc;

		if (g >= im->vsize)
			break; /* past the end of a smaller parent: zeros */
		if (n > im->vsize - g)
			n = im->vsize - g;
		if (im->fixed) {
			out->kind = VE_DATA;
			out->img = i;
			out->host = g;
			out->len = n;
			return 0;
		}
		blk = g >> im->h.block_bits;
		in = g & (im->h.block_size - 1);
		if (n > im->h.block_size - in)
			n = im->h.block_size - in;
		ent = v_bat(im, blk);
		if (ent == VHD_BAT_UNUSED) {
			if (im->diff)
				continue;
			break;
		}
		host = (uint64_t)ent * VHD_SECTOR + im->h.bitmap_bytes;
		rc = vbm_get(v, i, (uint32_t)blk, w, &e);
		if (rc < 0)
			return rc;
		if (e) {
			n = vhd_bitmap_run(e->buf, in / VHD_SECTOR, n / VHD_SECTOR, &set) *
			    VHD_SECTOR;
			if (!set) {
				if (im->diff)
					continue;
				break;
			}
		}
		out->kind = VE_DATA;
		out->img = i;
		out->host = host + in;
		out->len = n;
		return 0;
	}
	out->kind = VE_ZERO;
	out->len = n;
	return 0;
}

/* ---- the read state machine ------------------------------------------------ */

size_t v_read_state_size(void)
{
	return sizeof(struct vrd);
}

static void rd_finish(struct vrd *r, int err)
{
	struct vhd *v = r->v;
	struct td_req *req = r->req;

	if (r->ext != r->ext_in)
		free(r->ext);
	td_pool_put(&v->rd_pool, r);
	td_req_complete(req, err);
}

static void rd_finish_deferred(void *opaque)
{
	struct vrd *r = opaque;

	rd_finish(r, r->err);
}

static void rd_finish_later(struct vrd *r, int err)
{
	r->err = err;
	td_defer_init(&r->defer, rd_finish_deferred, r);
	td_loop_defer(r->v->ctx->loop, &r->defer);
}

static void rd_io_done(struct td_fio *o, int err)
{
	struct vrd *r = o->owner;

	td_fio_put(o);
	if (err && !r->err)
		r->err = err;
	if (--r->pending == 0)
		rd_finish(r, r->err);
}

static void rd_issue(struct vrd *r)
{
	r->pending = 1; /* held until every I/O is submitted */
	for (unsigned i = 0; i < r->next; i++) {
		struct vext *x = &r->ext[i];
		struct td_fio *o;
		int rc;

		if (x->kind == VE_ZERO) {
			td_iov_zero(r->iov, r->iovcnt, x->boff, x->len);
			continue;
		}
		o = td_fio_get(&r->v->fio, rd_io_done, r);
		if (!o) {
			r->err = -ENOMEM;
			break;
		}
		rc = td_fio_add_slice(o, r->iov, r->iovcnt, x->boff, x->len);
		if (rc < 0) {
			td_fio_put(o);
			r->err = rc;
			break;
		}
		r->pending++;
		vio_read(o, x->img, x->host);
	}
	if (--r->pending == 0)
		rd_finish_later(r, r->err);
}

static int ext_push(struct vrd *r, const struct vext *x)
{
	struct vext *last = r->next ? &r->ext[r->next - 1] : NULL;

	if (last && last->kind == x->kind &&
	    (x->kind == VE_ZERO || (last->img == x->img && last->host + last->len == x->host))) {
		last->len += x->len;
		return 0;
	}
	if (r->next == r->extcap) {
		unsigned cap = r->extcap * 4;
		struct vext *n = malloc(cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		memcpy(n, r->ext, r->next * sizeof(*n));
		if (r->ext != r->ext_in)
			free(r->ext);
		r->ext = n;
		r->extcap = cap;
	}
	r->ext[r->next++] = *x;
	return 0;
}

static void rd_resolve(struct vrd *r)
{
	while (r->pos < r->len) {
		struct vext x;
		int rc = v_map(r->v, r->off + r->pos, r->len - r->pos, &r->w, &x);

		if (rc == -EAGAIN)
			return; /* rd_resume continues */
		if (rc == 0) {
			x.boff = r->pos;
			rc = ext_push(r, &x);
		}
		if (rc < 0) {
			rd_finish_later(r, rc);
			return;
		}
		r->pos += x.len;
	}
	rd_issue(r);
}

static void rd_resume(struct td_wait *w)
{
	struct vrd *r = (struct vrd *)((uint8_t *)w - offsetof(struct vrd, w));

	if (w->err) {
		rd_finish_later(r, w->err == -ENOMEM ? -ENOMEM : -EIO);
		return;
	}
	rd_resolve(r);
}

void v_read(struct td_layer *l, struct td_req *req)
{
	struct vhd *v = l->priv;
	struct vrd *r = td_pool_get(&v->rd_pool);

	if (!r) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	memset(r, 0, sizeof(*r));
	r->v = v;
	r->ext = r->ext_in;
	r->extcap = sizeof(r->ext_in) / sizeof(r->ext_in[0]);
	r->off = req->off;
	r->len = req->len;
	r->iov = req->iov;
	r->iovcnt = req->iovcnt;
	r->req = req;
	r->w.cb = rd_resume;
	rd_resolve(r);
}
