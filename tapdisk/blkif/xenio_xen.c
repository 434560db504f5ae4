/* The real xenio: libxengnttab maps the ring and copies the data (grant
 * copy), or maps a data page once and keeps it when the frontend reuses
 * its grants (persistent grants: blkif.c copies in and out of the mapping,
 * a page the guest may change at any time, so nothing is read from it
 * twice), libxenevtchn delivers the events. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#include <xen/grant_table.h>

#include "tapdisk/blkif/blkif_proto.h"
#include "tapdisk/blkif/xenio.h"

struct td_xenio {
	xengnttab_handle *gt;
	xenevtchn_handle *ev;
};

static void *xx_map(struct td_xenio *x, uint32_t domid, const uint32_t *refs, unsigned n)
{
	return xengnttab_map_domain_grant_refs(x->gt, n, domid, (uint32_t *)refs,
					       PROT_READ | PROT_WRITE);
}

static void xx_unmap(struct td_xenio *x, void *addr, unsigned n)
{
	xengnttab_unmap(x->gt, addr, n);
}

static void *xx_map_page(struct td_xenio *x, uint32_t domid, uint32_t ref)
{
	/* IOCTL_GNTDEV_MAP_GRANT_REF, then mmap of the device: both already
	 * needed for the ring */
	return xengnttab_map_grant_ref(x->gt, domid, ref, PROT_READ | PROT_WRITE);
}

static void xx_unmap_page(struct td_xenio *x, void *addr)
{
	xengnttab_unmap(x->gt, addr, 1);
}

static int xx_copy(struct td_xenio *x, uint32_t domid, struct td_xenio_copy *c, unsigned n)
{
	/* one call (one ioctl) for up to 1024 segments: a turn's reads */
	static xengnttab_grant_copy_segment_t segs[1024]; /* loop thread only */
	unsigned done = 0;

	while (done < n) {
		unsigned k = n - done < 1024 ? n - done : 1024, i;

		for (i = 0; i < k; i++) {
			const struct td_xenio_copy *s = &c[done + i];
			xengnttab_grant_copy_segment_t *g = &segs[i];

			memset(g, 0, sizeof(*g));
			if (s->to_guest) {
				g->source.virt = s->local;
				g->dest.foreign.ref = s->gref;
				g->dest.foreign.offset = s->offset;
				g->dest.foreign.domid = (uint16_t)domid;
				g->flags = GNTCOPY_dest_gref;
			} else {
				g->source.foreign.ref = s->gref;
				g->source.foreign.offset = s->offset;
				g->source.foreign.domid = (uint16_t)domid;
				g->dest.virt = s->local;
				g->flags = GNTCOPY_source_gref;
			}
			g->len = s->len;
		}
		if (xengnttab_grant_copy(x->gt, k, segs) < 0)
			return -errno;
		for (i = 0; i < k; i++)
			c[done + i].status = segs[i].status;
		done += k;
	}
	return 0;
}

static int xx_bind(struct td_xenio *x, uint32_t domid, uint32_t remote, uint32_t *local)
{
	xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(x->ev, domid, remote);

	if (p < 0)
		return -errno;
	*local = (uint32_t)p;
	return 0;
}

static void xx_unbind(struct td_xenio *x, uint32_t local)
{
	xenevtchn_unbind(x->ev, local);
}

static int xx_notify(struct td_xenio *x, uint32_t local)
{
	return xenevtchn_notify(x->ev, local) < 0 ? -errno : 0;
}

static int xx_fd(struct td_xenio *x)
{
	return xenevtchn_fd(x->ev);
}

static int xx_pending(struct td_xenio *x, uint32_t *port)
{
	xenevtchn_port_or_error_t p = xenevtchn_pending(x->ev);

	if (p < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	*port = (uint32_t)p;
	return xenevtchn_unmask(x->ev, *port) < 0 ? -errno : 0;
}

static const struct td_xenio_ops xen_ops = {
    .map = xx_map,
    .unmap = xx_unmap,
    .map_page = xx_map_page,
    .unmap_page = xx_unmap_page,
    .copy = xx_copy,
    .bind = xx_bind,
    .unbind = xx_unbind,
    .notify = xx_notify,
    .fd = xx_fd,
    .pending = xx_pending,
};

struct td_xenio *td_xenio_open(const struct td_xenio_ops **ops, char *err, size_t errlen)
{
	struct td_xenio *x = calloc(1, sizeof(*x));
	int fl;

	if (!x) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->gt = xengnttab_open(NULL, 0);
	if (!x->gt) {
		snprintf(err, errlen,
			 "cannot open the grant device (/dev/xen/gntdev: %s): is this a Xen dom0 "
			 "with xen-gntdev loaded?",
			 strerror(errno));
		goto fail;
	}
	/* the ring itself, the persistent grants kept, and slack */
	xengnttab_set_max_grants(x->gt, 16 + TD_BLKIF_MAX_PERSISTENT + 256);
	x->ev = xenevtchn_open(NULL, 0);
	if (!x->ev) {
		snprintf(err, errlen,
			 "cannot open the event channel device (/dev/xen/evtchn: %s): is "
			 "xen-evtchn loaded?",
			 strerror(errno));
		goto fail;
	}
	/* the loop reads events without blocking */
	fl = fcntl(xenevtchn_fd(x->ev), F_GETFL);
	if (fl < 0 || fcntl(xenevtchn_fd(x->ev), F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "cannot make the event channel non-blocking: %s",
			 strerror(errno));
		goto fail;
	}
	*ops = &xen_ops;
	return x;
fail:
	td_xenio_close(x);
	return NULL;
}

void td_xenio_close(struct td_xenio *x)
{
	if (!x)
		return;
	if (x->ev)
		xenevtchn_close(x->ev);
	if (x->gt)
		xengnttab_close(x->gt);
	free(x);
}
