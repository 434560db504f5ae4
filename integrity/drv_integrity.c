/* integrity: a MAC per 4 KiB block, checked on every read, with
 * data-before-ack ordering and crash consistency without writing data
 * twice. The ordering and the recovery argument are in integ.h and
 * docs/FORMAT.md; this file holds the request flows:
 *
 *   read:  lock (shared) -> tag pages -> data -> verify on workers
 *   write: lock (exclusive) -> tag pages -> MACs on workers -> journal
 *          records durable -> data write -> tags into the cache -> ack
 *   zero:  lock (exclusive) -> tag pages -> one zero-range record ->
 *          write-zeroes/discard below (+ zero whole tag pages) -> ack
 *   flush: lower flush -> flush point (fpoint.c) -> ack; a FUA write waits
 *          for a flush point holding it after its data write
 *
 * The block range lock keeps a block's table entry stable while a read
 * verifies it and makes writes to one block strictly one after another,
 * so a block has exactly one valid tag at any time. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/integ.h"
#include "crypt/backend/secmem.h"
#include "keymgr/keyring.h"
#include "keymgr/statedir.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/core/util.h"

enum {
	ST_LOCK,
	ST_PAGES,
	ST_MAC,
	ST_JOURNAL,
	ST_DATA,
	ST_VERIFY,
	ST_RESOLVE,
	ST_EARLY_DATA, /* test hook only, see no_journal_wait */
};

/* TD_TEST_INTEGRITY_NO_JOURNAL_WAIT=1 (read at open; tests only) breaks
 * the ordering rule on purpose: the data write goes out before its journal
 * records, so the crash simulator can show it notices. */
static bool no_journal_wait;

#define MIN_CHUNK_BLOCKS 16

static void finish(struct ti_req *r, int err);
static void start_locked(struct ti_req *r);

/* ---- range lock (tapdisk/core/rangelock.c): reads shared, writes exclusive ---- */

static void rl_granted(struct td_rl_item *it)
{
	start_locked((struct ti_req *)((char *)it - offsetof(struct ti_req, rl)));
}

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t *iov_at(const struct td_req *req, uint64_t off)
{
	int i;

	for (i = 0; i < req->iovcnt; i++) {
		if (off < req->iov[i].iov_len)
			return (uint8_t *)req->iov[i].iov_base + off;
		off -= req->iov[i].iov_len;
	}
	return NULL;
}

static void log_failure(struct td_layer *l, uint64_t block)
{
	struct ti_priv *p = l->priv;
	unsigned i;

	for (i = 0; i < p->nlogged && i < 64; i++)
		if (p->logged[i] == block)
			return;
	p->logged[p->nlogged++ % 64] = block;
	td_err("integrity: block %llu (byte offset %llu) failed verification: refusing to "
	       "return it (EIO)",
	       (unsigned long long)block, (unsigned long long)block * TI_BLOCK);
}

static void child_io(struct ti_req *r, enum td_op op, uint64_t off, uint64_t len,
		     void (*done)(struct td_req *, int), unsigned flags, bool with_iov)
{
	struct ti_priv *p = r->l->priv;

	memset(&r->child, 0, sizeof(r->child));
	r->child.op = op;
	r->child.flags = flags;
	r->child.off = p->p.data_start + off;
	r->child.len = len;
	if (with_iov) {
		r->child.iov = r->parent->iov;
		r->child.iovcnt = r->parent->iovcnt;
	}
	r->child.done = done;
	r->child.opaque = r;
	td_layer_submit(r->l->below, &r->child);
}

/* ---- worker jobs ------------------------------------------------------------- */

static void mac_fn(struct td_work *w, int worker)
{
	struct ti_work *tw = (struct ti_work *)w;
	struct ti_req *r = tw->r;
	struct ti_priv *p = r->l->priv;
	struct td_hmac *mac = p->macs[worker % p->nmacs];
	uint64_t k;

	for (k = tw->first; k < tw->first + tw->n; k++)
		if (ti_block_tag(mac, p->uuid, r->b0 + k, r->seq0 + k,
				 iov_at(r->parent, k * TI_BLOCK), r->tags + k * TI_TAG_LEN) < 0)
			tw->bad++;
}

static void verify_fn(struct td_work *w, int worker)
{
	struct ti_work *tw = (struct ti_work *)w;
	struct ti_req *r = tw->r;
	struct ti_priv *p = r->l->priv;
	struct td_hmac *mac = p->macs[worker % p->nmacs];
	uint8_t tag[TI_TAG_LEN];
	static const uint8_t zero[TI_ENTRY_LEN];
	uint64_t k;

	for (k = tw->first; k < tw->first + tw->n; k++) {
		uint64_t b = r->b0 + k;
		const uint8_t *e = ti_entry(p, b);
		uint8_t *data = iov_at(r->parent, k * TI_BLOCK);
		int ok = 0;

		if (!e) {
			ok = 0;
		} else if (memcmp(e, zero, TI_ENTRY_LEN) == 0) {
			/* never written, or zeroed: reads as zeros */
			memset(data, 0, TI_BLOCK);
			ok = 1;
		} else if (ti_block_tag(mac, p->uuid, b, ti_le64(e), data, tag) == 0) {
			ok = td_ct_memeq(tag, e + 8, TI_TAG_LEN);
		}
		if (!ok) {
			if (!tw->bad)
				tw->first_bad = b;
			tw->bad++;
		}
	}
}

static void work_done(struct td_work *w);

static void run_workers(struct ti_req *r, void (*fn)(struct td_work *, int))
{
	int nw = td_workers_count(r->l->ctx->workers), chunks, i;
	uint64_t per, at = 0;

	chunks = nw < 1 ? 1 : (nw > TI_MAX_CHUNKS ? TI_MAX_CHUNKS : nw);
	if ((uint64_t)chunks > r->n / MIN_CHUNK_BLOCKS)
		chunks = (int)(r->n / MIN_CHUNK_BLOCKS);
	if (chunks < 1)
		chunks = 1;
	per = (r->n + (uint64_t)chunks - 1) / (uint64_t)chunks;
	r->nworks = chunks;
	r->pending = chunks;
	for (i = 0; i < chunks; i++) {
		struct ti_work *tw = &r->works[i];

		tw->r = r;
		tw->first = at;
		tw->n = r->n - at < per ? r->n - at : per;
		tw->bad = 0;
		tw->first_bad = 0;
		at += tw->n;
		tw->w.fn = fn;
		tw->w.done = work_done;
	}
	if (chunks == 1 && r->n * TI_BLOCK <= td_workers_inline_max()) {
		td_workers_submit_inline(r->l->ctx->workers, &r->works[0].w);
		return;
	}
	for (i = 0; i < chunks; i++)
		td_workers_submit(r->l->ctx->workers, &r->works[i].w);
}

/* ---- the state machine -------------------------------------------------------- */

static void data_done(struct td_req *child, int err)
{
	struct ti_req *r = child->opaque;

	if (err && !r->err)
		r->err = err;
	if (--r->pending > 0)
		return;
	ti_req_continue(r);
}

static void work_done(struct td_work *w)
{
	struct ti_work *tw = (struct ti_work *)w;
	struct ti_req *r = tw->r;
	int i;

	if (--r->pending > 0)
		return;
	for (i = 0; i < r->nworks; i++) {
		if (r->works[i].bad) {
			if (!r->bad_blocks)
				r->first_bad = r->works[i].first_bad;
			r->bad_blocks += (uint64_t)r->works[i].bad;
		}
	}
	ti_req_continue(r);
}

static void apply_write(struct ti_req *r)
{
	struct ti_priv *p = r->l->priv;
	uint64_t k;

	for (k = 0; k < r->n; k++) {
		uint64_t b = r->b0 + k;
		struct ti_page *pg = ti_page_find(p, b / TI_ENTRIES_PER_PAGE);
		uint8_t *e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;

		ti_put64(e, r->seq0 + k);
		memcpy(e + 8, r->tags + k * TI_TAG_LEN, TI_TAG_LEN);
		ti_page_mark_dirty(p, pg);
	}
}

static void apply_zero(struct ti_req *r)
{
	struct ti_priv *p = r->l->priv;
	uint64_t i, first = r->b0 / TI_ENTRIES_PER_PAGE, last = (r->b0 + r->n - 1) / TI_ENTRIES_PER_PAGE;

	if (p->tree) {
		ti_tree_zero(r->l, r->b0, r->n);
		return;
	}
	for (i = first; i <= last; i++) {
		struct ti_page *pg = ti_page_find(p, i);
		uint64_t s = i * TI_ENTRIES_PER_PAGE, e = s + TI_ENTRIES_PER_PAGE;

		if (!pg)
			continue; /* zeroed on disk */
		if (s < r->b0)
			s = r->b0;
		if (e > r->b0 + r->n)
			e = r->b0 + r->n;
		memset(pg->data + (s % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN, 0,
		       (e - s) * TI_ENTRY_LEN);
		ti_page_mark_dirty(p, pg);
	}
}

/* After a failed data write the block holds the old data, the new data
 * or a mix: read it back and keep, per block, the tag that verifies. */
static void resolve_done(struct td_req *child, int err)
{
	struct ti_req *r = child->opaque;
	struct ti_priv *p = r->l->priv;
	uint8_t tag[TI_TAG_LEN];
	uint64_t k, kept_new = 0;

	if (!err) {
		for (k = 0; k < r->n; k++) {
			uint64_t b = r->b0 + k;
			struct ti_page *pg = ti_page_find(p, b / TI_ENTRIES_PER_PAGE);
			uint8_t *e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;

			if (ti_block_tag(p->mac_loop, p->uuid, b, r->seq0 + k,
					 (uint8_t *)r->bounce + k * TI_BLOCK, tag) == 0 &&
			    td_ct_memeq(tag, r->tags + k * TI_TAG_LEN, TI_TAG_LEN)) {
				ti_put64(e, r->seq0 + k);
				memcpy(e + 8, tag, TI_TAG_LEN);
				ti_page_mark_dirty(p, pg);
				kept_new++;
			}
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
	struct ti_priv *p = r->l->priv;

	r->stage = ST_RESOLVE;
	r->bounce_len = (size_t)(r->n * TI_BLOCK);
	r->bounce = td_buf_get(r->bounce_len);
	if (!r->bounce) {
		finish(r, r->err);
		return;
	}
	memset(&r->child, 0, sizeof(r->child));
	r->iov.iov_base = r->bounce;
	r->iov.iov_len = r->bounce_len;
	r->child.op = TD_OP_READ;
	r->child.off = p->p.data_start + r->b0 * TI_BLOCK;
	r->child.len = r->bounce_len;
	r->child.iov = &r->iov;
	r->child.iovcnt = 1;
	r->child.done = resolve_done;
	r->child.opaque = r;
	td_layer_submit(r->l->below, &r->child);
}

static void start_zero_io(struct ti_req *r)
{
	struct ti_priv *p = r->l->priv;
	uint64_t pf = (r->b0 + TI_ENTRIES_PER_PAGE - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t pl = (r->b0 + r->n) / TI_ENTRIES_PER_PAGE;

	r->pending = 1;
	r->stage = ST_DATA;
	if (pl > pf && !p->tree) {
		/* the tag pages it covers wholly are zeroed on disk (cached ones
		 * are zeroed in memory too, in apply_zero) */
		memset(&r->tzero, 0, sizeof(r->tzero));
		r->tzero.op = TD_OP_WRITE_ZEROES;
		r->tzero.flags = TD_REQ_NO_UNMAP;
		r->tzero.off = p->p.tags_off + pf * TI_BLOCK;
		r->tzero.len = (pl - pf) * TI_BLOCK;
		r->tzero.done = data_done;
		r->tzero.opaque = r;
		r->pending++;
		td_layer_submit(r->l->below, &r->tzero);
	}
	memset(&r->child, 0, sizeof(r->child));
	r->child.op = r->parent->op;
	r->child.flags = r->parent->flags;
	r->child.off = p->p.data_start + r->b0 * TI_BLOCK;
	r->child.len = r->n * TI_BLOCK;
	r->child.done = data_done;
	r->child.opaque = r;
	td_layer_submit(r->l->below, &r->child);
}

void ti_req_continue(struct ti_req *r)
{
	struct td_layer *l = r->l;
	struct ti_priv *p = l->priv;

	switch (r->stage) {
	case ST_PAGES:
		if (r->err) {
			finish(r, r->err);
			return;
		}
		if (r->kind == TI_READ) {
			r->stage = ST_DATA;
			r->pending = 1;
			child_io(r, TD_OP_READ, r->b0 * TI_BLOCK, r->n * TI_BLOCK, data_done, 0, true);
		} else if (r->kind == TI_WRITE) {
			r->stage = ST_MAC;
			r->seq0 = p->next_seq;
			p->next_seq += r->n;
			ti_fp_track(p, r);
			r->tags_len = (size_t)r->n * TI_TAG_LEN;
			r->tags = malloc(r->tags_len);
			if (!r->tags) {
				finish(r, -ENOMEM);
				return;
			}
			run_workers(r, mac_fn);
		} else {
			r->stage = ST_JOURNAL;
			r->seq0 = p->next_seq++;
			ti_journal_add(l, r);
		}
		return;
	case ST_MAC:
		if (r->bad_blocks) {
			finish(r, -EIO);
			return;
		}
		if (no_journal_wait) {
			r->stage = ST_EARLY_DATA;
			r->pending = 1;
			child_io(r, TD_OP_WRITE, r->b0 * TI_BLOCK, r->n * TI_BLOCK, data_done,
				 r->parent->flags & TD_REQ_FUA, true);
			return;
		}
		r->stage = ST_JOURNAL;
		ti_journal_add(l, r);
		return;
	case ST_EARLY_DATA:
		if (r->err) {
			finish(r, r->err);
			return;
		}
		r->stage = ST_JOURNAL;
		ti_journal_add(l, r);
		return;
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
		if (no_journal_wait) {
			apply_write(r); /* the data went out in ST_EARLY_DATA */
			finish(r, 0);
			return;
		}
		r->stage = ST_DATA;
		r->pending = 1;
		if (r->parent->flags & TD_REQ_FUA)
			p->fp_fua_data++; /* fpoint.c: group commit of flush points */
		child_io(r, TD_OP_WRITE, r->b0 * TI_BLOCK, r->n * TI_BLOCK, data_done,
			 r->parent->flags & TD_REQ_FUA, true);
		return;
	case ST_DATA:
		if (r->kind == TI_READ) {
			if (r->err) {
				finish(r, r->err);
				return;
			}
			r->stage = ST_VERIFY;
			run_workers(r, verify_fn);
			return;
		}
		if (r->kind == TI_WRITE) {
			if (r->err) {
				if (r->parent->flags & TD_REQ_FUA)
					ti_fp_fua_data_end(l);
				start_resolve(r);
				return;
			}
			apply_write(r);
			if (ti_fp_data_done(l, r))
				return; /* FUA: answered once a flush point holds it */
		} else {
			if (!r->err)
				apply_zero(r);
		}
		finish(r, r->err);
		return;
	case ST_VERIFY:
		if (r->bad_blocks) {
			struct td_stats_shared *st = l->ctx->stats;
			int k;

			if (st)
				st->integrity_failures += r->bad_blocks;
			/* name every failing block once in the log */
			for (k = 0; k < r->nworks; k++)
				if (r->works[k].bad)
					log_failure(l, r->works[k].first_bad);
			finish(r, -EIO);
			return;
		}
		finish(r, 0);
		return;
	default:
		finish(r, -EIO);
	}
}

static void start_locked(struct ti_req *r)
{
	struct ti_priv *p = r->l->priv;
	int missing;

	r->stage = ST_PAGES;
	missing = ti_pages_pin(r->l, r);
	if (missing > 0) {
		r->next = p->page_wait;
		p->page_wait = r;
		return;
	}
	ti_req_continue(r);
}

static void finish(struct ti_req *r, int err)
{
	struct td_layer *l = r->l;
	struct ti_priv *p = l->priv;
	struct td_req *parent = r->parent;

	ti_pages_unpin(l, r);
	ti_fp_untrack(p, r, err);
	if (r->rl.locked)
		td_rl_release(&p->rl, &r->rl);
	if (r->journaled)
		p->journaled_inflight--;
	free(r->tags);
	if (r->bounce)
		td_buf_put(r->bounce, r->bounce_len);
	free(r);
	td_req_complete(parent, err);
	if (p->ck == CK_DRAIN || ti_ckpt_wanted(p))
		ti_ckpt_maybe(l);
}

void ti_req_finish(struct ti_req *r, int err)
{
	finish(r, err);
}

void ti_resume_parked(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	struct ti_req *list = p->park_head;

	p->park_head = p->park_tail = NULL;
	while (list) {
		struct ti_req *r = list;

		list = r->next;
		r->next = NULL;
		if (p->broken)
			finish(r, -EIO);
		else
			ti_journal_add(l, r);
	}
}

static void submit(struct td_layer *l, struct td_req *req, enum ti_kind kind)
{
	struct ti_priv *p = l->priv;
	struct ti_req *r;

	if (kind != TI_READ && p->broken) {
		td_req_complete_later(l->ctx, req, -EIO);
		return;
	}
	/* A write's records must fit an empty epoch of the journal (see
	 * ti_journal_add), or it would wait for room forever. vdkey never
	 * formats a journal smaller than the largest request needs; only a
	 * hand-made image can have one. */
	if (kind == TI_WRITE &&
	    TI_JOURNAL_BLOCKS_FOR(req->len / TI_BLOCK) + 1 >= p->p.journal_blocks) {
		td_err("integrity: a %llu-byte write does not fit the %u-block MAC journal; "
		       "refused (split it, or re-create the image with a larger journal)",
		       (unsigned long long)req->len, p->p.journal_blocks);
		td_req_complete_later(l->ctx, req, -EINVAL);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	r->parent = req;
	r->l = l;
	r->kind = kind;
	r->b0 = req->off / TI_BLOCK;
	r->n = req->len / TI_BLOCK;
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
	ti_fp_flush(l, req);
}

/* ---- open / close ------------------------------------------------------------- */

/* Reads both superblock slots of an image and picks the valid one with the
 * higher epoch (docs/FORMAT.md "Superblocks"). buf: one aligned block. */
static int super_load(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		      struct td_hmac *mac, uint8_t *buf, struct ti_super *out, char *err,
		      size_t errlen)
{
	struct ti_super s[2];
	int ok[2], i, rc;

	memset(s, 0, sizeof(s));
	for (i = 0; i < 2; i++) {
		s[i].version = prm->version;
		rc = td_layer_sync_io(lower, TD_OP_READ, prm->super_off + (uint64_t)i * TI_BLOCK, buf,
				      TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read the integrity superblocks: %s",
				 strerror(-rc));
			return rc;
		}
		ok[i] = ti_super_decode(buf, uuid, mac, &s[i]) == 0;
	}
	if (!ok[0] && !ok[1]) {
		snprintf(err, errlen,
			 "integrity metadata is corrupt: neither journal superblock verifies");
		return -EBADMSG;
	}
	i = ok[0] && ok[1] ? (s[1].epoch > s[0].epoch) : ok[1];
	/* the superblock of epoch e lives in slot e % 2 */
	if (s[i].epoch % 2 != (uint64_t)i) {
		snprintf(err, errlen, "integrity metadata is corrupt: superblock in the wrong slot");
		return -EBADMSG;
	}
	*out = s[i];
	return 0;
}

static int load_super(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_super s;
	int rc = super_load(l->below, &p->p, p->uuid, p->mac_loop, p->super_buf, &s, err, errlen);

	if (rc < 0)
		return rc;
	p->epoch = s.epoch;
	p->next_seq = s.seq_base ? s.seq_base : 1;
	memcpy(p->sb_root, s.root, TI_HASH_LEN);
	return 0;
}

static void free_priv(struct ti_priv *p)
{
	int i;

	for (i = 0; p->macs && i < p->nmacs; i++)
		td_hmac_free(p->macs[i]);
	free(p->macs);
	p->macs = NULL;
	td_hmac_free(p->mac_loop);
	p->mac_loop = NULL;
	if (p->mac_key)
		td_secure_free(p->mac_key);
	p->mac_key = NULL;
	if (p->super_buf)
		td_buf_put(p->super_buf, TI_BLOCK);
	p->super_buf = NULL;
	td_hmac_free(p->tree_mac);
	p->tree_mac = NULL;
	if (p->tree_key)
		td_secure_free(p->tree_key);
	p->tree_key = NULL;
	free(p->l2);
	p->l2 = NULL;
	ti_fp_free(p);
}

/* ---- v2: the freshness tree's top, and the trusted generation ------------------ */

/* Reads the L2 array of generation `epoch` (allocated into *l2out) and
 * checks it against the superblock's root: 1 matches, 0 does not, or a
 * negative errno when it cannot be read. */
static int l2_read_verify(struct td_layer *lower, const struct ti_params *prm,
			  const uint8_t uuid[16], struct td_hmac *tmac, uint64_t epoch,
			  const uint8_t want[TI_HASH_LEN], uint8_t **l2out)
{
	size_t len = (size_t)prm->l2_pages * TI_BLOCK;
	uint8_t root[TI_HASH_LEN];
	int rc;

	if (posix_memalign((void **)l2out, TI_BLOCK, len)) {
		*l2out = NULL;
		return -ENOMEM;
	}
	rc = td_layer_sync_io(lower, TD_OP_READ, ti_l2_off(prm, (unsigned)(epoch % 2)), *l2out, len,
			      0);
	if (rc < 0)
		return rc;
	return ti_tree_root(tmac, uuid, prm->l2_pages, *l2out, root) == 0 &&
	       td_ct_memeq(root, want, TI_HASH_LEN);
}

static int load_l2(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	int rc = l2_read_verify(l->below, &p->p, p->uuid, p->tree_mac, p->epoch, p->sb_root, &p->l2);

	if (rc < 0) {
		snprintf(err, errlen, "cannot read the freshness tree: %s", strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		snprintf(err, errlen,
			 "integrity metadata is corrupt: the freshness tree of generation %llu does "
			 "not match its superblock (replayed or damaged tree pages)",
			 (unsigned long long)p->epoch);
		return -EBADMSG;
	}
	return 0;
}

/* Before recovery: refuses a read-write open of an image older than the
 * generation this host trusts (docs/FORMAT.md "Rollback"). */
static int gen_check(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	char e[512], u[37];
	uint64_t trusted = 0;
	int rc;

	td_uuid_str(p->uuid, u);
	p->gen_track = !l->ctx->readonly && !l->ctx->nolock;
	if (p->gen_track) {
		rc = td_state_gen_prepare(p->uuid, e, sizeof(e));
		if (rc < 0) {
			snprintf(err, errlen,
				 "%s (the trusted generation of image %s is kept there; run as root "
				 "or point TDCRYPT_STATE_DIR at a directory only root can write)",
				 e, u);
			return rc;
		}
	}
	rc = td_state_gen_read(p->uuid, &trusted, e, sizeof(e));
	if (rc < 0) {
		if (p->gen_track) {
			snprintf(err, errlen, "%s", e);
			return rc;
		}
		td_warn("integrity: %s", e);
	}
	if (p->epoch < trusted) {
		if (p->gen_track) {
			snprintf(err, errlen,
				 "image %s was rolled back: its generation is %llu but this host has "
				 "seen generation %llu. An older copy of the image was put back? If "
				 "that is intended, run 'vdkey accept-rollback SPEC'",
				 u, (unsigned long long)p->epoch, (unsigned long long)trusted);
			return -ESTALE;
		}
		td_warn("integrity: image %s opened read-only at generation %llu, older than the "
			"generation %llu this host has seen (a snapshot, or a rolled-back copy)",
			u, (unsigned long long)p->epoch, (unsigned long long)trusted);
	}
	p->gen_written = trusted > p->epoch ? trusted : p->epoch;
	if (p->gen_track && trusted < p->epoch) {
		rc = td_state_gen_write(p->uuid, p->epoch, e, sizeof(e));
		if (rc < 0) {
			snprintf(err, errlen, "%s", e);
			return rc;
		}
	}
	return 0;
}

static void gen_work_fn(struct td_work *w, int worker)
{
	struct ti_priv *p = (struct ti_priv *)((char *)w - offsetof(struct ti_priv, gen_work));

	(void)worker;
	p->gen_work_rc = td_state_gen_write(p->uuid, p->gen_work_val, p->gen_err,
					    sizeof(p->gen_err));
}

static void gen_submit(struct ti_priv *p, struct td_ctx *ctx);

static void gen_work_done(struct td_work *w)
{
	struct ti_priv *p = (struct ti_priv *)((char *)w - offsetof(struct ti_priv, gen_work));

	p->gen_busy = false;
	if (p->gen_work_rc < 0)
		td_err("integrity: cannot record the trusted generation: %s", p->gen_err);
	else if (p->gen_work_val > p->gen_written)
		p->gen_written = p->gen_work_val;
	if (p->gen_work_rc == 0 && p->gen_want > p->gen_written)
		gen_submit(p, p->gen_ctx);
}

static void gen_submit(struct ti_priv *p, struct td_ctx *ctx)
{
	p->gen_busy = true;
	p->gen_ctx = ctx;
	p->gen_work_val = p->gen_want;
	memset(&p->gen_work, 0, sizeof(p->gen_work));
	p->gen_work.fn = gen_work_fn;
	p->gen_work.done = gen_work_done;
	td_workers_submit(ctx->workers, &p->gen_work);
}

/* After a checkpoint: the superblock of the new epoch is durable; record
 * the generation off the loop thread (an fdatasync). */
void ti_gen_advance(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	if (!p->gen_track || p->epoch <= p->gen_want)
		return;
	p->gen_want = p->epoch;
	if (!p->gen_busy)
		gen_submit(p, l->ctx);
}

static int integ_open(struct td_layer *l, const char *path, const char *opts, char *err,
		      size_t errlen)
{
	struct ti_priv *p = l->priv;
	const struct ti_open_arg *a = l->arg;
	int rc = -ENOMEM, i;

	if (!a) {
		snprintf(err, errlen,
			 "integrity: this layer is set up by crypt from the image's header "
			 "(format with 'vdkey format --integrity hmac-sha256' and open crypt:...); "
			 "a standalone integrity: spec is not supported yet");
		return -EINVAL;
	}
	p->p = a->params;
	memcpy(p->uuid, a->uuid, 16);
	no_journal_wait = getenv("TD_TEST_INTEGRITY_NO_JOURNAL_WAIT") &&
			  !strcmp(getenv("TD_TEST_INTEGRITY_NO_JOURNAL_WAIT"), "1");
	if (no_journal_wait)
		td_warn("integrity: TD_TEST_INTEGRITY_NO_JOURNAL_WAIT=1: data is written before "
			"its journal records (a test hook that breaks crash consistency)");
	if (ti_layout_end(&p->p) > l->below->size) {
		snprintf(err, errlen,
			 "the image is truncated: integrity metadata ends at %llu, the image has %llu "
			 "bytes",
			 (unsigned long long)ti_layout_end(&p->p), (unsigned long long)l->below->size);
		return -EIO;
	}
	p->mac_key = td_secure_alloc(32);
	p->super_buf = td_buf_get(TI_BLOCK);
	if (!p->mac_key || !p->super_buf)
		goto fail;
	memcpy(p->mac_key, a->mac_key, 32);
	/* one per worker thread and one for the loop thread (small requests
	 * are MAC'd inline) */
	p->nmacs = td_workers_count(l->ctx->workers) + 1;
	p->macs = calloc((size_t)p->nmacs, sizeof(*p->macs));
	if (!p->macs)
		goto fail;
	for (i = 0; i < p->nmacs; i++)
		if (!(p->macs[i] = td_hmac_new(p->mac_key, 32)))
			goto fail;
	p->mac_loop = td_hmac_new(p->mac_key, 32);
	if (!p->mac_loop || ti_cache_init(l, ti_cache_budget()) < 0)
		goto fail;
	rc = load_super(l, err, errlen);
	if (rc < 0)
		goto fail;
	if (p->p.version >= 2) {
		rc = -ENOMEM;
		if (!a->tree_key || !(p->tree_key = td_secure_alloc(32)))
			goto fail;
		memcpy(p->tree_key, a->tree_key, 32);
		if (!(p->tree_mac = td_hmac_new(p->tree_key, 32)))
			goto fail;
		p->tree = true;
		rc = load_l2(l, err, errlen);
		if (rc < 0)
			goto fail;
	}
	rc = gen_check(l, err, errlen);
	if (rc < 0)
		goto fail;
	rc = ti_recover(l, err, errlen);
	if (rc < 0)
		goto fail;
	rc = ti_fp_open(l);
	if (rc < 0)
		goto fail;
	l->size = p->p.data_blocks * TI_BLOCK;
	return 0;
fail:
	if (rc == -ENOMEM && !err[0])
		snprintf(err, errlen, "integrity: out of memory");
	ti_cache_free(l);
	free_priv(p);
	return rc;
}

static void integ_close(struct td_layer *l)
{
	struct ti_priv *p = l->priv;
	int rc = ti_ckpt_sync(l);
	char e[512];

	if (rc < 0)
		td_err("integrity: final checkpoint failed: %s (the journal will be replayed at "
		       "the next open)",
		       strerror(-rc));
	while (p->gen_busy && td_loop_run_once(l->ctx->loop, 1000) >= 0)
		;
	if (p->gen_track && p->gen_want > p->gen_written &&
	    td_state_gen_write(p->uuid, p->gen_want, e, sizeof(e)) < 0)
		td_err("integrity: cannot record the trusted generation: %s", e);
	ti_cache_free(l);
	free_priv(p);
}

int ti_format(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
	      const uint8_t mac_key[32], char *err, size_t errlen)
{
	struct td_hmac *mac = td_hmac_new(mac_key, 32);
	uint8_t *buf = td_buf_get(2 * TI_BLOCK);
	struct ti_super s = {.version = prm->version, .epoch = 0, .seq_base = 1};
	int rc = -ENOMEM;

	if (!mac || !buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* no stale journal or tags may survive from an earlier format. The
	 * journal is written with real zeros so that its blocks are allocated
	 * now: a FUA write into an unallocated range of a file costs a
	 * filesystem journal commit every time. */
	/* unmapping allowed: a sparse image stays sparse (8 GiB of tags for
	 * 1 TiB of data are allocated only as they are written) */
	/* v2: the root of an all-zero tree is zero (docs/FORMAT.md) */
	rc = td_layer_sync_io(lower, TD_OP_WRITE_ZEROES, prm->tags_off, NULL,
			      ti_layout_end(prm) - prm->tags_off, 0);
	if (rc == 0) {
		size_t chunk = 1u << 20;
		uint8_t *z = td_buf_get(chunk);
		uint64_t off, end = prm->journal_off + (uint64_t)prm->journal_blocks * TI_BLOCK;

		if (!z)
			rc = -ENOMEM;
		else
			memset(z, 0, chunk);
		for (off = prm->journal_off; rc == 0 && off < end; off += chunk)
			rc = td_layer_sync_io(lower, TD_OP_WRITE, off, z,
					      end - off < chunk ? end - off : chunk, 0);
		td_buf_put(z, chunk);
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot clear the integrity metadata area: %s",
			 strerror(-rc));
		goto out;
	}
	/* epoch 0 in slot 0; slot 1 holds an invalid (zero) block */
	ti_super_encode(&s, uuid, mac, buf);
	memset(buf + TI_BLOCK, 0, TI_BLOCK);
	rc = td_layer_sync_io(lower, TD_OP_WRITE, prm->super_off, buf, 2 * TI_BLOCK, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the integrity superblock: %s", strerror(-rc));
out:
	td_hmac_free(mac);
	td_buf_put(buf, 2 * TI_BLOCK);
	return rc;
}

int ti_fresh_status(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		    const uint8_t mac_key[32], const uint8_t tree_key[32],
		    struct ti_fresh_status *st, char *err, size_t errlen)
{
	struct td_hmac *mac = td_hmac_new(mac_key, 32);
	struct td_hmac *tmac = tree_key ? td_hmac_new(tree_key, 32) : NULL;
	uint8_t *buf = td_buf_get(TI_BLOCK), *l2 = NULL;
	struct ti_super sb;
	int rc = -ENOMEM;

	memset(st, 0, sizeof(*st));
	st->version = prm->version;
	st->root_ok = -1;
	if (!mac || !buf || (prm->version >= 2 && !tmac)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = super_load(lower, prm, uuid, mac, buf, &sb, err, errlen);
	if (rc < 0)
		goto out;
	st->generation = sb.epoch;
	rc = td_state_gen_read(uuid, &st->trusted, err, errlen);
	if (rc < 0)
		goto out;
	st->rollback = st->generation < st->trusted;
	if (prm->version >= 2) {
		rc = l2_read_verify(lower, prm, uuid, tmac, sb.epoch, sb.root, &l2);
		if (rc == -ENOMEM)
			goto out;
		st->root_ok = rc == 1; /* unreadable counts as not verified */
	}
	rc = 0;
out:
	td_hmac_free(mac);
	td_hmac_free(tmac);
	td_buf_put(buf, TI_BLOCK);
	free(l2);
	return rc;
}

int ti_accept_generation(const uint8_t uuid[16], uint64_t generation, char *err, size_t errlen)
{
	return td_state_gen_write(uuid, generation, err, errlen);
}

const struct td_driver td_drv_integrity = {
	.name = "integrity",
	.summary = "per-block HMAC-SHA256 with a crash-consistent MAC journal (set up by crypt)",
	.priv_size = sizeof(struct ti_priv),
	.open = integ_open,
	.close = integ_close,
	.read = integ_read,
	.write = integ_write,
	.flush = integ_flush,
	.discard = integ_zero,
	.write_zeroes = integ_zero,
};
