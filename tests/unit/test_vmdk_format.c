/* The VMDK format layer (tapdisk/vmdk/vmdk_format.c): a hosted sparse
 * extent header laid out by hand from VMware's "Virtual Disk Format 1.1"
 * (the offsets are written out again here on purpose: if the code drifts
 * from the spec, these tests fail) decodes to its fields; every hostile
 * header is refused with a reason; placement checks, grain table entries,
 * grain markers and the bounded inflate (a zlib bomb stops at one grain);
 * text descriptors, including the ones we refuse; random corruption never
 * crashes the parsers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "tapdisk/vmdk/vmdk_format.h"

static char err[512];

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* SparseExtentHeader, as the spec lays it out (packed, little endian):
 * magicNumber 0, version 4, flags 8, capacity 12, grainSize 20,
 * descriptorOffset 28, descriptorSize 36, numGTEsPerGT 44, rgdOffset 48,
 * gdOffset 56, overHead 64, uncleanShutdown 72, singleEndLineChar 73,
 * nonEndLineChar 74, doubleEndLineChar1 75, doubleEndLineChar2 76,
 * compressAlgorithm 77. What qemu-img makes for a 64 MiB disk. */
static void qemu_like(uint8_t *h)
{
	memset(h, 0, 512);
	memcpy(h, "KDMV", 4);
	put32(h + 4, 1);
	put32(h + 8, 3); /* newline check, redundant GD */
	put64(h + 12, 131072);
	put64(h + 20, 128);
	put64(h + 28, 1);
	put64(h + 36, 20);
	put32(h + 44, 512);
	put64(h + 48, 21);
	put64(h + 56, 30);
	put64(h + 64, 128);
	h[73] = '\n';
	h[74] = ' ';
	h[75] = '\r';
	h[76] = '\n';
}

static void test_header_fields(void **state)
{
	uint8_t b[512];
	struct vmdk_hdr h;

	(void)state;
	qemu_like(b);
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)), 0);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.capacity, 131072);
	assert_int_equal(h.grain_sectors, 128);
	assert_int_equal(h.grain_bytes, 65536);
	assert_int_equal(h.desc_offset, 1);
	assert_int_equal(h.desc_size, 20);
	assert_int_equal(h.gtes_per_gt, 512);
	assert_int_equal(h.rgd_offset, 21);
	assert_int_equal(h.gd_offset, 30);
	assert_true(h.rgd);
	assert_false(h.zero_grain);
	assert_false(h.compressed);
	assert_int_equal(h.gt_cover, 512ull * 65536); /* 32 MiB per grain table */
	assert_int_equal(h.gd_entries, 2);
	assert_int_equal(h.gd_span, 512);
	assert_int_equal(h.gt_span, 2048);
	/* GD at sector 30, GTs after: fits a 2.5 MiB file */
	assert_int_equal(vmdk_hdr_check(&h, 2621440, err, sizeof(err)), 0);
	/* the encoder writes the same layout */
	{
		uint8_t e[512];

		vmdk_hdr_encode(&h, e);
		assert_memory_equal(e, b, 512);
	}
}

static void refused(void (*patch)(uint8_t *), const char *why)
{
	uint8_t b[512];
	struct vmdk_hdr h;
	int rc;

	qemu_like(b);
	patch(b);
	err[0] = 0;
	rc = vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err));
	if (rc == 0)
		rc = vmdk_hdr_check(&h, 2621440, err, sizeof(err));
	assert_true(rc == -EINVAL || rc == -ENOTSUP);
	if (!strstr(err, why))
		fail_msg("expected '%s' in '%s'", why, err);
}

static void p_magic(uint8_t *b)
{
	memcpy(b, "COWD", 4);
}
static void p_version(uint8_t *b)
{
	put32(b + 4, 4);
}
static void p_flags(uint8_t *b)
{
	put32(b + 8, 3 | 1u << 9);
}
static void p_capacity0(uint8_t *b)
{
	put64(b + 12, 0);
}
static void p_capacity_huge(uint8_t *b)
{
	put64(b + 12, 1ull << 38);
}
static void p_grain3(uint8_t *b)
{
	put64(b + 20, 3);
}
static void p_grain_small(uint8_t *b)
{
	put64(b + 20, 4);
}
static void p_grain_big(uint8_t *b)
{
	put64(b + 20, 4096);
}
static void p_gtes(uint8_t *b)
{
	put32(b + 44, 1000);
}
static void p_gd0(uint8_t *b)
{
	put64(b + 56, 0);
}
static void p_gd_far(uint8_t *b)
{
	put64(b + 56, 1ull << 40);
}
static void p_gd_on_desc(uint8_t *b)
{
	put64(b + 56, 5);
}
static void p_rgd_on_gd(uint8_t *b)
{
	put64(b + 48, 30);
}
static void p_desc_far(uint8_t *b)
{
	put64(b + 28, 6000);
}
static void p_nl(uint8_t *b)
{
	b[75] = '\n';
}
static void p_compress_flag(uint8_t *b)
{
	b[77] = 1;
}
static void p_compress_algo(uint8_t *b)
{
	put32(b + 8, 3 | 1u << 16);
	b[77] = 2;
}
static void p_gd_end_plain(uint8_t *b)
{
	put64(b + 56, ~0ull);
}
static void p_huge_gd(uint8_t *b)
{
	put64(b + 12, 1ull << 37);
	put64(b + 20, 8);
	put32(b + 44, 128);
}

static void test_header_refused(void **state)
{
	(void)state;
	refused(p_magic, "bad magic");
	refused(p_version, "version 4");
	refused(p_flags, "unknown header flags");
	refused(p_capacity0, "capacity 0");
	refused(p_capacity_huge, "capacity");
	refused(p_grain3, "grain size 3");
	refused(p_grain_small, "grain size 4");
	refused(p_grain_big, "grain size 4096");
	refused(p_gtes, "1000 entries per grain table");
	refused(p_gd0, "offset is 0");
	refused(p_gd_far, "not inside the file");
	refused(p_gd_on_desc, "overlaps");
	refused(p_rgd_on_gd, "overlaps");
	refused(p_desc_far, "descriptor runs past");
	refused(p_nl, "newline");
	refused(p_compress_flag, "disagree");
	refused(p_compress_algo, "compression algorithm 2");
	refused(p_gd_end_plain, "without compressed grains");
	refused(p_huge_gd, "would have");
	{
		struct vmdk_hdr h;
		uint8_t b[512];

		qemu_like(b);
		assert_int_equal(vmdk_hdr_decode(b, 511, &h, err, sizeof(err)), -EINVAL);
	}
}

static void test_entries(void **state)
{
	uint8_t b[512];
	struct vmdk_hdr h;
	uint64_t host = 0;
	const uint64_t fsz = 2621440; /* 5120 sectors */

	(void)state;
	qemu_like(b);
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)), 0);
	/* GD entries */
	assert_null(vmdk_gd_entry_check(&h, 0, fsz));
	assert_null(vmdk_gd_entry_check(&h, 31, fsz));
	assert_non_null(vmdk_gd_entry_check(&h, 1, fsz));    /* the descriptor */
	assert_non_null(vmdk_gd_entry_check(&h, 30, fsz));   /* the GD itself */
	assert_non_null(vmdk_gd_entry_check(&h, 5117, fsz)); /* 4 sectors past the end */
	assert_null(vmdk_gd_entry_check(&h, 5116, fsz));
	/* GTEs: 0 unallocated, 1 data (no zeroed-grain flag) on the descriptor */
	assert_int_equal(vmdk_gte_decode(&h, 0, fsz, &host), VMDK_GTE_UNALLOC);
	assert_int_equal(vmdk_gte_decode(&h, 1, fsz, &host), VMDK_GTE_INVALID);
	assert_int_equal(vmdk_gte_decode(&h, 128, fsz, &host), VMDK_GTE_DATA);
	assert_int_equal(host, 65536);
	assert_int_equal(vmdk_gte_decode(&h, 5120 - 128, fsz, &host), VMDK_GTE_DATA);
	assert_int_equal(vmdk_gte_decode(&h, 5120 - 127, fsz, &host), VMDK_GTE_INVALID);
	assert_int_equal(vmdk_gte_decode(&h, 0xffffffffu, fsz, &host), VMDK_GTE_INVALID);
	/* version 2 with the zeroed-grain flag: 1 is a zeroed grain */
	put32(b + 4, 2);
	put32(b + 8, 7);
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)), 0);
	assert_int_equal(vmdk_gte_decode(&h, 1, fsz, &host), VMDK_GTE_ZERO);
	assert_true(vmdk_hits_fixed_meta(&h, 0, 1));
	assert_true(vmdk_hits_fixed_meta(&h, 21 * 512 + 511, 1));
	assert_false(vmdk_hits_fixed_meta(&h, 31 * 512, 2048));
}

/* a stream-optimized header with one grain marker of deflated data */
static void stream_hdr(struct vmdk_hdr *h)
{
	uint8_t b[512];

	qemu_like(b);
	put32(b + 4, 3);
	put32(b + 8, 3 | 1u << 16 | 1u << 17);
	b[77] = 1;
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), h, err, sizeof(err)), 0);
	assert_true(h->compressed);
}

static size_t marker(uint8_t *out, size_t cap, uint64_t lba, const uint8_t *data, size_t len)
{
	uLongf z = cap - 12;

	assert_int_equal(compress2(out + 12, &z, data, len, 6), Z_OK);
	put64(out, lba);
	put32(out + 8, (uint32_t)z);
	return 12 + z;
}

static void test_compressed(void **state)
{
	struct vmdk_hdr h;
	static uint8_t grain[65536], big[131072], out[65536], m[200000];
	uint32_t size;
	size_t n;

	(void)state;
	stream_hdr(&h);
	for (size_t i = 0; i < sizeof(grain); i++)
		grain[i] = (uint8_t)(i * 31 + (i >> 9));
	n = marker(m, sizeof(m), 256, grain, sizeof(grain));
	assert_int_equal(vmdk_marker_parse(&h, m, n, 256, &size, err, sizeof(err)), 0);
	assert_int_equal(vmdk_inflate_grain(m + 12, size, out, sizeof(out)), 0);
	assert_memory_equal(out, grain, sizeof(grain));
	/* the marker must name the grain we expect, and fit in what was read */
	assert_int_equal(vmdk_marker_parse(&h, m, n, 384, &size, err, sizeof(err)), -EIO);
	assert_int_equal(vmdk_marker_parse(&h, m, n - 1, 256, &size, err, sizeof(err)), -EIO);
	assert_int_equal(vmdk_marker_parse(&h, m, 11, 256, &size, err, sizeof(err)), -EIO);
	put32(m + 8, 0);
	assert_int_equal(vmdk_marker_parse(&h, m, n, 256, &size, err, sizeof(err)), -EIO);
	put32(m + 8, 0xfffffff0u);
	assert_int_equal(vmdk_marker_parse(&h, m, sizeof(m), 256, &size, err, sizeof(err)), -EIO);
	/* a bomb: two grains of data stop at one, and fail */
	memset(big, 0x41, sizeof(big));
	n = marker(m, sizeof(m), 256, big, sizeof(big));
	memset(out, 0, sizeof(out));
	assert_int_equal(vmdk_inflate_grain(m + 12, n - 12, out, sizeof(out)), -EIO);
	/* short: less than a grain */
	n = marker(m, sizeof(m), 256, grain, 4096);
	assert_int_equal(vmdk_inflate_grain(m + 12, n - 12, out, sizeof(out)), -EIO);
	/* truncated stream, garbage */
	n = marker(m, sizeof(m), 256, grain, sizeof(grain));
	assert_int_equal(vmdk_inflate_grain(m + 12, (n - 12) / 2, out, sizeof(out)), -EIO);
	memset(m + 12, 0x5a, 300);
	assert_int_equal(vmdk_inflate_grain(m + 12, 300, out, sizeof(out)), -EIO);
}

static void test_footer(void **state)
{
	uint8_t b[512], mk[512], ft[512];
	struct vmdk_hdr h;

	(void)state;
	qemu_like(b);
	put32(b + 4, 3);
	put32(b + 8, 1 | 1u << 16 | 1u << 17);
	b[77] = 1;
	put64(b + 48, 0);
	put64(b + 56, ~0ull);
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)), 0);
	memset(mk, 0, sizeof(mk));
	put64(mk, 1);
	put32(mk + 12, 3); /* footer marker */
	memcpy(ft, b, 512);
	put64(ft + 56, 300);
	assert_int_equal(vmdk_footer_merge(&h, mk, ft, err, sizeof(err)), 0);
	assert_int_equal(h.gd_offset, 300);
	/* a footer that disagrees on the capacity, or no marker */
	assert_int_equal(vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)), 0);
	put64(ft + 12, 4096);
	assert_int_equal(vmdk_footer_merge(&h, mk, ft, err, sizeof(err)), -EINVAL);
	put64(ft + 12, 131072);
	put32(mk + 12, 2);
	assert_int_equal(vmdk_footer_merge(&h, mk, ft, err, sizeof(err)), -EINVAL);
}

static int parse(const char *text, bool embedded, struct vmdk_desc *d)
{
	err[0] = 0;
	return vmdk_desc_parse(text, strlen(text), embedded, d, err, sizeof(err));
}

static void test_descriptor(void **state)
{
	struct vmdk_desc d;
	const char *ok = "# Disk DescriptorFile\r\nversion=1\nCID=5ba1a6e4\nparentCID=ffffffff\n"
			 "createType=\"twoGbMaxExtentSparse\"\n\n# Extent description\n"
			 "RW 4192256 SPARSE \"d-s001.vmdk\"\n"
			 "RDONLY 2048 FLAT \"d-f001.vmdk\" 64\n"
			 "NOACCESS 8 ZERO\n\n# The Disk Data Base\n#DDB\n\n"
			 "ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"4161\"\n";

	(void)state;
	assert_int_equal(parse(ok, false, &d), 0);
	assert_int_equal(d.version, 1);
	assert_int_equal(d.cid, 0x5ba1a6e4);
	assert_string_equal(d.create_type, "twoGbMaxExtentSparse");
	assert_int_equal(d.next, 3);
	assert_int_equal(d.ext[0].type, VMDK_EXT_SPARSE);
	assert_int_equal(d.ext[0].access, VMDK_ACC_RW);
	assert_int_equal(d.ext[0].sectors, 4192256);
	assert_string_equal(d.ext[0].name, "d-s001.vmdk");
	assert_int_equal(d.ext[1].type, VMDK_EXT_FLAT);
	assert_int_equal(d.ext[1].access, VMDK_ACC_RDONLY);
	assert_int_equal(d.ext[1].offset, 64);
	assert_int_equal(d.ext[2].type, VMDK_EXT_ZERO);
	assert_int_equal(d.ext[2].access, VMDK_ACC_NOACCESS);
	assert_int_equal(d.total, 4192256 + 2048 + 8);
	vmdk_desc_free(&d);
	/* embedded: extent lines are not kept, none needed */
	assert_int_equal(parse(ok, true, &d), 0);
	assert_int_equal(d.next, 0);
	vmdk_desc_free(&d);
	assert_int_equal(parse("version=1\n", true, &d), 0);
	vmdk_desc_free(&d);

	assert_int_equal(parse("version=1\n", false, &d), -EINVAL);
	assert_non_null(strstr(err, "no extent"));
	assert_int_equal(parse("version=1\nparentCID=1234abcd\nRW 8 ZERO\n", false, &d), -ENOTSUP);
	assert_non_null(strstr(err, "delta"));
	assert_int_equal(parse("version=1\nparentFileNameHint=\"p.vmdk\"\nRW 8 ZERO\n", false, &d),
			 -ENOTSUP);
	assert_int_equal(parse("version=1\nRW 8 VMFSSPARSE \"x\"\n", false, &d), -ENOTSUP);
	assert_int_equal(parse("version=1\nRW 8 SESPARSE \"x\"\n", false, &d), -ENOTSUP);
	assert_int_equal(parse("version=1\nRW 8 FLOPPY \"x\"\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\nRW 0 FLAT \"x\"\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\nRW 8 FLAT x\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\nRW 8 FLAT \"\"\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\nRW 8 FLAT \"x\" 12 junk\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\nRW 8 SPARSE \"x\" 12\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=9\nRW 8 ZERO\n", false, &d), -ENOTSUP);
	assert_int_equal(parse("version=1\nCID=xyz\nRW 8 ZERO\n", false, &d), -EINVAL);
	assert_int_equal(parse("hello world\n", false, &d), -EINVAL);
	assert_int_equal(parse("version=1\ncreateType=\"fullDevice\"\nRW 8 ZERO\n", false, &d),
			 -ENOTSUP);
	assert_int_equal(parse("version=1\nRW 8 ZERO\n\x01\n", false, &d), -EINVAL);
	/* the text ends at the first NUL (embedded descriptors are padded) */
	{
		const char t[] = "version=1\nRW 8 ZERO\n\0garbage \x01\x02";

		assert_int_equal(vmdk_desc_parse(t, sizeof(t), false, &d, err, sizeof(err)), 0);
		vmdk_desc_free(&d);
	}
	assert_true(vmdk_looks_like_text((const uint8_t *)ok, strlen(ok)));
	assert_false(vmdk_looks_like_text((const uint8_t *)"KDMV\x01\0\0\0", 8));
}

/* random corruption of a valid header and descriptor: no crash, and what
 * parses satisfies the limits */
static void test_random(void **state)
{
	uint8_t b[512];
	char t[256];
	struct vmdk_hdr h;
	struct vmdk_desc d;
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		qemu_like(b);
		for (int k = 0; k < 1 + i % 6; k++) {
			seed = seed * 1103515245u + 12345u;
			b[(seed >> 8) % 80] ^= (uint8_t)(1u << ((seed >> 20) % 8));
		}
		if (vmdk_hdr_decode(b, sizeof(b), &h, err, sizeof(err)) == 0) {
			assert_true(h.capacity >= 1 && h.capacity <= VMDK_MAX_CAPACITY);
			assert_true(h.gd_entries <= VMDK_MAX_GD_ENTRIES);
			(void)vmdk_hdr_check(&h, seed, err, sizeof(err));
		}
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(t, sizeof(t), "version=1\nRW %u FLAT \"f%u\" %u\nRW 8 ZERO\n", i * 7, i,
			 i);
		for (int k = 0; k < 3 && t[0]; k++) {
			seed = seed * 1103515245u + 12345u;
			t[(seed >> 8) % strlen(t)] = (char)(seed >> 24);
		}
		if (parse(t, i & 1, &d) == 0)
			vmdk_desc_free(&d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_fields), cmocka_unit_test(test_header_refused),
	    cmocka_unit_test(test_entries),	  cmocka_unit_test(test_compressed),
	    cmocka_unit_test(test_footer),	  cmocka_unit_test(test_descriptor),
	    cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
