/* libFuzzer harness for the VMDK format code (tapdisk/vmdk/vmdk_format.c):
 * the sparse extent header and footer, the placement checks, grain
 * directory and grain table entry decoders, grain markers and the bounded
 * inflate of compressed grains, and the text descriptor parser.
 *
 * Input: byte 0 the mode (bits 0-1: 0 or 3 a sparse extent, 1 a
 * descriptor, 2 a bare compressed grain; bit 2: the descriptor is an
 * embedded one; bits 4-5: the grain size of mode 2, 4 KiB << 2n), bytes
 * 1-8 the extent file size (little endian), then the bytes of the file
 * from its start. In mode 0 the 512 bytes after the header are also taken
 * as a grain directory / grain table, and, when the header says the grain
 * directory is at the end, bytes 512-1535 as the footer marker and footer
 * (where the driver reads them, 1536 bytes before the end of the file).
 * The first byte at offset 1536 starts a grain marker with its compressed
 * data. Every buffer handed to the code is a heap block of exactly the
 * length passed. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/vmdk/vmdk_format.h"

static uint8_t *dup_exact(const uint8_t *d, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	if (b && n)
		memcpy(b, d, n);
	return b;
}

static void check_hdr(const struct vmdk_hdr *h)
{
	uint64_t per_gt = h->grain_sectors * h->gtes_per_gt;

	assert(h->version >= 1 && h->version <= 3);
	assert(h->grain_sectors >= VMDK_MIN_GRAIN_SECTORS &&
	       h->grain_sectors <= VMDK_MAX_GRAIN_SECTORS);
	assert(!(h->grain_sectors & (h->grain_sectors - 1)));
	assert(h->gtes_per_gt >= VMDK_MIN_GTES && h->gtes_per_gt <= VMDK_MAX_GTES);
	assert(h->capacity >= 1 && h->capacity <= VMDK_MAX_CAPACITY);
	assert(h->gd_entries <= VMDK_MAX_GD_ENTRIES && h->gd_entries * per_gt >= h->capacity);
	assert(h->grain_bytes == h->grain_sectors * VMDK_SECTOR);
	assert(h->gt_span >= h->gt_bytes && h->gt_span % VMDK_SECTOR == 0);
	assert(h->gd_span >= h->gd_entries * 4 && h->gd_span % VMDK_SECTOR == 0);
	assert(!(h->flags & ~VMDK_FLAGS_KNOWN));
	assert(h->gd_offset != 0);
}

static void fuzz_sparse(const uint8_t *d, size_t n, uint64_t fsz)
{
	struct vmdk_hdr h;
	uint8_t *b = dup_exact(d, n);
	char err[256];
	int rc;

	if (!b)
		return;
	err[0] = 0;
	rc = vmdk_hdr_decode(b, n, &h, err, sizeof(err));
	free(b);
	if (rc < 0) {
		assert(rc == -EINVAL || rc == -ENOTSUP);
		assert(err[0]);
		return;
	}
	check_hdr(&h);
	if (h.gd_offset == VMDK_GD_AT_END) {
		if (n < 1536)
			return;
		uint8_t *m = dup_exact(d + 512, 512), *f = dup_exact(d + 1024, 512);

		rc = -ENOMEM;
		if (m && f) {
			err[0] = 0;
			rc = vmdk_footer_merge(&h, m, f, err, sizeof(err));
			assert(rc == 0 || (rc == -EINVAL && err[0]));
		}
		free(m);
		free(f);
		if (rc < 0)
			return;
		assert(h.gd_offset != VMDK_GD_AT_END);
		check_hdr(&h);
	}
	err[0] = 0;
	rc = vmdk_hdr_check(&h, fsz, err, sizeof(err));
	if (rc < 0) {
		assert(rc == -EINVAL && err[0]);
		return;
	}
	assert(h.gd_offset <= fsz / VMDK_SECTOR && h.gd_span <= fsz - h.gd_offset * VMDK_SECTOR);
	assert(!h.rgd || (h.rgd_offset <= fsz / VMDK_SECTOR &&
			  h.gd_span <= fsz - h.rgd_offset * VMDK_SECTOR));
	/* entries: as GD entries and as GT entries */
	for (size_t i = 512; i + 4 <= n && i < 1024; i += 4) {
		uint32_t e = vmdk_le32(d + i);
		uint64_t host = 0;
		enum vmdk_gte_kind k;

		if (!vmdk_gd_entry_check(&h, e, fsz) && e) {
			assert((uint64_t)e * VMDK_SECTOR + h.gt_span <= fsz);
			assert(!vmdk_hits_fixed_meta(&h, (uint64_t)e * VMDK_SECTOR, h.gt_span));
		}
		k = vmdk_gte_decode(&h, e, fsz, &host);
		if (k == VMDK_GTE_DATA) {
			uint64_t need = h.compressed ? VMDK_GRAIN_MARKER_LEN : h.grain_bytes;

			assert(host == (uint64_t)e * VMDK_SECTOR && host + need <= fsz);
			assert(!vmdk_hits_fixed_meta(&h, host, need));
		} else if (k == VMDK_GTE_ZERO) {
			assert(e == 1 && h.zero_grain);
		} else if (k == VMDK_GTE_UNALLOC) {
			assert(e == 0);
		}
	}
	/* a grain marker at 1536 and its data, inflated into one grain */
	if (n > 1536) {
		size_t avail = n - 1536;
		uint8_t *raw = dup_exact(d + 1536, avail), *grain;
		uint32_t size = 0;

		if (!raw)
			return;
		assert(vmdk_marker_max_read(&h) >= VMDK_GRAIN_MARKER_LEN + h.grain_bytes);
		err[0] = 0;
		rc = vmdk_marker_parse(&h, raw, avail, avail >= 8 ? vmdk_le64(raw) : 0, &size, err,
				       sizeof(err));
		if (rc == 0) {
			assert(size && size <= avail - VMDK_GRAIN_MARKER_LEN);
			grain = malloc(h.grain_bytes);
			if (grain) {
				rc = vmdk_inflate_grain(raw + VMDK_GRAIN_MARKER_LEN, size, grain,
							h.grain_bytes);
				assert(rc == 0 || rc == -EIO);
			}
			free(grain);
		} else {
			assert(rc == -EIO && err[0]);
		}
		free(raw);
	}
}

static void fuzz_desc(const uint8_t *d, size_t n, bool embedded)
{
	struct vmdk_desc desc;
	char *t = (char *)dup_exact(d, n);
	char err[256];
	int rc;

	if (!t)
		return;
	(void)vmdk_looks_like_text((const uint8_t *)t, n);
	err[0] = 0;
	rc = vmdk_desc_parse(t, n, embedded, &desc, err, sizeof(err));
	free(t);
	if (rc < 0) {
		assert(rc == -EINVAL || rc == -ENOTSUP || rc == -ENOMEM);
		assert(rc == -ENOMEM || err[0]);
		return;
	}
	assert(!desc.has_parent);
	assert(desc.next <= VMDK_MAX_EXTENTS && desc.total <= VMDK_MAX_CAPACITY);
	assert(embedded ? desc.next == 0 : desc.next >= 1);
	for (unsigned i = 0; i < desc.next; i++) {
		const struct vmdk_dext *x = &desc.ext[i];

		assert(x->sectors >= 1 && x->sectors <= VMDK_MAX_CAPACITY);
		assert(memchr(x->name, 0, sizeof(x->name)));
		assert(x->type == VMDK_EXT_ZERO ? !x->name[0] : x->name[0] != 0);
	}
	vmdk_desc_free(&desc);
}

static void fuzz_inflate(const uint8_t *d, size_t n, size_t grain)
{
	uint8_t *in = dup_exact(d, n), *out = malloc(grain);
	int rc;

	if (in && out) {
		rc = vmdk_inflate_grain(in, n, out, grain);
		assert(rc == 0 || rc == -EIO);
	}
	free(in);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned mode;
	uint64_t fsz;

	if (size < 9)
		return 0;
	mode = data[0];
	fsz = vmdk_le64(data + 1);
	data += 9;
	size -= 9;
	switch (mode & 3) {
	case 1:
		fuzz_desc(data, size, mode & 4);
		break;
	case 2:
		fuzz_inflate(data, size, (size_t)4096 << (2 * ((mode >> 4) & 3)));
		break;
	default:
		fuzz_sparse(data, size, fsz);
		break;
	}
	return 0;
}
