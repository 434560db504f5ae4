/* crashsim: power-loss simulation of the integrity layer.
 *
 *   crashsim [--seed N] [--points N] [--ops N] [--blocks N] [--qd N]
 *            [--journal N] [--version 1|2] [--dir DIR] [--long] [--strict-torn]
 *            [--break MODE] [--verbose]
 *
 * Defaults: 250 crash points over 1500 client requests on 2048 blocks,
 * journal of 16-128 blocks (small, so that checkpoints happen often);
 * --long: 4000 points over 6000 requests. Images go to /dev/shm (a flush
 * is free there) unless --dir says otherwise. CRASHSIM_DEBUG_POINT=C dumps
 * the lower log and what landed for crash point C. --version 1 lays the
 * image out without the freshness tree (integrity parameters version 1).
 * --break MODE runs against an integrity layer broken on purpose (a switch
 * of the test build, ti_test_break): no-journal-wait (data before its
 * journal records), fp-off, fp-early, fp-noexcl (flush points not written,
 * written before the lower flush, claiming writes in flight); the run must
 * then report violations.
 *
 * 1. Formats a small raw image with integrity metadata (ti_layout,
 *    ti_format: what 'vdkey format' does below the crypt header) and opens
 *    integrity -> record -> aio in this process (no NBD, no keyring: the
 *    integrity layer gets its parameters, uuid and MAC key directly).
 * 2. Runs a random workload at queue depth 8..32: 4 KiB and multi-block
 *    writes (some FUA), write-zeroes, discards and flushes, every block's
 *    content naming (block, version) so anything read back can be
 *    attributed. The record layer logs every request the integrity layer
 *    sends down (with data) and holds every completion back, handing them
 *    up one at a time in a seeded random order: requests stay "in flight"
 *    for a long time and complete in any order, and the whole run is a
 *    function of the seed.
 * 3. For each crash point C (an event number on the shared counter) builds
 *    the image a power loss at C could leave behind, from the formatted
 *    image plus the lower log: every write that completed before the issue
 *    of a flush that completed before C, every FUA write that completed
 *    before C, and a random subset, in a random order consistent with
 *    completion-before-issue, of every other write issued before C. Some of
 *    the multi-block ones land only partly (any subset of their 4 KiB
 *    blocks); at some points one of them is torn at a 512-byte boundary.
 * 4. Opens each crash image with a fresh integrity -> aio chain (recovery
 *    runs at open), reads every block and checks what the design promises:
 *      - no read fails, except the one 4 KiB data block a torn data write
 *        left half old, half new (a torn journal block, tag page,
 *        superblock or zeroing must never cause an alarm);
 *      - every block holds a version that was written to it (or zeros
 *        that an unwritten state, write-zeroes or discard explains), never
 *        anything else;
 *      - that version is no older than the newest one acknowledged before
 *        the issue of a client flush that completed before C, or
 *        acknowledged as FUA before C (flushed data is intact);
 *      - a recovery that replayed journal records ends with a checkpoint
 *        that starts a new epoch (docs/FORMAT.md, step 4).
 *    Every eighth point it closes, reopens and reads again: recovery's
 *    result must be durable and stable.
 * 5. A rollback attacker (docs/FORMAT.md "Flush points"): at about half
 *    the crash points it also puts back, in a few blocks whose newest
 *    flushed version (acknowledged before a completed flush, or as FUA)
 *    is a write, an older state of that block — the data of an older
 *    version, or zeros — into the crash image. Such a block must read as
 *    EIO (or as zeros when a write-zeroes/discard after the flushed
 *    version was issued); an older version or zeros otherwise are
 *    violations. This is what fails when the layer writes no flush points
 *    (--break fp-off), and claims that are not durable (fp-early,
 *    fp-noexcl) fail the false-alarm check of step 4.
 *
 * The torn block of step 4 must never read as zeros or as an older
 * version when its newest flushed version is a write: with flush points
 * that holds even when that version is only in the journal and the
 * pre-epoch entry reads as zeros (the limit earlier versions tolerated,
 * and counted as "zeros: N"; now a violation). --strict-torn is kept as a
 * no-op for old command lines.
 *
 * Prints one summary line; exits 1 on any violation, naming the seed and
 * the crash point (re-run with --seed to reproduce). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypt/backend/cipher.h"
#include "integrity/integrity.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/log.h"
#include "tests/drivers/record.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/registry/registry.h"

#define BS 4096u
#define SECTOR 512u
#define DATA_START (1u << 20)
#define MAGIC 0x4d49534853415243ull /* "CRASHSIM" */
#define MAX_REPORTS 20

/* ---- random numbers (splitmix64: one stream per purpose, all seeded) ----- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static double unit(struct rng *r)
{
	return (double)(rnd(r) >> 11) / (double)(1ull << 53);
}

/* ---- configuration and state ------------------------------------------- */

struct cfg {
	uint64_t seed;
	unsigned points, ops, blocks, qd, journal, version;
	const char *dir;
	bool verbose, strict_torn;
};

enum ckind { C_WRITE, C_ZERO, C_DISCARD, C_FLUSH };

/* One client request and what became of it. */
struct cop {
	enum ckind kind;
	uint64_t b0, n;
	bool fua;
	uint64_t issued, acked; /* event numbers; acked 0 = never */
	int err;
	struct td_req req;
	struct iovec iov;
	void *buf;
	size_t buflen;
};

/* versions of one block: version v (1-based) was written by op hist[v-1] */
struct vlist {
	uint32_t *op;
	uint32_t n, cap;
};

struct sim {
	struct cfg cfg;
	struct rng wl; /* workload */
	char img[4096], crash[4096];
	uint64_t lower_size;
	struct ti_params prm;
	uint8_t uuid[16], mac_key[32], tree_key[32];
	/* base image: its non-zero 4 KiB blocks */
	uint64_t *base_off;
	uint8_t *base_data;
	size_t nbase;

	struct cop *cops;
	size_t ncops, capcops;
	struct vlist *hist;
	uint8_t *busy;
	unsigned inflight;
	struct td_record_log *log;

	/* results */
	uint64_t debug_point; /* CRASHSIM_DEBUG_POINT: dump what landed */
	unsigned violations, reported, torn, torn_eio, torn_rollback, replays, split, stable_checks,
	    ckpt_points, rolled, rolled_eio, rolled_points;
	uint8_t *rolled_map; /* blocks the rollback attacker changed at this point */
	uint64_t chosen_total, guaranteed_total;
};

struct td_env {
	struct td_ctx ctx;
	struct td_stats_shared stats;
	struct td_timer tick;
};

/* td_loop_run_once() runs the deferred calls first and then waits on
 * epoll with the full timeout even when one of those calls completed
 * what its caller (td_layer_sync_io, say) was waiting for: a
 * synchronous write-zeroes (completed from the loop) costs a whole
 * second. A 1 ms timer bounds every wait. */
static void tick(void *opaque)
{
	struct td_env *e = opaque;

	td_loop_timer_arm(e->ctx.loop, &e->tick, 1000000);
}

static int env_init(struct td_env *e)
{
	memset(e, 0, sizeof(*e));
	e->ctx.loop = td_loop_new();
	if (!e->ctx.loop)
		return -ENOMEM;
	e->ctx.io = td_io_new(e->ctx.loop, 256);
	/* no threads: MAC work runs from the loop, so the run is deterministic */
	e->ctx.workers = td_workers_new(e->ctx.loop, 0);
	e->ctx.stats = &e->stats;
	e->ctx.nolock = true;
	td_timer_init(&e->tick, tick, e);
	tick(e);
	return e->ctx.io && e->ctx.workers ? 0 : -ENOMEM;
}

static void env_free(struct td_env *e)
{
	td_loop_timer_cancel(e->ctx.loop, &e->tick);
	td_workers_free(e->ctx.workers);
	td_io_free(e->ctx.io);
	td_loop_free(e->ctx.loop);
}

/* ---- block contents ---------------------------------------------------- */

static void pattern(uint8_t *p, uint64_t b, uint32_t v)
{
	uint64_t w[BS / 8], x = b * 0x9e3779b97f4a7c15ull ^ ((uint64_t)v << 40);
	unsigned i;

	w[0] = MAGIC;
	w[1] = b;
	w[2] = v;
	for (i = 3; i < BS / 8; i++) {
		uint64_t z = x + i * 0xbf58476d1ce4e5b9ull;

		z = (z ^ (z >> 31)) * 0x94d049bb133111ebull;
		w[i] = z ^ (z >> 29);
	}
	memcpy(p, w, BS);
}

enum { R_EIO = -1, R_ZERO = 0, R_GARBAGE = -2, R_OTHER_BLOCK = -3 };

/* What a block read back as: R_ZERO, a version (> 0), or garbage. */
static int64_t decode(const uint8_t *p, uint64_t b)
{
	static const uint8_t zero[BS];
	uint8_t want[BS];
	uint64_t w[3];

	if (!memcmp(p, zero, BS))
		return R_ZERO;
	memcpy(w, p, sizeof(w));
	if (w[0] != MAGIC || w[2] == 0 || w[2] > UINT32_MAX)
		return R_GARBAGE;
	pattern(want, w[1], (uint32_t)w[2]);
	if (memcmp(want, p, BS))
		return R_GARBAGE;
	if (w[1] != b)
		return R_OTHER_BLOCK;
	return (int64_t)w[2];
}

/* ---- chains ------------------------------------------------------------- */

static const struct td_driver holder_drv = {.name = "crashsim"};

/* tmpfs cannot zero a range in place (FALLOC_FL_ZERO_RANGE) but can punch
 * one, which reads back as zeros just the same: this shim, right above
 * aio, drops the keep-allocated hint so the simulation can run on tmpfs,
 * where a flush costs nothing. */
static void shim_zero(struct td_layer *l, struct td_req *req)
{
	req->flags &= ~TD_REQ_NO_UNMAP;
	td_layer_submit(l->below, req);
}

static const struct td_driver shim_drv = {
    .name = "punch-shim",
    .write_zeroes = shim_zero,
};

/* Puts the shim right above the image driver at the bottom of c. */
static int insert_shim(struct td_env *e, struct td_chain *c, char *err, size_t errlen)
{
	struct td_layer holder = {.drv = &holder_drv, .ctx = &e->ctx, .below = c->top};
	struct td_layer *l = &holder;
	int rc;

	while (l->below->below)
		l = l->below;
	rc = td_chain_insert_below(l, &shim_drv, NULL, NULL, err, errlen);
	if (rc == 0 && l == &holder)
		c->top = holder.below;
	return rc;
}

/* Opens `spec` and puts an integrity layer on top of it (the way crypt
 * inserts one below itself). */
static int open_integrity(struct sim *s, struct td_env *e, const char *spec, struct td_chain **out,
			  char *err, size_t errlen)
{
	struct td_layer holder = {.drv = &holder_drv, .ctx = &e->ctx};
	struct ti_open_arg a;
	struct td_chain *c;
	int rc;

	rc = td_chain_open(&e->ctx, spec, &c, err, errlen);
	if (rc < 0)
		return rc;
	rc = insert_shim(e, c, err, errlen);
	if (rc < 0) {
		td_chain_close(c);
		return rc;
	}
	memset(&a, 0, sizeof(a));
	a.params = s->prm;
	memcpy(a.uuid, s->uuid, 16);
	a.mac_key = s->mac_key;
	a.tree_key = s->tree_key;
	holder.below = c->top;
	rc = td_chain_insert_below(&holder, &td_drv_integrity, NULL, &a, err, errlen);
	if (rc < 0) {
		td_chain_close(c);
		return rc;
	}
	c->top = holder.below;
	*out = c;
	return 0;
}

/* ---- setup: format, remember the formatted image ------------------------ */

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static int setup(struct sim *s, struct td_env *e, struct rng *r)
{
	struct td_chain *c = NULL;
	char err[512], spec[4200];
	uint64_t tp, off;
	uint8_t *buf = NULL;
	int fd = -1, rc, i;

	/* a lower image holding exactly `blocks` data blocks and their metadata */
	tp = div_up(s->cfg.blocks, TI_BLOCK / TI_ENTRY_LEN);
	if (s->cfg.version == 1)
		s->lower_size =
		    DATA_START + (uint64_t)s->cfg.blocks * BS +
		    (2 + (uint64_t)s->cfg.journal + tp + 2 * div_up(tp, BS / 32) + 16) * BS;
	else /* v2: two slots per tag page and L1 page, two L2 regions */
		s->lower_size = DATA_START + (uint64_t)s->cfg.blocks * BS +
				(2 + (uint64_t)s->cfg.journal + 2 * tp + 2 * div_up(tp, 128) +
				 2 * div_up(div_up(tp, 128), 128)) *
				    BS;
	rc = ti_layout_version(s->lower_size, DATA_START, s->cfg.journal, s->cfg.version, &s->prm);
	if (rc < 0 || s->prm.data_blocks != s->cfg.blocks) {
		printf("crashsim: layout gives %" PRIu64 " data blocks, wanted %u\n",
		       s->prm.data_blocks, s->cfg.blocks);
		return -EINVAL;
	}
	printf("crashsim: integrity layout version %u%s\n", s->prm.version,
	       s->prm.version >= 2 ? " (freshness tree)" : "");
	for (i = 0; i < 16; i++)
		s->uuid[i] = (uint8_t)rnd(r);
	for (i = 0; i < 32; i++)
		s->mac_key[i] = (uint8_t)rnd(r);
	for (i = 0; i < 32; i++)
		s->tree_key[i] = (uint8_t)rnd(r);
	fd = open(s->img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)s->lower_size) < 0) {
		printf("crashsim: cannot create %s: %s\n", s->img, strerror(errno));
		rc = -errno;
		goto out;
	}
	snprintf(spec, sizeof(spec), "aio:%s", s->img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0)
		rc = insert_shim(e, c, err, sizeof(err));
	if (rc == 0)
		rc = ti_format(c->top, &s->prm, s->uuid, s->mac_key, err, sizeof(err));
	if (c)
		td_chain_close(c);
	if (rc < 0) {
		printf("crashsim: format: %s\n", err);
		goto out;
	}
	/* the formatted image is zeros but for a few blocks: keep those */
	buf = malloc(BS);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (off = 0; off < s->lower_size; off += BS) {
		static const uint8_t zero[BS];

		if (pread(fd, buf, BS, (off_t)off) != BS) {
			rc = -EIO;
			goto out;
		}
		if (!memcmp(buf, zero, BS))
			continue;
		s->base_off = realloc(s->base_off, (s->nbase + 1) * sizeof(*s->base_off));
		s->base_data = realloc(s->base_data, (s->nbase + 1) * BS);
		if (!s->base_off || !s->base_data) {
			rc = -ENOMEM;
			goto out;
		}
		s->base_off[s->nbase] = off;
		memcpy(s->base_data + s->nbase * BS, buf, BS);
		s->nbase++;
	}
	rc = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- the workload ------------------------------------------------------- */

static bool range_free(struct sim *s, uint64_t b0, uint64_t n)
{
	uint64_t b;

	for (b = b0; b < b0 + n; b++)
		if (s->busy[b])
			return false;
	return true;
}

static void client_done(struct td_req *req, int err)
{
	struct sim *s = req->opaque;
	struct cop *o = (struct cop *)((char *)req - offsetof(struct cop, req));
	uint64_t b;

	o->acked = td_record_tick();
	o->err = err;
	s->inflight--;
	if (o->kind != C_FLUSH)
		for (b = o->b0; b < o->b0 + o->n; b++)
			s->busy[b] = 0;
	if (o->buf)
		td_buf_put(o->buf, o->buflen);
	o->buf = NULL;
	if (err) {
		printf("crashsim: client request %zu (kind %d, blocks %" PRIu64 "+%" PRIu64
		       ") failed: %s\n",
		       (size_t)(o - s->cops), o->kind, o->b0, o->n, strerror(-err));
		s->violations++;
	}
}

static int hist_add(struct vlist *h, uint32_t op)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? 2 * h->cap : 4;
		uint32_t *n = realloc(h->op, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		h->op = n;
		h->cap = cap;
	}
	h->op[h->n++] = op;
	return 0;
}

/* Picks and submits one client request; returns 0 when nothing could be
 * placed (every range it tried is busy). */
static int submit_one(struct sim *s, struct td_layer *top, bool flush)
{
	struct rng *r = &s->wl;
	uint64_t nb = s->cfg.blocks, b0 = 0, n = 1, b;
	struct cop *o;
	enum ckind kind;
	unsigned roll = (unsigned)below(r, 100), tries;

	if (s->ncops == s->capcops)
		return -ENOSPC;
	if (flush || roll < 4)
		kind = C_FLUSH;
	else if (roll < 10)
		kind = C_ZERO;
	else if (roll < 13)
		kind = C_DISCARD;
	else
		kind = C_WRITE;
	if (kind != C_FLUSH) {
		for (tries = 0; tries < 16; tries++) {
			unsigned sz = (unsigned)below(r, 100);

			if (sz < 60)
				n = 1;
			else if (sz < 90)
				n = 2 + below(r, 15);
			else
				n = 17 + below(r, kind == C_WRITE ? 48 : 240);
			if (n > nb)
				n = nb;
			/* a quarter of the disk gets most of the traffic: many versions */
			if (below(r, 100) < 70 && nb / 4 > n)
				b0 = below(r, nb / 4 - n + 1);
			else
				b0 = below(r, nb - n + 1);
			if (range_free(s, b0, n))
				break;
		}
		if (tries == 16)
			return 0;
	}
	o = &s->cops[s->ncops];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->b0 = b0;
	o->n = kind == C_FLUSH ? 0 : n;
	o->fua = kind != C_FLUSH && below(r, 100) < 12;
	o->req.opaque = s;
	o->req.done = client_done;
	o->req.off = b0 * BS;
	o->req.len = o->n * BS;
	o->req.flags = o->fua ? TD_REQ_FUA : 0;
	switch (kind) {
	case C_FLUSH:
		o->req.op = TD_OP_FLUSH;
		o->req.off = 0;
		break;
	case C_ZERO:
		o->req.op = TD_OP_WRITE_ZEROES;
		if (below(r, 2))
			o->req.flags |= TD_REQ_NO_UNMAP;
		break;
	case C_DISCARD:
		o->req.op = TD_OP_DISCARD;
		break;
	case C_WRITE:
		o->req.op = TD_OP_WRITE;
		o->buflen = (size_t)(n * BS);
		o->buf = td_buf_get(o->buflen);
		if (!o->buf)
			return -ENOMEM;
		o->iov.iov_base = o->buf;
		o->iov.iov_len = o->buflen;
		o->req.iov = &o->iov;
		o->req.iovcnt = 1;
		break;
	}
	for (b = b0; kind != C_FLUSH && b < b0 + n; b++) {
		if (hist_add(&s->hist[b], (uint32_t)s->ncops) < 0)
			return -ENOMEM;
		s->busy[b] = 1;
		if (kind == C_WRITE)
			pattern((uint8_t *)o->buf + (b - b0) * BS, b, s->hist[b].n);
	}
	s->ncops++;
	s->inflight++;
	o->issued = td_record_tick();
	td_layer_submit(top, &o->req);
	return 1;
}

/* Runs the loop until nothing is in flight below the integrity layer and
 * nothing is queued: the only thing left to happen is a held completion. */
static int quiesce(struct sim *s, struct td_env *e)
{
	do {
		int rc = td_loop_run_once(e->ctx.loop, td_record_below(s->log) ? 1 : 0);

		if (rc < 0)
			return rc;
	} while (td_record_below(s->log));
	return 0;
}

static int workload(struct sim *s, struct td_env *e)
{
	struct td_chain *c = NULL;
	char err[512], spec[4200];
	struct rng rr;
	uint64_t since_flush = 0, flush_every;
	unsigned submitted = 0, qd;
	int rc;

	rr.s = s->cfg.seed ^ 0x5151;
	qd = s->cfg.qd ? s->cfg.qd : 8 + (unsigned)below(&s->wl, 25);
	flush_every = 20 + below(&s->wl, 80);
	s->log = td_record_log_new(true);
	if (!s->log) {
		rc = -ENOMEM;
		goto out;
	}
	td_record_attach(s->log);
	/* open and close run synchronous I/O: completions go up by themselves
	 * (one at a time, in random order) */
	td_record_set_mode(s->log, TD_RECORD_HOLD_AUTO, rnd(&rr));
	snprintf(spec, sizeof(spec), "record:aio:%s", s->img);
	rc = open_integrity(s, e, spec, &c, err, sizeof(err));
	if (rc < 0) {
		printf("crashsim: open %s: %s\n", spec, err);
		goto out;
	}
	td_record_set_mode(s->log, TD_RECORD_HOLD_MANUAL, rnd(&rr));
	while (submitted < s->cfg.ops || s->inflight) {
		bool progressed = false;
		unsigned held;

		while (s->inflight < qd && submitted < s->cfg.ops) {
			bool fl = ++since_flush >= flush_every;
			int k = submit_one(s, c->top, fl);

			if (k < 0) {
				rc = k;
				goto out;
			}
			if (k == 0)
				break;
			if (fl)
				since_flush = 0;
			submitted++;
			progressed = true;
		}
		rc = quiesce(s, e);
		if (rc < 0)
			goto out;
		held = td_record_held(s->log);
		if (!held) {
			if (s->inflight && !progressed) {
				printf("crashsim: STALL: %u client requests in flight, nothing "
				       "below (seed %" PRIu64 ")\n",
				       s->inflight, s->cfg.seed);
				rc = -EDEADLK;
				goto out;
			}
			continue;
		}
		/* mostly one at a time; now and then the disk catches up */
		if (below(&rr, 100) < 85)
			td_record_release(s->log, 1);
		else if (below(&rr, 3))
			td_record_release(s->log, 1 + (unsigned)below(&rr, held));
		else
			td_record_release(s->log, held);
		rc = td_loop_run_once(e->ctx.loop, 0);
		if (rc < 0)
			goto out;
	}
	/* a last flush, then a clean close (flush, quiesce: the final
	 * checkpoint) */
	if (submit_one(s, c->top, true) != 1) {
		rc = -EIO;
		goto out;
	}
	td_record_set_mode(s->log, TD_RECORD_HOLD_AUTO, rnd(&rr));
	while (s->inflight)
		if ((rc = td_loop_run_once(e->ctx.loop, 1000)) < 0)
			goto out;
	rc = td_chain_close_sync(c);
	c = NULL;
	if (rc < 0)
		printf("crashsim: the clean close failed: %s\n", strerror(-rc));
out:
	if (c)
		td_chain_close(c); /* as a crash leaves it */
	td_record_attach(NULL);
	return rc;
}

/* ---- building a crash image ---------------------------------------------- */

struct landing {
	size_t i;
	double t;
	int part; /* 0 whole, 1 torn prefix, 2 torn suffix, 3 some blocks */
	uint64_t cut;
	uint64_t mask; /* part 3: which 4 KiB blocks land (first 64) */
};

static int cmp_landing(const void *a, const void *b)
{
	const struct landing *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

static int put(int fd, const struct td_record_op *op, uint64_t from, uint64_t to)
{
	static const uint8_t zero[1 << 16];
	uint64_t at;

	for (at = from; at < to;) {
		size_t k = (size_t)(to - at);
		const void *src;

		if (op->op == TD_OP_WRITE) {
			src = op->data + (at - op->off);
		} else {
			if (k > sizeof(zero))
				k = sizeof(zero);
			src = zero;
		}
		if (pwrite(fd, src, k, (off_t)at) != (ssize_t)k)
			return -errno;
		at += k;
	}
	return 0;
}

static bool is_content_op(const struct td_record_op *op)
{
	return op->op == TD_OP_WRITE || op->op == TD_OP_WRITE_ZEROES || op->op == TD_OP_DISCARD;
}

/* Writes the crash image for point C; *torn_block is the data block a torn
 * write left mixed (or -1). */
static int build_crash(struct sim *s, uint64_t C, struct rng *r, int64_t *torn_block,
		       bool *tag_pending)
{
	const struct td_record_log *log = s->log;
	struct landing *L;
	uint64_t flush_issue = 0, tags_end = s->prm.tags_off + s->prm.tags_pages * BS;
	double p = (double)below(r, 5) / 4.0; /* chance a non-guaranteed write lands */
	size_t i, n = 0, tear = SIZE_MAX, ncand = 0;
	int fd, rc = 0;

	*torn_block = -1;
	*tag_pending = false;
	L = calloc(log->n ? log->n : 1, sizeof(*L));
	if (!L)
		return -ENOMEM;
	for (i = 0; i < log->n; i++) {
		const struct td_record_op *op = &log->ops[i];

		if (op->op == TD_OP_FLUSH && op->completed && op->completed < C && !op->err &&
		    op->issued > flush_issue)
			flush_issue = op->issued;
	}
	for (i = 0; i < log->n; i++) {
		const struct td_record_op *op = &log->ops[i];
		bool done = op->completed && op->completed < C;
		bool guaranteed;
		uint64_t end;

		if (!is_content_op(op) || op->issued >= C)
			continue;
		guaranteed = done && !op->err &&
			     (op->completed < flush_issue ||
			      (op->op == TD_OP_WRITE && (op->flags & TD_REQ_FUA)));
		if (!guaranteed) {
			if (op->off < tags_end && op->off + op->len > s->prm.tags_off)
				*tag_pending = true;
			if (unit(r) >= p)
				continue;
		}
		end = done ? op->completed : C;
		L[n].i = i;
		L[n].t = (double)op->issued + unit(r) * (double)(end - op->issued);
		L[n].part = guaranteed ? 0 : -1; /* -1: a candidate for tearing or splitting */
		if (guaranteed)
			s->guaranteed_total++;
		else
			ncand++;
		n++;
	}
	s->chosen_total += n;
	/* one torn write at some points; partial multi-block writes at others */
	if (ncand && below(r, 100) < 35) {
		size_t k = below(r, ncand), j;

		for (j = 0; j < n; j++)
			if (L[j].part == -1 && k-- == 0)
				break;
		if (j < n && log->ops[L[j].i].len >= 2 * SECTOR) {
			const struct td_record_op *op = &log->ops[L[j].i];
			uint64_t cut = op->off + SECTOR * (1 + below(r, op->len / SECTOR - 1));

			tear = j;
			L[j].part = below(r, 2) ? 1 : 2;
			L[j].cut = cut;
			s->torn++;
			if (cut % BS && cut >= s->prm.data_start &&
			    cut < s->prm.data_start + s->prm.data_blocks * BS)
				*torn_block = (int64_t)((cut - s->prm.data_start) / BS);
		}
	}
	for (i = 0; i < n; i++) {
		if (L[i].part != -1)
			continue;
		L[i].part = 0;
		if (i != tear && log->ops[L[i].i].len > BS && below(r, 100) < 20) {
			L[i].part = 3;
			L[i].mask = rnd(r);
			s->split++;
		}
	}
	qsort(L, n, sizeof(*L), cmp_landing);
	if (s->debug_point == C) {
		printf("crash point %" PRIu64 ": last completed flush issued at %" PRIu64
		       "; lower requests landed, in order:\n",
		       C, flush_issue);
		for (i = 0; i < n; i++) {
			const struct td_record_op *op = &log->ops[L[i].i];

			printf("  #%zu %s off=%" PRIu64 " len=%" PRIu64 "%s issued=%" PRIu64
			       " completed=%" PRIu64 " part=%d cut=%" PRIu64 "\n",
			       L[i].i, op->op == TD_OP_WRITE ? "write" : "zero", op->off, op->len,
			       op->flags & TD_REQ_FUA ? " FUA" : "", op->issued, op->completed,
			       L[i].part, L[i].cut);
		}
		for (i = 0; i < log->n; i++) {
			const struct td_record_op *op = &log->ops[i];

			if (op->issued < C)
				printf("  log #%zu op=%d off=%" PRIu64 " len=%" PRIu64 " flags=%u "
				       "issued=%" PRIu64 " completed=%" PRIu64 "\n",
				       i, op->op, op->off, op->len, op->flags, op->issued,
				       op->completed);
		}
	}

	fd = open(s->crash, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)s->lower_size) < 0) {
		rc = -errno;
		goto out;
	}
	for (i = 0; i < s->nbase && rc == 0; i++)
		if (pwrite(fd, s->base_data + i * BS, BS, (off_t)s->base_off[i]) != BS)
			rc = -errno;
	for (i = 0; i < n && rc == 0; i++) {
		const struct td_record_op *op = &log->ops[L[i].i];
		uint64_t end = op->off + op->len, b;

		switch (L[i].part) {
		case 1:
			rc = put(fd, op, op->off, L[i].cut);
			break;
		case 2:
			rc = put(fd, op, L[i].cut, end);
			break;
		case 3:
			for (b = 0; b * BS < op->len && rc == 0; b++)
				if (b >= 64 || (L[i].mask >> b) & 1)
					rc = put(fd, op, op->off + b * BS,
						 op->off + (b + 1) * BS < end
						     ? op->off + (b + 1) * BS
						     : end);
			break;
		default:
			rc = put(fd, op, op->off, end);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(L);
	return rc;
}

/* ---- checking a crash image --------------------------------------------- */

/* The current epoch of an image file and how many journal records of that
 * epoch it holds (what recovery will replay); -1 when no superblock is valid. */
static int64_t epoch_of(struct sim *s, const char *path, unsigned *nrec)
{
	struct td_hmac *mac = td_hmac_new(s->mac_key, 32);
	struct ti_rec recs[TI_RECS_PER_BLOCK];
	struct ti_fpoint *fp = malloc(sizeof(*fp));
	struct ti_jinfo info;
	uint8_t *buf = malloc(TI_BLOCK);
	int64_t epoch = -1;
	unsigned i;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*nrec = 0;
	if (!mac || !buf || !fp || fd < 0)
		goto out;
	for (i = 0; i < 2; i++) {
		struct ti_super sb = {.version = s->prm.version};

		if (pread(fd, buf, TI_BLOCK, (off_t)(s->prm.super_off + i * TI_BLOCK)) ==
			TI_BLOCK &&
		    ti_super_decode(buf, s->uuid, mac, &sb) == 0 && (int64_t)sb.epoch > epoch)
			epoch = (int64_t)sb.epoch;
	}
	for (i = 0; epoch >= 0 && i < s->prm.journal_blocks; i++) {
		int n;

		if (pread(fd, buf, TI_BLOCK,
			  (off_t)(s->prm.journal_off + (uint64_t)i * TI_BLOCK)) != TI_BLOCK)
			break;
		n = ti_jblock_decode(buf, (uint64_t)epoch, i, s->uuid, mac, recs, fp, &info);
		if (n > 0)
			*nrec += (unsigned)n;
	}
out:
	if (fd >= 0)
		close(fd);
	free(fp);
	free(buf);
	td_hmac_free(mac);
	return epoch;
}

/* Reads every block through the integrity layer: out[b] = R_EIO, R_ZERO, a
 * version, R_GARBAGE or R_OTHER_BLOCK. */
static int read_all(struct sim *s, struct td_layer *top, int64_t *out, char *why, size_t wlen)
{
	const uint64_t chunk = 128;
	uint8_t *buf = td_buf_get(chunk * BS);
	uint64_t b, k;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (b = 0; b < s->cfg.blocks && rc == 0; b += chunk) {
		uint64_t n = s->cfg.blocks - b < chunk ? s->cfg.blocks - b : chunk;

		rc = td_layer_sync_io(top, TD_OP_READ, b * BS, buf, n * BS, 0);
		if (rc == 0) {
			for (k = 0; k < n; k++)
				out[b + k] = decode(buf + k * BS, b + k);
			continue;
		}
		if (rc != -EIO) {
			snprintf(why, wlen, "read of blocks %" PRIu64 "+%" PRIu64 " failed: %s", b,
				 n, strerror(-rc));
			break;
		}
		rc = 0;
		for (k = 0; k < n && rc == 0; k++) {
			rc = td_layer_sync_io(top, TD_OP_READ, (b + k) * BS, buf, BS, 0);
			if (rc == -EIO) {
				out[b + k] = R_EIO;
				rc = 0;
			} else if (rc == 0) {
				out[b + k] = decode(buf, b + k);
			} else {
				snprintf(why, wlen, "read of block %" PRIu64 " failed: %s", b + k,
					 strerror(-rc));
			}
		}
	}
	td_buf_put(buf, chunk * BS);
	return rc;
}

static void violation(struct sim *s, uint64_t C, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void violation(struct sim *s, uint64_t C, const char *fmt, ...)
{
	va_list ap;

	s->violations++;
	if (s->reported++ >= MAX_REPORTS)
		return;
	printf("VIOLATION seed=%" PRIu64 " crash_point=%" PRIu64 ": ", s->cfg.seed, C);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static const char *kind_name(enum ckind k)
{
	static const char *names[] = {"write", "write-zeroes", "discard", "flush"};

	return names[k];
}

/* Block b's newest durable version at crash point C (acknowledged before
 * the issue of a completed flush, or as FUA; 0 = none) and its newest
 * version issued before C. */
static uint32_t durable_version(const struct sim *s, uint64_t C, uint64_t flush_issue, uint64_t b,
				uint32_t *newest_issued)
{
	const struct vlist *h = &s->hist[b];
	uint32_t lo = 0, v;

	*newest_issued = 0;
	for (v = 1; v <= h->n; v++) {
		const struct cop *o = &s->cops[h->op[v - 1]];

		if (o->issued < C)
			*newest_issued = v;
		if (o->acked && o->acked < C && !o->err && (o->fua || o->acked < flush_issue))
			lo = v;
	}
	return lo;
}

/* Checks one block's outcome against what a crash at C allows. */
static void check_block(struct sim *s, uint64_t C, uint64_t flush_issue, uint64_t b, int64_t got,
			int64_t torn_block)
{
	const struct vlist *h = &s->hist[b];
	uint32_t lo, v, newest_issued;
	bool zero_ok, rolled = s->rolled_map[b];

	lo = durable_version(s, C, flush_issue, b, &newest_issued);
	if (got == R_EIO) {
		if (rolled)
			s->rolled_eio++;
		else if ((int64_t)b != torn_block)
			violation(s, C,
				  "block %" PRIu64 " fails verification (EIO) but no torn write "
				  "touched it (durable version %u, newest issued %u)",
				  b, lo, newest_issued);
		else
			s->torn_eio++;
		return;
	}
	if (got == R_GARBAGE || got == R_OTHER_BLOCK) {
		violation(s, C, "block %" PRIu64 " returned %s", b,
			  got == R_GARBAGE ? "data no write ever wrote" : "another block's data");
		return;
	}
	if (got == R_ZERO) {
		zero_ok = lo == 0;
		for (v = lo ? lo : 1; v <= newest_issued && !zero_ok; v++)
			zero_ok = s->cops[h->op[v - 1]].kind != C_WRITE;
		if (!zero_ok && (int64_t)b == torn_block)
			s->torn_rollback++; /* the limit flush points closed */
		if (!zero_ok)
			violation(
			    s, C,
			    "block %" PRIu64 " reads as zeros; durable version %u (%s, acked at "
			    "%" PRIu64 ") is lost%s",
			    b, lo, kind_name(s->cops[h->op[lo - 1]].kind),
			    s->cops[h->op[lo - 1]].acked,
			    rolled ? " (the rollback attacker put an older state "
				     "back: it must read as EIO)"
			    : (int64_t)b == torn_block ? " (a torn write hit this block: it must "
							 "read as an integrity error, not as "
							 "older contents)"
						       : "");
		return;
	}
	v = (uint32_t)got;
	if (v > h->n || s->cops[h->op[v - 1]].kind != C_WRITE) {
		violation(s, C, "block %" PRIu64 " holds version %u, never written there", b, v);
		return;
	}
	if (v > newest_issued) {
		violation(s, C, "block %" PRIu64 " holds version %u, issued after the crash", b, v);
		return;
	}
	if (v < lo)
		violation(s, C,
			  "block %" PRIu64 " holds version %u, older than the durable version %u "
			  "(%s%s, acked at %" PRIu64 ", a flush issued at %" PRIu64 " completed)%s",
			  b, v, lo, kind_name(s->cops[h->op[lo - 1]].kind),
			  s->cops[h->op[lo - 1]].fua ? " FUA" : "", s->cops[h->op[lo - 1]].acked,
			  flush_issue,
			  rolled		     ? " (put back by the rollback attacker)"
			  : (int64_t)b == torn_block ? " (the torn block)"
						     : "");
}

/* The rollback attacker (step 5): puts an older state back into a few
 * blocks of the crash image whose newest durable version is a write. */
static int roll_back(struct sim *s, uint64_t C, uint64_t flush_issue, struct rng *r)
{
	uint8_t *buf;
	unsigned tries, done = 0, want = 1 + (unsigned)below(r, 4);
	int fd, rc = 0;

	memset(s->rolled_map, 0, s->cfg.blocks);
	if (below(r, 2))
		return 0;
	buf = malloc(BS);
	fd = open(s->crash, O_RDWR | O_CLOEXEC);
	if (!buf || fd < 0) {
		rc = -ENOMEM;
		goto out;
	}
	for (tries = 0; tries < 64 && done < want; tries++) {
		uint64_t b = below(r, s->cfg.blocks);
		uint32_t newest, lo = durable_version(s, C, flush_issue, b, &newest), v;

		if (!lo || s->rolled_map[b] || s->cops[s->hist[b].op[lo - 1]].kind != C_WRITE)
			continue;
		/* an older state: version v < lo, or zeros (the state before
		 * the first write, or what an older write-zeroes/discard left) */
		v = (uint32_t)below(r, lo);
		if (v && s->cops[s->hist[b].op[v - 1]].kind == C_WRITE)
			pattern(buf, b, v);
		else
			memset(buf, 0, BS);
		if (pwrite(fd, buf, BS, (off_t)(s->prm.data_start + b * BS)) != BS) {
			rc = -errno;
			goto out;
		}
		s->rolled_map[b] = 1;
		s->rolled++;
		done++;
	}
	if (done)
		s->rolled_points++;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

static int check_point(struct sim *s, struct td_env *e, uint64_t C, struct rng *r, unsigned idx,
		       int64_t *res, int64_t *res2)
{
	struct td_chain *c = NULL;
	char err[512] = "", spec[4200];
	int64_t torn, e0, e1;
	unsigned nrec, nrec1;
	uint64_t flush_issue = 0, b;
	bool tag_pending;
	size_t i;
	int rc;

	rc = build_crash(s, C, r, &torn, &tag_pending);
	if (rc < 0) {
		printf("crashsim: cannot build the crash image: %s\n", strerror(-rc));
		return rc;
	}
	if (tag_pending)
		s->ckpt_points++;
	for (i = 0; i < s->ncops; i++) {
		const struct cop *o = &s->cops[i];

		if (o->kind == C_FLUSH && o->acked && o->acked < C && !o->err &&
		    o->issued > flush_issue)
			flush_issue = o->issued;
	}
	rc = roll_back(s, C, flush_issue, r);
	if (rc < 0) {
		printf("crashsim: cannot roll blocks back: %s\n", strerror(-rc));
		return rc;
	}
	snprintf(spec, sizeof(spec), "aio:%s", s->crash);
	e0 = epoch_of(s, s->crash, &nrec);
	rc = open_integrity(s, e, spec, &c, err, sizeof(err));
	if (rc < 0) {
		violation(s, C, "the crash image does not open: %s", err);
		goto out;
	}
	/* recovery that replayed records ends with a checkpoint starting a
	 * fresh epoch; otherwise new journal blocks overwrite the replayed
	 * ones while what recovery wrote is not durable yet */
	e1 = epoch_of(s, s->crash, &nrec1);
	if (nrec) {
		s->replays++;
		if (e1 <= e0)
			violation(s, C,
				  "recovery replayed %u journal records of epoch %" PRId64
				  " but did not start a new epoch (still %" PRId64 ")",
				  nrec, e0, e1);
	}
	rc = read_all(s, c->top, res, err, sizeof(err));
	if (rc < 0) {
		violation(s, C, "%s", err);
		goto out;
	}
	for (b = 0; b < s->cfg.blocks; b++)
		check_block(s, C, flush_issue, b, res[b], torn);
	if (idx % 8 == 0) {
		/* what recovery settled on must survive a close and a reopen */
		td_chain_close_sync(c);
		c = NULL;
		rc = open_integrity(s, e, spec, &c, err, sizeof(err));
		if (rc < 0) {
			violation(s, C, "the recovered image does not reopen: %s", err);
			goto out;
		}
		rc = read_all(s, c->top, res2, err, sizeof(err));
		if (rc < 0) {
			violation(s, C, "after reopen: %s", err);
			goto out;
		}
		for (b = 0; b < s->cfg.blocks; b++)
			if (res[b] != res2[b])
				violation(s, C,
					  "block %" PRIu64 " read %" PRId64
					  " after recovery but %" PRId64 " after a reopen",
					  b, res[b], res2[b]);
		s->stable_checks++;
	}
	rc = 0;
out:
	if (c)
		td_chain_close(c);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: crashsim [--seed N] [--points N] [--ops N] [--blocks N] [--qd N]\n"
	    "                [--journal N] [--version 1|2] [--dir DIR] [--long] [--strict-torn]\n"
	    "                [--break no-journal-wait|fp-off|fp-early|fp-noexcl] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"seed", required_argument, NULL, 's'},    {"points", required_argument, NULL, 'p'},
	    {"ops", required_argument, NULL, 'o'},     {"blocks", required_argument, NULL, 'b'},
	    {"qd", required_argument, NULL, 'q'},      {"journal", required_argument, NULL, 'j'},
	    {"dir", required_argument, NULL, 'd'},     {"long", no_argument, NULL, 'L'},
	    {"verbose", no_argument, NULL, 'v'},       {"strict-torn", no_argument, NULL, 'T'},
	    {"version", required_argument, NULL, 'V'}, {"break", required_argument, NULL, 'B'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	static const struct {
		const char *name;
		enum ti_test_break mode;
	} breaks[] = {
	    {"no-journal-wait", TI_TEST_NO_JOURNAL_WAIT},
	    {"fp-off", TI_TEST_FP_OFF},
	    {"fp-early", TI_TEST_FP_EARLY},
	    {"fp-noexcl", TI_TEST_FP_NOEXCL},
	};
	size_t bi;
	static struct sim S;
	static struct td_env E;
	struct sim *s = &S;
	struct rng setup_rng, crash_rng;
	struct timespec t0, t1;
	uint64_t *points = NULL, maxev, lower_writes = 0, lower_flushes = 0, supers = 0,
		 fpoints = 0, fp_shared = 0;
	int64_t *res = NULL, *res2 = NULL;
	bool long_mode = false, seed_given = false;
	unsigned i;
	int opt, rc;

	td_drivers_set(td_registry());

	s->cfg.points = 250;
	s->cfg.ops = 1500;
	s->cfg.blocks = 2048;
	s->cfg.version = TI_PARAMS_VERSION;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 's':
			s->cfg.seed = strtoull(optarg, NULL, 0);
			seed_given = true;
			break;
		case 'p':
			s->cfg.points = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'o':
			s->cfg.ops = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			s->cfg.blocks = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'q':
			s->cfg.qd = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'j':
			s->cfg.journal = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'd':
			s->cfg.dir = optarg;
			break;
		case 'L':
			long_mode = true;
			break;
		case 'v':
			s->cfg.verbose = true;
			break;
		case 'T':
			s->cfg.strict_torn = true;
			break;
		case 'V':
			s->cfg.version = (unsigned)strtoul(optarg, NULL, 0);
			if (s->cfg.version < 1 || s->cfg.version > 2) {
				usage(stderr);
				return 2;
			}
			break;
		case 'B':
			for (bi = 0; bi < sizeof(breaks) / sizeof(breaks[0]); bi++)
				if (!strcmp(optarg, breaks[bi].name))
					break;
			if (bi == sizeof(breaks) / sizeof(breaks[0])) {
				usage(stderr);
				return 2;
			}
			ti_test_break(breaks[bi].mode);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (long_mode) {
		s->cfg.points = s->cfg.points == 250 ? 4000 : s->cfg.points;
		s->cfg.ops = s->cfg.ops == 1500 ? 6000 : s->cfg.ops;
	}
	if (!seed_given) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		s->cfg.seed =
		    (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
	}
	if (s->cfg.blocks < 64 || s->cfg.points < 1 || s->cfg.ops < 1) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("CRASHSIM_DEBUG_POINT"))
		s->debug_point = strtoull(getenv("CRASHSIM_DEBUG_POINT"), NULL, 0);
	td_log_init("crashsim");
	td_log_set_level(s->cfg.verbose ? TD_LOG_INFO : TD_LOG_ERR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	setup_rng.s = s->cfg.seed;
	s->wl.s = s->cfg.seed ^ 0xabcdef;
	crash_rng.s = s->cfg.seed ^ 0x123456789ull;
	if (!s->cfg.journal) {
		/* small journals: a checkpoint every few hundred requests */
		static const unsigned j[] = {16, 24, 64, 128};

		s->cfg.journal = j[below(&setup_rng, 4)];
	}
	if (!s->cfg.dir) {
		const char *t = getenv("TMPDIR");
		struct stat st;

		s->cfg.dir = !stat("/dev/shm", &st) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
			     : t && *t						     ? t
										     : "/var/tmp";
	}
	snprintf(s->img, sizeof(s->img), "%s/crashsim.%d.work", s->cfg.dir, (int)getpid());
	snprintf(s->crash, sizeof(s->crash), "%s/crashsim.%d.crash", s->cfg.dir, (int)getpid());
	printf("crashsim: seed=%" PRIu64 " ops=%u blocks=%u journal=%u points=%u dir=%s\n",
	       s->cfg.seed, s->cfg.ops, s->cfg.blocks, s->cfg.journal, s->cfg.points, s->cfg.dir);

	s->capcops = s->cfg.ops + 2;
	s->cops = calloc(s->capcops, sizeof(*s->cops));
	s->hist = calloc(s->cfg.blocks, sizeof(*s->hist));
	s->busy = calloc(s->cfg.blocks, 1);
	res = calloc(s->cfg.blocks, sizeof(*res));
	res2 = calloc(s->cfg.blocks, sizeof(*res2));
	points = calloc(s->cfg.points, sizeof(*points));
	s->rolled_map = calloc(s->cfg.blocks, 1);
	if (!s->cops || !s->hist || !s->busy || !res || !res2 || !points || !s->rolled_map) {
		printf("crashsim: out of memory\n");
		return 1;
	}
	/* one loop and one io context for everything: io_destroy() costs tens
	 * of milliseconds */
	rc = env_init(&E);
	if (rc == 0)
		rc = setup(s, &E, &setup_rng);
	if (rc == 0)
		rc = workload(s, &E);
	if (rc < 0) {
		printf("crashsim: FAILED before the crash points (seed %" PRIu64 "): %s\n",
		       s->cfg.seed, strerror(-rc));
		unlink(s->img);
		return 1;
	}
	if (s->log->incomplete) {
		printf("crashsim: the record log is incomplete (out of memory)\n");
		return 1;
	}
	maxev = td_record_now();
	for (i = 0; i < s->log->n; i++) {
		const struct td_record_op *op = &s->log->ops[i];

		if (op->op == TD_OP_WRITE)
			lower_writes++;
		if (op->op == TD_OP_FLUSH)
			lower_flushes++;
		if (op->op == TD_OP_WRITE && op->off >= s->prm.super_off &&
		    op->off < s->prm.super_off + 2 * BS)
			supers++;
		/* flush-point journal blocks (kind 1 at byte 48) */
		if (op->op == TD_OP_WRITE && op->data && op->off >= s->prm.journal_off &&
		    op->off < s->prm.tags_off) {
			uint64_t at;

			for (at = 0; at + BS <= op->len; at += BS) {
				if (op->data[at + 48] != TI_JB_FLUSH ||
				    memcmp(op->data + at, "TDJRNL01", 8))
					continue;
				fpoints++;
				if (op->data[at + 24]) /* with records: shares their block */
					fp_shared++;
			}
		}
	}
	/* uniform over the run, plus the state after a clean close */
	points[0] = maxev + 1;
	for (i = 1; i < s->cfg.points; i++)
		points[i] = 1 + below(&crash_rng, maxev);
	qsort(points, s->cfg.points, sizeof(*points), cmp_u64);
	for (i = 0; i < s->cfg.points; i++) {
		if (check_point(s, &E, points[i], &crash_rng, i, res, res2) < 0) {
			s->violations++;
			break;
		}
		if (s->cfg.verbose && i % 50 == 0)
			printf("crashsim: %u/%u crash points, %u violations\n", i, s->cfg.points,
			       s->violations);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("crashsim: seed=%" PRIu64 " client_ops=%zu lower_writes=%" PRIu64
	       " lower_flushes=%" PRIu64 " checkpoints=%" PRIu64 " events=%" PRIu64
	       " crash_points=%u (with unflushed tag pages: %u, replaying: %u) avg_landed=%.1f "
	       "avg_guaranteed=%.1f torn=%u (EIO on the torn block: %u, zeros: %u) partial=%u "
	       "flush_points=%" PRIu64 " (in a records block: %" PRIu64 ") "
	       "rolled_back=%u (at %u points, EIO: %u) "
	       "reopen_checks=%u violations=%u time=%.1fs\n",
	       s->cfg.seed, s->ncops, lower_writes, lower_flushes, supers, maxev, s->cfg.points,
	       s->ckpt_points, s->replays, (double)s->chosen_total / s->cfg.points,
	       (double)s->guaranteed_total / s->cfg.points, s->torn, s->torn_eio, s->torn_rollback,
	       s->split, fpoints, fp_shared, s->rolled, s->rolled_points, s->rolled_eio,
	       s->stable_checks, s->violations,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	unlink(s->img);
	unlink(s->crash);
	td_record_log_free(s->log);
	env_free(&E);
	for (i = 0; i < s->cfg.blocks; i++)
		free(s->hist[i].op);
	free(s->hist);
	free(s->cops);
	free(s->busy);
	free(s->base_off);
	free(s->base_data);
	free(res);
	free(res2);
	free(points);
	free(s->rolled_map);
	return s->violations ? 1 : 0;
}
