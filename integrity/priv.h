/* One open integrity layer (td_layer.priv): its components side by side.
 * Each is owned by its file; the request state machine (drv_integrity.c)
 * and the open/quiesce/close paths (lifecycle.c) hold them together. */
#ifndef TD_INTEGRITY_PRIV_H
#define TD_INTEGRITY_PRIV_H

#include "integrity/checkpoint.h"
#include "integrity/fpoint.h"
#include "integrity/gen.h"
#include "integrity/journal.h"
#include "integrity/tagcache.h"
#include "tapdisk/core/loop.h"
#include "tapdisk/core/rangelock.h"

struct ti_rsw;

struct ti_priv {
	struct ti_core c;
	struct ti_cache tc;
	struct ti_journal j;
	struct ti_ckpt ck;
	struct ti_fp fp;
	struct ti_gen *gen;
	struct ti_rsw *rsw; /* reenc.c: the online switch of a key rotation */

	/* the request path (drv_integrity.c) */
	struct td_rangelock rl; /* reads shared, writes exclusive */
	uint64_t logged[64];	/* blocks whose failure was logged (once each) */
	unsigned nlogged;

	/* a quiesce (lifecycle.c) */
	int q_state;
	int q_err;
	struct ti_wait q_w; /* parked on the checkpoint, then on the generation */
	struct td_defer q_defer;
};

/* lifecycle.c */
int ti_layer_open(struct td_layer *l, const char *path, const char *opts, char *err, size_t errlen);
void ti_layer_quiesce(struct td_layer *l);
void ti_layer_close(struct td_layer *l);
/* grow.c: online grow (td_driver.grow) */
int ti_layer_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen);

/* reenc.c: frees the rotation's new keys (if any). */
void ti_keys_free_new(struct ti_core *c);
/* reenc.c: frees the online switch's state (its pages unpinned). */
void ti_reenc_switch_free(struct ti_priv *p);

/* recover.c: open-time replay of the current epoch of the journal, then a
 * checkpoint when anything was replayed. */
int ti_recover(struct ti_priv *p, char *err, size_t errlen);

#endif
