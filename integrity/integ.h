/* What every part of the integrity layer shares. Each file has one job:
 *
 *   drv_integrity.c  the request state machine (read, write, zero, flush)
 *                    and the driver table
 *   lifecycle.c      open (recovery at open), quiesce, close
 *   tuning.c         the spec options (journal-partial=, tag-cache=)
 *   tagcache.c       the tag-table page cache: pins, loads, LRU, dirty pages
 *   tree.c           v2 freshness tree in memory: slots, hashes, zeroing
 *   tagsync.c        synchronous page loads (recovery at open, scrub)
 *   journal.c        the MAC journal: group commit, journal order, epochs
 *   checkpoint.c     checkpoints: drain, flush, tag pages, superblock
 *   fpoint.c         flush points: which journaled writes are known durable
 *   rset.c           sets of sequence numbers (flush-point claims)
 *   gen.c            the trusted generation (rollback detection)
 *   super.c          reading the superblocks and the tree's top level
 *   admin.c          vdkey's format and inspection steps
 *   recover.c        open-time replay of the journal after a crash
 *   scrub.c          verify every written block (vdkey audit --scrub)
 *   format.c         on-disk codecs (pure)
 *   testbreak.c      test builds only: the layer broken on purpose
 *
 * Each component keeps its own state (tagcache.h, journal.h, checkpoint.h,
 * fpoint.h, gen.h; priv.h puts them side by side). Bottom to top: tag
 * cache, journal, checkpoint, flush points, the request state machine. A
 * component calls the ones below it; it never calls up: one that must
 * wait for another parks a struct ti_wait on the other's queue and the
 * owner wakes it (the pattern of tapdisk/qcow2's struct q2wait):
 *
 *   request   on the tag cache    its pages loaded       (ti_pin.w)
 *   request   on the journal      its records durable    (ti_jent.w)
 *   request   on the flush points a FUA write's claim    (ti_fpw.w)
 *   checkpoint on the journal     the epoch drained      (ti_ckpt.drained)
 *   flush points on the journal   their block durable, a journal write done
 *   flush points on the checkpoint every checkpoint's end (standing)
 *   quiesce   on the checkpoint, then on the trusted generation
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
#include <stddef.h>
#include <stdint.h>

#include "integrity/format.h"
#include "integrity/integrity.h"
#include "tapdisk/block/driver.h"

#define TI_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- parked callbacks ------------------------------------------------------ */

/* A parked continuation. The owner of the queue it is parked on wakes it
 * with the outcome in err. */
struct ti_wait {
	void (*cb)(struct ti_wait *w);
	struct ti_wait *next;
	int err;
	bool queued;
};

/* A queue of waiters, woken in the order they were parked. */
struct ti_waitq {
	struct ti_wait *head, *tail;
};

static inline void ti_wait_init(struct ti_wait *w, void (*cb)(struct ti_wait *w))
{
	w->cb = cb;
	w->next = NULL;
	w->err = 0;
	w->queued = false;
}

/* Parks w on q (no-op when w is parked already). */
static inline void ti_park(struct ti_waitq *q, struct ti_wait *w)
{
	if (w->queued)
		return;
	w->queued = true;
	w->next = NULL;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
}

static inline void ti_wake(struct ti_wait *w, int err)
{
	w->err = err;
	w->cb(w);
}

/* Wakes every waiter of q; the queue is detached first, so callbacks may
 * park again (they are called in the next round). */
static inline void ti_wake_all(struct ti_waitq *q, int err)
{
	struct ti_wait *w = q->head;

	q->head = q->tail = NULL;
	while (w) {
		struct ti_wait *next = w->next;

		w->next = NULL;
		w->queued = false;
		ti_wake(w, err);
		w = next;
	}
}

static inline bool ti_waitq_empty(const struct ti_waitq *q)
{
	return !q->head;
}

/* Moves every waiter of src, in order, to the end of dst. */
static inline void ti_waitq_splice(struct ti_waitq *dst, struct ti_waitq *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	src->head = src->tail = NULL;
}

/* ---- what every component reads --------------------------------------------- */

struct td_hmac;

struct ti_core {
	struct td_layer *l;
	struct td_ctx *ctx;
	struct ti_params p;
	uint8_t uuid[16];
	uint8_t *mac_key;      /* secure memory */
	struct td_hmac **macs; /* one per worker thread, then the loop thread's */
	int nmacs;
	struct td_hmac *mac_loop; /* loop thread: journal, superblocks, recovery */
	bool tree;		  /* v2: the freshness tree */
	uint8_t *tree_key;	  /* secure memory */
	struct td_hmac *tree_mac; /* loop thread */
	/* A volume-key rotation (docs/FORMAT.md, "Volume-key rotation with
	 * the integrity layer"): the tags of blocks below tag_boundary are
	 * under the new key's mac subkey (macs_new, mac_loop_new); journal
	 * blocks, superblocks and the tree stay under the keys above until
	 * ti_reenc_rekey_sync switches everything. NULL: no rotation. */
	struct td_hmac **macs_new;
	struct td_hmac *mac_loop_new;
	uint8_t *new_mac_key, *new_tree_key; /* secure memory */
	uint64_t tag_boundary;		     /* atomic; set by the crypt layer */
	/* a journal write (v2) or a checkpoint failed: writes are refused
	 * until the image is reopened (recovery) */
	int broken;
#ifdef TD_TEST_BUILD
	enum ti_test_break test; /* testbreak.c, read at open */
	bool test_switch_stall;	 /* ti_tuning.test_switch_stall */
#endif
};

/* Whether block b's tag is under the rotation's new mac subkey. */
static inline bool ti_tag_is_new(const struct ti_core *c, uint64_t b)
{
	return c->macs_new && b < __atomic_load_n(&c->tag_boundary, __ATOMIC_ACQUIRE);
}

/* The HMAC context for block b's tag: worker's, or (worker < 0) the
 * loop thread's. */
static inline struct td_hmac *ti_tag_mac(const struct ti_core *c, int worker, uint64_t b)
{
	if (worker < 0)
		return ti_tag_is_new(c, b) ? c->mac_loop_new : c->mac_loop;
	return ti_tag_is_new(c, b) ? c->macs_new[worker % c->nmacs] : c->macs[worker % c->nmacs];
}

/* The lower layer: where every byte of the image lives. */
static inline struct td_layer *ti_lower(const struct ti_core *c)
{
	return c->l->below;
}

/* Whether this layer was opened broken on purpose in the given way. */
#ifdef TD_TEST_BUILD
#define TI_TEST_IS(c, mode) ((c)->test == (mode))
enum ti_test_break ti_test_break_mode(void);
#endif

#endif
