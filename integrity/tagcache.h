/* The tag-table page cache (tagcache.c), with the v2 freshness tree's
 * pages and its top level (tree.c) and the synchronous loads of the open
 * and scrub paths (tagsync.c).
 *
 * A hash of 4 KiB pages with an LRU of clean, unpinned pages for eviction.
 * Dirty pages stay until a checkpoint writes them; pinned pages (used by
 * requests in flight) are never evicted. The budget bounds memory; a
 * 1 TiB image never reads all its tags. Loop thread only. */
#ifndef TD_INTEGRITY_TAGCACHE_H
#define TD_INTEGRITY_TAGCACHE_H

#include "integrity/integ.h"

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

/* The pages of one request's blocks [b0, b0 + n), pinned while it runs. A
 * zeroing request (zero) does not need the pages it covers wholly: v1
 * zeroes those tag pages on disk directly, v2 zeroes their parent entries
 * (nobody else can load them meanwhile: the range lock). */
struct ti_pin {
	uint64_t b0, n;
	bool zero;
	int err;
	struct ti_wait w; /* parked while pages load: woken when all settled */
};

struct ti_cache {
	struct ti_core *c;
	struct ti_page **htab;
	size_t hsize;
	struct ti_page lru; /* sentinel: lru.lru_next = most recently used */
	size_t npages, max_pages, ndirty;
	struct ti_waitq pins; /* struct ti_pin waiting for page loads */
	/* v2 (docs/FORMAT.md "Freshness tree") */
	uint8_t *l2;		 /* l2_pages * 4096, resident */
	uint64_t tree_bad_pages; /* pages that matched no slot (logged) */
};

/* tagcache.c */
int ti_cache_init(struct ti_cache *tc, struct ti_core *c, uint64_t budget);
void ti_cache_free(struct ti_cache *tc);
/* Pins the pages of pin's blocks and starts their loads: 0 when all are
 * loaded, -EAGAIN when pin->w is parked until they settle (pin->w.err:
 * the first failure), or a negative errno. Unpin in every case. */
int ti_pages_pin(struct ti_cache *tc, struct ti_pin *pin);
void ti_pages_unpin(struct ti_cache *tc, struct ti_pin *pin);
struct ti_page *ti_page_find(struct ti_cache *tc, int level, uint64_t idx);
/* The 32-byte table entry of block b, NULL unless its page is cached. */
uint8_t *ti_entry(struct ti_cache *tc, uint64_t b);
/* Sets the entry of block b (its page pinned and loaded): tag NULL zeroes
 * it (the block reads as zeros). */
void ti_entry_set(struct ti_cache *tc, uint64_t b, uint64_t seq, const uint8_t *tag);
/* A zeroing request's blocks [b0, b0+n) read as zeros from now on (its
 * pages pinned; v1: the tag pages it covers wholly are zeroed on disk by
 * the request itself). */
void ti_entries_zero(struct ti_cache *tc, uint64_t b0, uint64_t n);
void ti_page_mark_dirty(struct ti_cache *tc, struct ti_page *pg);
/* Zeroes the tags of blocks [b0, b0 + n) that the leaf page pg holds
 * (its entries [s, e), by block number) and marks it dirty. */
void ti_page_zero_tags(struct ti_cache *tc, struct ti_page *pg, uint64_t s, uint64_t e, uint64_t b0,
		       uint64_t n);
/* Dirty pages fill half the budget: a checkpoint is due. */
bool ti_cache_full(const struct ti_cache *tc);
/* Calls fn for every dirty page of level (-1: both). A nonzero return stops. */
int ti_cache_foreach_dirty(struct ti_cache *tc, int level,
			   int (*fn)(struct ti_page *pg, void *opaque), void *opaque);
/* A checkpoint writes pg: clean from now on; _end puts it back to dirty
 * when the write failed, and moves a v2 page to the slot just written. */
void ti_page_write_begin(struct ti_cache *tc, struct ti_page *pg);
void ti_page_write_end(struct ti_cache *tc, struct ti_page *pg, int err);
/* Internals shared with tree.c and tagsync.c. */
struct ti_page *ti_page_new(struct ti_cache *tc, int level, uint64_t idx);
void ti_page_free(struct ti_cache *tc, struct ti_page *pg);
void ti_page_touch(struct ti_cache *tc, struct ti_page *pg);
void ti_page_set_dirty(struct ti_cache *tc, struct ti_page *pg);
int ti_page_load_start(struct ti_cache *tc, struct ti_page *pg);

/* tree.c (v2) */
/* The L1 entry (32 bytes) of tag page t; its L1 page must be cached. */
uint8_t *ti_l1_entry(struct ti_cache *tc, uint64_t t);
/* The hash pg must have: its L2 entry (L1 page) or L1 entry (tag page). */
const uint8_t *ti_parent_entry(struct ti_cache *tc, const struct ti_page *pg);
/* Picks the slot of raw (both slots, 8 KiB) whose hash is want into
 * pg->data: 0, or -EBADMSG when neither matches (logged). */
int ti_pick_slot(struct ti_cache *tc, struct ti_page *pg, const uint8_t *raw, const uint8_t *want);
/* A v2 tag page whose L1 page just settled: loads it (or fails it). */
void ti_tree_start_child(struct ti_cache *tc, struct ti_page *pg);
void ti_tree_settle_children(struct ti_cache *tc, struct ti_page *l1);
/* Blocks [b0, b0+n) read as zeros (the pages a zeroing needs pinned or
 * loaded; wholly covered ones get a zero parent entry). */
void ti_tree_zero(struct ti_cache *tc, uint64_t b0, uint64_t n);
/* The new tree of a checkpoint: the hash of every dirty tag page into
 * its L1 entry, of every dirty L1 page into L2, and the root. */
int ti_tree_update(struct ti_cache *tc, uint8_t root[TI_HASH_LEN]);
/* Whether page idx of level (0 tag, 1 L1) lies wholly inside [b0, b0+n). */
bool ti_page_covered(int level, uint64_t idx, uint64_t b0, uint64_t n);
bool ti_all_zero(const uint8_t *b, size_t n);

/* tagsync.c: open and tool paths only (synchronous I/O) */
struct ti_page *ti_page_get_sync(struct ti_cache *tc, uint64_t idx, int *err);
/* Sets the entry of block b, loading its page. */
int ti_entry_set_sync(struct ti_cache *tc, uint64_t b, uint64_t seq, const uint8_t *tag);
/* v2 recovery: loads the pages ti_tree_zero needs for [b0, b0+n). */
int ti_tree_zero_prepare_sync(struct ti_cache *tc, uint64_t b0, uint64_t n);

#endif
