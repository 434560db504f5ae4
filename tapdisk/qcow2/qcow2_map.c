/* Guest -> host mapping down the backing chain, and the read path.
 *
 * A read is resolved piece by piece into extents (data at a host offset
 * of some image of the chain, or zeros), merging neighbours, so that
 * clusters contiguous in the file become one I/O. Resolution parks while
 * an L2 table loads and resumes where it stopped. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/qcow2/qcow2_int.h"

void q2_log_bad(struct q2 *q, uint32_t img, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (!q->log_left)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	td_err("qcow2: '%s': %s%s", q->img[img]->path, msg,
	       --q->log_left ? "" : " (further messages suppressed)");
}

int q2_map(struct q2 *q, uint32_t level, uint64_t g, uint64_t n, struct td_wait *w,
	   struct q2ext *out)
{
	uint32_t i;

	memset(out, 0, sizeof(*out));
	for (i = level; i < q->nimg; i++) {
		struct q2img *im = q->img[i];
		const struct qcow2_hdr *h = &im->h;
		uint64_t cs, in, l1i, l2off, l2i, host;
		struct q2cent *e;
		bool copied;
		int rc;

		if (g >= im->vsize)
			break; /* past the end of a shorter backing file: zeros */
		if (n > im->vsize - g)
			n = im->vsize - g;
		if (im->raw) {
			out->kind = Q2E_DATA;
			out->img = i;
			out->host = g;
			out->len = n;
			return 0;
		}
		cs = h->cluster_size;
		in = g & (cs - 1);
		if (n > cs - in)
			n = cs - in;
		l1i = g >> (h->cluster_bits + h->l2_bits);
		if (l1i >= im->l1_entries)
			continue;
		rc = qcow2_l1_decode(q2_l1_entry(im, l1i), h->cluster_bits, &l2off);
		if (rc < 0) {
			q2_log_bad(q, i, "invalid L1 entry %llu", (unsigned long long)l1i);
			return -EIO;
		}
		if (rc == 0)
			continue;
		rc = q2c_get(&q->l2c, i, l2off, w, &e);
		if (rc < 0)
			return rc;
		l2i = (g >> h->cluster_bits) & ((1ull << h->l2_bits) - 1);
		switch (qcow2_l2_decode(qcow2_be64(e->buf + 8 * l2i), h->version, h->cluster_bits,
					&host, &copied)) {
		case QCOW2_C_UNALLOC:
			continue;
		case QCOW2_C_ZERO_PLAIN:
		case QCOW2_C_ZERO_ALLOC:
			out->kind = Q2E_ZERO;
			out->len = n;
			return 0;
		case QCOW2_C_NORMAL:
			/* a cluster may end past EOF (never written in full), not start there */
			if (host + cs > QCOW2_MAX_HOST_OFFSET || host < cs ||
			    host >= im->file_size) {
				q2_log_bad(q, i,
					   "L2 entry for guest offset %llu points at %llu, outside "
					   "the file",
					   (unsigned long long)g, (unsigned long long)host);
				return -EIO;
			}
			out->kind = Q2E_DATA;
			out->img = i;
			out->host = host + in;
			out->len = n;
			return 0;
		case QCOW2_C_COMPRESSED:
			q2_log_bad(q, i,
				   "compressed cluster at guest offset %llu: compressed clusters "
				   "are not supported (rewrite the image with 'qemu-img convert -O "
				   "qcow2')",
				   (unsigned long long)g);
			return -EIO;
		case QCOW2_C_INVALID:
		default:
			q2_log_bad(q, i, "invalid L2 entry for guest offset %llu",
				   (unsigned long long)g);
			return -EIO;
		}
	}
	out->kind = Q2E_ZERO;
	out->len = n;
	return 0;
}

/* ---- the read state machine -------------------------------------------------- */

struct q2rd *q2rd_get(struct q2 *q)
{
	struct q2rd *r = td_pool_get(&q->rd_pool);

	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->q = q;
	r->ext = r->ext_in;
	r->extcap = sizeof(r->ext_in) / sizeof(r->ext_in[0]);
	return r;
}

void q2rd_put(struct q2rd *r)
{
	struct q2 *q = r->q;

	if (r->ext != r->ext_in)
		free(r->ext);
	td_pool_put(&q->rd_pool, r);
}

static void rd_finish_deferred(void *opaque)
{
	struct q2rd *r = opaque;

	r->done(r, r->err);
}

static void rd_finish_later(struct q2rd *r, int err)
{
	r->err = err;
	td_defer_init(&r->defer, rd_finish_deferred, r);
	td_loop_defer(r->q->ctx->loop, &r->defer);
}

static void rd_io_done(struct td_fio *o, int err)
{
	struct q2rd *r = o->owner;

	td_fio_put(o);
	if (err && !r->err)
		r->err = err;
	if (--r->pending == 0)
		r->done(r, r->err);
}

static void rd_issue(struct q2rd *r)
{
	unsigned i;

	r->pending = 1; /* held until every I/O is submitted */
	for (i = 0; i < r->next; i++) {
		struct q2ext *x = &r->ext[i];
		struct td_fio *o;

		if (x->kind == Q2E_ZERO) {
			td_iov_zero(r->iov, r->iovcnt, x->boff, x->len);
			continue;
		}
		r->any_data = true;
		o = td_fio_get(&r->q->fio, rd_io_done, r);
		if (!o || td_fio_add_slice(o, r->iov, r->iovcnt, x->boff, x->len) < 0) {
			if (o)
				td_fio_put(o);
			r->err = -ENOMEM;
			break;
		}
		r->pending++;
		q2io_read(o, x->img, x->host);
	}
	if (--r->pending == 0)
		rd_finish_later(r, r->err);
}

static int ext_push(struct q2rd *r, const struct q2ext *x)
{
	struct q2ext *last = r->next ? &r->ext[r->next - 1] : NULL;

	if (last && last->kind == x->kind &&
	    (x->kind == Q2E_ZERO || (last->img == x->img && last->host + last->len == x->host))) {
		last->len += x->len;
		return 0;
	}
	if (r->next == r->extcap) {
		unsigned cap = r->extcap * 4;
		struct q2ext *n = malloc(cap * sizeof(*n));

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

static void rd_resolve(struct q2rd *r)
{
	while (r->pos < r->len) {
		struct q2ext x;
		int rc = q2_map(r->q, r->level, r->off + r->pos, r->len - r->pos, &r->w, &x);

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
	struct q2rd *r = (struct q2rd *)((uint8_t *)w - offsetof(struct q2rd, w));

	if (w->err) {
		rd_finish_later(r, w->err);
		return;
	}
	rd_resolve(r);
}

void q2_read_start(struct q2rd *r)
{
	r->pos = 0;
	r->next = 0;
	r->pending = 0;
	r->err = 0;
	r->any_data = false;
	r->w.cb = rd_resume;
	rd_resolve(r);
}
