/* The TPM NV rollback anchor record in the header (keymgr/vanchor.c,
 * docs/FORMAT.md "Rollback anchor in a TPM NV counter"): zero = none, a
 * round trip at the documented offsets, and every malformed record
 * refused; the key-event log anchor (bytes 0..63) is left alone. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypt/header.h"
#include "keymgr/vanchor.h"

static void test_none_and_roundtrip(void **state)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_nv_anchor a = {.present = true,
				 .index = 0x01800100,
				 .counter = 0x0102030405060708ull,
				 .generation = 42},
			    b;
	char err[160];

	assert_non_null(h);
	memset(h->freshness, 0x5a, 64); /* a key-event log anchor's bytes */
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), 0);
	assert_false(b.present);
	td_nv_anchor_set(h, &a);
	assert_memory_equal(h->freshness + 64, "TDTPMNV1", 8);
	assert_int_equal(h->freshness[64 + 8], 1);	   /* version, LE */
	assert_int_equal(h->freshness[64 + 12 + 3], 0x01); /* index, LE */
	assert_int_equal(h->freshness[64 + 16], 0x08);	   /* counter, LE */
	assert_int_equal(h->freshness[64 + 24], 42);	   /* generation */
	for (int i = 0; i < 64; i++)
		assert_int_equal(h->freshness[i], 0x5a);
	for (int i = 128; i < TD_HDR_FRESHNESS_LEN; i++)
		assert_int_equal(h->freshness[i], 0);
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), 0);
	assert_true(b.present);
	assert_int_equal(b.index, a.index);
	assert_true(b.counter == a.counter);
	assert_true(b.generation == 42);
	free(h);
}

static void test_malformed(void **state)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_nv_anchor a = {.present = true, .index = 0x01800100, .counter = 3}, b;
	uint8_t *p;
	char err[160];

	assert_non_null(h);
	p = h->freshness + 64;
	/* one byte anywhere is no record */
	p[40] = 1;
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "malformed"));
	td_nv_anchor_set(h, &a);
	p[0] ^= 1; /* magic */
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	p[0] ^= 1;
	p[8] = 2; /* version */
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	p[8] = 1;
	p[63] = 1; /* reserved */
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	p[63] = 0;
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), 0);
	a.index = 0x81000001; /* a persistent object, not an NV index */
	td_nv_anchor_set(h, &a);
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "out of range"));
	a.index = 0x00ffffff;
	td_nv_anchor_set(h, &a);
	assert_int_equal(td_nv_anchor_get(h, &b, err, sizeof(err)), -EBADMSG);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_none_and_roundtrip),
	    cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
