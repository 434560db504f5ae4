/* qcow2: QEMU's copy-on-write image format, read and written so that
 * qemu-img can check, convert and read what we write at any time the
 * image is not open (docs/FORMAT-qcow2.md). v2 and v3 are read, v3 is
 * written; backing chains of raw and qcow2 images of any depth (up to 64).
 * Compressed clusters, qcow2's own encryption, external data files,
 * extended L2 entries and internal snapshots (for writing) are refused
 * with a message: our encryption is the crypt layer above.
 *
 * The pieces: qcow2_int.h lists the files. This one is the driver table,
 * open/close, read and flush. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2.h"
#include "tapdisk/qcow2/qcow2_int.h"
#include "tapdisk/core/util.h"

/* Driver options (tapdisk/block/image.h): cache=SIZE (bytes of L2 tables
 * held), backing-dir=DIR (repeatable: a directory backing files may come
 * from, besides the top image's own and the host's, tapdisk/block/files.h). */
static void quiesced(struct q2 *q, int err)
{
	if (err < 0)
		td_err("qcow2: '%s': final metadata writeback failed: %s (the image may leak "
		       "clusters; 'qemu-img check -r leaks' repairs that)",
		       q->img[0]->path, strerror(-err));
	td_layer_quiesced(q->l, err);
}

static void q2_quiesce(struct td_layer *l)
{
	q2_meta_quiesce(l->priv, quiesced);
}

static void q2_close(struct td_layer *l)
{
	struct q2 *q = l->priv;

	td_image_opts_free(&q->opts);
	if (!q->nimg)
		return;
	q2_meta_stop(q);
	q2c_destroy(&q->l2c);
	q2c_destroy(&q->rbc);
	td_fio_pool_drain(&q->fio);
	td_pool_drain(&q->rd_pool);
	td_pool_drain(&q->wr_pool);
	if (q->zeros)
		td_buf_put(q->zeros, (size_t)q->img[0]->h.cluster_size);
	q->zeros = NULL;
	q2_close_chain(q);
}

static int q2_open(struct td_layer *l, const char *path, const char *opts, char *err, size_t errlen)
{
	struct q2 *q = l->priv;
	uint64_t l2_cache, rb_cache;
	struct q2img *top;
	int rc;

	memset(q, 0, sizeof(*q));
	td_fio_pool_init(&q->fio, l->ctx, q, 0);
	td_pool_init(&q->rd_pool, sizeof(struct td_mread));
	td_pool_init(&q->wr_pool, q2_write_state_size());
	q->l = l;
	q->ctx = l->ctx;
	q->writable = !l->ctx->readonly;
	q->log_left = 50;
	q->opts = (struct td_image_opts){
	    .drv = "qcow2", .dir_key = "backing-dir", .cache = Q2_DEFAULT_L2_CACHE};
	rc = td_image_opts_parse(&q->opts, opts, err, errlen);
	if (rc == 0)
		rc = q2_open_chain(q, path, err, errlen);
	if (rc < 0) {
		td_image_opts_free(&q->opts);
		return rc;
	}
	top = q->img[0];
	td_image_export_size(l, "qcow2", "virtual size", path, top->vsize);
	l2_cache = q->opts.cache;
	/* room for at least 8 tables of the largest cluster size in the chain */
	for (uint32_t i = 0; i < q->nimg; i++)
		if (!q->img[i]->raw && l2_cache < 8 * q->img[i]->h.cluster_size)
			l2_cache = 8 * q->img[i]->h.cluster_size;
	rb_cache = Q2_DEFAULT_RB_CACHE;
	if (rb_cache < 8 * top->h.cluster_size)
		rb_cache = 8 * top->h.cluster_size;
	rc = -ENOMEM;
	if (q2c_init(&q->l2c, q, "L2", l2_cache) < 0 ||
	    q2c_init(&q->rbc, q, "refcount", rb_cache) < 0 || q2_meta_init(q) < 0)
		goto fail;
	q->zeros = td_buf_get((size_t)top->h.cluster_size);
	if (!q->zeros)
		goto fail;
	memset(q->zeros, 0, (size_t)top->h.cluster_size);
	return 0;
fail:
	snprintf(err, errlen, "qcow2: out of memory");
	q2c_destroy(&q->l2c);
	q2c_destroy(&q->rbc);
	q2_close_chain(q);
	td_image_opts_free(&q->opts);
	return rc;
}

static void read_done(struct td_mread *r, int err)
{
	struct td_req *req = r->opaque;

	q2rd_put(r);
	td_req_complete(req, err);
}

static void q2_read(struct td_layer *l, struct td_req *req)
{
	struct q2 *q = l->priv;
	struct td_mread *r = q2rd_get(q);

	if (!r) {
		td_req_complete_later(q->ctx, req, -ENOMEM);
		return;
	}
	r->level = 0;
	td_mread_req(r, req, read_done);
}

/* Everything written before the flush is durable when it completes: a
 * writeback round (qcow2_meta.c) that starts after it. */
static void q2_flush(struct td_layer *l, struct td_req *req)
{
	struct q2 *q = l->priv;
	struct td_wait *w = td_image_flush_wait(q->ctx, req, q->writable);

	if (w)
		q2_meta_sync(q, w);
}

static int q2_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct q2 *q = l->priv;

	return td_file_identity(q->img[0]->fd, id, where, wlen);
}

/* Live snapshot: the paused image becomes the read-only backing file of a
 * new overlay written into new_fd (root created the file and passed it). */
static int q2_snapshot(struct td_ctx *ctx, const char *path, const char *opts, const char *arg,
		       int new_fd, char *err, size_t errlen)
{
	char old[4096];
	int rc = td_snapshot_old_path(path, arg, new_fd, old, sizeof(old), err, errlen);

	if (rc < 0)
		return rc;
	rc = td_qcow2_create_overlay_fd(ctx, new_fd, arg, old, err, errlen);
	if (rc == 0)
		td_info("snapshot: %s is now the read-only backing file of %s", old, arg);
	return rc;
}

const struct td_driver td_drv_qcow2 = {
    .name = "qcow2",
    .alias = "qcow",
    .summary = "QEMU qcow2 image (v2/v3 read, v3 written), backing chains, zero clusters",
    .is_image = true,
    .priv_size = sizeof(struct q2),
    .open = q2_open,
    .quiesce = q2_quiesce,
    .close = q2_close,
    .read = q2_read,
    .write = q2_write,
    .flush = q2_flush,
    .discard = q2_discard,
    .write_zeroes = q2_write_zeroes,
    .identity = q2_identity,
    .snapshot_kind = TD_SNAP_FILE,
    .snapshot = q2_snapshot,
    .snapshot_arg_ok = td_snapshot_arg_absolute,
    .grow = q2_grow,
};
