/* The top image's end (where the footer is, where new blocks go) and the
 * metadata rounds that write BAT sectors and bitmaps.
 *
 * The footer runs ahead (docs/FORMAT-vhd.md, "What our writes leave on
 * disk"): new blocks are placed between the file's end at open and the
 * footer; when a block does not fit, the footer is first written further
 * out and made durable, so the last 512 bytes of the file are always a
 * valid footer and no BAT entry ever points past it. A clean quiesce
 * writes the footer right after the last block and cuts the file there.
 *
 * A round (one at a time) copies every dirty BAT sector and bitmap at one
 * instant, then: fdatasync (the data, and new blocks' bitmaps, of every
 * request that joined are durable), the copies written in parallel, and
 * a second fdatasync when a request of the round asked for FUA (or a
 * flush). Requests that join while a round runs share the next one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vhd/vhd_int.h"

#define MOVE_MIN (8ull << 20)
#define MOVE_MAX (256ull << 20)
/* the last byte a 32-bit sector offset can start a block at */
#define ADDR_LIMIT ((uint64_t)VHD_BAT_UNUSED * VHD_SECTOR)

static uint64_t up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int v_meta_init(struct vhd *v)
{
	struct vimg *top = v->img[0];

	v->footer_buf = td_buf_get(4096);
	if (!v->footer_buf)
		return -ENOMEM;
	memset(v->footer_buf, 0, 4096);
	memcpy(v->footer_buf, top->footer_raw, VHD_FOOTER_LEN);
	v->open_end = up(top->file_size, VHD_SECTOR);
	v->open_footer_off = top->footer_off;
	v->alloc_next = v->open_end;
	if (top->fixed)
		return 0;
	v->bat_sectors = (uint32_t)(top->h.bat_bytes / VHD_SECTOR);
	v->bat_dirty = calloc(1, v->bat_sectors / 8 + 1);
	v->bat_busy = calloc(1, v->bat_sectors / 8 + 1);
	if (!v->bat_dirty || !v->bat_busy)
		return -ENOMEM;
	return 0;
}

void v_meta_free(struct vhd *v)
{
	if (v->footer_buf)
		td_buf_put(v->footer_buf, 4096);
	v->footer_buf = NULL;
	free(v->bat_dirty);
	free(v->bat_busy);
	v->bat_dirty = v->bat_busy = NULL;
}

static bool bit(const uint8_t *m, uint32_t i)
{
	return (m[i >> 3] >> (i & 7)) & 1;
}

static void bit_set(uint8_t *m, uint32_t i, bool on)
{
	if (on)
		m[i >> 3] |= (uint8_t)(1u << (i & 7));
	else
		m[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

bool v_bat_unsettled(const struct vhd *v, uint32_t blk)
{
	uint32_t sec = (uint32_t)((uint64_t)blk * 4 / VHD_SECTOR);

	return v->bat_dirty && (bit(v->bat_dirty, sec) || bit(v->bat_busy, sec));
}

void v_bat_set(struct vhd *v, uint32_t blk, uint64_t host)
{
	struct vimg *top = v->img[0];
	uint32_t sec = (uint32_t)((uint64_t)blk * 4 / VHD_SECTOR);

	vhd_put_be32(top->bat + 4 * (uint64_t)blk, (uint32_t)(host / VHD_SECTOR));
	if (!bit(v->bat_dirty, sec)) {
		bit_set(v->bat_dirty, sec, true);
		v->bat_ndirty++;
	}
}

/* ---- the footer's moves ------------------------------------------------------- */

static void move_done(struct td_fio *o, int err);

static void move_synced(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;

	td_fio_put(o);
	if (!err) {
		uint64_t old = v->img[0]->footer_off;

		v->img[0]->footer_off = v->move_to;
		v->img[0]->file_size = v->move_to + VHD_FOOTER_LEN;
		/* the slot of the footer we left is never part of a block */
		if (v->alloc_next < old + VHD_FOOTER_LEN)
			v->alloc_next = old + VHD_FOOTER_LEN;
	} else {
		td_err("vhd: '%s': cannot move the footer to offset %llu: %s", v->img[0]->path,
		       (unsigned long long)v->move_to, strerror(-err));
	}
	v->moving = false;
	td_wait_wake_all(&v->move_waiters, err ? -EIO : 0);
}

static void move_done(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;

	if (err) {
		move_synced(o, err);
		return;
	}
	td_fio_put(o);
	o = td_fio_get(&v->fio, move_synced, NULL);
	if (!o) {
		v->moving = false;
		td_wait_wake_all(&v->move_waiters, -ENOMEM);
		return;
	}
	vio_fsync(o);
}

int v_alloc_block(struct vhd *v, struct td_wait *w, uint64_t *host)
{
	struct vimg *top = v->img[0];
	uint64_t bm = top->h.bitmap_bytes, blen = bm + top->h.block_size, at, ahead, stride;
	struct td_fio *o;

	at = up(v->alloc_next + bm, 4096) - bm;
	if (at + blen > ADDR_LIMIT) {
		if (!v->alloc_full)
			td_err("vhd: '%s': the file is at 2 TiB, the most a VHD can address: no "
			       "new block can be allocated",
			       top->path);
		v->alloc_full = true;
		return -ENOSPC;
	}
	if (!v->moving && at + blen <= top->footer_off) {
		*host = at;
		v->alloc_next = at + blen;
		if (v->alloc_end < at + blen)
			v->alloc_end = at + blen;
		return 0;
	}
	w->next = v->move_waiters;
	v->move_waiters = w;
	if (v->moving)
		return -EAGAIN;
	ahead = top->file_size / 8;
	if (ahead < MOVE_MIN)
		ahead = MOVE_MIN;
	if (ahead > MOVE_MAX)
		ahead = MOVE_MAX;
	/* room for whole blocks (placed a stride apart) up to the new footer */
	stride = up(blen, 4096);
	v->move_to = at + ahead / stride * stride + blen;
	if (v->move_to > ADDR_LIMIT)
		v->move_to = up(at + blen, VHD_SECTOR);
	v->moving = true;
	o = td_fio_get(&v->fio, move_done, NULL);
	if (!o || td_fio_add(o, v->footer_buf, VHD_FOOTER_LEN) < 0) {
		if (o)
			td_fio_put(o);
		v->moving = false;
		v->move_waiters = w->next;
		return -ENOMEM;
	}
	vio_write(o, v->move_to, false);
	return -EAGAIN;
}

int v_footer_append(struct vhd *v, char *why, size_t whylen)
{
	struct vimg *top = v->img[0];
	uint64_t at = up(top->file_size, VHD_SECTOR);
	ssize_t n = pwrite(top->fd, v->footer_buf, VHD_FOOTER_LEN, (off_t)at);

	if (n != VHD_FOOTER_LEN || fdatasync(top->fd) < 0) {
		snprintf(why, whylen, "cannot write the footer back at the end of the file: %s",
			 n < 0 ? strerror(errno) : "short write");
		return -EIO;
	}
	top->file_size = at + VHD_FOOTER_LEN;
	top->footer_off = at;
	top->footer_from_copy = false;
	v->open_end = top->file_size;
	v->open_footer_off = at;
	v->alloc_next = v->open_end;
	return 0;
}

/* ---- rounds --------------------------------------------------------------------- */

struct vsnap {
	uint64_t off;
	uint8_t *buf;
	size_t len;
	struct vbm *e; /* a bitmap's, else NULL */
	uint32_t sec;  /* a BAT sector's index */
};

struct vround {
	struct vhd *v;
	struct td_wait *waiters;
	bool fua;
	unsigned pending;
	int err;
	struct vsnap *snaps;
	unsigned nsnaps;
};

static void round_schedule(struct vhd *v);

static void round_end(struct vround *r)
{
	struct vhd *v = r->v;

	for (unsigned i = 0; i < r->nsnaps; i++) {
		struct vsnap *s = &r->snaps[i];

		if (s->e) {
			if (r->err)
				vbm_mark_dirty(v, s->e);
			vbm_unbusy(v, s->e);
		} else {
			bit_set(v->bat_busy, s->sec, false);
			if (r->err && !bit(v->bat_dirty, s->sec)) {
				bit_set(v->bat_dirty, s->sec, true);
				v->bat_ndirty++;
			}
		}
		td_buf_put(s->buf, s->len);
	}
	if (r->err)
		td_err("vhd: '%s': metadata write failed: %s (the writes waiting for it fail)",
		       v->img[0]->path, strerror(-r->err));
	free(r->snaps);
	v->round = NULL;
	td_wait_wake_all(&r->waiters, r->err ? -EIO : 0);
	free(r);
	if (v->round_waiters)
		round_schedule(v);
}

static void round_synced2(struct td_fio *o, int err)
{
	struct vround *r = o->owner;

	td_fio_put(o);
	if (err && !r->err)
		r->err = err;
	round_end(r);
}

/* Drops one hold on the round's writes; the last one goes on. */
static void round_put(struct vround *r)
{
	struct td_fio *o;

	if (--r->pending)
		return;
	if (r->fua && !r->err) {
		o = td_fio_get(&r->v->fio, round_synced2, r);
		if (o) {
			vio_fsync(o);
			return;
		}
		r->err = -ENOMEM;
	}
	round_end(r);
}

static void round_wrote(struct td_fio *o, int err)
{
	struct vround *r = o->owner;

	td_fio_put(o);
	if (err && !r->err)
		r->err = err;
	round_put(r);
}

static void round_synced1(struct td_fio *o, int err)
{
	struct vround *r = o->owner;
	struct vhd *v = r->v;

	td_fio_put(o);
	if (err) {
		r->err = err;
		round_end(r);
		return;
	}
	if (!r->nsnaps) {
		round_end(r); /* the fdatasync was the whole round (a flush) */
		return;
	}
	r->pending = 1; /* held until every write is submitted */
	for (unsigned i = 0; i < r->nsnaps; i++) {
		struct vsnap *s = &r->snaps[i];

		o = td_fio_get(&v->fio, round_wrote, r);
		if (!o || td_fio_add(o, s->buf, s->len) < 0) {
			if (o)
				td_fio_put(o);
			r->err = -ENOMEM;
			break;
		}
		r->pending++;
		vio_write(o, s->off, false);
	}
	round_put(r);
}

static void round_fail_now(struct vround *r, int err)
{
	r->err = err;
	round_end(r);
}

static void round_start(void *opaque)
{
	struct vhd *v = opaque;
	struct vimg *top = v->img[0];
	struct vround *r;
	unsigned n = 0;
	struct td_fio *o;

	v->round_scheduled = false;
	if (v->round || !v->round_waiters)
		return;
	r = calloc(1, sizeof(*r));
	if (r)
		r->snaps = calloc((size_t)v->bat_ndirty + v->bmc.ndirty + 1, sizeof(*r->snaps));
	if (!r || !r->snaps) {
		struct td_wait *w = v->round_waiters;

		v->round_waiters = NULL;
		if (r)
			free(r);
		td_wait_wake_all(&w, -ENOMEM);
		return;
	}
	r->v = v;
	v->round = r;
	r->waiters = v->round_waiters;
	r->fua = v->round_fua;
	v->round_waiters = NULL;
	v->round_fua = false;
	/* the snapshot: copies of everything dirty, at this instant */
	for (uint32_t sec = 0; v->bat_ndirty && sec < v->bat_sectors; sec++) {
		struct vsnap *s;

		if (!bit(v->bat_dirty, sec))
			continue;
		s = &r->snaps[n];
		s->buf = td_buf_get(VHD_SECTOR);
		if (!s->buf) {
			r->nsnaps = n;
			round_fail_now(r, -ENOMEM);
			return;
		}
		s->len = VHD_SECTOR;
		memcpy(s->buf, top->bat + (uint64_t)sec * VHD_SECTOR, VHD_SECTOR);
		s->off = top->h.table_offset + (uint64_t)sec * VHD_SECTOR;
		s->sec = sec;
		bit_set(v->bat_dirty, sec, false);
		bit_set(v->bat_busy, sec, true);
		v->bat_ndirty--;
		n++;
		r->nsnaps = n;
	}
	while (v->bmc.dirty_head) {
		struct vbm *e = v->bmc.dirty_head;
		struct vsnap *s = &r->snaps[n];

		s->len = top->h.bitmap_bytes;
		s->buf = td_buf_get(s->len);
		if (!s->buf) {
			round_fail_now(r, -ENOMEM);
			return;
		}
		vbm_take_dirty(v, e);
		e->busy++;
		memcpy(s->buf, e->buf, s->len);
		s->off = (uint64_t)v_bat(top, e->blk) * VHD_SECTOR;
		s->e = e;
		n++;
		r->nsnaps = n;
	}
	o = td_fio_get(&v->fio, round_synced1, r);
	if (!o) {
		round_fail_now(r, -ENOMEM);
		return;
	}
	vio_fsync(o);
}

static void round_schedule(struct vhd *v)
{
	if (v->round_scheduled || v->round)
		return;
	v->round_scheduled = true;
	td_defer_init(&v->round_defer, round_start, v);
	td_loop_defer(v->ctx->loop, &v->round_defer);
}

void v_meta_join(struct vhd *v, struct td_wait *w, bool fua)
{
	w->next = v->round_waiters;
	v->round_waiters = w;
	v->round_fua |= fua;
	round_schedule(v);
}

void v_meta_flush(struct vhd *v, struct td_wait *w)
{
	v_meta_join(v, w, true);
}

/* ---- quiesce: the last round, then the footer back after the last block ---------- */

static void q_finish(struct vhd *v, int err)
{
	void (*done)(struct vhd *, int) = v->quiesce_done;

	v->quiesce_done = NULL;
	done(v, err);
}

static void q_cut_synced(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;

	td_fio_put(o);
	q_finish(v, err);
}

static void q_footer_synced(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;
	struct vimg *top = v->img[0];
	uint64_t at = v->move_to;

	td_fio_put(o);
	if (err) {
		q_finish(v, err);
		return;
	}
	/* the footer is durable right after the last block: cut the tail */
	if (ftruncate(top->fd, (off_t)(at + VHD_FOOTER_LEN)) < 0) {
		td_warn("vhd: '%s': cannot cut the file after its footer: %s (harmless: the "
			"tail is unused)",
			top->path, strerror(errno));
		q_finish(v, 0);
		return;
	}
	top->footer_off = at;
	top->file_size = at + VHD_FOOTER_LEN;
	o = td_fio_get(&v->fio, q_cut_synced, NULL);
	if (!o) {
		q_finish(v, -ENOMEM);
		return;
	}
	vio_fsync(o);
}

static void q_footer_written(struct td_fio *o, int err)
{
	struct vhd *v = o->drv;

	td_fio_put(o);
	if (err) {
		q_finish(v, err);
		return;
	}
	o = td_fio_get(&v->fio, q_footer_synced, NULL);
	if (!o) {
		q_finish(v, -ENOMEM);
		return;
	}
	vio_fsync(o);
}

static void q_round_done(struct td_wait *w)
{
	struct vhd *v = (struct vhd *)((uint8_t *)w - offsetof(struct vhd, quiesce_wait));
	struct vimg *top = v->img[0];
	uint64_t at;
	struct td_fio *o;

	if (w->err) {
		q_finish(v, w->err);
		return;
	}
	if (top->fixed || top->footer_off == v->open_footer_off) {
		q_finish(v, 0);
		return;
	}
	at = v->alloc_end > v->open_end ? v->alloc_end : v->open_end;
	at = up(at, VHD_SECTOR);
	if (at >= top->footer_off) {
		q_finish(v, 0);
		return;
	}
	v->move_to = at;
	o = td_fio_get(&v->fio, q_footer_written, NULL);
	if (!o || td_fio_add(o, v->footer_buf, VHD_FOOTER_LEN) < 0) {
		if (o)
			td_fio_put(o);
		q_finish(v, -ENOMEM);
		return;
	}
	vio_write(o, at, false);
}

void v_meta_quiesce(struct vhd *v, void (*done)(struct vhd *v, int err))
{
	v->quiesce_done = done;
	v->quiesce_wait.cb = q_round_done;
	v_meta_join(v, &v->quiesce_wait, true);
}
