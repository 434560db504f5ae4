/* What the blkif front end needs of Xen, behind one table: mapping a
 * frontend's ring pages, copying data to and from the pages it granted,
 * and an event channel. Two implementations: the real one (xenio_xen.c:
 * libxengnttab and libxenevtchn, devices opened before the privilege
 * drop) and a fake in local memory for the unit tests
 * (tests/unit/test_blkif.c), so the whole ring protocol is tested without
 * a hypervisor. */
#ifndef TD_XENIO_H
#define TD_XENIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct td_xenio;

/* One grant copy: len bytes between local memory and the page the
 * frontend granted as gref, at offset within it. */
struct td_xenio_copy {
	uint32_t gref;
	uint16_t offset, len;
	void *local;
	bool to_guest;	/* local -> guest (a read's data), else guest -> local */
	int16_t status; /* out: 0, or the hypervisor's (negative) grant status */
};

struct td_xenio_ops {
	/* maps n granted pages of domid read-write, contiguous; NULL on failure */
	void *(*map)(struct td_xenio *x, uint32_t domid, const uint32_t *refs, unsigned n);
	void (*unmap)(struct td_xenio *x, void *addr, unsigned n);
	/* maps one granted page of domid read-write on its own, to keep (a
	 * persistent grant, blkif.h feature-persistent); NULL on failure.
	 * The mapping holds the page: the guest cannot take it back while it
	 * lasts, so it stays valid memory until unmap_page */
	void *(*map_page)(struct td_xenio *x, uint32_t domid, uint32_t ref);
	void (*unmap_page)(struct td_xenio *x, void *addr);
	/* performs every copy (status per copy); 0, or -errno when the call
	 * itself failed */
	int (*copy)(struct td_xenio *x, uint32_t domid, struct td_xenio_copy *c, unsigned n);
	/* binds to the frontend's event channel; the local port */
	int (*bind)(struct td_xenio *x, uint32_t domid, uint32_t remote, uint32_t *local);
	void (*unbind)(struct td_xenio *x, uint32_t local);
	int (*notify)(struct td_xenio *x, uint32_t local);
	/* a descriptor readable when an event is pending */
	int (*fd)(struct td_xenio *x);
	/* the port that fired (-EAGAIN: none); unmasks it again */
	int (*pending)(struct td_xenio *x, uint32_t *port);
};

/* The real one: opens /dev/xen/gntdev and /dev/xen/evtchn (as root,
 * before the privilege drop). NULL with a message when this is no Xen
 * host (or the devices are missing). */
struct td_xenio *td_xenio_open(const struct td_xenio_ops **ops, char *err, size_t errlen);
void td_xenio_close(struct td_xenio *x);

#endif
