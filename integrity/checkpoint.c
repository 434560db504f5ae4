/* Checkpoints (docs/FORMAT.md "Ordering", step 3).
 *
 * A checkpoint (journal three-quarters full, many records, entries
 * waiting for room, many dirty tag pages, or asked for) closes the
 * journal's epoch so that new writes stop journaling, waits for the
 * journaled ones to complete (parked on the journal), flushes the lower
 * image, writes the dirty tag pages (v2: and tree pages, into the slots
 * the current tree does not use), flushes again, and writes the next
 * epoch's superblock with FUA. Records of the old epoch are then dead:
 * the tag table holds everything they said. Whoever waits for the end
 * (the flush points, a quiesce) parks on `done`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/checkpoint.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"

static void step(struct ti_ckpt *ck);

static void drained(struct ti_wait *w)
{
	step(TI_CONTAINER(w, struct ti_ckpt, drained));
}

int ti_ckpt_init(struct ti_ckpt *ck, struct ti_core *c, struct ti_cache *tc, struct ti_journal *j,
		 struct ti_gen *gen)
{
	memset(ck, 0, sizeof(*ck));
	ck->c = c;
	ck->tc = tc;
	ck->j = j;
	ck->gen = gen;
	ti_wait_init(&ck->drained, drained);
	ck->super_buf = td_buf_get(TI_BLOCK);
	return ck->super_buf ? 0 : -ENOMEM;
}

void ti_ckpt_free(struct ti_ckpt *ck)
{
	if (ck->super_buf)
		td_buf_put(ck->super_buf, TI_BLOCK);
	ck->super_buf = NULL;
}

bool ti_ckpt_pending(const struct ti_ckpt *ck)
{
	return ck->j->pos || ck->tc->ndirty;
}

void ti_ckpt_wait(struct ti_ckpt *ck, struct ti_wait *w)
{
	ti_park(&ck->done, w);
}

/* Where a dirty page goes: v2 into the slot the current tree does not use. */
static uint64_t page_off(const struct ti_ckpt *ck, const struct ti_page *pg)
{
	const struct ti_params *p = &ck->c->p;

	if (!ck->c->tree)
		return p->tags_off + pg->idx * TI_BLOCK;
	if (pg->level)
		return ti_l1_page_off(p, pg->idx, pg->slot ^ 1);
	return ti_tag_page_off(p, pg->idx, pg->slot ^ 1);
}

/* The superblock of the next epoch, into ck->super_buf; its offset. */
static uint64_t encode_super(struct ti_ckpt *ck)
{
	struct ti_core *c = ck->c;
	struct ti_super s;

	memset(&s, 0, sizeof(s));
	s.version = c->p.version;
	s.epoch = ck->j->epoch + 1;
	s.seq_base = ck->j->next_seq;
	if (c->tree)
		memcpy(s.root, ck->root, TI_HASH_LEN);
	ti_super_encode(&s, c->uuid, c->mac_loop, ck->super_buf);
	return c->p.super_off + (s.epoch % 2) * TI_BLOCK;
}

/* The end, either way: the journal reopens (advanced when the new
 * superblock is durable), the waiters learn how it went, and the entries
 * that waited for room go on. */
static void finish(struct ti_ckpt *ck, int err)
{
	ck->st = CK_IDLE;
	ck->requested = false;
	if (err) {
		td_err("integrity: checkpoint failed: %s; refusing further writes", strerror(-err));
		ck->c->broken = err;
		ti_journal_reopen(ck->j, false);
	} else {
		ti_journal_reopen(ck->j, true);
		if (!ck->held) /* the online rekey: after the header (reenc.c) */
			ti_gen_advance(ck->gen, ck->j->epoch);
	}
	ti_wake_all(&ck->done, err);
	ti_journal_resume(ck->j);
	if (ti_journal_has_parked(ck->j))
		ti_ckpt_request(ck); /* the new epoch filled up already */
}

/* ---- asynchronous I/O of a checkpoint --------------------------------------- */

struct page_io {
	struct td_req req;
	struct iovec iov;
	struct ti_page *pg; /* NULL: the L2 array */
	struct ti_ckpt *ck;
};

static void page_written(struct td_req *req, int err)
{
	struct page_io *io = req->opaque;
	struct ti_ckpt *ck = io->ck;

	if (io->pg)
		ti_page_write_end(ck->tc, io->pg, err);
	if (err && !ck->err)
		ck->err = err;
	free(io);
	if (--ck->pending == 0)
		step(ck);
}

static void write_one(struct ti_ckpt *ck, struct ti_page *pg, uint64_t off, void *buf, size_t len)
{
	struct page_io *io = calloc(1, sizeof(*io));

	if (!io) {
		ck->err = -ENOMEM; /* pg stays dirty */
		return;
	}
	if (pg)
		ti_page_write_begin(ck->tc, pg);
	io->pg = pg;
	io->ck = ck;
	td_req_init1(&io->req, &io->iov, TD_OP_WRITE, off, buf, len, page_written, io);
	ck->pending++;
	td_layer_submit(ti_lower(ck->c), &io->req);
}

static int write_page(struct ti_page *pg, void *opaque)
{
	struct ti_ckpt *ck = opaque;

	write_one(ck, pg, page_off(ck, pg), pg->data, TI_BLOCK);
	return 0;
}

static void write_pages(struct ti_ckpt *ck)
{
	struct ti_core *c = ck->c;
	int rc;

	ck->pending = 1; /* held until every write is issued */
	if (c->tree && (rc = ti_tree_update(ck->tc, ck->root)) < 0) {
		ck->err = rc;
	} else {
		ti_cache_foreach_dirty(ck->tc, -1, write_page, ck);
		if (c->tree) /* L2 whole, into the region of the next epoch */
			write_one(ck, NULL, ti_l2_off(&c->p, (unsigned)((ck->j->epoch + 1) % 2)),
				  ck->tc->l2, (size_t)c->p.l2_pages * TI_BLOCK);
	}
	if (--ck->pending == 0)
		step(ck);
}

static void io_done(struct td_req *req, int err)
{
	struct ti_ckpt *ck = req->opaque;

	if (err && !ck->err)
		ck->err = err;
	step(ck);
}

static void submit(struct ti_ckpt *ck, enum td_op op, uint64_t off, void *buf, unsigned flags)
{
	memset(&ck->req, 0, sizeof(ck->req));
	td_req_init1(&ck->req, &ck->iov, op, off, buf, TI_BLOCK, io_done, ck);
	ck->req.flags = flags;
	td_layer_submit(ti_lower(ck->c), &ck->req);
}

/* The state machine; every step re-enters here. */
static void step(struct ti_ckpt *ck)
{
	if (ck->st != CK_IDLE && ck->st != CK_DRAIN && ck->err) {
		finish(ck, ck->err);
		return;
	}
	switch (ck->st) {
	case CK_IDLE:
		return;
	case CK_DRAIN:
		/* Nothing of the epoch is in flight. The pages about to be
		 * written vouch for data written since the last checkpoint,
		 * which may still sit in a volatile cache: a page that reached
		 * the disk before its data would name a tag the block does not
		 * have, and recovery keeps the table entry when no record
		 * verifies (false alarm). Flush the data first. */
		ck->err = 0;
		if (ck->at_drain) { /* the online rekey: the keys switch here */
			int (*fn)(void *) = ck->at_drain;
			int rc;

			ck->at_drain = NULL;
			if ((rc = fn(ck->at_drain_opaque)) < 0) {
				finish(ck, rc);
				return;
			}
		}
		ck->st = CK_PREFLUSH;
		submit(ck, TD_OP_FLUSH, 0, NULL, 0);
		return;
	case CK_PREFLUSH:
		ck->st = CK_PAGES;
		write_pages(ck);
		return;
	case CK_PAGES:
		ck->st = CK_FLUSH;
		submit(ck, TD_OP_FLUSH, 0, NULL, 0);
		return;
	case CK_FLUSH: {
		uint64_t off = encode_super(ck);

		ck->st = CK_SUPER;
		submit(ck, TD_OP_WRITE, off, ck->super_buf, TD_REQ_FUA);
		return;
	}
	case CK_SUPER:
		finish(ck, 0);
		return;
	}
}

static bool due(const struct ti_ckpt *ck)
{
	return ck->requested || ti_journal_full(ck->j) || ti_cache_full(ck->tc);
}

void ti_ckpt_maybe(struct ti_ckpt *ck)
{
	if (ck->st != CK_IDLE || ck->c->broken || ck->held || !due(ck))
		return;
	ck->st = CK_DRAIN;
	if (ti_journal_close(ck->j, &ck->drained))
		step(ck);
}

void ti_ckpt_request(struct ti_ckpt *ck)
{
	ck->requested = true;
	ti_ckpt_maybe(ck);
}

/* ---- synchronous: recovery at open -------------------------------------------- */

static int write_page_sync(struct ti_page *pg, void *opaque)
{
	struct ti_ckpt *ck = opaque;
	int rc;

	ti_page_write_begin(ck->tc, pg);
	rc =
	    td_layer_sync_io(ti_lower(ck->c), TD_OP_WRITE, page_off(ck, pg), pg->data, TI_BLOCK, 0);
	ti_page_write_end(ck->tc, pg, rc);
	return rc;
}

int ti_ckpt_sync(struct ti_ckpt *ck)
{
	struct ti_core *c = ck->c;
	struct td_layer *lower = ti_lower(c);
	int rc;

	if (c->broken)
		return c->broken;
	if (!ti_ckpt_pending(ck) && !ck->sync_force)
		return 0;
	/* the same steps as above, one after the other */
	rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (!rc && c->tree)
		rc = ti_tree_update(ck->tc, ck->root);
	if (!rc)
		rc = ti_cache_foreach_dirty(ck->tc, -1, write_page_sync, ck);
	if (!rc && c->tree)
		rc = td_layer_sync_io(lower, TD_OP_WRITE,
				      ti_l2_off(&c->p, (unsigned)((ck->j->epoch + 1) % 2)),
				      ck->tc->l2, c->p.l2_pages * TI_BLOCK, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (!rc) {
		uint64_t off = encode_super(ck);

		rc = td_layer_sync_io(lower, TD_OP_WRITE, off, ck->super_buf, TI_BLOCK, TD_REQ_FUA);
	}
	if (rc < 0) {
		td_err("integrity: checkpoint failed: %s; refusing further writes", strerror(-rc));
		c->broken = rc;
		return rc;
	}
	ti_journal_reopen(ck->j, true);
	if (!ck->sync_hold_gen)
		ti_gen_advance_sync(ck->gen, ck->j->epoch);
	return 0;
}
