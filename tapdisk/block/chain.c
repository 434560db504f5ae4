#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/chain.h"
#include "tapdisk/core/log.h"

static struct td_layer *layer_new(struct td_ctx *ctx, const struct td_driver *drv, const char *opts)
{
	struct td_layer *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->drv = drv;
	l->ctx = ctx;
	if (opts && !(l->opts = strdup(opts)))
		goto fail;
	if (drv->priv_size && !(l->priv = calloc(1, drv->priv_size)))
		goto fail;
	return l;
fail:
	free(l->opts);
	free(l);
	return NULL;
}

static void layer_free(struct td_layer *l)
{
	free(l->priv);
	free(l->opts);
	free(l);
}

/* Closes l and everything below it. */
static void close_down(struct td_layer *l)
{
	while (l) {
		struct td_layer *below = l->below;

		if (l->drv->close)
			l->drv->close(l);
		layer_free(l);
		l = below;
	}
}

static int open_layer(struct td_layer *l, const char *path, char *err, size_t errlen)
{
	int rc;

	err[0] = 0;
	rc = l->drv->open ? l->drv->open(l, path, l->opts, err, errlen) : 0;
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s: open failed: %s", l->drv->name, strerror(-rc));
		return rc;
	}
	if (!l->drv->open && l->below)
		l->size = l->below->size;
	if (l->size % TD_BLOCK_SIZE) {
		snprintf(err, errlen, "%s: exported size %llu is not a multiple of %u",
			 l->drv->name, (unsigned long long)l->size, TD_BLOCK_SIZE);
		if (l->drv->close)
			l->drv->close(l);
		return -EINVAL;
	}
	return 0;
}

int td_chain_insert_below(struct td_layer *l, const struct td_driver *drv, const char *opts,
			  const void *arg, char *err, size_t errlen)
{
	struct td_layer *n = layer_new(l->ctx, drv, opts);
	int rc;

	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n->below = l->below;
	n->arg = arg;
	rc = open_layer(n, NULL, err, errlen);
	n->arg = NULL;
	if (rc < 0) {
		n->below = NULL;
		layer_free(n);
		return rc;
	}
	l->below = n;
	return 0;
}

int td_chain_open(struct td_ctx *ctx, const char *spec, struct td_chain **out, char *err,
		  size_t errlen)
{
	struct td_spec s;
	struct td_chain *c = NULL;
	struct td_layer *cur = NULL;
	char canon[TD_SPEC_MAX_LEN + 64];
	int rc, i;

	rc = td_spec_parse(spec, &s, err, errlen);
	if (rc < 0)
		return rc;
	rc = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c || td_spec_format(&s, canon, sizeof(canon)) < 0 || !(c->spec = strdup(canon)) ||
	    !(c->path = strdup(s.path))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (i = s.nlayers - 1; i >= 0; i--) {
		struct td_layer *l = layer_new(ctx, s.layers[i].drv, s.layers[i].opts);

		if (!l) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		l->below = cur;
		rc = open_layer(l, s.layers[i].drv->is_image ? s.path : NULL, err, errlen);
		if (rc < 0) {
			l->below = NULL;
			layer_free(l);
			goto fail;
		}
		cur = l;
	}
	c->top = cur;
	td_spec_free(&s);
	*out = c;
	return 0;
fail:
	close_down(cur);
	if (c) {
		free(c->spec);
		free(c->path);
		free(c);
	}
	td_spec_free(&s);
	return rc;
}

void td_chain_close(struct td_chain *c)
{
	if (!c)
		return;
	close_down(c->top);
	free(c->spec);
	free(c->path);
	free(c);
}

void td_chain_describe(const struct td_chain *c, char *buf, size_t len)
{
	const struct td_layer *l;
	size_t n = 0;

	buf[0] = 0;
	for (l = c->top; l && n < len; l = l->below) {
		int w = snprintf(buf + n, len - n, "%s%s", n ? ">" : "", l->drv->name);

		if (w < 0)
			break;
		n += (size_t)w;
	}
}

/* ---- quiesce, top down ------------------------------------------------------- */

static void quiesce_step(void *opaque)
{
	struct td_chain *c = opaque;
	struct td_layer *l = c->q_next;

	while (l && !l->drv->quiesce)
		l = l->below;
	if (!l) {
		void (*cb)(void *, int) = c->q_cb;

		c->q_cb = NULL;
		cb(c->q_opaque, c->q_err);
		return;
	}
	c->q_next = l->below;
	l->quiesce_opaque = c;
	l->drv->quiesce(l);
}

void td_layer_quiesced(struct td_layer *l, int err)
{
	struct td_chain *c = l->quiesce_opaque;

	l->quiesce_opaque = NULL;
	if (err) {
		td_err("%s: quiesce failed: %s", l->drv->name, strerror(-err));
		if (!c->q_err)
			c->q_err = err;
	}
	/* the next layer starts from the loop, not from inside this one */
	td_defer_init(&c->q_defer, quiesce_step, c);
	td_loop_defer(l->ctx->loop, &c->q_defer);
}

void td_chain_quiesce(struct td_chain *c, void (*cb)(void *opaque, int err), void *opaque)
{
	c->q_cb = cb;
	c->q_opaque = opaque;
	c->q_err = 0;
	c->q_next = c->top;
	td_defer_init(&c->q_defer, quiesce_step, c);
	td_loop_defer(c->top->ctx->loop, &c->q_defer);
}

struct close_sync {
	bool done;
	int err;
};

static void close_sync_cb(void *opaque, int err)
{
	struct close_sync *cs = opaque;

	cs->err = err;
	cs->done = true;
}

int td_chain_close_sync(struct td_chain *c)
{
	struct td_loop *loop;
	struct close_sync cs = {false, 0};
	int rc;

	if (!c)
		return 0;
	loop = c->top->ctx->loop;
	rc = td_layer_sync_io(c->top, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc == -EOPNOTSUPP || rc == -EROFS)
		rc = 0;
	td_chain_quiesce(c, close_sync_cb, &cs);
	while (!cs.done) {
		int r = td_loop_run_once(loop, 1000);

		if (r < 0) {
			/* cannot wait here: leave it as a crash would */
			td_chain_close(c);
			return r;
		}
	}
	td_chain_close(c);
	return rc ? rc : cs.err;
}
