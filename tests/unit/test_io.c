/* The libaio backend (tapdisk/core/io_aio.c): what it saves must not cost
 * a result or a wakeup.
 * - one or two operations on a page-cache descriptor are done with a
 *   preadv2/pwritev2 of their own, completed from the loop (never on the
 *   submitter's stack), with the right bytes and the right errors;
 * - more of them go in one io_submit, and are answered in the same loop
 *   turn (their completions are in the ring when io_submit returns);
 * - an O_DIRECT descriptor's completions arrive later and wake the loop
 *   through the edge-triggered eventfd that is never read: none is lost
 *   over many rounds, one request at a time or several;
 * - a completion that submits the next operation is served in turn. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tapdisk/core/io.h"
#include "tapdisk/core/loop.h"

#define BS 4096

struct op {
	struct td_io_op io;
	struct iovec iov;
	ssize_t res;
	int done;
	struct op *then; /* submitted from this one's completion */
	struct td_io *owner;
};

static bool submitting;
static int done_while_submitting;

static void op_done(struct td_io_op *io, ssize_t res)
{
	struct op *o = io->opaque;

	if (submitting)
		done_while_submitting++;
	o->res = res;
	o->done++;
	if (o->then)
		td_io_submit(o->owner, &o->then->io);
}

static void op_init(struct op *o, struct td_io *io, int fd, enum td_io_cmd cmd, void *buf,
		    size_t len, uint64_t off, bool cached)
{
	memset(o, 0, sizeof(*o));
	o->iov.iov_base = buf;
	o->iov.iov_len = len;
	o->io.fd = fd;
	o->io.cmd = cmd;
	o->io.iov = cmd == TD_IO_FDSYNC ? NULL : &o->iov;
	o->io.iovcnt = cmd == TD_IO_FDSYNC ? 0 : 1;
	o->io.off = off;
	o->io.cached = cached;
	o->io.done = op_done;
	o->io.opaque = o;
	o->owner = io;
}

static void submit(struct td_io *io, struct op *o)
{
	submitting = true;
	td_io_submit(io, &o->io);
	submitting = false;
}

/* Runs the loop until every op of ops[] is done (at most `turns` turns). */
static int run_until(struct td_loop *loop, struct op *ops, int n, int turns)
{
	int t;

	for (t = 0; t < turns; t++) {
		int left = 0;

		for (int i = 0; i < n; i++)
			left += !ops[i].done;
		if (!left)
			return t;
		assert_int_equal(td_loop_run_once(loop, 5000), 0);
	}
	for (int i = 0; i < n; i++)
		if (!ops[i].done)
			fail_msg("op %d not completed after %d loop turns (a lost wakeup?)", i,
				 turns);
	return t;
}

static char *tmpfile_path(char *buf, size_t len)
{
	const char *dir = getenv("TMPDIR");

	snprintf(buf, len, "%s/td-io-XXXXXX", dir ? dir : "/tmp");
	return buf;
}

static uint8_t *page(int fill)
{
	uint8_t *p = aligned_alloc(BS, BS * 4);

	assert_non_null(p);
	memset(p, fill, BS * 4);
	return p;
}

static int make_file(char *path, size_t plen, size_t size)
{
	int fd;

	tmpfile_path(path, plen);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static void test_lone_cached_ops_inline(void **state)
{
	struct td_loop *loop = td_loop_new();
	struct td_io *io = td_io_new(loop, 16);
	char path[256];
	int fd = make_file(path, sizeof(path), 16 * BS);
	uint8_t *w = page(0x5a), *r = page(0);
	struct op o;

	(void)state;
	assert_non_null(io);
	/* a write, completed from the loop, not from td_io_submit */
	done_while_submitting = 0;
	op_init(&o, io, fd, TD_IO_WRITE, w, BS, 3 * BS, true);
	submit(io, &o);
	assert_int_equal(o.done, 0);
	assert_int_equal(run_until(loop, &o, 1, 2), 1);
	assert_int_equal(o.res, BS);
	assert_int_equal(done_while_submitting, 0);
	assert_int_equal(td_io_inline_ops(io), 1);
	assert_int_equal(td_io_in_flight(io), 0);
	/* the bytes are in the file */
	assert_int_equal(pread(fd, r, BS, 3 * BS), BS);
	assert_memory_equal(r, w, BS);
	/* a read, the same way */
	memset(r, 0, BS);
	op_init(&o, io, fd, TD_IO_READ, r, BS, 3 * BS, true);
	submit(io, &o);
	assert_int_equal(run_until(loop, &o, 1, 2), 1);
	assert_int_equal(o.res, BS);
	assert_memory_equal(r, w, BS);
	assert_int_equal(td_io_inline_ops(io), 2);
	/* a read that reaches past the end of the file is short: -EIO */
	op_init(&o, io, fd, TD_IO_READ, r, 2 * BS, 15 * BS, true);
	submit(io, &o);
	run_until(loop, &o, 1, 2);
	assert_int_equal(o.res, -EIO);
	/* a bad descriptor: its errno */
	op_init(&o, io, 1000, TD_IO_READ, r, BS, 0, true);
	submit(io, &o);
	run_until(loop, &o, 1, 2);
	assert_int_equal(o.res, -EBADF);
	assert_int_equal(done_while_submitting, 0);
	td_io_free(io);
	td_loop_free(loop);
	close(fd);
	unlink(path);
	free(w);
	free(r);
}

/* Three or more go in one io_submit; their completions are answered in the
 * loop turn that submitted them, with no wakeup in between. */
static void test_batch_answered_same_turn(void **state)
{
	struct td_loop *loop = td_loop_new();
	struct td_io *io = td_io_new(loop, 16);
	char path[256];
	int fd = make_file(path, sizeof(path), 16 * BS);
	uint8_t *buf[6];
	struct op o[6];
	uint64_t before;

	(void)state;
	assert_non_null(io);
	for (int i = 0; i < 6; i++) {
		buf[i] = page('a' + i);
		op_init(&o[i], io, fd, TD_IO_WRITE, buf[i], BS, (uint64_t)i * BS, true);
	}
	before = td_io_inline_ops(io);
	for (int i = 0; i < 6; i++)
		submit(io, &o[i]);
	assert_int_equal(run_until(loop, o, 6, 3), 1);
	assert_int_equal(td_io_inline_ops(io), before);
	for (int i = 0; i < 6; i++)
		assert_int_equal(o[i].res, BS);
	for (int i = 0; i < 5; i++) {
		memset(buf[i], 0, BS);
		op_init(&o[i], io, fd, TD_IO_READ, buf[i], BS, (uint64_t)i * BS, true);
		submit(io, &o[i]);
	}
	/* one past the end among them: short, -EIO, the others whole */
	op_init(&o[5], io, fd, TD_IO_READ, buf[5], 2 * BS, 15 * BS, true);
	submit(io, &o[5]);
	assert_int_equal(run_until(loop, o, 6, 3), 1);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(o[i].res, BS);
		for (int j = 0; j < BS; j++)
			if (buf[i][j] != 'a' + i)
				fail_msg("read %d byte %d: %02x", i, j, buf[i][j]);
	}
	assert_int_equal(o[5].res, -EIO);
	assert_int_equal(td_io_inline_ops(io), before);
	assert_int_equal(done_while_submitting, 0);
	assert_int_equal(td_io_in_flight(io), 0);
	td_io_free(io);
	td_loop_free(loop);
	close(fd);
	unlink(path);
	for (int i = 0; i < 6; i++)
		free(buf[i]);
}

/* A completion that submits the next operation: a chain of 40, each
 * served (inline), none lost, the stack never deeper than one. */
static void test_chain_from_completion(void **state)
{
	struct td_loop *loop = td_loop_new();
	struct td_io *io = td_io_new(loop, 16);
	char path[256];
	int fd = make_file(path, sizeof(path), 64 * BS);
	uint8_t *r = page(0);
	struct op o[40];

	(void)state;
	for (int i = 0; i < 40; i++) {
		op_init(&o[i], io, fd, TD_IO_READ, r, BS, (uint64_t)(i % 64) * BS, true);
		if (i)
			o[i - 1].then = &o[i];
	}
	submit(io, &o[0]);
	run_until(loop, o, 40, 80);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].res, BS);
	}
	assert_int_equal(td_io_inline_ops(io), 40);
	td_io_free(io);
	td_loop_free(loop);
	close(fd);
	unlink(path);
	free(r);
}

/* O_DIRECT: truly asynchronous completions, signalled on the eventfd that
 * is never read. 300 rounds of one request, then 50 of four and a flush:
 * each round waits in epoll; a lost edge would end the wait at 5 s and
 * fail. */
static void test_direct_wakeups(void **state)
{
	struct td_loop *loop = td_loop_new();
	struct td_io *io = td_io_new(loop, 16);
	char path[256];
	int fd0 = make_file(path, sizeof(path), 256 * BS), fd;
	uint8_t *buf = page(0x33);
	struct op o[5];

	(void)state;
	close(fd0);
	fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0) {
		unlink(path);
		free(buf);
		td_io_free(io);
		td_loop_free(loop);
		skip(); /* the filesystem of TMPDIR refuses O_DIRECT */
		return;
	}
	for (int round = 0; round < 300; round++) {
		op_init(&o[0], io, fd, round % 2 ? TD_IO_READ : TD_IO_WRITE, buf, BS,
			(uint64_t)(round % 256) * BS, false);
		submit(io, &o[0]);
		run_until(loop, o, 1, 50);
		assert_int_equal(o[0].res, BS);
	}
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 4; i++) {
			op_init(&o[i], io, fd, TD_IO_WRITE, buf, BS,
				(uint64_t)(i * 64 + round) * BS, false);
			submit(io, &o[i]);
		}
		op_init(&o[4], io, fd, TD_IO_FDSYNC, NULL, 0, 0, false);
		submit(io, &o[4]);
		run_until(loop, o, 5, 50);
		for (int i = 0; i < 4; i++)
			assert_int_equal(o[i].res, BS);
		assert_int_equal(o[4].res, 0);
	}
	assert_int_equal(td_io_inline_ops(io), 0);
	assert_int_equal(done_while_submitting, 0);
	td_io_free(io);
	td_loop_free(loop);
	close(fd);
	unlink(path);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lone_cached_ops_inline),
	    cmocka_unit_test(test_batch_answered_same_turn),
	    cmocka_unit_test(test_chain_from_completion),
	    cmocka_unit_test(test_direct_wakeups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
