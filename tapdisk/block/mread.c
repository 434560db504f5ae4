/* The read path of a chained image driver (mread.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/mread.h"
#include "tapdisk/core/util.h"

void td_mread_init(struct td_mread *r, const struct td_mread_ops *ops, struct td_fio_pool *fio)
{
	memset(r, 0, sizeof(*r));
	r->ops = ops;
	r->fio = fio;
	r->drv = fio->drv;
	r->ext = r->ext_in;
	r->extcap = sizeof(r->ext_in) / sizeof(r->ext_in[0]);
}

void td_mread_release(struct td_mread *r)
{
	if (r->ext != r->ext_in)
		free(r->ext);
	r->ext = r->ext_in;
	r->extcap = sizeof(r->ext_in) / sizeof(r->ext_in[0]);
}

static void finish_deferred(void *opaque)
{
	struct td_mread *r = opaque;

	r->done(r, r->err);
}

static void finish_later(struct td_mread *r, int err)
{
	r->err = err;
	td_defer_init(&r->defer, finish_deferred, r);
	td_loop_defer(r->fio->ctx->loop, &r->defer);
}

static void io_done(struct td_fio *o, int err)
{
	struct td_mread *r = o->owner;

	td_fio_put(o);
	if (err && !r->err)
		r->err = err;
	if (--r->pending == 0)
		r->done(r, r->err);
}

static void issue(struct td_mread *r)
{
	r->pending = 1; /* held until every I/O is submitted */
	for (unsigned i = 0; i < r->next; i++) {
		struct td_ext *x = &r->ext[i];
		struct td_fio *o;
		int rc;

		if (x->kind == TD_EXT_ZERO) {
			td_iov_zero(r->iov, r->iovcnt, x->boff, x->len);
			continue;
		}
		r->any_data = true;
		o = td_fio_get(r->fio, io_done, r);
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
		r->ops->read(o, x->img, x->host);
	}
	if (--r->pending == 0)
		finish_later(r, r->err);
}

static int ext_push(struct td_mread *r, const struct td_ext *x)
{
	struct td_ext *last = r->next ? &r->ext[r->next - 1] : NULL;

	if (last && last->kind == x->kind &&
	    (x->kind == TD_EXT_ZERO ||
	     (last->img == x->img && last->host + last->len == x->host))) {
		last->len += x->len;
		return 0;
	}
	if (r->next == r->extcap) {
		unsigned cap = r->extcap * 4;
		struct td_ext *n = malloc(cap * sizeof(*n));

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

static void resolve(struct td_mread *r)
{
	while (r->pos < r->len) {
		struct td_ext x;
		int rc = r->ops->map(r, r->off + r->pos, r->len - r->pos, &r->w, &x);

		if (rc == -EAGAIN)
			return; /* resume continues */
		if (rc == 0) {
			x.boff = r->pos;
			rc = ext_push(r, &x);
		}
		if (rc < 0) {
			finish_later(r, rc);
			return;
		}
		r->pos += x.len;
	}
	issue(r);
}

static void resume(struct td_wait *w)
{
	struct td_mread *r = (struct td_mread *)((uint8_t *)w - offsetof(struct td_mread, w));
	int err = w->err;

	if (err) {
		if (r->ops->wait_eio && err != -ENOMEM)
			err = -EIO;
		finish_later(r, err);
		return;
	}
	resolve(r);
}

void td_mread_start(struct td_mread *r)
{
	r->pos = 0;
	r->next = 0;
	r->pending = 0;
	r->err = 0;
	r->any_data = false;
	r->w.cb = resume;
	resolve(r);
}

void td_mread_req(struct td_mread *r, struct td_req *req, void (*done)(struct td_mread *r, int err))
{
	r->off = req->off;
	r->len = req->len;
	r->iov = req->iov;
	r->iovcnt = req->iovcnt;
	r->done = done;
	r->opaque = req;
	td_mread_start(r);
}
