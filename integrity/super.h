/* Reading the integrity superblocks and the v2 tree's top level (super.c):
 * shared by the open path and vdkey's inspection (admin.c). Synchronous
 * I/O: open and tool paths only. */
#ifndef TD_INTEGRITY_SUPER_H
#define TD_INTEGRITY_SUPER_H

#include "integrity/integ.h"

/* Reads both superblock slots of an image and picks the valid one with
 * the higher epoch (docs/FORMAT.md "Superblocks"). buf: one aligned
 * block. */
int ti_super_load(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		  struct td_hmac *mac, uint8_t *buf, struct ti_super *out, char *err,
		  size_t errlen);
/* Reads the L2 array of generation `epoch` (allocated into *l2out, also
 * on failure) and checks it against the superblock's root `want`: 1
 * matches, 0 does not, or a negative errno when it cannot be read. */
int ti_l2_read_verify(struct td_layer *lower, const struct ti_params *prm, const uint8_t uuid[16],
		      struct td_hmac *tmac, uint64_t epoch, const uint8_t want[TI_HASH_LEN],
		      uint8_t **l2out);

#endif
