/* libFuzzer harness for the Xen block ring decoder and checks
 * (tapdisk/blkif/blkif_proto.c): what a hostile frontend writes into the
 * shared ring page and into indirect pages.
 *
 * Input: byte 0 picks the ABI (bit 0), whether the disk is read-only
 * (bit 1) and the number of ring pages (bits 2-4, 1..16); bytes 1-4 the
 * index the backend reads (any value: it wraps), bytes 5-12 the disk size
 * in sectors, then the ring pages themselves (zero-filled when the input
 * is shorter) and after them up to 8 indirect pages. Every buffer is a
 * heap copy of exactly its size, so a read past it is an ASan report.
 *
 * What must hold: a fetched request has a known operation and at most the
 * segments its kind allows; a request that passes td_blkif_check stays
 * inside the disk, moves exactly the sectors its segments name, and never
 * writes a read-only disk; a response written back lands in the slot it
 * names and nowhere else. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/blkif/blkif_proto.h"

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void check_request(const struct td_blkif_req *r, const struct td_blkif_seg *segs,
			  unsigned nseg, uint64_t disk, bool ro)
{
	uint64_t bytes = 0, sectors = 0;
	char why[160];
	int rc;

	rc = td_blkif_check(r, segs, disk, ro, &bytes, why, sizeof(why));
	if (rc) {
		assert(rc == -EINVAL || rc == -EROFS || rc == -EOPNOTSUPP);
		assert(why[0]);
		assert(bytes == 0);
		return;
	}
	if (ro)
		assert(r->op == TD_BLKIF_OP_READ || r->op == TD_BLKIF_OP_FLUSH_DISKCACHE);
	if (r->op == TD_BLKIF_OP_DISCARD) {
		assert(r->nr_sectors > 0 && r->sector <= disk && r->nr_sectors <= disk - r->sector);
		return;
	}
	for (unsigned i = 0; i < nseg; i++) {
		assert(segs[i].first <= segs[i].last);
		assert(segs[i].last < TD_BLKIF_SECTORS_PER_PAGE);
		sectors += segs[i].last - segs[i].first + 1u;
	}
	assert(bytes == sectors * TD_BLKIF_SECTOR);
	/* an empty flush or barrier is good whatever its sector (Linux's
	 * blkfront sends (sector_t)-1): nothing of the disk is touched */
	if (nseg == 0 &&
	    (r->op == TD_BLKIF_OP_FLUSH_DISKCACHE || r->op == TD_BLKIF_OP_WRITE_BARRIER))
		return;
	assert(r->sector <= disk && sectors <= disk - r->sector);
	if (r->op == TD_BLKIF_OP_READ || r->op == TD_BLKIF_OP_WRITE)
		assert(nseg > 0);
	if (r->op == TD_BLKIF_OP_FLUSH_DISKCACHE)
		assert(nseg == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	enum td_blkif_abi abi;
	unsigned pages, slots;
	struct td_blkif_req r;
	struct td_blkif_seg *isegs;
	uint8_t *ring, *before;
	size_t ringlen, slot_size, off;
	uint64_t disk;
	uint32_t idx;
	bool ro;
	char why[160];
	int rc;

	if (n < 13)
		return 0;
	abi = (d[0] & 1) ? TD_BLKIF_ABI_X86_32 : TD_BLKIF_ABI_X86_64;
	ro = d[0] & 2;
	pages = 1u << ((d[0] >> 2) % (TD_BLKIF_MAX_RING_ORDER + 1));
	idx = (uint32_t)d[1] | (uint32_t)d[2] << 8 | (uint32_t)d[3] << 16 | (uint32_t)d[4] << 24;
	disk = rd64(d + 5);
	d += 13;
	n -= 13;

	slots = td_blkif_ring_slots(abi, pages);
	slot_size = td_blkif_slot_size(abi);
	assert(slots && !(slots & (slots - 1)));
	assert(TD_BLKIF_RING_HDR + (size_t)slots * slot_size <= (size_t)pages * TD_BLKIF_PAGE);

	ringlen = (size_t)pages * TD_BLKIF_PAGE;
	ring = calloc(1, ringlen);
	before = malloc(ringlen);
	assert(ring && before);
	memcpy(ring, d, n < ringlen ? n : ringlen);
	off = n < ringlen ? n : ringlen;

	memset(&r, 0xa5, sizeof(r));
	rc = td_blkif_fetch(abi, ring, slots, idx, &r, why, sizeof(why));
	if (rc) {
		assert(rc == -EINVAL || rc == -EOPNOTSUPP);
		assert(why[0]);
	} else {
		assert(r.op == TD_BLKIF_OP_READ || r.op == TD_BLKIF_OP_WRITE ||
		       r.op == TD_BLKIF_OP_WRITE_BARRIER || r.op == TD_BLKIF_OP_FLUSH_DISKCACHE ||
		       r.op == TD_BLKIF_OP_DISCARD);
		if (!r.indirect) {
			assert(r.nseg <= TD_BLKIF_MAX_SEGS);
			check_request(&r, r.seg, r.nseg, disk, ro);
		} else {
			/* the segments come from the indirect pages that follow the
			 * ring in the input, as blkif.c copies them out of the grants */
			unsigned per = TD_BLKIF_SEGS_PER_INDIRECT_PAGE;

			assert(r.nseg <= TD_BLKIF_MAX_INDIRECT_SEGS);
			assert(r.nindirect >= 1 && r.nindirect <= TD_BLKIF_MAX_INDIRECT_PAGES);
			assert((unsigned)r.nindirect == (r.nseg + per - 1) / per);
			isegs = calloc(r.nseg ? r.nseg : 1, sizeof(*isegs));
			assert(isegs);
			for (unsigned p = 0, done = 0; p < r.nindirect && done < r.nseg; p++) {
				uint8_t *page = calloc(1, TD_BLKIF_PAGE);
				unsigned k = r.nseg - done < per ? r.nseg - done : per;

				assert(page);
				if (off < n) {
					size_t take =
					    n - off < TD_BLKIF_PAGE ? n - off : TD_BLKIF_PAGE;

					memcpy(page, d + off, take);
					off += take;
				}
				td_blkif_indirect_segs(page, k, isegs + done);
				done += k;
				free(page);
			}
			check_request(&r, isegs, r.nseg, disk, ro);
			free(isegs);
		}
	}

	/* a response touches its own slot only */
	memcpy(before, ring, ringlen);
	td_blkif_put_rsp(abi, ring, slots, idx, rc ? 0 : r.id, rc ? 0 : r.wire_op,
			 TD_BLKIF_RSP_ERROR);
	{
		size_t s0 = TD_BLKIF_RING_HDR + (size_t)(idx & (slots - 1)) * slot_size;

		assert(!memcmp(ring, before, s0));
		assert(!memcmp(ring + s0 + slot_size, before + s0 + slot_size,
			       ringlen - s0 - slot_size));
	}
	free(before);
	free(ring);
	return 0;
}
