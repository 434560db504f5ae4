#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/hdrio.h"
#include "tapdisk/core/bufpool.h"

int td_hdr_load(struct td_layer *lower, struct td_crypt_hdr *h, int *which, int *other_bad,
		char *note, size_t notelen, char *err, size_t errlen)
{
	uint8_t *a = NULL, *b = NULL;
	int rc, ra, rb;

	note[0] = 0;
	if (lower->size < TD_HDR_AREA_MIN + TD_BLOCK_SIZE) {
		snprintf(err, errlen, "the image (%llu bytes) is too small to hold a crypt header",
			 (unsigned long long)lower->size);
		return -ENOMSG;
	}
	a = td_buf_get(TD_HDR_COPY_SIZE);
	b = td_buf_get(TD_HDR_COPY_SIZE);
	if (!a || !b) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ra = td_layer_sync_io(lower, TD_OP_READ, TD_HDR_OFFSET_A, a, TD_HDR_COPY_SIZE, 0);
	rb = td_layer_sync_io(lower, TD_OP_READ, TD_HDR_OFFSET_B, b, TD_HDR_COPY_SIZE, 0);
	if (ra < 0 && rb < 0) {
		rc = ra;
		snprintf(err, errlen, "cannot read the crypt header: %s", strerror(-ra));
		goto out;
	}
	rc = td_hdr_pick(ra < 0 ? NULL : a, rb < 0 ? NULL : b, TD_HDR_COPY_SIZE, h, which,
			 other_bad, note, notelen);
	if (rc < 0) {
		if (rc == -ENOMSG)
			snprintf(err, errlen,
				 "no crypt header on this image (format it with 'vdkey "
				 "format')");
		else
			snprintf(err, errlen, "crypt header is corrupt in both copies: %s", note);
		note[0] = 0;
	}
out:
	td_buf_put(a, TD_HDR_COPY_SIZE);
	td_buf_put(b, TD_HDR_COPY_SIZE);
	return rc;
}

int td_hdr_store(struct td_layer *lower, const struct td_crypt_hdr *h, int valid, char *err,
		 size_t errlen)
{
	uint8_t *buf = td_buf_get(TD_HDR_COPY_SIZE);
	uint64_t first = valid == 1 ? TD_HDR_OFFSET_A : TD_HDR_OFFSET_B;
	uint64_t second = valid == 1 ? TD_HDR_OFFSET_B : TD_HDR_OFFSET_A;
	int rc;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = td_hdr_encode(h, buf);
	if (rc < 0) {
		snprintf(err, errlen, "internal error: header does not encode");
		goto out;
	}
	rc = td_layer_sync_io(lower, TD_OP_WRITE, first, buf, TD_HDR_COPY_SIZE, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_WRITE, second, buf, TD_HDR_COPY_SIZE, 0);
	if (!rc)
		rc = td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the crypt header: %s", strerror(-rc));
out:
	td_buf_put(buf, TD_HDR_COPY_SIZE);
	return rc;
}

int td_hdr_read_area(struct td_layer *lower, uint8_t *buf)
{
	return td_layer_sync_io(lower, TD_OP_READ, 0, buf, TD_HDR_BACKUP_SIZE, 0);
}

int td_hdr_write_area(struct td_layer *lower, const uint8_t *buf)
{
	int rc = td_layer_sync_io(lower, TD_OP_WRITE, 0, (void *)buf, TD_HDR_BACKUP_SIZE, 0);

	return rc ? rc : td_layer_sync_io(lower, TD_OP_FLUSH, 0, NULL, 0, 0);
}
