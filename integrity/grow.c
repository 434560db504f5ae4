/* Online grow of an integrity layer (td_driver.grow; docs/FORMAT.md
 * "Growing"), on an idle, freshly opened layer of a paused VBD.
 *
 * The metadata cannot stay where it is (it starts right after the data
 * area), so a complete copy for the larger data area is written at the
 * place ti_grow_layout picks, past everything the current layout uses:
 *   1. the lower layer grows to hold it;
 *   2. the new region is zeroed (empty journal, no stale superblock);
 *   3. the tag table and the L1 pages are copied as they are (both slots:
 *      page numbers do not change, so every hash stays valid; the new
 *      pages are all zero, which their zero parent entries say without
 *      reading them); the L2 array, padded with zeros to the new size, is
 *      written to the region of epoch e+1; then the superblock of epoch
 *      e+1 with the new root; flush.
 * Nothing the current crypt header points at is written, so a crash
 * before the crypt layer commits its header (with these parameters)
 * leaves the image as it was; after, it is grown. The crypt layer computes
 * the same parameters with ti_grow_layout. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/priv.h"
#include "integrity/super.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"

#define CHUNK (1u << 20)
#define ZERO_CHUNK (32ull << 20)

/* Zeros [off, off + len) of the lower layer: WRITE_ZEROES, or zero
 * buffers where the lower layer has none. */
static int zero_range(struct td_layer *lo, uint64_t off, uint64_t len)
{
	uint8_t *z = NULL;
	int rc = 0;

	while (len && rc == 0) {
		uint64_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;

		rc = z ? -EOPNOTSUPP : td_layer_sync_io(lo, TD_OP_WRITE_ZEROES, off, NULL, n, 0);
		if (rc == -EOPNOTSUPP) {
			if (!z && !(z = td_buf_get(CHUNK)))
				return -ENOMEM;
			memset(z, 0, CHUNK);
			rc = 0;
			for (uint64_t k = 0; k < n && rc == 0; k += CHUNK)
				rc = td_layer_sync_io(lo, TD_OP_WRITE, off + k, z,
						      n - k < CHUNK ? n - k : CHUNK, 0);
		}
		off += n;
		len -= n;
	}
	if (z)
		td_buf_put(z, CHUNK);
	return rc;
}

/* Copies len bytes from src to dst in the lower layer (dst >= src + len:
 * the regions never overlap). dst was zeroed: all-zero chunks (tag pages
 * never written: most of a sparse disk's table) are not written again,
 * which keeps a thin image thin. */
static int copy_range(struct td_layer *lo, uint64_t src, uint64_t dst, uint64_t len)
{
	uint8_t *b = td_buf_get(CHUNK);
	int rc = 0;

	if (!b)
		return -ENOMEM;
	while (len && rc == 0) {
		uint64_t n = len < CHUNK ? len : CHUNK;

		rc = td_layer_sync_io(lo, TD_OP_READ, src, b, n, 0);
		if (rc == 0 && !td_all_zero(b, n))
			rc = td_layer_sync_io(lo, TD_OP_WRITE, dst, b, n, 0);
		src += n;
		dst += n;
		len -= n;
	}
	td_buf_put(b, CHUNK);
	return rc;
}

/* Version 2: only what the tree says is not all zeros (the new region is
 * zero already): for each L1 page with a non-zero L2 entry, both its slots,
 * and, of the slot whose hash is that entry, the tag pages with a non-zero
 * entry, both slots, in runs. An L1 page neither slot of which matches is
 * copied with all its tag pages as they are (the reads it would fail keep
 * failing). A sparse disk's table is read only where it was written. */
static int copy_tree(struct ti_core *c, struct td_layer *lo, const struct ti_params *op,
		     const struct ti_params *np, const uint8_t *l2)
{
	static const uint8_t zero[TI_HASH_LEN];
	uint8_t *b = td_buf_get(2 * TI_BLOCK), h[TI_HASH_LEN];
	int rc = 0;

	if (!b)
		return -ENOMEM;
	for (uint64_t q = 0; rc == 0 && q < op->l1_pages; q++) {
		const uint8_t *want = l2 + q * TI_HASH_LEN, *l1 = NULL;
		uint64_t first = q * TI_HASHES_PER_PAGE, n = op->tags_pages - first, run = 0;

		if (n > TI_HASHES_PER_PAGE)
			n = TI_HASHES_PER_PAGE;
		if (!memcmp(want, zero, TI_HASH_LEN))
			continue; /* an all-zero L1 page: nothing under it */
		rc = td_layer_sync_io(lo, TD_OP_READ, ti_l1_page_off(op, q, 0), b, 2 * TI_BLOCK, 0);
		if (rc == 0)
			rc = td_layer_sync_io(lo, TD_OP_WRITE, ti_l1_page_off(np, q, 0), b,
					      2 * TI_BLOCK, 0);
		for (unsigned s = 0; rc == 0 && s < 2 && !l1; s++)
			if (ti_tree_hash(c->tree_mac, c->uuid, 1, q, b + s * TI_BLOCK, h) == 0 &&
			    td_ct_memeq(h, want, TI_HASH_LEN))
				l1 = b + s * TI_BLOCK;
		/* runs of tag pages (two slots each) to copy */
		for (uint64_t i = 0; rc == 0 && i <= n; i++) {
			bool used =
			    i < n && (!l1 || memcmp(l1 + i * TI_HASH_LEN, zero, TI_HASH_LEN));

			if (used) {
				run++;
				continue;
			}
			if (run)
				rc = copy_range(lo, ti_tag_page_off(op, first + i - run, 0),
						ti_tag_page_off(np, first + i - run, 0),
						2 * run * TI_BLOCK);
			run = 0;
		}
	}
	td_buf_put(b, 2 * TI_BLOCK);
	return rc;
}

int ti_layer_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_core *c = &p->c;
	struct td_layer *lo = ti_lower(c);
	const struct ti_params *op = &c->p;
	struct ti_params np;
	struct ti_super s, ns;
	uint8_t *buf = NULL, *l2 = NULL, *nl2 = NULL;
	size_t nl2_len = 0;
	uint64_t next;
	int rc;

	if (new_size == l->size)
		return 0;
	if (new_size < l->size) {
		snprintf(err, errlen, "integrity: cannot shrink (%llu to %llu bytes)",
			 (unsigned long long)l->size, (unsigned long long)new_size);
		return -EINVAL;
	}
	if (c->ctx->readonly) {
		snprintf(err, errlen, "integrity: the image is open read-only");
		return -EROFS;
	}
	if (c->broken || ti_ckpt_busy(&p->ck)) {
		snprintf(err, errlen, "integrity: the layer is %s; try again after a reopen",
			 c->broken ? "broken" : "busy with a checkpoint");
		return c->broken ? -EIO : -EBUSY;
	}
	/* the journal must be empty: everything in the table, durable */
	if (ti_ckpt_pending(&p->ck) && (rc = ti_ckpt_sync(&p->ck)) < 0) {
		snprintf(err, errlen, "integrity: checkpoint before growing failed: %s",
			 strerror(-rc));
		return rc;
	}
	rc = ti_grow_layout(op, new_size / TI_BLOCK, &np);
	if (rc < 0) {
		snprintf(err, errlen, "integrity: %llu bytes is beyond what the format can protect",
			 (unsigned long long)new_size);
		return rc;
	}
	/* 1. room below */
	rc = td_layer_grow(lo, ti_layout_end(&np), err, errlen);
	if (rc < 0)
		return rc;
	rc = -ENOMEM;
	if (!(buf = td_buf_get(TI_BLOCK)))
		goto out;
	/* the state to carry over, from disk, verified */
	rc = ti_super_load(lo, op, c->uuid, c->mac_loop, buf, &s, err, errlen);
	if (rc < 0)
		goto out;
	if (c->tree) {
		rc = ti_l2_read_verify(lo, op, c->uuid, c->tree_mac, s.epoch, s.root, &l2);
		if (rc <= 0) {
			snprintf(err, errlen, "integrity: the freshness tree does not verify");
			rc = rc < 0 ? rc : -EBADMSG;
			goto out;
		}
	}
	/* 2. a clean region: empty journal, no stale superblock */
	rc = zero_range(lo, np.super_off, ti_layout_end(&np) - np.super_off);
	/* 3. the table and the tree, then the superblock of the next epoch */
	if (rc == 0)
		rc = c->tree ? copy_tree(c, lo, op, &np, l2)
			     : copy_range(lo, op->tags_off, np.tags_off, op->tags_pages * TI_BLOCK);
	memset(&ns, 0, sizeof(ns));
	if (rc == 0 && c->tree) {
		nl2_len = (size_t)np.l2_pages * TI_BLOCK;
		if (rc == 0 && !(nl2 = td_buf_get(nl2_len)))
			rc = -ENOMEM;
		if (rc == 0) {
			memset(nl2, 0, nl2_len);
			memcpy(nl2, l2, (size_t)op->l2_pages * TI_BLOCK);
			rc = ti_tree_root(c->tree_mac, c->uuid, np.l2_pages, nl2, ns.root) < 0
				 ? -EIO
				 : td_layer_sync_io(lo, TD_OP_WRITE,
						    ti_l2_off(&np, (unsigned)((s.epoch + 1) % 2)),
						    nl2, nl2_len, 0);
		}
	}
	if (rc == 0) {
		next = p->j.next_seq > s.seq_base ? p->j.next_seq : s.seq_base;
		ns.version = op->version;
		ns.epoch = s.epoch + 1;
		ns.seq_base = next;
		ti_super_encode(&ns, c->uuid, c->mac_loop, buf);
		rc = td_layer_sync_io(lo, TD_OP_WRITE,
				      np.super_off + (ns.epoch % 2) * (uint64_t)TI_BLOCK, buf,
				      TI_BLOCK, 0);
	}
	if (rc == 0)
		rc = td_layer_sync_io(lo, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc < 0) {
		snprintf(err, errlen, "integrity: cannot write the grown metadata: %s",
			 strerror(-rc));
		goto out;
	}
	td_info("integrity: metadata for %llu blocks written at %llu (generation %llu); the "
		"crypt header commits it",
		(unsigned long long)np.data_blocks, (unsigned long long)np.super_off,
		(unsigned long long)ns.epoch);
	/* the layer is closed next without I/O; its size is the new one */
	l->size = new_size;
	rc = 0;
out:
	if (buf)
		td_buf_put(buf, TI_BLOCK);
	if (nl2)
		td_buf_put(nl2, nl2_len);
	free(l2);
	return rc;
}
