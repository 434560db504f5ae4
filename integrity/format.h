/* On-disk structures of the integrity layer (docs/FORMAT.md, "Integrity
 * metadata"): the parameter block kept in the authenticated crypt header,
 * two journal superblocks, the MAC journal and the tag table. Pure
 * functions on memory; no I/O. */
#ifndef TD_INTEGRITY_FORMAT_H
#define TD_INTEGRITY_FORMAT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TI_BLOCK 4096u
#define TI_PARAMS_LEN 256
#define TI_PARAMS_VERSION 2 /* what ti_layout writes by default */
#define TI_HASH_LEN 32
#define TI_HASHES_PER_PAGE (TI_BLOCK / TI_HASH_LEN) /* 128 */
/* v2 keeps the tree's top level (32 bytes per 64 MiB of data) in memory:
 * at most 64 MiB of it, i.e. 128 TiB of data (2^35 blocks). A larger image
 * gets a 128 TiB data area; hostile parameters beyond it are refused. */
#define TI_V2_MAX_BLOCKS (1ull << 35)
#define TI_TAG_LEN 24	/* bytes of HMAC-SHA256 kept per block */
#define TI_ENTRY_LEN 32 /* seq (8) + tag (24) */
#define TI_ENTRIES_PER_PAGE (TI_BLOCK / TI_ENTRY_LEN)
#define TI_JOURNAL_BLOCKS_DEFAULT 1024 /* 4 MiB */
#define TI_JOURNAL_BLOCKS_MIN 16
#define TI_JOURNAL_BLOCKS_MAX 65536
#define TI_REC_LEN 40
#define TI_REC_OFF 64
#define TI_RECS_PER_BLOCK ((TI_BLOCK - TI_REC_OFF - 32) / TI_REC_LEN) /* 100 */
/* Journal blocks a request of recs records may take: its own, plus a
 * partly filled block it may share. It is journaled only when that many
 * fit the epoch with one block to spare, so a request with
 * TI_JOURNAL_BLOCKS_FOR(recs) + 1 >= journal_blocks never fits. */
#define TI_JOURNAL_BLOCKS_FOR(recs) (((recs) + TI_RECS_PER_BLOCK - 1) / TI_RECS_PER_BLOCK + 1)
#define TI_MAC_OFF (TI_BLOCK - 32) /* HMAC of a superblock / journal block */
#define TI_SEQ_ZERO_RANGE                                                                          \
	(1ull << 63) /* record flag: blocks [block, block+count) read as zeros                     \
		      */

/* Where everything lives in the lower image (byte offsets). */
struct ti_params {
	uint32_t version;
	uint32_t tag_len;
	uint64_t data_start;  /* protected block 0 */
	uint64_t data_blocks; /* protected blocks (exported size / 4096) */
	uint64_t super_off;   /* two 4 KiB superblocks */
	uint64_t journal_off;
	uint32_t journal_blocks;
	uint64_t tags_off;
	uint64_t tags_pages;
	uint64_t tree_off; /* v2: the freshness tree (v1: reserved) */
	uint64_t tree_pages;
	/* derived, not stored: v2 tree geometry */
	uint64_t l1_pages; /* L = ceil(tags_pages / 128) */
	uint64_t l2_pages; /* M = ceil(L / 128) */
};

/* Byte offsets of the v2 structures (docs/FORMAT.md "Freshness tree"). */
static inline uint64_t ti_tag_page_off(const struct ti_params *p, uint64_t page, unsigned slot)
{
	return p->version >= 2 ? p->tags_off + (2 * page + slot) * TI_BLOCK
			       : p->tags_off + page * TI_BLOCK;
}
static inline uint64_t ti_l1_page_off(const struct ti_params *p, uint64_t q, unsigned slot)
{
	return p->tree_off + (2 * q + slot) * TI_BLOCK;
}
static inline uint64_t ti_l2_off(const struct ti_params *p, unsigned region)
{
	return p->tree_off + (2 * p->l1_pages + region * p->l2_pages) * TI_BLOCK;
}

/* Layout for a lower image of lower_size bytes whose data starts at
 * data_start: the most data blocks that fit with their metadata after
 * them. -ENOSPC if not even one block fits. */
int ti_layout(uint64_t lower_size, uint64_t data_start, uint32_t journal_blocks,
	      struct ti_params *p);
/* The same for a given parameters version (1 or 2); ti_layout lays out
 * TI_PARAMS_VERSION (2). */
int ti_layout_version(uint64_t lower_size, uint64_t data_start, uint32_t journal_blocks,
		      unsigned version, struct ti_params *p);
/* Where the metadata may start at most (docs/FORMAT.md "Growing"): keeps
 * every offset of a decoded layout below 2^63. */
#define TI_META_MAX (1ull << 62)
/* The layout after an online grow to new_blocks data blocks: the same
 * journal size and version; the metadata right after the new data area,
 * or at the end of the old layout when that is further on, so it never
 * overlaps the metadata in use (docs/FORMAT.md "Growing"). 0, -EINVAL
 * (not larger) or -EFBIG (beyond the format's limits). */
int ti_grow_layout(const struct ti_params *old, uint64_t new_blocks, struct ti_params *np);
/* Bytes the layout needs in the lower image (its end offset). */
uint64_t ti_layout_end(const struct ti_params *p);

void ti_params_encode(const struct ti_params *p, uint8_t out[TI_PARAMS_LEN]);
/* Validates against the lower image's size; hostile values refused. */
int ti_params_decode(const uint8_t in[TI_PARAMS_LEN], uint64_t lower_size, struct ti_params *p,
		     char *err, size_t errlen);

/* Superblock: magic, epoch, the next write sequence number, uuid, HMAC. */
struct ti_super {
	unsigned version; /* 1 or 2, must equal the parameters' */
	uint64_t epoch;
	uint64_t seq_base;
	uint8_t root[TI_HASH_LEN]; /* v2 */
};

struct td_hmac;
void ti_super_encode(const struct ti_super *s, const uint8_t uuid[16], struct td_hmac *mac,
		     uint8_t out[TI_BLOCK]);
/* 0, or -EBADMSG (not a valid superblock of this image). */
int ti_super_decode(const uint8_t in[TI_BLOCK], const uint8_t uuid[16], struct td_hmac *mac,
		    struct ti_super *s);

/* Freshness tree hashes (v2). level 0: a tag page, 1: an L1 page. An
 * all-zero page hashes to zeros. */
int ti_tree_hash(struct td_hmac *tmac, const uint8_t uuid[16], int level, uint64_t idx,
		 const uint8_t page[TI_BLOCK], uint8_t out[TI_HASH_LEN]);
/* The root over the L2 array (l2_pages pages). */
int ti_tree_root(struct td_hmac *tmac, const uint8_t uuid[16], uint64_t l2_pages, const uint8_t *l2,
		 uint8_t out[TI_HASH_LEN]);

struct ti_rec {
	uint64_t block;
	uint64_t seq; /* TI_SEQ_ZERO_RANGE set: a zero range, count in `count` */
	uint64_t count;
	uint8_t tag[TI_TAG_LEN];
	uint32_t jidx; /* recovery: the journal block it came from (not on disk) */
};

/* Journal block kinds (docs/FORMAT.md "Journal blocks"). */
#define TI_JB_RECORDS 0u
#define TI_JB_FLUSH 1u /* a flush point */
#define TI_FP_RANGE_LEN 16
#define TI_FP_MAX_RANGES ((TI_BLOCK - TI_REC_OFF - 32) / TI_FP_RANGE_LEN) /* 250 */
#define TI_SEQ_LIMIT (1ull << 63) /* sequence numbers stay below it (bit 63: zero range) */
/* A valid journal block of the epoch found at another position than the
 * index it carries: copied or moved, never the result of a crash. */
#define TI_EMISPLACED ESPIPE

/* Sequence numbers [start, start + count). */
struct ti_frange {
	uint64_t start, count;
};

/* A flush point (docs/FORMAT.md "Flush points"): the writes whose sequence
 * number is in F = { s : (s < below) XOR (s in one of the ranges) } had
 * their data durable before the block holding it was written. Ranges
 * sorted, disjoint and not touching. */
struct ti_fpoint {
	uint64_t below;
	unsigned n;
	struct ti_frange r[TI_FP_MAX_RANGES];
};

/* Whether seq is in the flush point's F. */
bool ti_fpoint_has(const struct ti_fpoint *fp, uint64_t seq);

/* What ti_jblock_decode learns besides the records. */
struct ti_jinfo {
	unsigned kind;	/* TI_JB_RECORDS or TI_JB_FLUSH */
	uint64_t index; /* the index the block carries */
};

/* A journal block of records: magic, epoch, index, record count, uuid,
 * records, HMAC. */
void ti_jblock_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
		      const uint8_t uuid[16], struct td_hmac *mac, uint8_t out[TI_BLOCK]);
/* A journal block with a flush point, after its n records (valid ranges;
 * TI_REC_OFF + n * TI_REC_LEN + fp->n * TI_FP_RANGE_LEN <= TI_MAC_OFF). */
void ti_jflush_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
		      const struct ti_fpoint *fp, const uint8_t uuid[16], struct td_hmac *mac,
		      uint8_t out[TI_BLOCK]);
/* Decodes the block read at journal position `index`. Returns its number of
 * records (0..TI_RECS_PER_BLOCK, into recs); a block that also carries a
 * flush point (info->kind TI_JB_FLUSH) fills *fp. -EBADMSG when it is not a
 * valid journal block of `epoch` for this image, or -TI_EMISPLACED when it
 * is one but carries another index (info->index). */
int ti_jblock_decode(const uint8_t in[TI_BLOCK], uint64_t epoch, uint32_t index,
		     const uint8_t uuid[16], struct td_hmac *mac, struct ti_rec *recs,
		     struct ti_fpoint *fp, struct ti_jinfo *info);

/* The MAC of one data block: HMAC-SHA256(key, "TDI1" | uuid | block |
 * seq | data) truncated to TI_TAG_LEN. */
int ti_block_tag(struct td_hmac *mac, const uint8_t uuid[16], uint64_t block, uint64_t seq,
		 const void *data, uint8_t tag[TI_TAG_LEN]);

static inline uint64_t ti_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline void ti_put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
