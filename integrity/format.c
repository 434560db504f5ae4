/* On-disk codecs of the integrity layer: see format.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/format.h"
#include "tapdisk/core/util.h"

static const uint8_t SUPER_MAGIC[8] = {'T', 'D', 'J', 'S', 'U', 'P', 'E', 'R'};
static const uint8_t JBLOCK_MAGIC[8] = {'T', 'D', 'J', 'R', 'N', 'L', '0', '1'};

static void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The metadata from meta on (docs/FORMAT.md: right after the data area,
 * or further on after an online grow, "Growing"). */
static void fill_meta_at(struct ti_params *p, uint64_t meta)
{
	p->super_off = meta;
	p->journal_off = meta + 2 * TI_BLOCK;
	p->tags_off = p->journal_off + (uint64_t)p->journal_blocks * TI_BLOCK;
	p->tags_pages = td_div_up(p->data_blocks, TI_ENTRIES_PER_PAGE);
	p->l1_pages = td_div_up(p->tags_pages, TI_HASHES_PER_PAGE);
	p->l2_pages = td_div_up(p->l1_pages, TI_HASHES_PER_PAGE);
	if (p->version >= 2) {
		/* two slots per tag page and per L1 page, two L2 regions */
		p->tree_off = p->tags_off + 2 * p->tags_pages * TI_BLOCK;
		p->tree_pages = 2 * p->l1_pages + 2 * p->l2_pages;
	} else {
		p->tree_off = p->tags_off + p->tags_pages * TI_BLOCK;
		/* v1: reserved room */
		p->tree_pages = 2 * td_div_up(p->tags_pages, TI_BLOCK / 32) + 16;
	}
}

static void fill_meta(struct ti_params *p)
{
	fill_meta_at(p, p->data_start + p->data_blocks * TI_BLOCK);
}

int ti_grow_layout(const struct ti_params *old, uint64_t new_blocks, struct ti_params *np)
{
	uint64_t meta, old_end = ti_layout_end(old);

	if (new_blocks <= old->data_blocks)
		return -EINVAL;
	if (new_blocks > (1ull << 40) || (old->version >= 2 && new_blocks > TI_V2_MAX_BLOCKS))
		return -EFBIG;
	*np = *old;
	np->data_blocks = new_blocks;
	meta = np->data_start + new_blocks * TI_BLOCK;
	/* never over the metadata in use: it stays valid until the commit */
	if (meta < old_end)
		meta = old_end;
	if (meta > TI_META_MAX)
		return -EFBIG;
	fill_meta_at(np, meta);
	return 0;
}

uint64_t ti_layout_end(const struct ti_params *p)
{
	return p->tree_off + p->tree_pages * TI_BLOCK;
}

int ti_layout(uint64_t lower_size, uint64_t data_start, uint32_t journal_blocks,
	      struct ti_params *p)
{
	return ti_layout_version(lower_size, data_start, journal_blocks, TI_PARAMS_VERSION, p);
}

int ti_layout_version(uint64_t lower_size, uint64_t data_start, uint32_t journal_blocks,
		      unsigned version, struct ti_params *p)
{
	uint64_t lo = 0, hi;

	memset(p, 0, sizeof(*p));
	if (version < 1 || version > 2)
		return -EINVAL;
	p->version = version;
	p->tag_len = TI_TAG_LEN;
	p->data_start = data_start;
	p->journal_blocks = journal_blocks ? journal_blocks : TI_JOURNAL_BLOCKS_DEFAULT;
	/* bounds every offset below 2^63 (no wrap-around) and matches what
	 * ti_params_decode accepts */
	if (lower_size > (1ull << 62))
		lower_size = 1ull << 62;
	if (lower_size <= data_start || data_start > (1ull << 40))
		return -ENOSPC;
	hi = (lower_size - data_start) / TI_BLOCK;
	if (hi > (1ull << 40))
		hi = 1ull << 40;
	if (version >= 2 && hi > TI_V2_MAX_BLOCKS)
		hi = TI_V2_MAX_BLOCKS;
	/* the largest data size whose metadata still fits */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;

		p->data_blocks = mid;
		fill_meta(p);
		if (ti_layout_end(p) <= lower_size)
			lo = mid;
		else
			hi = mid - 1;
	}
	p->data_blocks = lo;
	fill_meta(p);
	return lo ? 0 : -ENOSPC;
}

void ti_params_encode(const struct ti_params *p, uint8_t out[TI_PARAMS_LEN])
{
	memset(out, 0, TI_PARAMS_LEN);
	out[0] = (uint8_t)p->version;
	out[4] = (uint8_t)p->tag_len;
	ti_put64(out + 8, p->data_start);
	ti_put64(out + 16, p->data_blocks);
	ti_put64(out + 24, p->super_off);
	ti_put64(out + 32, p->journal_off);
	ti_put64(out + 40, p->journal_blocks);
	ti_put64(out + 48, p->tags_off);
	ti_put64(out + 56, p->tags_pages);
	ti_put64(out + 64, p->tree_off);
	ti_put64(out + 72, p->tree_pages);
}

int ti_params_decode(const uint8_t in[TI_PARAMS_LEN], uint64_t lower_size, struct ti_params *p,
		     char *err, size_t errlen)
{
	struct ti_params want;
	uint8_t re[TI_PARAMS_LEN];
	uint64_t jb = ti_le64(in + 40), meta;

	memset(p, 0, sizeof(*p));
	p->version = in[0];
	p->tag_len = in[4];
	p->data_start = ti_le64(in + 8);
	p->data_blocks = ti_le64(in + 16);
	if ((p->version != 1 && p->version != 2) || p->tag_len != TI_TAG_LEN) {
		snprintf(err, errlen, "unsupported integrity parameters (version %u, tag %u bytes)",
			 p->version, p->tag_len);
		return -EPROTONOSUPPORT;
	}
	if (jb < TI_JOURNAL_BLOCKS_MIN || jb > TI_JOURNAL_BLOCKS_MAX || p->data_blocks == 0 ||
	    p->data_blocks > (1ull << 40) ||
	    (p->version >= 2 && p->data_blocks > TI_V2_MAX_BLOCKS) || p->data_start % TI_BLOCK ||
	    p->data_start > (1ull << 40)) {
		snprintf(err, errlen, "integrity parameters out of range");
		return -EBADMSG;
	}
	p->journal_blocks = (uint32_t)jb;
	/* the metadata starts right after the data area or, after an online
	 * grow, further on (a 4 KiB multiple, bounded); everything else
	 * follows: recompute and require equality */
	meta = ti_le64(in + 24);
	if (meta < p->data_start + p->data_blocks * TI_BLOCK || meta % TI_BLOCK ||
	    meta > TI_META_MAX) {
		snprintf(err, errlen, "integrity parameters are inconsistent");
		return -EBADMSG;
	}
	want = *p;
	fill_meta_at(&want, meta);
	ti_params_encode(&want, re);
	if (memcmp(re, in, TI_PARAMS_LEN) != 0) {
		snprintf(err, errlen, "integrity parameters are inconsistent");
		return -EBADMSG;
	}
	if (ti_layout_end(&want) > lower_size) {
		snprintf(err, errlen,
			 "the image is truncated: integrity metadata ends at %llu, the image has "
			 "%llu bytes",
			 (unsigned long long)ti_layout_end(&want), (unsigned long long)lower_size);
		return -EIO;
	}
	*p = want;
	return 0;
}

static void mac_region(struct td_hmac *mac, const uint8_t *buf, uint8_t out[32])
{
	td_hmac_begin(mac);
	td_hmac_update(mac, buf, TI_MAC_OFF);
	td_hmac_end(mac, out);
}

void ti_super_encode(const struct ti_super *s, const uint8_t uuid[16], struct td_hmac *mac,
		     uint8_t out[TI_BLOCK])
{
	memset(out, 0, TI_BLOCK);
	memcpy(out, SUPER_MAGIC, 8);
	out[8] = (uint8_t)s->version;
	ti_put64(out + 16, s->epoch);
	ti_put64(out + 24, s->seq_base);
	memcpy(out + 32, uuid, 16);
	if (s->version >= 2)
		memcpy(out + 48, s->root, TI_HASH_LEN);
	mac_region(mac, out, out + TI_MAC_OFF);
}

int ti_super_decode(const uint8_t in[TI_BLOCK], const uint8_t uuid[16], struct td_hmac *mac,
		    struct ti_super *s)
{
	uint8_t m[32];
	int rc = -EBADMSG;

	/* s->version is what the caller expects (the parameters' version) */
	if (memcmp(in, SUPER_MAGIC, 8) != 0 || in[8] != s->version ||
	    memcmp(in + 32, uuid, 16) != 0)
		return rc;
	mac_region(mac, in, m);
	if (!td_ct_memeq(m, in + TI_MAC_OFF, 32))
		return rc;
	s->epoch = ti_le64(in + 16);
	s->seq_base = ti_le64(in + 24);
	memset(s->root, 0, TI_HASH_LEN);
	if (s->version >= 2)
		memcpy(s->root, in + 48, TI_HASH_LEN);
	rc = 0;
	return rc;
}

/* A kind-0 block (fp NULL) or a kind-1 block: records, then ranges. */
static void jblock_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
			  const struct ti_fpoint *fp, const uint8_t uuid[16], struct td_hmac *mac,
			  uint8_t out[TI_BLOCK])
{
	uint8_t *at = out + TI_REC_OFF;
	unsigned i;

	memset(out, 0, TI_BLOCK);
	memcpy(out, JBLOCK_MAGIC, 8);
	ti_put64(out + 8, epoch);
	ti_put64(out + 16, index);
	ti_put64(out + 24, n);
	memcpy(out + 32, uuid, 16);
	for (i = 0; i < n; i++, at += TI_REC_LEN) {
		ti_put64(at, recs[i].block);
		ti_put64(at + 8, recs[i].seq);
		if (recs[i].seq & TI_SEQ_ZERO_RANGE)
			ti_put64(at + 16, recs[i].count);
		else
			memcpy(at + 16, recs[i].tag, TI_TAG_LEN);
	}
	if (fp) {
		put32(out + 48, TI_JB_FLUSH);
		put32(out + 52, fp->n);
		ti_put64(out + 56, fp->below);
		for (i = 0; i < fp->n; i++, at += TI_FP_RANGE_LEN) {
			ti_put64(at, fp->r[i].start);
			ti_put64(at + 8, fp->r[i].count);
		}
	}
	mac_region(mac, out, out + TI_MAC_OFF);
}

void ti_jblock_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
		      const uint8_t uuid[16], struct td_hmac *mac, uint8_t out[TI_BLOCK])
{
	jblock_encode(epoch, index, recs, n, NULL, uuid, mac, out);
}

void ti_jflush_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
		      const struct ti_fpoint *fp, const uint8_t uuid[16], struct td_hmac *mac,
		      uint8_t out[TI_BLOCK])
{
	jblock_encode(epoch, index, recs, n, fp, uuid, mac, out);
}

static bool zero_bytes(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	while (n--)
		acc |= *b++;
	return acc == 0;
}

/* The records of a kind-0 block; false if one is not in canonical form. */
static bool decode_records(const uint8_t *in, uint64_t n, struct ti_rec *recs)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		const uint8_t *r = in + TI_REC_OFF + i * TI_REC_LEN;

		recs[i].block = ti_le64(r);
		recs[i].seq = ti_le64(r + 8);
		recs[i].count = 0;
		recs[i].jidx = 0;
		memset(recs[i].tag, 0, TI_TAG_LEN);
		if (recs[i].seq & TI_SEQ_ZERO_RANGE) {
			recs[i].count = ti_le64(r + 16);
			if (!zero_bytes(r + 24, TI_REC_LEN - 24))
				return false;
		} else {
			memcpy(recs[i].tag, r + 16, TI_TAG_LEN);
		}
	}
	return true;
}

/* The ranges of a kind-1 block (after its n records); false unless
 * sorted, disjoint, not touching, non-empty and below TI_SEQ_LIMIT. */
static bool decode_ranges(const uint8_t *in, uint64_t n, uint64_t k, struct ti_fpoint *fp)
{
	const uint8_t *at = in + TI_REC_OFF + n * TI_REC_LEN;
	uint64_t prev_end = 0;
	unsigned i;

	fp->below = ti_le64(in + 56);
	fp->n = (unsigned)k;
	if (fp->below > TI_SEQ_LIMIT)
		return false;
	for (i = 0; i < k; i++) {
		const uint8_t *r = at + i * TI_FP_RANGE_LEN;
		uint64_t start = ti_le64(r), count = ti_le64(r + 8);

		if (count == 0 || start >= TI_SEQ_LIMIT || count > TI_SEQ_LIMIT - start ||
		    (i > 0 && start <= prev_end))
			return false;
		fp->r[i].start = start;
		fp->r[i].count = count;
		prev_end = start + count;
	}
	return true;
}

int ti_jblock_decode(const uint8_t in[TI_BLOCK], uint64_t epoch, uint32_t index,
		     const uint8_t uuid[16], struct td_hmac *mac, struct ti_rec *recs,
		     struct ti_fpoint *fp, struct ti_jinfo *info)
{
	uint8_t m[32];
	uint64_t n, k;
	unsigned kind;
	size_t used;
	int rc = -EBADMSG;

	if (memcmp(in, JBLOCK_MAGIC, 8) != 0 || ti_le64(in + 8) != epoch ||
	    memcmp(in + 32, uuid, 16) != 0)
		return rc;
	mac_region(mac, in, m);
	if (!td_ct_memeq(m, in + TI_MAC_OFF, 32))
		return rc;
	n = ti_le64(in + 24);
	kind = le32(in + 48);
	k = le32(in + 52);
	if (n > TI_RECS_PER_BLOCK || k > TI_FP_MAX_RANGES)
		return rc;
	used = TI_REC_OFF + (size_t)n * TI_REC_LEN + (size_t)k * TI_FP_RANGE_LEN;
	if (used > TI_MAC_OFF || !zero_bytes(in + used, TI_MAC_OFF - used))
		return rc;
	if (kind == TI_JB_RECORDS && (k != 0 || ti_le64(in + 56) != 0))
		return rc;
	if (kind != TI_JB_RECORDS && kind != TI_JB_FLUSH)
		return rc;
	if (!decode_records(in, n, recs) || (kind == TI_JB_FLUSH && !decode_ranges(in, n, k, fp)))
		return rc;
	info->kind = kind;
	info->index = ti_le64(in + 16);
	/* valid, but copied or moved here from another position */
	if (info->index != index)
		return -TI_EMISPLACED;
	rc = (int)n;
	return rc;
}

bool ti_fpoint_has(const struct ti_fpoint *fp, uint64_t seq)
{
	unsigned lo = 0, hi = fp->n;
	bool listed = false;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (seq < fp->r[mid].start) {
			hi = mid;
		} else if (seq - fp->r[mid].start >= fp->r[mid].count) {
			lo = mid + 1;
		} else {
			listed = true;
			break;
		}
	}
	return (seq < fp->below) != listed;
}

int ti_block_tag(struct td_hmac *mac, const uint8_t uuid[16], uint64_t block, uint64_t seq,
		 const void *data, uint8_t tag[TI_TAG_LEN])
{
	uint8_t hdr[36], full[32];
	int rc;

	memcpy(hdr, "TDI1", 4);
	memcpy(hdr + 4, uuid, 16);
	ti_put64(hdr + 20, block);
	ti_put64(hdr + 28, seq);
	rc = td_hmac_begin(mac);
	if (!rc)
		rc = td_hmac_update(mac, hdr, sizeof(hdr));
	if (!rc)
		rc = td_hmac_update(mac, data, TI_BLOCK);
	if (!rc)
		rc = td_hmac_end(mac, full);
	if (!rc)
		memcpy(tag, full, TI_TAG_LEN);
	return rc;
}

static int all_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;
	size_t i;

	for (i = 0; i < n; i++)
		acc |= b[i];
	return acc == 0;
}

int ti_tree_hash(struct td_hmac *tmac, const uint8_t uuid[16], int level, uint64_t idx,
		 const uint8_t page[TI_BLOCK], uint8_t out[TI_HASH_LEN])
{
	uint8_t hdr[28];
	int rc;

	if (all_zero(page, TI_BLOCK)) {
		memset(out, 0, TI_HASH_LEN);
		return 0;
	}
	memcpy(hdr, level ? "TDT1" : "TDT0", 4);
	memcpy(hdr + 4, uuid, 16);
	ti_put64(hdr + 20, idx);
	rc = td_hmac_begin(tmac);
	if (!rc)
		rc = td_hmac_update(tmac, hdr, sizeof(hdr));
	if (!rc)
		rc = td_hmac_update(tmac, page, TI_BLOCK);
	if (!rc)
		rc = td_hmac_end(tmac, out);
	return rc;
}

int ti_tree_root(struct td_hmac *tmac, const uint8_t uuid[16], uint64_t l2_pages, const uint8_t *l2,
		 uint8_t out[TI_HASH_LEN])
{
	uint8_t hdr[28];
	int rc;

	if (all_zero(l2, (size_t)l2_pages * TI_BLOCK)) {
		memset(out, 0, TI_HASH_LEN); /* nothing written (or all zeroed) */
		return 0;
	}
	memcpy(hdr, "TDTR", 4);
	memcpy(hdr + 4, uuid, 16);
	ti_put64(hdr + 20, l2_pages);
	rc = td_hmac_begin(tmac);
	if (!rc)
		rc = td_hmac_update(tmac, hdr, sizeof(hdr));
	if (!rc)
		rc = td_hmac_update(tmac, l2, (size_t)l2_pages * TI_BLOCK);
	if (!rc)
		rc = td_hmac_end(tmac, out);
	return rc;
}
