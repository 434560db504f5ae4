/* Cluster allocation and the ordered writeback of qcow2 metadata.
 *
 * How the qcow2 driver orders metadata (docs/FORMAT-qcow2.md says the same)
 * -------------------------------------------------------------------------
 * Metadata lives in memory and is written back in rounds, like a
 * filesystem journal commit; guest data is written directly.
 *
 *  - Allocation appends: a new cluster is the next one at the end of the
 *    file. Its refcount is set to 1 in the cached refcount block first
 *    (a missing refcount block is created in place, describing itself).
 *    The data is written, and only when that write has completed is the
 *    L2 entry set, in the cached L2 table (a missing L2 table is itself a
 *    new cluster, and the L1 entry pointing at it is set in memory).
 *    So at any instant the in-memory state satisfies: every L2/L1 entry
 *    points at a cluster whose data is written and whose refcount is set.
 *
 *  - A writeback round takes a consistent snapshot of all dirty metadata
 *    at one instant (copies of the tables, so requests keep changing the
 *    live ones meanwhile) and writes it in three stages, each ended by an
 *    fdatasync:
 *        A. refcount blocks, and new L2 tables no durable L1 entry points
 *           to yet (unreachable, so harmless if torn); the file is first
 *           extended to cover every allocated cluster. The fdatasync also
 *           makes all completed guest data durable.
 *        B. refcount table entries for new refcount blocks (skipped if none).
 *        C. L2 tables and L1 entries (skipped if none).
 *    Stage C can only reach disk after A and B are durable, so no durable
 *    L1/L2 entry ever points at a cluster whose refcount or data is not
 *    durable. A crash at any point leaves, at worst, clusters with a
 *    refcount but no user: leaks, which 'qemu-img check -r leaks' repairs.
 *    Clusters are never freed or reused, so two guest blocks can never
 *    come to share one.
 *
 *  - Rounds run one at a time. A guest FLUSH (or a FUA write, once its data
 *    is written) waits for the next round to complete; every flush that
 *    arrives while a round runs shares the following one, so many
 *    concurrent allocating writes cost one round. A round also runs 5 s
 *    after metadata first becomes dirty, when the cache is over budget
 *    with only dirty tables left, and at close.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"

struct q2snap {
	uint64_t off; /* where it goes in the top image */
	uint8_t *buf;
	size_t len;
	struct q2cent *e; /* NULL for ranges of the L1 / refcount table */
	bool fresh;
};

struct q2round {
	struct q2 *q;
	struct q2snap *snaps;
	unsigned nsnaps, cap;
	unsigned stage_at[4]; /* stage s writes snaps [stage_at[s], stage_at[s+1]) */
	int stage;
	bool syncing;
	unsigned pending;
	int err;
	struct td_wait *waiters;
	uint64_t l1_lo, l1_hi, rt_lo, rt_hi;
};

static void round_start(struct q2 *q);
static void schedule_round(struct q2 *q);

static void round_deferred(void *opaque)
{
	struct q2 *q = opaque;

	round_start(q);
}

static void timer_fired(void *opaque)
{
	struct q2 *q = opaque;

	round_start(q);
}

int q2_meta_init(struct q2 *q)
{
	const struct qcow2_hdr *h = &q->img[0]->h;
	uint64_t cs = h->cluster_size;

	td_timer_init(&q->wb_timer, timer_fired, q);
	td_defer_init(&q->round_defer, round_deferred, q);
	q->alloc_next = (q->img[0]->file_size + cs - 1) & ~(cs - 1);
	q->alloc_floor = q->alloc_next;
	return 0;
}

static void range_add(uint64_t *lo, uint64_t *hi, uint64_t byte_off)
{
	uint64_t b = byte_off & ~4095ull;

	if (*lo == *hi) {
		*lo = b;
		*hi = b + 4096;
		return;
	}
	if (b < *lo)
		*lo = b;
	if (b + 4096 > *hi)
		*hi = b + 4096;
}

static void range_merge(uint64_t *lo, uint64_t *hi, uint64_t olo, uint64_t ohi)
{
	if (olo == ohi)
		return;
	if (*lo == *hi) {
		*lo = olo;
		*hi = ohi;
		return;
	}
	if (olo < *lo)
		*lo = olo;
	if (ohi > *hi)
		*hi = ohi;
}

void q2_l1_set(struct q2 *q, uint64_t idx, uint64_t entry)
{
	qcow2_put_be64(q->img[0]->l1 + 8 * idx, entry);
	range_add(&q->l1_dirty_lo, &q->l1_dirty_hi, 8 * idx);
	q2_meta_dirtied(q);
}

static void prealloc_ahead(struct q2 *q);

int q2_alloc_cluster(struct q2 *q, struct td_wait *w, uint64_t *host)
{
	struct q2img *im = q->img[0];
	const struct qcow2_hdr *h = &im->h;
	uint64_t cs = h->cluster_size;
	unsigned skipped = 0;

	for (;;) {
		uint64_t c = q->alloc_next >> h->cluster_bits;
		uint64_t rti = c / h->rb_entries, idx = c % h->rb_entries, rb;
		struct q2cent *e;
		int k, rc;

		if (q->alloc_next + cs > QCOW2_MAX_HOST_OFFSET || rti >= h->rt_entries) {
			if (!q->alloc_full)
				td_err("qcow2: '%s': the refcount table (%llu entries) is full and "
				       "growing it is not supported: the image cannot grow further",
				       im->path, (unsigned long long)h->rt_entries);
			q->alloc_full = true;
			return -ENOSPC;
		}
		k = qcow2_rt_decode(qcow2_be64(q->rt + 8 * rti), h->cluster_bits, &rb);
		if (k < 0)
			return -EIO;
		if (k == 0) {
			/* a new refcount block, placed at the cluster it starts
			 * describing: it counts itself */
			e = q2c_create(&q->rbc, 0, q->alloc_next);
			if (!e)
				return -ENOMEM;
			qcow2_rc_set(e->buf, h->refcount_order, idx, 1);
			qcow2_put_be64(q->rt + 8 * rti, q->alloc_next);
			range_add(&q->rt_dirty_lo, &q->rt_dirty_hi, 8 * rti);
			q->alloc_next += cs;
			continue;
		}
		rc = q2c_get(&q->rbc, 0, rb, w, &e);
		if (rc < 0)
			return rc;
		if (qcow2_rc_get(e->buf, h->refcount_order, idx) != 0) {
			/* counted already although past the end of the file: a
			 * leak from an earlier crash, or a hostile image */
			if (++skipped > 65536) {
				td_err(
				    "qcow2: '%s': refcount blocks count clusters past the end of "
				    "the file; run 'qemu-img check -r all'",
				    im->path);
				return -EIO;
			}
			q->alloc_next += cs;
			continue;
		}
		qcow2_rc_set(e->buf, h->refcount_order, idx, 1);
		q2c_mark_dirty(e);
		*host = q->alloc_next;
		q->alloc_next += cs;
		prealloc_ahead(q);
		return 0;
	}
}

/* New clusters are written past the end of the file, and on ext4 an
 * O_DIRECT write that extends the file runs under the inode's exclusive lock
 * and completes synchronously: fresh sequential writes went one at a time.
 * So the file is kept ahead of the allocator by sparse extension (no blocks,
 * only the size), in steps of an eighth of the file, 8 to 256 MiB.  Nothing
 * points into the tail, so a crash leaves it as unreferenced, unallocated
 * space (qemu-img check does not count it; the next open allocates after
 * it); a clean close trims it. */
static void prealloc_ahead(struct q2 *q)
{
	struct q2img *im = q->img[0];
	uint64_t cs = im->h.cluster_size, have = q->prealloc_end, step, want;

	if (have < im->file_size)
		have = im->file_size;
	if (q->alloc_next <= have)
		return;
	step = q->alloc_next / 8;
	step = step < (8ull << 20) ? (8ull << 20) : step > (256ull << 20) ? (256ull << 20) : step;
	want = (q->alloc_next + step + cs - 1) & ~(cs - 1);
	if (want > QCOW2_MAX_HOST_OFFSET)
		want = QCOW2_MAX_HOST_OFFSET;
	if (want > have && ftruncate(im->fd, (off_t)want) == 0)
		q->prealloc_end = want;
	/* on failure the writes extend the file themselves, only slower */
}

/* Cuts the sparse tail off at a clean close; everything allocated is below
 * alloc_next and the last round made the file that long. */
static int prealloc_trim(struct q2 *q)
{
	struct q2img *im = q->img[0];

	if (q->prealloc_end <= im->file_size)
		return 0;
	if (ftruncate(im->fd, (off_t)im->file_size) < 0)
		return -errno;
	q->prealloc_end = 0;
	return 0;
}

/* ---- writeback rounds ------------------------------------------------------ */

static int snap_add(struct q2round *r, uint64_t off, const uint8_t *src, size_t len,
		    struct q2cent *e)
{
	struct q2snap *s;

	if (r->nsnaps == r->cap) {
		unsigned cap = r->cap ? r->cap * 2 : 16;
		struct q2snap *n = realloc(r->snaps, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		r->snaps = n;
		r->cap = cap;
	}
	s = &r->snaps[r->nsnaps];
	s->buf = td_buf_get(len);
	if (!s->buf)
		return -ENOMEM;
	memcpy(s->buf, src, len);
	s->off = off;
	s->len = len;
	s->e = e;
	s->fresh = e && e->fresh;
	if (e) {
		q2c_clean(e);
		e->busy++;
	}
	r->nsnaps++;
	return 0;
}

static int snap_entries(struct q2round *r, struct q2cache *c, int want_fresh)
{
	struct q2cent *e = c->dirty_head;

	while (e) {
		struct q2cent *next = e->dnext;

		if (want_fresh < 0 || (int)e->fresh == want_fresh) {
			if (snap_add(r, e->off, e->buf, e->len, e) < 0)
				return -ENOMEM;
		}
		e = next;
	}
	return 0;
}

/* Copies everything dirty, at this instant, into the round's stages. */
static int snapshot(struct q2 *q, struct q2round *r)
{
	const struct qcow2_hdr *h = &q->img[0]->h;
	struct q2img *im = q->img[0];

	r->stage_at[0] = 0;
	if (snap_entries(r, &q->rbc, -1) < 0 || snap_entries(r, &q->l2c, 1) < 0)
		return -ENOMEM;
	r->stage_at[1] = r->nsnaps;
	r->rt_lo = q->rt_dirty_lo;
	r->rt_hi = q->rt_dirty_hi;
	q->rt_dirty_lo = q->rt_dirty_hi = 0;
	if (r->rt_hi > r->rt_lo &&
	    snap_add(r, h->rt_offset + r->rt_lo, q->rt + r->rt_lo, r->rt_hi - r->rt_lo, NULL) < 0)
		return -ENOMEM;
	r->stage_at[2] = r->nsnaps;
	if (snap_entries(r, &q->l2c, 0) < 0)
		return -ENOMEM;
	r->l1_lo = q->l1_dirty_lo;
	r->l1_hi = q->l1_dirty_hi;
	q->l1_dirty_lo = q->l1_dirty_hi = 0;
	if (r->l1_hi > r->l1_lo &&
	    snap_add(r, h->l1_offset + r->l1_lo, im->l1 + r->l1_lo, r->l1_hi - r->l1_lo, NULL) < 0)
		return -ENOMEM;
	r->stage_at[3] = r->nsnaps;
	return 0;
}

static void round_end(struct q2round *r)
{
	struct q2 *q = r->q;
	struct td_wait *waiters = r->waiters;
	int err = r->err;
	unsigned i;

	for (i = 0; i < r->nsnaps; i++) {
		struct q2snap *s = &r->snaps[i];

		if (s->e) {
			s->e->busy--;
			if (err)
				q2c_mark_dirty(s->e); /* retried by the next round */
			else if (s->fresh)
				s->e->fresh = false; /* its L1 entry is durable now */
		}
		td_buf_put(s->buf, s->len);
	}
	if (err) {
		range_merge(&q->l1_dirty_lo, &q->l1_dirty_hi, r->l1_lo, r->l1_hi);
		range_merge(&q->rt_dirty_lo, &q->rt_dirty_hi, r->rt_lo, r->rt_hi);
		q->round_wanted = false; /* no retry loop on a failing disk */
	}
	free(r->snaps);
	free(r);
	q->round = NULL;
	q2c_shrink(&q->l2c);
	q2c_shrink(&q->rbc);
	if (q->sync_waiters || q->round_wanted)
		schedule_round(q);
	else if (q->l2c.ndirty || q->rbc.ndirty || q->l1_dirty_hi || q->rt_dirty_hi)
		q2_meta_dirtied(q);
	/* last: a waiter may close the driver (a pause's flush does) */
	td_wait_wake_all(&waiters, err);
}

static void stage_run(struct q2round *r);

static void round_io_done(struct td_fio *o, int err)
{
	struct q2round *r = o->owner;

	td_fio_put(o);
	if (err && !r->err) {
		td_err("qcow2: '%s': metadata writeback failed: %s", r->q->img[0]->path,
		       strerror(-err));
		r->err = err;
	}
	if (--r->pending)
		return;
	if (r->syncing || r->err) {
		r->stage++;
		stage_run(r);
		return;
	}
	/* this stage's writes are done: make them durable before the next */
	o = td_fio_get(&r->q->fio, round_io_done, r);
	if (!o) {
		r->err = -ENOMEM;
		r->stage++;
		stage_run(r);
		return;
	}
	r->syncing = true;
	r->pending = 1;
	q2io_fsync(o);
}

static void stage_run(struct q2round *r)
{
	for (;;) {
		unsigned s0, s1, i;

		if (r->err || r->stage > 2) {
			round_end(r);
			return;
		}
		s0 = r->stage_at[r->stage];
		s1 = r->stage_at[r->stage + 1];
		if (s0 == s1 && r->stage > 0) {
			r->stage++;
			continue;
		}
		r->syncing = s0 == s1; /* stage A with nothing to write: only the fdatasync */
		r->pending = s0 == s1 ? 1 : s1 - s0;
		if (s0 == s1) {
			struct td_fio *o = td_fio_get(&r->q->fio, round_io_done, r);

			if (!o) {
				r->err = -ENOMEM;
				continue;
			}
			q2io_fsync(o);
			return;
		}
		for (i = s0; i < s1; i++) {
			struct td_fio *o = td_fio_get(&r->q->fio, round_io_done, r);

			if (!o || td_fio_add(o, r->snaps[i].buf, r->snaps[i].len) < 0) {
				if (o)
					td_fio_put(o);
				if (!r->err)
					r->err = -ENOMEM;
				/* account for the writes never submitted */
				r->pending -= s1 - i;
				if (!r->pending) {
					round_end(r);
				}
				return;
			}
			q2io_write(o, r->snaps[i].off);
		}
		return;
	}
}

static void round_start(struct q2 *q)
{
	struct q2img *im = q->img[0];
	struct q2round *r;

	if (q->round) {
		q->round_wanted = true;
		return;
	}
	q->round_wanted = false;
	td_loop_timer_cancel(q->ctx->loop, &q->wb_timer);
	r = calloc(1, sizeof(*r));
	if (!r) {
		td_wait_wake_all(&q->sync_waiters, -ENOMEM);
		return;
	}
	r->q = q;
	r->waiters = q->sync_waiters;
	q->sync_waiters = NULL;
	q->round = r;
	if (snapshot(q, r) < 0) {
		r->err = -ENOMEM;
		round_end(r);
		return;
	}
	/* every allocated cluster inside the file before anything points at it */
	if (q->alloc_next > im->file_size) {
		if (q->alloc_next > q->prealloc_end &&
		    ftruncate(im->fd, (off_t)q->alloc_next) < 0) {
			r->err = -errno;
			td_err("qcow2: '%s': cannot extend the file: %s", im->path,
			       strerror(errno));
			round_end(r);
			return;
		}
		im->file_size = q->alloc_next;
	}
	stage_run(r);
}

static void schedule_round(struct q2 *q)
{
	if (q->round) {
		q->round_wanted = true;
		return;
	}
	if (!q->round_defer.queued)
		td_loop_defer(q->ctx->loop, &q->round_defer);
}

void q2_meta_sync(struct q2 *q, struct td_wait *w)
{
	w->next = q->sync_waiters;
	q->sync_waiters = w;
	schedule_round(q);
}

void q2_meta_kick(struct q2 *q)
{
	if (q->writable)
		schedule_round(q);
}

void q2_meta_dirtied(struct q2 *q)
{
	if (!q->round && !q->wb_timer.armed && !q->closing)
		td_loop_timer_arm(q->ctx->loop, &q->wb_timer, Q2_WRITEBACK_DELAY_NS);
}

/* ---- quiesce (pause, shutdown) --------------------------------------------
 * No writeback timer from now on; a last round if anything is dirty; the
 * file's preallocated tail trimmed back; the file fdatasync'ed (through
 * the loop's aio, like every other I/O). Then q->quiesce_done(q, err). */

static void quiesce_synced(struct td_fio *o, int err)
{
	struct q2 *q = o->drv;

	td_fio_put(o);
	q->quiesce_done(q, err);
}

static void quiesce_finish(struct q2 *q)
{
	struct td_fio *o;
	int rc = prealloc_trim(q);

	o = rc < 0 ? NULL : td_fio_get(&q->fio, quiesce_synced, NULL);
	if (!o) {
		q->quiesce_done(q, rc < 0 ? rc : -ENOMEM);
		return;
	}
	q2io_fsync(o);
}

static void quiesce_woken(struct td_wait *w)
{
	struct q2 *q = (struct q2 *)((char *)w - offsetof(struct q2, quiesce_wait));

	if (w->err) {
		q->quiesce_done(q, w->err);
		return;
	}
	if (q->round || q->round_defer.queued) {
		/* a round started meanwhile: wait for the next one to end too */
		q2_meta_sync(q, &q->quiesce_wait);
		return;
	}
	quiesce_finish(q);
}

static void quiesce_nothing(void *opaque)
{
	struct q2 *q = opaque;

	q->quiesce_done(q, 0);
}

void q2_meta_quiesce(struct q2 *q, void (*done)(struct q2 *q, int err))
{
	q->closing = true;
	q->quiesce_done = done;
	td_loop_timer_cancel(q->ctx->loop, &q->wb_timer);
	if (!q->writable) {
		td_defer_init(&q->round_defer, quiesce_nothing, q);
		td_loop_defer(q->ctx->loop, &q->round_defer);
		return;
	}
	memset(&q->quiesce_wait, 0, sizeof(q->quiesce_wait));
	q->quiesce_wait.cb = quiesce_woken;
	q2_meta_sync(q, &q->quiesce_wait);
}

void q2_meta_stop(struct q2 *q)
{
	q->closing = true;
	td_loop_timer_cancel(q->ctx->loop, &q->wb_timer);
	/* close frees q: nothing of ours may stay on the loop's queue. A round
	 * queued after the quiesce with nothing dirty is harmless (a Xen guest's
	 * disconnect leaves one); one with dirty metadata would be a bug. */
	if (q->round_defer.queued &&
	    (q->l2c.ndirty || q->rbc.ndirty || q->l1_dirty_hi || q->rt_dirty_hi || q->round))
		td_warn("qcow2: closing with a metadata round queued (dirty: l2 %u, refblocks %u, "
			"l1 %d, reftable %d, round %s)",
			q->l2c.ndirty, q->rbc.ndirty, q->l1_dirty_hi != 0, q->rt_dirty_hi != 0,
			q->round ? "running" : "none");
	td_loop_defer_cancel(q->ctx->loop, &q->round_defer);
}
