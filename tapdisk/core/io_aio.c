/* libaio backend of tapdisk/core/io.h. One io_context per process, completions
 * signalled on an eventfd that the loop watches. Requests beyond the ring
 * depth wait in a FIFO and are submitted as slots free up.
 *
 * System calls are what a request costs most in a Xen PV dom0 (each one is
 * a trip through the hypervisor), so this file spends as few as it can:
 * - what one loop callback submits goes in one io_submit (a deferred kick);
 * - completions are taken from the kernel's shared ring, not with
 *   io_getevents, right after io_submit as well as at a wakeup;
 * - the eventfd is edge-triggered and never read: its counter only wakes
 *   the loop, the ring says what completed;
 * - Linux's aio is asynchronous only for O_DIRECT: on a page-cache
 *   descriptor io_submit does the whole read or write before it returns.
 *   One or two page-cache operations are then done with a preadv2/pwritev2
 *   each, which blocks exactly as that io_submit would, without the
 *   eventfd wakeup that would follow it. */
#include <assert.h>
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tapdisk/core/io.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/stats.h"

_Static_assert(sizeof(struct iocb) <= sizeof(((struct td_io_op *)0)->backend_priv),
	       "iocb must fit in td_io_op");

struct td_io {
	struct td_loop *loop;
	io_context_t ctx;
	unsigned depth, in_flight;
	int efd;
	struct td_watch *watch;
	struct td_io_op *wait_head, *wait_tail;
	struct td_defer fail_defer;
	struct td_defer kick_defer; /* the submissions of one loop turn, together */
	struct td_io_op *fail_head, *fail_tail;
	struct td_stats_shared *stats;
	uint64_t inline_ops; /* page-cache operations done without io_submit */
};

/* At most this many page-cache operations waiting at a kick are done one
 * system call each; more go in one io_submit (one call, plus the eventfd
 * wakeup it brings). */
#define TD_IO_INLINE_MAX 2

void td_io_set_stats(struct td_io *io, struct td_stats_shared *stats)
{
	io->stats = stats;
}

static void complete(struct td_io *io, struct td_io_op *op, ssize_t res)
{
	td_stats_lower(io->stats,
		       op->cmd == TD_IO_READ	? TD_STAT_READ
		       : op->cmd == TD_IO_WRITE ? TD_STAT_WRITE
						: TD_STAT_FLUSH,
		       res);
	op->done(op, res);
}

/* Completes op with the kernel's answer to it: a read or write that moved
 * fewer bytes than asked (the file shrank under us) is -EIO. */
static void complete_transfer(struct td_io *io, struct td_io_op *op, ssize_t res)
{
	if (res >= 0 && op->cmd != TD_IO_FDSYNC && (size_t)res != op->expect)
		res = -EIO;
	complete(io, op, res);
}

static void enqueue(struct td_io_op **h, struct td_io_op **t, struct td_io_op *op)
{
	op->next = NULL;
	if (*t)
		(*t)->next = op;
	else
		*h = op;
	*t = op;
}

static void run_failed(void *opaque)
{
	struct td_io *io = opaque;

	while (io->fail_head) {
		struct td_io_op *op = io->fail_head;

		io->fail_head = op->next;
		if (!io->fail_head)
			io->fail_tail = NULL;
		complete(io, op, (ssize_t)op->expect);
	}
}

/* Completes op with an error from the loop, never from the caller's stack. */
static void fail_later(struct td_io *io, struct td_io_op *op, int err)
{
	op->expect = (size_t)(ssize_t)err;
	enqueue(&io->fail_head, &io->fail_tail, op);
	td_loop_defer(io->loop, &io->fail_defer);
}

static void dequeue_head(struct td_io *io)
{
	io->wait_head = io->wait_head->next;
	if (!io->wait_head)
		io->wait_tail = NULL;
}

static size_t op_len(const struct td_io_op *op)
{
	size_t n = 0;

	for (int i = 0; i < op->iovcnt; i++)
		n += op->iov[i].iov_len;
	return n;
}

static void prep(struct td_io *io, struct td_io_op *op)
{
	struct iocb *cb = (struct iocb *)op->backend_priv;

	memset(cb, 0, sizeof(*cb));
	op->expect = op_len(op);
	switch (op->cmd) {
	case TD_IO_READ:
		io_prep_preadv2(cb, op->fd, op->iov, op->iovcnt, (long long)op->off, 0);
		break;
	case TD_IO_WRITE:
		io_prep_pwritev2(cb, op->fd, op->iov, op->iovcnt, (long long)op->off, op->rwflags);
		break;
	case TD_IO_FDSYNC:
		io_prep_fdsync(cb, op->fd);
		break;
	}
	io_set_eventfd(cb, io->efd);
	cb->data = op;
}

/* The waiting operations when they are few and all on page-cache
 * descriptors: done here, each completed from the loop (the kick is a
 * deferred call, never the submitter's stack). */
static bool run_inline(struct td_io *io)
{
	struct td_io_op *op, *batch;
	unsigned n = 0;

	for (op = io->wait_head; op; op = op->next)
		if (!op->cached || op->cmd == TD_IO_FDSYNC || ++n > TD_IO_INLINE_MAX)
			return false;
	if (!n)
		return false;
	/* what a completion submits waits for the next kick */
	batch = io->wait_head;
	io->wait_head = io->wait_tail = NULL;
	while (batch) {
		ssize_t res;

		op = batch;
		batch = op->next;
		op->expect = op_len(op);
		if (op->cmd == TD_IO_READ)
			res = preadv2(op->fd, op->iov, op->iovcnt, (off_t)op->off, 0);
		else
			res = pwritev2(op->fd, op->iov, op->iovcnt, (off_t)op->off, op->rwflags);
		io->inline_ops++;
		complete_transfer(io, op, res < 0 ? -errno : res);
	}
	return true;
}

static void kick(struct td_io *io)
{
	struct iocb *cbs[64];

	/* what those completions submitted waits for the next kick (queued) */
	if (run_inline(io))
		return;
	while (io->wait_head && io->in_flight < io->depth) {
		struct td_io_op *op = io->wait_head;
		unsigned n = 0, room = io->depth - io->in_flight;
		int rc;

		while (op && n < room && n < 64) {
			prep(io, op);
			cbs[n++] = (struct iocb *)op->backend_priv;
			op = op->next;
		}
		rc = io_submit(io->ctx, (long)n, cbs);
		if (rc == -EAGAIN || rc == 0)
			return; /* retried at the next completion */
		if (rc < 0) {
			/* the first iocb is bad; fail it and go on with the rest */
			op = io->wait_head;
			dequeue_head(io);
			td_err("io_submit: %s", strerror(-rc));
			fail_later(io, op, rc);
			continue;
		}
		io->in_flight += (unsigned)rc;
		while (rc-- > 0)
			dequeue_head(io);
	}
}

/* The completion ring the kernel shares with us at the address of the
 * io_context (its layout is the kernel's ABI, fs/aio.c "struct aio_ring";
 * libaio and fio read it the same way). Completions are taken from it
 * directly, without an io_getevents system call per wakeup; only this
 * process reaps this context. A ring we do not recognise (another magic,
 * incompatible features) is reaped through io_getevents. */
#define AIO_RING_MAGIC 0xa10a10a1u
struct aio_uring {
	unsigned id, nr, head, tail;
	unsigned magic, compat_features, incompat_features, header_length;
	struct io_event events[];
};

static int reap(struct td_io *io, struct io_event *evs, int max)
{
	struct aio_uring *r = (struct aio_uring *)io->ctx;
	struct timespec zero = {0, 0};
	unsigned head, tail;
	int n = 0;

	if (r->magic != AIO_RING_MAGIC || r->incompat_features || !r->nr)
		return io_getevents(io->ctx, 0, max, evs, &zero);
	head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
	tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (head >= r->nr || tail >= r->nr)
		return io_getevents(io->ctx, 0, max, evs, &zero);
	while (head != tail && n < max) {
		evs[n++] = r->events[head];
		head = (head + 1) % r->nr;
	}
	/* the slots are free again once head moves past them */
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	return n;
}

/* Submits what waits and completes what the ring holds, until neither is
 * left: a page-cache operation's completion is in the ring as soon as its
 * io_submit returns, so it is answered in the same loop turn. */
static void drain(struct td_io *io)
{
	struct io_event evs[128];
	int n, i;

	for (;;) {
		kick(io);
		n = reap(io, evs, 128);
		if (n <= 0)
			break;
		io->in_flight -= (unsigned)n;
		for (i = 0; i < n; i++)
			complete_transfer(io, evs[i].data, (ssize_t)(long)evs[i].res);
	}
}

static void kick_cb(void *opaque)
{
	drain(opaque);
}

/* The eventfd is edge-triggered and its counter never read (a read would
 * be one more system call per wakeup): each completion's signal wakes the
 * loop once, and the ring says what completed. */
static void on_event(void *opaque, uint32_t events)
{
	(void)events;
	drain(opaque);
}

struct td_io *td_io_new(struct td_loop *loop, unsigned depth)
{
	struct td_io *io = calloc(1, sizeof(*io));
	int rc;

	if (!io)
		return NULL;
	io->loop = loop;
	io->depth = depth ? depth : 256;
	io->efd = -1;
	td_defer_init(&io->fail_defer, run_failed, io);
	td_defer_init(&io->kick_defer, kick_cb, io);
	rc = io_setup((int)io->depth, &io->ctx);
	if (rc < 0) {
		td_err("io_setup(%u): %s (check /proc/sys/fs/aio-max-nr)", io->depth,
		       strerror(-rc));
		goto fail;
	}
	io->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (io->efd < 0)
		goto fail;
	io->watch = td_loop_add_fd(loop, io->efd, EPOLLIN | EPOLLET, on_event, io);
	if (!io->watch)
		goto fail;
	return io;
fail:
	td_io_free(io);
	return NULL;
}

void td_io_free(struct td_io *io)
{
	if (!io)
		return;
	if (io->watch)
		td_loop_del_fd(io->loop, io->watch);
	td_loop_defer_cancel(io->loop, &io->kick_defer);
	td_loop_defer_cancel(io->loop, &io->fail_defer);
	if (io->ctx)
		io_destroy(io->ctx);
	if (io->efd >= 0)
		close(io->efd);
	free(io);
}

/* Submitted from the loop right after the current callback: what one
 * callback (a ring pass of the blkif front end, an NBD read burst, a
 * layer's fan-out) starts goes to the kernel in one io_submit. */
void td_io_submit(struct td_io *io, struct td_io_op *op)
{
	enqueue(&io->wait_head, &io->wait_tail, op);
	td_loop_defer(io->loop, &io->kick_defer);
}

unsigned td_io_in_flight(const struct td_io *io)
{
	return io->in_flight;
}

uint64_t td_io_inline_ops(const struct td_io *io)
{
	return io->inline_ops;
}
