/* The Xen blkif front end: a guest's blkfront talks to the VBD over a
 * shared ring, beside the NBD front end and feeding the same entry point
 * (vbd_submit).
 *
 * tapback (the backend's xenstore half, xen/tapback.c) reads the ring
 * references, the event channel and the protocol the frontend published
 * and hands them to this tapdisk (control command "xen-connect"); the ring
 * pages are grant-mapped, the event channel bound into the event loop, and
 * every request is copied off the ring once, checked once
 * (blkif_proto.h), its data moved by grant copy into a buffer of ours,
 * then submitted like an NBD request. When both ends agree on
 * feature-persistent, a data (or indirect) page is mapped the first time
 * its grant is seen and kept, and the data is copied in and out of the
 * mapping instead: no hypercall per request (see "Persistent grants" in
 * blkif.c); for a chain with no layer above its image driver, whole-page
 * reads and writes go in place, the mappings being the VBD's I/O vector
 * ("In place" in blkif.c, docs/XEN.md). A frontend that breaks the protocol
 * gets BLKIF_RSP_ERROR for the request, or — for a producer index that
 * jumps past the ring — the ring is no longer served ("hostile frontend")
 * until it is disconnected; never a crash, a hang or an access outside its
 * disk.
 *
 * Operations: READ, WRITE (direct, and indirect up to
 * TD_BLKIF_MAX_INDIRECT_SEGS segments), FLUSH_DISKCACHE, WRITE_BARRIER
 * (the writes before it complete, then a flush, then its own data with
 * FUA, before anything after it starts) and DISCARD. All on the loop
 * thread. */
#ifndef TD_BLKIF_H
#define TD_BLKIF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/blkif/blkif_proto.h"
#include "tapdisk/blkif/xenio.h"
#include "tapdisk/block/vbd.h"
#include "tapdisk/core/loop.h"

struct td_blkif;

struct td_blkif_params {
	uint32_t domid;
	uint32_t ring_refs[1u << TD_BLKIF_MAX_RING_ORDER];
	unsigned nring; /* 1, 2, 4, 8 or 16 */
	uint32_t evtchn;
	enum td_blkif_abi abi;
	/* both ends said feature-persistent=1: data pages are mapped once,
	 * kept (up to TD_BLKIF_MAX_PERSISTENT) and copied in place */
	bool persistent;
};

struct td_blkif_stats {
	uint64_t requests, errors, bad_requests;
	uint64_t pgnt_mapped;	 /* persistent grants mapped (and kept) */
	uint64_t pgnt_copies;	 /* segments copied through one (memcpy) */
	uint64_t polled;	 /* ring passes started by the loop's poll, not an event */
	uint64_t grant_copies;	 /* segments grant-copied by the hypervisor */
	uint64_t pgnt_failures;	 /* maps refused (the segment was grant-copied) */
	uint64_t direct_segs;	 /* segments the VBD read or filled in place */
	uint64_t direct_refused; /* in-place requests the kernel refused (redone copied) */
	bool hostile;		 /* the ring was given up on */
};

/* Parses "DOMID REFS EVTCHN [PROTOCOL [persistent]]" (REFS: comma
 * separated), what the control command carries. -EINVAL with a reason. */
int td_blkif_params_parse(const char *s, struct td_blkif_params *p, char *err, size_t errlen);

/* Maps the ring and binds the event channel; requests are served from the
 * next loop turn. NULL with a message. */
struct td_blkif *td_blkif_connect(struct td_loop *loop, struct vbd *vbd,
				  const struct td_xenio_ops *ops, struct td_xenio *x,
				  const struct td_blkif_params *p, char *err, size_t errlen);
/* Stops taking requests, waits for those in flight, unmaps and unbinds,
 * frees, then cb(opaque) from the loop. */
void td_blkif_disconnect(struct td_blkif *b, void (*cb)(void *opaque), void *opaque);
void td_blkif_get_stats(const struct td_blkif *b, struct td_blkif_stats *out);
/* Looks at the ring now (the event channel does this; tests too). */
void td_blkif_kick(struct td_blkif *b);

#endif
