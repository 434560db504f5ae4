/* qos: the layer that holds requests until their limits allow them
 * (tapdisk/qos/qos.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/qos/qos_int.h"

enum { Q_READ, Q_WRITE, NQ };

struct qos_item {
	struct qos_item *next;
	struct td_req *req;
	uint64_t t_arrive;
};

struct qos_priv {
	struct td_qos_ctl *st;
	bool own_st; /* no process state (tools): the layer keeps its own */
	struct td_layer *l;
	struct td_pool items;
	struct qos_item *head[NQ], *tail[NQ];
	unsigned queued[NQ];
	struct td_timer timer;	     /* the next held request may go */
	struct td_timer share_timer; /* the host share, looked at again */
	bool share_armed;
	uint64_t last_arrival;
};

static int qdir(const struct td_req *r)
{
	return r->op == TD_OP_READ ? Q_READ : Q_WRITE;
}

static uint64_t qbytes(const struct td_req *r)
{
	return r->op == TD_OP_READ || r->op == TD_OP_WRITE ? r->len : 0;
}

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

/* How long until r may go, split into what its own direction's limits
 * say and what the limits every request shares say. */
static void waits(struct td_qos_ctl *q, const struct td_req *r, uint64_t now, uint64_t *own,
		  uint64_t *shared)
{
	int d = qdir(r) == Q_READ ? TD_QOS_READ : TD_QOS_WRITE;
	uint64_t b = qbytes(r);

	*own = td_tb_wait(&q->iops[d], 1, now);
	if (td_tb_wait(&q->bps[d], b, now) > *own)
		*own = td_tb_wait(&q->bps[d], b, now);
	*shared =
	    max3(td_tb_wait(&q->iops[TD_QOS_TOTAL], 1, now),
		 td_tb_wait(&q->bps[TD_QOS_TOTAL], b, now), td_tb_wait(&q->host_iops_tb, 1, now));
	if (td_tb_wait(&q->host_bps_tb, b, now) > *shared)
		*shared = td_tb_wait(&q->host_bps_tb, b, now);
}

static void take(struct td_qos_ctl *q, const struct td_req *r, uint64_t now)
{
	int d = qdir(r) == Q_READ ? TD_QOS_READ : TD_QOS_WRITE;
	uint64_t b = qbytes(r);

	td_tb_take(&q->iops[TD_QOS_TOTAL], 1, now);
	td_tb_take(&q->iops[d], 1, now);
	td_tb_take(&q->bps[TD_QOS_TOTAL], b, now);
	td_tb_take(&q->bps[d], b, now);
	td_tb_take(&q->host_iops_tb, 1, now);
	td_tb_take(&q->host_bps_tb, b, now);
}

/* Sends down what may go, oldest first; arms the timer for the rest. The
 * oldest held request decides: held by a shared limit, nothing younger
 * passes it; held only by its own direction's limit, the other queue's
 * oldest may go if its limits allow. */
static void pump(struct qos_priv *p)
{
	struct td_qos_ctl *q = p->st;
	uint64_t now = td_now_ns(), next = 0;

	for (;;) {
		struct qos_item *a = p->head[Q_READ], *b = p->head[Q_WRITE], *first, *second, *go;
		uint64_t own1, sh1, own2 = 0, sh2 = 0;

		if (!a && !b)
			break;
		first = !b || (a && a->t_arrive <= b->t_arrive) ? a : b;
		second = first == a ? b : a;
		waits(q, first->req, now, &own1, &sh1);
		go = NULL;
		if (!own1 && !sh1) {
			go = first;
		} else if (!sh1 && second) {
			waits(q, second->req, now, &own2, &sh2);
			if (!own2 && !sh2)
				go = second;
		}
		if (!go) {
			next = own1 > sh1 ? own1 : sh1;
			if (second && !sh1) {
				uint64_t w2 = own2 > sh2 ? own2 : sh2;

				if (w2 && w2 < next)
					next = w2;
			}
			break;
		}
		int d = qdir(go->req);
		struct td_req *r = go->req;
		uint64_t held = now - go->t_arrive;

		p->head[d] = go->next;
		if (!p->head[d])
			p->tail[d] = NULL;
		p->queued[d]--;
		take(q, r, now);
		q->passed++;
		if (held > 1000000) { /* held for more than a millisecond */
			q->delayed++;
			q->delay_ns += held;
			if (held > q->max_delay_ns)
				q->max_delay_ns = held;
		}
		td_pool_put(&p->items, go);
		td_layer_submit(p->l->below, r);
	}
	if (next)
		td_loop_timer_arm(p->l->ctx->loop, &p->timer, next);
	else
		td_loop_timer_cancel(p->l->ctx->loop, &p->timer);
}

static void on_timer(void *opaque)
{
	pump(opaque);
}

/* The host arbiter: busy while requests come, this VBD's share of the
 * host's capacity looked at again every QOS_SHARE_NS. */
static void share_update(struct qos_priv *p)
{
	struct td_qos_ctl *q = p->st;
	uint64_t now = td_now_ns(), sum, w;
	bool idle =
	    now - p->last_arrival > QOS_IDLE_NS && !p->queued[Q_READ] && !p->queued[Q_WRITE];

	td_qos_arbiter_busy(q->arb, !idle);
	if (idle) {
		p->share_armed = false;
		return;
	}
	sum = td_qos_arbiter_busy_weights(q->arb, &q->busy_vbds);
	w = td_qos_arbiter_weight(q->arb);
	q->share_iops = q->host_iops ? (q->host_iops * w + sum - 1) / sum : 0;
	q->share_bps = q->host_bps ? (q->host_bps * w + sum - 1) / sum : 0;
	td_tb_set(&q->host_iops_tb, q->share_iops, 0, now);
	td_tb_set(&q->host_bps_tb, q->share_bps, 0, now);
	td_loop_timer_arm(p->l->ctx->loop, &p->share_timer, QOS_SHARE_NS);
	p->share_armed = true;
	pump(p); /* a larger share lets held requests go now */
}

static void on_share_timer(void *opaque)
{
	share_update(opaque);
}

static void qos_submit(struct td_layer *l, struct td_req *req)
{
	struct qos_priv *p = l->priv;
	struct qos_item *it;
	int d = qdir(req);

	if (p->st->arb) {
		p->last_arrival = td_now_ns();
		if (!p->share_armed)
			share_update(p);
	}
	if (!td_qos_limits_any(&p->st->lim) && !p->st->arb && !p->head[Q_READ] &&
	    !p->head[Q_WRITE]) {
		p->st->passed++;
		td_layer_submit(l->below, req); /* nothing to hold it for */
		return;
	}
	it = td_pool_get(&p->items);
	if (!it) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	it->next = NULL;
	it->req = req;
	it->t_arrive = td_now_ns();
	if (p->tail[d])
		p->tail[d]->next = it;
	else
		p->head[d] = it;
	p->tail[d] = it;
	p->queued[d]++;
	pump(p);
}

void qos_layer_kick(struct td_layer *l)
{
	pump(l->priv);
}

unsigned qos_layer_queued(struct td_layer *l)
{
	struct qos_priv *p = l->priv;

	return p->queued[Q_READ] + p->queued[Q_WRITE];
}

static int qos_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct qos_priv *p = l->priv;
	struct td_qos_ctl *q = l->ctx->qos;
	const char *o = opts ? opts : "";
	int rc;

	p->l = l;
	td_pool_init(&p->items, sizeof(struct qos_item));
	td_timer_init(&p->timer, on_timer, p);
	td_timer_init(&p->share_timer, on_share_timer, p);
	if (!q) {
		q = td_qos_ctl_new();
		if (!q) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		p->own_st = true;
	}
	if (q->layer) {
		snprintf(err, errlen, "qos: one qos layer per VBD");
		rc = -EINVAL;
		goto fail;
	}
	if (!q->have_spec || strcmp(q->spec_opts, o) != 0) {
		/* a new spec: its options are the limits */
		struct td_qos_limits n;
		char *copy = strdup(o);

		td_qos_limits_default(&n);
		rc = copy ? td_qos_limits_parse(opts, &n, err, errlen) : -ENOMEM;
		if (rc < 0) {
			free(copy);
			goto fail;
		}
		free(q->spec_opts);
		q->spec_opts = copy;
		q->lim = n;
		q->have_spec = true;
		qos_apply(q, td_now_ns());
	}
	q->layer = l;
	p->st = q;
	l->size = l->below->size;
	return 0;
fail:
	if (p->own_st)
		td_qos_ctl_free(q);
	p->own_st = false;
	return rc;
}

static void qos_close(struct td_layer *l)
{
	struct qos_priv *p = l->priv;

	if (!p->st)
		return;
	td_loop_timer_cancel(l->ctx->loop, &p->timer);
	td_loop_timer_cancel(l->ctx->loop, &p->share_timer);
	if (p->st->arb)
		td_qos_arbiter_busy(p->st->arb, false);
	p->st->layer = NULL;
	if (p->own_st)
		td_qos_ctl_free(p->st);
	p->st = NULL;
	td_pool_drain(&p->items);
}

/* Online grow: the layer exports what the layer below does. */
static int qos_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	int rc = td_layer_grow(l->below, new_size, err, errlen);

	if (rc == 0)
		l->size = l->below->size;
	return rc;
}

const struct td_driver td_drv_qos = {
    .name = "qos",
    .summary = "per-VBD limits on requests and bytes per second, with bursts and a weight "
	       "(qos,iops=N,bps=B,...)",
    .priv_size = sizeof(struct qos_priv),
    .open = qos_open,
    .close = qos_close,
    .read = qos_submit,
    .write = qos_submit,
    .discard = qos_submit,
    .write_zeroes = qos_submit,
    .grow = qos_grow,
};
