/* Open, quiesce and close of an integrity layer.
 *
 * Open (at the top of the loop, synchronous I/O allowed): keys, the
 * superblock, the v2 tree's top level, the trusted generation, recovery
 * of the journal (which ends with a checkpoint when it replayed anything),
 * then the flush points.
 *
 * Quiesce (the chain is drained and flushed; asynchronous, from the
 * loop): wait for a checkpoint under way, run the final one when the
 * journal or the cache holds anything (the next open then replays
 * nothing), wait until the trusted generation is recorded (a worker),
 * then report with td_layer_quiesced(). Each wait parks q_w on the
 * component that will wake it.
 *
 * Close frees, and does no I/O: without a quiesce the image is left as a
 * crash would leave it, which recovery handles. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "integrity/priv.h"
#include "integrity/super.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"

/* ---- open ---------------------------------------------------------------------- */

static int keys_init(struct ti_core *c, const struct ti_open_arg *a)
{
	int i;

	c->mac_key = td_secure_alloc(32);
	if (!c->mac_key)
		return -ENOMEM;
	memcpy(c->mac_key, a->mac_key, 32);
	/* one per worker thread and one for the loop thread (small requests
	 * are MAC'd inline) */
	c->nmacs = td_workers_count(c->ctx->workers) + 1;
	c->macs = calloc((size_t)c->nmacs, sizeof(*c->macs));
	if (!c->macs)
		return -ENOMEM;
	for (i = 0; i < c->nmacs; i++)
		if (!(c->macs[i] = td_hmac_new(c->mac_key, 32)))
			return -ENOMEM;
	c->mac_loop = td_hmac_new(c->mac_key, 32);
	if (!c->mac_loop)
		return -ENOMEM;
	if (c->p.version < 2)
		return 0;
	if (!a->tree_key || !(c->tree_key = td_secure_alloc(32)))
		return -ENOMEM;
	memcpy(c->tree_key, a->tree_key, 32);
	if (!(c->tree_mac = td_hmac_new(c->tree_key, 32)))
		return -ENOMEM;
	c->tree = true;
	return 0;
}

/* The rotation's new mac subkey (the new tree key is used only by the
 * rekey, reenc.c). */
static int keys_init_new(struct ti_core *c, const struct ti_open_arg *a)
{
	int i;

	if (!a->new_mac_key)
		return 0;
	if (!(c->new_mac_key = td_secure_alloc(32)) || !(c->new_tree_key = td_secure_alloc(32)))
		return -ENOMEM;
	memcpy(c->new_mac_key, a->new_mac_key, 32);
	if (a->new_tree_key)
		memcpy(c->new_tree_key, a->new_tree_key, 32);
	else if (c->tree)
		return -EINVAL;
	c->macs_new = calloc((size_t)c->nmacs, sizeof(*c->macs_new));
	if (!c->macs_new)
		return -ENOMEM;
	for (i = 0; i < c->nmacs; i++)
		if (!(c->macs_new[i] = td_hmac_new(c->new_mac_key, 32)))
			return -ENOMEM;
	if (!(c->mac_loop_new = td_hmac_new(c->new_mac_key, 32)))
		return -ENOMEM;
	__atomic_store_n(&c->tag_boundary, a->tag_boundary, __ATOMIC_RELEASE);
	return 0;
}

static void keys_free(struct ti_core *c)
{
	int i;

	for (i = 0; c->macs && i < c->nmacs; i++)
		td_hmac_free(c->macs[i]);
	free(c->macs);
	c->macs = NULL;
	td_hmac_free(c->mac_loop);
	c->mac_loop = NULL;
	if (c->mac_key)
		td_secure_free(c->mac_key);
	c->mac_key = NULL;
	td_hmac_free(c->tree_mac);
	c->tree_mac = NULL;
	if (c->tree_key)
		td_secure_free(c->tree_key);
	c->tree_key = NULL;
	ti_keys_free_new(c);
}

/* The superblock gives the epoch and the next sequence number; v2: the
 * L2 array must match its root. */
static int load_super(struct ti_priv *p, char *err, size_t errlen)
{
	struct ti_core *c = &p->c;
	uint8_t *buf = td_buf_get(TI_BLOCK);
	struct ti_super s;
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = ti_super_load(ti_lower(c), &c->p, c->uuid, c->mac_loop, buf, &s, err, errlen);
	td_buf_put(buf, TI_BLOCK);
	if (rc < 0)
		return rc;
	p->j.epoch = s.epoch;
	p->j.next_seq = s.seq_base ? s.seq_base : 1;
	if (!c->tree)
		return 0;
	rc =
	    ti_l2_read_verify(ti_lower(c), &c->p, c->uuid, c->tree_mac, s.epoch, s.root, &p->tc.l2);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read the freshness tree: %s", strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		snprintf(
		    err, errlen,
		    "integrity metadata is corrupt: the freshness tree of generation %llu does "
		    "not match its superblock (replayed or damaged tree pages)",
		    (unsigned long long)s.epoch);
		return -EBADMSG;
	}
	return 0;
}

static void free_all(struct ti_priv *p)
{
	ti_reenc_switch_free(p);
	ti_fp_free(&p->fp);
	ti_ckpt_free(&p->ck);
	ti_journal_free(&p->j);
	ti_cache_free(&p->tc);
	ti_gen_free(p->gen);
	p->gen = NULL;
	keys_free(&p->c);
}

int ti_layer_open(struct td_layer *l, const char *path, const char *opts, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_core *c = &p->c;
	const struct ti_open_arg *a = l->arg;
	struct ti_tuning t;
	int rc;

	(void)path;
	if (!a) {
		snprintf(err, errlen,
			 "integrity: this layer is set up by crypt from the image's header "
			 "(format with 'vdkey format --integrity hmac-sha256' and open crypt:...); "
			 "a standalone integrity: spec is not supported yet");
		return -EINVAL;
	}
	t = a->tuning; /* the spec's options (an explicit integrity layer) over them */
	rc = ti_tuning_parse(opts, &t, "integrity", err, errlen);
	if (rc < 0)
		return rc;
	if (t.journal_partial > TI_JOURNAL_PARTIAL_MAX ||
	    (t.tag_cache && (t.tag_cache < TI_TAG_CACHE_MIN || t.tag_cache > TI_TAG_CACHE_MAX))) {
		snprintf(err, errlen,
			 "integrity: tuning out of range (journal-partial %u, tag-cache %llu)",
			 t.journal_partial, (unsigned long long)t.tag_cache);
		return -EINVAL;
	}
	c->l = l;
	c->ctx = l->ctx;
	c->p = a->params;
	memcpy(c->uuid, a->uuid, 16);
#ifdef TD_TEST_BUILD
	c->test = ti_test_break_mode();
	c->test_switch_stall = t.test_switch_stall;
	if (c->test == TI_TEST_NO_JOURNAL_WAIT)
		td_warn("integrity: data is written before its journal records (a test build's "
			"switch that breaks crash consistency)");
#endif
	if (ti_layout_end(&c->p) > l->below->size) {
		snprintf(
		    err, errlen,
		    "the image is truncated: integrity metadata ends at %llu, the image has %llu "
		    "bytes",
		    (unsigned long long)ti_layout_end(&c->p), (unsigned long long)l->below->size);
		return -EIO;
	}
	ti_journal_init(&p->j, c,
			t.journal_partial ? t.journal_partial : TI_JOURNAL_PARTIAL_DEFAULT);
	rc = keys_init(c, a);
	if (rc == 0)
		rc = keys_init_new(c, a);
	if (rc == 0)
		rc = ti_cache_init(&p->tc, c, t.tag_cache ? t.tag_cache : TI_TAG_CACHE_DEFAULT);
	if (rc == 0 && !(p->gen = ti_gen_new(l->ctx->trust, l->ctx->workers, c->uuid)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = ti_ckpt_init(&p->ck, c, &p->tc, &p->j, p->gen);
	if (rc == 0)
		rc = load_super(p, err, errlen);
	if (rc == 0)
		rc = ti_gen_check(p->gen, p->j.epoch, !l->ctx->readonly && !l->ctx->nolock, err,
				  errlen);
	if (rc == 0)
		rc = ti_recover(p, err, errlen);
	if (rc == 0)
		rc = ti_fp_open(&p->fp, c, &p->j, &p->ck);
	if (rc < 0) {
		if (rc == -ENOMEM && !err[0])
			snprintf(err, errlen, "integrity: out of memory");
		free_all(p);
		return rc;
	}
	l->size = c->p.data_blocks * TI_BLOCK;
	return 0;
}

/* ---- quiesce ------------------------------------------------------------------- */

enum { Q_RUNNING, Q_FINAL, Q_GEN, Q_REPORT };

static void q_report(void *opaque)
{
	struct td_layer *l = opaque;
	struct ti_priv *p = l->priv;

	td_layer_quiesced(l, p->q_err);
}

static void q_final_failed(struct ti_priv *p, int err)
{
	td_err("integrity: final checkpoint failed: %s (the journal will be replayed at the next "
	       "open)",
	       strerror(-err));
	if (!p->q_err)
		p->q_err = err;
}

static void q_step(struct ti_priv *p)
{
	for (;;) {
		switch (p->q_state) {
		case Q_RUNNING: /* a checkpoint under way ends first */
			if (ti_ckpt_busy(&p->ck)) {
				ti_ckpt_wait(&p->ck, &p->q_w);
				return;
			}
			p->q_state = Q_FINAL;
			if (p->c.broken) {
				q_final_failed(p, p->c.broken);
				p->q_state = Q_GEN;
				continue;
			}
			if (!ti_ckpt_pending(&p->ck)) {
				p->q_state = Q_GEN;
				continue;
			}
			ti_ckpt_wait(&p->ck, &p->q_w); /* parked first: it may end at once */
			ti_ckpt_request(&p->ck);
			return;
		case Q_FINAL: /* woken: the final checkpoint ended */
			if (p->q_w.err)
				q_final_failed(p, p->q_w.err);
			p->q_state = Q_GEN;
			continue;
		case Q_GEN:
			p->q_state = Q_REPORT;
			if (!ti_gen_settle(p->gen, &p->q_w))
				return;
			continue;
		case Q_REPORT: /* from the loop, never from inside the quiesce call */
			td_defer_init(&p->q_defer, q_report, p->c.l);
			td_loop_defer(p->c.ctx->loop, &p->q_defer);
			return;
		}
	}
}

static void q_woken(struct ti_wait *w)
{
	q_step(TI_CONTAINER(w, struct ti_priv, q_w));
}

void ti_layer_quiesce(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	p->q_state = Q_RUNNING;
	p->q_err = 0;
	ti_wait_init(&p->q_w, q_woken);
	q_step(p);
}

/* ---- close ---------------------------------------------------------------------- */

void ti_layer_close(struct td_layer *l)
{
	free_all(l->priv);
}
