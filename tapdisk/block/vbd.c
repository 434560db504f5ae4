#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/log.h"
#include "tapdisk/block/spec.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/block/vbd.h"

#define BS ((uint64_t)TD_BLOCK_SIZE)
#define LAT_BUCKETS 512 /* 8 per power of two of nanoseconds */

struct vbd {
	struct td_ctx *ctx;
	struct td_chain *chain;
	char *spec;
	uint64_t size;
	bool readonly;
	const struct td_driver *img_drv;
	uint8_t uuid[16]; /* the image's, when the chain knows it (crypt) */
	bool has_uuid;

	struct td_rangelock rl;
	struct vbd_io *pause_head, *pause_tail; /* arrived while paused */
	unsigned in_flight;

	/* pause: pausing from the request that starts it until the chain is
	 * closed; flushing while its FLUSH is under way (the stages are explicit,
	 * never encoded in a request's fields) */
	bool paused, pausing, flushing;
	int pause_err;
	void (*pause_cb)(void *opaque, int err);
	void *pause_opaque;
	struct td_req pause_req;
	struct td_defer pause_defer;

	uint64_t reads, writes, flushes, discards, wzeroes;
	uint64_t bytes_read, bytes_written, errors, completed;
	double lat_sum_ns;
	uint64_t lat_hist[LAT_BUCKETS];
};

static void dispatch(struct vbd *v, struct vbd_io *io);
static void start_locked(struct vbd_io *io);

static void list_push(struct vbd_io **h, struct vbd_io **t, struct vbd_io *io)
{
	io->next = NULL;
	if (*t)
		(*t)->next = io;
	else
		*h = io;
	*t = io;
}

static unsigned lat_bucket(uint64_t ns)
{
	unsigned msb, frac;

	if (ns < 8)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	frac = (unsigned)(ns >> (msb - 3)) & 7u;
	return msb * 8 + frac < LAT_BUCKETS ? msb * 8 + frac : LAT_BUCKETS - 1;
}

/* The lower edge of a bucket, in ns (inverse of lat_bucket). */
static double bucket_value(unsigned b)
{
	unsigned msb = b / 8, frac = b % 8;

	if (b < 8)
		return b;
	return ldexp(1.0 + frac / 8.0, (int)msb);
}

static double lat_percentile(const struct vbd *v, double pct)
{
	uint64_t want, acc = 0;
	unsigned b;

	if (!v->completed)
		return 0;
	want = (uint64_t)ceil(pct / 100.0 * (double)v->completed);
	for (b = 0; b < LAT_BUCKETS; b++) {
		acc += v->lat_hist[b];
		if (acc >= want)
			return bucket_value(b);
	}
	return bucket_value(LAT_BUCKETS - 1);
}

/* ---- block range lock ---------------------------------------------------
 * Writes hold their block range shared; a read-modify-write holds it
 * exclusive (tapdisk/core/rangelock.c). Conflicting requests start in arrival
 * order. */

static void rl_granted(struct td_rl_item *it)
{
	start_locked((struct vbd_io *)((char *)it - offsetof(struct vbd_io, rl)));
}

/* ---- completion ---------------------------------------------------------- */

static void pause_continue(struct vbd *v);

static void finish(struct vbd_io *io, int err)
{
	struct vbd *v = io->vbd;
	uint64_t lat;

	if (io->rl.locked)
		td_rl_release(&v->rl, &io->rl);
	if (io->bounce) {
		td_buf_put(io->bounce, io->bounce_len);
		io->bounce = NULL;
	}
	lat = td_now_ns() - io->t_start;
	v->completed++;
	v->lat_sum_ns += (double)lat;
	v->lat_hist[lat_bucket(lat)]++;
	if (err) {
		v->errors++;
	} else if (io->op == TD_OP_READ) {
		v->bytes_read += io->len;
	} else if (io->op == TD_OP_WRITE) {
		v->bytes_written += io->len;
	}
	v->in_flight--;
	io->done(io, err);
	if (v->pausing && v->in_flight == 0)
		pause_continue(v);
}

static void fail_deferred(void *opaque)
{
	struct vbd_io *io = opaque;

	io->vbd->errors++;
	io->done(io, io->err);
}

/* Rejects a request that never entered the chain (not counted in flight). */
static void reject(struct vbd *v, struct vbd_io *io, int err)
{
	io->vbd = v;
	io->err = err;
	td_defer_init(&io->defer, fail_deferred, io);
	td_loop_defer(v->ctx->loop, &io->defer);
}

static void part_done(struct td_req *req, int err);

static void part_init(struct vbd_io *io, int i, enum td_op op, uint64_t off, uint64_t len,
		      void *buf, unsigned flags)
{
	struct td_req *r = &io->req[i];

	memset(r, 0, sizeof(*r));
	r->op = op;
	r->flags = flags;
	r->off = off;
	r->len = len;
	if (io->user_iov && !io->bounce && (op == TD_OP_READ || op == TD_OP_WRITE)) {
		r->iov = io->user_iov; /* the caller's pages, in place */
		r->iovcnt = io->user_iovcnt;
	} else if (buf) {
		io->iov[i].iov_base = buf;
		io->iov[i].iov_len = (size_t)len;
		r->iov = &io->iov[i];
		r->iovcnt = 1;
	}
	r->done = part_done;
	r->opaque = io;
	io->parts++;
}

static void submit_parts(struct vbd_io *io, int n)
{
	struct vbd *v = io->vbd;
	struct td_layer *top = v->chain->top;
	int i;

	for (i = 0; i < n; i++)
		td_layer_submit(top, &io->req[i]);
}

/* ---- the request state machines ------------------------------------------
 * stage 0: a single direct request (aligned), or the pre-reads of an RMW;
 * stage 1: the writes of an RMW. */

static void rmw_write(struct vbd_io *io)
{
	uint64_t end = io->off + io->len;
	uint8_t *b = io->bounce;
	int n = 0;

	io->stage = 1;
	if (io->op == TD_OP_WRITE) {
		memcpy(b + (io->off - io->b_off), io->buf, (size_t)io->len);
		part_init(io, n++, TD_OP_WRITE, io->b_off, io->b_len, b, io->flags & TD_REQ_FUA);
	} else {
		/* write-zeroes: patch the partial head and tail blocks, zero the
		 * aligned middle in place */
		uint64_t head = io->off & ~(BS - 1), tail = (end - 1) & ~(BS - 1);
		uint64_t mid_s = (io->off + BS - 1) & ~(BS - 1), mid_e = end & ~(BS - 1);
		bool head_part = io->off % BS != 0 || end < head + BS;
		bool tail_part = end % BS != 0 && tail != head;

		if (head_part) {
			uint64_t s = io->off - head, e = end < head + BS ? end - head : BS;

			memset(b + s, 0, (size_t)(e - s));
			part_init(io, n++, TD_OP_WRITE, head, BS, b, io->flags & TD_REQ_FUA);
		}
		if (tail_part) {
			memset(b + BS, 0, (size_t)(end - tail));
			part_init(io, n++, TD_OP_WRITE, tail, BS, b + BS, io->flags & TD_REQ_FUA);
		}
		if (mid_e > mid_s)
			part_init(io, n++, TD_OP_WRITE_ZEROES, mid_s, mid_e - mid_s, NULL,
				  io->flags);
	}
	submit_parts(io, n);
}

static void part_done(struct td_req *req, int err)
{
	struct vbd_io *io = req->opaque;

	if (err && !io->err)
		io->err = err;
	if (--io->parts > 0)
		return;
	if (io->err) {
		finish(io, io->err);
		return;
	}
	if (io->bounce && io->op == TD_OP_READ) {
		memcpy(io->buf, (uint8_t *)io->bounce + (io->off - io->b_off), (size_t)io->len);
	} else if (io->bounce && io->stage == 0) {
		rmw_write(io);
		return;
	}
	finish(io, 0);
}

static bool aligned(const struct vbd_io *io)
{
	return io->off % BS == 0 && io->len % BS == 0;
}

static int bounce_alloc(struct vbd_io *io, uint64_t len)
{
	io->bounce = td_buf_get((size_t)len);
	if (!io->bounce)
		return -ENOMEM;
	io->bounce_len = (size_t)len;
	return 0;
}

/* Runs once the block range lock is held (writes, write-zeroes, discards). */
static void start_locked(struct vbd_io *io)
{
	uint64_t end = io->off + io->len, head, tail;
	int n = 0;

	if (io->op == TD_OP_DISCARD || aligned(io)) {
		/* discard is advisory: only the aligned interior is passed down */
		uint64_t s = (io->off + BS - 1) & ~(BS - 1), e = end & ~(BS - 1);

		if (e <= s) {
			part_init(io, 0, TD_OP_DISCARD, 0, 0, NULL, 0);
			td_req_complete_later(io->vbd->ctx, &io->req[0], 0);
			return;
		}
		part_init(io, 0, io->op, s, e - s, io->op == TD_OP_WRITE ? io->buf : NULL,
			  io->flags);
		submit_parts(io, 1);
		return;
	}
	head = io->off & ~(BS - 1);
	tail = (end - 1) & ~(BS - 1);
	if (io->op == TD_OP_WRITE) {
		io->b_off = head;
		io->b_len = tail + BS - head;
		if (bounce_alloc(io, io->b_len) < 0) {
			finish(io, -ENOMEM);
			return;
		}
		if (io->off % BS)
			part_init(io, n++, TD_OP_READ, head, BS, io->bounce, 0);
		if (end % BS && (tail != head || io->off % BS == 0))
			part_init(io, n++, TD_OP_READ, tail, BS,
				  (uint8_t *)io->bounce + (tail - head), 0);
	} else {
		/* write-zeroes: bounce holds just the head block and the tail block */
		bool head_part = io->off % BS != 0 || end < head + BS;
		bool tail_part = end % BS != 0 && tail != head;

		io->b_off = head;
		if (bounce_alloc(io, 2 * BS) < 0) {
			finish(io, -ENOMEM);
			return;
		}
		if (head_part)
			part_init(io, n++, TD_OP_READ, head, BS, io->bounce, 0);
		if (tail_part)
			part_init(io, n++, TD_OP_READ, tail, BS, (uint8_t *)io->bounce + BS, 0);
	}
	io->stage = 0;
	submit_parts(io, n);
}

static void dispatch(struct vbd *v, struct vbd_io *io)
{
	v->in_flight++;
	switch (io->op) {
	case TD_OP_READ:
		v->reads++;
		if (aligned(io)) {
			part_init(io, 0, TD_OP_READ, io->off, io->len, io->buf, 0);
		} else {
			io->b_off = io->off & ~(BS - 1);
			io->b_len = ((io->off + io->len + BS - 1) & ~(BS - 1)) - io->b_off;
			if (bounce_alloc(io, io->b_len) < 0) {
				finish(io, -ENOMEM);
				return;
			}
			part_init(io, 0, TD_OP_READ, io->b_off, io->b_len, io->bounce, 0);
		}
		submit_parts(io, 1);
		return;
	case TD_OP_FLUSH:
		v->flushes++;
		part_init(io, 0, TD_OP_FLUSH, 0, 0, NULL, 0);
		submit_parts(io, 1);
		return;
	case TD_OP_WRITE:
		v->writes++;
		break;
	case TD_OP_DISCARD:
		v->discards++;
		break;
	case TD_OP_WRITE_ZEROES:
		v->wzeroes++;
		break;
	}
	io->rl.first = io->off / BS;
	io->rl.last = (io->off + io->len - 1) / BS;
	io->rl.exclusive = io->op != TD_OP_DISCARD && !aligned(io);
	io->rl.granted = rl_granted;
	td_rl_acquire(&v->rl, &io->rl);
}

/* vbd_io.user_iov: whole blocks, each in place, adding up to len. */
static bool direct_iov_ok(const struct vbd_io *io)
{
	uint64_t sum = 0;

	if (io->buf || io->user_iovcnt < 1 || io->user_iovcnt > IOV_MAX || io->off % BS)
		return false;
	for (int i = 0; i < io->user_iovcnt; i++) {
		const struct iovec *e = &io->user_iov[i];

		if ((uintptr_t)e->iov_base % BS || e->iov_len % BS || !e->iov_len)
			return false;
		sum += e->iov_len;
	}
	return sum == io->len;
}

bool vbd_direct_ok(const struct vbd *v)
{
	return !v->paused && !v->pausing && v->chain && v->chain->top &&
	       v->chain->top->drv->is_image && !v->chain->top->below;
}

void vbd_submit(struct vbd *v, struct vbd_io *io)
{
	io->vbd = v;
	/* the turn's clock: the time the loop woke for it, or a later reading
	 * of the same turn (one clock reading for the requests of a ring pass) */
	io->t_start = td_now_turn_ns();
	io->err = 0;
	io->parts = 0;
	io->stage = 0;
	io->bounce = NULL;
	io->rl.locked = false;
	io->next = NULL;
	switch (io->op) {
	case TD_OP_FLUSH:
		break;
	case TD_OP_READ:
	case TD_OP_WRITE:
		if ((!io->buf && !io->user_iov) || io->len > VBD_MAX_IO ||
		    (io->user_iov && !direct_iov_ok(io))) {
			reject(v, io, -EINVAL);
			return;
		}
		/* fallthrough */
	case TD_OP_DISCARD:
	case TD_OP_WRITE_ZEROES:
		if (io->len == 0 || io->off % VBD_SECTOR || io->len % VBD_SECTOR ||
		    io->off + io->len < io->off || io->off + io->len > v->size) {
			reject(v, io, -EINVAL);
			return;
		}
		if (io->op != TD_OP_READ && v->readonly) {
			reject(v, io, -EPERM);
			return;
		}
		break;
	default:
		reject(v, io, -EINVAL);
		return;
	}
	if (v->paused || v->pausing) {
		list_push(&v->pause_head, &v->pause_tail, io);
		return;
	}
	dispatch(v, io);
}

/* ---- pause / unpause -------------------------------------------------------
 * Top down and asynchronous, from the loop: stop taking requests (new ones
 * wait), drain what is in flight, FLUSH through the chain, quiesce every
 * layer from the top (td_chain_quiesce: a final checkpoint, a metadata
 * writeback), then close the chain (which only frees) and report. A
 * failed FLUSH keeps the VBD open and serving; the caller learns why. */

static void pause_report(void *opaque)
{
	struct vbd *v = opaque;
	void (*cb)(void *, int) = v->pause_cb;
	int err = v->pause_err;

	v->pause_cb = NULL;
	if (cb)
		cb(v->pause_opaque, err);
}

static void pause_quiesced(void *opaque, int err)
{
	struct vbd *v = opaque;
	struct td_chain *c = v->chain;

	/* a layer that could not quiesce logged why; what it kept is covered
	 * the way a crash is (journal, ordered metadata): the pause goes on */
	(void)err;
	v->chain = NULL;
	td_chain_close(c);
	v->pausing = false;
	v->paused = true;
	v->pause_err = 0;
	td_info("paused: image released, %s", v->spec);
	pause_report(v);
}

static void pause_flushed(struct td_req *req, int err)
{
	struct vbd *v = req->opaque;

	v->flushing = false;
	if (err) {
		/* stay open and keep serving */
		td_err("pause: flush failed: %s; resuming", strerror(-err));
		v->pausing = false;
		v->pause_err = err;
		while (v->pause_head) {
			struct vbd_io *io = v->pause_head;

			v->pause_head = io->next;
			dispatch(v, io);
		}
		v->pause_tail = NULL;
		td_defer_init(&v->pause_defer, pause_report, v);
		td_loop_defer(v->ctx->loop, &v->pause_defer);
		return;
	}
	/* requests arriving from now on wait (v->pausing) */
	td_chain_quiesce(v->chain, pause_quiesced, v);
}

static void pause_continue(struct vbd *v)
{
	struct td_req *r = &v->pause_req;

	if (v->flushing)
		return;
	v->flushing = true;
	memset(r, 0, sizeof(*r));
	r->op = TD_OP_FLUSH;
	r->done = pause_flushed;
	r->opaque = v;
	td_layer_submit(v->chain->top, r);
}

void vbd_pause(struct vbd *v, void (*cb)(void *opaque, int err), void *opaque)
{
	v->pause_cb = cb;
	v->pause_opaque = opaque;
	if (v->paused) {
		v->pause_err = 0;
		td_defer_init(&v->pause_defer, pause_report, v);
		td_loop_defer(v->ctx->loop, &v->pause_defer);
		return;
	}
	if (v->pausing)
		return;
	v->pausing = true;
	v->pause_err = 0;
	if (v->in_flight == 0)
		pause_continue(v);
}

int vbd_unpause(struct vbd *v, const char *newspec, char *err, size_t errlen)
{
	struct td_chain *c;
	char *spec;
	int rc;

	if (!v->paused) {
		snprintf(err, errlen, "not paused");
		return -EINVAL;
	}
	if (newspec && (rc = td_spec_same_layers(v->spec, newspec, err, errlen)) < 0)
		return rc;
	rc = td_chain_open(v->ctx, newspec ? newspec : v->spec, &c, err, errlen);
	if (rc < 0)
		return rc;
	if (c->top->size != v->size) {
		snprintf(err, errlen, "new spec exports %llu bytes, the VBD has %llu: refusing",
			 (unsigned long long)c->top->size, (unsigned long long)v->size);
		td_chain_close(c);
		return -EINVAL;
	}
	if (v->has_uuid) {
		uint8_t u[16];

		if (td_layer_uuid(c->top, u) < 0 || memcmp(u, v->uuid, 16) != 0) {
			snprintf(err, errlen,
				 "the new spec opens another image (its UUID differs): "
				 "refusing, a VBD keeps its image");
			td_chain_close(c);
			return -EINVAL;
		}
	}
	spec = strdup(c->spec);
	if (!spec) {
		td_chain_close(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	free(v->spec);
	v->spec = spec;
	v->chain = c;
	v->paused = false;
	td_info("unpaused: %s", v->spec);
	while (v->pause_head) {
		struct vbd_io *io = v->pause_head;

		v->pause_head = io->next;
		if (!v->pause_head)
			v->pause_tail = NULL;
		dispatch(v, io);
	}
	return 0;
}

int vbd_snapshot(struct vbd *v, const char *arg, bool resume, char *err, size_t errlen)
{
	const struct td_driver *img = v->img_drv;
	char spec[TD_SPEC_MAX_LEN + 64];
	struct td_file nf = {.fd = -1};
	struct td_spec sp;
	int rc;

	if (!v->paused || !img->snapshot) {
		snprintf(err, errlen, "%s",
			 v->paused ? "the image driver takes no snapshots" : "not paused");
		return -EINVAL;
	}
	rc = td_spec_parse(v->spec, &sp, err, errlen);
	if (rc < 0)
		return rc;
	if (img->snapshot_kind == TD_SNAP_FILE) {
		char why[512];

		rc = td_file_open(v->ctx, arg, TD_FILE_RW, &nf, why, sizeof(why));
		if (rc < 0)
			snprintf(err, errlen, "the new file %.300s %s", arg, why);
	}
	if (rc == 0)
		rc = img->snapshot(v->ctx, sp.path, sp.layers[sp.nlayers - 1].opts, arg, nf.fd, err,
				   errlen);
	if (nf.fd >= 0)
		close(nf.fd);
	if (rc == 0 && img->snapshot_kind == TD_SNAP_FILE) {
		/* the chain must reopen on the new top image, paused or not */
		free(sp.path);
		sp.path = strdup(arg);
		rc = sp.path ? td_spec_format(&sp, spec, sizeof(spec)) : -ENOMEM;
		if (rc == 0)
			rc = vbd_unpause(v, spec, err, errlen);
	} else if (rc == 0 && resume) {
		rc = vbd_unpause(v, NULL, err, errlen);
	}
	td_spec_free(&sp);
	if (rc < 0 && resume && v->paused) {
		/* back to the image we had, so the guest keeps running */
		char e2[512];

		if (vbd_unpause(v, NULL, e2, sizeof(e2)) < 0)
			td_err("snapshot: cannot reopen the original image either: %s", e2);
	}
	return rc;
}

int vbd_resize(struct vbd *v, uint64_t new_size, bool resume, char *err, size_t errlen)
{
	struct td_chain *c;
	char why[1024];
	int rc;

	if (!v->paused) {
		snprintf(err, errlen, "not paused");
		return -EINVAL;
	}
	if (v->readonly) {
		snprintf(err, errlen, "the VBD is read-only");
		return -EROFS;
	}
	if (new_size < v->size) {
		snprintf(err, errlen, "shrinking is not supported (%llu bytes now, %llu asked)",
			 (unsigned long long)v->size, (unsigned long long)new_size);
		return -EINVAL;
	}
	if (new_size % TD_BLOCK_SIZE) {
		snprintf(err, errlen, "the size must be a multiple of %u bytes", TD_BLOCK_SIZE);
		return -EINVAL;
	}
	if (new_size > v->size) {
		rc = td_chain_open(v->ctx, v->spec, &c, err, errlen);
		if (rc < 0)
			return rc;
		rc = td_layer_grow(c->top, new_size, why, sizeof(why));
		if (rc == 0 && c->top->size < new_size) {
			snprintf(why, sizeof(why), "the chain exports %llu bytes after growing",
				 (unsigned long long)c->top->size);
			rc = -EIO;
		}
		/* every layer left what it wrote durable; a flush of the image
		 * is all a close without a quiesce needs (the layers' memory
		 * describes the old size) */
		if (td_layer_sync_io(td_layer_image(c->top), TD_OP_FLUSH, 0, NULL, 0, 0) < 0 &&
		    rc == 0) {
			snprintf(why, sizeof(why), "the final flush failed");
			rc = -EIO;
		}
		if (rc == 0)
			new_size =
			    c->top->size; /* an image layer may export more (a block device) */
		td_chain_close(c);
		if (rc < 0) {
			snprintf(err, errlen, "%s", why);
			return rc;
		}
		td_info("resized: %s now exports %llu bytes (was %llu)", v->spec,
			(unsigned long long)new_size, (unsigned long long)v->size);
		v->size = new_size;
	}
	return resume ? vbd_unpause(v, NULL, err, errlen) : 0;
}

void vbd_fail_waiting(struct vbd *v, int err)
{
	while (v->pause_head) {
		struct vbd_io *io = v->pause_head;

		v->pause_head = io->next;
		if (!v->pause_head)
			v->pause_tail = NULL;
		reject(v, io, err);
	}
}

/* ---- open / close / queries ------------------------------------------------- */

int vbd_open(struct td_ctx *ctx, const char *spec, struct vbd **out, char *err, size_t errlen)
{
	struct vbd *v = calloc(1, sizeof(*v));
	int rc;

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->ctx = ctx;
	v->readonly = ctx->readonly;
	rc = td_chain_open(ctx, spec, &v->chain, err, errlen);
	if (rc < 0) {
		free(v);
		return rc;
	}
	v->spec = strdup(v->chain->spec);
	if (!v->spec) {
		td_chain_close(v->chain);
		free(v);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->size = v->chain->top->size;
	v->img_drv = td_layer_image(v->chain->top)->drv;
	v->has_uuid = td_layer_uuid(v->chain->top, v->uuid) == 0;
	*out = v;
	return 0;
}

void vbd_close(struct vbd *v)
{
	if (!v)
		return;
	/* still open (a start that failed after the open): flushed and
	 * quiesced here, at the top of the loop; a paused VBD has no chain */
	if (v->chain && td_chain_close_sync(v->chain) < 0)
		td_warn("closing %s: the image was not closed cleanly", v->spec);
	free(v->spec);
	free(v);
}

uint64_t vbd_size(const struct vbd *v)
{
	return v->size;
}

bool vbd_readonly(const struct vbd *v)
{
	return v->readonly;
}

const char *vbd_spec(const struct vbd *v)
{
	return v->spec;
}

const struct td_driver *vbd_image_driver(const struct vbd *v)
{
	return v->img_drv;
}

const char *vbd_path(const struct vbd *v)
{
	return v->chain ? v->chain->path : NULL;
}

bool vbd_paused(const struct vbd *v)
{
	return v->paused;
}

unsigned vbd_in_flight(const struct vbd *v)
{
	return v->in_flight;
}

void vbd_get_stats(const struct vbd *v, struct vbd_stats *o)
{
	const struct td_stats_shared *s = v->ctx->stats;

	memset(o, 0, sizeof(*o));
	o->reads = v->reads;
	o->writes = v->writes;
	o->flushes = v->flushes;
	o->discards = v->discards;
	o->write_zeroes = v->wzeroes;
	o->bytes_read = v->bytes_read;
	o->bytes_written = v->bytes_written;
	o->errors = v->errors;
	o->in_flight = v->in_flight;
	if (s) {
		o->integrity_failures = s->integrity_failures;
		o->lower_bytes_written = s->lower_bytes_written;
		o->lower_bytes_read = s->lower_bytes_read;
		o->lower_flushes = s->lower_flushes;
	}
	o->lat_mean_us = v->completed ? v->lat_sum_ns / (double)v->completed / 1000.0 : 0;
	o->lat_p50_us = lat_percentile(v, 50) / 1000.0;
	o->lat_p99_us = lat_percentile(v, 99) / 1000.0;
}
