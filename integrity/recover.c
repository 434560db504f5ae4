/* Open-time recovery: replay the current epoch of the MAC journal.
 *
 * The tag table on disk reflects the last checkpoint; every write since
 * then has a durable record (block, seq, tag) in this epoch's journal,
 * written before its data. For each block named there, the candidates are
 * its records (newest first) and the table entry; the block's data is
 * read and the newest candidate that verifies becomes the table entry. A
 * zero-range record always "verifies" (such blocks read as zeros whatever
 * the data holds). A block no candidate verifies keeps its table entry,
 * so it reads as an integrity error — a torn or corrupted block, never
 * silently accepted. Then a checkpoint starts a fresh epoch. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/cipher.h"
#include "integrity/integ.h"
#include "tapdisk/bufpool.h"
#include "tapdisk/log.h"

static int cmp_rec(const void *a, const void *b)
{
	const struct ti_rec *x = a, *y = b;
	uint64_t sx = x->seq & ~TI_SEQ_ZERO_RANGE, sy = y->seq & ~TI_SEQ_ZERO_RANGE;

	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	if (sx != sy)
		return sx > sy ? -1 : 1; /* newest first */
	return 0;
}

/* The newest zero-range record covering block b, or 0. */
static uint64_t zero_seq_for(const struct ti_rec *zr, size_t nz, uint64_t b)
{
	uint64_t best = 0;
	size_t i;

	for (i = 0; i < nz; i++)
		if (b >= zr[i].block && b - zr[i].block < zr[i].count &&
		    (zr[i].seq & ~TI_SEQ_ZERO_RANGE) > best)
			best = zr[i].seq & ~TI_SEQ_ZERO_RANGE;
	return best;
}

static int set_entry(struct td_layer *l, uint64_t b, uint64_t seq, const uint8_t *tag)
{
	struct ti_priv *p = l->priv;
	int err = 0;
	struct ti_page *pg = ti_page_get_sync(l, b / TI_ENTRIES_PER_PAGE, &err);
	uint8_t *e;

	if (!pg)
		return err;
	e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;
	ti_put64(e, seq);
	if (tag)
		memcpy(e + 8, tag, TI_TAG_LEN);
	else
		memset(e + 8, 0, TI_TAG_LEN);
	ti_page_mark_dirty(p, pg);
	return 0;
}

/* Resolves one block named by point records recs[0..n) (same block,
 * newest first) and by zero ranges. */
static int resolve(struct td_layer *l, const struct ti_rec *recs, size_t n, uint64_t zseq,
		   uint8_t *buf, uint64_t *unresolved)
{
	struct ti_priv *p = l->priv;
	uint64_t b = recs[0].block;
	uint8_t tag[TI_TAG_LEN];
	size_t i;
	int rc;

	rc = td_layer_sync_io(l->below, TD_OP_READ, p->p.data_start + b * TI_BLOCK, buf, TI_BLOCK,
			      0);
	if (rc < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if (zseq > recs[i].seq)
			return set_entry(l, b, 0, NULL); /* zeroed after this write */
		rc = ti_block_tag(p->mac_loop, p->uuid, b, recs[i].seq, buf, tag);
		if (rc < 0)
			return rc;
		if (td_ct_memeq(tag, recs[i].tag, TI_TAG_LEN))
			return set_entry(l, b, recs[i].seq, recs[i].tag);
	}
	if (zseq)
		return set_entry(l, b, 0, NULL);
	/* none of the new versions is on disk: the table entry (the old
	 * version) stands, and verifies or fails on read as it should */
	(*unresolved)++;
	return 0;
}

/* Zeroes the table entries of [b, b+count): whole pages on disk
 * directly, edges through the cache. */
static int apply_zero_range(struct td_layer *l, uint64_t b, uint64_t count)
{
	struct ti_priv *p = l->priv;
	uint64_t end = b + count, i;
	uint64_t pf = (b + TI_ENTRIES_PER_PAGE - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t pl = end / TI_ENTRIES_PER_PAGE;
	int rc = 0;

	if (p->tree) {
		rc = ti_tree_zero_prepare_sync(l, b, count);
		if (rc == 0)
			ti_tree_zero(l, b, count);
		return rc;
	}
	if (pf >= pl) {
		for (i = b; i < end && !rc; i++)
			rc = set_entry(l, i, 0, NULL);
		return rc;
	}
	for (i = b; i < pf * TI_ENTRIES_PER_PAGE && !rc; i++)
		rc = set_entry(l, i, 0, NULL);
	for (i = pl * TI_ENTRIES_PER_PAGE; i < end && !rc; i++)
		rc = set_entry(l, i, 0, NULL);
	for (i = pf; i < pl && !rc; i++) {
		struct ti_page *pg = ti_page_find(p, i);

		if (pg) {
			memset(pg->data, 0, TI_BLOCK);
			ti_page_mark_dirty(p, pg);
		}
	}
	if (!rc)
		rc = td_layer_sync_io(l->below, TD_OP_WRITE_ZEROES, p->p.tags_off + pf * TI_BLOCK,
				      NULL, (pl - pf) * TI_BLOCK, TD_REQ_NO_UNMAP);
	return rc;
}

/* v2: journal blocks after a hole. A write's data is issued only when
 * every journal block before its own is durable (journal.c), so after a
 * crash the records past the first missing block describe writes whose
 * data never went out: they are dropped. If one of them does verify
 * against the data on disk, the missing block was removed afterwards —
 * the way to hide a replayed block inside one epoch — and the open is
 * refused. */
static int check_late(struct td_layer *l, struct ti_rec *recs, size_t *nrec, struct ti_rec *zr,
		      size_t *nz, uint32_t gap, uint8_t *buf, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	uint8_t tag[TI_TAG_LEN];
	size_t i, keep = 0, late = 0;
	int rc;

	for (i = 0; i < *nrec; i++) {
		if (recs[i].jidx < gap) {
			recs[keep++] = recs[i];
			continue;
		}
		late++;
		rc = td_layer_sync_io(l->below, TD_OP_READ,
				      p->p.data_start + recs[i].block * TI_BLOCK, buf, TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read block %llu: %s",
				 (unsigned long long)recs[i].block, strerror(-rc));
			return rc;
		}
		if (ti_block_tag(p->mac_loop, p->uuid, recs[i].block, recs[i].seq, buf, tag) == 0 &&
		    td_ct_memeq(tag, recs[i].tag, TI_TAG_LEN)) {
			snprintf(err, errlen,
				 "integrity metadata was tampered with: journal block %u of generation "
				 "%llu is missing, but a later write (block %llu, journal block %u) "
				 "reached the disk; refusing to open",
				 gap, (unsigned long long)p->epoch, (unsigned long long)recs[i].block,
				 recs[i].jidx);
			return -EBADMSG;
		}
	}
	*nrec = keep;
	for (i = 0, keep = 0; i < *nz; i++)
		if (zr[i].jidx < gap)
			zr[keep++] = zr[i];
	*nz = keep;
	if (late)
		td_info("integrity: %zu journal record(s) after the hole at journal block %u belong "
			"to writes that never reached the disk; dropped",
			late, gap);
	return 0;
}

int ti_recover(struct td_layer *l, char *err, size_t errlen)
{
	struct ti_priv *p = l->priv;
	struct ti_rec *recs = NULL, *zr = NULL, blk[TI_RECS_PER_BLOCK];
	size_t nrec = 0, caprec = 0, nz = 0, capz = 0, i, j;
	uint64_t maxseq = 0, unresolved = 0;
	uint8_t *buf = NULL;
	uint32_t k, gap = UINT32_MAX, lastvalid = 0;
	int rc = 0, n;
	const uint32_t chunk = 256;
	bool any = false;

	buf = td_buf_get((size_t)chunk * TI_BLOCK);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (k = 0; k < p->p.journal_blocks && !rc; k += chunk) {
		uint32_t cnt = p->p.journal_blocks - k < chunk ? p->p.journal_blocks - k : chunk;
		uint32_t q;

		rc = td_layer_sync_io(l->below, TD_OP_READ, p->p.journal_off + (uint64_t)k * TI_BLOCK,
				      buf, (uint64_t)cnt * TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read the integrity journal: %s", strerror(-rc));
			break;
		}
		for (q = 0; q < cnt; q++) {
			n = ti_jblock_decode(buf + (size_t)q * TI_BLOCK, p->epoch, p->uuid,
					     p->mac_loop, blk);
			if (n <= 0) {
				/* another epoch, never written, or torn */
				if (gap == UINT32_MAX)
					gap = k + q;
				continue;
			}
			any = true;
			lastvalid = k + q;
			/* this epoch's journal is in use up to here: new records
			 * must not overwrite it before a checkpoint closes it */
			if (k + q + 1 > p->jpos)
				p->jpos = k + q + 1;
			for (j = 0; j < (size_t)n; j++) {
				struct ti_rec **arr = (blk[j].seq & TI_SEQ_ZERO_RANGE) ? &zr : &recs;
				size_t *cnt_p = (blk[j].seq & TI_SEQ_ZERO_RANGE) ? &nz : &nrec;
				size_t *cap_p = (blk[j].seq & TI_SEQ_ZERO_RANGE) ? &capz : &caprec;

				if (blk[j].block >= p->p.data_blocks ||
				    ((blk[j].seq & TI_SEQ_ZERO_RANGE) &&
				     blk[j].count > p->p.data_blocks - blk[j].block))
					continue; /* cannot be ours: ignore */
				if (*cnt_p == *cap_p) {
					size_t cap = *cap_p ? 2 * *cap_p : 1024;
					struct ti_rec *nr = realloc(*arr, cap * sizeof(**arr));

					if (!nr) {
						rc = -ENOMEM;
						snprintf(err, errlen, "out of memory");
						goto out;
					}
					*arr = nr;
					*cap_p = cap;
				}
				blk[j].jidx = k + q;
				(*arr)[(*cnt_p)++] = blk[j];
				if ((blk[j].seq & ~TI_SEQ_ZERO_RANGE) > maxseq)
					maxseq = blk[j].seq & ~TI_SEQ_ZERO_RANGE;
			}
		}
	}
	if (rc < 0)
		goto out;
	if (!any || gap > lastvalid)
		gap = UINT32_MAX; /* no hole before the last valid block */
	if (p->tree && gap != UINT32_MAX) {
		rc = check_late(l, recs, &nrec, zr, &nz, gap, buf, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (maxseq + 1 > p->next_seq)
		p->next_seq = maxseq + 1;
	p->jrelease = p->jpos;
	/* a journal that holds valid blocks is closed by a checkpoint even if
	 * every record was dropped: new records must not land after a hole */
	if (!any)
		goto out;
	td_info("integrity: replaying %zu journal records and %zu zeroed ranges of epoch %llu",
		nrec, nz, (unsigned long long)p->epoch);
	/* zero ranges first, then point records override where newer */
	for (i = 0; i < nz && !rc; i++)
		rc = apply_zero_range(l, zr[i].block, zr[i].count);
	if (nrec) /* recs is NULL when the journal held only zero ranges */
		qsort(recs, nrec, sizeof(*recs), cmp_rec);
	for (i = 0; i < nrec && !rc; i = j) {
		for (j = i + 1; j < nrec && recs[j].block == recs[i].block; j++)
			;
		rc = resolve(l, recs + i, j - i, zero_seq_for(zr, nz, recs[i].block), buf,
			     &unresolved);
	}
	if (rc < 0) {
		snprintf(err, errlen, "integrity journal replay failed: %s", strerror(-rc));
		goto out;
	}
	if (unresolved)
		td_warn("integrity: %llu block(s) named in the journal hold neither their old nor "
			"their new contents (torn or corrupted); they will read as integrity errors",
			(unsigned long long)unresolved);
	rc = ti_ckpt_sync(l);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the recovered integrity metadata: %s",
			 strerror(-rc));
out:
	free(recs);
	free(zr);
	td_buf_put(buf, (size_t)chunk * TI_BLOCK);
	return rc;
}
