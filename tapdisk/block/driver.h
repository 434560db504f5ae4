/* The stackable driver interface.
 *
 * A VBD is a chain of layers, top to bottom, e.g. crypt -> integrity ->
 * qcow2. Each layer exports a range of 4 KiB blocks numbered from 0 and
 * holds the layer below it. A driver that leaves a callback NULL passes
 * that request straight to the layer below, so a driver holds only what
 * it changes.
 *
 * Requests are validated once, at the top of the chain (tapdisk/block/vbd.c):
 * offsets and lengths are multiples of TD_BLOCK_SIZE and inside the
 * layer's size, buffers are 4096-aligned. Drivers trust that. Requests a
 * layer sends down are its own responsibility to keep valid.
 *
 * Every request ends through exactly one path: td_req_complete() (or
 * td_req_complete_later() when the driver has no I/O to wait for), which
 * calls req->done on the loop thread. Drivers never block and never start
 * threads: CPU work goes to ctx->workers. */
#ifndef TD_DRIVER_H
#define TD_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "tapdisk/block/files.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/loop.h"
#include "tapdisk/core/workers.h"

#define TD_BLOCK_SIZE 4096u
#define TD_BLOCK_SHIFT 12

enum td_op {
	TD_OP_READ,
	TD_OP_WRITE,
	TD_OP_FLUSH,
	TD_OP_DISCARD,
	TD_OP_WRITE_ZEROES,
};

/* request flags */
#define TD_REQ_FUA 0x1u	     /* write: durable before completion */
#define TD_REQ_NO_UNMAP 0x2u /* write-zeroes: keep the space allocated */

struct td_req {
	enum td_op op;
	unsigned flags;
	uint64_t off; /* bytes, block aligned */
	uint64_t len; /* bytes, block aligned; 0 for flush */
	struct iovec *iov;
	int iovcnt;
	void (*done)(struct td_req *req, int err);
	void *opaque; /* the submitter's */
	/* private to the completion path */
	int err;
	struct td_defer defer;
};

/* A request over one buffer (iov is the caller's, kept alive with req):
 * the fields a submitter sets; buf NULL for a flush. */
static inline void td_req_init1(struct td_req *req, struct iovec *iov, enum td_op op, uint64_t off,
				void *buf, uint64_t len, void (*done)(struct td_req *, int),
				void *opaque)
{
	req->op = op;
	req->flags = 0;
	req->off = off;
	req->len = buf ? len : 0;
	iov->iov_base = buf;
	iov->iov_len = buf ? len : 0;
	req->iov = buf ? iov : NULL;
	req->iovcnt = buf ? 1 : 0;
	req->done = done;
	req->opaque = opaque;
}

struct td_layer;
struct td_ctx;

/* What a live snapshot of an image driver makes (tap-ctl snapshot). */
enum td_snapshot_kind {
	TD_SNAP_NONE = 0,
	TD_SNAP_FILE,  /* a new file becomes the top image; the old one its backing file */
	TD_SNAP_NAMED, /* a named snapshot inside the image's own store */
};

struct td_driver {
	const char *name;
	const char *alias; /* may be NULL */
	const char *summary;
	bool is_image; /* terminal driver: consumes the PATH of the spec */
	size_t priv_size;

	/* Image drivers get the path; stacking drivers get NULL and find
	 * l->below already open. Must set l->size. Negative errno with a
	 * one-line message in err. May do synchronous I/O through
	 * td_layer_sync_io(): open is only ever called at the top of the loop
	 * (program start, a tool, a td_loop_task), never inside a callback. */
	int (*open)(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen);
	/* Quiesce, before a pause or a shutdown: the chain is drained (no
	 * request in flight anywhere) and a FLUSH went through it. Make
	 * everything this layer keeps durable (a final checkpoint, a metadata
	 * writeback), stop its background work (timers, workers), then call
	 * td_layer_quiesced(l, err) from the loop, never from inside this call.
	 * It may still send requests to the layers below: the chain quiesces
	 * from the top down (td_chain_quiesce). NULL: nothing to do. */
	void (*quiesce)(struct td_layer *l);
	/* Frees what open() allocated. No I/O: after a quiesce there is none
	 * to do; without one (an open that failed half-way, a tool's error
	 * path) the image is left as a crash would leave it, which the formats
	 * recover from. No request may be in flight. */
	void (*close)(struct td_layer *l);

	void (*read)(struct td_layer *l, struct td_req *req);
	void (*write)(struct td_layer *l, struct td_req *req);
	void (*flush)(struct td_layer *l, struct td_req *req);
	void (*discard)(struct td_layer *l, struct td_req *req);
	void (*write_zeroes)(struct td_layer *l, struct td_req *req);

	/* ---- capabilities: what the daemon asks instead of a driver's name ---- */

	/* Image drivers: the identity of the image this layer opened
	 * (td_file_identity for files), which a loaded key is bound to. */
	int (*identity)(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen);
	/* Layers that know the image's UUID (from an authenticated header). */
	int (*uuid)(const struct td_layer *l, uint8_t uuid[16]);
	/* The image is reached over the network (the sandbox must allow it);
	 * there is no local file. */
	bool needs_network;
	/* The layer takes a volume key (ctx->get_key) and keeps its header in
	 * the layer below (crypt): the key manager reaches that header by
	 * dropping this layer from a spec. */
	bool needs_key;
	/* Live snapshot of a paused VBD's image (the chain is closed).
	 * TD_SNAP_FILE: write into new_fd a new image at new_path whose backing
	 * file is the image at path; the chain then reopens on new_path.
	 * TD_SNAP_NAMED: make snapshot `name` of the image at path; the chain
	 * reopens unchanged. */
	enum td_snapshot_kind snapshot_kind;
	int (*snapshot)(struct td_ctx *ctx, const char *path, const char *opts, const char *arg,
			int new_fd, char *err, size_t errlen);
	/* Is arg acceptable to snapshot() (checked before the VBD pauses)? */
	bool (*snapshot_arg_ok)(const char *arg);
	/* The image is memory this process created (a RAM disk, kept in its
	 * file table across a pause): there are no files for tap-ctl to
	 * pass it (unpause -a). */
	bool memory_image;
	/* Image drivers: NULL when the image outlives this process; else why
	 * it does not (an anonymous RAM disk is born empty in each process and
	 * gone with it), one sentence that says what to use instead. Nothing
	 * another program wrote (a crypt header from vdkey) can be on such an
	 * image: crypt and vdkey refuse it with this reason. */
	const char *(*ephemeral)(const struct td_layer *l);
	/* Online grow (tap-ctl resize): make this layer export at least
	 * new_size bytes (a stacking layer: exactly new_size), growing the
	 * layers below first through td_layer_grow(). Called on a freshly
	 * opened, idle chain of a paused VBD, at the top of the loop (like
	 * open: synchronous I/O through td_layer_sync_io allowed); the chain is
	 * closed without a quiesce afterwards, so leave everything durable and
	 * set l->size. A crash at any point must leave the old or the new size,
	 * both readable (docs/FORMAT.md "Growing"). NULL: the layer cannot
	 * grow, and a resize through it fails naming it. */
	int (*grow)(struct td_layer *l, uint64_t new_size, char *err, size_t errlen);
};

struct td_stats_shared; /* tapdisk/core/stats.h */
struct td_qos_ctl;	/* tapdisk/qos/qos.h */
struct td_volkey;	/* crypt/backend/volkey.h */

/* Where a layer keeps what must survive the image (integrity: the highest
 * generation this host has seen of each image, which detects a rollback):
 * trusted storage outside the image, chosen by the program (tapdisk and
 * vdkey: the key manager's state directory, keymgr/statedir.h). NULL: none
 * (rollback detection off: tools and tests that do not need it). */
struct td_trust_ops {
	/* open (creating) the record of uuid now, while the process may */
	int (*gen_prepare)(const uint8_t uuid[16], char *err, size_t errlen);
	/* 0 with *gen = 0 when none is recorded */
	int (*gen_read)(const uint8_t uuid[16], uint64_t *gen, char *err, size_t errlen);
	/* durable when it returns (blocking: call it from a worker) */
	int (*gen_write)(const uint8_t uuid[16], uint64_t gen, char *err, size_t errlen);
};

/* How a layer that needs a volume key (crypt) gets one: the program that
 * builds the chain decides (tapdisk: the kernel keyring, bound to the
 * image's identity). uuid is the image's, from its header; id the
 * identity of the image the chain opened (td_layer_identity), where its
 * path for messages. 0 with *out set, or -errno with a message. */
typedef int (*td_key_fn)(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			 const char *where, struct td_volkey **out, char *err, size_t errlen);

/* What every layer of one process shares. */
struct td_ctx {
	struct td_loop *loop;
	struct td_workers *workers;
	struct td_io *io;
	struct td_stats_shared *stats;
	bool readonly;
	bool nolock;		/* inspection tools: take no image lock */
	struct td_files *files; /* NULL: open by path (tools); see tapdisk/block/files.h */
	td_key_fn get_key;	/* NULL: no keys (crypt refuses to open) */
	void *key_opaque;
	const struct td_trust_ops *trust; /* NULL: none */
	/* The process's QoS state (tapdisk/qos/qos.h): live limits that
	 * outlive a pause, the host arbiter; set by the daemon. NULL: a qos
	 * layer uses its spec options only. */
	struct td_qos_ctl *qos;
	/* Volume-key rotation (docs/FORMAT.md, "Volume-key rotation"): the
	 * new key of an image being re-encrypted (NULL: none can be had);
	 * key_rotated (may be NULL) is told, on the loop, once the header is
	 * the new key's; rekey: this process runs the rotation's mover (the
	 * daemon; tools only read and write with both keys). */
	td_key_fn get_next_key;
	void (*key_rotated)(void *key_opaque, const uint8_t uuid[16]);
	bool rekey;
};

struct td_layer {
	const struct td_driver *drv;
	struct td_layer *below;
	struct td_ctx *ctx;
	void *priv;
	uint64_t size;	 /* exported bytes, multiple of TD_BLOCK_SIZE */
	char *opts;	 /* driver options from the spec, or NULL */
	const void *arg; /* set by the layer that inserted this one, for open() */
	/* private to tapdisk/block/chain.c: the quiesce under way */
	void (*quiesced)(struct td_layer *l, int err);
	void *quiesce_opaque;
};

void td_layer_submit(struct td_layer *l, struct td_req *req);
void td_req_complete(struct td_req *req, int err);
/* Completes from the loop, for drivers that finish without I/O. */
void td_req_complete_later(struct td_ctx *ctx, struct td_req *req, int err);

/* A layer's quiesce is done (see td_driver.quiesce). */
void td_layer_quiesced(struct td_layer *l, int err);

/* Synchronous I/O for open paths and tools (runs the loop until done, so
 * only at the top of the loop: -EDEADLK from inside a callback). */
int td_layer_sync_io(struct td_layer *l, enum td_op op, uint64_t off, void *buf, uint64_t len,
		     unsigned flags);

/* The identity of the image below l (the first layer down that has one).
 * -ENOTSUP when no layer has one. */
int td_layer_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen);
/* The image UUID the chain from l down knows, if any: 0 or -ENOENT. */
int td_layer_uuid(const struct td_layer *l, uint8_t uuid[16]);
/* Grows l (td_driver.grow) to export at least new_size bytes; nothing to
 * do when it already does and is an image layer. -ENOTSUP with a message
 * naming the driver when it has no grow operation. */
int td_layer_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen);
/* The bottom (image) layer. */
struct td_layer *td_layer_image(struct td_layer *l);
/* Why the image below l does not outlive this process (td_driver.ephemeral),
 * or NULL. */
const char *td_layer_ephemeral(const struct td_layer *l);

/* The drivers a spec may name (tapdisk/block/spec.c): a NULL-terminated
 * list the program sets once, before parsing any spec — the production
 * list of tapdisk/registry, or a test build's list with its test drivers.
 * The layers below never name a driver; a layer that inserts another
 * (crypt inserting integrity) refers to it directly. */
void td_drivers_set(const struct td_driver *const *list);
const struct td_driver *td_driver_find(const char *name);
const struct td_driver *const *td_driver_list(void);

#endif
