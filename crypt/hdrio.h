/* Reading and writing the crypt header through a driver chain (so it works
 * the same on a raw file, a qcow2 image or any other lower layer). */
#ifndef TD_CRYPT_HDRIO_H
#define TD_CRYPT_HDRIO_H

#include "crypt/header.h"
#include "tapdisk/block/driver.h"

/* Reads both copies and picks the valid one (td_hdr_pick). *other_bad
 * tells whether the other copy needs rewriting; the message is in note.
 * -ENOMSG when the image has no crypt header at all. */
int td_hdr_load(struct td_layer *lower, struct td_crypt_hdr *h, int *which, int *other_bad,
		char *note, size_t notelen, char *err, size_t errlen);

/* Writes h (already sealed) to both copies: first the copy that is not
 * the current valid one (`valid`: 0 = A, 1 = B, -1 = none), flush, then
 * the other, flush — so a crash at any point leaves a valid copy. */
int td_hdr_store(struct td_layer *lower, const struct td_crypt_hdr *h, int valid, char *err,
		 size_t errlen);

/* Reads the raw header area (both copies, TD_HDR_OFFSET_B + slot size
 * bytes) for header-backup, and writes it back for header-restore. */
#define TD_HDR_BACKUP_SIZE (TD_HDR_OFFSET_B + TD_HDR_SLOT_SIZE)
int td_hdr_read_area(struct td_layer *lower, uint8_t *buf /* TD_HDR_BACKUP_SIZE */);
int td_hdr_write_area(struct td_layer *lower, const uint8_t *buf);

#endif
