/* record: pass-through layer that logs writes, zeroes, discards and
 * flushes (with their data and flags) for the power-loss simulator, and
 * can hold completions back to reorder them. See tests/drivers/record.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tests/drivers/record.h"

struct rec_child {
	struct td_req child;
	struct td_req *parent;
	struct td_record_log *log; /* NULL: not logging */
	ssize_t idx;		   /* entry in log->ops, -1 for reads */
	uint64_t seq;		   /* submission order: held completions are kept in it */
	int err;
	struct td_defer defer;
};

struct record_priv {
	struct td_record_log *log;
	uint64_t writes, flushes, zeroes; /* pass-through counters */
};

static uint64_t event_clock;
static struct td_record_log *attached, *last_log;

uint64_t td_record_tick(void)
{
	return ++event_clock;
}

uint64_t td_record_now(void)
{
	return event_clock;
}

struct td_record_log *td_record_log_new(bool keep_data)
{
	struct td_record_log *log = calloc(1, sizeof(*log));

	if (log)
		log->keep_data = keep_data;
	return log;
}

void td_record_log_free(struct td_record_log *log)
{
	size_t i;

	if (!log)
		return;
	if (attached == log)
		attached = NULL;
	if (last_log == log)
		last_log = NULL;
	for (i = 0; i < log->n; i++)
		free(log->ops[i].data);
	free(log->ops);
	free(log->held);
	free(log);
}

void td_record_attach(struct td_record_log *log)
{
	attached = log;
}

struct td_record_log *td_record_last_log(void)
{
	return last_log;
}

/* xorshift64*: seeded, so a held run is a function of the seed */
static uint64_t rng_next(struct td_record_log *log)
{
	uint64_t x = log->rng ? log->rng : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	log->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Hands one completion to the layer above; the completion event is
 * stamped here, when the layer above learns of it. */
static void deliver(void *opaque)
{
	struct rec_child *c = opaque;
	struct td_req *parent = c->parent;
	int err = c->err;

	if (c->log && c->idx >= 0) {
		c->log->ops[c->idx].completed = td_record_tick();
		c->log->ops[c->idx].err = err;
	}
	free(c);
	td_req_complete(parent, err);
}

static struct rec_child *take_held(struct td_record_log *log, unsigned k)
{
	struct rec_child *c = log->held[k];

	memmove(&log->held[k], &log->held[k + 1], (log->nheld - k - 1) * sizeof(*log->held));
	log->nheld--;
	return c;
}

static void release_one(struct td_record_log *log, unsigned k)
{
	struct rec_child *c = take_held(log, k);

	td_defer_init(&c->defer, deliver, c);
	td_loop_defer(log->loop, &c->defer);
}

unsigned td_record_release(struct td_record_log *log, unsigned n)
{
	unsigned done = 0;

	while (done < n && log->nheld) {
		release_one(log, (unsigned)(rng_next(log) % log->nheld));
		done++;
	}
	return done;
}

/* HOLD_AUTO: when nothing is left below, one random held completion goes
 * up; the layer above then either sends more down or waits for the next. */
static void auto_release(void *opaque)
{
	struct td_record_log *log = opaque;
	struct rec_child *c;
	unsigned k;

	if (log->mode != TD_RECORD_HOLD_AUTO || log->below || !log->nheld)
		return;
	k = (unsigned)(rng_next(log) % log->nheld);
	c = take_held(log, k);
	deliver(c);
	if (log->mode == TD_RECORD_HOLD_AUTO && !log->below && log->nheld &&
	    !log->auto_defer.queued)
		td_loop_defer(log->loop, &log->auto_defer);
}

void td_record_set_mode(struct td_record_log *log, enum td_record_mode mode, uint64_t seed)
{
	log->mode = mode;
	log->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
	if (!log->loop)
		return;
	if (mode == TD_RECORD_PASS)
		td_record_release(log, log->nheld);
	else if (mode == TD_RECORD_HOLD_AUTO && !log->below && log->nheld &&
		 !log->auto_defer.queued)
		td_loop_defer(log->loop, &log->auto_defer);
}

static void child_done(struct td_req *child, int err)
{
	struct rec_child *c = child->opaque;
	struct td_record_log *log = c->log;
	unsigned k;

	c->err = err;
	if (!log || log->mode == TD_RECORD_PASS) {
		if (log)
			log->below--;
		deliver(c);
		return;
	}
	log->below--;
	if (log->nheld == log->capheld) {
		unsigned cap = log->capheld ? 2 * log->capheld : 64;
		struct rec_child **n = realloc(log->held, cap * sizeof(*n));

		if (!n) {
			log->incomplete = true;
			deliver(c); /* cannot hold it: hand it up now */
			return;
		}
		log->held = n;
		log->capheld = cap;
	}
	/* kept in submission order, not arrival order, so that which one a
	 * seeded pick releases does not depend on timing */
	k = log->nheld++;
	while (k > 0 && log->held[k - 1]->seq > c->seq) {
		log->held[k] = log->held[k - 1];
		k--;
	}
	log->held[k] = c;
	if (log->mode == TD_RECORD_HOLD_AUTO && !log->below && !log->auto_defer.queued)
		td_loop_defer(log->loop, &log->auto_defer);
}

static ssize_t log_append(struct td_record_log *log, const struct td_req *req)
{
	struct td_record_op *op;

	if (log->n == log->cap) {
		size_t cap = log->cap ? 2 * log->cap : 1024;
		struct td_record_op *n = realloc(log->ops, cap * sizeof(*n));

		if (!n) {
			log->incomplete = true;
			return -1;
		}
		log->ops = n;
		log->cap = cap;
	}
	op = &log->ops[log->n];
	memset(op, 0, sizeof(*op));
	op->op = req->op;
	op->flags = req->flags;
	op->off = req->off;
	op->len = req->len;
	if (req->op == TD_OP_WRITE && log->keep_data) {
		uint64_t at = 0;
		int i;

		op->data = malloc(req->len ? req->len : 1);
		if (!op->data) {
			log->incomplete = true;
			return -1;
		}
		for (i = 0; i < req->iovcnt && at < req->len; i++) {
			size_t k = req->iov[i].iov_len;

			if (k > req->len - at)
				k = (size_t)(req->len - at);
			memcpy(op->data + at, req->iov[i].iov_base, k);
			at += k;
		}
	}
	op->issued = td_record_tick();
	return (ssize_t)log->n++;
}

static void record_submit(struct td_layer *l, struct td_req *req)
{
	struct record_priv *p = l->priv;
	struct rec_child *c;

	if (req->op == TD_OP_WRITE)
		p->writes++;
	else if (req->op == TD_OP_FLUSH)
		p->flushes++;
	else if (req->op != TD_OP_READ)
		p->zeroes++;
	if (!p->log) {
		td_layer_submit(l->below, req);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		p->log->incomplete = true;
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	c->child = *req;
	c->child.done = child_done;
	c->child.opaque = c;
	c->parent = req;
	c->log = p->log;
	c->idx = req->op == TD_OP_READ ? -1 : log_append(p->log, req);
	c->seq = p->log->submitted++;
	p->log->below++;
	td_layer_submit(l->below, &c->child);
}

static int record_open(struct td_layer *l, const char *path, const char *opts, char *err,
		       size_t errlen)
{
	struct record_priv *p = l->priv;

	if (opts && *opts) {
		snprintf(err, errlen, "record: takes no options (got '%s')", opts);
		return -EINVAL;
	}
	l->size = l->below->size;
	p->log = attached;
	if (p->log) {
		p->log->loop = l->ctx->loop;
		if (!p->log->auto_defer.queued)
			td_defer_init(&p->log->auto_defer, auto_release, p->log);
		last_log = p->log;
	}
	return 0;
}

static void record_close(struct td_layer *l)
{
	struct record_priv *p = l->priv;

	if (p->log && p->log->nheld)
		td_err("record: closed with %u completions still held", p->log->nheld);
	td_dbg("record: passed %llu writes, %llu flushes, %llu zero/discard requests",
	       (unsigned long long)p->writes, (unsigned long long)p->flushes,
	       (unsigned long long)p->zeroes);
}

/* Online grow passes through; with a log, it is one entry: a flush
 * (aio's grow syncs the file) marked `grow`, `off` the size asked for,
 * stamped at issue and completion like the others. */
static int record_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	struct record_priv *p = l->priv;
	struct td_req fake = {.op = TD_OP_FLUSH, .off = new_size};
	ssize_t idx = p->log ? log_append(p->log, &fake) : -1;
	int rc = td_layer_grow(l->below, new_size, err, errlen);

	if (idx >= 0) {
		p->log->ops[idx].grow = true;
		p->log->ops[idx].completed = td_record_tick();
		p->log->ops[idx].err = rc;
	}
	if (rc == 0)
		l->size = l->below->size;
	return rc;
}

const struct td_driver td_drv_record = {
    .name = "record",
    .summary = "logs writes and flushes passing through, for the crash simulator (tests)",
    .priv_size = sizeof(struct record_priv),
    .open = record_open,
    .close = record_close,
    .read = record_submit,
    .write = record_submit,
    .flush = record_submit,
    .discard = record_submit,
    .write_zeroes = record_submit,
    .grow = record_grow,
};
