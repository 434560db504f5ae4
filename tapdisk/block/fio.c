/* The image drivers' file-I/O request (fio.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/fio.h"
#include "tapdisk/core/util.h"

void td_fio_pool_init(struct td_fio_pool *p, struct td_ctx *ctx, void *drv, unsigned flags)
{
	td_pool_init(&p->pool, sizeof(struct td_fio));
	p->ctx = ctx;
	p->drv = drv;
	p->flags = flags;
}

void td_fio_pool_drain(struct td_fio_pool *p)
{
	td_pool_drain(&p->pool);
}

struct td_fio *td_fio_get(struct td_fio_pool *p, void (*cb)(struct td_fio *, int), void *owner)
{
	struct td_fio *o = td_pool_get(&p->pool);

	if (!o)
		return NULL;
	memset(o, 0, offsetof(struct td_fio, iov_in));
	o->pool = p;
	o->drv = p->drv;
	o->cb = cb;
	o->owner = owner;
	o->iov = o->iov_in;
	o->iovcap = (int)(sizeof(o->iov_in) / sizeof(o->iov_in[0]));
	return o;
}

void td_fio_put(struct td_fio *o)
{
	if (o->iov != o->iov_in)
		free(o->iov);
	td_pool_put(&o->pool->pool, o);
}

bool td_fio_full(const struct td_fio *o)
{
	return o->iovcnt >= TD_FIO_FULL_IOV;
}

int td_fio_add(struct td_fio *o, void *base, uint64_t len)
{
	struct iovec *last = o->iovcnt ? &o->iov[o->iovcnt - 1] : NULL;

	if (!len)
		return 0;
	o->len += len;
	if (last && (uint8_t *)last->iov_base + last->iov_len == base) {
		last->iov_len += (size_t)len;
		return 0;
	}
	if (o->iovcnt == o->iovcap) {
		int cap = o->iovcap * 2;
		struct iovec *n;

		if (cap > TD_FIO_MAX_IOV)
			return -E2BIG;
		n = malloc((size_t)cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memcpy(n, o->iov, (size_t)o->iovcnt * sizeof(*n));
		if (o->iov != o->iov_in)
			free(o->iov);
		o->iov = n;
		o->iovcap = cap;
	}
	o->iov[o->iovcnt].iov_base = base;
	o->iov[o->iovcnt].iov_len = (size_t)len;
	o->iovcnt++;
	return 0;
}

int td_fio_add_slice(struct td_fio *o, const struct iovec *iov, int iovcnt, uint64_t off,
		     uint64_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		uint64_t n;
		int rc;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		rc = td_fio_add(o, (uint8_t *)iov[i].iov_base + off, n);
		if (rc < 0)
			return rc;
		len -= n;
		off = 0;
	}
	return len ? -EINVAL : 0;
}

static void io_done(struct td_io_op *io, ssize_t res)
{
	struct td_fio *o = io->opaque;
	int err = 0;

	if (res < 0)
		err = (int)res;
	else if ((o->pool->flags & TD_FIO_SHORT_EIO) && io->cmd != TD_IO_FDSYNC &&
		 (uint64_t)res != o->len)
		err = -EIO; /* a short transfer: the file is shorter than it was */
	o->cb(o, err);
}

static void done_deferred(void *opaque)
{
	struct td_fio *o = opaque;

	o->cb(o, o->res);
}

void td_fio_done_later(struct td_fio *o, int err)
{
	o->res = err;
	td_defer_init(&o->defer, done_deferred, o);
	td_loop_defer(o->pool->ctx->loop, &o->defer);
}

/* Can O_DIRECT do it: offset, length and every buffer 4096-aligned? */
static bool aligned(const struct td_fio *o, uint64_t off)
{
	if (off % 4096 || o->len % 4096)
		return false;
	for (int i = 0; i < o->iovcnt; i++)
		if ((uintptr_t)o->iov[i].iov_base % 4096 || o->iov[i].iov_len % 4096)
			return false;
	return true;
}

static int pick_fd(const struct td_fio *o, int fd, int fd_buf, uint64_t off)
{
	return fd_buf >= 0 && fd_buf != fd && !aligned(o, off) ? fd_buf : fd;
}

static void submit(struct td_fio *o, int fd, enum td_io_cmd cmd, uint64_t off, int rwflags,
		   bool cached)
{
	o->io.fd = fd;
	o->io.cmd = cmd;
	o->io.iov = o->iov;
	o->io.iovcnt = cmd == TD_IO_FDSYNC ? 0 : o->iovcnt;
	o->io.off = off;
	o->io.rwflags = rwflags;
	o->io.cached = cached;
	o->io.done = io_done;
	o->io.opaque = o;
	td_io_submit(o->pool->ctx->io, &o->io);
}

/* Drops the iovec bytes past keep (the caller zeroed them). */
static void iov_truncate(struct td_fio *o, uint64_t keep)
{
	for (int i = 0; i < o->iovcnt; i++) {
		if (keep <= o->iov[i].iov_len) {
			o->iov[i].iov_len = (size_t)keep;
			o->iovcnt = keep ? i + 1 : i;
			break;
		}
		keep -= o->iov[i].iov_len;
	}
}

void td_fio_read(struct td_fio *o, int fd, int fd_buf, uint64_t off, uint64_t eof)
{
	if (eof != TD_FIO_NO_EOF) {
		uint64_t avail = eof > off ? eof - off : 0;

		if (avail < o->len) {
			td_iov_zero(o->iov, o->iovcnt, avail, o->len - avail);
			iov_truncate(o, avail);
			o->len = avail;
		}
		if (!o->len) {
			td_fio_done_later(o, 0);
			return;
		}
	}
	int pfd = pick_fd(o, fd, fd_buf, off);

	/* fd_buf is the page-cache descriptor beside an O_DIRECT one */
	submit(o, pfd, TD_IO_READ, off, 0, pfd != fd);
}

void td_fio_write(struct td_fio *o, int fd, int fd_buf, uint64_t off, bool dsync)
{
	int pfd = pick_fd(o, fd, fd_buf, off);

	submit(o, pfd, TD_IO_WRITE, off, dsync ? RWF_DSYNC : 0, pfd != fd);
}

void td_fio_fsync(struct td_fio *o, int fd)
{
	submit(o, fd, TD_IO_FDSYNC, 0, 0, false);
}
