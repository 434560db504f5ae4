/* Scrub: verify the MAC of every written block of an open integrity layer
 * ('vdkey audit --scrub'). Walks the tag table a few pages at a time and
 * reads the data behind the written entries in large batches, so memory
 * stays bounded (a few MiB) whatever the image size. */
#ifndef TD_INTEGRITY_SCRUB_H
#define TD_INTEGRITY_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"

#define TI_SCRUB_MAX_LISTED 1000 /* failing block numbers kept in the result */

struct ti_scrub_result {
	uint64_t blocks_total;	 /* protected blocks: verified + unwritten + failed */
	uint64_t verified;	 /* written blocks whose MAC verifies */
	uint64_t unwritten;	 /* all-zero table entry: never written, trimmed or zeroed */
	uint64_t failed;	 /* written blocks whose MAC does not verify */
	uint64_t *failed_blocks; /* the first TI_SCRUB_MAX_LISTED of them, ascending */
	size_t nlisted;
	bool truncated; /* failed > nlisted */
};

/* l must be an integrity layer (td_drv_integrity) with no request in
 * flight, on the caller's loop thread; the loop is run for the I/O.
 * progress (may be NULL) is called after each batch with blocks done so
 * far. Returns 0 (failures are results, not errors) or a negative errno
 * when the table or the data cannot be read. */
int ti_scrub(struct td_layer *l, void (*progress)(uint64_t done, uint64_t total, void *opaque),
	     void *opaque, struct ti_scrub_result *out);
void ti_scrub_result_free(struct ti_scrub_result *r);

#endif
