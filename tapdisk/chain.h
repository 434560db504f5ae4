/* Building and tearing down a chain of layers from a parsed spec. */
#ifndef TD_CHAIN_H
#define TD_CHAIN_H

#include "tapdisk/driver.h"
#include "tapdisk/spec.h"

struct td_chain {
	struct td_layer *top;
	char *spec; /* canonical */
	char *path;
};

/* Opens bottom-up: the image driver with the path, then each layer above.
 * On failure nothing stays open and err says why. */
int td_chain_open(struct td_ctx *ctx, const char *spec, struct td_chain **out, char *err,
		  size_t errlen);
void td_chain_close(struct td_chain *c);

/* For a stacking driver's open(): put a new layer of drv between l and
 * l->below and open it (e.g. crypt inserting the integrity layer its
 * header records). arg is handed to the new layer's open() as l->arg
 * (only during open). */
int td_chain_insert_below(struct td_layer *l, const struct td_driver *drv, const char *opts,
			  const void *arg, char *err, size_t errlen);

/* Names of the drivers from top to bottom, e.g. "crypt>integrity>aio". */
void td_chain_describe(const struct td_chain *c, char *buf, size_t len);

#endif
