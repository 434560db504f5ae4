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
#include "integrity/priv.h"
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

/* What recovery made of the blocks named in the journal. */
struct outcome {
	uint64_t missing;    /* newest flushed write not on disk: EIO */
	uint64_t reverted;   /* back at the pre-epoch version (nothing flushed) */
	uint64_t unresolved; /* neither: EIO */
};

/* Whether block b's table entry (its pre-epoch version) describes data. */
static bool entry_matches(struct ti_priv *p, uint64_t b, const uint8_t *data)
{
	static const uint8_t zero[TI_ENTRY_LEN];
	uint8_t tag[TI_TAG_LEN];
	int err = 0;
	struct ti_page *pg = ti_page_get_sync(&p->tc, b / TI_ENTRIES_PER_PAGE, &err);
	const uint8_t *e;

	if (!pg)
		return false;
	e = pg->data + (b % TI_ENTRIES_PER_PAGE) * TI_ENTRY_LEN;
	if (memcmp(e, zero, TI_ENTRY_LEN) == 0)
		return true; /* reads as zeros */
	return ti_block_tag(ti_tag_mac(&p->c, -1, b), p->c.uuid, b, ti_le64(e), data, tag) == 0 &&
	       td_ct_memeq(tag, e + 8, TI_TAG_LEN);
}

/* Resolves one block named by point records recs[0..n) (same block,
 * newest first) and by zero ranges; fp: the flush point, or NULL. */
static int resolve(struct ti_priv *p, const struct ti_rec *recs, size_t n, uint64_t zseq,
		   const struct ti_fpoint *fp, uint8_t *buf, struct outcome *out)
{
	struct ti_core *c = &p->c;
	uint64_t b = recs[0].block;
	uint8_t tag[TI_TAG_LEN];
	size_t i;
	int rc;

	rc = td_layer_sync_io(ti_lower(c), TD_OP_READ, c->p.data_start + b * TI_BLOCK, buf,
			      TI_BLOCK, 0);
	if (rc < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if (zseq > recs[i].seq)
			return ti_entry_set_sync(&p->tc, b, 0, NULL); /* zeroed after this write */
		rc = ti_block_tag(ti_tag_mac(c, -1, b), c->uuid, b, recs[i].seq, buf, tag);
		if (rc < 0)
			return rc;
		if (td_ct_memeq(tag, recs[i].tag, TI_TAG_LEN))
			return ti_entry_set_sync(&p->tc, b, recs[i].seq, recs[i].tag);
		if (fp && ti_fpoint_has(fp, recs[i].seq)) {
			/* its newest write known to be on disk is not: torn by a
			 * later write, corrupted, or older data put back. Nothing
			 * older may be accepted; this entry makes it read as EIO. */
			if (out->missing++ < 16)
				td_err(
				    "integrity: block %llu does not hold its newest flushed write "
				    "(sequence %llu): it reads as an integrity error",
				    (unsigned long long)b, (unsigned long long)recs[i].seq);
			return ti_entry_set_sync(&p->tc, b, recs[i].seq, recs[i].tag);
		}
	}
	if (zseq)
		return ti_entry_set_sync(&p->tc, b, 0, NULL);
	/* none of this epoch's writes of the block was flushed and none is on
	 * disk: the table entry (the version from before the epoch) stands,
	 * and verifies (the writes never landed) or fails (one was torn) */
	if (entry_matches(p, b, buf))
		out->reverted++;
	else
		out->unresolved++;
	return 0;
}

/* Zeroes the table entries of [b, b+count): whole pages on disk
 * directly, edges through the cache. */
static int apply_zero_range(struct ti_priv *p, uint64_t b, uint64_t count)
{
	struct ti_core *c = &p->c;
	uint64_t end = b + count, i;
	uint64_t pf = (b + TI_ENTRIES_PER_PAGE - 1) / TI_ENTRIES_PER_PAGE;
	uint64_t pl = end / TI_ENTRIES_PER_PAGE;
	int rc = 0;

	if (c->tree) {
		rc = ti_tree_zero_prepare_sync(&p->tc, b, count);
		if (rc == 0)
			ti_tree_zero(&p->tc, b, count);
		return rc;
	}
	if (pf >= pl) {
		for (i = b; i < end && !rc; i++)
			rc = ti_entry_set_sync(&p->tc, i, 0, NULL);
		return rc;
	}
	for (i = b; i < pf * TI_ENTRIES_PER_PAGE && !rc; i++)
		rc = ti_entry_set_sync(&p->tc, i, 0, NULL);
	for (i = pl * TI_ENTRIES_PER_PAGE; i < end && !rc; i++)
		rc = ti_entry_set_sync(&p->tc, i, 0, NULL);
	for (i = pf; i < pl && !rc; i++) {
		struct ti_page *pg = ti_page_find(&p->tc, 0, i);

		if (pg) {
			memset(pg->data, 0, TI_BLOCK);
			ti_page_mark_dirty(&p->tc, pg);
		}
	}
	if (!rc)
		rc =
		    td_layer_sync_io(ti_lower(c), TD_OP_WRITE_ZEROES, c->p.tags_off + pf * TI_BLOCK,
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
static int check_late(struct ti_priv *p, struct ti_rec *recs, size_t *nrec, struct ti_rec *zr,
		      size_t *nz, uint32_t gap, uint8_t *buf, char *err, size_t errlen)
{
	struct ti_core *c = &p->c;
	uint8_t tag[TI_TAG_LEN];
	size_t i, keep = 0, late = 0;
	int rc;

	for (i = 0; i < *nrec; i++) {
		if (recs[i].jidx < gap) {
			recs[keep++] = recs[i];
			continue;
		}
		late++;
		rc = td_layer_sync_io(ti_lower(c), TD_OP_READ,
				      c->p.data_start + recs[i].block * TI_BLOCK, buf, TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read block %llu: %s",
				 (unsigned long long)recs[i].block, strerror(-rc));
			return rc;
		}
		if (ti_block_tag(ti_tag_mac(c, -1, recs[i].block), c->uuid, recs[i].block,
				 recs[i].seq, buf, tag) == 0 &&
		    td_ct_memeq(tag, recs[i].tag, TI_TAG_LEN)) {
			snprintf(
			    err, errlen,
			    "integrity metadata was tampered with: journal block %u of generation "
			    "%llu is missing, but a later write (block %llu, journal block %u) "
			    "reached the disk; refusing to open",
			    gap, (unsigned long long)p->j.epoch, (unsigned long long)recs[i].block,
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
		td_info(
		    "integrity: %zu journal record(s) after the hole at journal block %u belong "
		    "to writes that never reached the disk; dropped",
		    late, gap);
	return 0;
}

/* What the scan of the journal found. */
struct scan {
	struct ti_rec *recs, *zr; /* point records, zero ranges */
	size_t nrec, caprec, nz, capz;
	uint64_t maxseq;
	uint32_t gap;	    /* the first position without a valid block */
	uint32_t lastvalid; /* the last position with one */
	uint32_t fp_at;	    /* where the newest flush point is, or UINT32_MAX */
	struct ti_fpoint *fp, *fp_read;
	bool any; /* a valid block of this epoch */
};

/* Keeps the records of one valid block found at position at. */
static int keep_records(struct ti_priv *p, struct scan *sc, struct ti_rec *blk, int n, uint32_t at)
{
	int i;

	for (i = 0; i < n; i++) {
		bool zero = blk[i].seq & TI_SEQ_ZERO_RANGE;
		struct ti_rec **arr = zero ? &sc->zr : &sc->recs;
		size_t *cnt = zero ? &sc->nz : &sc->nrec;
		size_t *cap = zero ? &sc->capz : &sc->caprec;

		if (blk[i].block >= p->c.p.data_blocks ||
		    (zero && blk[i].count > p->c.p.data_blocks - blk[i].block))
			continue; /* cannot be ours: ignore */
		if (*cnt == *cap) {
			size_t ncap = *cap ? 2 * *cap : 1024;
			struct ti_rec *nr = realloc(*arr, ncap * sizeof(**arr));

			if (!nr)
				return -ENOMEM;
			*arr = nr;
			*cap = ncap;
		}
		blk[i].jidx = at;
		(*arr)[(*cnt)++] = blk[i];
		if ((blk[i].seq & ~TI_SEQ_ZERO_RANGE) > sc->maxseq)
			sc->maxseq = blk[i].seq & ~TI_SEQ_ZERO_RANGE;
	}
	return 0;
}

/* Reads the whole journal region (chunk blocks at a time into buf) and
 * collects the valid blocks of the current epoch. */
static int scan_journal(struct ti_priv *p, struct scan *sc, uint8_t *buf, uint32_t chunk, char *err,
			size_t errlen)
{
	struct ti_core *c = &p->c;
	struct ti_journal *jn = &p->j;
	struct ti_rec blk[TI_RECS_PER_BLOCK];
	struct ti_jinfo info;
	uint32_t k, q;
	int rc, n;

	for (k = 0; k < c->p.journal_blocks; k += chunk) {
		uint32_t cnt = c->p.journal_blocks - k < chunk ? c->p.journal_blocks - k : chunk;

		rc = td_layer_sync_io(ti_lower(c), TD_OP_READ,
				      c->p.journal_off + (uint64_t)k * TI_BLOCK, buf,
				      (uint64_t)cnt * TI_BLOCK, 0);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read the integrity journal: %s",
				 strerror(-rc));
			return rc;
		}
		for (q = 0; q < cnt; q++) {
			n = ti_jblock_decode(buf + (size_t)q * TI_BLOCK, jn->epoch, k + q, c->uuid,
					     c->mac_loop, blk, sc->fp_read, &info);
			if (n == -TI_EMISPLACED) {
				/* docs/FORMAT.md "Index check": no crash does this */
				snprintf(
				    err, errlen,
				    "the integrity journal was tampered with: the block at "
				    "position %u of generation %llu carries index %llu (a journal "
				    "block was copied or moved); refusing to open",
				    k + q, (unsigned long long)jn->epoch,
				    (unsigned long long)info.index);
				return -EBADMSG;
			}
			if (n < 0) {
				/* another epoch, never written, or torn */
				if (sc->gap == UINT32_MAX)
					sc->gap = k + q;
				continue;
			}
			sc->any = true;
			sc->lastvalid = k + q;
			/* this epoch's journal is in use up to here: new records
			 * must not overwrite it before a checkpoint closes it */
			if (k + q + 1 > jn->pos)
				jn->pos = k + q + 1;
			/* the newest flush point (v2: before the first hole, like
			 * the records recovery keeps) */
			if (info.kind == TI_JB_FLUSH && (!c->tree || sc->gap == UINT32_MAX)) {
				struct ti_fpoint *t = sc->fp;

				sc->fp = sc->fp_read;
				sc->fp_read = t;
				sc->fp_at = k + q;
			}
			if (keep_records(p, sc, blk, n, k + q) < 0) {
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
		}
	}
	return 0;
}

/* Resolves every block the journal names, then logs what became of them. */
static int replay(struct ti_priv *p, struct scan *sc, uint8_t *buf, char *err, size_t errlen)
{
	struct outcome out = {0};
	uint64_t epoch = p->j.epoch;
	size_t i, k;
	int rc = 0;

	if (sc->fp_at != UINT32_MAX)
		td_info("integrity: replaying %zu journal records and %zu zeroed ranges of epoch "
			"%llu; flush point at journal block %u",
			sc->nrec, sc->nz, (unsigned long long)epoch, sc->fp_at);
	else
		td_info("integrity: replaying %zu journal records and %zu zeroed ranges of epoch "
			"%llu; no flush point",
			sc->nrec, sc->nz, (unsigned long long)epoch);
	/* zero ranges first, then point records override where newer */
	for (i = 0; i < sc->nz && !rc; i++)
		rc = apply_zero_range(p, sc->zr[i].block, sc->zr[i].count);
	if (sc->nrec) /* recs is NULL when the journal held only zero ranges */
		qsort(sc->recs, sc->nrec, sizeof(*sc->recs), cmp_rec);
	for (i = 0; i < sc->nrec && !rc; i = k) {
		for (k = i + 1; k < sc->nrec && sc->recs[k].block == sc->recs[i].block; k++)
			;
		rc =
		    resolve(p, sc->recs + i, k - i, zero_seq_for(sc->zr, sc->nz, sc->recs[i].block),
			    sc->fp_at != UINT32_MAX ? sc->fp : NULL, buf, &out);
	}
	if (rc < 0) {
		snprintf(err, errlen, "integrity journal replay failed: %s", strerror(-rc));
		return rc;
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
		    (unsigned long long)out.unresolved, (unsigned long long)epoch);
	if (out.reverted)
		td_info("integrity: %llu block(s) are back at their version from before generation "
			"%llu: their writes since were not flushed and never reached the disk",
			(unsigned long long)out.reverted, (unsigned long long)epoch);
	return 0;
}

int ti_recover(struct ti_priv *p, char *err, size_t errlen)
{
	struct ti_journal *jn = &p->j;
	const uint32_t chunk = 256;
	struct scan sc = {.gap = UINT32_MAX, .fp_at = UINT32_MAX};
	uint8_t *buf = td_buf_get((size_t)chunk * TI_BLOCK);
	int rc = -ENOMEM;

	sc.fp = malloc(sizeof(*sc.fp));
	sc.fp_read = malloc(sizeof(*sc.fp_read));
	if (!buf || !sc.fp || !sc.fp_read) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = scan_journal(p, &sc, buf, chunk, err, errlen);
	if (rc < 0)
		goto out;
	if (!sc.any || sc.gap > sc.lastvalid)
		sc.gap = UINT32_MAX; /* no hole before the last valid block */
	if (p->c.tree && sc.gap != UINT32_MAX) {
		rc = check_late(p, sc.recs, &sc.nrec, sc.zr, &sc.nz, sc.gap, buf, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (sc.maxseq + 1 > jn->next_seq)
		jn->next_seq = sc.maxseq + 1;
	if (sc.fp_at != UINT32_MAX && sc.fp->below > jn->next_seq)
		jn->next_seq = sc.fp->below; /* never reuse a number the flush point names */
	jn->release = jn->pos;
	/* a journal that holds valid blocks is closed by a checkpoint even if
	 * every record was dropped: new records must not land after a hole */
	if (!sc.any)
		goto out;
	rc = replay(p, &sc, buf, err, errlen);
	if (rc < 0)
		goto out;
	rc = ti_ckpt_sync(&p->ck);
	if (rc < 0)
		snprintf(err, errlen, "cannot write the recovered integrity metadata: %s",
			 strerror(-rc));
out:
	free(sc.recs);
	free(sc.zr);
	free(sc.fp);
	free(sc.fp_read);
	if (buf)
		td_buf_put(buf, (size_t)chunk * TI_BLOCK);
	return rc;
}
