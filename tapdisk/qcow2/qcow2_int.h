/* Internals of the qcow2 driver, shared by its files:
 *
 *   drv_qcow2.c    driver table, open/close, flush
 *   qcow2_image.c  opening the top image and its backing chain (checks, locks)
 *   qcow2_io.c     file I/O requests (tapdisk/block/fio.h) pointed at chain images
 *   qcow2_cache.c  L2-table and refcount-block cache (LRU, budget, async loads)
 *   qcow2_meta.c   cluster allocation and ordered metadata writeback
 *   qcow2_reftable.c  growing a too small refcount table at open
 *   qcow2_map.c    guest -> host mapping down the chain, the read path
 *   qcow2_write.c  writes, copy-on-write, claims on clusters being allocated
 *   qcow2_zero.c   write-zeroes and discard
 *
 * Everything runs on the loop thread. A request that must wait (a table
 * being loaded, a cluster another request is allocating, a metadata
 * flush) parks a struct td_wait and is called back; nothing blocks. */
#ifndef TD_QCOW2_INT_H
#define TD_QCOW2_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/fio.h"
#include "tapdisk/block/image.h"
#include "tapdisk/block/mread.h"
#include "tapdisk/core/lru.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/qcow2/qcow2_format.h"

#define Q2_MAX_CHAIN 64			    /* images, top included */
#define Q2_MAX_CHAIN_L1 (256ull << 20)	    /* L1 bytes held for the whole chain */
#define Q2_DEFAULT_L2_CACHE (16ull << 20)   /* bytes of L2 tables */
#define Q2_DEFAULT_RB_CACHE (1ull << 20)    /* bytes of refcount blocks */
#define Q2_WRITEBACK_DELAY_NS 5000000000ull /* dirty metadata is written within 5 s */
#define Q2_CLAIM_BUCKETS 1024u

struct q2;
struct q2claim;

/* One image file of the chain: index 0 is the top (the only one we write). */
struct q2img {
	char *path;
	int fd;	    /* O_DIRECT when the filesystem allows it */
	int fd_buf; /* page-cache fd, for reads not aligned to 4096 (file tails) */
	bool raw;
	uint64_t file_size;  /* known size; grows with our writes */
	uint64_t vsize;	     /* guest bytes this image describes */
	struct qcow2_hdr h;  /* qcow2 only */
	uint8_t *l1;	     /* big-endian copy of the first l1_len bytes of the L1 table */
	size_t l1_len;	     /* multiple of 4096 */
	uint64_t l1_entries; /* entries we consult: those covering vsize */
	dev_t dev;
	ino_t ino;
	bool locked; /* holds an OFD lock on fd */
};

/* ---- cache (qcow2_cache.c) ------------------------------------------------ */

struct q2cent {
	uint64_t off;  /* host offset of the table in its image */
	uint32_t img;  /* chain index */
	uint32_t len;  /* the image's cluster size */
	uint8_t *buf;  /* big-endian table */
	bool loading;  /* read in flight; waiters park here */
	bool dirty;    /* changed since the last writeback snapshot */
	bool fresh;    /* created by us and not yet reachable from durable metadata */
	unsigned pins; /* users that keep a pointer across a wait */
	unsigned busy; /* writeback snapshots in flight */
	struct q2cent *hnext, *dprev, *dnext;
	struct td_lru_link lru;
	struct td_wait *waiters;
	struct q2cache *c;
};

struct q2cache {
	struct q2 *q;
	const char *what;
	uint64_t budget, used;
	struct q2cent **hash;
	unsigned nbuckets;
	struct td_lru lru;
	struct q2cent *dirty_head;
	unsigned ndirty;
};

int q2c_init(struct q2cache *c, struct q2 *q, const char *what, uint64_t budget);
void q2c_destroy(struct q2cache *c);
/* 0 with *out ready; -EAGAIN with w parked until the load ends; -errno. */
int q2c_get(struct q2cache *c, uint32_t img, uint64_t off, struct td_wait *w, struct q2cent **out);
/* A new all-zero table that exists only in memory (dirty, fresh). */
struct q2cent *q2c_create(struct q2cache *c, uint32_t img, uint64_t off);
void q2c_mark_dirty(struct q2cent *e);
void q2c_clean(struct q2cent *e);
void q2c_pin(struct q2cent *e);
void q2c_unpin(struct q2cent *e);
/* Drops clean entries beyond the budget; asks for a writeback when only
 * dirty ones are left. */
void q2c_shrink(struct q2cache *c);

/* ---- I/O (qcow2_io.c) ------------------------------------------------------- */

/* The requests are tapdisk/block/fio.h's (td_fio_get(&q->fio, ...)); these
 * point them at a chain image. */
/* Reads o->len bytes at host of image img; the part past the end of the
 * file reads as zeros. */
void q2io_read(struct td_fio *o, uint32_t img, uint64_t host);
/* Writes o->len bytes at host of the top image. */
void q2io_write(struct td_fio *o, uint64_t host);
/* The same with RWF_DSYNC: durable when it completes. */
void q2io_write_dsync(struct td_fio *o, uint64_t host);
void q2io_fsync(struct td_fio *o);

/* ---- allocation and writeback (qcow2_meta.c) ---------------------------------- */

struct q2round;

int q2_meta_init(struct q2 *q);
/* Hands out one fresh cluster at the end of the file, its refcount set to
 * 1 in the cache. -EAGAIN with w parked when a refcount block must be
 * loaded first; -ENOSPC when the refcount table is full. */
int q2_alloc_cluster(struct q2 *q, struct td_wait *w, uint64_t *host);
/* Sets an L1 entry of the top image in memory. */
void q2_l1_set(struct q2 *q, uint64_t idx, uint64_t entry);
/* Calls w back once every change made before this call is durable. */
void q2_meta_sync(struct q2 *q, struct td_wait *w);
/* Something became dirty: make sure it is written within the delay. */
void q2_meta_dirtied(struct q2 *q);
/* Starts a writeback round now if none is running (cache pressure). */
void q2_meta_kick(struct q2 *q);
/* Quiesce: the last writeback round, the file trimmed and synced, then
 * done(q, err) from the loop. No writeback starts afterwards. */
void q2_meta_quiesce(struct q2 *q, void (*done)(struct q2 *q, int err));
/* Close without a quiesce (failed open, tool error path): no writeback
 * starts any more, nothing is written. */
void q2_meta_stop(struct q2 *q);

/* ---- mapping and reads (qcow2_map.c) ------------------------------------------- */

/* Reads are tapdisk/block/mread.h's (struct td_mread): level 0 for guest
 * reads, 1 for copy-on-write sources. */
/* Maps the first piece of [g, g+n) at chain level `level`: kind, and for
 * data the image and host offset; *len gets the piece's length. */
int q2_map(struct q2 *q, uint32_t level, uint64_t g, uint64_t n, struct td_wait *w,
	   struct td_ext *out);
/* A read state from the pool, set up for this image (td_mread_init). */
struct td_mread *q2rd_get(struct q2 *q);
void q2rd_put(struct td_mread *r);
/* Logs a per-cluster problem (rate limited). */
void q2_log_bad(struct q2 *q, uint32_t img, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- writes (qcow2_write.c) --------------------------------------------------------- */

void q2_write(struct td_layer *l, struct td_req *req);
/* zero_write: the request writes zeros; clusters reading as zeros are skipped. */
void q2_write_start(struct q2 *q, struct td_req *req, bool zero_write);
/* The size of a write state (struct q2wr is private to qcow2_write.c). */
size_t q2_write_state_size(void);
/* Claims on guest clusters being allocated or changed: -EAGAIN with w
 * parked when another request holds gc; *held tracks ours. */
int q2_claim_or_wait(struct q2 *q, struct q2claim *mine, bool *held, uint64_t gc,
		     struct td_wait *w);
void q2_claim_release(struct q2 *q, struct q2claim *c);
/* A host cluster guest data may go to (not metadata, inside the file). */
bool q2_host_ok(struct q2 *q, uint64_t host);

/* ---- write-zeroes and discard (qcow2_zero.c) ---------------------------------------- */

void q2_write_zeroes(struct td_layer *l, struct td_req *req);
void q2_discard(struct td_layer *l, struct td_req *req);

/* ---- the driver's state ------------------------------------------------------------ */

struct q2claim {
	uint64_t gc; /* guest cluster being allocated */
	struct q2claim *hnext;
	struct td_wait *waiters;
};

struct q2 {
	struct td_layer *l;
	struct td_ctx *ctx;
	struct q2img *img[Q2_MAX_CHAIN];
	uint32_t nimg;
	bool writable;
	struct td_confine confine; /* where backing files may come from */
	struct td_image_opts opts; /* cache=, backing-dir= */
	struct q2cache l2c, rbc;

	/* top image, writable only */
	uint8_t *rt; /* refcount table, big-endian, rt_len bytes */
	size_t rt_len;
	uint64_t l1_dirty_lo, l1_dirty_hi; /* byte ranges of the in-memory tables to write */
	uint64_t rt_dirty_lo, rt_dirty_hi;
	uint64_t alloc_next;   /* next cluster the allocator hands out */
	uint64_t alloc_floor;  /* the first cluster we may ever allocate */
	bool alloc_full;       /* the refcount table is full: logged once */
	uint64_t prealloc_end; /* the file is this long (sparse tail past alloc_next) */
	struct q2claim *claims[Q2_CLAIM_BUCKETS];

	/* writeback */
	struct q2round *round;
	struct td_wait *sync_waiters; /* for the next round */
	bool round_wanted;
	struct td_timer wb_timer;
	struct td_defer round_defer;
	bool closing;
	struct td_wait quiesce_wait;
	void (*quiesce_done)(struct q2 *q, int err);

	/* pools of per-request state */
	struct td_fio_pool fio;
	struct td_pool rd_pool, wr_pool;
	unsigned log_left;
	uint8_t *zeros; /* one top-image cluster of zeros */
};

/* qcow2_image.c */
int q2_open_chain(struct q2 *q, const char *path, char *err, size_t errlen);
void q2_close_chain(struct q2 *q);
/* qcow2_reftable.c: grows a refcount table too small for the image's
 * future (open time, synchronous). 0, or -errno with nothing referenced
 * changed. */
int q2_reftable_grow(struct q2 *q, char *why, size_t whylen);
/* qcow2_grow.c: grows the top image's virtual size (td_driver.grow). */
int q2_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen);

static inline uint64_t q2_l1_entry(const struct q2img *im, uint64_t idx)
{
	return qcow2_be64(im->l1 + 8 * idx);
}

#endif
