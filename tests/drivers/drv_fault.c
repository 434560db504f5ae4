/* fault: error injection for tests. Stacks anywhere in a chain and fails
 * or delays selected requests so every layer's failure path can be tested.
 *
 * Options (comma separated, in the spec: "fault,fail_nth=3:aio:/img"):
 *   fail_nth=N      fail the Nth matching request (1-based), once
 *   fail_every=N    fail every Nth matching request
 *   fail_block=B    fail every matching request that touches block B
 *   fail_after=N    fail every matching request after the first N
 *   op=read|write|flush|any   which requests match (default any)
 *   err=eio|enospc|eperm      the error returned (default eio)
 *   delay_ms=D      delay the completion of matching requests by D ms
 *   delay_submit_ms=D  hold matching requests D ms before passing them down
 *                   (a write "in flight" that has not reached the image yet)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"

enum fault_match { M_ANY, M_READ, M_WRITE, M_FLUSH };

struct fault_priv {
	uint64_t fail_nth, fail_every, fail_after, delay_ms, delay_submit_ms;
	int64_t fail_block;
	enum fault_match match;
	int err;
	uint64_t seen;
};

struct fault_child {
	struct td_req child;
	struct td_req *parent;
	struct td_layer *l;
	struct td_timer timer;
	int err;
};

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(v, &end, 0);
	return (errno || end == v || *end) ? -EINVAL : 0;
}

/* One option of the spec: 0, or -EINVAL for one we do not know. */
static int fault_opt(char *tok, void *opaque)
{
	struct fault_priv *p = opaque;
	char *eq = strchr(tok, '=');
	uint64_t v = 0;

	if (!eq)
		return -EINVAL;
	*eq++ = 0;
	if (!strcmp(tok, "op")) {
		if (!strcmp(eq, "read"))
			p->match = M_READ;
		else if (!strcmp(eq, "write"))
			p->match = M_WRITE;
		else if (!strcmp(eq, "flush"))
			p->match = M_FLUSH;
		else if (!strcmp(eq, "any"))
			p->match = M_ANY;
		else
			return -EINVAL;
	} else if (!strcmp(tok, "err")) {
		if (!strcmp(eq, "eio"))
			p->err = -EIO;
		else if (!strcmp(eq, "enospc"))
			p->err = -ENOSPC;
		else if (!strcmp(eq, "eperm"))
			p->err = -EPERM;
		else
			return -EINVAL;
	} else {
		if (parse_u64(eq, &v) < 0)
			return -EINVAL;
		if (!strcmp(tok, "fail_nth"))
			p->fail_nth = v;
		else if (!strcmp(tok, "fail_every"))
			p->fail_every = v;
		else if (!strcmp(tok, "fail_after"))
			p->fail_after = v;
		else if (!strcmp(tok, "fail_block"))
			p->fail_block = (int64_t)v;
		else if (!strcmp(tok, "delay_ms"))
			p->delay_ms = v;
		else if (!strcmp(tok, "delay_submit_ms"))
			p->delay_submit_ms = v;
		else
			return -EINVAL;
	}
	return 0;
}

static int fault_open(struct td_layer *l, const char *path, const char *opts, char *err,
		      size_t errlen)
{
	struct fault_priv *p = l->priv;
	int rc;

	(void)path;
	p->fail_block = -1;
	p->err = -EIO;
	l->size = l->below->size;
	rc = td_opts_each(opts, fault_opt, p);
	if (rc == -EINVAL)
		snprintf(err, errlen,
			 "fault: bad option in '%s' (known: fail_nth, fail_every, fail_after, "
			 "fail_block, op=read|write|flush|any, err=eio|enospc|eperm, delay_ms, "
			 "delay_submit_ms)",
			 opts);
	return rc;
}

static bool matches(struct fault_priv *p, struct td_req *req)
{
	switch (p->match) {
	case M_READ:
		return req->op == TD_OP_READ;
	case M_WRITE:
		return req->op == TD_OP_WRITE || req->op == TD_OP_WRITE_ZEROES ||
		       req->op == TD_OP_DISCARD;
	case M_FLUSH:
		return req->op == TD_OP_FLUSH;
	default:
		return true;
	}
}

static bool should_fail(struct fault_priv *p, struct td_req *req)
{
	uint64_t n;

	if (!matches(p, req))
		return false;
	n = ++p->seen;
	if (p->fail_nth && n == p->fail_nth)
		return true;
	if (p->fail_every && n % p->fail_every == 0)
		return true;
	if (p->fail_after && n > p->fail_after)
		return true;
	if (p->fail_block >= 0 && req->len) {
		uint64_t b = (uint64_t)p->fail_block * TD_BLOCK_SIZE;

		if (b >= req->off && b < req->off + req->len)
			return true;
	}
	return false;
}

static void delayed_done(void *opaque)
{
	struct fault_child *c = opaque;
	struct td_req *parent = c->parent;
	int err = c->err;

	free(c);
	td_req_complete(parent, err);
}

static void child_done(struct td_req *child, int err)
{
	struct fault_child *c = child->opaque;
	struct fault_priv *p = c->l->priv;

	c->err = err;
	td_timer_init(&c->timer, delayed_done, c);
	td_loop_timer_arm(c->l->ctx->loop, &c->timer, p->delay_ms * 1000000ull);
}

static void submit_later(void *opaque)
{
	struct fault_child *c = opaque;

	td_layer_submit(c->l->below, &c->child);
}

static void fault_submit(struct td_layer *l, struct td_req *req)
{
	struct fault_priv *p = l->priv;
	struct fault_child *c;

	if (should_fail(p, req)) {
		td_dbg("fault: failing %d request at %llu+%llu", req->op,
		       (unsigned long long)req->off, (unsigned long long)req->len);
		td_req_complete_later(l->ctx, req, p->err);
		return;
	}
	if ((!p->delay_ms && !p->delay_submit_ms) || !matches(p, req)) {
		td_layer_submit(l->below, req);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	c->child = *req;
	c->child.done = child_done;
	c->child.opaque = c;
	c->parent = req;
	c->l = l;
	if (p->delay_submit_ms) {
		td_timer_init(&c->timer, submit_later, c);
		td_loop_timer_arm(l->ctx->loop, &c->timer, p->delay_submit_ms * 1000000ull);
		return;
	}
	td_layer_submit(l->below, &c->child);
}

const struct td_driver td_drv_fault = {
    .name = "fault",
    .summary = "error and delay injection (tests)",
    .priv_size = sizeof(struct fault_priv),
    .open = fault_open,
    .read = fault_submit,
    .write = fault_submit,
    .flush = fault_submit,
    .discard = fault_submit,
    .write_zeroes = fault_submit,
};
