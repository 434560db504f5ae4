#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tapdisk/blkif/blkif_proto.h"

/* Byte offsets of the two ABIs. x86_64 aligns 64-bit fields to 8, i386 to
 * 4: the same C structs lay out differently.
 *
 *   request         x86_64  x86_32       discard      x86_64  x86_32
 *   operation        0       0           operation     0       0
 *   nr_segments      1       1           flag          1       1
 *   handle           2       2           handle        2       2
 *   id               8       4           id            8       4
 *   sector_number   16      12           sector       16      12
 *   seg[11] (8 B)   24      20           nr_sectors   24      20
 *   size           112     108
 *
 *   indirect        x86_64  x86_32       response     x86_64  x86_32
 *   operation        0       0           id            0       0
 *   indirect_op      1       1           operation     8       8
 *   nr_segments      2       2           status       10      10
 *   id               8       4           size         16      12
 *   sector_number   16      12
 *   handle          24      20
 *   indirect_grefs  28      24
 */
struct layout {
	size_t req_size, rsp_size;
	size_t id, sector, seg, nr_sectors;
	size_t ind_id, ind_sector, ind_handle, ind_grefs;
};

static const struct layout layouts[] = {
    [TD_BLKIF_ABI_X86_64] = {112, 16, 8, 16, 24, 24, 8, 16, 24, 28},
    [TD_BLKIF_ABI_X86_32] = {108, 12, 4, 12, 20, 20, 4, 12, 20, 24},
};

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le64(volatile uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int td_blkif_abi_parse(const char *protocol, enum td_blkif_abi *abi)
{
	if (!protocol || !*protocol || !strcmp(protocol, "x86_64-abi")) {
		*abi = TD_BLKIF_ABI_X86_64; /* native on the hosts we build for */
		return 0;
	}
	if (!strcmp(protocol, "x86_32-abi")) {
		*abi = TD_BLKIF_ABI_X86_32;
		return 0;
	}
	return -EINVAL;
}

size_t td_blkif_slot_size(enum td_blkif_abi abi)
{
	const struct layout *L = &layouts[abi];

	return L->req_size > L->rsp_size ? L->req_size : L->rsp_size;
}

unsigned td_blkif_ring_slots(enum td_blkif_abi abi, unsigned pages)
{
	size_t n = (pages * TD_BLKIF_PAGE - TD_BLKIF_RING_HDR) / td_blkif_slot_size(abi);
	unsigned p = 1;

	while ((size_t)p * 2 <= n)
		p *= 2;
	return p;
}

static void decode_segs(const uint8_t *b, unsigned n, struct td_blkif_seg *out)
{
	for (unsigned i = 0; i < n; i++, b += 8) {
		out[i].gref = le32(b);
		out[i].first = b[4];
		out[i].last = b[5];
	}
}

void td_blkif_indirect_segs(const uint8_t *page, unsigned n, struct td_blkif_seg *out)
{
	decode_segs(page, n, out);
}

int td_blkif_fetch(enum td_blkif_abi abi, const volatile uint8_t *ring, unsigned slots,
		   uint32_t idx, struct td_blkif_req *r, char *why, size_t whylen)
{
	const struct layout *L = &layouts[abi];
	uint8_t b[128]; /* the largest slot */
	const volatile uint8_t *slot =
	    ring + TD_BLKIF_RING_HDR + (size_t)(idx & (slots - 1)) * td_blkif_slot_size(abi);
	unsigned i;

	/* the one read of the frontend's bytes */
	for (i = 0; i < L->req_size; i++)
		b[i] = slot[i];
	memset(r, 0, sizeof(*r));
	r->wire_op = b[0];
	r->op = b[0];
	switch (b[0]) {
	case TD_BLKIF_OP_READ:
	case TD_BLKIF_OP_WRITE:
	case TD_BLKIF_OP_WRITE_BARRIER:
	case TD_BLKIF_OP_FLUSH_DISKCACHE:
		r->nseg = b[1];
		r->handle = le16(b + 2);
		r->id = le64(b + L->id);
		r->sector = le64(b + L->sector);
		if (r->nseg > TD_BLKIF_MAX_SEGS) {
			snprintf(why, whylen, "%u segments in a direct request (at most %u)",
				 r->nseg, TD_BLKIF_MAX_SEGS);
			return -EINVAL;
		}
		decode_segs(b + L->seg, r->nseg, r->seg);
		return 0;
	case TD_BLKIF_OP_DISCARD:
		r->discard_flags = b[1];
		r->handle = le16(b + 2);
		r->id = le64(b + L->id);
		r->sector = le64(b + L->sector);
		r->nr_sectors = le64(b + L->nr_sectors);
		return 0;
	case TD_BLKIF_OP_INDIRECT:
		r->indirect = true;
		r->op = b[1];
		r->nseg = le16(b + 2);
		r->id = le64(b + L->ind_id);
		r->sector = le64(b + L->ind_sector);
		r->handle = le16(b + L->ind_handle);
		if (r->op != TD_BLKIF_OP_READ && r->op != TD_BLKIF_OP_WRITE) {
			snprintf(why, whylen,
				 "indirect request for operation %u (only read and write)", r->op);
			return -EINVAL;
		}
		if (r->nseg == 0 || r->nseg > TD_BLKIF_MAX_INDIRECT_SEGS) {
			snprintf(why, whylen, "%u segments in an indirect request (1..%u)", r->nseg,
				 TD_BLKIF_MAX_INDIRECT_SEGS);
			return -EINVAL;
		}
		r->nindirect = (uint8_t)((r->nseg + TD_BLKIF_SEGS_PER_INDIRECT_PAGE - 1) /
					 TD_BLKIF_SEGS_PER_INDIRECT_PAGE);
		for (i = 0; i < r->nindirect; i++)
			r->indirect_grefs[i] = le32(b + L->ind_grefs + 4 * i);
		return 0;
	default:
		/* the id is at the same place as in a read: answer it anyway */
		r->id = le64(b + L->id);
		snprintf(why, whylen, "unknown operation %u", b[0]);
		return -EOPNOTSUPP;
	}
}

int td_blkif_check(const struct td_blkif_req *r, const struct td_blkif_seg *segs,
		   uint64_t disk_sectors, bool readonly, uint64_t *bytes, char *why, size_t whylen)
{
	uint64_t n = 0;

	*bytes = 0;
	switch (r->op) {
	case TD_BLKIF_OP_FLUSH_DISKCACHE:
	case TD_BLKIF_OP_WRITE_BARRIER:
		if (r->op == TD_BLKIF_OP_WRITE_BARRIER && readonly) {
			snprintf(why, whylen, "barrier on a read-only disk");
			return -EROFS;
		}
		/* a barrier may carry data; a flush carries none */
		if (r->op == TD_BLKIF_OP_FLUSH_DISKCACHE && r->nseg) {
			snprintf(why, whylen, "a flush with %u segments", r->nseg);
			return -EINVAL;
		}
		/* without data the sector means nothing: Linux's blkfront
		 * sends its flushes with sector (sector_t)-1 */
		if (!r->nseg)
			return 0;
		break;
	case TD_BLKIF_OP_DISCARD:
		if (readonly) {
			snprintf(why, whylen, "discard on a read-only disk");
			return -EROFS;
		}
		if (r->nr_sectors == 0 || r->sector > disk_sectors ||
		    r->nr_sectors > disk_sectors - r->sector) {
			snprintf(why, whylen,
				 "discard of sectors %llu+%llu outside the disk (%llu)",
				 (unsigned long long)r->sector, (unsigned long long)r->nr_sectors,
				 (unsigned long long)disk_sectors);
			return -EINVAL;
		}
		return 0;
	case TD_BLKIF_OP_READ:
	case TD_BLKIF_OP_WRITE:
		if (r->op == TD_BLKIF_OP_WRITE && readonly) {
			snprintf(why, whylen, "write to a read-only disk");
			return -EROFS;
		}
		if (r->nseg == 0) {
			snprintf(why, whylen, "a %s without segments",
				 r->op == TD_BLKIF_OP_READ ? "read" : "write");
			return -EINVAL;
		}
		break;
	default:
		snprintf(why, whylen, "unknown operation %u", r->op);
		return -EOPNOTSUPP;
	}
	for (unsigned i = 0; i < r->nseg; i++) {
		const struct td_blkif_seg *s = &segs[i];

		if (s->first > s->last || s->last >= TD_BLKIF_SECTORS_PER_PAGE) {
			snprintf(why, whylen, "segment %u covers sectors %u..%u of its page", i,
				 s->first, s->last);
			return -EINVAL;
		}
		n += (uint64_t)(s->last - s->first + 1);
	}
	if (r->sector > disk_sectors || n > disk_sectors - r->sector) {
		snprintf(why, whylen, "sectors %llu+%llu outside the disk (%llu sectors)",
			 (unsigned long long)r->sector, (unsigned long long)n,
			 (unsigned long long)disk_sectors);
		return -EINVAL;
	}
	*bytes = n * TD_BLKIF_SECTOR;
	return 0;
}

void td_blkif_put_rsp(enum td_blkif_abi abi, volatile uint8_t *ring, unsigned slots, uint32_t idx,
		      uint64_t id, uint8_t op, int16_t status)
{
	volatile uint8_t *slot =
	    ring + TD_BLKIF_RING_HDR + (size_t)(idx & (slots - 1)) * td_blkif_slot_size(abi);
	const struct layout *L = &layouts[abi];

	put_le64(slot, id);
	slot[8] = op;
	slot[9] = 0;
	slot[10] = (uint8_t)((uint16_t)status & 0xff);
	slot[11] = (uint8_t)((uint16_t)status >> 8);
	for (size_t i = 12; i < L->rsp_size; i++)
		slot[i] = 0;
}
