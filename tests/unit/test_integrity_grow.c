/* The integrity layout after an online grow (docs/FORMAT.md "Growing"):
 * ti_grow_layout places the new metadata after the new data area, or past
 * the old layout when a small grow would overlap it; ti_params_decode
 * accepts such a gap and nothing else. Pure functions, no I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "integrity/format.h"

#define MiB (1ull << 20)

static void roundtrip(const struct ti_params *p, uint64_t lower)
{
	uint8_t enc[TI_PARAMS_LEN];
	struct ti_params q;
	char err[256];

	ti_params_encode(p, enc);
	assert_int_equal(ti_params_decode(enc, lower, &q, err, sizeof(err)), 0);
	assert_int_equal(q.super_off, p->super_off);
	assert_int_equal(q.tree_off, p->tree_off);
	assert_int_equal(q.l2_pages, p->l2_pages);
	assert_int_equal(ti_layout_end(&q), ti_layout_end(p));
}

static void test_large_grow_no_gap(void **state)
{
	struct ti_params p, g;
	unsigned v;

	(void)state;
	for (v = 1; v <= 2; v++) {
		assert_int_equal(ti_layout_version(64 * MiB, MiB, 0, v, &p), 0);
		/* far larger than the metadata: right after the new data area */
		assert_int_equal(ti_grow_layout(&p, p.data_blocks + 100000, &g), 0);
		assert_int_equal(g.data_blocks, p.data_blocks + 100000);
		assert_int_equal(g.super_off, g.data_start + g.data_blocks * TI_BLOCK);
		assert_true(g.super_off >= ti_layout_end(&p));
		assert_int_equal(g.journal_blocks, p.journal_blocks);
		assert_int_equal(g.version, v);
		assert_int_equal(g.tags_pages, (g.data_blocks + 127) / 128);
		roundtrip(&g, ti_layout_end(&g));
	}
}

static void test_small_grow_gap(void **state)
{
	struct ti_params p, g, g2;

	(void)state;
	assert_int_equal(ti_layout(64 * MiB, MiB, 0, &p), 0);
	/* one block more: the new data area ends inside the old metadata, so
	 * the new metadata starts at the old layout's end */
	assert_int_equal(ti_grow_layout(&p, p.data_blocks + 1, &g), 0);
	assert_int_equal(g.super_off, ti_layout_end(&p));
	assert_true(g.super_off > g.data_start + g.data_blocks * TI_BLOCK);
	roundtrip(&g, ti_layout_end(&g));
	/* and again from the gapped layout: never over the one in use */
	assert_int_equal(ti_grow_layout(&g, g.data_blocks + 1, &g2), 0);
	assert_int_equal(g2.super_off, ti_layout_end(&g));
	roundtrip(&g2, ti_layout_end(&g2));
}

static void test_grow_refusals(void **state)
{
	struct ti_params p, g;

	(void)state;
	assert_int_equal(ti_layout(64 * MiB, MiB, 0, &p), 0);
	assert_int_equal(ti_grow_layout(&p, p.data_blocks, &g), -EINVAL);
	assert_int_equal(ti_grow_layout(&p, p.data_blocks - 1, &g), -EINVAL);
	assert_int_equal(ti_grow_layout(&p, TI_V2_MAX_BLOCKS + 1, &g), -EFBIG);
	assert_int_equal(ti_grow_layout(&p, (1ull << 40) + 1, &g), -EFBIG);
}

static void test_decode_rejects_bad_meta(void **state)
{
	struct ti_params p, g, q;
	uint8_t enc[TI_PARAMS_LEN];
	char err[256];

	(void)state;
	assert_int_equal(ti_layout(64 * MiB, MiB, 0, &p), 0);
	assert_int_equal(ti_grow_layout(&p, p.data_blocks + 1, &g), 0);
	/* the grown layout needs the grown lower image */
	ti_params_encode(&g, enc);
	assert_int_equal(ti_params_decode(enc, 64 * MiB, &q, err, sizeof(err)), -EIO);
	/* super_off inside the data area */
	ti_params_encode(&p, enc);
	ti_put64(enc + 24, p.super_off - TI_BLOCK);
	assert_int_equal(ti_params_decode(enc, 1ull << 40, &q, err, sizeof(err)), -EBADMSG);
	/* not a block multiple */
	ti_params_encode(&g, enc);
	ti_put64(enc + 24, g.super_off + 512);
	assert_int_equal(ti_params_decode(enc, 1ull << 40, &q, err, sizeof(err)), -EBADMSG);
	/* beyond the bound (offsets would wrap) */
	ti_put64(enc + 24, TI_META_MAX + TI_BLOCK);
	assert_int_equal(ti_params_decode(enc, UINT64_MAX, &q, err, sizeof(err)), -EBADMSG);
	/* a gap whose derived fields do not follow */
	ti_params_encode(&g, enc);
	ti_put64(enc + 24, g.super_off + TI_BLOCK);
	assert_int_equal(ti_params_decode(enc, 1ull << 40, &q, err, sizeof(err)), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_large_grow_no_gap),
	    cmocka_unit_test(test_small_grow_gap),
	    cmocka_unit_test(test_grow_refusals),
	    cmocka_unit_test(test_decode_rejects_bad_meta),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
