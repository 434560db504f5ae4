/* Asynchronous I/O on the image files, through tapdisk/core/io.h. Every
 * offset and length is a multiple of 512 (the format's sector); each file
 * has one descriptor for all of it (O_DIRECT or not: vhd_image.c), so
 * page-cache and direct writes never meet on one page. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/vhd/vhd_int.h"

void v_wake_all(struct vwait **list, int err)
{
	struct vwait *w = *list;

	*list = NULL;
	while (w) {
		struct vwait *next = w->next;

		w->next = NULL;
		w->err = err;
		w->cb(w);
		w = next;
	}
}

struct vio *vio_get(struct vhd *v, void (*cb)(struct vio *, int), void *owner)
{
	struct vio *o = td_pool_get(&v->io_pool);

	if (!o)
		return NULL;
	memset(o, 0, offsetof(struct vio, iov_in));
	o->v = v;
	o->cb = cb;
	o->owner = owner;
	o->iov = o->iov_in;
	o->iovcap = (int)(sizeof(o->iov_in) / sizeof(o->iov_in[0]));
	return o;
}

void vio_put(struct vio *o)
{
	if (o->iov != o->iov_in)
		free(o->iov);
	td_pool_put(&o->v->io_pool, o);
}

int vio_add(struct vio *o, void *base, uint64_t len)
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

		if (cap > 1024)
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

int vio_add_slice(struct vio *o, const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len)
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
		rc = vio_add(o, (uint8_t *)iov[i].iov_base + off, n);
		if (rc < 0)
			return rc;
		len -= n;
		off = 0;
	}
	return len ? -EINVAL : 0;
}

static void io_done(struct td_io_op *io, ssize_t res)
{
	struct vio *o = io->opaque;
	int err = 0;

	if (res < 0)
		err = (int)res;
	else if (o->io.cmd != TD_IO_FDSYNC && (uint64_t)res != o->len)
		err = -EIO; /* a short transfer: the file is shorter than it was */
	o->cb(o, err);
}

static void done_deferred(void *opaque)
{
	struct vio *o = opaque;

	o->cb(o, o->res);
}

void vio_done_later(struct vio *o, int err)
{
	o->res = err;
	td_defer_init(&o->defer, done_deferred, o);
	td_loop_defer(o->v->ctx->loop, &o->defer);
}

static void submit(struct vio *o, int fd, enum td_io_cmd cmd, uint64_t off, int rwflags)
{
	o->io.fd = fd;
	o->io.cmd = cmd;
	o->io.iov = o->iov;
	o->io.iovcnt = cmd == TD_IO_FDSYNC ? 0 : o->iovcnt;
	o->io.off = off;
	o->io.rwflags = rwflags;
	o->io.done = io_done;
	o->io.opaque = o;
	td_io_submit(o->v->ctx->io, &o->io);
}

void vio_read(struct vio *o, uint32_t img, uint64_t off)
{
	submit(o, o->v->img[img]->fd, TD_IO_READ, off, 0);
}

void vio_write(struct vio *o, uint64_t off, bool dsync)
{
	submit(o, o->v->img[0]->fd, TD_IO_WRITE, off, dsync ? RWF_DSYNC : 0);
}

void vio_fsync(struct vio *o)
{
	submit(o, o->v->img[0]->fd, TD_IO_FDSYNC, 0, 0);
}
