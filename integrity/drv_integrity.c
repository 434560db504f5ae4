/* integrity: a MAC per 4 KiB block, checked on every read, with
 * data-before-ack ordering and crash consistency without writing data
 * twice. The ordering and the recovery argument are in integ.h and
 * docs/FORMAT.md; this file holds the request state machine:
 *
 *   read:  lock (shared) -> tag pages -> data -> verify on workers
 *   write: lock (exclusive) -> tag pages -> MACs on workers -> journal
 *          records durable -> data write -> tags into the cache -> ack
 *   zero:  lock (exclusive) -> tag pages -> one zero-range record ->
 *          write-zeroes/discard below (+ zero whole tag pages) -> ack
 *   flush: lower flush -> flush point (fpoint.c) -> ack; a FUA write waits
 *          for a flush point holding it after its data write
 *
 * A request waits for the components below by parking: its pin on the
 * tag cache (pages loading), its journal entry (records durable), its
 * flush-point waiter (FUA). The block range lock keeps a block's table
 * entry stable while a read verifies it and makes writes to one block
 * strictly one after another, so a block has exactly one valid tag at any
 * time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/priv.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/core/util.h"

#define MIN_PART_BLOCKS 16 /* a worker's share of one request, at least */
#define TABS_INLINE 4

enum ti_kind { TI_READ, TI_WRITE, TI_ZERO };

enum {
	ST_LOCK,
	ST_PAGES,
	ST_MAC,
	ST_JOURNAL,
	ST_DATA,
	ST_VERIFY,
	ST_RESOLVE,
#ifdef TD_TEST_BUILD
	ST_EARLY_DATA, /* broken on purpose: data before its journal records */
#endif
};

struct ti_req {
	struct td_req *parent;
	struct ti_priv *p;
	enum ti_kind kind;
	uint64_t b0, n;
	int stage;
	int pending; /* lower requests in flight */
	int err;
	struct td_rl_item rl; /* block range lock */
	struct ti_pin pin;    /* tag pages */
	struct ti_jent je;    /* journal records */
	struct ti_fpw fpw;    /* writes: flush-point tracking */
	uint64_t seq0;
	uint8_t *tags; /* writes: n * TI_TAG_LEN */
	struct td_fanout fan;
	/* verify: the data of the request's tag pages, looked up on the loop
	 * thread (workers never walk the cache) */
	const uint8_t **tabs;
	const uint8_t *tabs_inline[TABS_INLINE];
	struct td_req child;
	struct td_req tzero; /* zero: the tag-region write-zeroes */
	struct iovec iov;
	void *bounce;
	size_t bounce_len;
};

static void finish(struct ti_req *r, int err);
static void step(struct ti_req *r);

/* ---- helpers ---------------------------------------------------------------- */

static void log_failure(struct ti_priv *p, uint64_t block)
{
	unsigned i;

	for (i = 0; i < p->nlogged && i < 64; i++)
		if (p->logged[i] == block)
			return;
	p->logged[p->nlogged++ % 64] = block;
	td_err("integrity: block %llu (byte offset %llu) failed verification: refusing to "
	       "return it (EIO)",
	       (unsigned long long)block, (unsigned long long)block * TI_BLOCK);
}

static void data_done(struct td_req *child, int err)
{
	struct ti_req *r = child->opaque;

	if (err && !r->err)
		r->err = err;
	if (--r->pending > 0)
		return;
	step(r);
}

/* The request's own blocks, with its buffers. */
static void data_io(struct ti_req *r, enum td_op op, unsigned flags)
{
	memset(&r->child, 0, sizeof(r->child));
	r->child.op = op;
	r->child.flags = flags;
	r->child.off = r->p->c.p.data_start + r->b0 * TI_BLOCK;
	r->child.len = r->n * TI_BLOCK;
	r->child.iov = r->parent->iov;
	r->child.iovcnt = r->parent->iovcnt;
	r->child.done = data_done;
	r->child.opaque = r;
	r->pending = 1;
	td_layer_submit(r->p->c.l->below, &r->child);
}

static uint8_t *block_data(const struct ti_req *r, uint64_t k)
{
	return td_iov_at(r->parent->iov, r->parent->iovcnt, k * TI_BLOCK);
}

/* ---- MACs and verification, on the workers ---------------------------------- */

static void mac_fn(struct td_fanout_part *part, int worker)
{
	struct ti_req *r = part->f->opaque;
	struct ti_core *c = &r->p->c;
	uint64_t k;

	for (k = part->first; k < part->first + part->n; k++)
		if (ti_block_tag(ti_tag_mac(c, worker, r->b0 + k), c->uuid, r->b0 + k, r->seq0 + k,
				 block_data(r, k), r->tags + k * TI_TAG_LEN) < 0)
			part->err = -EIO;
}

static void verify_fn(struct td_fanout_part *part, int worker)
{
	static const uint8_t zero[TI_ENTRY_LEN];
	struct ti_req *r = part->f->opaque;
	struct ti_core *c = &r->p->c;
	uint64_t pg0 = r->b0 / TI_ENTRIES_PER_PAGE, k;
	uint8_t tag[TI_TAG_LEN];

	for (k = part->first; k < part->first + part->n; k++) {
		uint64_t b = r->b0 + k;
		const uint8_t *tab = r->tabs[b / TI_ENTRIES_PER_PAGE - pg0];
		const uint8_t *e = tab ? tab + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN : NULL;
		uint8_t *data = block_data(r, k);
		int ok = 0;

		if (!e) {
			ok = 0;
		} else if (memcmp(e, zero, TI_ENTRY_LEN) == 0) {
			/* never written, or zeroed: reads as zeros */
			memset(data, 0, TI_BLOCK);
			ok = 1;
		} else if (ti_block_tag(ti_tag_mac(c, worker, b), c->uuid, b, ti_le64(e), data,
					tag) == 0) {
			ok = td_ct_memeq(tag, e + 8, TI_TAG_LEN);
		}
		if (!ok) {
			if (!part->failed)
				part->first_failed = b;
			part->failed++;
		}
	}
}

static void fan_done(struct td_fanout *f)
{
	step(f->opaque);
}

static void fan_out(struct ti_req *r, void (*fn)(struct td_fanout_part *, int))
{
	r->fan.fn = fn;
	r->fan.done = fan_done;
	r->fan.opaque = r;
	td_fanout_run(r->p->c.ctx->workers, &r->fan, r->n, MIN_PART_BLOCKS, TI_BLOCK);
}

/* The tag pages of a read, for verify_fn. */
static int resolve_tabs(struct ti_req *r)
{
	uint64_t first = r->b0 / TI_ENTRIES_PER_PAGE;
	uint64_t count = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE - first + 1, i;

	r->tabs = r->tabs_inline;
	if (count > TABS_INLINE && !(r->tabs = calloc(count, sizeof(*r->tabs))))
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		struct ti_page *pg = ti_page_find(&r->p->tc, 0, first + i);

		r->tabs[i] = pg && pg->loaded ? pg->data : NULL;
	}
	return 0;
}

/* ---- table updates ------------------------------------------------------------- */

static void apply_write(struct ti_req *r)
{
	uint64_t k;

	for (k = 0; k < r->n; k++)
		ti_entry_set(&r->p->tc, r->b0 + k, r->seq0 + k, r->tags + k * TI_TAG_LEN);
}

/* After a failed data write the block holds the old data, the new data
 * or a mix: read it back and keep, per block, the tag that verifies. */
static void resolve_done(struct td_req *child, int err)
{
	struct ti_req *r = child->opaque;
	struct ti_core *c = &r->p->c;
	uint8_t tag[TI_TAG_LEN];
	uint64_t k, kept_new = 0;

	for (k = 0; !err && k < r->n; k++) {
		uint64_t b = r->b0 + k;

		if (ti_block_tag(ti_tag_mac(c, -1, b), c->uuid, b, r->seq0 + k,
				 (uint8_t *)r->bounce + k * TI_BLOCK, tag) == 0 &&
		    td_ct_memeq(tag, r->tags + k * TI_TAG_LEN, TI_TAG_LEN)) {
			ti_entry_set(&r->p->tc, b, r->seq0 + k, tag);
			kept_new++;
		}
	}
	td_warn("integrity: a write of blocks %llu+%llu failed below (%s); %llu block(s) hold the "
		"new data",
		(unsigned long long)r->b0, (unsigned long long)r->n, strerror(-r->err),
		(unsigned long long)kept_new);
	finish(r, r->err);
}

static void start_resolve(struct ti_req *r)
{
	r->stage = ST_RESOLVE;
	r->bounce_len = (size_t)(r->n * TI_BLOCK);
	r->bounce = td_buf_get(r->bounce_len);
	if (!r->bounce) {
		finish(r, r->err);
		return;
	}
	td_req_init1(&r->child, &r->iov, TD_OP_READ, r->p->c.p.data_start + r->b0 * TI_BLOCK,
		     r->bounce, r->bounce_len, resolve_done, r);
	td_layer_submit(r->p->c.l->below, &r->child);
}

static void start_zero_io(struct ti_req *r)
{
	const struct ti_core *c = &r->p->c;
	uint64_t pf = (r->b0 + TI_ENTRIES_PER_PAGE - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t pl = (r->b0 + r->n) / TI_ENTRIES_PER_PAGE;

	r->pending = 1;
	r->stage = ST_DATA;
	if (pl > pf && !c->tree) {
		/* the tag pages it covers wholly are zeroed on disk (cached ones
		 * are zeroed in memory too, in ti_entries_zero) */
		memset(&r->tzero, 0, sizeof(r->tzero));
		r->tzero.op = TD_OP_WRITE_ZEROES;
		r->tzero.flags = TD_REQ_NO_UNMAP;
		r->tzero.off = c->p.tags_off + pf * TI_BLOCK;
		r->tzero.len = (pl - pf) * TI_BLOCK;
		r->tzero.done = data_done;
		r->tzero.opaque = r;
		r->pending++;
		td_layer_submit(c->l->below, &r->tzero);
	}
	memset(&r->child, 0, sizeof(r->child));
	r->child.op = r->parent->op;
	r->child.flags = r->parent->flags;
	r->child.off = c->p.data_start + r->b0 * TI_BLOCK;
	r->child.len = r->n * TI_BLOCK;
	r->child.done = data_done;
	r->child.opaque = r;
	td_layer_submit(c->l->below, &r->child);
}

/* ---- waking up ------------------------------------------------------------------ */

static void pages_ready(struct ti_wait *w)
{
	struct ti_req *r = TI_CONTAINER(w, struct ti_req, pin.w);

	if (w->err && !r->err)
		r->err = w->err;
	step(r);
}

static void journaled(struct ti_wait *w)
{
	struct ti_req *r = TI_CONTAINER(w, struct ti_req, je.w);

	if (w->err && !r->err)
		r->err = w->err;
	step(r);
}

/* A FUA write's flush point is durable (or a checkpoint answered it). */
static void fua_answered(struct ti_wait *w)
{
	finish(TI_CONTAINER(w, struct ti_req, fpw.w), w->err);
}

/* Hands the request's records to the journal; it goes on in journaled(). */
static void journal(struct ti_req *r)
{
	struct ti_priv *p = r->p;

	r->stage = ST_JOURNAL;
	r->je.b0 = r->b0;
	r->je.n = r->n;
	r->je.seq0 = r->seq0;
	r->je.zero = r->kind == TI_ZERO;
	r->je.tags = r->tags;
	ti_journal_add(&p->j, &r->je);
	/* r may be gone; when it waits for room, a checkpoint makes some */
	if (ti_journal_has_parked(&p->j))
		ti_ckpt_request(&p->ck);
}

/* ---- the state machine -------------------------------------------------------- */

static void step_pages(struct ti_req *r)
{
	struct ti_priv *p = r->p;

	if (r->err) {
		finish(r, r->err);
		return;
	}
	switch (r->kind) {
	case TI_READ:
		r->stage = ST_DATA;
		data_io(r, TD_OP_READ, 0);
		return;
	case TI_ZERO:
		r->seq0 = ti_journal_seq(&p->j, 1);
		journal(r);
		return;
	case TI_WRITE:
		r->stage = ST_MAC;
		r->seq0 = ti_journal_seq(&p->j, r->n);
		ti_fp_track(&p->fp, &r->fpw, r->seq0, r->n);
		r->tags = malloc((size_t)r->n * TI_TAG_LEN);
		if (!r->tags) {
			finish(r, -ENOMEM);
			return;
		}
		fan_out(r, mac_fn);
		return;
	}
}

static void step_data(struct ti_req *r)
{
	struct ti_priv *p = r->p;
	bool fua = r->parent->flags & TD_REQ_FUA;
	int rc;

	switch (r->kind) {
	case TI_READ:
		if (!r->err && (rc = resolve_tabs(r)) < 0)
			r->err = rc;
		if (r->err) {
			finish(r, r->err);
			return;
		}
		r->stage = ST_VERIFY;
		fan_out(r, verify_fn);
		return;
	case TI_WRITE:
		if (r->err) {
			if (fua)
				ti_fp_fua_end(&p->fp);
			start_resolve(r);
			return;
		}
		apply_write(r);
		/* the tags are in the table: a checkpoint no longer waits */
		ti_journal_release(&p->j, &r->je);
		if (ti_fp_data_done(&p->fp, &r->fpw, fua))
			return; /* FUA: answered once a flush point holds it */
		finish(r, 0);
		return;
	case TI_ZERO:
		if (!r->err)
			ti_entries_zero(&p->tc, r->b0, r->n);
		finish(r, r->err);
		return;
	}
}

static void step_verify(struct ti_req *r)
{
	struct td_stats_shared *st = r->p->c.ctx->stats;
	uint64_t bad = 0;
	int k;

	for (k = 0; k < r->fan.nparts; k++) {
		if (!r->fan.parts[k].failed)
			continue;
		bad += r->fan.parts[k].failed;
		/* name every failing block once in the log */
		log_failure(r->p, r->fan.parts[k].first_failed);
	}
	if (bad && st)
		st->integrity_failures += bad;
	finish(r, bad ? -EIO : 0);
}

static void step(struct ti_req *r)
{
	switch (r->stage) {
	case ST_PAGES:
		step_pages(r);
		return;
	case ST_MAC:
		if (r->fan.err) {
			finish(r, -EIO);
			return;
		}
#ifdef TD_TEST_BUILD
		if (TI_TEST_IS(&r->p->c, TI_TEST_NO_JOURNAL_WAIT)) {
			r->stage = ST_EARLY_DATA;
			data_io(r, TD_OP_WRITE, r->parent->flags & TD_REQ_FUA);
			return;
		}
#endif
		journal(r);
		return;
#ifdef TD_TEST_BUILD
	case ST_EARLY_DATA:
		if (r->err) {
			finish(r, r->err);
			return;
		}
		journal(r);
		return;
#endif
	case ST_JOURNAL:
		if (r->err) {
			/* the records may or may not be durable; the data was never
			 * written, so the old tags still describe the disk */
			finish(r, r->err);
			return;
		}
		if (r->kind == TI_ZERO) {
			start_zero_io(r);
			return;
		}
#ifdef TD_TEST_BUILD
		if (TI_TEST_IS(&r->p->c, TI_TEST_NO_JOURNAL_WAIT)) {
			apply_write(r); /* the data went out in ST_EARLY_DATA */
			finish(r, 0);
			return;
		}
#endif
		r->stage = ST_DATA;
		if (r->parent->flags & TD_REQ_FUA)
			ti_fp_fua_begin(&r->p->fp); /* group commit of flush points */
		data_io(r, TD_OP_WRITE, r->parent->flags & TD_REQ_FUA);
		return;
	case ST_DATA:
		step_data(r);
		return;
	case ST_VERIFY:
		step_verify(r);
		return;
	default:
		finish(r, -EIO);
	}
}

static void rl_granted(struct td_rl_item *it)
{
	struct ti_req *r = TI_CONTAINER(it, struct ti_req, rl);
	int rc;

	r->stage = ST_PAGES;
	rc = ti_pages_pin(&r->p->tc, &r->pin);
	if (rc == -EAGAIN)
		return; /* pages_ready() */
	r->err = rc;
	step(r);
}

/* Ends a request: every component lets go of it, then the answer. */
static void finish(struct ti_req *r, int err)
{
	struct ti_priv *p = r->p;
	struct td_req *parent = r->parent;

	ti_pages_unpin(&p->tc, &r->pin);
	ti_fp_untrack(&p->fp, &r->fpw, err);
	if (r->rl.locked)
		td_rl_release(&p->rl, &r->rl);
	ti_journal_release(&p->j, &r->je);
	free(r->tags);
	if (r->tabs != r->tabs_inline)
		free(r->tabs);
	if (r->bounce)
		td_buf_put(r->bounce, r->bounce_len);
	free(r);
	td_req_complete(parent, err);
	ti_ckpt_maybe(&p->ck);
}

static void submit(struct td_layer *l, struct td_req *req, enum ti_kind kind)
{
	struct ti_priv *p = l->priv;
	struct ti_req *r;

	if (kind != TI_READ && p->c.broken) {
		td_req_complete_later(l->ctx, req, -EIO);
		return;
	}
	/* A write's records must fit an empty epoch of the journal (see
	 * ti_journal_add), or it would wait for room forever. vdkey never
	 * formats a journal smaller than the largest request needs; only a
	 * hand-made image can have one. */
	if (kind == TI_WRITE &&
	    TI_JOURNAL_BLOCKS_FOR(req->len / TI_BLOCK) + 1 >= p->c.p.journal_blocks) {
		td_err("integrity: a %llu-byte write does not fit the %u-block MAC journal; "
		       "refused (split it, or re-create the image with a larger journal)",
		       (unsigned long long)req->len, p->c.p.journal_blocks);
		td_req_complete_later(l->ctx, req, -EINVAL);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	r->parent = req;
	r->p = p;
	r->kind = kind;
	r->b0 = req->off / TI_BLOCK;
	r->n = req->len / TI_BLOCK;
	r->tabs = r->tabs_inline;
	r->pin.b0 = r->b0;
	r->pin.n = r->n;
	r->pin.zero = kind == TI_ZERO;
	ti_wait_init(&r->pin.w, pages_ready);
	ti_wait_init(&r->je.w, journaled);
	ti_wait_init(&r->fpw.w, fua_answered);
	r->rl.first = r->b0;
	r->rl.last = r->b0 + r->n - 1;
	r->rl.exclusive = kind != TI_READ;
	r->rl.granted = rl_granted;
	r->stage = ST_LOCK;
	td_rl_acquire(&p->rl, &r->rl);
}

static void integ_read(struct td_layer *l, struct td_req *req)
{
	submit(l, req, TI_READ);
}

static void integ_write(struct td_layer *l, struct td_req *req)
{
	submit(l, req, TI_WRITE);
}

static void integ_zero(struct td_layer *l, struct td_req *req)
{
	submit(l, req, TI_ZERO);
}

static void integ_flush(struct td_layer *l, struct td_req *req)
{
	ti_fp_flush(&((struct ti_priv *)l->priv)->fp, req);
}

const struct td_driver td_drv_integrity = {
    .name = "integrity",
    .summary = "per-block HMAC-SHA256 with a crash-consistent MAC journal (set up by crypt)",
    .priv_size = sizeof(struct ti_priv),
    .open = ti_layer_open,
    .quiesce = ti_layer_quiesce,
    .close = ti_layer_close,
    .read = integ_read,
    .write = integ_write,
    .flush = integ_flush,
    .discard = integ_zero,
    .write_zeroes = integ_zero,
    .grow = ti_layer_grow,
};
