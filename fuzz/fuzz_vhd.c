/* libFuzzer harness for the VHD format code (tapdisk/vhd/vhd_format.c):
 * the footer and dynamic-header parsers, BAT entry checks, parent
 * locator and parent-name decoding, UTF-16 encoding, sector bitmaps and
 * the CHS geometry.
 *
 * Input: byte 0 flags (bit 0: recompute the footer checksum, bit 1: the
 * header checksum, so that mutations reach the field checks behind them;
 * bit 2: a differencing layout), bytes 1-8 the image file size (big
 * endian), then a 512-byte footer, a 1024-byte dynamic header (both
 * zero-padded when the input is shorter) and the rest: read as BAT
 * entries, as locator data of each kind, and as a bitmap. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/vhd/vhd_format.h"

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static void check_footer(const uint8_t *raw, const struct vhd_footer *f)
{
	struct vhd_footer g = *f, h;
	uint8_t again[VHD_FOOTER_LEN];
	char err[256];

	assert(f->type == VHD_TYPE_FIXED || f->type == VHD_TYPE_DYNAMIC ||
	       f->type == VHD_TYPE_DIFF);
	assert(f->version >> 16 == 1);
	assert(f->cur_size && f->cur_size % VHD_SECTOR == 0);
	if (f->type == VHD_TYPE_FIXED) {
		assert(f->cur_size <= VHD_MAX_FIXED_SIZE);
	} else {
		assert(f->cur_size <= VHD_MAX_DYN_SIZE);
		assert(f->data_offset % VHD_SECTOR == 0 && f->data_offset >= VHD_SECTOR);
	}
	/* what we would write back parses to the same footer */
	vhd_footer_encode(&g, again);
	assert(vhd_footer_parse(again, &h, err, sizeof(err)) == 0);
	assert(h.cur_size == f->cur_size && h.type == f->type && h.data_offset == f->data_offset &&
	       !memcmp(h.uuid, f->uuid, 16));
	(void)raw;
}

static void check_header(const struct vhd_header *h, uint64_t hdr_off, const struct vhd_layout *lay)
{
	struct vhd_header g = *h, k;
	uint8_t again[VHD_HEADER_LEN];
	char err[256];

	assert(h->block_size >= VHD_MIN_BLOCK && h->block_size <= VHD_MAX_BLOCK);
	assert((h->block_size & (h->block_size - 1)) == 0);
	assert(1u << h->block_bits == h->block_size);
	assert(h->bitmap_bytes % VHD_SECTOR == 0 &&
	       (uint64_t)h->bitmap_bytes * 8 * VHD_SECTOR >= h->block_size);
	assert(h->max_entries <= VHD_MAX_BAT_ENTRIES);
	assert((uint64_t)h->max_entries << h->block_bits >= lay->vsize);
	assert(h->table_offset % VHD_SECTOR == 0);
	assert(h->table_offset + (uint64_t)h->max_entries * 4 <= lay->footer_off);
	assert(!overlaps(h->table_offset, h->bat_bytes, 0, VHD_FOOTER_LEN));
	assert(!overlaps(h->table_offset, h->bat_bytes, hdr_off, VHD_HEADER_LEN));
	assert(hdr_off + VHD_HEADER_LEN <= lay->footer_off);
	if (lay->diff)
		for (int i = 0; i < VHD_NLOC; i++) {
			const struct vhd_locator *l = &h->loc[i];

			if (l->code == VHD_PLAT_NONE || !l->len)
				continue;
			assert(l->len <= VHD_MAX_LOCATOR);
			assert(l->off + l->len <= lay->footer_off);
		}
	vhd_header_encode(&g, again);
	assert(vhd_header_parse(again, hdr_off, lay, &k, err, sizeof(err)) == 0);
	assert(k.table_offset == h->table_offset && k.max_entries == h->max_entries &&
	       k.block_size == h->block_size);
}

static void check_bat(const uint8_t *d, size_t n, const struct vhd_header *h, uint64_t hdr_off,
		      const struct vhd_layout *lay)
{
	struct vhd_range res[3 + VHD_NLOC];
	int nres = vhd_reserved_ranges(h, hdr_off, lay->diff, res);
	uint64_t blen = (uint64_t)h->bitmap_bytes + h->block_size;

	assert(nres >= 3 && nres <= 3 + VHD_NLOC);
	for (size_t i = 0; i + 4 <= n && i < 4 * 256; i += 4) {
		uint64_t off = 0;
		int r = vhd_bat_check(vhd_be32(d + i), h, lay->footer_off, res, nres, &off);

		assert(r == -1 || r == 0 || r == 1);
		if (r != 1)
			continue;
		assert(off % VHD_SECTOR == 0 && off + blen <= lay->footer_off);
		for (int k = 0; k < nres; k++)
			assert(!overlaps(off, blen, res[k].off, res[k].len));
	}
}

static void check_text(const uint8_t *d, size_t n)
{
	static const uint32_t codes[] = {VHD_PLAT_W2KU, VHD_PLAT_W2RU, VHD_PLAT_MACX, VHD_PLAT_WI2K,
					 VHD_PLAT_MAC};
	char out[VHD_MAX_PATH], back[VHD_MAX_PATH];
	uint8_t enc[2 * VHD_MAX_PATH + 8];

	if (n > VHD_MAX_LOCATOR)
		n = VHD_MAX_LOCATOR;
	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		int r = vhd_locator_decode(codes[c], d, n, out, sizeof(out));
		int len;

		assert(r == 0 || r == -EINVAL || r == -ENOTSUP);
		if (r)
			continue;
		assert(codes[c] == VHD_PLAT_W2KU || codes[c] == VHD_PLAT_W2RU ||
		       codes[c] == VHD_PLAT_MACX);
		assert(out[0] && strlen(out) < sizeof(out));
		if (codes[c] == VHD_PLAT_MACX)
			continue;
		assert(!strchr(out, '\\'));
		/* UTF-16LE of what we decoded decodes to the same path */
		len = vhd_utf16_encode(out, false, false, enc, sizeof(enc));
		if (len < 0)
			continue; /* longer than the buffer: UTF-8 grows to 4 bytes per unit */
		assert(vhd_locator_decode(codes[c], enc, (size_t)len, back, sizeof(back)) == 0);
		assert(!strcmp(out, back));
	}
}

static void check_bitmap(const uint8_t *d, size_t n)
{
	uint8_t bm[64];
	uint64_t bits = sizeof(bm) * 8, first, cnt, run;
	bool set;

	if (n < 2)
		return;
	memset(bm, 0, sizeof(bm));
	memcpy(bm, d + 2, n - 2 < sizeof(bm) ? n - 2 : sizeof(bm));
	first = d[0] % bits;
	cnt = 1 + d[1] % (bits - first);
	run = vhd_bitmap_run(bm, first, cnt, &set);
	assert(run >= 1 && run <= cnt);
	for (uint64_t i = first; i < first + run; i++)
		assert(vhd_bit(bm, i) == set);
	assert(run == cnt || vhd_bit(bm, first + run) != set);
	vhd_bitmap_set(bm, first, cnt);
	assert(vhd_bitmap_all(bm, first, cnt));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t foot[VHD_FOOTER_LEN], hdr[VHD_HEADER_LEN], raw[512];
	struct vhd_footer f;
	struct vhd_header h;
	struct vhd_layout lay;
	const uint8_t *rest;
	size_t nrest, k;
	uint64_t file_size, hdr_off;
	unsigned flags;
	char err[256], name[VHD_MAX_PATH];
	uint16_t cyls;
	uint8_t heads, spt;
	int rc;

	if (size < 9)
		return 0;
	flags = data[0];
	file_size = vhd_be64(data + 1);
	data += 9;
	size -= 9;
	memset(foot, 0, sizeof(foot));
	memset(hdr, 0, sizeof(hdr));
	k = size < sizeof(foot) ? size : sizeof(foot);
	memcpy(foot, data, k);
	if (size > sizeof(foot)) {
		size_t m = size - sizeof(foot);

		memcpy(hdr, data + sizeof(foot), m < sizeof(hdr) ? m : sizeof(hdr));
	}
	rest = size > sizeof(foot) + sizeof(hdr) ? data + sizeof(foot) + sizeof(hdr) : NULL;
	nrest = rest ? size - sizeof(foot) - sizeof(hdr) : 0;
	if (flags & 1)
		vhd_put_be32(foot + 64, vhd_checksum(foot, sizeof(foot), 64));
	if (flags & 2)
		vhd_put_be32(hdr + 36, vhd_checksum(hdr, sizeof(hdr), 36));

	err[0] = 0;
	rc = vhd_footer_parse(foot, &f, err, sizeof(err));
	assert(rc == 0 || rc == -EINVAL || rc == -ENOENT);
	assert(rc == 0 || err[0]);
	if (rc == 0)
		check_footer(foot, &f);
	vhd_chs(rc == 0 ? f.cur_size : file_size, &cyls, &heads, &spt);
	assert(heads >= 1 && heads <= 16 && (spt == 17 || spt == 31 || spt == 63 || spt == 255));

	lay.file_size = file_size < VHD_FOOTER_LEN ? VHD_FOOTER_LEN : file_size;
	lay.footer_off = lay.file_size - VHD_FOOTER_LEN;
	lay.vsize = rc == 0 ? f.cur_size : (file_size >> 20) << 9;
	lay.diff = (flags & 4) != 0;
	hdr_off = rc == 0 && f.type != VHD_TYPE_FIXED ? f.data_offset : VHD_SECTOR;
	err[0] = 0;
	rc = vhd_header_parse(hdr, hdr_off, &lay, &h, err, sizeof(err));
	assert(rc == 0 || rc == -EINVAL);
	assert(rc == 0 || err[0]);
	if (rc == 0) {
		check_header(&h, hdr_off, &lay);
		if (rest)
			check_bat(rest, nrest, &h, hdr_off, &lay);
	}
	memcpy(raw, hdr + 64, sizeof(raw));
	rc = vhd_parent_name(raw, name, sizeof(name));
	assert(rc == 0 || rc == -EINVAL || rc == -ENOTSUP);
	if (rc == 0)
		assert(name[0] && strlen(name) < sizeof(name));
	if (rest) {
		check_text(rest, nrest);
		check_bitmap(rest, nrest);
	}
	return 0;
}
