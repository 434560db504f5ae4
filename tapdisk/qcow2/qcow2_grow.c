/* Growing the virtual size of the top image (tap-ctl resize), on an idle
 * chain, synchronously (docs/FORMAT-qcow2.md "Growing").
 *
 * Crash safety, each step durable before the next:
 *   1. the L1 entries the larger size needs, past l1_size, are zeroed in
 *      the clusters the L1 table already occupies (no reader of the old
 *      header looks at them);
 *   2. the header's size and l1_size, in one 4 KiB write (bytes 24-39,
 *      one sector): the commit point. Before it the image has its old
 *      size, after it the new one; the new range is unallocated and reads
 *      as zeros.
 * An L1 table that would need more clusters (relocation) is refused: with
 * 64 KiB clusters one L1 cluster covers 4 TiB. The refcount table is
 * sized for the new virtual size at the next writable open
 * (qcow2_reftable.c), which the VBD does right after the grow. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/qcow2/qcow2_int.h"

int q2_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	struct q2 *q = l->priv;
	struct q2img *im = q->img[0];
	struct qcow2_hdr *h = &im->h;
	uint64_t cs = h->cluster_size, need, l1_room, new_len;
	uint8_t *hdr = NULL, *l1 = NULL, *zero = NULL;
	uint32_t i;
	int rc;

	if (new_size <= l->size)
		return 0;
	if (!q->writable) {
		snprintf(err, errlen, "qcow2: '%s' is open read-only: cannot grow it", im->path);
		return -EROFS;
	}
	if (new_size > QCOW2_MAX_VIRTUAL_SIZE) {
		snprintf(err, errlen, "qcow2: %llu bytes is beyond the largest virtual size",
			 (unsigned long long)new_size);
		return -EFBIG;
	}
	for (i = 1; i < q->nimg; i++)
		if (q->img[i]->vsize > im->vsize) {
			/* the grown range would show the backing file's data */
			snprintf(err, errlen,
				 "qcow2: '%s' is larger than its overlay '%s': growing the overlay "
				 "would expose the backing file's data; not supported online",
				 q->img[i]->path, im->path);
			return -ENOTSUP;
		}
	need = ((new_size - 1) >> (h->cluster_bits + h->l2_bits)) + 1;
	l1_room = h->l1_size ? td_div_up((uint64_t)h->l1_size * 8, cs) * cs / 8 : 0;
	if (need > l1_room) {
		snprintf(err, errlen,
			 "qcow2: '%s': %llu bytes need %llu L1 entries, the L1 table has room for "
			 "%llu; moving the L1 table is not supported online (stop the VBD and "
			 "use 'qemu-img resize')",
			 im->path, (unsigned long long)new_size, (unsigned long long)need,
			 (unsigned long long)l1_room);
		return -ENOTSUP;
	}
	rc = -ENOMEM;
	new_len = td_div_up(need * 8, 4096) * 4096;
	hdr = td_buf_get(4096);
	if (new_len > im->l1_len && !(l1 = td_buf_get((size_t)new_len)))
		goto out;
	if (!hdr)
		goto out;
	/* 1. zeros for the L1 entries the new size adds */
	if (need > h->l1_size) {
		size_t zlen = (size_t)(need - h->l1_size) * 8;

		if (!(zero = td_buf_get(zlen)))
			goto out;
		memset(zero, 0, zlen);
		rc = td_write_all(im->fd_buf, zero, zlen, h->l1_offset + (uint64_t)h->l1_size * 8);
		if (rc == 0 && fdatasync(im->fd_buf) < 0)
			rc = -errno;
		td_buf_put(zero, zlen);
		if (rc < 0)
			goto io;
	}
	/* 2. the header: virtual size and L1 size in one sector */
	rc = td_read_zeroed(im->fd, hdr, 4096, 0);
	if (rc < 0)
		goto io;
	qcow2_put_be64(hdr + 24, new_size);
	if (need > h->l1_size)
		qcow2_put_be32(hdr + 36, (uint32_t)need);
	rc = td_write_all(im->fd, hdr, 4096, 0);
	if (rc == 0 && fdatasync(im->fd) < 0)
		rc = -errno;
	if (rc < 0)
		goto io;
	/* the in-memory image follows (the chain is closed next, but stays
	 * consistent) */
	if (l1) {
		memset(l1, 0, (size_t)new_len);
		if (im->l1) {
			memcpy(l1, im->l1, im->l1_len);
			td_buf_put(im->l1, im->l1_len);
		}
		im->l1 = l1;
		im->l1_len = (size_t)new_len;
		l1 = NULL;
	}
	if (need > h->l1_size)
		h->l1_size = (uint32_t)need;
	h->size = new_size;
	h->l1_needed = need;
	im->l1_entries = need;
	im->vsize = new_size;
	l->size = new_size & ~(uint64_t)(TD_BLOCK_SIZE - 1);
	td_info("qcow2: '%s': virtual size grown to %llu bytes", im->path,
		(unsigned long long)new_size);
	rc = 0;
	goto out;
io:
	snprintf(err, errlen, "qcow2: '%s': cannot grow: %s", im->path, strerror(-rc));
out:
	if (hdr)
		td_buf_put(hdr, 4096);
	if (l1)
		td_buf_put(l1, (size_t)new_len);
	return rc;
}
