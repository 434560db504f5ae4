/* The VBD: the top of a driver chain as clients see it.
 *
 * Takes requests at byte granularity (512-byte aligned), checks them once
 * (the only validation point of the chain), turns partial-block writes
 * into read-modify-write under a block range lock (so two clients writing
 * neighbouring sectors of one block never lose an update), keeps the
 * statistics, and implements pause/unpause (drain + flush + release).
 *
 * All calls on the loop thread. */
#ifndef TD_VBD_H
#define TD_VBD_H

#include <stdbool.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/rangelock.h"

#define VBD_SECTOR 512u
#define VBD_MAX_IO (32u << 20) /* largest READ/WRITE payload accepted */

struct vbd;

struct vbd_io {
	/* filled by the caller */
	enum td_op op;
	unsigned flags; /* TD_REQ_FUA, TD_REQ_NO_UNMAP */
	uint64_t off;
	uint64_t len;
	void *buf; /* READ/WRITE: len bytes, 4096-aligned (see td_buf_get) */
	/* READ/WRITE instead of buf (buf NULL): the caller's own pages, read or
	 * filled in place. Every entry 4096-aligned in address and length, off
	 * too, their lengths summing to len. Only for a chain where
	 * vbd_direct_ok() says so (the memory may change under the request) */
	struct iovec *user_iov;
	int user_iovcnt;
	void (*done)(struct vbd_io *io, int err); /* err: 0 or -errno */
	void *opaque;
	/* private */
	uint64_t t_start;
	struct vbd_io *next;  /* paused list */
	struct td_rl_item rl; /* block range lock */
	struct td_defer defer;
	struct vbd *vbd;
	int parts, err;
	void *bounce;
	size_t bounce_len;
	uint64_t b_off, b_len; /* bounce covers [b_off, b_off + b_len) */
	int stage;
	struct td_req req[3]; /* parts: head and tail pre-reads, then the write */
	struct iovec iov[3];
};

struct vbd_stats {
	uint64_t reads, writes, flushes, discards, write_zeroes;
	uint64_t bytes_read, bytes_written;
	uint64_t errors, in_flight, integrity_failures;
	uint64_t lower_bytes_written, lower_bytes_read, lower_flushes;
	double lat_mean_us, lat_p50_us, lat_p99_us;
};

/* Opens the chain named by spec. err gets a one-line reason on failure. */
int vbd_open(struct td_ctx *ctx, const char *spec, struct vbd **out, char *err, size_t errlen);
/* Frees the VBD; no request may be in flight. A chain still open (not
 * paused) is flushed and quiesced first, so call it at the top of the
 * loop, never from a callback. */
void vbd_close(struct vbd *v);

uint64_t vbd_size(const struct vbd *v);
bool vbd_readonly(const struct vbd *v);
const char *vbd_spec(const struct vbd *v);
const char *vbd_path(const struct vbd *v);
/* The image driver at the bottom of the chain (kept while paused). */
const struct td_driver *vbd_image_driver(const struct vbd *v);
bool vbd_paused(const struct vbd *v);
unsigned vbd_in_flight(const struct vbd *v);

/* True when the chain may be handed memory that someone else can change
 * while the request runs (vbd_io.user_iov over a Xen guest's mapped pages): the
 * image driver alone, no layer above it. A crypt or integrity layer must
 * read the data exactly once into memory of ours (what it encrypts and
 * MACs is what reaches the disk; docs/XEN.md), so such a chain says no;
 * so does a paused VBD. */
bool vbd_direct_ok(const struct vbd *v);

/* Validates and queues io; io->done is always called, from the loop. */
void vbd_submit(struct vbd *v, struct vbd_io *io);

/* Stop taking requests (new ones wait), drain, flush, quiesce the chain
 * from the top down, release the image. cb(opaque, err) runs from the loop
 * when done; on a failed flush the VBD keeps serving and err says why. */
void vbd_pause(struct vbd *v, void (*cb)(void *opaque, int err), void *opaque);
/* Reopen (newspec NULL = the same spec) and restart waiting requests.
 * A new spec must stack the same drivers (the crypt layer cannot be
 * dropped or added) and open the same image: the same size and, when the
 * chain knows one, the same UUID. */
int vbd_unpause(struct vbd *v, const char *newspec, char *err, size_t errlen);

/* Live snapshot of a paused VBD, through its image driver's snapshot
 * capability: TD_SNAP_FILE writes a new image into the file arg (already in
 * the file table: root created it) over the current one and reopens the
 * chain on it; TD_SNAP_NAMED makes snapshot arg of the image and, with
 * resume, reopens the chain unchanged. On failure the VBD goes back to its
 * image (with resume) and err says why. At the top of the loop only (it
 * opens a chain). */
int vbd_snapshot(struct vbd *v, const char *arg, bool resume, char *err, size_t errlen);

/* Online grow of a paused VBD (tap-ctl resize): opens the chain, grows
 * it from the top (td_layer_grow: each layer grows the ones below it
 * first; the crypt header is the commit point, docs/FORMAT.md "Growing"),
 * closes it, and with resume reopens it at the new size. Shrinking is
 * refused; the same size does nothing. Clients connecting afterwards see
 * the new size. At the top of the loop only (it opens a chain). */
int vbd_resize(struct vbd *v, uint64_t new_size, bool resume, char *err, size_t errlen);

/* Fails every request waiting for unpause (used when destroying a paused
 * VBD). */
void vbd_fail_waiting(struct vbd *v, int err);

void vbd_get_stats(const struct vbd *v, struct vbd_stats *out);

#endif
