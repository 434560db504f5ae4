/* A volume-key rotation seen from the integrity layer (docs/FORMAT.md,
 * "Volume-key rotation with the integrity layer"): the tag boundary the
 * crypt layer moves with its windows, and the final rekey of the tree,
 * the superblock and the journal, done at an open (synchronous I/O). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "integrity/priv.h"
#include "tapdisk/core/log.h"

void ti_keys_free_new(struct ti_core *c)
{
	int i;

	for (i = 0; c->macs_new && i < c->nmacs; i++)
		td_hmac_free(c->macs_new[i]);
	free(c->macs_new);
	c->macs_new = NULL;
	td_hmac_free(c->mac_loop_new);
	c->mac_loop_new = NULL;
	if (c->new_mac_key)
		td_secure_free(c->new_mac_key);
	c->new_mac_key = NULL;
	if (c->new_tree_key)
		td_secure_free(c->new_tree_key);
	c->new_tree_key = NULL;
}

void ti_reenc_set_boundary(struct td_layer *l, uint64_t t)
{
	struct ti_priv *p = l->priv;

	__atomic_store_n(&p->c.tag_boundary, t, __ATOMIC_RELEASE);
}

/* Every non-zero tag page, and so its L1 page, dirty: the checkpoint
 * rehashes them under the tree key it then holds. */
static int dirty_whole_tree(struct ti_priv *p, char *err, size_t errlen)
{
	uint64_t t;

	for (t = 0; t < p->c.p.tags_pages; t++) {
		int e = 0;
		struct ti_page *pg = ti_page_get_sync(&p->tc, t, &e);

		if (!pg) {
			snprintf(
			    err, errlen,
			    "integrity: the volume-key rotation cannot load tag page %llu: %s%s",
			    (unsigned long long)t, strerror(-e),
			    e == -ENOMEM ? " (the final step holds every tag page of the "
					   "image in the tag cache: open with a larger tag-cache=)"
					 : "");
			return e ? e : -EIO;
		}
		if (!ti_all_zero(pg->data, TI_BLOCK))
			ti_page_mark_dirty(&p->tc, pg);
	}
	return 0;
}

/* From here on, only the new key: old contexts freed, new ones in place. */
static int switch_keys(struct ti_core *c)
{
	struct td_hmac *tm = NULL;
	int i;

	if (c->tree && !(tm = td_hmac_new(c->new_tree_key, 32)))
		return -ENOMEM;
	for (i = 0; i < c->nmacs; i++) {
		td_hmac_free(c->macs[i]);
		c->macs[i] = c->macs_new[i];
	}
	free(c->macs_new);
	c->macs_new = NULL;
	td_hmac_free(c->mac_loop);
	c->mac_loop = c->mac_loop_new;
	c->mac_loop_new = NULL;
	memcpy(c->mac_key, c->new_mac_key, 32);
	if (c->tree) {
		td_hmac_free(c->tree_mac);
		c->tree_mac = tm;
		memcpy(c->tree_key, c->new_tree_key, 32);
	}
	__atomic_store_n(&c->tag_boundary, 0, __ATOMIC_RELEASE);
	ti_keys_free_new(c);
	return 0;
}

int ti_reenc_rekey_sync(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_core *c = &p->c;
	int rc;

	if (!c->macs_new ||
	    __atomic_load_n(&c->tag_boundary, __ATOMIC_ACQUIRE) < c->p.data_blocks) {
		snprintf(err, errlen, "integrity: no finished volume-key rotation to switch to");
		return -EINVAL;
	}
	/* 1. everything durable under the old keys (epoch e) */
	rc = ti_ckpt_sync(&p->ck);
	/* 2. the tree rehashed, the superblock of e+1 sealed, under the new
	 * keys; the pages go to the slots the tree of e does not use */
	if (rc == 0 && c->tree)
		rc = dirty_whole_tree(p, err, errlen);
	if (rc == 0)
		rc = switch_keys(c);
	if (rc == 0) {
		p->ck.sync_force = true;
		p->ck.sync_hold_gen = true;
		rc = ti_ckpt_sync(&p->ck);
		p->ck.sync_force = false;
		p->ck.sync_hold_gen = false;
	}
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen,
				 "integrity: the volume-key rotation's final checkpoint failed: %s",
				 strerror(-rc));
		c->broken = c->broken ? c->broken : rc;
		return rc;
	}
	td_info("integrity: tags, tree and superblock of generation %llu are under the new "
		"volume key",
		(unsigned long long)p->j.epoch);
	return 0;
}

void ti_reenc_gen_commit(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	ti_gen_advance_sync(p->gen, p->j.epoch);
}

/* ---- the same switch while the VBD serves ------------------------------------- */

/* Tag pages pinned per chunk while they load (bounds the reads in flight). */
#define RSW_CHUNK_PAGES 256

enum rsw_state { RS_OLD, RS_LOAD, RS_REKEY, RS_WAIT, RS_DONE };

struct rsw_pin {
	struct ti_pin pin;
	struct ti_rsw *s;
};

struct ti_rsw {
	struct ti_priv *p;
	enum rsw_state st;
	struct ti_wait w; /* on a checkpoint's end */
	struct td_defer defer;
	struct rsw_pin *pins;
	uint64_t npins, pinned; /* pinned: pins[0..pinned) hold their pages */
	bool parked_pin;	/* pins[pinned - 1] waits for its loads */
	void (*done)(void *opaque, int err);
	void *opaque;
};

static void rsw_run(void *opaque);

static void rsw_kick(struct ti_rsw *s)
{
	td_loop_defer(s->p->c.ctx->loop, &s->defer);
}

static void rsw_woken(struct ti_wait *w)
{
	rsw_kick(TI_CONTAINER(w, struct ti_rsw, w));
}

static void rsw_pin_woken(struct ti_wait *w)
{
	struct rsw_pin *rp = TI_CONTAINER(w, struct rsw_pin, pin.w);

	rsw_kick(rp->s);
}

static void rsw_unpin(struct ti_rsw *s)
{
	while (s->pinned)
		ti_pages_unpin(&s->p->tc, &s->pins[--s->pinned].pin);
}

void ti_reenc_switch_free(struct ti_priv *p)
{
	struct ti_rsw *s = p->rsw;

	if (!s)
		return;
	td_loop_defer_cancel(p->c.ctx->loop, &s->defer);
	rsw_unpin(s);
	free(s->pins);
	free(s);
	p->rsw = NULL;
}

static void rsw_end(struct ti_rsw *s, int err)
{
	s->st = RS_DONE;
	rsw_unpin(s);
	if (err)
		td_err("integrity: the volume-key rotation's switch failed: %s", strerror(-err));
	s->done(s->opaque, err);
}

/* The rekey checkpoint's drain (checkpoint.c): the epoch is closed and
 * nothing of it is in flight, no guest read or write is in the layer. As
 * ti_reenc_rekey_sync: every non-zero tag page (and its L1 page) dirty,
 * then only the new keys; the checkpoint goes on under them. */
static int rsw_at_drain(void *opaque)
{
	struct ti_rsw *s = opaque;
	struct ti_priv *p = s->p;
	uint64_t t;
	int rc;

	/* The journal of epoch e holds nothing: a crash before the header
	 * commit opens epoch e, and the flush-point blocks of e+1 written
	 * meanwhile reuse the journal from its first block. */
	if (p->j.pos) {
		td_err("integrity: the volume-key rotation's switch found %u journal blocks in "
		       "its epoch",
		       (unsigned)p->j.pos);
		return -EBUSY;
	}
	for (t = 0; p->c.tree && t < p->c.p.tags_pages; t++) {
		struct ti_page *pg = ti_page_find(&p->tc, 0, t);

		if (!pg || !pg->loaded) {
			td_err("integrity: the volume-key rotation's switch lost tag page %llu",
			       (unsigned long long)t);
			return -EIO;
		}
		if (!ti_all_zero(pg->data, TI_BLOCK))
			ti_page_mark_dirty(&p->tc, pg);
	}
	rsw_unpin(s);
	if ((rc = switch_keys(&p->c)) < 0)
		return rc;
	p->ck.held = true;
	return 0;
}

static void rsw_run(void *opaque)
{
	struct ti_rsw *s = opaque;
	struct ti_priv *p = s->p;
	struct ti_ckpt *ck = &p->ck;

	for (;;) {
		switch (s->st) {
		case RS_OLD: /* 1. everything durable under the old keys */
			if (s->w.err) {
				rsw_end(s, s->w.err);
				return;
			}
			if (p->c.broken) {
				rsw_end(s, p->c.broken);
				return;
			}
			if (ti_ckpt_busy(ck)) {
				ti_ckpt_wait(ck, &s->w);
				return;
			}
			if (ti_ckpt_pending(ck)) {
				ti_ckpt_wait(ck, &s->w);
				ti_ckpt_request(ck);
				return;
			}
			s->st = RS_LOAD;
			continue;
		case RS_LOAD: /* 2. v2: every tag page (and L1 page) cached, pinned */
			if (s->parked_pin) {
				s->parked_pin = false;
				if (s->pins[s->pinned - 1].pin.w.err) {
					rsw_end(s, s->pins[s->pinned - 1].pin.w.err);
					return;
				}
			}
			if (p->c.tree && s->pinned < s->npins) {
				struct rsw_pin *rp = &s->pins[s->pinned++];
				uint64_t b0 =
				    (s->pinned - 1) * RSW_CHUNK_PAGES * TI_ENTRIES_PER_PAGE;
				uint64_t n = RSW_CHUNK_PAGES * TI_ENTRIES_PER_PAGE;
				int rc;

				if (n > p->c.p.data_blocks - b0)
					n = p->c.p.data_blocks - b0;
				memset(&rp->pin, 0, sizeof(rp->pin));
				rp->s = s;
				rp->pin.b0 = b0;
				rp->pin.n = n;
				ti_wait_init(&rp->pin.w, rsw_pin_woken);
				rc = ti_pages_pin(&p->tc, &rp->pin);
				if (rc == -EAGAIN) {
					s->parked_pin = true;
					return;
				}
				if (rc < 0) {
					rsw_end(s, rc);
					return;
				}
				continue;
			}
			s->st = RS_REKEY;
			s->w.err = 0;
			continue;
		case RS_REKEY: /* 3. the rekey checkpoint, when none runs */
			if (p->c.broken) {
				rsw_end(s, p->c.broken);
				return;
			}
			if (s->w.err) {
				rsw_end(s, s->w.err);
				return;
			}
			if (ti_ckpt_busy(ck)) { /* a guest flush's: wait for its end */
				ti_ckpt_wait(ck, &s->w);
				return;
			}
			if (ti_ckpt_pending(ck)) { /* epoch e must be empty: see rsw_at_drain */
				ti_ckpt_wait(ck, &s->w);
				ti_ckpt_request(ck);
				return;
			}
			s->st = RS_WAIT;
			ck->at_drain = rsw_at_drain;
			ck->at_drain_opaque = s;
			ti_ckpt_wait(ck, &s->w); /* parked first */
			ti_ckpt_request(ck);
			return;
		case RS_WAIT: /* woken: the rekey checkpoint ended */
			ck->at_drain = NULL;
			if (s->w.err) {
				rsw_end(s, s->w.err);
				return;
			}
			td_info(
			    "integrity: tags, tree and superblock of generation %llu are under the "
			    "new volume key",
			    (unsigned long long)p->j.epoch);
#ifdef TD_TEST_BUILD
			if (p->c.test_switch_stall) {
				td_warn("integrity: test-switch-stall: the switch stops before the "
					"header commit (a test build's switch)");
				s->st = RS_DONE;
				return;
			}
#endif
			rsw_end(s, 0);
			return;
		case RS_DONE:
			return;
		}
	}
}

int ti_reenc_switch(struct td_layer *l, void (*done)(void *opaque, int err), void *opaque)
{
	struct ti_priv *p = l->priv;
	struct ti_core *c = &p->c;
	struct ti_rsw *s;

	if (!c->macs_new || p->rsw ||
	    __atomic_load_n(&c->tag_boundary, __ATOMIC_ACQUIRE) < c->p.data_blocks)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->p = p;
	s->done = done;
	s->opaque = opaque;
	s->npins = c->tree ? (c->p.data_blocks + RSW_CHUNK_PAGES * TI_ENTRIES_PER_PAGE - 1) /
				 (RSW_CHUNK_PAGES * TI_ENTRIES_PER_PAGE)
			   : 0;
	if (s->npins && !(s->pins = calloc(s->npins, sizeof(*s->pins)))) {
		free(s);
		return -ENOMEM;
	}
	ti_wait_init(&s->w, rsw_woken);
	td_defer_init(&s->defer, rsw_run, s);
	p->rsw = s;
	rsw_kick(s);
	return 0;
}

void ti_reenc_switch_commit(struct td_layer *l)
{
	struct ti_priv *p = l->priv;

	p->ck.held = false;
	ti_gen_advance(p->gen, p->j.epoch);
	ti_reenc_switch_free(p);
	ti_ckpt_maybe(&p->ck); /* one a guest flush asked for meanwhile */
}

void ti_reenc_switch_abort(struct td_layer *l, int err)
{
	struct ti_priv *p = l->priv;

	td_err("integrity: the header write of the volume-key rotation failed (%s): writes are "
	       "refused until the image is opened again",
	       strerror(-err));
	if (!p->c.broken)
		p->c.broken = err;
	ti_reenc_switch_free(p);
}
