/* Asynchronous file I/O behind one interface (libaio today; an io_uring
 * backend can slot in behind the same calls). Completions are delivered on
 * the loop thread, never on the submitter's stack. Buffers must satisfy
 * O_DIRECT rules (4096-aligned addresses and lengths are always safe).
 *
 * An operation marked `cached` (its descriptor goes through the page cache,
 * not O_DIRECT) is one Linux's aio would do synchronously inside io_submit
 * anyway; when one or two such operations are all that wait, the backend
 * does each with a preadv2/pwritev2 of its own, which blocks exactly as
 * much, and spares the io_submit's completion wakeup (io_aio.c). */
#ifndef TD_IO_H
#define TD_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "tapdisk/core/loop.h"

enum td_io_cmd { TD_IO_READ, TD_IO_WRITE, TD_IO_FDSYNC };

struct td_io_op {
	/* filled by the caller */
	int fd;
	enum td_io_cmd cmd;
	const struct iovec *iov;
	int iovcnt;
	uint64_t off;
	int rwflags; /* RWF_DSYNC for FUA writes */
	bool cached; /* fd is a page-cache descriptor (not O_DIRECT) */
	void (*done)(struct td_io_op *op, ssize_t res); /* res: bytes or -errno */
	void *opaque;
	/* private to the backend */
	size_t expect;
	struct td_io_op *next;
	uint64_t backend_priv[8];
};

struct td_io;

struct td_stats_shared;

struct td_io *td_io_new(struct td_loop *loop, unsigned depth);
/* Every completed operation is counted there (td_stats_lower). */
void td_io_set_stats(struct td_io *io, struct td_stats_shared *stats);
void td_io_free(struct td_io *io);
/* Never fails synchronously: errors arrive through op->done. */
void td_io_submit(struct td_io *io, struct td_io_op *op);
unsigned td_io_in_flight(const struct td_io *io);
/* How many page-cache operations were done without io_submit. */
uint64_t td_io_inline_ops(const struct td_io *io);

#endif
