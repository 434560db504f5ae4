/* Asynchronous reads and writes of extent files, through tapdisk/core/io.h.
 *
 * Each file has an O_DIRECT descriptor and a page-cache one. A piece goes
 * through O_DIRECT when its file offset, length and buffers are multiples
 * of 4096; anything else (grain tables at sector offsets, grains of
 * images whose grains are not 4 KiB aligned, compressed grains, flat
 * extents at odd offsets) through the page cache. Both reach the same
 * file, and an fdatasync on either makes both durable. Reads are clipped
 * at the end of the file: the rest reads as zeros. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/vmdk/vmdk_int.h"
#include "tapdisk/core/util.h"

void vm_wake_all(struct vmwait **list, int err)
{
	struct vmwait *w = *list;

	*list = NULL;
	while (w) {
		struct vmwait *next = w->next;

		w->next = NULL;
		w->err = err;
		w->cb(w);
		w = next;
	}
}

struct vmio *vmio_get(struct vm *v, void (*cb)(struct vmio *, int), void *owner)
{
	struct vmio *o = td_pool_get(&v->io_pool);

	if (!o)
		return NULL;
	memset(o, 0, offsetof(struct vmio, iov_in));
	o->v = v;
	o->cb = cb;
	o->owner = owner;
	o->iov = o->iov_in;
	o->iovcap = (int)(sizeof(o->iov_in) / sizeof(o->iov_in[0]));
	return o;
}

void vmio_put(struct vmio *o)
{
	if (o->iov != o->iov_in)
		free(o->iov);
	td_pool_put(&o->v->io_pool, o);
}

bool vmio_full(const struct vmio *o)
{
	return o->iovcnt >= 1000; /* IOV_MAX is 1024 */
}

int vmio_add(struct vmio *o, void *base, uint64_t len)
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
		struct iovec *n = malloc((size_t)cap * sizeof(*n));

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

int vmio_add_slice(struct vmio *o, const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		uint64_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		if (vmio_add(o, (uint8_t *)iov[i].iov_base + off, n) < 0)
			return -ENOMEM;
		len -= n;
		off = 0;
	}
	return len ? -EINVAL : 0;
}

static void io_done(struct td_io_op *io, ssize_t res)
{
	struct vmio *o = io->opaque;

	if (res >= 0 && io->cmd != TD_IO_FDSYNC && (uint64_t)res != o->len)
		res = -EIO; /* a short transfer inside the file */
	o->cb(o, res < 0 ? (int)res : 0);
}

static void done_later(void *opaque)
{
	struct vmio *o = opaque;

	o->cb(o, o->res);
}

static bool aligned(const struct vmio *o, uint64_t host)
{
	if (host % 4096 || o->len % 4096)
		return false;
	for (int i = 0; i < o->iovcnt; i++)
		if ((uintptr_t)o->iov[i].iov_base % 4096 || o->iov[i].iov_len % 4096)
			return false;
	return true;
}

static void submit(struct vmio *o, int fd, enum td_io_cmd cmd, uint64_t off, int rwflags)
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

/* Drops the iovec bytes past keep (the caller zeroed them). */
static void iov_truncate(struct vmio *o, uint64_t keep)
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

void vmio_read(struct vmio *o, struct vmfile *f, uint64_t host)
{
	uint64_t avail = f->size > host ? f->size - host : 0;

	o->f = f;
	if (avail < o->len) {
		td_iov_zero(o->iov, o->iovcnt, avail, o->len - avail);
		iov_truncate(o, avail);
		o->len = avail;
	}
	if (!o->len) {
		o->res = 0;
		td_defer_init(&o->defer, done_later, o);
		td_loop_defer(o->v->ctx->loop, &o->defer);
		return;
	}
	submit(o, aligned(o, host) ? f->fd : f->fd_buf, TD_IO_READ, host, 0);
}

void vmio_write(struct vmio *o, struct vmfile *f, uint64_t host, bool dsync)
{
	o->f = f;
	submit(o, aligned(o, host) ? f->fd : f->fd_buf, TD_IO_WRITE, host, dsync ? RWF_DSYNC : 0);
}

void vmio_fsync(struct vmio *o, struct vmfile *f)
{
	o->f = f;
	submit(o, f->fd, TD_IO_FDSYNC, 0, 0);
}
