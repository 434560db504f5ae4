/* The Xen block ring protocol (Xen's public io/blkif.h and io/ring.h),
 * as a backend reads it: the shared ring page's header, the request and
 * response layouts of the three ABIs a frontend may speak, one canonical
 * decoded request, and the checks every request passes before it goes
 * anywhere. Pure functions: no Xen, no I/O, no allocation (unit-tested and
 * fuzzed: tests/unit/test_blkif.c, fuzz/fuzz_blkif.c).
 *
 * A request is read from the shared page exactly once (td_blkif_fetch
 * copies its bytes out, then decodes the copy), so a frontend that changes
 * the slot while we look at it cannot make us see two different requests.
 * Everything a frontend writes is hostile until checked: segment counts,
 * sector ranges within a page and on the disk, the operation, indirect
 * pages. */
#ifndef TD_BLKIF_PROTO_H
#define TD_BLKIF_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_BLKIF_PAGE 4096u
#define TD_BLKIF_SECTOR 512u
#define TD_BLKIF_SECTORS_PER_PAGE 8u

/* operations (blkif.h) */
#define TD_BLKIF_OP_READ 0
#define TD_BLKIF_OP_WRITE 1
#define TD_BLKIF_OP_WRITE_BARRIER 2
#define TD_BLKIF_OP_FLUSH_DISKCACHE 3
#define TD_BLKIF_OP_DISCARD 5
#define TD_BLKIF_OP_INDIRECT 6

/* response status */
#define TD_BLKIF_RSP_EOPNOTSUPP (-2)
#define TD_BLKIF_RSP_ERROR (-1)
#define TD_BLKIF_RSP_OKAY 0

#define TD_BLKIF_MAX_SEGS 11		    /* in a direct request */
#define TD_BLKIF_MAX_INDIRECT_PAGES 8	    /* grefs in an indirect request */
#define TD_BLKIF_SEGS_PER_INDIRECT_PAGE 512 /* 8-byte segments in a 4 KiB page */
/* what we advertise (feature-max-indirect-segments): up to 1 MiB a request */
#define TD_BLKIF_MAX_INDIRECT_SEGS 256
#define TD_BLKIF_MAX_RING_ORDER 4 /* up to 16 ring pages (max-ring-page-order) */
/* persistent grants kept mapped per ring (8 MiB); Linux's blkfront at its
 * defaults reuses 32 slots x (32 segments + 1 indirect page) = 1056. A
 * grant seen when the table is full is grant-copied, as without
 * feature-persistent */
#define TD_BLKIF_MAX_PERSISTENT 2048

enum td_blkif_abi {
	TD_BLKIF_ABI_X86_64, /* also the native one on x86_64 hosts */
	TD_BLKIF_ABI_X86_32,
};

/* The ABI the frontend's "protocol" node names (NULL or "": native).
 * -EINVAL for anything else. */
int td_blkif_abi_parse(const char *protocol, enum td_blkif_abi *abi);

struct td_blkif_seg {
	uint32_t gref;
	uint8_t first, last; /* sectors within the page, inclusive */
};

/* One request, decoded from the frontend's slot. For an indirect request
 * op is its indirect_op and the segments are still to be read from the
 * indirect pages (td_blkif_indirect_segs). */
struct td_blkif_req {
	uint8_t op;	 /* TD_BLKIF_OP_READ ... DISCARD: echoed in the response */
	uint8_t wire_op; /* what the slot said (INDIRECT stays INDIRECT) */
	bool indirect;
	uint16_t nseg; /* direct: <= 11; indirect: from the request */
	uint16_t handle;
	uint64_t id;	     /* the frontend's, echoed in the response */
	uint64_t sector;     /* first sector on the disk */
	uint64_t nr_sectors; /* discard only */
	uint8_t discard_flags;
	uint8_t nindirect; /* indirect pages */
	uint32_t indirect_grefs[TD_BLKIF_MAX_INDIRECT_PAGES];
	struct td_blkif_seg seg[TD_BLKIF_MAX_SEGS];
};

/* The shared ring page(s): the indexes at the head, then the slots. */
#define TD_BLKIF_RING_HDR 64
struct td_blkif_sring_hdr {
	uint32_t req_prod, req_event;
	uint32_t rsp_prod, rsp_event;
};

/* Bytes of one slot (a request/response union) and the number of slots
 * (a power of two) in a ring of `pages` pages. */
size_t td_blkif_slot_size(enum td_blkif_abi abi);
unsigned td_blkif_ring_slots(enum td_blkif_abi abi, unsigned pages);

/* Copies slot `idx` of the ring once and decodes it. 0, or -EINVAL with a
 * reason for a request that is malformed in itself (an unknown operation,
 * too many segments); the id is still set when it could be read, so the
 * caller can answer with an error. */
int td_blkif_fetch(enum td_blkif_abi abi, const volatile uint8_t *ring, unsigned slots,
		   uint32_t idx, struct td_blkif_req *out, char *why, size_t whylen);

/* Decodes the n segments of an indirect request held by indirect page `page`
 * (the caller copied it out of the grant), page number `pno` of the
 * request. */
void td_blkif_indirect_segs(const uint8_t *page, unsigned n, struct td_blkif_seg *out);

/* Checks a decoded request against the disk (sectors of 512 bytes, the
 * device's read-only flag) and the segments' sector ranges: 0, -EROFS for
 * a write to a read-only disk, -EINVAL otherwise with a reason. *bytes
 * gets the data length of a read or write. */
int td_blkif_check(const struct td_blkif_req *r, const struct td_blkif_seg *segs,
		   uint64_t disk_sectors, bool readonly, uint64_t *bytes, char *why, size_t whylen);

/* Writes the response to slot idx. */
void td_blkif_put_rsp(enum td_blkif_abi abi, volatile uint8_t *ring, unsigned slots, uint32_t idx,
		      uint64_t id, uint8_t op, int16_t status);

#endif
