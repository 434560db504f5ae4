/* The file-I/O request the image drivers (qcow2, vhd, vmdk) build their
 * reads and writes of image files from: a scatter-gather list that grows
 * as pieces are added, one asynchronous operation (tapdisk/core/io.h), a
 * completion callback, and a deferred completion for requests that need
 * no I/O. Requests come from a per-driver pool (no malloc per request in
 * the common case: four iovecs inline).
 *
 * What differs between the drivers is said once, at td_fio_pool_init:
 * whether a short transfer inside the file is an error, and, per call,
 * which descriptor takes I/O that O_DIRECT cannot do and where the file
 * ends for reads. */
#ifndef TD_BLOCK_FIO_H
#define TD_BLOCK_FIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/pool.h"

/* A read or write that moves fewer bytes than asked (the file is shorter
 * than the driver knew) completes with -EIO instead of 0. */
#define TD_FIO_SHORT_EIO 0x1u

/* A read's eof argument when the file's size is not to clip it. */
#define TD_FIO_NO_EOF UINT64_MAX

/* Most iovecs a request holds (IOV_MAX is 1024). */
#define TD_FIO_MAX_IOV 1024
/* td_fio_full's threshold: room left for one more piece's merges. */
#define TD_FIO_FULL_IOV 1000

struct td_fio_pool {
	struct td_pool pool;
	struct td_ctx *ctx;
	void *drv; /* the driver's state: every request's drv */
	unsigned flags;
};

struct td_fio {
	struct td_io_op io;
	struct td_fio_pool *pool;
	void *drv; /* the pool's drv */
	void (*cb)(struct td_fio *o, int err);
	void *owner; /* the caller's: what the callback continues */
	void *file;  /* the caller's: the file the request is for, if it wants it */
	uint64_t arg;
	struct iovec *iov;
	int iovcnt, iovcap;
	uint64_t len;
	struct iovec iov_in[4];
	struct td_defer defer;
	int res;
};

void td_fio_pool_init(struct td_fio_pool *p, struct td_ctx *ctx, void *drv, unsigned flags);
void td_fio_pool_drain(struct td_fio_pool *p);

/* A cleared request, or NULL when out of memory. */
struct td_fio *td_fio_get(struct td_fio_pool *p, void (*cb)(struct td_fio *, int), void *owner);
void td_fio_put(struct td_fio *o);
/* Appends a buffer (merged with the previous iovec when contiguous):
 * 0, -ENOMEM, or -E2BIG past TD_FIO_MAX_IOV iovecs. */
int td_fio_add(struct td_fio *o, void *base, uint64_t len);
/* Appends bytes [off, off+len) of an iovec array: 0, td_fio_add's errors,
 * or -EINVAL when the array is shorter. */
int td_fio_add_slice(struct td_fio *o, const struct iovec *iov, int iovcnt, uint64_t off,
		     uint64_t len);
/* Time to submit and start another request (TD_FIO_FULL_IOV iovecs). */
bool td_fio_full(const struct td_fio *o);

/* Reads o->len bytes at off. fd_buf (-1: none) takes the read when its
 * offset, length or buffers are not multiples of 4096 (O_DIRECT cannot do
 * it). eof: the file's size: the part past it reads as zeros and is not
 * read (TD_FIO_NO_EOF: no clipping). */
void td_fio_read(struct td_fio *o, int fd, int fd_buf, uint64_t off, uint64_t eof);
/* Writes o->len bytes at off (unaligned ones to fd_buf as td_fio_read
 * does); dsync: RWF_DSYNC, durable when it completes. */
void td_fio_write(struct td_fio *o, int fd, int fd_buf, uint64_t off, bool dsync);
/* fdatasync of fd. */
void td_fio_fsync(struct td_fio *o, int fd);
/* Completes o with err from the loop, nothing submitted. */
void td_fio_done_later(struct td_fio *o, int err);

#endif
