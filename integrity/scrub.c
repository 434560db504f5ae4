/* Scrub: verify every written block against its table entry. See scrub.h.
 *
 * The table entry a read would use is the cached page when the layer has
 * one (it may be newer than the disk until the next checkpoint), else the
 * page on disk; the scrub reads uncached pages itself instead of through
 * the cache, so it neither evicts the working set nor pins memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/priv.h"
#include "integrity/scrub.h"
#include "tapdisk/core/bufpool.h"

#define PAGES_PER_BATCH 8 /* 1024 blocks: 32 KiB of table, at most 4 MiB of data */

static bool entry_zero(const uint8_t *e)
{
	static const uint8_t zero[TI_ENTRY_LEN];

	return memcmp(e, zero, TI_ENTRY_LEN) == 0;
}

static void note_failure(struct ti_scrub_result *out, uint64_t b)
{
	out->failed++;
	if (out->nlisted < TI_SCRUB_MAX_LISTED)
		out->failed_blocks[out->nlisted++] = b;
	else
		out->truncated = true;
}

/* Verifies blocks [b0, b0 + n) whose entries are in `tab` (entry of b0
 * first), reading the data between the first and last written one. */
static int scrub_batch(struct ti_core *c, const uint8_t *tab, uint64_t b0, uint64_t n,
		       uint8_t *data, struct ti_scrub_result *out)
{
	uint64_t first = n, last = 0, k;
	uint8_t tag[TI_TAG_LEN];
	int rc;

	for (k = 0; k < n; k++) {
		if (entry_zero(tab + k * TI_ENTRY_LEN)) {
			out->unwritten++;
			continue;
		}
		if (first == n)
			first = k;
		last = k;
	}
	if (first == n)
		return 0;
	rc = td_layer_sync_io(ti_lower(c), TD_OP_READ, c->p.data_start + (b0 + first) * TI_BLOCK,
			      data, (last - first + 1) * TI_BLOCK, 0);
	if (rc < 0)
		return rc;
	for (k = first; k <= last; k++) {
		const uint8_t *e = tab + k * TI_ENTRY_LEN;

		if (entry_zero(e))
			continue;
		rc = ti_block_tag(ti_tag_mac(c, -1, b0 + k), c->uuid, b0 + k, ti_le64(e),
				  data + (k - first) * TI_BLOCK, tag);
		if (rc < 0)
			return rc;
		if (td_ct_memeq(tag, e + 8, TI_TAG_LEN))
			out->verified++;
		else
			note_failure(out, b0 + k);
	}
	return 0;
}

/* The table entries of pages [pg, pg + np) into tab: v2 every page through
 * the freshness tree (a page that matches no slot fails every block it
 * covers); v1 the pages on disk, or the cached ones. */
static int read_table(struct ti_priv *p, uint64_t pg, uint64_t np, uint8_t *tab,
		      struct ti_scrub_result *out)
{
	uint64_t total = p->c.p.data_blocks, i, k;
	int rc;

	if (!p->c.tree) {
		rc = td_layer_sync_io(ti_lower(&p->c), TD_OP_READ, p->c.p.tags_off + pg * TI_BLOCK,
				      tab, np * TI_BLOCK, 0);
		for (i = 0; rc == 0 && i < np; i++) {
			struct ti_page *cp = ti_page_find(&p->tc, 0, pg + i);

			if (cp && cp->loaded)
				memcpy(tab + i * TI_BLOCK, cp->data, TI_BLOCK);
		}
		return rc;
	}
	for (i = 0; i < np; i++) {
		int e = 0;
		struct ti_page *cp = ti_page_get_sync(&p->tc, pg + i, &e);

		if (cp) {
			memcpy(tab + i * TI_BLOCK, cp->data, TI_BLOCK);
			continue;
		}
		if (e != -EBADMSG)
			return e;
		memset(tab + i * TI_BLOCK, 0, TI_BLOCK);
		for (k = 0; k < TI_ENTRIES_PER_PAGE && (pg + i) * TI_ENTRIES_PER_PAGE + k < total;
		     k++)
			note_failure(out, (pg + i) * TI_ENTRIES_PER_PAGE + k);
	}
	return 0;
}

int ti_scrub(struct td_layer *l, void (*progress)(uint64_t done, uint64_t total, void *opaque),
	     void *opaque, struct ti_scrub_result *out)
{
	struct ti_priv *p;
	uint8_t *tab = NULL, *data = NULL;
	uint64_t pg, total, pages;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!l || l->drv != &td_drv_integrity)
		return rc;
	p = l->priv;
	total = p->c.p.data_blocks;
	pages = p->c.p.tags_pages;
	out->blocks_total = total;
	rc = -ENOMEM;
	out->failed_blocks = calloc(TI_SCRUB_MAX_LISTED, sizeof(*out->failed_blocks));
	tab = td_buf_get(PAGES_PER_BATCH * TI_BLOCK);
	data = td_buf_get((size_t)PAGES_PER_BATCH * TI_ENTRIES_PER_PAGE * TI_BLOCK);
	if (!out->failed_blocks || !tab || !data)
		goto out;
	rc = 0;
	for (pg = 0; pg < pages && rc == 0; pg += PAGES_PER_BATCH) {
		uint64_t np = pages - pg < PAGES_PER_BATCH ? pages - pg : PAGES_PER_BATCH;
		uint64_t b0 = pg * TI_ENTRIES_PER_PAGE, n;

		rc = read_table(p, pg, np, tab, out);
		if (rc < 0)
			break;
		/* the last page may describe fewer blocks than it has room for */
		n = total - b0 < np * TI_ENTRIES_PER_PAGE ? total - b0 : np * TI_ENTRIES_PER_PAGE;
		rc = scrub_batch(&p->c, tab, b0, n, data, out);
		if (rc == 0 && progress)
			progress(b0 + n, total, opaque);
	}
out:
	td_buf_put(tab, PAGES_PER_BATCH * TI_BLOCK);
	td_buf_put(data, (size_t)PAGES_PER_BATCH * TI_ENTRIES_PER_PAGE * TI_BLOCK);
	if (rc < 0)
		ti_scrub_result_free(out);
	return rc;
}

void ti_scrub_result_free(struct ti_scrub_result *r)
{
	free(r->failed_blocks);
	r->failed_blocks = NULL;
	r->nlisted = 0;
}
