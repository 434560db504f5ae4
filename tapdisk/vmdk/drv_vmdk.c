/* vmdk: VMware virtual disks (docs/FORMAT-vmdk.md): hosted sparse extents
 * (monolithicSparse) read and written, stream-optimized ones (compressed
 * grains) read, and text descriptors listing flat, sparse and zero
 * extents. Delta disks (a parent), ESX-only extent types and writing
 * compressed extents are refused with a message.
 *
 * The pieces: vmdk_int.h lists the files. This one is the driver table,
 * options, open/close, flush and quiesce. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/vmdk/vmdk.h"
#include "tapdisk/vmdk/vmdk_int.h"

/* Driver options (tapdisk/block/image.h): cache=SIZE (bytes of grain
 * tables held), extent-dir=DIR (repeatable: a directory extent files may
 * come from, besides the descriptor's own and the host's backing-dirs;
 * backing-dir=DIR is the same, as the confinement's refusals name it). */
static void vmd_close(struct td_layer *l)
{
	struct vm *v = l->priv;

	vm_meta_stop(v);
	vmc_destroy(v);
	td_fio_pool_drain(&v->fio);
	td_pool_drain(&v->rd_pool);
	td_pool_drain(&v->wr_pool);
	if (v->zeros)
		td_buf_put(v->zeros, VM_ZERO_LEN);
	v->zeros = NULL;
	vm_close_image(v);
	td_image_opts_free(&v->opts);
}

static int vmd_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct vm *v = l->priv;
	int rc;

	memset(v, 0, sizeof(*v));
	td_fio_pool_init(&v->fio, l->ctx, v, TD_FIO_SHORT_EIO);
	td_pool_init(&v->rd_pool, vm_read_state_size());
	td_pool_init(&v->wr_pool, vm_write_state_size());
	v->l = l;
	v->ctx = l->ctx;
	v->writable = !l->ctx->readonly;
	v->log_left = 50;
	v->opts = (struct td_image_opts){.drv = "vmdk",
					 .dir_key = "extent-dir",
					 .dir_alias = "backing-dir",
					 .cache = VM_DEFAULT_CACHE};
	rc = td_image_opts_parse(&v->opts, opts, err, errlen);
	if (rc == 0)
		rc = vm_open_image(v, path, err, errlen);
	if (rc < 0) {
		td_image_opts_free(&v->opts);
		return rc;
	}
	td_image_export_size(l, "vmdk", "size", path, v->size);
	vm_meta_init(v);
	v->zeros = td_buf_get(VM_ZERO_LEN);
	if (!v->zeros || vmc_init(v, v->opts.cache) < 0) {
		snprintf(err, errlen, "vmdk: out of memory");
		vmd_close(l);
		return -ENOMEM;
	}
	memset(v->zeros, 0, VM_ZERO_LEN);
	return 0;
}

static void quiesced(struct vm *v, int err)
{
	if (err < 0)
		td_err("vmdk: '%s': final grain table writeback failed: %s", v->path,
		       strerror(-err));
	td_layer_quiesced(v->l, err);
}

static void vmd_quiesce(struct td_layer *l)
{
	vm_meta_quiesce(l->priv, quiesced);
}

/* Everything written before the flush is durable when it completes: a
 * writeback round (vmdk_meta.c) that starts after it. */
static void vmd_flush(struct td_layer *l, struct td_req *req)
{
	struct vm *v = l->priv;
	struct td_wait *w = td_image_flush_wait(v->ctx, req, v->writable);

	if (w)
		vm_meta_sync(v, w);
}

/* TRIM is advisory: grains are never freed (docs/FORMAT-vmdk.md). */
static void vmd_discard(struct td_layer *l, struct td_req *req)
{
	struct vm *v = l->priv;

	td_req_complete_later(v->ctx, req, v->writable ? 0 : -EROFS);
}

static int vmd_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct vm *v = l->priv;

	return td_file_identity(v->files[0]->fd_buf, id, where, wlen);
}

const struct td_driver td_drv_vmdk = {
    .name = "vmdk",
    .summary = "VMware VMDK: monolithicSparse read/write, streamOptimized read, flat/sparse "
	       "extents",
    .is_image = true,
    .priv_size = sizeof(struct vm),
    .open = vmd_open,
    .quiesce = vmd_quiesce,
    .close = vmd_close,
    .read = vm_read,
    .write = vm_write,
    .flush = vmd_flush,
    .discard = vmd_discard,
    .write_zeroes = vm_write_zeroes,
    .identity = vmd_identity,
};
