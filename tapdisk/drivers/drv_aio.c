/* aio: a raw file or block device, O_DIRECT, asynchronous I/O through
 * tapdisk/core/io.h. Holds an OFD lock on the image for as long as it is open
 * (write lock, or read lock when read-only), so a second tapdisk cannot
 * open it for writing; the kernel drops the lock when the process dies. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/drivers/drivers.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/pool.h"

struct aio_op {
	struct td_io_op io;
	struct td_req *req;
	struct td_layer *l;
};

struct aio_priv {
	int fd;
	bool blockdev;
	bool direct;
	struct td_pool ops;
};

static int lock_image(int fd, bool readonly, const char *path, char *err, size_t errlen)
{
	struct flock fl = {
	    .l_type = readonly ? F_RDLCK : F_WRLCK,
	    .l_whence = SEEK_SET,
	    .l_start = 0,
	    .l_len = 0,
	};

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES) {
		snprintf(err, errlen,
			 "image '%s' is locked by another process (is another tapdisk serving it? "
			 "see 'tap-ctl list')",
			 path);
		return -EBUSY;
	}
	snprintf(err, errlen, "cannot lock image '%s': %s", path, strerror(errno));
	return -errno;
}

static int aio_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct aio_priv *p = l->priv;
	bool ro = l->ctx->readonly;
	struct td_file f;
	uint64_t size;
	char why[512];
	int rc;

	p->fd = -1;
	td_pool_init(&p->ops, sizeof(struct aio_op));
	if (opts) {
		snprintf(err, errlen, "aio: unknown option '%s' (aio takes none)", opts);
		return -EINVAL;
	}
	rc = td_file_open(l->ctx, path, (ro ? 0 : TD_FILE_RW) | TD_FILE_DIRECT | TD_FILE_BLKDEV, &f,
			  why, sizeof(why));
	if ((rc == -EACCES || rc == -EPERM || rc == -EROFS) && !td_files_sealed(l->ctx->files))
		snprintf(err, errlen,
			 "permission denied opening image '%s' %s (check its owner and mode, or "
			 "open it read-only)",
			 path, ro ? "read-only" : "for writing");
	else if (rc < 0)
		snprintf(err, errlen, "image '%s' %s", path, why);
	if (rc < 0)
		return rc;
	p->fd = f.fd;
	p->direct = f.direct;
	p->blockdev = S_ISBLK(f.st.st_mode);
	if (!p->direct)
		td_warn("aio: '%s' does not support O_DIRECT; using the page cache", path);
	if (p->blockdev) {
		if (ioctl(p->fd, BLKGETSIZE64, &size) < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot read the size of '%s': %s", path,
				 strerror(errno));
			goto fail;
		}
	} else {
		size = (uint64_t)f.st.st_size;
	}
	if (size % TD_BLOCK_SIZE) {
		rc = -EINVAL;
		snprintf(err, errlen,
			 "image '%s' is %llu bytes, not a multiple of %u (resize it, e.g. "
			 "'truncate -s %lluK %s')",
			 path, (unsigned long long)size, TD_BLOCK_SIZE,
			 (unsigned long long)((size + 4095) / 4096 * 4), path);
		goto fail;
	}
	if (!l->ctx->nolock) {
		rc = lock_image(p->fd, ro, path, err, errlen);
		if (rc < 0)
			goto fail;
	}
	l->size = size;
	return 0;
fail:
	close(p->fd);
	p->fd = -1;
	return rc;
}

/* The lock is on the open file, which the process's file table may keep
 * open across a pause (tapdisk/block/files.h): release it explicitly. */
static void unlock_image(int fd)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};

	if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
		td_err("aio: cannot release the image lock: %s", strerror(errno));
}

static int aio_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct aio_priv *p = l->priv;

	return td_file_identity(p->fd, id, where, wlen);
}

static void aio_close(struct td_layer *l)
{
	struct aio_priv *p = l->priv;

	if (p->fd >= 0) {
		if (!l->ctx->nolock)
			unlock_image(p->fd);
		close(p->fd);
	}
	p->fd = -1;
	td_pool_drain(&p->ops);
}

static struct aio_op *op_get(struct td_layer *l)
{
	struct aio_priv *p = l->priv;
	struct aio_op *op = td_pool_get(&p->ops);

	if (!op)
		return NULL;
	memset(op, 0, sizeof(*op));
	op->l = l;
	return op;
}

static void op_put(struct aio_op *op)
{
	struct aio_priv *p = op->l->priv;

	td_pool_put(&p->ops, op);
}

static void aio_done(struct td_io_op *io, ssize_t res)
{
	struct aio_op *op = io->opaque;
	struct td_req *req = op->req;

	op_put(op);
	td_req_complete(req, res < 0 ? (int)res : 0);
}

static void aio_rw(struct td_layer *l, struct td_req *req)
{
	struct aio_priv *p = l->priv;
	struct aio_op *op = op_get(l);

	if (!op) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	op->req = req;
	op->io.fd = p->fd;
	op->io.opaque = op;
	op->io.done = aio_done;
	op->io.off = req->off;
	op->io.iov = req->iov;
	op->io.iovcnt = req->iovcnt;
	op->io.cached = !p->direct && !p->blockdev;
	if (req->op == TD_OP_READ) {
		op->io.cmd = TD_IO_READ;
	} else if (req->op == TD_OP_WRITE) {
		op->io.cmd = TD_IO_WRITE;
		op->io.rwflags = (req->flags & TD_REQ_FUA) ? RWF_DSYNC : 0;
	} else {
		op->io.cmd = TD_IO_FDSYNC;
		op->io.iovcnt = 0;
	}
	td_io_submit(l->ctx->io, &op->io);
}

/* Punching or zeroing a range is a quick metadata operation on the
 * filesystems we run on; done inline, completed from the loop. */
static void aio_zero_range(struct td_layer *l, struct td_req *req, bool punch)
{
	struct aio_priv *p = l->priv;
	int rc = 0;

	if (p->blockdev) {
		uint64_t range[2] = {req->off, req->len};

		if (ioctl(p->fd, punch ? BLKDISCARD : BLKZEROOUT, range) < 0)
			rc = -errno;
	} else {
		int mode =
		    FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);

		if (fallocate(p->fd, mode, (off_t)req->off, (off_t)req->len) < 0)
			rc = -errno;
	}
	td_req_complete_later(l->ctx, req, rc);
}

static void aio_discard(struct td_layer *l, struct td_req *req)
{
	aio_zero_range(l, req, true);
}

static void aio_write_zeroes(struct td_layer *l, struct td_req *req)
{
	struct aio_priv *p = l->priv;

	/* A punched hole in a file reads back as zeros; on a block device a
	 * discard might not, so BLKZEROOUT there. */
	aio_zero_range(l, req, !(req->flags & TD_REQ_NO_UNMAP) && !p->blockdev);
}

/* Online grow: a file is extended (sparse: the new bytes read as zeros)
 * and synced; a block device cannot be grown from here, only found large
 * enough (grow it first, e.g. lvextend). Never shrinks. */
static int aio_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen)
{
	struct aio_priv *p = l->priv;
	uint64_t size;

	if (p->blockdev) {
		if (ioctl(p->fd, BLKGETSIZE64, &size) < 0) {
			snprintf(err, errlen, "aio: cannot read the block device's size: %s",
				 strerror(errno));
			return -errno;
		}
		if (size < new_size) {
			snprintf(err, errlen,
				 "aio: the block device has %llu bytes, %llu are needed: grow the "
				 "device first (e.g. lvextend), then resize again",
				 (unsigned long long)size, (unsigned long long)new_size);
			return -ENOSPC;
		}
		l->size = size & ~(uint64_t)(TD_BLOCK_SIZE - 1);
		return 0;
	}
	if (l->size >= new_size)
		return 0;
	if (ftruncate(p->fd, (off_t)new_size) < 0 || fsync(p->fd) < 0) {
		int e = errno;

		snprintf(err, errlen, "aio: cannot extend the image to %llu bytes: %s",
			 (unsigned long long)new_size, strerror(e));
		return -e;
	}
	l->size = new_size;
	return 0;
}

const struct td_driver td_drv_aio = {
    .name = "aio",
    .summary = "raw file or block device, O_DIRECT, asynchronous I/O",
    .is_image = true,
    .priv_size = sizeof(struct aio_priv),
    .open = aio_open,
    .close = aio_close,
    .read = aio_rw,
    .write = aio_rw,
    .flush = aio_rw,
    .discard = aio_discard,
    .write_zeroes = aio_write_zeroes,
    .identity = aio_identity,
    .grow = aio_grow,
};
