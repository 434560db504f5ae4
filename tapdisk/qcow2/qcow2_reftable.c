/* Growing the refcount table, at open time, before serving.
 *
 * The allocator never grows the refcount table while serving (it would
 * need a contiguous relocation under load); instead, when an image is
 * opened for writing, a table too small to count every cluster the image
 * can ever need (all data, all L2 tables, the refcount blocks, and as
 * much again for leaks) is replaced by one that is large enough. QEMU
 * makes a one-cluster table for new images: with 4 KiB clusters that
 * covers only 4 GiB of file.
 *
 * Crash safety, in order, each step made durable before the next:
 *   1. refcount blocks counting the new clusters (new blocks, and counts
 *      added to existing ones: clusters past the old end of the file,
 *      which nothing references, so a crash here only leaks them),
 *      and the new table with the old entries and the new blocks;
 *   2. the header's refcount_table_offset and _clusters, in one 4 KiB
 *      write (the fields are 12 bytes in one sector);
 *   3. the old table's clusters are freed (a crash before this leaks
 *      them). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"
#include "tapdisk/core/util.h"

#define MAX_NEW_BLOCKS 64

/* Adds delta to the refcounts of clusters [first, end) that fall in the
 * block at blk_off (on disk) covering range r; read-modify-write. */
static int adjust_block(struct q2img *im, uint64_t blk_off, uint64_t r, uint64_t first,
			uint64_t end, int delta, uint8_t *buf)
{
	const struct qcow2_hdr *h = &im->h;
	uint64_t lo = r * h->rb_entries, hi = lo + h->rb_entries, c;
	int rc;

	rc = td_read_zeroed(im->fd, buf, (size_t)h->cluster_size, blk_off);
	if (rc < 0)
		return rc;
	for (c = first > lo ? first : lo; c < end && c < hi; c++) {
		uint64_t v = qcow2_rc_get(buf, h->refcount_order, c - lo);

		if ((delta > 0 && v != 0) || (delta < 0 && v != 1))
			return -EUCLEAN; /* not what a fresh or a table cluster holds */
		qcow2_rc_set(buf, h->refcount_order, c - lo, delta > 0 ? 1 : 0);
	}
	return td_write_all(im->fd, buf, (size_t)h->cluster_size, blk_off);
}

int q2_reftable_grow(struct q2 *q, char *why, size_t whylen)
{
	struct q2img *im = q->img[0];
	struct qcow2_hdr *h = &im->h;
	uint64_t cs = h->cluster_size, E = h->rb_entries;
	uint64_t future, want_entries, n, a, end, r, old_off = h->rt_offset;
	uint64_t old_n = h->rt_clusters, blk_at[MAX_NEW_BLOCKS], blk_r[MAX_NEW_BLOCKS];
	unsigned nblk = 0, i;
	uint8_t *table = NULL, *buf = NULL, *hdr = NULL;
	size_t tlen = 0;
	int rc;

	future = 2 * (td_div_up(im->file_size, cs) + td_div_up(h->size, cs) + h->l1_needed) + 64;
	want_entries = td_div_up(future, E);
	if (want_entries <= h->rt_entries)
		return 0;
	n = td_div_up(want_entries * 8, cs);
	if (n * cs > QCOW2_MAX_REFTABLE_BYTES)
		n = QCOW2_MAX_REFTABLE_BYTES / cs;
	if (n <= old_n)
		return 0;
	/* the new table at the end of the file, then any refcount blocks the
	 * ranges it reaches lack (a block placed there may reach a new range) */
	a = td_div_up(im->file_size, cs);
	end = a + n;
	for (r = a / E; r <= (end - 1) / E; r++) {
		uint64_t ent = r < h->rt_entries ? qcow2_be64(q->rt + 8 * r) : 0;

		if (ent)
			continue;
		if (nblk == MAX_NEW_BLOCKS) {
			snprintf(why, whylen, "refcount table growth needs too many blocks");
			return -E2BIG;
		}
		blk_r[nblk] = r;
		blk_at[nblk++] = end++;
	}
	if (n * (cs / 8) <= (end - 1) / E) {
		snprintf(why, whylen, "refcount table growth does not fit its own limit");
		return -E2BIG;
	}
	rc = -ENOMEM;
	tlen = (size_t)(n * cs);
	table = td_buf_get(tlen);
	buf = td_buf_get((size_t)cs);
	hdr = td_buf_get(4096);
	if (!table || !buf || !hdr)
		goto out;
	memset(table, 0, tlen);
	memcpy(table, q->rt, q->rt_len);
	/* 1. blocks and the new table */
	for (i = 0; i < nblk; i++) {
		uint64_t lo = blk_r[i] * E, c;

		memset(buf, 0, (size_t)cs);
		for (c = a; c < end; c++)
			if (c >= lo && c < lo + E)
				qcow2_rc_set(buf, h->refcount_order, c - lo, 1);
		rc = td_write_all(im->fd, buf, (size_t)cs, blk_at[i] * cs);
		if (rc < 0)
			goto out;
		qcow2_put_be64(table + 8 * blk_r[i], blk_at[i] * cs);
	}
	for (r = a / E; r <= (end - 1) / E; r++) {
		uint64_t ent = r < h->rt_entries ? qcow2_be64(q->rt + 8 * r) : 0;

		if (ent && (rc = adjust_block(im, ent, r, a, end, 1, buf)) < 0)
			goto out;
	}
	rc = td_write_all(im->fd, table, tlen, a * cs);
	if (rc == 0 && fdatasync(im->fd) < 0)
		rc = -errno;
	if (rc < 0)
		goto out;
	/* 2. the header points at it */
	rc = td_read_zeroed(im->fd, hdr, 4096, 0);
	if (rc < 0)
		goto out;
	qcow2_put_be64(hdr + 48, a * cs);
	qcow2_put_be32(hdr + 56, (uint32_t)n);
	rc = td_write_all(im->fd, hdr, 4096, 0);
	if (rc == 0 && fdatasync(im->fd) < 0)
		rc = -errno;
	if (rc < 0)
		goto out;
	td_buf_put(q->rt, q->rt_len);
	q->rt = table;
	q->rt_len = tlen;
	table = NULL;
	h->rt_offset = a * cs;
	h->rt_clusters = (uint32_t)n;
	h->rt_entries = n * cs / 8;
	im->file_size = end * cs;
	/* 3. free the old table (a failure here only leaks it) */
	for (r = (old_off / cs) / E; r <= (old_off / cs + old_n - 1) / E; r++) {
		uint64_t ent = qcow2_be64(q->rt + 8 * r);

		if (!ent ||
		    adjust_block(im, ent, r, old_off / cs, old_off / cs + old_n, -1, buf) < 0)
			td_warn("qcow2: '%s': the old refcount table leaks (qemu-img check -r "
				"leaks repairs that)",
				im->path);
	}
	if (fdatasync(im->fd) < 0)
		td_warn("qcow2: '%s': fdatasync: %m", im->path);
	td_info("qcow2: '%s': refcount table grown from %llu to %llu clusters", im->path,
		(unsigned long long)old_n, (unsigned long long)n);
	rc = 0;
out:
	if (rc < 0)
		snprintf(why, whylen, "cannot grow the refcount table: %s", strerror(-rc));
	if (table)
		td_buf_put(table, tlen);
	if (buf)
		td_buf_put(buf, (size_t)cs);
	if (hdr)
		td_buf_put(hdr, 4096);
	return rc;
}
