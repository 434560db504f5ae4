/* Building and tearing down a chain of layers from a parsed spec. */
#ifndef TD_CHAIN_H
#define TD_CHAIN_H

#include "tapdisk/block/driver.h"
#include "tapdisk/block/spec.h"

struct td_chain {
	struct td_layer *top;
	char *spec; /* canonical */
	char *path;
	/* a quiesce under way (td_chain_quiesce) */
	void (*q_cb)(void *opaque, int err);
	void *q_opaque;
	int q_err;
	struct td_defer q_defer;
	struct td_layer *q_next;
};

/* Opens bottom-up: the image driver with the path, then each layer above.
 * On failure nothing stays open and err says why. */
int td_chain_open(struct td_ctx *ctx, const char *spec, struct td_chain **out, char *err,
		  size_t errlen);
/* Frees the chain: no I/O (td_driver.close). Quiesce it first to leave the
 * image clean; without, it is left as a crash would leave it. */
void td_chain_close(struct td_chain *c);

/* Quiesces every layer, from the top down, once the chain is drained and
 * flushed (tapdisk/block/vbd.c does both for a pause): cb(opaque, err) runs
 * from the loop when the bottom layer is done; err is the first layer's
 * failure (logged; the others still quiesce). */
void td_chain_quiesce(struct td_chain *c, void (*cb)(void *opaque, int err), void *opaque);
/* For tools and open paths, at the top of the loop: FLUSH, quiesce and
 * close, running the loop until done. 0 or the first error. */
int td_chain_close_sync(struct td_chain *c);

/* For a stacking driver's open(): put a new layer of drv between l and
 * l->below and open it (e.g. crypt inserting the integrity layer its
 * header records). arg is handed to the new layer's open() as l->arg
 * (only during open). */
int td_chain_insert_below(struct td_layer *l, const struct td_driver *drv, const char *opts,
			  const void *arg, char *err, size_t errlen);

/* Names of the drivers from top to bottom, e.g. "crypt>integrity>aio". */
void td_chain_describe(const struct td_chain *c, char *buf, size_t len);

#endif
