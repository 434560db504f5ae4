/* The rollback anchor in a TPM NV counter (docs/FORMAT.md, "Rollback
 * anchor in a TPM NV counter"): the record in bytes 64..127 of the
 * header's freshness field, and what vdkey anchor and vdkey load do with
 * it, on a session of keymgr/volume.h. */
#ifndef TD_KEYMGR_VANCHOR_H
#define TD_KEYMGR_VANCHOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt/header.h"
#include "keymgr/volume.h"

#define TD_NV_ANCHOR_OFF 64 /* in h->freshness */
#define TD_NV_ANCHOR_LEN 64
#define TD_NV_ANCHOR_MAGIC "TDTPMNV1"
#define TD_NV_ANCHOR_VERSION 1
#define TD_KEYLOG_OP_ANCHOR "anchor"

struct td_nv_anchor {
	bool present;
	uint32_t index;	     /* NV index of the counter */
	uint64_t counter;    /* the value this header was written for */
	uint64_t generation; /* the integrity generation then */
};

/* Reads the record: 0 (a->present false when the 64 bytes are zero), or
 * -EBADMSG with err saying what is wrong. Trust it only once the header
 * MAC was verified with the key. */
int td_nv_anchor_get(const struct td_crypt_hdr *h, struct td_nv_anchor *a, char *err,
		     size_t errlen);
/* Writes a (present) into h; the caller seals and stores h. */
void td_nv_anchor_set(struct td_crypt_hdr *h, const struct td_nv_anchor *a);

/* vdkey anchor --tpm2-nv: v unlocked and writable, with integrity
 * metadata. Defines a counter (at index, 0: the first free one) when the
 * header has no record, else uses the recorded one, and anchors the image
 * at it as it is now (also how a deliberate restore is accepted). *out
 * gets the record written. */
int td_volume_anchor_tpm2(struct td_volume *v, const char *device, uint32_t index,
			  struct td_nv_anchor *out, char *err, size_t errlen);
/* vdkey load: v unlocked. Without a record: 0. With one: -ESTALE when the
 * image was rolled back (header older than the counter, or data older
 * than the header says), err naming the values; else, when v is writable,
 * the header moves to the next counter value, durably, and then the
 * counter is incremented (*bumped set). TPM errors as keymgr/tpm2.h. */
int td_volume_anchor_check(struct td_volume *v, const char *device, bool *bumped, char *err,
			   size_t errlen);

#endif
