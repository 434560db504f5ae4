/* The trusted generation: see gen.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/gen.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"

struct ti_gen {
	const struct td_trust_ops *trust; /* NULL: none */
	struct td_workers *workers;
	uint8_t uuid[16];
	bool track;	  /* read-write open: advance it after checkpoints */
	uint64_t written; /* recorded */
	uint64_t want;	  /* to record */
	bool busy;	  /* a record is being written on a worker */
	bool retried;	  /* ti_gen_settle tried a failed record again */
	bool orphan;	  /* freed while busy: the worker's done frees it */
	struct td_work work;
	int work_rc;
	uint64_t work_val;
	char work_err[256];
	struct ti_waitq settled;
};

struct ti_gen *ti_gen_new(const struct td_trust_ops *trust, struct td_workers *workers,
			  const uint8_t uuid[16])
{
	struct ti_gen *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->trust = trust;
	g->workers = workers;
	memcpy(g->uuid, uuid, 16);
	return g;
}

void ti_gen_free(struct ti_gen *g)
{
	if (!g)
		return;
	if (g->busy) {
		g->orphan = true;
		return;
	}
	free(g);
}

int ti_gen_check(struct ti_gen *g, uint64_t epoch, bool track, char *err, size_t errlen)
{
	char e[512], u[37];
	uint64_t trusted = 0;
	int rc;

	if (!g->trust)
		return 0; /* no trusted store: rollback detection off */
	td_uuid_str(g->uuid, u);
	g->track = track;
	if (track) {
		rc = g->trust->gen_prepare(g->uuid, e, sizeof(e));
		if (rc < 0) {
			snprintf(
			    err, errlen,
			    "%s (the trusted generation of image %s is kept there; run as root "
			    "or point TDCRYPT_STATE_DIR at a directory only root can write)",
			    e, u);
			return rc;
		}
	}
	rc = g->trust->gen_read(g->uuid, &trusted, e, sizeof(e));
	if (rc < 0) {
		if (track) {
			snprintf(err, errlen, "%s", e);
			return rc;
		}
		td_warn("integrity: %s", e);
	}
	if (epoch < trusted) {
		if (track) {
			snprintf(
			    err, errlen,
			    "image %s was rolled back: its generation is %llu but this host has "
			    "seen generation %llu. An older copy of the image was put back? If "
			    "that is intended, run 'vdkey accept-rollback SPEC'",
			    u, (unsigned long long)epoch, (unsigned long long)trusted);
			return -ESTALE;
		}
		td_warn("integrity: image %s opened read-only at generation %llu, older than the "
			"generation %llu this host has seen (a snapshot, or a rolled-back copy)",
			u, (unsigned long long)epoch, (unsigned long long)trusted);
	}
	g->written = trusted > epoch ? trusted : epoch;
	g->want = g->written;
	if (track && trusted < epoch) {
		rc = g->trust->gen_write(g->uuid, epoch, e, sizeof(e));
		if (rc < 0) {
			snprintf(err, errlen, "%s", e);
			return rc;
		}
	}
	return 0;
}

static void work_fn(struct td_work *w, int worker)
{
	struct ti_gen *g = TI_CONTAINER(w, struct ti_gen, work);

	(void)worker;
	g->work_rc = g->trust->gen_write(g->uuid, g->work_val, g->work_err, sizeof(g->work_err));
}

static void submit(struct ti_gen *g);

static void work_done(struct td_work *w)
{
	struct ti_gen *g = TI_CONTAINER(w, struct ti_gen, work);

	g->busy = false;
	if (g->orphan) {
		free(g);
		return;
	}
	if (g->work_rc < 0)
		td_err("integrity: cannot record the trusted generation: %s", g->work_err);
	else if (g->work_val > g->written)
		g->written = g->work_val;
	if (g->work_rc == 0 && g->want > g->written) {
		submit(g);
		return;
	}
	ti_wake_all(&g->settled, g->work_rc);
}

static void submit(struct ti_gen *g)
{
	g->busy = true;
	g->work_val = g->want;
	memset(&g->work, 0, sizeof(g->work));
	g->work.fn = work_fn;
	g->work.done = work_done;
	td_workers_submit(g->workers, &g->work);
}

void ti_gen_advance(struct ti_gen *g, uint64_t epoch)
{
	if (!g->track || epoch <= g->want)
		return;
	g->want = epoch;
	if (!g->busy)
		submit(g);
}

void ti_gen_advance_sync(struct ti_gen *g, uint64_t epoch)
{
	char e[512];

	if (!g->track || epoch <= g->want)
		return;
	g->want = epoch;
	if (g->trust->gen_write(g->uuid, epoch, e, sizeof(e)) < 0)
		td_err("integrity: cannot record the trusted generation: %s", e);
	else
		g->written = epoch;
}

bool ti_gen_settle(struct ti_gen *g, struct ti_wait *w)
{
	if (!g->busy && g->want > g->written && !g->retried) {
		g->retried = true; /* the last record failed: once more */
		submit(g);
	}
	if (!g->busy)
		return true;
	ti_park(&g->settled, w);
	return false;
}
