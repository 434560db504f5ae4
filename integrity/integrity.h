/* The integrity layer's public face: what the crypt layer hands it when it
 * inserts it below itself, and the format step vdkey runs. */
#ifndef TD_INTEGRITY_INTEGRITY_H
#define TD_INTEGRITY_INTEGRITY_H

#include <stddef.h>
#include <stdint.h>

#include "integrity/format.h"
#include "tapdisk/block/driver.h"

/* Passed through td_chain_insert_below(..., arg). The mac key is copied. */
struct ti_open_arg {
	struct ti_params params;
	uint8_t uuid[16];
	const uint8_t *mac_key; /* 32 bytes */
	const uint8_t *tree_key; /* 32 bytes (v2 parameters) */
};

/* What an inspection tool (vdkey audit) learns about freshness without
 * opening the layer: the authenticated generation, whether the tree root
 * in the superblock matches the stored L2 array, and the trusted
 * generation of this host. */
struct ti_fresh_status {
	unsigned version;	 /* integrity parameters version */
	uint64_t generation;	 /* epoch of the valid superblock */
	uint64_t trusted;	 /* keymgr/statedir.h, 0 = none recorded */
	int root_ok;		 /* v2: 1 root verifies, 0 not; v1: -1 */
	int rollback;		 /* generation < trusted */
};
int ti_fresh_status(struct td_layer *lower, const struct ti_params *p, const uint8_t uuid[16],
		    const uint8_t mac_key[32], const uint8_t tree_key[32],
		    struct ti_fresh_status *st, char *err, size_t errlen);
/* Sets the trusted generation of uuid to the image's (vdkey accept-rollback). */
int ti_accept_generation(const uint8_t uuid[16], uint64_t generation, char *err, size_t errlen);

extern const struct td_driver td_drv_integrity;

/* Writes fresh metadata (zeroed tag table and journal, epoch-1
 * superblocks) for a newly formatted image. */
int ti_format(struct td_layer *lower, const struct ti_params *p, const uint8_t uuid[16],
	      const uint8_t mac_key[32], char *err, size_t errlen);

/* Tag-cache budget per VBD: TD_INTEGRITY_CACHE_MB or 32 MiB. */
size_t ti_cache_budget(void);

#endif
