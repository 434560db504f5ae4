/* Internals of the vmdk driver, shared by its files:
 *
 *   drv_vmdk.c    driver table, options, open/close, flush, quiesce
 *   vmdk_open.c   opening the image: sparse file or descriptor, extents,
 *                 their files (confined like backing files), every check
 *   vmdk_io.c     file I/O requests (tapdisk/block/fio.h) pointed at extent
 *                 files
 *   vmdk_cache.c  grain tables, both copies, loaded and reconciled
 *                 (docs/FORMAT-vmdk.md, "Redundant tables"), LRU
 *   vmdk_read.c   guest -> extent -> grain mapping and the read path,
 *                 compressed grains inflated on the worker pool
 *   vmdk_write.c  writes and write-zeroes: claims, grain allocation
 *   vmdk_meta.c   ordered writeback rounds of grain tables, flush, the
 *                 file kept ahead of the allocator
 *   vmdk_format.c the on-disk format, pure functions (fuzzed)
 *
 * Everything runs on the loop thread, except the inflate of compressed
 * grains (worker pool). A request that must wait (a grain table being
 * loaded, a grain another request is allocating, a round) parks a struct
 * td_wait and is called back; nothing blocks. */
#ifndef TD_VMDK_INT_H
#define TD_VMDK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/fio.h"
#include "tapdisk/block/image.h"
#include "tapdisk/core/lru.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/vmdk/vmdk_format.h"

#define VM_DEFAULT_CACHE (16ull << 20)	    /* bytes of grain tables (both copies) */
#define VM_WRITEBACK_DELAY_NS 5000000000ull /* dirty tables are written within 5 s */
#define VM_CLAIM_BUCKETS 1024u
#define VM_ZERO_LEN (1u << 20) /* the shared buffer of zeros */

struct vm;

/* One open file: the descriptor, a sparse extent, a flat extent. */
struct vmfile {
	char *path;
	int fd;	       /* O_DIRECT when the filesystem allows it */
	int fd_buf;    /* page cache: tables, unaligned pieces */
	uint64_t size; /* known size; grows with our writes */
	uint64_t phys; /* the file is at least this long (ours: a sparse tail) */
	dev_t dev;
	ino_t ino;
	bool writable, locked;
	bool dirty; /* a write to it completed since the last sync started */
};

struct vmext {
	uint32_t idx;
	enum vmdk_ext_type type;
	enum vmdk_access access;
	uint64_t start, len; /* guest bytes */
	struct vmfile *f;    /* NULL for ZERO */
	uint64_t flat_off;   /* bytes into the file (FLAT) */
	/* SPARSE */
	struct vmdk_hdr h;
	uint32_t *gd;	   /* the GT of each GD entry, as we use it (0: none) */
	uint32_t *rgd;	   /* the redundant GT, 0 when none */
	uint64_t *gt_offs; /* byte offsets of every GT (both copies), sorted */
	size_t ngt_offs;
	uint64_t alloc_next; /* where the next grain goes */
	bool alloc_full;
};

/* ---- grain table cache (vmdk_cache.c) ------------------------------------------ */

struct vmgt {
	uint32_t ext;
	uint64_t gti;
	uint8_t *p, *r; /* primary and redundant copies (on-disk order); r NULL when none */
	bool loading, dirty;
	unsigned pins, busy;
	unsigned pending_loads;
	int load_err;
	struct td_wait *waiters;
	struct vmgt *hnext;
	struct td_lru_link lru;
};

struct vmcache {
	uint64_t budget, used;
	struct vmgt **hash;
	unsigned nbuckets;
	struct td_lru lru; /* head: most recently used */
	unsigned ndirty;
};

int vmc_init(struct vm *v, uint64_t budget);
void vmc_destroy(struct vm *v);
/* 0 with *out ready; -EAGAIN with w parked until the load ends; -errno
 * (-EIO: the GD entry is 0 or the load failed). */
int vmc_get(struct vm *v, struct vmext *x, uint64_t gti, struct td_wait *w, struct vmgt **out);
void vmc_pin(struct vmgt *g);
void vmc_unpin(struct vm *v, struct vmgt *g);
void vmc_mark_dirty(struct vm *v, struct vmgt *g);
/* Drops clean entries beyond the budget; asks for a round when only
 * dirty ones are left. */
void vmc_shrink(struct vm *v);
/* Visits every dirty entry (writeback). */
void vmc_for_dirty(struct vm *v, void (*fn)(struct vm *v, struct vmgt *g, void *opaque),
		   void *opaque);
void vmc_clean(struct vm *v, struct vmgt *g);

static inline uint32_t vm_gte(const struct vmgt *g, uint64_t i)
{
	return vmdk_le32(g->p + 4 * i);
}

/* ---- I/O (vmdk_io.c) ---------------------------------------------------------- */

/* The requests are tapdisk/block/fio.h's (td_fio_get(&v->fio, ...)); these
 * point them at a file. */
/* Reads o->len bytes at host of f; what lies past the end of the file
 * reads as zeros. */
void vmio_read(struct td_fio *o, struct vmfile *f, uint64_t host);
/* Writes o->len bytes at host of f (RWF_DSYNC when dsync). */
void vmio_write(struct td_fio *o, struct vmfile *f, uint64_t host, bool dsync);
void vmio_fsync(struct td_fio *o, struct vmfile *f);
/* The file a request was pointed at. */
static inline struct vmfile *vmio_file(const struct td_fio *o)
{
	return o->file;
}

/* ---- reads (vmdk_read.c) ------------------------------------------------------ */

void vm_read(struct td_layer *l, struct td_req *req);
/* The extent holding guest byte pos. */
struct vmext *vm_ext_at(struct vm *v, uint64_t pos);
/* A grain at host (bytes) of x, len bytes, clear of every GT? */
bool vm_clear_of_gts(const struct vmext *x, uint64_t host, uint64_t len);
void vm_log_bad(struct vm *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t vm_read_state_size(void);

/* ---- writes (vmdk_write.c) ---------------------------------------------------- */

void vm_write(struct td_layer *l, struct td_req *req);
void vm_write_zeroes(struct td_layer *l, struct td_req *req);
size_t vm_write_state_size(void);

/* ---- writeback (vmdk_meta.c) -------------------------------------------------- */

void vm_meta_init(struct vm *v);
/* Calls w back once everything written (completed) before this call is
 * durable: data fdatasynced, grain tables written (both copies) and synced. */
void vm_meta_sync(struct vm *v, struct td_wait *w);
/* A table became dirty: make sure it is written within the delay. */
void vm_meta_dirtied(struct vm *v);
/* Starts a round now if none runs (cache pressure). */
void vm_meta_kick(struct vm *v);
/* A grain for x: its host offset, the file kept ahead. -ENOSPC. */
int vm_alloc_grain(struct vm *v, struct vmext *x, uint64_t *host);
/* The last round, the files trimmed and synced, then done(v, err) from
 * the loop. */
void vm_meta_quiesce(struct vm *v, void (*done)(struct vm *v, int err));
void vm_meta_stop(struct vm *v);

/* ---- opening (vmdk_open.c) ---------------------------------------------------- */

int vm_open_image(struct vm *v, const char *path, char *err, size_t errlen);
void vm_close_image(struct vm *v);

/* ---- the driver's state ------------------------------------------------------ */

struct vmclaim {
	uint64_t key; /* extent << 40 | grain */
	struct vmclaim *hnext;
	struct td_wait *waiters;
};

struct vm {
	struct td_layer *l;
	struct td_ctx *ctx;
	bool writable;
	char *path;
	struct vmfile *files[VMDK_MAX_EXTENTS + 1]; /* [0] the file the spec names */
	unsigned nfiles;
	struct vmext *ext;
	unsigned next;
	uint64_t size;	   /* guest bytes of all extents */
	uint64_t gd_total; /* GD entries of all sparse extents */
	struct td_confine confine;
	bool confined;
	struct td_image_opts opts; /* cache=, extent-dir= (backing-dir=) */
	bool compressed;	   /* some extent is compressed (read-only) */
	struct vmcache cache;
	struct vmclaim *claims[VM_CLAIM_BUCKETS];

	/* writeback */
	struct vmround *round;
	struct td_wait *sync_waiters; /* for the next round */
	bool round_wanted, closing;
	struct td_timer wb_timer;
	struct td_defer round_defer;
	struct td_wait quiesce_wait;
	unsigned quiesce_wait_pending;
	void (*quiesce_done)(struct vm *v, int err);

	struct td_fio_pool fio;
	struct td_pool rd_pool, wr_pool;
	unsigned log_left;
	uint8_t *zeros; /* VM_ZERO_LEN bytes of zeros */
};

#endif
