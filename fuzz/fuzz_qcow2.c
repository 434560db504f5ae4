/* libFuzzer harness for the qcow2 format code (tapdisk/qcow2/qcow2_format.c):
 * the header parser, the L1 / L2 / refcount-table entry decoders and the
 * refcount block accessors.
 *
 * Input: byte 0 flags (bit 0: parse for writing; bits 4-7 pick a cluster
 * size when the header does not parse), bytes 1-8 the image file size
 * (big endian), then the first bytes of the image. Like the driver
 * (qcow2_image.c), the harness hands the parser at least 4096 bytes,
 * zero-padded, and re-reads a whole cluster when the header claims a
 * larger one; each buffer is a heap block of exactly the length passed.
 * The image bytes are then also read as big-endian table entries. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/qcow2/qcow2_format.h"

static void check_header(const struct qcow2_hdr *h, uint64_t file_size)
{
	uint64_t cs = h->cluster_size;

	assert(h->version == 2 || h->version == 3);
	assert(h->cluster_bits >= QCOW2_MIN_CLUSTER_BITS &&
	       h->cluster_bits <= QCOW2_MAX_CLUSTER_BITS);
	assert(cs == 1ull << h->cluster_bits);
	assert(h->size <= QCOW2_MAX_VIRTUAL_SIZE);
	assert(h->l1_size >= h->l1_needed);
	assert((uint64_t)h->l1_size * 8 <= QCOW2_MAX_L1_BYTES);
	if (h->l1_size) {
		assert(h->l1_offset % cs == 0);
		assert(h->l1_offset <= file_size && h->l1_size * 8ull <= file_size - h->l1_offset);
		assert(h->l1_offset >= cs); /* not in the header cluster */
	}
	assert(h->rt_clusters > 0 && h->rt_offset % cs == 0 && h->rt_offset >= cs);
	assert(h->rt_offset <= file_size && h->rt_clusters * cs <= file_size - h->rt_offset);
	assert(h->refcount_order <= 6);
	assert(h->rt_entries == h->rt_clusters * cs / 8);
	assert(h->rb_entries == qcow2_rb_entries(h->cluster_bits, h->refcount_order));
	assert(memchr(h->backing, 0, sizeof(h->backing)));
	assert(memchr(h->backing_fmt, 0, sizeof(h->backing_fmt)));
	assert(strlen(h->backing) == (h->backing_offset ? h->backing_len : 0));
}

static void fuzz_entries(const uint8_t *d, size_t n, uint32_t version, uint32_t cbits)
{
	uint64_t cs = 1ull << cbits;

	for (size_t i = 0; i + 8 <= n && i < 8 * 64; i += 8) {
		uint64_t e = qcow2_be64(d + i), off = 0;
		bool copied = false;
		enum qcow2_ckind k;
		int r;

		r = qcow2_l1_decode(e, cbits, &off);
		assert(r == -1 || r == 0 || r == 1);
		if (r == 1)
			assert(off && off % cs == 0 && off < QCOW2_MAX_HOST_OFFSET);
		off = 0;
		r = qcow2_rt_decode(e, cbits, &off);
		assert(r == -1 || r == 0 || r == 1);
		if (r == 1)
			assert(off && off % cs == 0 && off < QCOW2_MAX_HOST_OFFSET);
		off = 0;
		k = qcow2_l2_decode(e, version, cbits, &off, &copied);
		if (k == QCOW2_C_NORMAL || k == QCOW2_C_ZERO_ALLOC) {
			uint64_t off2 = 0;
			bool c2;

			assert(off % cs == 0 && off < QCOW2_MAX_HOST_OFFSET);
			/* what we would write back decodes to the same cluster */
			e = k == QCOW2_C_NORMAL ? qcow2_l2_normal(off) : qcow2_l2_zero_alloc(off);
			assert(qcow2_l2_decode(e, version, cbits, &off2, &c2) == k && off2 == off);
		}
	}
}

static void fuzz_refcounts(const uint8_t *d, size_t n, uint32_t cbits)
{
	uint64_t cs = 1ull << cbits;
	uint8_t *blk;

	if (n < 10)
		return;
	blk = calloc(1, cs);
	if (!blk)
		return;
	memcpy(blk, d, n < cs ? n : cs);
	for (size_t i = 0; i + 10 <= n && i < 10 * 32; i += 10) {
		uint32_t order = d[i] % 7;
		uint64_t entries = qcow2_rb_entries(cbits, order), idx, v, max;

		assert(entries * (1ull << order) == cs * 8); /* the block is exactly full */
		idx = qcow2_be32(d + i + 1) % entries;
		v = qcow2_be64(d + i + 2) >> (d[i + 1] & 63);
		max = qcow2_rc_max(order);
		(void)qcow2_rc_get(blk, order, idx);
		if (v <= max) {
			assert(qcow2_rc_set(blk, order, idx, v) == 0);
			assert(qcow2_rc_get(blk, order, idx) == v);
		} else {
			assert(qcow2_rc_set(blk, order, idx, v) == -ERANGE);
		}
	}
	free(blk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qcow2_hdr *h;
	uint8_t *buf;
	size_t len;
	uint64_t file_size, cs;
	unsigned flags;
	uint32_t version = 3, cbits;
	char err[256];
	int rc;

	if (size < 9)
		return 0;
	flags = data[0] & 1 ? QCOW2_PARSE_WRITABLE : 0;
	cbits = QCOW2_MIN_CLUSTER_BITS + (data[0] >> 4) % 10;
	file_size = qcow2_be64(data + 1);
	data += 9;
	size -= 9;
	len = size < 4096 ? 4096 : size;
	buf = calloc(1, len);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	cs = qcow2_hdr_cluster_size(buf, len);
	if (cs > len) {
		uint8_t *big = calloc(1, cs);

		if (!big)
			goto out;
		memcpy(big, buf, len);
		free(buf);
		buf = big;
		len = cs;
	}
	h = malloc(sizeof(*h));
	if (!h)
		goto out;
	err[0] = 0;
	rc = qcow2_hdr_parse(buf, len, file_size, flags, h, err, sizeof(err));
	if (rc == 0) {
		check_header(h, file_size);
		assert(cs == h->cluster_size);
		version = h->version;
		cbits = h->cluster_bits;
	} else {
		assert(rc == -EINVAL || rc == -ENOTSUP);
		assert(err[0]);
	}
	free(h);
	fuzz_entries(data, size, version, cbits);
	fuzz_refcounts(data, size, cbits);
out:
	free(buf);
	return 0;
}
