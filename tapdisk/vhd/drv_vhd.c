/* vhd: Microsoft Virtual Hard Disk images (format 1.0: what XenServer,
 * Virtual PC and QEMU's vpc driver store), read and written so that QEMU
 * and libvhdi read what we write at any time the image is not open
 * (docs/FORMAT-vhd.md). Fixed, dynamic and differencing disks; parents
 * found through their locators with the confinement of qcow2 backing
 * files.
 *
 * The pieces: vhd_int.h lists the files. This one is the driver table,
 * options, open/close, read and flush. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vhd/vhd.h"
#include "tapdisk/vhd/vhd_int.h"

/* Driver options (tapdisk/block/image.h): cache=SIZE (bytes of partial
 * sector bitmaps held), backing-dir=DIR (repeatable: a directory parents
 * may come from, besides the top image's own and the host's,
 * tapdisk/block/files.h). */
static void release(struct vhd *v)
{
	vbm_cache_free(v);
	td_fio_pool_drain(&v->fio);
	td_pool_drain(&v->rd_pool);
	td_pool_drain(&v->wr_pool);
	if (v->zeros)
		td_buf_put(v->zeros, VHD_ZERO_BUF);
	v->zeros = NULL;
	v_meta_free(v);
	v_close_chain(v);
	td_image_opts_free(&v->opts);
}

static int vhd_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct vhd *v = l->priv;
	struct vimg *top;
	char why[400];
	int rc;

	memset(v, 0, sizeof(*v));
	td_fio_pool_init(&v->fio, l->ctx, v, TD_FIO_SHORT_EIO);
	td_pool_init(&v->rd_pool, v_read_state_size());
	td_pool_init(&v->wr_pool, v_write_state_size());
	v->l = l;
	v->ctx = l->ctx;
	v->writable = !l->ctx->readonly;
	v->log_left = 50;
	v->opts = (struct td_image_opts){
	    .drv = "vhd", .dir_key = "backing-dir", .cache = VHD_DEFAULT_BM_CACHE};
	rc = td_image_opts_parse(&v->opts, opts, err, errlen);
	if (rc == 0)
		rc = v_open_chain(v, path, err, errlen);
	if (rc < 0) {
		td_image_opts_free(&v->opts);
		return rc;
	}
	v->bmc.budget = v->opts.cache;
	top = v->img[0];
	td_image_export_size(l, "vhd", "current size", path, top->vsize);
	if (!l->size) {
		snprintf(err, errlen, "vhd image '%s': smaller than one 4 KiB block", path);
		rc = -EINVAL;
		goto fail;
	}
	rc = -ENOMEM;
	if (v_meta_init(v) < 0)
		goto nomem;
	if (v->writable) {
		v->zeros = td_buf_get(VHD_ZERO_BUF);
		if (!v->zeros)
			goto nomem;
		memset(v->zeros, 0, VHD_ZERO_BUF);
	}
	if (v->writable && top->footer_from_copy) {
		rc = v_footer_append(v, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "vhd image '%s': %s", path, why);
			goto fail;
		}
		td_info("vhd: '%s': footer written back at the end of the file", path);
	}
	return 0;
nomem:
	snprintf(err, errlen, "vhd: out of memory");
fail:
	release(v);
	return rc;
}

static void vhd_close(struct td_layer *l)
{
	release(l->priv);
}

static void quiesced_deferred(void *opaque)
{
	struct vhd *v = opaque;

	td_layer_quiesced(v->l, 0);
}

static void quiesced(struct vhd *v, int err)
{
	if (err < 0)
		td_err("vhd: '%s': final metadata write failed: %s (the image stays readable; "
		       "writes not flushed may be lost)",
		       v->img[0]->path, strerror(-err));
	td_layer_quiesced(v->l, err);
}

static void vhd_quiesce(struct td_layer *l)
{
	struct vhd *v = l->priv;

	if (!v->writable || v->img[0]->fixed) {
		td_defer_init(&v->round_defer, quiesced_deferred, v);
		td_loop_defer(v->ctx->loop, &v->round_defer);
		return;
	}
	v_meta_quiesce(v, quiesced);
}

/* Everything acknowledged before the flush is durable when it completes:
 * a round that starts after it (its fdatasync; its writes, if metadata
 * is still only in memory, followed by a second one). */
static void vhd_flush(struct td_layer *l, struct td_req *req)
{
	struct vhd *v = l->priv;
	struct td_wait *w = td_image_flush_wait(v->ctx, req, v->writable);

	if (w)
		v_meta_flush(v, w);
}

static int vhd_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct vhd *v = l->priv;

	return td_file_identity(v->img[0]->fd, id, where, wlen);
}

/* Live snapshot: the paused image becomes the read-only parent of a new
 * differencing disk written into new_fd (root created the file). */
static int vhd_snapshot(struct td_ctx *ctx, const char *path, const char *opts, const char *arg,
			int new_fd, char *err, size_t errlen)
{
	char old[4096];
	int rc = td_snapshot_old_path(path, arg, new_fd, old, sizeof(old), err, errlen);

	if (rc < 0)
		return rc;
	rc = td_vhd_create_diff_fd(ctx, new_fd, arg, old, err, errlen);
	if (rc == 0)
		td_info("snapshot: %s is now the read-only parent of %s", old, arg);
	return rc;
}

const struct td_driver td_drv_vhd = {
    .name = "vhd",
    .alias = "vpc",
    .summary = "Microsoft VHD image (fixed, dynamic, differencing over a parent chain), "
	       "live snapshots",
    .is_image = true,
    .priv_size = sizeof(struct vhd),
    .open = vhd_open,
    .quiesce = vhd_quiesce,
    .close = vhd_close,
    .read = v_read,
    .write = v_write,
    .flush = vhd_flush,
    .write_zeroes = v_write_zeroes,
    .identity = vhd_identity,
    .snapshot_kind = TD_SNAP_FILE,
    .snapshot = vhd_snapshot,
    .snapshot_arg_ok = td_snapshot_arg_absolute,
};
