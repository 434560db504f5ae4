/* Flush points (docs/FORMAT.md "Flush points").
 *
 * The claim (below, x) names the writes whose data is known to be on
 * disk: F = { s : (s < below) XOR (s in x) }. Within an epoch it only
 * grows, and recovery trusts the newest flush-point block of the journal:
 * a block whose newest write in F does not verify reads as EIO, never as an
 * older version.
 *
 * One cycle at a time answers the waiters (guest FLUSHes and FUA writes,
 * each a parked struct ti_wait) that were queued when it started:
 *   - with a guest FLUSH among them: snapshot (next sequence number, the
 *     writes in flight and the failed ones), flush the lower image, move
 *     the claim to the snapshot;
 *   - then, if the claim moved since the last flush-point block, write one
 *     (FUA, through the journal queue) and answer when it is durable (our
 *     block_w, woken by the journal).
 * A FUA write joins the claim when its data write (FUA) completes and
 * waits for the next cycle. During a checkpoint the checkpoint answers the
 * waiters instead (ckpt_w, parked on the checkpoint): it flushes every
 * completed write and moves its tag into the table. Nothing here blocks
 * or runs the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/fpoint.h"
#include "tapdisk/core/log.h"

#ifdef TD_TEST_BUILD
#define FP_TEST(fp, what) ((fp)->what)
#else
#define FP_TEST(fp, what) false
#endif

/* ---- the writes in flight --------------------------------------------------- */

void ti_fp_track(struct ti_fp *fp, struct ti_fpw *t, uint64_t seq0, uint64_t n)
{
	t->seq0 = seq0;
	t->n = n;
	t->prev = NULL;
	t->next = fp->inflight;
	if (fp->inflight)
		fp->inflight->prev = t;
	fp->inflight = t;
	t->linked = true;
}

static void unlink_write(struct ti_fp *fp, struct ti_fpw *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		fp->inflight = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->linked = false;
}

void ti_fp_untrack(struct ti_fp *fp, struct ti_fpw *t, int err)
{
	if (!t->linked)
		return;
	unlink_write(fp, t);
	/* its records may be durable while its blocks hold the old data: it
	 * must never be claimed in this epoch */
	if (err && ti_rset_add(&fp->failed, t->seq0, t->n) < 0)
		fp->bad = true;
}

/* The writes in flight and the failed ones: what a snapshot excludes. */
static int unsettled(struct ti_fp *fp, struct ti_rset *out)
{
	struct ti_fpw *t;
	size_t i;

	out->n = 0;
	if (FP_TEST(fp, noexcl))
		return 0; /* broken on purpose */
	for (t = fp->inflight; t; t = t->next)
		if (ti_rset_add(out, t->seq0, t->n) < 0)
			return -ENOMEM;
	for (i = 0; i < fp->failed.n; i++)
		if (ti_rset_add(out, fp->failed.r[i].start, fp->failed.r[i].count) < 0)
			return -ENOMEM;
	return 0;
}

/* ---- cycles ------------------------------------------------------------------- */

static void cycle_start(struct ti_fp *fp);
static void block_step(struct ti_fp *fp, bool may_defer);

/* Ends the cycle in flight: its waiters, detached, for the caller. */
static struct ti_waitq take_cycle(struct ti_fp *fp)
{
	struct ti_waitq list = fp->cycle;

	fp->cycle.head = fp->cycle.tail = NULL;
	fp->busy = false;
	fp->snap_live = false;
	return list;
}

static void cycle_end(struct ti_fp *fp, int err)
{
	struct ti_waitq list = take_cycle(fp);

	ti_wake_all(&list, err);
	cycle_start(fp);
}

/* The waiters of this cycle are answered by a checkpoint (running, or
 * started now): it covers more than a flush point would. */
static void to_ckpt(struct ti_fp *fp)
{
	struct ti_waitq list = take_cycle(fp);

	if (fp->c->broken) {
		ti_wake_all(&list, fp->c->broken);
		cycle_start(fp);
		return;
	}
	ti_waitq_splice(&fp->ckq, &list);
	if (!ti_ckpt_busy(fp->ck))
		ti_ckpt_request(fp->ck);
	cycle_start(fp);
}

/* The lower flush of the snapshot has completed: the claim becomes
 * (snapshot, its exclusions + the claimed ranges at or above it). */
static int merge(struct ti_fp *fp)
{
	struct ti_rset n = fp->snap_x;
	size_t i;

	memset(&fp->snap_x, 0, sizeof(fp->snap_x));
	for (i = 0; i < fp->x.n; i++) {
		uint64_t s = fp->x.r[i].start, e = s + fp->x.r[i].count;

		if (e <= fp->snap_below)
			continue;
		if (s < fp->snap_below)
			s = fp->snap_below;
		if (ti_rset_add(&n, s, e - s) < 0) {
			ti_rset_free(&n);
			return -ENOMEM;
		}
	}
	ti_rset_free(&fp->x);
	fp->x = n;
	fp->below = fp->snap_below;
	fp->changed = true;
	return 0;
}

static void submit_lower_flush(struct ti_fp *fp);

static void after_block(struct ti_fp *fp, int err)
{
#ifdef TD_TEST_BUILD
	if (fp->early && fp->cycle_flush && !fp->early_flushed && !err) {
		fp->early_flushed = true;
		submit_lower_flush(fp);
		return;
	}
#endif
	cycle_end(fp, err);
}

/* Writes the claim as a flush-point block if it moved. may_defer: a
 * cycle of FUA writes only (no FLUSH) waits while other FUA writes' data
 * writes are in flight (they join it as they complete) or a journal write
 * is (the flush point then goes out with the half-filled records block):
 * group commit. The next journal write completion, or the last of those
 * FUA data writes, sends it. */
static void block_step(struct ti_fp *fp, bool may_defer)
{
	struct ti_fpoint *enc = fp->enc;
	size_t i;
	int rc;

	if (fp->c->broken) {
		/* writes are refused: nothing new can be claimed durably */
		after_block(fp, 0);
		return;
	}
	if (fp->bad || fp->x.n > TI_FP_MAX_RANGES || ti_ckpt_busy(fp->ck)) {
		to_ckpt(fp);
		return;
	}
	if (!fp->changed) {
		after_block(fp, 0);
		return;
	}
	if (may_defer && !fp->cycle_flush && (ti_journal_writing(fp->j) > 0 || fp->fua_data > 0)) {
		fp->deferred = true;
		ti_journal_written_wait(fp->j, &fp->written_w);
		return;
	}
	enc->below = fp->below;
	enc->n = (unsigned)fp->x.n;
	for (i = 0; i < fp->x.n; i++)
		enc->r[i] = fp->x.r[i];
	rc = ti_journal_flush_point(fp->j, enc, &fp->block_w);
	if (rc == -ENOSPC) {
		to_ckpt(fp);
		return;
	}
	if (rc < 0) {
		after_block(fp, rc);
		return;
	}
	fp->changed = false;
	fp->blocks++;
}

/* A deferred cycle goes on. */
static void undefer(struct ti_fp *fp)
{
	fp->deferred = false;
	block_step(fp, false);
}

void ti_fp_fua_begin(struct ti_fp *fp)
{
	fp->fua_data++;
}

void ti_fp_fua_end(struct ti_fp *fp)
{
	fp->fua_data--;
	if (fp->deferred && !fp->fua_data && !ti_journal_writing(fp->j))
		undefer(fp);
}

/* Woken by the journal: a journal write completed. */
static void journal_written(struct ti_wait *w)
{
	struct ti_fp *fp = TI_CONTAINER(w, struct ti_fp, written_w);

	if (fp->deferred)
		undefer(fp);
}

/* Woken by the journal: our flush-point block is durable (or failed). */
static void block_durable(struct ti_wait *w)
{
	struct ti_fp *fp = TI_CONTAINER(w, struct ti_fp, block_w);

	if (w->err)
		fp->changed = true; /* not known durable: write it again */
	after_block(fp, w->err);
}

static void flush_done(struct td_req *req, int err)
{
	struct ti_fp *fp = req->opaque;

	if (err || FP_TEST(fp, early)) {
		cycle_end(fp, err);
		return;
	}
	if (fp->j->epoch != fp->snap_epoch) {
		/* a checkpoint started after the snapshot and has finished: every
		 * write that completed before the snapshot is in the table */
		cycle_end(fp, 0);
		return;
	}
	if (ti_ckpt_busy(fp->ck)) {
		to_ckpt(fp);
		return;
	}
	fp->snap_live = false;
	/* a merge also compacts the claim (ranges below the snapshot go) */
	if ((fp->snap_dirty || fp->x.n > TI_FP_MAX_RANGES / 2) && !fp->bad && merge(fp) < 0)
		fp->bad = true;
	block_step(fp, true);
}

static void submit_lower_flush(struct ti_fp *fp)
{
	memset(&fp->req, 0, sizeof(fp->req));
	fp->req.op = TD_OP_FLUSH;
	fp->req.done = flush_done;
	fp->req.opaque = fp;
	td_layer_submit(ti_lower(fp->c), &fp->req);
}

static void cycle_start(struct ti_fp *fp)
{
	if (fp->busy || ti_waitq_empty(&fp->wait))
		return;
	fp->cycle = fp->wait;
	fp->wait.head = fp->wait.tail = NULL;
	fp->busy = true;
	/* a lower flush also compacts the claim (claimed ranges below the new
	 * snapshot disappear) */
	fp->cycle_flush = fp->x.n > TI_FP_MAX_RANGES / 2 || fp->wait_flushes > 0;
	fp->wait_flushes = 0;
	if (ti_ckpt_busy(fp->ck)) {
		to_ckpt(fp);
		return;
	}
	if (!fp->cycle_flush) {
		block_step(fp, true);
		return;
	}
	fp->snap_epoch = fp->j->epoch;
	fp->snap_below = fp->j->next_seq;
	fp->snap_dirty = fp->dirty;
	fp->dirty = false;
	if (unsettled(fp, &fp->snap_x) < 0)
		fp->bad = true;
	fp->snap_live = true;
#ifdef TD_TEST_BUILD
	fp->early_flushed = false;
	if (fp->early) {
		/* broken on purpose: claim before the data is flushed */
		fp->snap_live = false;
		if (!fp->bad && merge(fp) < 0)
			fp->bad = true;
		block_step(fp, true);
		return;
	}
#endif
	submit_lower_flush(fp);
}

/* ---- entry points -------------------------------------------------------------- */

bool ti_fp_data_done(struct ti_fp *fp, struct ti_fpw *t, bool fua)
{
	int rc = 0;

	if (t->linked)
		unlink_write(fp, t);
	if (!fua || FP_TEST(fp, off)) {
		if (fua)
			ti_fp_fua_end(fp); /* not waiting: the same accounting */
		fp->dirty = true;	   /* the next snapshot claims it */
		return false;
	}
	fp->fua_data--;
	/* FUA: the data is durable now; claim it (a later snapshot adds
	 * nothing for it) */
	if (!fp->bad) {
		if (fp->snap_live && ti_rset_remove(&fp->snap_x, t->seq0, t->n) < 0)
			rc = -ENOMEM;
		if (!rc)
			rc = t->seq0 < fp->below ? ti_rset_remove(&fp->x, t->seq0, t->n)
						 : ti_rset_add(&fp->x, t->seq0, t->n);
		if (rc < 0)
			fp->bad = true;
		fp->changed = true;
	}
	if (fp->deferred) {
		/* the flush-point block of the cycle is not written yet: it will
		 * hold this claim too */
		ti_park(&fp->cycle, &t->w);
		if (!fp->fua_data && !ti_journal_writing(fp->j)) /* the last one */
			undefer(fp);
	} else {
		ti_park(&fp->wait, &t->w);
		cycle_start(fp);
	}
	return true;
}

struct fp_flush {
	struct ti_wait w;
	struct td_req *req;
	struct td_ctx *ctx;
};

static void flush_answer(struct ti_wait *w)
{
	struct fp_flush *f = TI_CONTAINER(w, struct fp_flush, w);

	/* never from the submitter's stack */
	td_req_complete_later(f->ctx, f->req, w->err);
	free(f);
}

void ti_fp_flush(struct ti_fp *fp, struct td_req *req)
{
	struct fp_flush *f;

	if (FP_TEST(fp, off)) {
		td_layer_submit(ti_lower(fp->c), req);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		td_req_complete_later(fp->c->ctx, req, -ENOMEM);
		return;
	}
	ti_wait_init(&f->w, flush_answer);
	f->req = req;
	f->ctx = fp->c->ctx;
	if (ti_ckpt_busy(fp->ck)) { /* the running checkpoint covers it */
		ti_park(&fp->ckq, &f->w);
		return;
	}
	ti_park(&fp->wait, &f->w);
	fp->wait_flushes++;
	cycle_start(fp);
}

/* After a checkpoint the claim restarts: every write not in flight had
 * its data flushed by the checkpoint (and its records are dead). */
static void reset_claim(struct ti_fp *fp)
{
	fp->below = fp->j->next_seq;
	fp->failed.n = 0;
	fp->dirty = false;
	fp->changed = false;
	fp->bad = unsettled(fp, &fp->x) < 0;
}

/* Woken by the checkpoint at the end of every checkpoint. */
static void ckpt_ended(struct ti_wait *w)
{
	struct ti_fp *fp = TI_CONTAINER(w, struct ti_fp, ckpt_w);
	struct ti_waitq list = fp->ckq;

	ti_ckpt_wait(fp->ck, &fp->ckpt_w); /* for the next one */
	fp->ckq.head = fp->ckq.tail = NULL;
	if (!w->err)
		reset_claim(fp);
	ti_wake_all(&list, w->err);
	cycle_start(fp);
}

int ti_fp_open(struct ti_fp *fp, struct ti_core *c, struct ti_journal *j, struct ti_ckpt *ck)
{
	fp->c = c;
	fp->j = j;
	fp->ck = ck;
	ti_wait_init(&fp->block_w, block_durable);
	ti_wait_init(&fp->written_w, journal_written);
	ti_wait_init(&fp->ckpt_w, ckpt_ended);
#ifdef TD_TEST_BUILD
	fp->off = TI_TEST_IS(c, TI_TEST_FP_OFF);
	fp->early = TI_TEST_IS(c, TI_TEST_FP_EARLY);
	fp->noexcl = TI_TEST_IS(c, TI_TEST_FP_NOEXCL);
	if (fp->off || fp->early || fp->noexcl)
		td_warn("integrity: flush points are broken on purpose (a test build's switch)");
#endif
	fp->enc = malloc(sizeof(*fp->enc));
	if (!fp->enc)
		return -ENOMEM;
	reset_claim(fp);
	ti_ckpt_wait(ck, &fp->ckpt_w);
	return 0;
}

void ti_fp_free(struct ti_fp *fp)
{
	ti_rset_free(&fp->x);
	ti_rset_free(&fp->failed);
	ti_rset_free(&fp->snap_x);
	free(fp->enc);
	fp->enc = NULL;
}
