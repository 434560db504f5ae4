/* Dispatch through the chain and the single completion path. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tapdisk/block/driver.h"

void td_req_complete(struct td_req *req, int err)
{
	req->err = err;
	req->done(req, err);
}

static void complete_deferred(void *opaque)
{
	struct td_req *req = opaque;

	req->done(req, req->err);
}

void td_req_complete_later(struct td_ctx *ctx, struct td_req *req, int err)
{
	req->err = err;
	td_defer_init(&req->defer, complete_deferred, req);
	td_loop_defer(ctx->loop, &req->defer);
}

/* A NULL callback passes the request to the layer below unchanged. The
 * bottom layer's missing callbacks mean "not supported", except discard,
 * which is advisory and succeeds as a no-op. */
void td_layer_submit(struct td_layer *l, struct td_req *req)
{
	void (*fn)(struct td_layer *, struct td_req *) = NULL;

	for (; l; l = l->below) {
		switch (req->op) {
		case TD_OP_READ:
			fn = l->drv->read;
			break;
		case TD_OP_WRITE:
			fn = l->drv->write;
			break;
		case TD_OP_FLUSH:
			fn = l->drv->flush;
			break;
		case TD_OP_DISCARD:
			fn = l->drv->discard;
			break;
		case TD_OP_WRITE_ZEROES:
			fn = l->drv->write_zeroes;
			break;
		}
		if (fn) {
			fn(l, req);
			return;
		}
		if (!l->below)
			break;
	}
	if (!l) {
		req->err = -EIO;
		req->done(req, -EIO);
		return;
	}
	td_req_complete_later(l->ctx, req, req->op == TD_OP_DISCARD ? 0 : -EOPNOTSUPP);
}

struct sync_state {
	bool done;
	int err;
};

static void sync_done(struct td_req *req, int err)
{
	struct sync_state *st = req->opaque;

	st->err = err;
	st->done = true;
}

int td_layer_sync_io(struct td_layer *l, enum td_op op, uint64_t off, void *buf, uint64_t len,
		     unsigned flags)
{
	struct sync_state st = {false, 0};
	struct iovec iov = {.iov_base = buf, .iov_len = (size_t)len};
	struct td_req req;

	memset(&req, 0, sizeof(req));
	req.op = op;
	req.flags = flags;
	req.off = off;
	req.len = len;
	req.iov = &iov;
	req.iovcnt = buf ? 1 : 0;
	req.done = sync_done;
	req.opaque = &st;
	td_layer_submit(l, &req);
	while (!st.done) {
		int rc = td_loop_run_once(l->ctx->loop, 1000);

		if (rc < 0)
			return rc;
	}
	return st.err;
}

int td_layer_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	for (; l; l = l->below)
		if (l->drv->identity)
			return l->drv->identity(l, id, where, wlen);
	return -ENOTSUP;
}

int td_layer_uuid(const struct td_layer *l, uint8_t uuid[16])
{
	for (; l; l = l->below)
		if (l->drv->uuid && l->drv->uuid(l, uuid) == 0)
			return 0;
	return -ENOENT;
}

struct td_layer *td_layer_image(struct td_layer *l)
{
	while (l && l->below)
		l = l->below;
	return l;
}

const char *td_layer_ephemeral(const struct td_layer *l)
{
	while (l && l->below)
		l = l->below;
	return l && l->drv->ephemeral ? l->drv->ephemeral(l) : NULL;
}

int td_layer_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	int rc;

	if (!l->drv->grow) {
		snprintf(err, errlen,
			 "the %s layer cannot grow online (its driver has no grow operation)",
			 l->drv->name);
		return -ENOTSUP;
	}
	if (new_size % TD_BLOCK_SIZE) {
		snprintf(err, errlen, "size %llu is not a multiple of %u",
			 (unsigned long long)new_size, TD_BLOCK_SIZE);
		return -EINVAL;
	}
	err[0] = 0;
	rc = l->drv->grow(l, new_size, err, errlen);
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "%s: grow failed: %s", l->drv->name, strerror(-rc));
	return rc;
}
