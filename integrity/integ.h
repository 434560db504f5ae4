/* Private state of the integrity layer, shared by its files:
 *   drv_integrity.c  request flows (read verify, write, zero), open/close
 *   tagcache.c       the tag-table page cache (bounded, LRU)
 *   journal.c        the MAC journal: group commit, checkpoints
 *   recover.c        open-time replay of the journal after a crash
 *   fpoint.c         flush points: which journaled writes are known durable
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
#include "tapdisk/block/driver.h"
#include "tapdisk/core/rangelock.h"
#include "tapdisk/core/workers.h"

#define TI_MAX_CHUNKS 8
#define TI_JOURNAL_INFLIGHT 4

/* A cached page: a tag page (level 0) or, in v2, an L1 tree page (level
 * 1). States: loading (read in flight), waitparent (a v2 tag page whose
 * L1 page is not verified yet), loaded (contents verified and usable);
 * none of them = failed (I/O error or no slot matches the tree), dropped
 * when unpinned. */
struct ti_page {
	uint64_t idx;
	int level;
	unsigned slot; /* v2: the slot the current tree uses */
	uint8_t *data;
	bool loaded, loading, dirty, writing, waitparent, bad;
	int pins;
	struct ti_page *hnext;
	struct ti_page *lru_prev, *lru_next;
};

enum ti_kind { TI_READ, TI_WRITE, TI_ZERO, TI_FLUSH };

/* A set of sequence numbers: sorted, disjoint, non-touching ranges. */
struct ti_rset {
	struct ti_frange *r;
	size_t n, cap;
};

struct ti_req;

struct ti_work {
	struct td_work w;
	struct ti_req *r;
	uint64_t first, n;
	int bad; /* verify: failing blocks in this chunk */
	uint64_t first_bad;
};

struct ti_jblock;
struct ti_jbatch;

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
	/* fpoint.c: writes holding a sequence number whose data write has not
	 * completed are linked in ti_priv.fp_inflight */
	struct ti_req *fp_prev, *fp_next;
	bool fp_linked;
};

struct ti_jblock {
	uint32_t index;
	unsigned nrec;
	struct ti_rec recs[TI_RECS_PER_BLOCK];
	struct ti_req **waiters;
	unsigned nwait, capwait;
	struct ti_jblock *next;
	struct td_layer *l;
	uint8_t *fpblock; /* carries a flush point: the block, encoded when sealed */
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

	/* v2 freshness tree (docs/FORMAT.md "Freshness tree") */
	bool tree;
	uint8_t *tree_key;	     /* secure memory */
	struct td_hmac *tree_mac;    /* loop thread */
	uint8_t *l2;		     /* l2_pages * 4096, resident */
	uint64_t tree_bad_pages;     /* pages that matched no slot (logged) */
	uint8_t ck_root[TI_HASH_LEN]; /* the root the next superblock carries */
	uint8_t sb_root[TI_HASH_LEN]; /* the root of the superblock read at open */

	/* trusted generation (keymgr/statedir.h) */
	bool gen_track;		/* read-write open: advance it after checkpoints */
	uint64_t gen_written, gen_want;
	bool gen_busy;
	struct td_work gen_work;
	int gen_work_rc;
	uint64_t gen_work_val;
	char gen_err[256];
	struct td_ctx *gen_ctx;

	/* v2: journal blocks release their writes in index order */
	struct ti_jbatch *jdone;  /* completed, waiting for lower indexes */
	uint32_t jrelease;	  /* next index to release */
	int jfail;		  /* a journal write failed this epoch */

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

	/* flush points (fpoint.c, docs/FORMAT.md "Flush points") */
	int fp_mode;		    /* enum ti_fp_mode (test hooks) */
	uint64_t fp_below;	    /* the claim: S ... */
	struct ti_rset fp_x;	    /* ... and its ranges */
	bool fp_bad;		    /* out of memory: claims frozen until a checkpoint */
	bool fp_dirty;		    /* a write completed since the last snapshot */
	bool fp_changed;	    /* the claim moved since the last flush-point block */
	struct ti_req *fp_inflight; /* writes with a seq, data not complete */
	struct ti_rset fp_failed;   /* writes of this epoch that failed */
	struct ti_req *fp_wait_head, *fp_wait_tail; /* waiting for the next cycle */
	struct ti_req *fp_cycle;		    /* waiters of the cycle in flight */
	struct ti_req *fp_ck;			    /* waiters a checkpoint answers */
	bool fp_busy;				    /* a cycle in flight */
	bool fp_ck_want;			    /* waiters handed over: a checkpoint is due */
	bool fp_snap_live;			    /* a snapshot waits for its lower flush */
	bool fp_cycle_flush;			    /* this cycle flushes the lower image */
	bool fp_early_flushed;			    /* test hook "early": flush issued */
	bool fp_deferred;			    /* the cycle waits for a journal write */
	unsigned fp_fua_data;			    /* FUA writes whose data write is in flight */
	bool fp_snap_dirty;
	uint64_t fp_snap_below, fp_snap_epoch;
	struct ti_rset fp_snap_x;
	struct ti_fpoint *fp_enc; /* encoding buffer */
	struct td_req fp_req;	  /* the lower flush */
	uint64_t fp_blocks;	  /* flush-point blocks written */

	/* logging failures once per block */
	uint64_t logged[64];
	unsigned nlogged;
};

/* tagcache.c */
int ti_cache_init(struct td_layer *l, size_t budget_bytes);
void ti_cache_free(struct td_layer *l);
struct ti_page *ti_page_find(struct ti_priv *p, uint64_t idx); /* tag page */
struct ti_page *ti_page_find_lvl(struct ti_priv *p, int level, uint64_t idx);
/* v2: the L1 entry (32 bytes) of tag page idx; its L1 page must be cached. */
uint8_t *ti_l1_entry(struct ti_priv *p, uint64_t tag_page);
/* v2 zeroing: blocks [b0, b0+n) now read as zeros (pages pinned as
 * ti_pages_pin pins them for a zeroing request, or loaded by the recovery path). */
void ti_tree_zero(struct td_layer *l, uint64_t b0, uint64_t n);
/* v2 recovery: loads the pages ti_tree_zero needs for [b0, b0+n). */
int ti_tree_zero_prepare_sync(struct td_layer *l, uint64_t b0, uint64_t n);
/* Pins the pages of [b0, b0+n); starts loads; returns how many are not
 * loaded yet (the request goes on the page wait list when > 0). A
 * zeroing request skips the uncached pages it covers wholly. */
int ti_pages_pin(struct td_layer *l, struct ti_req *r);
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

/* drv_integrity.c: the trusted generation moved (after a checkpoint) */
void ti_gen_advance(struct td_layer *l);

/* recover.c */
int ti_recover(struct td_layer *l, char *err, size_t errlen);

/* journal.c: queues a flush point: in the half-filled records block when
 * it fits, else in a block of its own at the next index (the half-filled
 * records block first); ti_fp_block_done runs when it is durable (v2: in
 * journal order). -ENOSPC when the journal has no free block. */
int ti_journal_flush_point(struct td_layer *l, const struct ti_fpoint *fp);

/* fpoint.c */
enum ti_fp_mode {
	TI_FP_ON,
	TI_FP_OFF,    /* test hook: no flush points (the pre-flush-point layer) */
	TI_FP_EARLY,  /* test hook: the flush point goes out before the lower flush */
	TI_FP_NOEXCL, /* test hook: writes in flight are claimed too */
};
int ti_fp_open(struct td_layer *l);
void ti_fp_free(struct ti_priv *p);
/* A write got its sequence numbers. */
void ti_fp_track(struct ti_priv *p, struct ti_req *r);
/* A write's data write completed without error (its tags are applied).
 * true: it is a FUA write and waits for a flush point (answered later). */
bool ti_fp_data_done(struct td_layer *l, struct ti_req *r);
/* A write ends (finish): if still tracked, it failed. */
void ti_fp_untrack(struct ti_priv *p, struct ti_req *r, int err);
/* The driver's flush. */
void ti_fp_flush(struct td_layer *l, struct td_req *req);
/* drv_integrity.c: a FUA write's data write completed (with or without
 * error). */
void ti_fp_fua_data_end(struct td_layer *l);
/* journal.c: a journal write completed (a deferred flush point goes now). */
void ti_fp_journal_done(struct td_layer *l);
/* journal.c: a flush-point block is durable (or failed). */
void ti_fp_block_done(struct td_layer *l, int err);
/* journal.c: a checkpoint ended (err 0: the new epoch is durable). */
void ti_fp_ckpt_done(struct td_layer *l, int err);

/* drv_integrity.c: ends a write or zero request (unpins, unlocks, answers). */
void ti_req_finish(struct ti_req *r, int err);

#endif
