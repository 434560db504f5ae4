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

/* Driver options: cache=SIZE (bytes of grain tables held, K/M/G
 * suffixes), extent-dir=DIR (repeatable: a directory extent files may come
 * from, besides the descriptor's own and the host's backing-dirs;
 * backing-dir=DIR is the same, as the confinement's refusals name it). */
static int parse_opts(struct vm *v, const char *opts, uint64_t *cache, char *err, size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int rc = 0;

	if (!opts)
		return 0;
	copy = strdup(opts);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long long n;

		/* backing-dir= too: what the confinement's messages advise */
		size_t dl = !strncmp(tok, "extent-dir=", 11)	? 11
			    : !strncmp(tok, "backing-dir=", 12) ? 12
								: 0;

		if (dl) {
			if (tok[dl] != '/' || v->ndirs == VM_MAX_DIRS) {
				snprintf(err, errlen,
					 "vmdk: bad option '%s' (extent-dir=ABSOLUTE_DIR, at most "
					 "%d)",
					 tok, VM_MAX_DIRS);
				rc = -EINVAL;
				break;
			}
			v->dirs[v->ndirs] = strdup(tok + dl);
			if (!v->dirs[v->ndirs++]) {
				rc = -ENOMEM;
				break;
			}
			continue;
		}
		if (strncmp(tok, "cache=", 6)) {
			snprintf(err, errlen,
				 "vmdk: bad option '%s' (known: cache=SIZE, extent-dir=DIR)", tok);
			rc = -EINVAL;
			break;
		}
		n = strtoull(tok + 6, &end, 10);
		if (*end == 'K' || *end == 'k')
			n <<= 10, end++;
		else if (*end == 'M' || *end == 'm')
			n <<= 20, end++;
		else if (*end == 'G' || *end == 'g')
			n <<= 30, end++;
		if (*end || end == tok + 6 || n < (64u << 10) || n > (4ull << 30)) {
			snprintf(err, errlen, "vmdk: bad option '%s' (cache=64K..4G)", tok);
			rc = -EINVAL;
			break;
		}
		*cache = n;
	}
	free(copy);
	return rc;
}

static void free_opts(struct vm *v)
{
	while (v->ndirs)
		free(v->dirs[--v->ndirs]);
}

static void vmd_close(struct td_layer *l)
{
	struct vm *v = l->priv;

	vm_meta_stop(v);
	vmc_destroy(v);
	td_pool_drain(&v->io_pool);
	td_pool_drain(&v->rd_pool);
	td_pool_drain(&v->wr_pool);
	if (v->zeros)
		td_buf_put(v->zeros, VM_ZERO_LEN);
	v->zeros = NULL;
	vm_close_image(v);
	free_opts(v);
}

static int vmd_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct vm *v = l->priv;
	uint64_t cache = VM_DEFAULT_CACHE;
	int rc;

	memset(v, 0, sizeof(*v));
	td_pool_init(&v->io_pool, sizeof(struct vmio));
	td_pool_init(&v->rd_pool, vm_read_state_size());
	td_pool_init(&v->wr_pool, vm_write_state_size());
	v->l = l;
	v->ctx = l->ctx;
	v->writable = !l->ctx->readonly;
	v->log_left = 50;
	rc = parse_opts(v, opts, &cache, err, errlen);
	if (rc == 0)
		rc = vm_open_image(v, path, err, errlen);
	if (rc < 0) {
		free_opts(v);
		return rc;
	}
	if (v->size % TD_BLOCK_SIZE)
		td_warn("vmdk: '%s': size %llu is not a multiple of %u; the last %llu bytes are "
			"not exported",
			path, (unsigned long long)v->size, TD_BLOCK_SIZE,
			(unsigned long long)(v->size % TD_BLOCK_SIZE));
	l->size = v->size & ~(uint64_t)(TD_BLOCK_SIZE - 1);
	vm_meta_init(v);
	v->zeros = td_buf_get(VM_ZERO_LEN);
	if (!v->zeros || vmc_init(v, cache) < 0) {
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

struct flush_wait {
	struct vmwait w;
	struct td_req *req;
};

static void flush_done(struct vmwait *w)
{
	struct flush_wait *f = (struct flush_wait *)w;
	struct td_req *req = f->req;
	int err = w->err;

	free(f);
	td_req_complete(req, err);
}

/* Everything written before the flush is durable when it completes: a
 * writeback round (vmdk_meta.c) that starts after it. */
static void vmd_flush(struct td_layer *l, struct td_req *req)
{
	struct vm *v = l->priv;
	struct flush_wait *f;

	if (!v->writable) {
		td_req_complete_later(v->ctx, req, 0);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	f->req = req;
	f->w.cb = flush_done;
	vm_meta_sync(v, &f->w);
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
