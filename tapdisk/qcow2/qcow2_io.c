/* Asynchronous reads and writes of the image files, through tapdisk/core/io.h.
 *
 * Reads are clipped at the end of the file: what lies past it reads as
 * zeros (a backing file shorter than its cluster, a qcow2 file whose last
 * cluster was never written in full). Reads whose offset or length is not
 * a multiple of 4096 go through the page-cache descriptor, since O_DIRECT
 * cannot do them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/qcow2/qcow2_int.h"

void q2_wake_all(struct q2wait **list, int err)
{
	struct q2wait *w = *list;

	*list = NULL;
	while (w) {
		struct q2wait *next = w->next;

		w->next = NULL;
		w->err = err;
		w->cb(w);
		w = next;
	}
}

struct q2io *q2io_get(struct q2 *q, void (*cb)(struct q2io *, int), void *owner)
{
	struct q2io *o = td_pool_get(&q->io_pool);

	if (!o)
		return NULL;
	memset(o, 0, offsetof(struct q2io, iov_in));
	o->q = q;
	o->cb = cb;
	o->owner = owner;
	o->iov = o->iov_in;
	o->iovcap = (int)(sizeof(o->iov_in) / sizeof(o->iov_in[0]));
	return o;
}

void q2io_put(struct q2io *o)
{
	struct q2 *q = o->q;

	if (o->iov != o->iov_in)
		free(o->iov);
	td_pool_put(&q->io_pool, o);
}

bool q2io_full(const struct q2io *o)
{
	return o->iovcnt >= 1000; /* IOV_MAX is 1024 */
}

int q2io_add(struct q2io *o, void *base, uint64_t len)
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

int q2io_add_slice(struct q2io *o, const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len)
{
	int i;

	for (i = 0; i < iovcnt && len; i++) {
		uint64_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		if (q2io_add(o, (uint8_t *)iov[i].iov_base + off, n) < 0)
			return -ENOMEM;
		len -= n;
		off = 0;
	}
	return len ? -EINVAL : 0;
}

static void io_done(struct td_io_op *io, ssize_t res)
{
	struct q2io *o = io->opaque;

	o->cb(o, res < 0 ? (int)res : 0);
}

static void done_later(void *opaque)
{
	struct q2io *o = opaque;

	o->cb(o, o->res);
}

static void submit_flags(struct q2io *o, int fd, enum td_io_cmd cmd, uint64_t off, int rwflags)
{
	o->io.fd = fd;
	o->io.cmd = cmd;
	o->io.iov = o->iov;
	o->io.iovcnt = cmd == TD_IO_FDSYNC ? 0 : o->iovcnt;
	o->io.off = off;
	o->io.rwflags = rwflags;
	o->io.done = io_done;
	o->io.opaque = o;
	td_io_submit(o->q->ctx->io, &o->io);
}

static void submit(struct q2io *o, int fd, enum td_io_cmd cmd, uint64_t off)
{
	submit_flags(o, fd, cmd, off, 0);
}

void q2io_write_dsync(struct q2io *o, uint64_t host)
{
	submit_flags(o, o->q->img[0]->fd, TD_IO_WRITE, host, RWF_DSYNC);
}

/* Drops the iovec bytes past keep (the caller zeroed them). */
static void iov_truncate(struct q2io *o, uint64_t keep)
{
	int i;

	for (i = 0; i < o->iovcnt; i++) {
		if (keep <= o->iov[i].iov_len) {
			o->iov[i].iov_len = (size_t)keep;
			o->iovcnt = keep ? i + 1 : i;
			break;
		}
		keep -= o->iov[i].iov_len;
	}
}

void q2io_read(struct q2io *o, uint32_t img, uint64_t host)
{
	struct q2img *im = o->q->img[img];
	uint64_t avail = im->file_size > host ? im->file_size - host : 0;
	bool aligned;

	if (avail < o->len) {
		td_iov_zero(o->iov, o->iovcnt, avail, o->len - avail);
		iov_truncate(o, avail);
		o->len = avail;
	}
	if (!o->len) {
		o->res = 0;
		td_defer_init(&o->defer, done_later, o);
		td_loop_defer(o->q->ctx->loop, &o->defer);
		return;
	}
	aligned = host % 4096 == 0 && o->len % 4096 == 0;
	for (int i = 0; aligned && i < o->iovcnt; i++)
		aligned =
		    (uintptr_t)o->iov[i].iov_base % 4096 == 0 && o->iov[i].iov_len % 4096 == 0;
	submit(o, aligned ? im->fd : im->fd_buf, TD_IO_READ, host);
}

void q2io_write(struct q2io *o, uint64_t host)
{
	submit(o, o->q->img[0]->fd, TD_IO_WRITE, host);
}

void q2io_fsync(struct q2io *o)
{
	submit(o, o->q->img[0]->fd, TD_IO_FDSYNC, 0);
}
