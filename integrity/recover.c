/* Open-time recovery: replay the current epoch of the MAC journal.
 *
 * The tag table on disk reflects the last checkpoint; every write since
 * then has a durable record (block, seq, tag) in this epoch's journal,
 * written before its data. Every journal block must sit at the position
 * its index names (a copied or moved block refuses the open). The newest
 * flush point (fpoint.c) says which of those writes are known to be on
 * disk. For each block named in the journal the candidates are its
 * records, newest first: the first that verifies becomes the table entry;
 * a zero-range record newer than the candidate at hand always "verifies"
 * (such blocks read as zeros whatever the data holds); a record the flush
 * point claims ends the search even if it does not verify — it becomes
 * the table entry, so the block reads as EIO and never as an older
 * version. Only when no record is claimed does the table entry (the
 * pre-epoch version) stay: it verifies if none of the writes landed, and
 * fails if one was torn. Then a checkpoint starts a fresh epoch. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/integ.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"

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

/* What recovery made of the blocks named in the journal. */
struct outcome {
	uint64_t missing;    /* newest flushed write not on disk: EIO */
	uint64_t reverted;   /* back at the pre-epoch version (nothing flushed) */
	uint64_t unresolved; /* neither: EIO */
};

/* Whether block b's table entry (its pre-epoch version) describes data. */
static bool entry_matches(struct td_layer *l, uint64_t b, const uint8_t *data)
{
	static const uint8_t zero[TI_ENTRY_LEN];
	struct ti_priv *p = l->priv;
	uint8_t tag[TI_TAG_LEN];
	int err = 0;
	struct ti_page *pg = ti_page_get_sync(l, b / TI_ENTRIES_PER_PAGE, &err);
	const uint8_t *e;

	if (!pg)
		return false;
	e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;
	if (memcmp(e, zero, TI_ENTRY_LEN) == 0)
		return true; /* reads as zeros */
	return ti_block_tag(p->mac_loop, p->uuid, b, ti_le64(e), data, tag) == 0 &&
	       td_ct_memeq(tag, e + 8, TI_TAG_LEN);
}

/* Resolves one block named by point records recs[0..n) (same block,
 * newest first) and by zero ranges; fp: the flush point, or NULL. */
static int resolve(struct td_layer *l, const struct ti_rec *recs, size_t n, uint64_t zseq,
		   const struct ti_fpoint *fp, uint8_t *buf, struct outcome *out)
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
		if (fp && ti_fpoint_has(fp, recs[i].seq)) {
			/* its newest write known to be on disk is not: torn by a
			 * later write, corrupted, or older data put back. Nothing
			 * older may be accepted; this entry makes it read as EIO. */
			if (out->missing++ < 16)
				td_err(
				    "integrity: block %llu does not hold its newest flushed write "
				    "(sequence %llu): it reads as an integrity error",
				    (unsigned long long)b, (unsigned long long)recs[i].seq);
			return set_entry(l, b, recs[i].seq, recs[i].tag);
		}
	}
	if (zseq)
		return set_entry(l, b, 0, NULL);
	/* none of this epoch's writes of the block was flushed and none is on
	 * disk: the table entry (the version from before the epoch) stands,
	 * and verifies (the writes never landed) or fails (one was torn) */
	if (entry_matches(l, b, buf))
		out->reverted++;
	else
		out->unresolved++;
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
	uint64_t maxseq = 0;
	struct outcome out = {0};
	uint8_t *buf = NULL;
	uint32_t k, gap = UINT32_MAX, lastvalid = 0, fp_at = UINT32_MAX;
	struct ti_fpoint *fp = NULL, *fp_read = NULL;
	struct ti_jinfo info;
	int rc = 0, n;
	const uint32_t chunk = 256;
	bool any = false;

	buf = td_buf_get((size_t)chunk * TI_BLOCK);
	fp = malloc(sizeof(*fp));
	fp_read = malloc(sizeof(*fp_read));
	if (!buf || !fp || !fp_read) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
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
			n = ti_jblock_decode(buf + (size_t)q * TI_BLOCK, p->epoch, k + q, p->uuid,
					     p->mac_loop, blk, fp_read, &info);
			if (n == -TI_EMISPLACED) {
				/* docs/FORMAT.md "Index check": no crash does this */
				snprintf(
				    err, errlen,
				    "the integrity journal was tampered with: the block at "
				    "position %u of generation %llu carries index %llu (a journal "
				    "block was copied or moved); refusing to open",
				    k + q, (unsigned long long)p->epoch,
				    (unsigned long long)info.index);
				rc = -EBADMSG;
				goto out;
			}
			if (n < 0) {
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
			/* the newest flush point (v2: before the first hole, like
			 * the records recovery keeps) */
			if (info.kind == TI_JB_FLUSH && (!p->tree || gap == UINT32_MAX)) {
				struct ti_fpoint *t = fp;

				fp = fp_read;
				fp_read = t;
				fp_at = k + q;
			}
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
	if (fp_at != UINT32_MAX && fp->below > p->next_seq)
		p->next_seq = fp->below; /* never reuse a number the flush point names */
	p->jrelease = p->jpos;
	/* a journal that holds valid blocks is closed by a checkpoint even if
	 * every record was dropped: new records must not land after a hole */
	if (!any)
		goto out;
	if (fp_at != UINT32_MAX)
		td_info("integrity: replaying %zu journal records and %zu zeroed ranges of epoch "
			"%llu; flush point at journal block %u",
			nrec, nz, (unsigned long long)p->epoch, fp_at);
	else
		td_info("integrity: replaying %zu journal records and %zu zeroed ranges of epoch "
			"%llu; no flush point",
			nrec, nz, (unsigned long long)p->epoch);
	/* zero ranges first, then point records override where newer */
	for (i = 0; i < nz && !rc; i++)
		rc = apply_zero_range(l, zr[i].block, zr[i].count);
	if (nrec) /* recs is NULL when the journal held only zero ranges */
		qsort(recs, nrec, sizeof(*recs), cmp_rec);
	for (i = 0; i < nrec && !rc; i = j) {
		for (j = i + 1; j < nrec && recs[j].block == recs[i].block; j++)
			;
		rc = resolve(l, recs + i, j - i, zero_seq_for(zr, nz, recs[i].block),
			     fp_at != UINT32_MAX ? fp : NULL, buf, &out);
	}
	if (rc < 0) {
		snprintf(err, errlen, "integrity journal replay failed: %s", strerror(-rc));
		goto out;
	}
	if (out.missing)
		td_err("integrity: %llu block(s) do not hold their newest flushed write (a torn "
		       "write over it, corruption, or older data put back); they read as integrity "
		       "errors (EIO)",
		       (unsigned long long)out.missing);
	if (out.unresolved)
		td_warn(
		    "integrity: %llu block(s) named in the journal hold neither a version "
		    "written in generation %llu nor the one from before it (torn or corrupted); "
		    "they read as integrity errors (EIO)",
		    (unsigned long long)out.unresolved, (unsigned long long)p->epoch);
	if (out.reverted)
		td_info("integrity: %llu block(s) are back at their version from before generation "
			"%llu: their writes since were not flushed and never reached the disk",
			(unsigned long long)out.reverted, (unsigned long long)p->epoch);
	rc = ti_ckpt_sync(l);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the recovered integrity metadata: %s",
			 strerror(-rc));
out:
	free(recs);
	free(zr);
	free(fp);
	free(fp_read);
	if (buf)
		td_buf_put(buf, (size_t)chunk * TI_BLOCK);
	return rc;
}
