/* Private state of the integrity layer, shared by its files:
 *   drv_integrity.c  request flows (read verify, write, zero), open/close
 *   tagcache.c       the tag-table page cache (bounded, LRU)
 *   journal.c        the MAC journal: group commit, checkpoints
 *   recover.c        open-time replay of the journal after a crash
 *
 * The ordering rule (docs/FORMAT.md "Integrity metadata"): a block's
 * journal record (block, seq, tag) is durable (FUA) before its data write
 * is issued; the client is answered when the data write completes; tag
 * pages are written only at checkpoints, after which the journal epoch
 * advances. After a crash, every block named in the current epoch's
 * journal is resolved by reading it: the newest candidate tag that
 * verifies wins, so a block reads as its old or its new contents and a
 * torn block as an integrity error, never as other data. */
#ifndef TD_INTEGRITY_INTEG_H
#define TD_INTEGRITY_INTEG_H

#include <stdbool.h>
#include <stdint.h>

#include "integrity/format.h"
#include "integrity/integrity.h"
#include "tapdisk/driver.h"
#include "tapdisk/rangelock.h"

#define TI_MAX_CHUNKS 8
#define TI_JOURNAL_INFLIGHT 4

struct ti_page {
	uint64_t idx;
	uint8_t *data;
	bool loaded, loading, dirty, writing;
	int pins;
	struct ti_page *hnext;
	struct ti_page *lru_prev, *lru_next;
};

enum ti_kind { TI_READ, TI_WRITE, TI_ZERO };

struct ti_req;

struct ti_work {
	struct td_work w;
	struct ti_req *r;
	uint64_t first, n;
	int bad; /* verify: failing blocks in this chunk */
	uint64_t first_bad;
};

struct ti_jblock;

struct ti_req {
	struct td_req *parent;
	struct td_layer *l;
	enum ti_kind kind;
	uint64_t b0, n;
	int stage;
	int pending;
	int err;
	bool journaled;
	struct td_rl_item rl;	/* block range lock */
	struct ti_req *next;	/* page-wait or checkpoint-park list */
	uint64_t seq0;
	uint8_t *tags; /* writes: n * TI_TAG_LEN */
	size_t tags_len;
	int jpending; /* journal blocks holding our records, not yet durable */
	struct td_req child;
	struct iovec iov;
	void *bounce;
	size_t bounce_len;
	struct ti_work works[TI_MAX_CHUNKS];
	int nworks;
	uint64_t bad_blocks, first_bad;
	struct td_req tzero; /* zero: the tag-region write-zeroes */
	bool unmap;
};

struct ti_jblock {
	uint32_t index;
	unsigned nrec;
	struct ti_rec recs[TI_RECS_PER_BLOCK];
	struct ti_req **waiters;
	unsigned nwait, capwait;
	struct ti_jblock *next;
	struct td_layer *l;
};

enum ti_ckpt { CK_IDLE, CK_DRAIN, CK_PREFLUSH, CK_PAGES, CK_FLUSH, CK_SUPER };

struct ti_priv {
	struct ti_params p;
	uint8_t uuid[16];
	uint8_t *mac_key; /* secure memory */
	struct td_hmac **macs; /* one per worker */
	int nmacs;
	struct td_hmac *mac_loop; /* loop thread: journal, superblocks */

	/* tag cache */
	struct ti_page **htab;
	size_t hsize;
	struct ti_page lru; /* sentinel: lru.lru_next = most recently used */
	size_t npages, max_pages, ndirty;
	struct ti_req *page_wait; /* requests waiting for page loads */

	struct td_rangelock rl;

	/* journal */
	uint64_t epoch, next_seq;
	uint32_t jpos;		 /* next journal block index */
	struct ti_jblock *open;	 /* being filled */
	struct ti_jblock *jq_head, *jq_tail; /* sealed, waiting to be written */
	unsigned j_inflight;
	uint64_t records_since;
	unsigned journaled_inflight; /* requests between journal and completion */
	struct ti_req *park_head, *park_tail; /* waiting for a checkpoint */

	/* checkpoint */
	enum ti_ckpt ck;
	int ck_pending_io;
	int ck_err;
	uint8_t *super_buf;
	struct td_req ck_req;
	struct iovec ck_iov;
	int broken; /* a failed checkpoint: writes refused */

	/* logging failures once per block */
	uint64_t logged[64];
	unsigned nlogged;
};

/* tagcache.c */
int ti_cache_init(struct td_layer *l, size_t budget_bytes);
void ti_cache_free(struct td_layer *l);
struct ti_page *ti_page_find(struct ti_priv *p, uint64_t idx);
/* Pins the pages of [b0, b0+n); starts loads; returns how many are not
 * loaded yet (the request goes on the page wait list when > 0). A
 * zeroing request skips the uncached pages it covers wholly. */
int ti_pages_pin(struct td_layer *l, struct ti_req *r, bool zeroing);
void ti_pages_unpin(struct td_layer *l, struct ti_req *r);
uint8_t *ti_entry(struct ti_priv *p, uint64_t block); /* page must be pinned */
void ti_page_mark_dirty(struct ti_priv *p, struct ti_page *pg);
/* Synchronous load for the recovery path. */
struct ti_page *ti_page_get_sync(struct td_layer *l, uint64_t idx, int *err);

/* journal.c */
/* Queues r's records (after its MACs are computed); r continues (its
 * stage callback runs) when all of them are durable. */
void ti_journal_add(struct td_layer *l, struct ti_req *r);
void ti_journal_kick(struct td_layer *l);
bool ti_ckpt_wanted(struct ti_priv *p);
void ti_ckpt_maybe(struct td_layer *l);
/* Runs a checkpoint to completion, spinning the loop (close, recovery). */
int ti_ckpt_sync(struct td_layer *l);

/* drv_integrity.c */
void ti_req_continue(struct ti_req *r);
void ti_resume_parked(struct td_layer *l);

/* recover.c */
int ti_recover(struct td_layer *l, char *err, size_t errlen);

#endif
