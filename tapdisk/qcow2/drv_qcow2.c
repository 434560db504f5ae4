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

/* Driver options: cache=SIZE (bytes of L2 tables held, K/M/G suffixes),
 * backing-dir=DIR (repeatable: a directory backing files may come from,
 * besides the top image's own and the host's, tapdisk/block/files.h). */
struct parse_ctx {
	struct q2 *q;
	uint64_t *l2_cache;
	char *err;
	size_t errlen;
};

static int one_opt(char *tok, void *opaque)
{
	struct parse_ctx *c = opaque;
	struct q2 *q = c->q;
	char *end;
	unsigned long long v;

	if (!strncmp(tok, "backing-dir=", 12)) {
		if (tok[12] != '/' || q->nbacking_dirs == (int)(sizeof(q->backing_dirs) /
								sizeof(q->backing_dirs[0]))) {
			snprintf(c->err, c->errlen,
				 "qcow2: bad option '%s' (backing-dir=ABSOLUTE_DIR, at most 8)",
				 tok);
			return -EINVAL;
		}
		q->backing_dirs[q->nbacking_dirs] = strdup(tok + 12);
		if (!q->backing_dirs[q->nbacking_dirs++])
			return -ENOMEM;
		return 0;
	}
	if (strncmp(tok, "cache=", 6)) {
		snprintf(c->err, c->errlen,
			 "qcow2: bad option '%s' (known: cache=SIZE, backing-dir=DIR)", tok);
		return -EINVAL;
	}
	v = strtoull(tok + 6, &end, 10);
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (*end || end == tok + 6 || v < (64u << 10) || v > (4ull << 30)) {
		snprintf(c->err, c->errlen, "qcow2: bad option '%s' (cache=64K..4G)", tok);
		return -EINVAL;
	}
	*c->l2_cache = v;
	return 0;
}

static int parse_opts(struct q2 *q, const char *opts, uint64_t *l2_cache, char *err, size_t errlen)
{
	struct parse_ctx c = {q, l2_cache, err, errlen};

	return td_opts_each(opts, one_opt, &c);
}

static void free_opts(struct q2 *q)
{
	while (q->nbacking_dirs)
		free(q->backing_dirs[--q->nbacking_dirs]);
}

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

	free_opts(q);
	if (!q->nimg)
		return;
	q2_meta_stop(q);
	q2c_destroy(&q->l2c);
	q2c_destroy(&q->rbc);
	td_pool_drain(&q->io_pool);
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
	uint64_t l2_cache = Q2_DEFAULT_L2_CACHE, rb_cache;
	struct q2img *top;
	int rc;

	memset(q, 0, sizeof(*q));
	td_pool_init(&q->io_pool, sizeof(struct q2io));
	td_pool_init(&q->rd_pool, sizeof(struct q2rd));
	td_pool_init(&q->wr_pool, q2_write_state_size());
	q->l = l;
	q->ctx = l->ctx;
	q->writable = !l->ctx->readonly;
	q->log_left = 50;
	rc = parse_opts(q, opts, &l2_cache, err, errlen);
	if (rc == 0)
		rc = q2_open_chain(q, path, err, errlen);
	if (rc < 0) {
		free_opts(q);
		return rc;
	}
	top = q->img[0];
	if (top->vsize % TD_BLOCK_SIZE)
		td_warn("qcow2: '%s': virtual size %llu is not a multiple of %u; the last %llu "
			"bytes are not exported",
			path, (unsigned long long)top->vsize, TD_BLOCK_SIZE,
			(unsigned long long)(top->vsize % TD_BLOCK_SIZE));
	l->size = top->vsize & ~(uint64_t)(TD_BLOCK_SIZE - 1);
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
	free_opts(q);
	return rc;
}

static void read_done(struct q2rd *r, int err)
{
	struct td_req *req = r->opaque;

	q2rd_put(r);
	td_req_complete(req, err);
}

static void q2_read(struct td_layer *l, struct td_req *req)
{
	struct q2 *q = l->priv;
	struct q2rd *r = q2rd_get(q);

	if (!r) {
		td_req_complete_later(q->ctx, req, -ENOMEM);
		return;
	}
	r->level = 0;
	r->off = req->off;
	r->len = req->len;
	r->iov = req->iov;
	r->iovcnt = req->iovcnt;
	r->done = read_done;
	r->opaque = req;
	q2_read_start(r);
}

struct flush_wait {
	struct q2wait w;
	struct td_req *req;
};

static void flush_done(struct q2wait *w)
{
	struct flush_wait *f = (struct flush_wait *)w;
	struct td_req *req = f->req;
	int err = w->err;

	free(f);
	td_req_complete(req, err);
}

/* Everything written before the flush is durable when it completes: a
 * writeback round (qcow2_meta.c) that starts after it. */
static void q2_flush(struct td_layer *l, struct td_req *req)
{
	struct q2 *q = l->priv;
	struct flush_wait *f;

	if (!q->writable) {
		td_req_complete_later(q->ctx, req, 0);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		td_req_complete_later(q->ctx, req, -ENOMEM);
		return;
	}
	f->req = req;
	f->w.cb = flush_done;
	q2_meta_sync(q, &f->w);
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
	int rc;

	if (new_fd < 0) {
		snprintf(err, errlen, "snapshot: no file was passed for %s", arg);
		return -EINVAL;
	}
	if (path[0] != '/' && getcwd(old, sizeof(old)))
		snprintf(old + strlen(old), sizeof(old) - strlen(old), "/%s", path);
	else
		snprintf(old, sizeof(old), "%s", path);
	rc = td_qcow2_create_overlay_fd(ctx, new_fd, arg, old, err, errlen);
	if (rc == 0)
		td_info("snapshot: %s is now the read-only backing file of %s", old, arg);
	return rc;
}

static bool q2_snapshot_arg_ok(const char *arg)
{
	return arg[0] == '/';
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
    .snapshot_arg_ok = q2_snapshot_arg_ok,
    .grow = q2_grow,
};
