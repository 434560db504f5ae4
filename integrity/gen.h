/* The trusted generation (gen.c, docs/FORMAT.md "Rollback"): the highest
 * generation this host has seen of the image, kept by the program's
 * trusted store (td_ctx.trust) outside the image. A read-write open of an
 * older image is refused; after each checkpoint the new generation is
 * recorded, on a worker thread (the store syncs to disk). */
#ifndef TD_INTEGRITY_GEN_H
#define TD_INTEGRITY_GEN_H

#include "integrity/integ.h"

struct ti_gen;

/* NULL only when out of memory. trust NULL: no trusted store (nothing is
 * checked or recorded). */
struct ti_gen *ti_gen_new(const struct td_trust_ops *trust, struct td_workers *workers,
			  const uint8_t uuid[16]);
/* Frees g; a record still being written finishes on its own first. */
void ti_gen_free(struct ti_gen *g);

/* At open, before recovery: refuses a read-write open (track) of an image
 * whose generation `epoch` is older than the trusted one; records epoch
 * when it is newer. Synchronous. */
int ti_gen_check(struct ti_gen *g, uint64_t epoch, bool track, char *err, size_t errlen);
/* The superblock of generation `epoch` is durable: record it (a worker). */
void ti_gen_advance(struct ti_gen *g, uint64_t epoch);
/* The same at open (synchronous): recovery's checkpoint. */
void ti_gen_advance_sync(struct ti_gen *g, uint64_t epoch);
/* true when every generation advanced to is recorded (or failed and was
 * logged); else w is woken once it is. A record that failed is tried once
 * more. */
bool ti_gen_settle(struct ti_gen *g, struct ti_wait *w);

#endif
