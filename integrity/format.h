/* On-disk structures of the integrity layer (docs/FORMAT.md, "Integrity
 * metadata"): the parameter block kept in the authenticated crypt header,
 * two journal superblocks, the MAC journal and the tag table. Pure
 * functions on memory; no I/O. */
#ifndef TD_INTEGRITY_FORMAT_H
#define TD_INTEGRITY_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define TI_BLOCK 4096u
#define TI_PARAMS_LEN 256
#define TI_PARAMS_VERSION 1
#define TI_TAG_LEN 24	    /* bytes of HMAC-SHA256 kept per block */
#define TI_ENTRY_LEN 32	    /* seq (8) + tag (24) */
#define TI_ENTRIES_PER_PAGE (TI_BLOCK / TI_ENTRY_LEN)
#define TI_JOURNAL_BLOCKS_DEFAULT 1024 /* 4 MiB */
#define TI_JOURNAL_BLOCKS_MIN 16
#define TI_JOURNAL_BLOCKS_MAX 65536
#define TI_REC_LEN 40
#define TI_REC_OFF 64
#define TI_RECS_PER_BLOCK ((TI_BLOCK - TI_REC_OFF - 32) / TI_REC_LEN) /* 100 */
#define TI_MAC_OFF (TI_BLOCK - 32) /* HMAC of a superblock / journal block */
#define TI_SEQ_ZERO_RANGE (1ull << 63) /* record flag: blocks [block, block+count) read as zeros */

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
	uint64_t tree_off; /* reserved for the freshness tree */
	uint64_t tree_pages;
};

/* Layout for a lower image of lower_size bytes whose data starts at
 * data_start: the most data blocks that fit with their metadata after
 * them. -ENOSPC if not even one block fits. */
int ti_layout(uint64_t lower_size, uint64_t data_start, uint32_t journal_blocks,
	      struct ti_params *p);
/* Bytes the layout needs in the lower image (its end offset). */
uint64_t ti_layout_end(const struct ti_params *p);

void ti_params_encode(const struct ti_params *p, uint8_t out[TI_PARAMS_LEN]);
/* Validates against the lower image's size; hostile values refused. */
int ti_params_decode(const uint8_t in[TI_PARAMS_LEN], uint64_t lower_size, struct ti_params *p,
		     char *err, size_t errlen);

/* Superblock: magic, epoch, the next write sequence number, uuid, HMAC. */
struct ti_super {
	uint64_t epoch;
	uint64_t seq_base;
};

struct td_hmac;
void ti_super_encode(const struct ti_super *s, const uint8_t uuid[16], struct td_hmac *mac,
		     uint8_t out[TI_BLOCK]);
/* 0, or -EBADMSG (not a valid superblock of this image). */
int ti_super_decode(const uint8_t in[TI_BLOCK], const uint8_t uuid[16], struct td_hmac *mac,
		    struct ti_super *s);

struct ti_rec {
	uint64_t block;
	uint64_t seq; /* TI_SEQ_ZERO_RANGE set: a zero range, count in `count` */
	uint64_t count;
	uint8_t tag[TI_TAG_LEN];
};

/* A journal block: magic, epoch, index, record count, uuid, records, HMAC. */
void ti_jblock_encode(uint64_t epoch, uint32_t index, const struct ti_rec *recs, unsigned n,
		      const uint8_t uuid[16], struct td_hmac *mac, uint8_t out[TI_BLOCK]);
/* Returns the number of records (0..TI_RECS_PER_BLOCK) or -EBADMSG when
 * the block is not a valid journal block of `epoch` for this image. */
int ti_jblock_decode(const uint8_t in[TI_BLOCK], uint64_t epoch, const uint8_t uuid[16],
		     struct td_hmac *mac, struct ti_rec *recs);

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
