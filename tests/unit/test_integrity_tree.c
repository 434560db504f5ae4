/* The integrity layer's v2 on-disk pieces (docs/FORMAT.md, "Freshness
 * tree"): layout geometry, tree hashes and root, superblock v2 round trip
 * and version checks. Pure functions, no I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypt/backend/cipher.h"
#include "integrity/format.h"

static const uint8_t KEY[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t UUID[16] = {0xaa, 0xbb, 0xcc};

static void test_layout_v2_geometry(void **state)
{
	struct ti_params p, q;
	uint8_t enc[TI_PARAMS_LEN];
	char err[256];

	(void)state;
	assert_int_equal(ti_layout_version(1ull << 30, 1 << 20, 0, 2, &p), 0);
	assert_int_equal(p.version, 2);
	assert_int_equal(p.tags_pages, (p.data_blocks + 127) / 128);
	assert_int_equal(p.l1_pages, (p.tags_pages + 127) / 128);
	assert_int_equal(p.l2_pages, (p.l1_pages + 127) / 128);
	/* two slots per tag page, then L1 slots and two L2 regions */
	assert_int_equal(p.tree_off, p.tags_off + 2 * p.tags_pages * TI_BLOCK);
	assert_int_equal(p.tree_pages, 2 * p.l1_pages + 2 * p.l2_pages);
	assert_true(ti_layout_end(&p) <= 1ull << 30);
	assert_int_equal(ti_tag_page_off(&p, 3, 1), p.tags_off + 7 * TI_BLOCK);
	assert_int_equal(ti_l1_page_off(&p, 0, 1), p.tree_off + TI_BLOCK);
	assert_int_equal(ti_l2_off(&p, 1), p.tree_off + (2 * p.l1_pages + p.l2_pages) * TI_BLOCK);
	ti_params_encode(&p, enc);
	assert_int_equal(ti_params_decode(enc, 1ull << 30, &q, err, sizeof(err)), 0);
	assert_int_equal(q.l2_pages, p.l2_pages);
	/* a v2 image is smaller in data than a v1 one of the same size */
	assert_int_equal(ti_layout_version(1ull << 30, 1 << 20, 0, 1, &q), 0);
	assert_true(q.data_blocks > p.data_blocks);
	/* the resident top level stays bounded: v2 data areas stop at 128 TiB */
	assert_int_equal(ti_layout_version(1ull << 50, 1 << 20, 0, 2, &q), 0);
	assert_true(q.data_blocks <= TI_V2_MAX_BLOCKS);
	assert_true(q.l2_pages * TI_BLOCK <= (64u << 20));
	q.data_blocks = TI_V2_MAX_BLOCKS + 1;
	ti_params_encode(&q, enc);
	assert_int_not_equal(ti_params_decode(enc, 1ull << 50, &q, err, sizeof(err)), 0);
	/* version 3 does not exist */
	assert_int_not_equal(ti_layout_version(1ull << 30, 1 << 20, 0, 3, &q), 0);
	enc[0] = 3;
	assert_int_not_equal(ti_params_decode(enc, 1ull << 30, &q, err, sizeof(err)), 0);
}

static void test_tree_hash_rules(void **state)
{
	struct td_hmac *m = td_hmac_new(KEY, 32);
	uint8_t page[TI_BLOCK] = {0}, h[TI_HASH_LEN], h2[TI_HASH_LEN], zero[TI_HASH_LEN] = {0};
	uint8_t *l2 = calloc(2, TI_BLOCK);

	(void)state;
	assert_non_null(m);
	/* an all-zero page hashes to zeros, whatever its level and index */
	assert_int_equal(ti_tree_hash(m, UUID, 0, 5, page, h), 0);
	assert_memory_equal(h, zero, TI_HASH_LEN);
	assert_int_equal(ti_tree_root(m, UUID, 2, l2, h), 0);
	assert_memory_equal(h, zero, TI_HASH_LEN);
	/* otherwise bound to level and index */
	page[100] = 1;
	assert_int_equal(ti_tree_hash(m, UUID, 0, 5, page, h), 0);
	assert_memory_not_equal(h, zero, TI_HASH_LEN);
	assert_int_equal(ti_tree_hash(m, UUID, 0, 6, page, h2), 0);
	assert_memory_not_equal(h, h2, TI_HASH_LEN);
	assert_int_equal(ti_tree_hash(m, UUID, 1, 5, page, h2), 0);
	assert_memory_not_equal(h, h2, TI_HASH_LEN);
	l2[4095] = 1;
	assert_int_equal(ti_tree_root(m, UUID, 2, l2, h), 0);
	assert_memory_not_equal(h, zero, TI_HASH_LEN);
	assert_int_equal(ti_tree_root(m, UUID, 1, l2, h2), 0);
	assert_memory_not_equal(h, h2, TI_HASH_LEN);
	free(l2);
	td_hmac_free(m);
}

static void test_super_v2(void **state)
{
	struct td_hmac *m = td_hmac_new(KEY, 32);
	struct ti_super s = {.version = 2, .epoch = 7, .seq_base = 99}, r;
	uint8_t blk[TI_BLOCK];

	(void)state;
	memset(s.root, 0x5c, sizeof(s.root));
	ti_super_encode(&s, UUID, m, blk);
	memset(&r, 0, sizeof(r));
	r.version = 2;
	assert_int_equal(ti_super_decode(blk, UUID, m, &r), 0);
	assert_int_equal(r.epoch, 7);
	assert_memory_equal(r.root, s.root, TI_HASH_LEN);
	/* a reader expecting version 1 refuses it, and the root is MAC'd */
	r.version = 1;
	assert_int_not_equal(ti_super_decode(blk, UUID, m, &r), 0);
	blk[48] ^= 1;
	r.version = 2;
	assert_int_not_equal(ti_super_decode(blk, UUID, m, &r), 0);
	td_hmac_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_v2_geometry),
	    cmocka_unit_test(test_tree_hash_rules),
	    cmocka_unit_test(test_super_v2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
