/* The VHD on-disk format: pure functions (vhd_format.h). Every value read
 * from a buffer is checked before anything derived from it is used; the
 * fuzzer (fuzz/fuzz_vhd.c) asserts the promises made in vhd_format.h. */
#include "tapdisk/vhd/vhd_format.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const uint8_t footer_cookie[8] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};
static const uint8_t header_cookie[8] = {'c', 'x', 's', 'p', 'a', 'r', 's', 'e'};

uint32_t vhd_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t vhd_be64(const uint8_t *p)
{
	return (uint64_t)vhd_be32(p) << 32 | vhd_be32(p + 4);
}

void vhd_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void vhd_put_be64(uint8_t *p, uint64_t v)
{
	vhd_put_be32(p, (uint32_t)(v >> 32));
	vhd_put_be32(p + 4, (uint32_t)v);
}

uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

/* ---- footer -------------------------------------------------------------- */

int vhd_footer_parse(const uint8_t *b, struct vhd_footer *f, char *err, size_t errlen)
{
	uint32_t want;

	memset(f, 0, sizeof(*f));
	if (memcmp(b, footer_cookie, 8)) {
		snprintf(err, errlen, "no 'conectix' cookie in the footer: not a VHD image");
		return -ENOENT;
	}
	f->features = vhd_be32(b + 8);
	f->version = vhd_be32(b + 12);
	f->data_offset = vhd_be64(b + 16);
	f->timestamp = vhd_be32(b + 24);
	memcpy(f->creator_app, b + 28, 4);
	f->creator_ver = vhd_be32(b + 32);
	f->creator_os = vhd_be32(b + 36);
	f->orig_size = vhd_be64(b + 40);
	f->cur_size = vhd_be64(b + 48);
	f->cyls = (uint16_t)(b[56] << 8 | b[57]);
	f->heads = b[58];
	f->spt = b[59];
	f->type = vhd_be32(b + 60);
	f->checksum = vhd_be32(b + 64);
	memcpy(f->uuid, b + 68, 16);
	f->saved_state = b[84];
	want = vhd_checksum(b, VHD_FOOTER_LEN, 64);
	if (want != f->checksum) {
		snprintf(err, errlen,
			 "footer checksum mismatch: stored 0x%08x, computed 0x%08x (the image is "
			 "damaged)",
			 f->checksum, want);
		return -EINVAL;
	}
	if (f->version >> 16 != 1) {
		snprintf(err, errlen, "footer version %u.%u is not supported (1.x is)",
			 f->version >> 16, f->version & 0xffff);
		return -EINVAL;
	}
	if (f->type != VHD_TYPE_FIXED && f->type != VHD_TYPE_DYNAMIC && f->type != VHD_TYPE_DIFF) {
		snprintf(err, errlen,
			 "disk type %u is not supported (2 fixed, 3 dynamic, 4 differencing are)",
			 f->type);
		return -EINVAL;
	}
	if (f->cur_size == 0 || f->cur_size % VHD_SECTOR) {
		snprintf(err, errlen, "current size %llu is not a positive multiple of 512",
			 (unsigned long long)f->cur_size);
		return -EINVAL;
	}
	if (f->type == VHD_TYPE_FIXED) {
		if (f->cur_size > VHD_MAX_FIXED_SIZE) {
			snprintf(err, errlen, "current size %llu is too large",
				 (unsigned long long)f->cur_size);
			return -EINVAL;
		}
		return 0;
	}
	if (f->cur_size > VHD_MAX_DYN_SIZE) {
		snprintf(err, errlen,
			 "current size %llu is above 2 TiB, more than a dynamic VHD can address",
			 (unsigned long long)f->cur_size);
		return -EINVAL;
	}
	if (f->data_offset == VHD_NO_OFFSET || f->data_offset % VHD_SECTOR ||
	    f->data_offset < VHD_SECTOR || f->data_offset > (1ull << 62)) {
		snprintf(err, errlen, "data offset 0x%llx of a dynamic disk is invalid",
			 (unsigned long long)f->data_offset);
		return -EINVAL;
	}
	return 0;
}

void vhd_footer_encode(struct vhd_footer *f, uint8_t *b)
{
	memset(b, 0, VHD_FOOTER_LEN);
	memcpy(b, footer_cookie, 8);
	vhd_put_be32(b + 8, f->features);
	vhd_put_be32(b + 12, f->version);
	vhd_put_be64(b + 16, f->data_offset);
	vhd_put_be32(b + 24, f->timestamp);
	memcpy(b + 28, f->creator_app, 4);
	vhd_put_be32(b + 32, f->creator_ver);
	vhd_put_be32(b + 36, f->creator_os);
	vhd_put_be64(b + 40, f->orig_size);
	vhd_put_be64(b + 48, f->cur_size);
	b[56] = (uint8_t)(f->cyls >> 8);
	b[57] = (uint8_t)f->cyls;
	b[58] = f->heads;
	b[59] = f->spt;
	vhd_put_be32(b + 60, f->type);
	memcpy(b + 68, f->uuid, 16);
	b[84] = f->saved_state;
	f->checksum = vhd_checksum(b, VHD_FOOTER_LEN, 64);
	vhd_put_be32(b + 64, f->checksum);
}

/* ---- dynamic header ------------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static uint64_t round512(uint64_t v)
{
	return (v + VHD_SECTOR - 1) & ~(uint64_t)(VHD_SECTOR - 1);
}

int vhd_header_parse(const uint8_t *b, uint64_t hdr_off, const struct vhd_layout *lay,
		     struct vhd_header *h, char *err, size_t errlen)
{
	uint64_t need, bat_end;
	uint32_t want;
	int i;

	memset(h, 0, sizeof(*h));
	if (hdr_off % VHD_SECTOR || hdr_off < VHD_SECTOR || hdr_off > lay->footer_off ||
	    lay->footer_off - hdr_off < VHD_HEADER_LEN) {
		snprintf(err, errlen, "the dynamic header offset %llu is outside the file",
			 (unsigned long long)hdr_off);
		return -EINVAL;
	}
	if (memcmp(b, header_cookie, 8)) {
		snprintf(err, errlen, "no 'cxsparse' cookie in the dynamic header at offset %llu",
			 (unsigned long long)hdr_off);
		return -EINVAL;
	}
	h->data_offset = vhd_be64(b + 8);
	h->table_offset = vhd_be64(b + 16);
	h->version = vhd_be32(b + 24);
	h->max_entries = vhd_be32(b + 28);
	h->block_size = vhd_be32(b + 32);
	h->checksum = vhd_be32(b + 36);
	memcpy(h->parent_uuid, b + 40, 16);
	h->parent_ts = vhd_be32(b + 56);
	memcpy(h->parent_name_raw, b + 64, 512);
	for (i = 0; i < VHD_NLOC; i++) {
		const uint8_t *l = b + 576 + 24 * i;

		h->loc[i].code = vhd_be32(l);
		h->loc[i].space = vhd_be32(l + 4);
		h->loc[i].len = vhd_be32(l + 8);
		h->loc[i].off = vhd_be64(l + 16);
	}
	want = vhd_checksum(b, VHD_HEADER_LEN, 36);
	if (want != h->checksum) {
		snprintf(err, errlen,
			 "dynamic header checksum mismatch: stored 0x%08x, computed 0x%08x (the "
			 "image is damaged)",
			 h->checksum, want);
		return -EINVAL;
	}
	if (h->version >> 16 != 1) {
		snprintf(err, errlen, "dynamic header version %u.%u is not supported (1.x is)",
			 h->version >> 16, h->version & 0xffff);
		return -EINVAL;
	}
	if (h->block_size < VHD_MIN_BLOCK || h->block_size > VHD_MAX_BLOCK ||
	    (h->block_size & (h->block_size - 1))) {
		snprintf(err, errlen,
			 "block size %u is not a power of two from 4 KiB to 256 MiB (2 MiB is "
			 "usual)",
			 h->block_size);
		return -EINVAL;
	}
	while ((1u << h->block_bits) < h->block_size)
		h->block_bits++;
	h->bitmap_bytes = (uint32_t)round512(h->block_size / VHD_SECTOR / 8);
	need = (lay->vsize + h->block_size - 1) >> h->block_bits;
	if (h->max_entries < need || h->max_entries > VHD_MAX_BAT_ENTRIES) {
		snprintf(err, errlen,
			 "the BAT has %u entries; the disk needs %llu (at most %u are accepted)",
			 h->max_entries, (unsigned long long)need, VHD_MAX_BAT_ENTRIES);
		return -EINVAL;
	}
	h->bat_bytes = round512((uint64_t)h->max_entries * 4);
	bat_end = h->table_offset + (uint64_t)h->max_entries * 4;
	if (h->table_offset % VHD_SECTOR || h->table_offset > lay->footer_off ||
	    bat_end > lay->footer_off) {
		snprintf(err, errlen,
			 "the BAT (offset %llu, %u entries) is unaligned or runs past the end of "
			 "the file (truncated?)",
			 (unsigned long long)h->table_offset, h->max_entries);
		return -EINVAL;
	}
	if (overlaps(h->table_offset, h->bat_bytes, 0, VHD_FOOTER_LEN) ||
	    overlaps(h->table_offset, h->bat_bytes, hdr_off, VHD_HEADER_LEN)) {
		snprintf(err, errlen,
			 "the BAT at offset %llu overlaps the footer copy or the header",
			 (unsigned long long)h->table_offset);
		return -EINVAL;
	}
	if (!lay->diff)
		return 0;
	for (i = 0; i < VHD_NLOC; i++) {
		const struct vhd_locator *l = &h->loc[i];

		if (l->code == VHD_PLAT_NONE || l->len == 0)
			continue;
		if (l->len > VHD_MAX_LOCATOR || l->off % VHD_SECTOR || l->off > lay->footer_off ||
		    l->len > lay->footer_off - l->off) {
			snprintf(err, errlen,
				 "parent locator %d (offset %llu, %u bytes) is unaligned, longer "
				 "than %u bytes or outside the file",
				 i, (unsigned long long)l->off, l->len, VHD_MAX_LOCATOR);
			return -EINVAL;
		}
		if (overlaps(l->off, l->len, 0, VHD_FOOTER_LEN) ||
		    overlaps(l->off, l->len, hdr_off, VHD_HEADER_LEN) ||
		    overlaps(l->off, l->len, h->table_offset, h->bat_bytes)) {
			snprintf(err, errlen,
				 "parent locator %d (offset %llu) overlaps the footer copy, the "
				 "header or the BAT",
				 i, (unsigned long long)l->off);
			return -EINVAL;
		}
	}
	return 0;
}

void vhd_header_encode(struct vhd_header *h, uint8_t *b)
{
	memset(b, 0, VHD_HEADER_LEN);
	memcpy(b, header_cookie, 8);
	vhd_put_be64(b + 8, h->data_offset);
	vhd_put_be64(b + 16, h->table_offset);
	vhd_put_be32(b + 24, h->version);
	vhd_put_be32(b + 28, h->max_entries);
	vhd_put_be32(b + 32, h->block_size);
	memcpy(b + 40, h->parent_uuid, 16);
	vhd_put_be32(b + 56, h->parent_ts);
	memcpy(b + 64, h->parent_name_raw, 512);
	for (int i = 0; i < VHD_NLOC; i++) {
		uint8_t *l = b + 576 + 24 * i;

		vhd_put_be32(l, h->loc[i].code);
		vhd_put_be32(l + 4, h->loc[i].space);
		vhd_put_be32(l + 8, h->loc[i].len);
		vhd_put_be64(l + 16, h->loc[i].off);
	}
	h->checksum = vhd_checksum(b, VHD_HEADER_LEN, 36);
	vhd_put_be32(b + 36, h->checksum);
}

int vhd_reserved_ranges(const struct vhd_header *h, uint64_t hdr_off, bool diff,
			struct vhd_range *out)
{
	int n = 0;

	out[n++] = (struct vhd_range){0, VHD_FOOTER_LEN};
	out[n++] = (struct vhd_range){hdr_off, VHD_HEADER_LEN};
	out[n++] = (struct vhd_range){h->table_offset, h->bat_bytes};
	if (!diff)
		return n;
	for (int i = 0; i < VHD_NLOC; i++)
		if (h->loc[i].code != VHD_PLAT_NONE && h->loc[i].len)
			out[n++] = (struct vhd_range){h->loc[i].off, round512(h->loc[i].len)};
	return n;
}

int vhd_bat_check(uint32_t entry, const struct vhd_header *h, uint64_t footer_off,
		  const struct vhd_range *res, int nres, uint64_t *off)
{
	uint64_t o, len = (uint64_t)h->bitmap_bytes + h->block_size;

	if (entry == VHD_BAT_UNUSED)
		return 0;
	o = (uint64_t)entry * VHD_SECTOR;
	if (o > footer_off || len > footer_off - o)
		return -1;
	for (int i = 0; i < nres; i++)
		if (overlaps(o, len, res[i].off, res[i].len))
			return -1;
	*off = o;
	return 1;
}

/* ---- text: UTF-16 and UTF-8 ---------------------------------------------------- */

static int put_utf8(uint32_t cp, char *out, size_t outlen, size_t *n)
{
	char tmp[4];
	size_t k;

	if (cp < 0x80) {
		tmp[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		tmp[0] = (char)(0xc0 | cp >> 6);
		tmp[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (char)(0xe0 | cp >> 12);
		tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		tmp[0] = (char)(0xf0 | cp >> 18);
		tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (*n + k >= outlen)
		return -1;
	memcpy(out + *n, tmp, k);
	*n += k;
	return 0;
}

/* UTF-16 (NUL-terminated or padded) to UTF-8; after the first NUL unit
 * only NULs may follow. */
static int utf16_decode(const uint8_t *d, size_t len, bool be, char *out, size_t outlen)
{
	size_t i, n = 0;
	bool ended = false;

	if (len % 2 || outlen == 0)
		return -EINVAL;
	for (i = 0; i + 1 < len; i += 2) {
		uint32_t u = be ? (uint32_t)d[i] << 8 | d[i + 1] : (uint32_t)d[i + 1] << 8 | d[i];

		if (ended) {
			if (u)
				return -EINVAL;
			continue;
		}
		if (u == 0) {
			ended = true;
			continue;
		}
		if (u >= 0xdc00 && u <= 0xdfff)
			return -EINVAL;
		if (u >= 0xd800 && u <= 0xdbff) {
			uint32_t lo;

			if (i + 3 >= len)
				return -EINVAL;
			lo = be ? (uint32_t)d[i + 2] << 8 | d[i + 3]
				: (uint32_t)d[i + 3] << 8 | d[i + 2];
			if (lo < 0xdc00 || lo > 0xdfff)
				return -EINVAL;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			i += 2;
		}
		if (put_utf8(u, out, outlen, &n) < 0)
			return -EINVAL;
	}
	out[n] = 0;
	return n ? 0 : -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int macx_decode(const uint8_t *d, size_t len, char *out, size_t outlen)
{
	size_t i, n = 0, end = 0;

	while (end < len && d[end])
		end++;
	for (i = end; i < len; i++)
		if (d[i])
			return -EINVAL;
	if (end < 7 || memcmp(d, "file://", 7))
		return -EINVAL;
	i = 7;
	if (end - i >= 10 && !memcmp(d + i, "localhost/", 10))
		i += 9;
	for (; i < end; i++) {
		char c = (char)d[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= end)
				return -EINVAL;
			hi = hexval((char)d[i + 1]);
			lo = hexval((char)d[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (n + 1 >= outlen)
			return -EINVAL;
		out[n++] = c;
	}
	out[n] = 0;
	return n ? 0 : -EINVAL;
}

/* A path that names nothing on this host: a drive letter or UNC. */
static bool windows_only(const char *p)
{
	if (((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z')) && p[1] == ':')
		return true;
	return p[0] == '/' && p[1] == '/';
}

int vhd_locator_decode(uint32_t code, const uint8_t *data, size_t len, char *out, size_t outlen)
{
	int rc;

	if (!outlen)
		return -EINVAL;
	out[0] = 0;
	switch (code) {
	case VHD_PLAT_W2KU:
	case VHD_PLAT_W2RU:
		rc = utf16_decode(data, len, false, out, outlen);
		if (rc < 0)
			return rc;
		for (char *p = out; *p; p++)
			if (*p == '\\')
				*p = '/';
		break;
	case VHD_PLAT_MACX:
		rc = macx_decode(data, len, out, outlen);
		if (rc < 0)
			return rc;
		break;
	default:
		return -ENOTSUP;
	}
	if (windows_only(out))
		return -ENOTSUP;
	return 0;
}

int vhd_parent_name(const uint8_t raw[512], char *out, size_t outlen)
{
	int rc = utf16_decode(raw, 512, true, out, outlen);

	if (rc < 0)
		return rc;
	for (char *p = out; *p; p++)
		if (*p == '\\')
			*p = '/';
	return windows_only(out) ? -ENOTSUP : 0;
}

int vhd_utf16_encode(const char *s, bool be, bool backslash, uint8_t *out, size_t outlen)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = 0;

	while (*p) {
		uint32_t cp;
		int extra;

		if (*p < 0x80)
			cp = *p, extra = 0;
		else if ((*p & 0xe0) == 0xc0)
			cp = *p & 0x1f, extra = 1;
		else if ((*p & 0xf0) == 0xe0)
			cp = *p & 0x0f, extra = 2;
		else if ((*p & 0xf8) == 0xf0)
			cp = *p & 0x07, extra = 3;
		else
			return -1;
		p++;
		for (int k = 0; k < extra; k++, p++) {
			if ((*p & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (*p & 0x3f);
		}
		if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		if (backslash && cp == '/')
			cp = '\\';
		uint32_t units[2];
		int nu = 1;

		if (cp >= 0x10000) {
			units[0] = 0xd800 + ((cp - 0x10000) >> 10);
			units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
			nu = 2;
		} else {
			units[0] = cp;
		}
		for (int k = 0; k < nu; k++) {
			if (n + 2 > outlen)
				return -1;
			out[n + (be ? 0 : 1)] = (uint8_t)(units[k] >> 8);
			out[n + (be ? 1 : 0)] = (uint8_t)units[k];
			n += 2;
		}
	}
	return (int)n;
}

/* ---- bitmaps -------------------------------------------------------------------- */

uint64_t vhd_bitmap_run(const uint8_t *bm, uint64_t first, uint64_t n, bool *set)
{
	uint64_t i = first, end = first + n;
	bool v;

	if (!n)
		return 0;
	v = vhd_bit(bm, i);
	*set = v;
	while (i < end) {
		if ((i & 7) == 0 && end - i >= 8 && bm[i >> 3] == (v ? 0xff : 0x00)) {
			i += 8;
			continue;
		}
		if (vhd_bit(bm, i) != v)
			break;
		i++;
	}
	return i - first;
}

void vhd_bitmap_set(uint8_t *bm, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		bm[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
}

bool vhd_bitmap_all(const uint8_t *bm, uint64_t first, uint64_t n)
{
	bool set;

	return n == 0 || (vhd_bitmap_run(bm, first, n, &set) == n && set);
}

/* ---- geometry -------------------------------------------------------------------- */

void vhd_chs(uint64_t size, uint16_t *cyls, uint8_t *heads, uint8_t *spt)
{
	uint64_t ts = size / VHD_SECTOR, cth;
	uint32_t h, s;

	if (ts > 65535ull * 16 * 255)
		ts = 65535ull * 16 * 255;
	if (ts >= 65535ull * 16 * 63) {
		s = 255;
		h = 16;
		cth = ts / s;
	} else {
		s = 17;
		cth = ts / s;
		h = (uint32_t)((cth + 1023) / 1024);
		if (h < 4)
			h = 4;
		if (cth >= (uint64_t)h * 1024 || h > 16) {
			s = 31;
			h = 16;
			cth = ts / s;
		}
		if (cth >= (uint64_t)h * 1024) {
			s = 63;
			h = 16;
			cth = ts / s;
		}
	}
	*cyls = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}
