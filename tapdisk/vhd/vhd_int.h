/* Internals of the vhd driver, shared by its files:
 *
 *   drv_vhd.c     driver table, options, open/close, read, flush, snapshot
 *   vhd_image.c   opening the top image and its parent chain (checks, locks, locators)
 *   vhd_io.c      file I/O requests (tapdisk/block/fio.h) pointed at chain images
 *   vhd_bitmap.c  the sector-bitmap cache (LRU, async loads, the all-ones bitset)
 *   vhd_read.c    guest -> file mapping down the chain, the read path
 *   vhd_write.c   writes and write-zeroes, block claims, allocation
 *   vhd_meta.c    the file's end (footer moves, trim), metadata rounds, quiesce
 *   vhd_create.c  new differencing images (live snapshots)
 *
 * Everything runs on the loop thread. A request that must wait (a bitmap
 * being loaded, a block another request is allocating, the footer moving,
 * a metadata round) parks a struct td_wait and is called back; nothing
 * blocks. docs/FORMAT-vhd.md has the on-disk rules. */
#ifndef TD_VHD_INT_H
#define TD_VHD_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/fio.h"
#include "tapdisk/block/image.h"
#include "tapdisk/block/mread.h"
#include "tapdisk/core/lru.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/vhd/vhd_format.h"

#define VHD_MAX_CHAIN 32		  /* images, top included */
#define VHD_DEFAULT_BM_CACHE (4ull << 20) /* bytes of partial bitmaps held */
#define VHD_CLAIM_BUCKETS 256u
#define VHD_BM_BUCKETS 1024u

struct vhd;

/* One image file of the chain: index 0 is the top (the only one we write). */
struct vimg {
	char *path;
	int fd;	    /* data and metadata I/O: O_DIRECT when 512-byte units work */
	int fd_buf; /* page-cache descriptor, used at open only */
	bool direct;
	bool locked;
	bool fixed, diff;
	bool footer_from_copy; /* the last 512 bytes had no cookie */
	uint64_t file_size;
	uint64_t footer_off; /* where the footer is (file_size - 512) */
	uint64_t vsize;	     /* guest bytes this image describes */
	dev_t dev;
	ino_t ino;
	struct vhd_footer f;
	uint8_t footer_raw[VHD_FOOTER_LEN]; /* as read (checksum verified): rewritten verbatim */
	struct vhd_header h;		    /* dynamic / differencing */
	uint64_t hdr_off;
	uint8_t *bat; /* big-endian copy of the BAT, bat_len bytes (4096-aligned buffer) */
	size_t bat_len;
	uint8_t *full; /* per block: its bitmap is known to be all ones */
};

static inline uint32_t v_bat(const struct vimg *im, uint64_t blk)
{
	return vhd_be32(im->bat + 4 * blk);
}

static inline bool v_full(const struct vimg *im, uint64_t blk)
{
	return (im->full[blk >> 3] >> (blk & 7)) & 1;
}

static inline void v_set_full(struct vimg *im, uint64_t blk)
{
	im->full[blk >> 3] |= (uint8_t)(1u << (blk & 7));
}

/* ---- I/O (vhd_io.c) ----------------------------------------------------------- */

/* The requests are tapdisk/block/fio.h's (td_fio_get(&v->fio, ...)); these
 * point them at a chain image. */
void vio_read(struct td_fio *o, uint32_t img, uint64_t off);
/* Writes to the top image; dsync: RWF_DSYNC (durable when it completes). */
void vio_write(struct td_fio *o, uint64_t off, bool dsync);
void vio_fsync(struct td_fio *o);

/* ---- the bitmap cache (vhd_bitmap.c) -------------------------------------------- */

struct vbm {
	uint32_t img;
	uint32_t blk;
	uint8_t *buf; /* h.bitmap_bytes, 4096-aligned */
	bool loading;
	bool dirty;    /* changed since the last round's snapshot */
	unsigned busy; /* round snapshots in flight */
	unsigned pins; /* writes that will set bits in it */
	struct td_wait *waiters;
	struct vbm *hnext, *dprev, *dnext;
	struct td_lru_link lru;
	struct td_fio *load;
};

struct vbmcache {
	uint64_t budget, used;
	struct vbm *hash[VHD_BM_BUCKETS];
	struct td_lru lru;
	struct vbm *dirty_head;
	unsigned ndirty;
};

/* The bitmap of block blk of image img (allocated, not known full):
 * 0 with *out (it may have turned out full: then *out is NULL and the
 * full bit is set); -EAGAIN with w parked until the load ends; -errno. */
int vbm_get(struct vhd *v, uint32_t img, uint32_t blk, struct td_wait *w, struct vbm **out);
/* A bitmap that is now on disk as buf (a new block): cached, clean.
 * Takes buf (a td_buf of bitmap_bytes). */
void vbm_insert(struct vhd *v, uint32_t img, uint32_t blk, uint8_t *buf);
void vbm_pin(struct vbm *e);
void vbm_unpin(struct vhd *v, struct vbm *e);
void vbm_mark_dirty(struct vhd *v, struct vbm *e);
/* Unlinks e from the dirty list (a round took its snapshot). */
void vbm_take_dirty(struct vhd *v, struct vbm *e);
/* A round's snapshot of e is done (busy was raised by the round). */
void vbm_unbusy(struct vhd *v, struct vbm *e);
void vbm_cache_free(struct vhd *v);

/* ---- reads (vhd_read.c) ----------------------------------------------------------- */

/* Reads are tapdisk/block/mread.h's (struct td_mread), through v_map. */
void v_read(struct td_layer *l, struct td_req *req);
size_t v_read_state_size(void);

/* ---- writes (vhd_write.c) ---------------------------------------------------------- */

void v_write(struct td_layer *l, struct td_req *req);
void v_write_zeroes(struct td_layer *l, struct td_req *req);
size_t v_write_state_size(void);

struct vclaim {
	uint32_t blk;
	struct vclaim *hnext;
	struct td_wait *waiters;
};

/* ---- the file's end and metadata rounds (vhd_meta.c) --------------------------------- */

int v_meta_init(struct vhd *v);
void v_meta_free(struct vhd *v);
/* BAT entry blk of the top image is in memory only (its sector dirty or
 * being written): a write to it must join a round before its ack. */
bool v_bat_unsettled(const struct vhd *v, uint32_t blk);
/* A place for a new block of the top image (its bitmap's offset), inside
 * the file: -EAGAIN with w parked while the footer moves further out;
 * -ENOSPC past what 32-bit sector offsets address. */
int v_alloc_block(struct vhd *v, struct td_wait *w, uint64_t *host);
/* Sets BAT entry blk of the top image in memory (dirty for the next round). */
void v_bat_set(struct vhd *v, uint32_t blk, uint64_t host);
/* Calls w back once a round that starts after this call has written
 * every dirty BAT sector and bitmap (after an fdatasync of the data);
 * fua: and made them durable. */
void v_meta_join(struct vhd *v, struct td_wait *w, bool fua);
/* A guest flush: fdatasync of the top image, then w. */
void v_meta_flush(struct vhd *v, struct td_wait *w);
/* Quiesce: a last round if anything is dirty, the footer moved back
 * after the last block and the file cut there, synced; then done(v, err)
 * from the loop. */
void v_meta_quiesce(struct vhd *v, void (*done)(struct vhd *v, int err));
/* Appends the footer at the end of the file (open: the last 512 bytes had
 * no cookie). Synchronous. */
int v_footer_append(struct vhd *v, char *why, size_t whylen);

/* ---- the driver's state ---------------------------------------------------------------- */

struct vhd {
	struct td_layer *l;
	struct td_ctx *ctx;
	struct vimg *img[VHD_MAX_CHAIN];
	uint32_t nimg;
	bool writable;
	struct td_confine confine;
	struct td_image_opts opts; /* cache=, backing-dir= */
	struct vbmcache bmc;
	struct vclaim *claims[VHD_CLAIM_BUCKETS];

	/* the top image's end (vhd_meta.c) */
	uint8_t *footer_buf; /* the footer, encoded, in a 4096-aligned buffer */
	uint64_t alloc_next; /* the lowest offset a new block may start at */
	uint64_t alloc_end;  /* end of the last block allocated, 0: none */
	uint64_t open_end;   /* the file's end at open (rounded up to 512) */
	uint64_t open_footer_off;
	bool moving;
	struct td_wait *move_waiters;
	uint64_t move_to;
	bool alloc_full; /* logged once */

	/* rounds */
	uint8_t *bat_dirty; /* one bit per BAT sector */
	uint8_t *bat_busy;  /* one bit per BAT sector: in the running round */
	uint32_t bat_sectors;
	unsigned bat_ndirty;
	struct vround *round;
	struct td_wait *round_waiters;
	bool round_fua;
	struct td_defer round_defer;
	bool round_scheduled;
	bool closing;
	struct td_wait quiesce_wait;
	void (*quiesce_done)(struct vhd *v, int err);

	struct td_fio_pool fio;
	struct td_pool rd_pool, wr_pool;
	unsigned log_left;
	uint8_t *zeros; /* VHD_ZERO_BUF bytes of zeros, for write-zeroes */
};

#define VHD_ZERO_BUF (1u << 20)

void v_log_bad(struct vhd *v, uint32_t img, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* vhd_image.c */
int v_open_chain(struct vhd *v, const char *path, char *err, size_t errlen);
void v_close_chain(struct vhd *v);

#endif
