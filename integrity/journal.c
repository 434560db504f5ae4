/* The MAC journal and checkpoints.
 *
 * Records of concurrent writes are packed into 4 KiB journal blocks and
 * written with FUA (group commit): while one journal write is in flight
 * the next block fills up. A request's data write is issued only when
 * every journal block holding its records is durable.
 *
 * Journal blocks of one epoch are written at increasing indexes from 0;
 * recovery reads the whole region and takes every valid block of the
 * current epoch, so several journal writes may be in flight at once.
 *
 * A flush point (fpoint.c) rides in the half-filled records block when it
 * fits (sealing it), or is a journal block of its own, queued like the
 * others at the next index, after the half-filled records block.
 *
 * A checkpoint (journal three-quarters full, many records, or many dirty
 * tag pages) stops new writes from journaling, waits for the journaled
 * ones to complete, writes the dirty tag pages, flushes, and writes the
 * next epoch's superblock with FUA. Records of the old epoch are then
 * dead: the tag table holds everything they said. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/integ.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/stats.h"

static void ckpt_step(struct td_layer *l);

static struct ti_jblock *jblock_new(struct td_layer *l)
{
	struct ti_jblock *jb = calloc(1, sizeof(*jb));

	if (!jb)
		return NULL;
	jb->l = l;
	return jb;
}

static void jblock_free(struct ti_jblock *jb)
{
	free(jb->waiters);
	free(jb->fpblock);
	free(jb);
}

static int jblock_wait(struct ti_jblock *jb, struct ti_req *r)
{
	if (jb->nwait && jb->waiters[jb->nwait - 1] == r)
		return 0;
	if (jb->nwait == jb->capwait) {
		unsigned cap = jb->capwait ? 2 * jb->capwait : 8;
		struct ti_req **n = realloc(jb->waiters, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		jb->waiters = n;
		jb->capwait = cap;
	}
	jb->waiters[jb->nwait++] = r;
	r->jpending++;
	return 0;
}

#define TI_BATCH_MAX 64 /* journal blocks per write */

/* Consecutive sealed journal blocks written with one FUA write. */
struct ti_jbatch {
	struct td_layer *l;
	struct ti_jblock *blocks; /* linked by next */
	unsigned n;
	uint8_t *buf;
	struct td_req req;
	struct iovec iov;
	int err;
	struct ti_jbatch *dnext; /* v2: completed, waiting for lower indexes */
};

static void jbatch_release(struct td_layer *l, struct ti_jbatch *b, int err)
{
	struct ti_jblock *jb = b->blocks;

	while (jb) {
		struct ti_jblock *next = jb->next;
		unsigned i;

		for (i = 0; i < jb->nwait; i++) {
			struct ti_req *r = jb->waiters[i];

			if (err && !r->err)
				r->err = err;
			if (--r->jpending == 0)
				ti_req_continue(r);
		}
		if (jb->fpblock)
			ti_fp_block_done(l, err);
		jblock_free(jb);
		jb = next;
	}
	if (b->buf)
		td_buf_put(b->buf, (size_t)b->n * TI_BLOCK);
	free(b);
}

static void jbatch_done(struct td_req *req, int err)
{
	struct ti_jbatch *b = req->opaque;
	struct td_layer *l = b->l;
	struct ti_priv *p = l->priv;

	p->j_inflight--;
	if (err)
		td_err("integrity: journal write failed: %s", strerror(-err));
	if (!p->tree) {
		jbatch_release(l, b, err);
	} else {
		/* v2: writes are released in journal order, so that data on disk
		 * always has every earlier journal block of its epoch durable
		 * too (recovery relies on it to tell a removed journal block
		 * from a crash). After a failed journal write nothing later is
		 * released: later data must not outrun the hole. */
		struct ti_jbatch **pp = &p->jdone;

		b->err = err;
		while (*pp && (*pp)->blocks->index < b->blocks->index)
			pp = &(*pp)->dnext;
		b->dnext = *pp;
		*pp = b;
		while (p->jdone && p->jdone->blocks->index == p->jrelease) {
			struct ti_jbatch *h = p->jdone;

			p->jdone = h->dnext;
			p->jrelease += h->n;
			if (h->err && !p->jfail) {
				p->jfail = h->err;
				p->broken = h->err; /* writes refused until reopened */
				td_err("integrity: refusing further writes after a journal write "
				       "failure (reopen to recover)");
			}
			jbatch_release(l, h, p->jfail);
		}
	}
	ti_fp_journal_done(l);
	ti_journal_kick(l);
	if (p->ck == CK_DRAIN)
		ckpt_step(l);
}

/* Takes up to TI_BATCH_MAX consecutive blocks off the queue and writes
 * them with one FUA write: one device flush for the whole group. */
static void jbatch_submit(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_jbatch *b = calloc(1, sizeof(*b));
	struct ti_jblock *jb, **tail;
	unsigned i;

	if (!b)
		return; /* retried at the next completion or request */
	b->l = l;
	tail = &b->blocks;
	while (p->jq_head && b->n < TI_BATCH_MAX &&
	       (!b->n || p->jq_head->index == b->blocks->index + b->n)) {
		jb = p->jq_head;
		p->jq_head = jb->next;
		if (!p->jq_head)
			p->jq_tail = NULL;
		jb->next = NULL;
		*tail = jb;
		tail = &jb->next;
		b->n++;
	}
	p->j_inflight++;
	b->req.done = jbatch_done;
	b->req.opaque = b;
	b->buf = td_buf_get((size_t)b->n * TI_BLOCK);
	if (!b->buf) {
		td_req_complete_later(l->ctx, &b->req, -ENOMEM);
		return;
	}
	for (i = 0, jb = b->blocks; jb; jb = jb->next, i++) {
		if (jb->fpblock)
			memcpy(b->buf + (size_t)i * TI_BLOCK, jb->fpblock, TI_BLOCK);
		else
			ti_jblock_encode(p->epoch, jb->index, jb->recs, jb->nrec, p->uuid,
					 p->mac_loop, b->buf + (size_t)i * TI_BLOCK);
	}
	b->iov.iov_base = b->buf;
	b->iov.iov_len = (size_t)b->n * TI_BLOCK;
	b->req.op = TD_OP_WRITE;
	b->req.flags = TD_REQ_FUA;
	b->req.off = p->p.journal_off + (uint64_t)b->blocks->index * TI_BLOCK;
	b->req.len = (uint64_t)b->n * TI_BLOCK;
	b->req.iov = &b->iov;
	b->req.iovcnt = 1;
	td_layer_submit(l->below, &b->req);
}

/* How many journal writes may be in flight before a partly filled block
 * waits for one of them (TD_JOURNAL_PARTIAL, default 1: pure group commit;
 * at most TI_JOURNAL_INFLIGHT).  Alternating runs of random 4 KiB writes
 * at QD32 gave 35.5k/38.0k/38.6k IOPS with 1 against 33.5k/31.9k/34.9k
 * with 2: fewer, fuller FUA writes.  QD1 and QD8 were within noise. */
static unsigned ti_partial_limit(void)
{
	static int v = -1;

	if (v < 0) {
		const char *e = getenv("TD_JOURNAL_PARTIAL");

		v = e ? atoi(e) : 1;
		if (v < 1 || v > TI_JOURNAL_INFLIGHT)
			v = 1;
	}
	return (unsigned)v;
}

static void queue_sealed(struct ti_priv *p, struct ti_jblock *jb)
{
	jb->next = NULL;
	if (p->jq_tail)
		p->jq_tail->next = jb;
	else
		p->jq_head = jb;
	p->jq_tail = jb;
}

/* Gives the open block its index and queues it for writing. */
static void seal_open(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_jblock *jb = p->open;

	if (!jb || !jb->nrec)
		return;
	p->open = NULL;
	jb->index = p->jpos++;
	queue_sealed(p, jb);
}

int ti_journal_flush_point(struct td_layer *l, const struct ti_fpoint *fp)
{
	struct ti_priv *p = l->priv;
	struct ti_jblock *jb = p->open;

	if (jb && jb->nrec &&
	    TI_REC_OFF + jb->nrec * TI_REC_LEN + fp->n * TI_FP_RANGE_LEN <= TI_MAC_OFF) {
		/* it rides in the half-filled records block, sealed now: no
		 * index and no write of its own */
		jb->fpblock = malloc(TI_BLOCK);
		if (!jb->fpblock)
			return -ENOMEM;
		p->open = NULL;
		jb->index = p->jpos++;
		ti_jflush_encode(p->epoch, jb->index, jb->recs, jb->nrec, fp, p->uuid, p->mac_loop,
				 jb->fpblock);
		queue_sealed(p, jb);
		ti_journal_kick(l);
		return 0;
	}
	/* a block of its own, after the half-filled records block: it never
	 * takes an index a request's records were counted on */
	seal_open(l);
	if (p->jpos >= p->p.journal_blocks)
		return -ENOSPC;
	jb = jblock_new(l);
	if (!jb)
		return -ENOMEM;
	jb->fpblock = malloc(TI_BLOCK);
	if (!jb->fpblock) {
		jblock_free(jb);
		return -ENOMEM;
	}
	jb->index = p->jpos++;
	ti_jflush_encode(p->epoch, jb->index, NULL, 0, fp, p->uuid, p->mac_loop, jb->fpblock);
	queue_sealed(p, jb);
	ti_journal_kick(l);
	return 0;
}

void ti_journal_kick(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	/* a partly filled block goes out only when the disk is idle: that is
	 * the group commit */
	if (p->open && p->open->nrec && p->j_inflight < ti_partial_limit() && !p->jq_head)
		seal_open(l);
	while (p->jq_head && p->j_inflight < TI_JOURNAL_INFLIGHT)
		jbatch_submit(l);
}

static uint64_t recs_needed(const struct ti_req *r)
{
	return r->kind == TI_ZERO ? 1 : r->n;
}

static void park(struct ti_priv *p, struct ti_req *r)
{
	r->next = NULL;
	if (p->park_tail)
		p->park_tail->next = r;
	else
		p->park_head = r;
	p->park_tail = r;
}

void ti_journal_add(struct td_layer *l, struct ti_req *r)
{
	struct ti_priv *p = l->priv;
	uint64_t need = recs_needed(r), i;
	uint64_t blocks = TI_JOURNAL_BLOCKS_FOR(need);

	/* no room in this epoch, or a checkpoint is draining: wait for the
	 * next epoch (never deadlocks: the checkpoint waits only for
	 * requests already journaled) */
	if (p->ck != CK_IDLE || p->jpos + blocks + 1 >= p->p.journal_blocks) {
		park(p, r);
		ti_ckpt_maybe(l);
		return;
	}
	r->journaled = true;
	p->journaled_inflight++;
	r->jpending = 1; /* held until every record is placed */
	for (i = 0; i < need; i++) {
		struct ti_rec *rec;

		if (!p->open && !(p->open = jblock_new(l))) {
			r->err = -ENOMEM;
			break;
		}
		rec = &p->open->recs[p->open->nrec++];
		rec->block = r->b0 + i;
		if (r->kind == TI_ZERO) {
			rec->block = r->b0;
			rec->seq = r->seq0 | TI_SEQ_ZERO_RANGE;
			rec->count = r->n;
		} else {
			rec->seq = r->seq0 + i;
			rec->count = 0;
			memcpy(rec->tag, r->tags + i * TI_TAG_LEN, TI_TAG_LEN);
		}
		if (jblock_wait(p->open, r) < 0)
			r->err = -ENOMEM;
		if (p->open->nrec == TI_RECS_PER_BLOCK)
			seal_open(l);
	}
	p->records_since += need;
	ti_journal_kick(l);
	if (--r->jpending == 0)
		ti_req_continue(r);
}

/* A checkpoint is due when the journal is 3/4 full, after 64 records per
 * journal block (bounds the data blocks recovery re-reads after a crash;
 * 65536 with the default journal), or when dirty pages fill half the tag
 * cache. */
bool ti_ckpt_wanted(struct ti_priv *p)
{
	return p->jpos * 4 >= p->p.journal_blocks * 3 ||
	       p->records_since >= 64ull * p->p.journal_blocks || p->ndirty * 2 >= p->max_pages ||
	       p->fp_ck_want;
}

/* ---- checkpoints ---------------------------------------------------------- */

static void ck_io_done(struct td_req *req, int err);

struct ck_page_io {
	struct td_req req;
	struct iovec iov;
	struct ti_page *pg;
	struct td_layer *l;
};

static void page_written(struct td_req *req, int err)
{
	struct ck_page_io *io = req->opaque;
	struct td_layer *l = io->l;
	struct ti_priv *p = l->priv;

	if (io->pg) {
		io->pg->writing = false;
		if (err)
			ti_page_mark_dirty(p, io->pg);
		else if (p->tree)
			io->pg->slot ^= 1; /* the new tree uses the slot just written */
		io->pg->pins--;
	}
	if (err && !p->ck_err)
		p->ck_err = err;
	free(io);
	if (--p->ck_pending_io == 0)
		ckpt_step(l);
}

static void ck_write(struct td_layer *l, struct ti_page *pg, uint64_t off, void *buf, size_t len)
{
	struct ti_priv *p = l->priv;
	struct ck_page_io *io = calloc(1, sizeof(*io));

	if (!io) {
		p->ck_err = -ENOMEM;
		if (pg)
			ti_page_mark_dirty(p, pg);
		return;
	}
	if (pg) {
		pg->writing = true;
		pg->pins++;
	}
	io->pg = pg;
	io->l = l;
	td_req_init1(&io->req, &io->iov, TD_OP_WRITE, off, buf, len, page_written, io);
	p->ck_pending_io++;
	td_layer_submit(l->below, &io->req);
}

/* v2: the new tree — h0 of dirty tag pages into their L1 pages, h1 of
 * dirty L1 pages into L2, and the root. */
static int tree_update(struct ti_priv *p)
{
	size_t i;
	int lv;

	for (lv = 0; lv <= 1; lv++) {
		for (i = 0; i < p->hsize; i++) {
			struct ti_page *pg;

			for (pg = p->htab[i]; pg; pg = pg->hnext) {
				uint8_t *dst;

				if (!pg->dirty || pg->level != lv)
					continue;
				dst = lv ? p->l2 + pg->idx * TI_HASH_LEN : ti_l1_entry(p, pg->idx);
				if (!dst) {
					td_err("integrity: tag page %llu is dirty without its tree page",
					       (unsigned long long)pg->idx);
					return -EIO;
				}
				if (ti_tree_hash(p->tree_mac, p->uuid, lv, pg->idx, pg->data, dst) < 0)
					return -EIO;
			}
		}
	}
	return ti_tree_root(p->tree_mac, p->uuid, p->p.l2_pages, p->l2, p->ck_root);
}

static void write_dirty_pages(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	size_t i;

	p->ck_pending_io = 1;
	if (p->tree) {
		int rc = tree_update(p);

		if (rc < 0) {
			p->ck_err = rc;
			if (--p->ck_pending_io == 0)
				ckpt_step(l);
			return;
		}
	}
	for (i = 0; i < p->hsize; i++) {
		struct ti_page *pg;

		for (pg = p->htab[i]; pg; pg = pg->hnext) {
			uint64_t off;

			if (!pg->dirty)
				continue;
			pg->dirty = false;
			p->ndirty--;
			/* v2: into the slot the current tree does not use */
			if (!p->tree)
				off = p->p.tags_off + pg->idx * TI_BLOCK;
			else if (pg->level)
				off = ti_l1_page_off(&p->p, pg->idx, pg->slot ^ 1);
			else
				off = ti_tag_page_off(&p->p, pg->idx, pg->slot ^ 1);
			ck_write(l, pg, off, pg->data, TI_BLOCK);
		}
	}
	if (p->tree) /* L2 whole, into the region of the next epoch */
		ck_write(l, NULL, ti_l2_off(&p->p, (unsigned)((p->epoch + 1) % 2)), p->l2,
			 (size_t)p->p.l2_pages * TI_BLOCK);
	if (--p->ck_pending_io == 0)
		ckpt_step(l);
}

static void ck_io_done(struct td_req *req, int err)
{
	struct td_layer *l = req->opaque;
	struct ti_priv *p = l->priv;

	if (err && !p->ck_err)
		p->ck_err = err;
	ckpt_step(l);
}

static void ck_submit(struct td_layer *l, enum td_op op, uint64_t off, void *buf, unsigned flags)
{
	struct ti_priv *p = l->priv;

	memset(&p->ck_req, 0, sizeof(p->ck_req));
	td_req_init1(&p->ck_req, &p->ck_iov, op, off, buf, TI_BLOCK, ck_io_done, l);
	p->ck_req.flags = flags;
	td_layer_submit(l->below, &p->ck_req);
}

static void ckpt_finish(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;

	p->ck = CK_IDLE;
	if (err) {
		td_err("integrity: checkpoint failed: %s; refusing further writes", strerror(-err));
		p->broken = err;
	} else {
		p->epoch++;
		p->jpos = 0;
		p->jrelease = 0;
		p->records_since = 0;
		ti_gen_advance(l);
	}
	ti_fp_ckpt_done(l, err);
	ti_resume_parked(l);
}

/* The checkpoint state machine; every step re-enters here. */
static void ckpt_step(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_super s;

	switch (p->ck) {
	case CK_IDLE:
		return;
	case CK_DRAIN:
		if (p->journaled_inflight || p->j_inflight || p->jq_head)
			return;
		/* The pages about to be written vouch for data written since the
		 * last checkpoint, which may still sit in a volatile cache: a
		 * page that reached the disk before its data would name a tag
		 * the block does not have, and recovery keeps the table entry
		 * when no record verifies (false alarm). Flush the data first. */
		p->ck = CK_PREFLUSH;
		p->ck_err = 0;
		ck_submit(l, TD_OP_FLUSH, 0, NULL, 0);
		return;
	case CK_PREFLUSH:
		if (p->ck_err) {
			ckpt_finish(l, p->ck_err);
			return;
		}
		p->ck = CK_PAGES;
		write_dirty_pages(l);
		return;
	case CK_PAGES:
		if (p->ck_err) {
			ckpt_finish(l, p->ck_err);
			return;
		}
		p->ck = CK_FLUSH;
		ck_submit(l, TD_OP_FLUSH, 0, NULL, 0);
		return;
	case CK_FLUSH:
		if (p->ck_err) {
			ckpt_finish(l, p->ck_err);
			return;
		}
		p->ck = CK_SUPER;
		memset(&s, 0, sizeof(s));
		s.version = p->p.version;
		s.epoch = p->epoch + 1;
		s.seq_base = p->next_seq;
		if (p->tree)
			memcpy(s.root, p->ck_root, TI_HASH_LEN);
		ti_super_encode(&s, p->uuid, p->mac_loop, p->super_buf);
		ck_submit(l, TD_OP_WRITE, p->p.super_off + (s.epoch % 2) * TI_BLOCK, p->super_buf,
			  TD_REQ_FUA);
		return;
	case CK_SUPER:
		ckpt_finish(l, p->ck_err);
		return;
	}
}

void ti_ckpt_maybe(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	if (p->ck == CK_DRAIN) {
		ckpt_step(l); /* a request it waited for has completed */
		return;
	}
	if (p->ck != CK_IDLE || p->broken)
		return;
	if (!ti_ckpt_wanted(p) && !p->park_head)
		return;
	p->ck = CK_DRAIN;
	/* whatever is half-filled belongs to requests we wait for */
	seal_open(l);
	ti_journal_kick(l);
	ckpt_step(l);
}

int ti_ckpt_sync(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	if (p->broken)
		return p->broken;
	if (p->ck == CK_IDLE) {
		if (!p->jpos && !p->ndirty)
			return 0;
		p->ck = CK_DRAIN;
		seal_open(l);
		ti_journal_kick(l);
		ckpt_step(l);
	}
	while (p->ck != CK_IDLE) {
		int rc = td_loop_run_once(l->ctx->loop, 1000);

		if (rc < 0)
			return rc;
	}
	return p->broken;
}
