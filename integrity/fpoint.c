/* Flush points (docs/FORMAT.md "Flush points").
 *
 * The claim (fp_below, fp_x) names the writes whose data is known to be on
 * disk: F = { s : (s < fp_below) XOR (s in fp_x) }. Within an epoch it only
 * grows, and recovery trusts the newest flush-point block of the journal:
 * a block whose newest write in F does not verify reads as EIO, never as an
 * older version.
 *
 * One cycle at a time answers the waiters that were queued when it
 * started:
 *   - with a guest FLUSH among them: snapshot (next sequence number, the
 *     writes in flight and the failed ones), flush the lower image, move
 *     the claim to the snapshot;
 *   - then, if the claim moved since the last flush-point block, write one
 *     (FUA, through the journal queue) and answer when it is durable.
 * A FUA write joins the claim when its data write (FUA) completes and
 * waits for the next cycle. During a checkpoint the checkpoint answers the
 * waiters instead: it flushes every completed write and moves its tag into
 * the table. Nothing here blocks or runs the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/integ.h"
#include "tapdisk/core/log.h"

/* ---- sets of sequence numbers ---------------------------------------------- */

static int rset_reserve(struct ti_rset *s, size_t n)
{
	size_t cap = s->cap ? s->cap : 16;
	struct ti_frange *r;

	if (n <= s->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	r = realloc(s->r, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	s->r = r;
	s->cap = cap;
	return 0;
}

static void rset_free(struct ti_rset *s)
{
	free(s->r);
	memset(s, 0, sizeof(*s));
}

/* s := s + [a, a + c), merging ranges that overlap or touch it. */
static int rset_add(struct ti_rset *s, uint64_t a, uint64_t c)
{
	uint64_t e = a + c;
	size_t i, j;

	for (i = 0; i < s->n && s->r[i].start + s->r[i].count < a; i++)
		;
	for (j = i; j < s->n && s->r[j].start <= e; j++)
		;
	if (i < j) {
		uint64_t ns = s->r[i].start < a ? s->r[i].start : a;
		uint64_t ne = s->r[j - 1].start + s->r[j - 1].count;

		if (ne < e)
			ne = e;
		s->r[i].start = ns;
		s->r[i].count = ne - ns;
		memmove(s->r + i + 1, s->r + j, (s->n - j) * sizeof(*s->r));
		s->n -= j - i - 1;
		return 0;
	}
	if (rset_reserve(s, s->n + 1) < 0)
		return -ENOMEM;
	memmove(s->r + i + 1, s->r + i, (s->n - i) * sizeof(*s->r));
	s->r[i].start = a;
	s->r[i].count = c;
	s->n++;
	return 0;
}

/* s := s - [a, a + c) */
static int rset_remove(struct ti_rset *s, uint64_t a, uint64_t c)
{
	uint64_t e = a + c;
	size_t i = 0;

	while (i < s->n) {
		uint64_t rs = s->r[i].start, re = rs + s->r[i].count;

		if (re <= a) {
			i++;
			continue;
		}
		if (rs >= e)
			break;
		if (rs < a && re > e) { /* split in two */
			if (rset_reserve(s, s->n + 1) < 0)
				return -ENOMEM;
			memmove(s->r + i + 1, s->r + i, (s->n - i) * sizeof(*s->r));
			s->r[i].count = a - rs;
			s->r[i + 1].start = e;
			s->r[i + 1].count = re - e;
			s->n++;
			return 0;
		}
		if (rs < a) {
			s->r[i].count = a - rs;
			i++;
		} else if (re > e) {
			s->r[i].start = e;
			s->r[i].count = re - e;
			return 0;
		} else {
			memmove(s->r + i, s->r + i + 1, (s->n - i - 1) * sizeof(*s->r));
			s->n--;
		}
	}
	return 0;
}

/* ---- the writes in flight --------------------------------------------------- */

void ti_fp_track(struct ti_priv *p, struct ti_req *r)
{
	r->fp_prev = NULL;
	r->fp_next = p->fp_inflight;
	if (p->fp_inflight)
		p->fp_inflight->fp_prev = r;
	p->fp_inflight = r;
	r->fp_linked = true;
}

static void unlink_req(struct ti_priv *p, struct ti_req *r)
{
	if (r->fp_prev)
		r->fp_prev->fp_next = r->fp_next;
	else
		p->fp_inflight = r->fp_next;
	if (r->fp_next)
		r->fp_next->fp_prev = r->fp_prev;
	r->fp_prev = r->fp_next = NULL;
	r->fp_linked = false;
}

void ti_fp_untrack(struct ti_priv *p, struct ti_req *r, int err)
{
	if (!r->fp_linked)
		return;
	unlink_req(p, r);
	/* its records may be durable while its blocks hold the old data: it
	 * must never be claimed in this epoch */
	if (err && rset_add(&p->fp_failed, r->seq0, r->n) < 0)
		p->fp_bad = true;
}

/* The writes in flight and the failed ones: what a snapshot excludes. */
static int unsettled(struct ti_priv *p, struct ti_rset *out)
{
	struct ti_req *r;
	size_t i;

	out->n = 0;
	if (p->fp_mode == TI_FP_NOEXCL)
		return 0; /* test hook: deliberately wrong */
	for (r = p->fp_inflight; r; r = r->fp_next)
		if (rset_add(out, r->seq0, r->n) < 0)
			return -ENOMEM;
	for (i = 0; i < p->fp_failed.n; i++)
		if (rset_add(out, p->fp_failed.r[i].start, p->fp_failed.r[i].count) < 0)
			return -ENOMEM;
	return 0;
}

/* ---- cycles ------------------------------------------------------------------- */

static void cycle_start(struct td_layer *l);
static void block_step(struct td_layer *l, bool may_defer);

static void complete_list(struct td_layer *l, struct ti_req *list, int err)
{
	while (list) {
		struct ti_req *r = list;

		list = r->next;
		r->next = NULL;
		if (r->kind == TI_FLUSH) {
			/* never from the submitter's stack */
			td_req_complete_later(l->ctx, r->parent, err);
			free(r);
		} else {
			ti_req_finish(r, err);
		}
	}
}

static void append(struct ti_req **head, struct ti_req **tail, struct ti_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static struct ti_req *take_cycle(struct ti_priv *p)
{
	struct ti_req *list = p->fp_cycle;

	p->fp_cycle = NULL;
	p->fp_busy = false;
	p->fp_snap_live = false;
	return list;
}

static void cycle_end(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;

	complete_list(l, take_cycle(p), err);
	cycle_start(l);
}

/* The waiters of this cycle are answered by a checkpoint (running, or
 * started now): it covers more than a flush point would. */
static void to_ckpt(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_req *list = take_cycle(p), *tail;

	if (p->broken) {
		complete_list(l, list, p->broken);
		cycle_start(l);
		return;
	}
	if (list) {
		for (tail = p->fp_ck; tail && tail->next; tail = tail->next)
			;
		if (tail)
			tail->next = list;
		else
			p->fp_ck = list;
	}
	if (p->ck == CK_IDLE) {
		p->fp_ck_want = true;
		ti_ckpt_maybe(l);
	}
	cycle_start(l);
}

/* The lower flush of the snapshot has completed: the claim becomes
 * (snapshot, its exclusions + the claimed ranges at or above it). */
static int merge(struct ti_priv *p)
{
	struct ti_rset n = p->fp_snap_x;
	size_t i;

	memset(&p->fp_snap_x, 0, sizeof(p->fp_snap_x));
	for (i = 0; i < p->fp_x.n; i++) {
		uint64_t s = p->fp_x.r[i].start, e = s + p->fp_x.r[i].count;

		if (e <= p->fp_snap_below)
			continue;
		if (s < p->fp_snap_below)
			s = p->fp_snap_below;
		if (rset_add(&n, s, e - s) < 0) {
			rset_free(&n);
			return -ENOMEM;
		}
	}
	rset_free(&p->fp_x);
	p->fp_x = n;
	p->fp_below = p->fp_snap_below;
	p->fp_changed = true;
	return 0;
}

static void submit_lower_flush(struct td_layer *l);

static void after_block(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;

	if (p->fp_mode == TI_FP_EARLY && p->fp_cycle_flush && !p->fp_early_flushed && !err) {
		p->fp_early_flushed = true;
		submit_lower_flush(l);
		return;
	}
	cycle_end(l, err);
}

/* Writes the claim as a flush-point block if it moved. may_defer: a
 * cycle of FUA writes only (no FLUSH) waits while other FUA writes' data
 * writes are in flight (they join it as they complete) or a journal write
 * is (the flush point then goes out with the half-filled records block):
 * group commit. The next journal write completion, or the last of those
 * FUA data writes, sends it. */
static void block_step(struct td_layer *l, bool may_defer)
{
	struct ti_priv *p = l->priv;
	struct ti_fpoint *fp = p->fp_enc;
	size_t i;
	int rc;

	if (p->broken) {
		/* writes are refused: nothing new can be claimed durably */
		after_block(l, 0);
		return;
	}
	if (p->fp_bad || p->fp_x.n > TI_FP_MAX_RANGES || p->ck != CK_IDLE) {
		to_ckpt(l);
		return;
	}
	if (!p->fp_changed) {
		after_block(l, 0);
		return;
	}
	if (may_defer && !p->fp_cycle_flush && (p->j_inflight > 0 || p->fp_fua_data > 0)) {
		p->fp_deferred = true;
		return;
	}
	fp->below = p->fp_below;
	fp->n = (unsigned)p->fp_x.n;
	for (i = 0; i < p->fp_x.n; i++)
		fp->r[i] = p->fp_x.r[i];
	rc = ti_journal_flush_point(l, fp);
	if (rc == -ENOSPC) {
		to_ckpt(l);
		return;
	}
	if (rc < 0) {
		after_block(l, rc);
		return;
	}
	p->fp_changed = false;
	p->fp_blocks++;
}

void ti_fp_fua_data_end(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	p->fp_fua_data--;
	if (p->fp_deferred && !p->fp_fua_data && !p->j_inflight) {
		p->fp_deferred = false;
		block_step(l, false);
	}
}

void ti_fp_journal_done(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	if (!p->fp_deferred)
		return;
	p->fp_deferred = false;
	block_step(l, false);
}

void ti_fp_block_done(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;

	if (err)
		p->fp_changed = true; /* not known durable: write it again */
	after_block(l, err);
}

static void flush_done(struct td_req *req, int err)
{
	struct td_layer *l = req->opaque;
	struct ti_priv *p = l->priv;

	if (err || p->fp_mode == TI_FP_EARLY) {
		cycle_end(l, err);
		return;
	}
	if (p->epoch != p->fp_snap_epoch) {
		/* a checkpoint started after the snapshot and has finished: every
		 * write that completed before the snapshot is in the table */
		cycle_end(l, 0);
		return;
	}
	if (p->ck != CK_IDLE) {
		to_ckpt(l);
		return;
	}
	p->fp_snap_live = false;
	/* a merge also compacts the claim (ranges below the snapshot go) */
	if ((p->fp_snap_dirty || p->fp_x.n > TI_FP_MAX_RANGES / 2) && !p->fp_bad && merge(p) < 0)
		p->fp_bad = true;
	block_step(l, true);
}

static void submit_lower_flush(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	memset(&p->fp_req, 0, sizeof(p->fp_req));
	p->fp_req.op = TD_OP_FLUSH;
	p->fp_req.done = flush_done;
	p->fp_req.opaque = l;
	td_layer_submit(l->below, &p->fp_req);
}

static void cycle_start(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_req *r;

	if (p->fp_busy || !p->fp_wait_head)
		return;
	p->fp_cycle = p->fp_wait_head;
	p->fp_wait_head = p->fp_wait_tail = NULL;
	p->fp_busy = true;
	/* a lower flush also compacts the claim (claimed ranges below the new
	 * snapshot disappear) */
	p->fp_cycle_flush = p->fp_x.n > TI_FP_MAX_RANGES / 2;
	for (r = p->fp_cycle; r; r = r->next)
		if (r->kind == TI_FLUSH)
			p->fp_cycle_flush = true;
	if (p->ck != CK_IDLE) {
		to_ckpt(l);
		return;
	}
	if (!p->fp_cycle_flush) {
		block_step(l, true);
		return;
	}
	p->fp_snap_epoch = p->epoch;
	p->fp_snap_below = p->next_seq;
	p->fp_snap_dirty = p->fp_dirty;
	p->fp_dirty = false;
	if (unsettled(p, &p->fp_snap_x) < 0)
		p->fp_bad = true;
	p->fp_snap_live = true;
	p->fp_early_flushed = false;
	if (p->fp_mode == TI_FP_EARLY) {
		/* test hook: claim before the data is flushed */
		p->fp_snap_live = false;
		if (!p->fp_bad && merge(p) < 0)
			p->fp_bad = true;
		block_step(l, true);
		return;
	}
	submit_lower_flush(l);
}

/* ---- entry points -------------------------------------------------------------- */

bool ti_fp_data_done(struct td_layer *l, struct ti_req *r)
{
	struct ti_priv *p = l->priv;
	int rc = 0;

	if (r->fp_linked)
		unlink_req(p, r);
	if (!(r->parent->flags & TD_REQ_FUA) || p->fp_mode == TI_FP_OFF || !r->journaled) {
		if (r->parent->flags & TD_REQ_FUA)
			ti_fp_fua_data_end(l);
		p->fp_dirty = true; /* the next snapshot claims it */
		return false;
	}
	p->fp_fua_data--;
	/* FUA: the data is durable now; claim it (a later snapshot adds
	 * nothing for it) */
	if (!p->fp_bad) {
		if (p->fp_snap_live && rset_remove(&p->fp_snap_x, r->seq0, r->n) < 0)
			rc = -ENOMEM;
		if (!rc)
			rc = r->seq0 < p->fp_below ? rset_remove(&p->fp_x, r->seq0, r->n)
						   : rset_add(&p->fp_x, r->seq0, r->n);
		if (rc < 0)
			p->fp_bad = true;
		p->fp_changed = true;
	}
	/* its tags are in the table: a checkpoint no longer waits for it */
	r->journaled = false;
	p->journaled_inflight--;
	if (p->fp_deferred) {
		/* the flush-point block of the cycle is not written yet: it will
		 * hold this claim too */
		struct ti_req **pp = &p->fp_cycle;

		while (*pp)
			pp = &(*pp)->next;
		r->next = NULL;
		*pp = r;
		if (!p->fp_fua_data && !p->j_inflight) { /* the last one */
			p->fp_deferred = false;
			block_step(l, false);
		}
	} else {
		append(&p->fp_wait_head, &p->fp_wait_tail, r);
		cycle_start(l);
	}
	if (p->ck == CK_DRAIN)
		ti_ckpt_maybe(l);
	return true;
}

void ti_fp_flush(struct td_layer *l, struct td_req *req)
{
	struct ti_priv *p = l->priv;
	struct ti_req *r;

	if (p->fp_mode == TI_FP_OFF) {
		td_layer_submit(l->below, req);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	r->kind = TI_FLUSH;
	r->parent = req;
	r->l = l;
	if (p->ck != CK_IDLE) { /* the running checkpoint covers it */
		r->next = p->fp_ck;
		p->fp_ck = r;
		return;
	}
	append(&p->fp_wait_head, &p->fp_wait_tail, r);
	cycle_start(l);
}

/* After a checkpoint the claim restarts: every write not in flight had
 * its data flushed by the checkpoint (and its records are dead). */
static void reset_claim(struct ti_priv *p)
{
	p->fp_below = p->next_seq;
	p->fp_failed.n = 0;
	p->fp_dirty = false;
	p->fp_changed = false;
	p->fp_bad = unsettled(p, &p->fp_x) < 0;
}

void ti_fp_ckpt_done(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;
	struct ti_req *list = p->fp_ck;

	p->fp_ck = NULL;
	p->fp_ck_want = false;
	if (!err)
		reset_claim(p);
	complete_list(l, list, err);
	cycle_start(l);
}

int ti_fp_open(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	const char *e = getenv("TD_TEST_INTEGRITY_FLUSH_POINTS");

	p->fp_mode = TI_FP_ON;
	if (e && *e) {
		if (!strcmp(e, "off"))
			p->fp_mode = TI_FP_OFF;
		else if (!strcmp(e, "early"))
			p->fp_mode = TI_FP_EARLY;
		else if (!strcmp(e, "noexcl"))
			p->fp_mode = TI_FP_NOEXCL;
		if (p->fp_mode != TI_FP_ON)
			td_warn("integrity: TD_TEST_INTEGRITY_FLUSH_POINTS=%s: flush points are "
				"broken on purpose (a test hook)",
				e);
	}
	p->fp_enc = malloc(sizeof(*p->fp_enc));
	if (!p->fp_enc)
		return -ENOMEM;
	reset_claim(p);
	return 0;
}

void ti_fp_free(struct ti_priv *p)
{
	rset_free(&p->fp_x);
	rset_free(&p->fp_failed);
	rset_free(&p->fp_snap_x);
	free(p->fp_enc);
	p->fp_enc = NULL;
}
