/* Journal blocks (docs/FORMAT.md "Journal blocks", "Flush points"): the
 * index check, the flush-point kind, canonical-form checks, and what a
 * flush point claims. Pure functions, no I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypt/backend/cipher.h"
#include "integrity/format.h"

static const uint8_t KEY[32] = {7, 6, 5, 4, 3, 2, 1};
static const uint8_t UUID[16] = {0x11, 0x22, 0x33};

static void remac(struct td_hmac *m, uint8_t *blk)
{
	td_hmac_begin(m);
	td_hmac_update(m, blk, TI_MAC_OFF);
	td_hmac_end(m, blk + TI_MAC_OFF);
}

static void test_records_index_check(void **state)
{
	struct td_hmac *m = td_hmac_new(KEY, 32);
	static uint8_t blk[TI_BLOCK];
	static struct ti_fpoint fp;
	struct ti_rec recs[2] = {{.block = 9, .seq = 40},
				 {.block = 3, .seq = 41 | TI_SEQ_ZERO_RANGE, .count = 5}};
	struct ti_rec out[TI_RECS_PER_BLOCK];
	struct ti_jinfo info;

	(void)state;
	assert_non_null(m);
	memset(recs[0].tag, 0xab, TI_TAG_LEN);
	ti_jblock_encode(7, 12, recs, 2, UUID, m, blk);
	/* bytes 48-63 stay zero: what every earlier version wrote */
	for (int i = 48; i < 64; i++)
		assert_int_equal(blk[i], 0);
	assert_int_equal(ti_jblock_decode(blk, 7, 12, UUID, m, out, &fp, &info), 2);
	assert_int_equal(info.kind, TI_JB_RECORDS);
	assert_int_equal(out[0].block, 9);
	assert_int_equal(out[1].count, 5);
	/* the same valid block at another position: copied or moved */
	assert_int_equal(ti_jblock_decode(blk, 7, 11, UUID, m, out, &fp, &info), -TI_EMISPLACED);
	assert_int_equal(info.index, 12);
	assert_int_equal(ti_jblock_decode(blk, 7, 0, UUID, m, out, &fp, &info), -TI_EMISPLACED);
	/* another epoch or image is simply not a journal block of this one */
	assert_int_equal(ti_jblock_decode(blk, 8, 12, UUID, m, out, &fp, &info), -EBADMSG);
	/* non-canonical bytes under a valid MAC are refused */
	blk[TI_REC_OFF + 2 * TI_REC_LEN + 5] = 1; /* after the last record */
	remac(m, blk);
	assert_int_equal(ti_jblock_decode(blk, 7, 12, UUID, m, out, &fp, &info), -EBADMSG);
	ti_jblock_encode(7, 12, recs, 2, UUID, m, blk);
	blk[TI_REC_OFF + TI_REC_LEN + 30] = 1; /* inside a zero range's zero tail */
	remac(m, blk);
	assert_int_equal(ti_jblock_decode(blk, 7, 12, UUID, m, out, &fp, &info), -EBADMSG);
	ti_jblock_encode(7, 12, recs, 2, UUID, m, blk);
	blk[56] = 1; /* the flush-point field in a records block */
	remac(m, blk);
	assert_int_equal(ti_jblock_decode(blk, 7, 12, UUID, m, out, &fp, &info), -EBADMSG);
	ti_jblock_encode(7, 12, recs, 2, UUID, m, blk);
	blk[48] = 2; /* an unknown kind */
	remac(m, blk);
	assert_int_equal(ti_jblock_decode(blk, 7, 12, UUID, m, out, &fp, &info), -EBADMSG);
	td_hmac_free(m);
}

static void test_flush_point_block(void **state)
{
	struct td_hmac *m = td_hmac_new(KEY, 32);
	static uint8_t blk[TI_BLOCK];
	static struct ti_fpoint fp, got;
	struct ti_rec out[TI_RECS_PER_BLOCK];
	struct ti_jinfo info;

	(void)state;
	fp.below = 100;
	fp.n = 3;
	fp.r[0] = (struct ti_frange){.start = 10, .count = 2};	/* in flight: not claimed */
	fp.r[1] = (struct ti_frange){.start = 95, .count = 10}; /* straddles below */
	fp.r[2] = (struct ti_frange){.start = 200, .count = 1}; /* a FUA write: claimed */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), 0);
	assert_int_equal(info.kind, TI_JB_FLUSH);
	assert_int_equal(got.below, 100);
	assert_int_equal(got.n, 3);
	assert_true(ti_fpoint_has(&got, 0));
	assert_true(ti_fpoint_has(&got, 9));
	assert_false(ti_fpoint_has(&got, 10));
	assert_false(ti_fpoint_has(&got, 11));
	assert_true(ti_fpoint_has(&got, 12));
	assert_true(ti_fpoint_has(&got, 94));
	assert_false(ti_fpoint_has(&got, 95));
	assert_false(ti_fpoint_has(&got, 99));
	assert_true(ti_fpoint_has(&got, 100)); /* in a range at or above below: added */
	assert_true(ti_fpoint_has(&got, 104));
	assert_false(ti_fpoint_has(&got, 105));
	assert_false(ti_fpoint_has(&got, 199));
	assert_true(ti_fpoint_has(&got, 200));
	assert_false(ti_fpoint_has(&got, 201));
	assert_int_equal(ti_jblock_decode(blk, 4, 2, UUID, m, out, &got, &info), -TI_EMISPLACED);
	/* ranges must be sorted, disjoint and not touching */
	fp.r[1] = (struct ti_frange){.start = 12, .count = 3}; /* touches [10, 12) */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	fp.r[1] = (struct ti_frange){.start = 5, .count = 1}; /* out of order */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	fp.r[1] = (struct ti_frange){.start = 50, .count = 0}; /* empty */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	fp.r[1] = (struct ti_frange){.start = 50, .count = 1};
	fp.r[2] = (struct ti_frange){.start = TI_SEQ_LIMIT - 1, .count = 2}; /* past 2^63 */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	/* records and a flush point in one block: ranges after the records */
	{
		struct ti_rec r1[2] = {{.block = 1, .seq = 300}, {.block = 2, .seq = 301}};

		fp.r[2] = (struct ti_frange){.start = 300, .count = 1};
		ti_jflush_encode(4, 3, r1, 2, &fp, UUID, m, blk);
		assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), 2);
		assert_int_equal(info.kind, TI_JB_FLUSH);
		assert_int_equal(out[1].seq, 301);
		assert_int_equal(got.n, 3);
		assert_int_equal(got.r[2].start, 300);
		/* records and ranges that do not fit together are refused */
		blk[24] = TI_RECS_PER_BLOCK;
		remac(m, blk);
		assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	}
	/* too many ranges */
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	blk[52] = TI_FP_MAX_RANGES + 1;
	remac(m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), -EBADMSG);
	/* an empty flush point: everything below `below` */
	fp.n = 0;
	ti_jflush_encode(4, 3, NULL, 0, &fp, UUID, m, blk);
	assert_int_equal(ti_jblock_decode(blk, 4, 3, UUID, m, out, &got, &info), 0);
	assert_true(ti_fpoint_has(&got, 99));
	assert_false(ti_fpoint_has(&got, 100));
	td_hmac_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records_index_check),
	    cmocka_unit_test(test_flush_point_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
