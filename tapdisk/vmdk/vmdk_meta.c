/* Grain allocation and the ordered writeback of grain tables
 * (docs/FORMAT-vmdk.md, "Metadata ordering: what a crash leaves").
 *
 * Guest data is written directly; a GTE is set in the cached GT only when
 * the data write of its grain has completed. A round copies every dirty
 * GT at one instant (requests keep changing the live ones) and then:
 *
 *   A. fdatasyncs every file a write completed to since the last round:
 *      all data any snapshot GTE points at is durable before B starts;
 *   B+C. writes each snapshot to its primary place (the GD's) and to its
 *      redundant place (the RGD's), all at once: every entry either copy
 *      can hold is the old value or points at data made durable by A, so
 *      a crash leaving any mix of the sector writes is consistent (the
 *      primary wins where the copies differ, and a write whose entry did
 *      not reach the primary was not acknowledged). One I/O latency less
 *      for every allocating write, which waits for its round;
 *   D. fdatasyncs the files holding those GTs.
 *
 * Stages with nothing to do are skipped (a flush of in-place writes is A
 * alone). Rounds run one at a time; a FLUSH (or a FUA write, once its data
 * is written) waits for a round that started after it; flushes arriving
 * while one runs share the next. A round also runs 5 s after a table first
 * becomes dirty, when the cache is over budget with only dirty tables, and
 * at quiesce.
 *
 * Allocation appends 4 KiB-aligned grains at the end of the extent file.
 * The file is kept ahead of the allocator by sparse extension (an eighth
 * of the file, 8 to 256 MiB), so no write extends it (on ext4 an O_DIRECT
 * write that extends a file is serialised) and every grain a GTE may name
 * lies inside the file; a quiesce cuts the tail off again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/log.h"
#include "tapdisk/vmdk/vmdk_int.h"

struct vmsnap {
	struct vmext *x;
	struct vmgt *g;
	uint8_t *buf;
};

struct vmround {
	struct vm *v;
	struct vmsnap *snaps;
	unsigned nsnaps, cap;
	uint8_t *sync_data; /* per file: stage A syncs it */
	uint8_t *sync_meta; /* per file: stage D syncs it */
	int stage;
	unsigned pending;
	int err;
	struct td_wait *waiters;
};

static void round_start(struct vm *v);

static void round_deferred(void *opaque)
{
	round_start(opaque);
}

static void timer_fired(void *opaque)
{
	round_start(opaque);
}

void vm_meta_init(struct vm *v)
{
	td_timer_init(&v->wb_timer, timer_fired, v);
	td_defer_init(&v->round_defer, round_deferred, v);
}

static void schedule_round(struct vm *v)
{
	if (v->round) {
		v->round_wanted = true;
		return;
	}
	td_loop_defer(v->ctx->loop, &v->round_defer);
}

void vm_meta_dirtied(struct vm *v)
{
	if (v->closing || v->round || v->wb_timer.armed)
		return;
	td_loop_timer_arm(v->ctx->loop, &v->wb_timer, VM_WRITEBACK_DELAY_NS);
}

void vm_meta_kick(struct vm *v)
{
	if (!v->closing)
		schedule_round(v);
}

void vm_meta_sync(struct vm *v, struct td_wait *w)
{
	w->next = v->sync_waiters;
	v->sync_waiters = w;
	schedule_round(v);
}

/* ---- allocation ---------------------------------------------------------------- */

/* The file at least `need` bytes long: an eighth of it ahead, 8-256 MiB. */
static int extend_ahead(struct vmfile *f, uint64_t need)
{
	uint64_t step, want;

	if (f->phys >= need)
		return 0;
	step = need / 8;
	step = step < (8ull << 20) ? (8ull << 20) : step > (256ull << 20) ? (256ull << 20) : step;
	want = need + step;
	if (want > VMDK_MAX_GRAIN_SECTOR * VMDK_SECTOR)
		want = VMDK_MAX_GRAIN_SECTOR * VMDK_SECTOR;
	if (want >= need && ftruncate(f->fd, (off_t)want) == 0) {
		f->phys = want;
		return 0;
	}
	if (ftruncate(f->fd, (off_t)need) < 0)
		return -errno;
	f->phys = need;
	return 0;
}

int vm_alloc_grain(struct vm *v, struct vmext *x, uint64_t *host)
{
	uint64_t g = x->alloc_next, end = g + x->h.grain_bytes;
	int rc;

	if (end > VMDK_MAX_GRAIN_SECTOR * VMDK_SECTOR) {
		if (!x->alloc_full)
			td_err("vmdk: '%s': the extent file reached 2 TiB, the most a grain table "
			       "entry can address: no more grains can be allocated",
			       x->f->path);
		x->alloc_full = true;
		return -ENOSPC;
	}
	rc = extend_ahead(x->f, end);
	if (rc < 0) {
		vm_log_bad(v, "cannot extend '%s' to %llu bytes for a new grain: %s", x->f->path,
			   (unsigned long long)end, strerror(-rc));
		return rc == -ENOSPC ? rc : -EIO;
	}
	x->alloc_next = end;
	if (x->f->size < end)
		x->f->size = end;
	*host = g;
	return 0;
}

/* ---- rounds ---------------------------------------------------------------------- */

static void snap_one(struct vm *v, struct vmgt *g, void *opaque)
{
	struct vmround *r = opaque;
	struct vmext *x = &v->ext[g->ext];
	struct vmsnap *s;

	if (r->err)
		return;
	if (r->nsnaps == r->cap) {
		unsigned cap = r->cap ? r->cap * 2 : 16;
		struct vmsnap *n = realloc(r->snaps, cap * sizeof(*n));

		if (!n) {
			r->err = -ENOMEM;
			return;
		}
		r->snaps = n;
		r->cap = cap;
	}
	s = &r->snaps[r->nsnaps];
	s->buf = malloc(x->h.gt_bytes);
	if (!s->buf) {
		r->err = -ENOMEM;
		return;
	}
	memcpy(s->buf, g->p, x->h.gt_bytes);
	s->x = x;
	s->g = g;
	g->busy++;
	vmc_clean(v, g);
	r->nsnaps++;
}

static unsigned file_index(struct vm *v, const struct vmfile *f)
{
	for (unsigned i = 0; i < v->nfiles; i++)
		if (v->files[i] == f)
			return i;
	return 0;
}

static void round_end(struct vmround *r)
{
	struct vm *v = r->v;
	struct td_wait *waiters = r->waiters;
	int err = r->err;

	for (unsigned i = 0; i < r->nsnaps; i++) {
		struct vmsnap *s = &r->snaps[i];

		s->g->busy--;
		if (err)
			vmc_mark_dirty(v, s->g); /* retried by a later round */
		free(s->buf);
	}
	if (err) {
		/* the data of those files may not be durable: sync them again */
		for (unsigned i = 0; i < v->nfiles; i++)
			if (r->sync_data[i])
				v->files[i]->dirty = true;
		v->round_wanted = false; /* no retry loop on a failing disk */
	}
	free(r->snaps);
	free(r->sync_data);
	free(r->sync_meta);
	free(r);
	v->round = NULL;
	vmc_shrink(v);
	if (v->sync_waiters || v->round_wanted)
		schedule_round(v);
	else if (v->cache.ndirty)
		vm_meta_dirtied(v);
	/* last: a waiter may close the driver (a pause's flush does) */
	td_wait_wake_all(&waiters, err);
}

static void stage_run(struct vmround *r);

static void round_io_done(struct td_fio *o, int err)
{
	struct vmround *r = o->owner;

	if (err && !r->err) {
		td_err("vmdk: '%s': %s failed: %s", vmio_file(o)->path,
		       o->io.cmd == TD_IO_FDSYNC ? "fdatasync" : "grain table writeback",
		       strerror(-err));
		r->err = err;
	}
	td_fio_put(o);
	if (--r->pending)
		return;
	r->stage++;
	stage_run(r);
}

static void sync_files(struct vmround *r, const uint8_t *which)
{
	struct vm *v = r->v;

	for (unsigned i = 0; i < v->nfiles && !r->err; i++) {
		struct td_fio *o;

		if (!which[i])
			continue;
		o = td_fio_get(&v->fio, round_io_done, r);
		if (!o) {
			r->err = -ENOMEM;
			break;
		}
		r->pending++;
		vmio_fsync(o, v->files[i]);
	}
}

static void write_copies(struct vmround *r, bool redundant)
{
	for (unsigned i = 0; i < r->nsnaps && !r->err; i++) {
		struct vmsnap *s = &r->snaps[i];
		uint32_t sect =
		    redundant ? (s->x->rgd ? s->x->rgd[s->g->gti] : 0) : s->x->gd[s->g->gti];
		struct td_fio *o;

		if (!sect)
			continue;
		o = td_fio_get(&r->v->fio, round_io_done, r);
		if (!o || td_fio_add(o, s->buf, s->x->h.gt_bytes) < 0) {
			if (o)
				td_fio_put(o);
			r->err = -ENOMEM;
			break;
		}
		r->pending++;
		vmio_write(o, s->x->f, (uint64_t)sect * VMDK_SECTOR, false);
	}
}

static void stage_run(struct vmround *r)
{
	for (;;) {
		if (r->err || r->stage > 3) {
			round_end(r);
			return;
		}
		r->pending = 1; /* ours, while submitting */
		switch (r->stage) {
		case 0:
			sync_files(r, r->sync_data);
			break;
		case 1:
			/* both copies at once: see the header comment */
			write_copies(r, false);
			write_copies(r, true);
			break;
		case 2:
			break;
		case 3:
			sync_files(r, r->sync_meta);
			break;
		}
		if (--r->pending)
			return; /* round_io_done moves on */
		r->stage++;
	}
}

static void round_start(struct vm *v)
{
	struct vmround *r;

	if (v->round) {
		v->round_wanted = true;
		return;
	}
	if (v->wb_timer.armed)
		td_loop_timer_cancel(v->ctx->loop, &v->wb_timer);
	v->round_wanted = false;
	r = calloc(1, sizeof(*r));
	if (r) {
		r->sync_data = calloc(v->nfiles ? v->nfiles : 1, 1);
		r->sync_meta = calloc(v->nfiles ? v->nfiles : 1, 1);
	}
	if (!r || !r->sync_data || !r->sync_meta) {
		struct td_wait *w = v->sync_waiters;

		if (r) {
			free(r->sync_data);
			free(r->sync_meta);
			free(r);
		}
		v->sync_waiters = NULL;
		td_wait_wake_all(&w, -ENOMEM);
		return;
	}
	r->v = v;
	r->waiters = v->sync_waiters;
	v->sync_waiters = NULL;
	v->round = r;
	vmc_for_dirty(v, snap_one, r);
	for (unsigned i = 0; i < v->nfiles; i++) {
		if (v->files[i]->dirty) {
			v->files[i]->dirty = false;
			r->sync_data[i] = 1;
		}
	}
	for (unsigned i = 0; i < r->nsnaps; i++)
		r->sync_meta[file_index(v, r->snaps[i].x->f)] = 1;
	stage_run(r);
}

/* ---- quiesce ------------------------------------------------------------------------ */

static void quiesce_synced(struct td_fio *o, int err)
{
	struct vm *v = o->owner;

	if (err && !v->quiesce_wait.err)
		v->quiesce_wait.err = err;
	td_fio_put(o);
	if (--v->quiesce_wait_pending)
		return;
	v->quiesce_done(v, v->quiesce_wait.err);
}

/* The last round is done: cut the sparse tails off, sync what was cut. */
static void quiesce_round_done(struct td_wait *w)
{
	struct vm *v = (struct vm *)((uint8_t *)w - offsetof(struct vm, quiesce_wait));

	v->quiesce_wait_pending = 1;
	for (unsigned i = 0; i < v->nfiles && !w->err; i++) {
		struct vmfile *f = v->files[i];
		struct td_fio *o;

		if (!f->writable || f->phys <= f->size)
			continue;
		if (ftruncate(f->fd, (off_t)f->size) < 0) {
			w->err = -errno;
			td_err("vmdk: '%s': cannot cut the file back to %llu bytes: %s", f->path,
			       (unsigned long long)f->size, strerror(errno));
			break;
		}
		f->phys = f->size;
		o = td_fio_get(&v->fio, quiesce_synced, v);
		if (!o) {
			w->err = -ENOMEM;
			break;
		}
		v->quiesce_wait_pending++;
		vmio_fsync(o, f);
	}
	if (--v->quiesce_wait_pending == 0)
		v->quiesce_done(v, w->err);
}

void vm_meta_quiesce(struct vm *v, void (*done)(struct vm *v, int err))
{
	v->quiesce_done = done;
	v->quiesce_wait.cb = quiesce_round_done;
	v->quiesce_wait.err = 0;
	vm_meta_sync(v, &v->quiesce_wait);
	v->closing = true;
	if (v->wb_timer.armed)
		td_loop_timer_cancel(v->ctx->loop, &v->wb_timer);
}

void vm_meta_stop(struct vm *v)
{
	v->closing = true;
	if (v->wb_timer.armed)
		td_loop_timer_cancel(v->ctx->loop, &v->wb_timer);
}
