/* The read path of a chained image driver (qcow2, vhd): a read of guest
 * bytes is resolved piece by piece, through the driver's map function,
 * into extents (data at an offset of some image of the chain, or zeros),
 * neighbours merged so that data contiguous in a file is one I/O; then
 * the zeros are filled in and the data read (fio.h), all at once.
 * Resolution parks while the driver loads a table (the map returns
 * -EAGAIN with the read's wait parked) and resumes where it stopped. */
#ifndef TD_BLOCK_MREAD_H
#define TD_BLOCK_MREAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "tapdisk/block/fio.h"
#include "tapdisk/block/image.h"

enum td_ext_kind { TD_EXT_DATA, TD_EXT_ZERO };

/* One piece of a mapping. */
struct td_ext {
	uint8_t kind;
	uint32_t img;  /* chain index (data) */
	uint64_t host; /* offset in that image's file (data) */
	uint64_t len;
	uint64_t boff; /* offset in the request's buffer */
};

struct td_mread;

struct td_mread_ops {
	/* The first piece of guest bytes [g, g+n) from chain level r->level
	 * on: 0 with *out (kind, img, host, len); -EAGAIN with w parked until
	 * it may be asked again; -errno. */
	int (*map)(struct td_mread *r, uint64_t g, uint64_t n, struct td_wait *w,
		   struct td_ext *out);
	/* Reads o->len bytes at host of image img (td_fio_read on its file). */
	void (*read)(struct td_fio *o, uint32_t img, uint64_t host);
	/* A failed wait ends the read with -EIO (-ENOMEM kept) rather than
	 * with the wait's own error. */
	bool wait_eio;
};

struct td_mread {
	const struct td_mread_ops *ops;
	struct td_fio_pool *fio;
	void *drv;	/* the pool's drv */
	uint32_t level; /* the chain level the map starts at */
	uint64_t off, len;
	const struct iovec *iov;
	int iovcnt;
	struct iovec iov_own; /* for reads into one buffer */
	void (*done)(struct td_mread *r, int err);
	void *opaque;
	bool any_data; /* after done: something other than zeros was found */

	/* private */
	uint64_t pos;
	struct td_ext *ext;
	unsigned next, extcap;
	struct td_ext ext_in[4];
	unsigned pending;
	int err;
	struct td_wait w;
	struct td_defer defer;
};

/* Clears r for a read whose data I/O comes from fio. */
void td_mread_init(struct td_mread *r, const struct td_mread_ops *ops, struct td_fio_pool *fio);
/* Starts the read set up in r (level, off, len, iov, done); done(r, err)
 * is called once, never from inside this call. */
void td_mread_start(struct td_mread *r);
/* Starts a read of a guest request's bytes into its buffers (level as
 * set); done(r, err) gets req back in r->opaque. */
void td_mread_req(struct td_mread *r, struct td_req *req,
		  void (*done)(struct td_mread *r, int err));
/* Frees what r holds (before it goes back to its pool). */
void td_mread_release(struct td_mread *r);

#endif
