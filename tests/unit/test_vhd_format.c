/* The VHD format layer (tapdisk/vhd/vhd_format.c): checksums as the
 * specification defines them (one's complement of the byte sum, the
 * field itself skipped), the footer and dynamic-header fields at the
 * specification's offsets, the refusals of docs/FORMAT-vhd.md, BAT entry
 * checks, parent locators (UTF-16LE paths, file:// URLs, Windows-only
 * paths skipped), the parent name, sector bitmaps (most significant bit
 * first) and the CHS geometry of the specification's algorithm. Offsets
 * and values are written out here from the specification on purpose: if
 * the code drifts from it, these tests fail. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/vhd/vhd_format.h"

static char err[512];

/* A dynamic disk's footer, field by field at the specification's offsets. */
static void make_footer(uint8_t *b, uint32_t type, uint64_t size)
{
	uint32_t sum = 0;

	memset(b, 0, 512);
	memcpy(b, "conectix", 8);
	vhd_put_be32(b + 8, 2);	       /* features: reserved bit set */
	vhd_put_be32(b + 12, 0x10000); /* version 1.0 */
	vhd_put_be64(b + 16, type == 2 ? ~0ull : 512);
	memcpy(b + 28, "qemu", 4);
	vhd_put_be64(b + 40, size); /* original size */
	vhd_put_be64(b + 48, size); /* current size */
	vhd_put_be32(b + 60, type);
	for (int i = 0; i < 512; i++)
		sum += b[i];
	vhd_put_be32(b + 64, ~sum); /* checksum: its own bytes were zero */
}

static void make_header(uint8_t *b, uint64_t bat, uint32_t entries, uint32_t bs)
{
	uint32_t sum = 0;

	memset(b, 0, 1024);
	memcpy(b, "cxsparse", 8);
	vhd_put_be64(b + 8, ~0ull);
	vhd_put_be64(b + 16, bat);
	vhd_put_be32(b + 24, 0x10000);
	vhd_put_be32(b + 28, entries);
	vhd_put_be32(b + 32, bs);
	for (int i = 0; i < 1024; i++)
		sum += b[i];
	vhd_put_be32(b + 36, ~sum);
}

static void test_footer(void **state)
{
	uint8_t b[512];
	struct vhd_footer f;

	(void)state;
	make_footer(b, 3, 64 << 20);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, 3);
	assert_int_equal(f.cur_size, 64 << 20);
	assert_int_equal(f.data_offset, 512);
	assert_int_equal(vhd_checksum(b, 512, 64), vhd_be32(b + 64));
	/* one flipped byte anywhere: checksum mismatch */
	b[200] ^= 1;
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "footer checksum mismatch"));
	/* no cookie: -ENOENT (the caller may try the copy at offset 0) */
	make_footer(b, 3, 64 << 20);
	b[0] = 'x';
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), -ENOENT);
	/* sizes, types */
	make_footer(b, 3, 3ull << 40);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "above 2 TiB"));
	make_footer(b, 5, 64 << 20);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), -EINVAL);
	make_footer(b, 2, 1000);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), -EINVAL);
	make_footer(b, 2, 4096);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), 0);
	/* the encoder writes what the parser reads */
	f.cur_size = 8192;
	vhd_footer_encode(&f, b);
	assert_int_equal(vhd_be64(b + 48), 8192);
	assert_int_equal(vhd_footer_parse(b, &f, err, sizeof(err)), 0);
}

static void test_header(void **state)
{
	struct vhd_layout lay = {
	    .file_size = 1 << 20, .footer_off = (1 << 20) - 512, .vsize = 64 << 20};
	uint8_t b[1024];
	struct vhd_header h;

	(void)state;
	make_header(b, 1536, 32, 2 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), 0);
	assert_int_equal(h.block_bits, 21);
	assert_int_equal(h.bitmap_bytes, 512);
	assert_int_equal(h.bat_bytes, 512);
	/* too few entries for the size, a block size not a power of two */
	make_header(b, 1536, 31, 2 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), -EINVAL);
	make_header(b, 1536, 32, 3 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), -EINVAL);
	/* a BAT on the header, or past the footer */
	make_header(b, 512, 32, 2 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), -EINVAL);
	make_header(b, (1 << 20) - 512, 32, 2 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), -EINVAL);
	/* checksum */
	make_header(b, 1536, 32, 2 << 20);
	b[700] ^= 0x80;
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "dynamic header checksum mismatch"));
}

static void test_bat(void **state)
{
	struct vhd_layout lay = {
	    .file_size = 16 << 20, .footer_off = (16 << 20) - 512, .vsize = 8 << 20};
	struct vhd_range res[3 + VHD_NLOC];
	uint8_t b[1024];
	struct vhd_header h;
	uint64_t off = 0;
	int n;

	(void)state;
	make_header(b, 1536, 4, 2 << 20);
	assert_int_equal(vhd_header_parse(b, 512, &lay, &h, err, sizeof(err)), 0);
	n = vhd_reserved_ranges(&h, 512, false, res);
	assert_int_equal(n, 3);
	assert_int_equal(vhd_bat_check(VHD_BAT_UNUSED, &h, lay.footer_off, res, n, &off), 0);
	assert_int_equal(vhd_bat_check(4, &h, lay.footer_off, res, n, &off), 1);
	assert_int_equal(off, 2048);
	assert_int_equal(vhd_bat_check(1, &h, lay.footer_off, res, n, &off), -1); /* header */
	assert_int_equal(vhd_bat_check(3, &h, lay.footer_off, res, n, &off), -1); /* BAT */
	/* the last block must end before the footer */
	assert_int_equal(vhd_bat_check((16 << 20) / 512 - 4097, &h, lay.footer_off, res, n, &off),
			 -1);
	assert_int_equal(vhd_bat_check((16 << 20) / 512 - 4098, &h, lay.footer_off, res, n, &off),
			 1);
	assert_int_equal(vhd_bat_check(0xfffffff0u, &h, lay.footer_off, res, n, &off), -1);
}

static void test_locators(void **state)
{
	uint8_t d[256];
	char out[256];
	int n;

	(void)state;
	/* W2ku: UTF-16LE, backslashes become slashes */
	n = vhd_utf16_encode("/srv/vm/base.vhd", false, true, d, sizeof(d));
	assert_true(n > 0);
	assert_int_equal(d[0], '\\');
	assert_int_equal(d[1], 0);
	assert_int_equal(vhd_locator_decode(VHD_PLAT_W2KU, d, (size_t)n, out, sizeof(out)), 0);
	assert_string_equal(out, "/srv/vm/base.vhd");
	/* W2ru with trailing NUL padding */
	memset(d, 0, sizeof(d));
	n = vhd_utf16_encode("./b\xc3\xa9.vhd", false, true, d, sizeof(d));
	assert_int_equal(vhd_locator_decode(VHD_PLAT_W2RU, d, (size_t)n + 8, out, sizeof(out)), 0);
	assert_string_equal(out, "./b\xc3\xa9.vhd");
	/* a drive letter names nothing here */
	n = vhd_utf16_encode("C:\\vms\\base.vhd", false, false, d, sizeof(d));
	assert_int_equal(vhd_locator_decode(VHD_PLAT_W2KU, d, (size_t)n, out, sizeof(out)),
			 -ENOTSUP);
	/* an unpaired surrogate does not decode */
	d[0] = 0x00;
	d[1] = 0xd8;
	d[2] = 'a';
	d[3] = 0;
	assert_int_equal(vhd_locator_decode(VHD_PLAT_W2KU, d, 4, out, sizeof(out)), -EINVAL);
	/* MacX: a file URL, percent-decoded */
	memcpy(d, "file:///srv/my%20vm/b.vhd", 26);
	assert_int_equal(vhd_locator_decode(VHD_PLAT_MACX, d, 25, out, sizeof(out)), 0);
	assert_string_equal(out, "/srv/my vm/b.vhd");
	memcpy(d, "file:///srv/%00x", 17);
	assert_int_equal(vhd_locator_decode(VHD_PLAT_MACX, d, 16, out, sizeof(out)), -EINVAL);
	/* deprecated kinds are not used */
	assert_int_equal(vhd_locator_decode(VHD_PLAT_WI2K, d, 16, out, sizeof(out)), -ENOTSUP);
}

static void test_parent_name(void **state)
{
	uint8_t raw[512];
	char out[256];

	(void)state;
	memset(raw, 0, sizeof(raw));
	assert_true(vhd_utf16_encode("base.vhd", true, false, raw, sizeof(raw)) == 16);
	assert_int_equal(raw[0], 0);
	assert_int_equal(raw[1], 'b');
	assert_int_equal(vhd_parent_name(raw, out, sizeof(out)), 0);
	assert_string_equal(out, "base.vhd");
	memset(raw, 0, sizeof(raw));
	assert_int_equal(vhd_parent_name(raw, out, sizeof(out)), -EINVAL);
}

static void test_bitmap(void **state)
{
	uint8_t bm[4] = {0x80, 0x00, 0xff, 0x01};
	bool set;

	(void)state;
	assert_true(vhd_bit(bm, 0));
	assert_false(vhd_bit(bm, 1));
	assert_int_equal(vhd_bitmap_run(bm, 0, 32, &set), 1);
	assert_true(set);
	assert_int_equal(vhd_bitmap_run(bm, 1, 31, &set), 15);
	assert_false(set);
	assert_int_equal(vhd_bitmap_run(bm, 16, 16, &set), 8);
	assert_true(set);
	assert_true(vhd_bit(bm, 31));
	vhd_bitmap_set(bm, 1, 15);
	assert_true(vhd_bitmap_all(bm, 0, 24));
	assert_false(vhd_bitmap_all(bm, 0, 25));
}

static void test_chs(void **state)
{
	uint16_t c;
	uint8_t h, s;

	(void)state;
	/* the specification's algorithm, worked by hand: 64 MiB is 131072
	 * sectors: 17 sectors per track, 8 heads (cylinders*heads =
	 * 7710, /1024 rounded up), 963 cylinders */
	vhd_chs(64 << 20, &c, &h, &s);
	assert_int_equal(s, 17);
	assert_int_equal(h, 8);
	assert_int_equal(c, 963);
	/* at and above 65535*16*63 sectors: 255 sectors, 16 heads */
	vhd_chs(65535ull * 16 * 63 * 512, &c, &h, &s);
	assert_int_equal(s, 255);
	assert_int_equal(h, 16);
	vhd_chs(4ull << 40, &c, &h, &s);
	assert_int_equal(c, 65535);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_footer),	cmocka_unit_test(test_header),
	    cmocka_unit_test(test_bat),		cmocka_unit_test(test_locators),
	    cmocka_unit_test(test_parent_name), cmocka_unit_test(test_bitmap),
	    cmocka_unit_test(test_chs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
