/* The TPM2 token payload (keymgr/tpm2_token.c, docs/FORMAT.md "TPM2
 * token"): a round trip, then hostile payloads — every truncation, sizes
 * over the 632-byte slot, a lying inner TPM2B size, another PCR bank, bad
 * PCR selections, attributes that would let the object be used without the
 * policy, trailing bytes — each refused with a message; and PCR lists. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypt/header.h"
#include "keymgr/tpm2_token.h"

/* A structurally valid token (what a TPM returns has this shape). */
static void make_token(struct td_tpm2_token *t)
{
	TPMT_PUBLIC *p = &t->pub.publicArea;

	memset(t, 0, sizeof(*t));
	t->version = TD_TPM2_TOKEN_VERSION;
	t->primary = TD_TPM2_PRIMARY_ECC_P256;
	t->bank = TPM2_ALG_SHA256;
	t->pcrs = 1u << 7 | 1u << 16;
	p->type = TPM2_ALG_KEYEDHASH;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TD_TPM2_SEALED_ATTRS;
	p->authPolicy.size = 32;
	memset(p->authPolicy.buffer, 0xa1, 32);
	p->parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	p->unique.keyedHash.size = 32;
	memset(p->unique.keyedHash.buffer, 0xb2, 32);
	t->priv.size = 158;
	for (int i = 0; i < t->priv.size; i++)
		t->priv.buffer[i] = (uint8_t)(i * 7 + 3);
}

static size_t encode(const struct td_tpm2_token *t, uint8_t *buf)
{
	size_t len = 0;

	assert_int_equal(td_tpm2_token_encode(t, buf, TD_HDR_TOKEN_MAX, &len), 0);
	return len;
}

/* decode must refuse buf[0..len) and say something containing `what` */
static void refused(const uint8_t *buf, size_t len, const char *what)
{
	struct td_tpm2_token out;
	char err[256] = "";

	assert_int_equal(td_tpm2_token_decode(buf, len, &out, err, sizeof(err)), -EINVAL);
	if (!strstr(err, what))
		fail_msg("'%s' does not say '%s'", err, what);
}

static void test_roundtrip(void **state)
{
	struct td_tpm2_token t, back;
	uint8_t buf[TD_HDR_TOKEN_MAX], again[TD_HDR_TOKEN_MAX];
	char err[256];
	size_t len, len2;

	make_token(&t);
	len = encode(&t, buf);
	/* 12 fixed + public (2 + 78) + private (2 + 158) */
	assert_int_equal(len, 12 + 80 + 160);
	assert_int_equal(buf[0], 1); /* version, little-endian */
	assert_int_equal(buf[4], 0x0b);
	assert_int_equal(buf[12], 0); /* TPM2B size, big-endian */
	assert_int_equal(buf[13], 78);
	assert_int_equal(td_tpm2_token_decode(buf, len, &back, err, sizeof(err)), 0);
	assert_int_equal(back.pcrs, t.pcrs);
	assert_int_equal(back.priv.size, 158);
	assert_memory_equal(back.priv.buffer, t.priv.buffer, 158);
	len2 = encode(&back, again);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);
}

static void test_truncated(void **state)
{
	struct td_tpm2_token t, out;
	uint8_t buf[TD_HDR_TOKEN_MAX];
	size_t len;

	make_token(&t);
	len = encode(&t, buf);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(td_tpm2_token_decode(buf, n, &out, NULL, 0), -EINVAL);
	refused(buf, 3, "TPM2 token of 3 bytes");
	refused(buf, len - 1, "private area does not parse");
}

static void test_sizes(void **state)
{
	struct td_tpm2_token t;
	uint8_t buf[TD_HDR_TOKEN_MAX + 64] = {0};
	size_t len;

	make_token(&t);
	len = encode(&t, buf);
	/* a trailing byte; a length over the slot's 632 */
	refused(buf, len + 1, "1 bytes after the private area");
	refused(buf, TD_HDR_TOKEN_MAX + 1, "TPM2 token of 633 bytes");
	/* the public TPM2B says more than there is / less than its content */
	buf[13] = 0xff;
	refused(buf, len, "public area does not parse");
	buf[13] = 40; /* refused by libtss2-mu or by the canonical re-encoding */
	refused(buf, len, "TPM2 token");
	buf[13] = 78;
	/* the private TPM2B: 0, more than the payload, more than the type holds */
	buf[12 + 80] = 0;
	buf[12 + 80 + 1] = 0;
	refused(buf, 12 + 80 + 2, "bad private area size 0");
	buf[12 + 80 + 1] = 200;
	refused(buf, len, "private area does not parse");
	buf[12 + 80] = 0xff;
	buf[12 + 80 + 1] = 0xff;
	refused(buf, len, "private area does not parse");
	/* a private area too big for the slot cannot be encoded */
	t.priv.size = sizeof(t.priv.buffer);
	assert_int_equal(td_tpm2_token_encode(&t, buf, TD_HDR_TOKEN_MAX, &len), -E2BIG);
}

static void test_fields(void **state)
{
	struct td_tpm2_token t;
	uint8_t buf[TD_HDR_TOKEN_MAX];
	size_t len;

	make_token(&t);
	len = encode(&t, buf);
	buf[4] = 0x04; /* sha1 bank */
	refused(buf, len, "PCR bank 0x0004 is not supported");
	buf[4] = 0x0b;
	buf[0] = 2;
	refused(buf, len, "version 2");
	buf[0] = 1;
	buf[2] = 9;
	refused(buf, len, "unknown TPM2 primary key template 9");
	buf[2] = 1;
	buf[6] = 1;
	refused(buf, len, "reserved bytes");
	buf[6] = 0;
	memset(buf + 8, 0, 4);
	refused(buf, len, "bad PCR selection");
	buf[11] = 1; /* PCR 24 */
	refused(buf, len, "bad PCR selection 0x01000000");
	buf[11] = 0;
	buf[8] = 0x80;
	{
		struct td_tpm2_token out;
		assert_int_equal(td_tpm2_token_decode(buf, len, &out, NULL, 0), 0);
		assert_int_equal(out.pcrs, 1u << 7);
	}

	/* public areas vdkey never creates */
	make_token(&t);
	t.pub.publicArea.objectAttributes |= TPMA_OBJECT_USERWITHAUTH;
	assert_int_equal(td_tpm2_token_encode(&t, buf, sizeof(buf), &len), -EINVAL);
	make_token(&t);
	len = encode(&t, buf);
	/* objectAttributes: public TPM2B at 12, type 14, nameAlg 16, attrs 18..21 */
	buf[21] |= 0x40; /* userWithAuth */
	refused(buf, len, "attributes");
	buf[21] &= (uint8_t)~0x40;
	buf[17] = 0x04; /* nameAlg sha1 */
	refused(buf, len, "not a SHA-256 keyed-hash object");
	buf[17] = 0x0b;
	buf[15] = 0x01; /* type RSA: the rest no longer parses as it should */
	refused(buf, len, "");
}

static void test_pcr_lists(void **state)
{
	uint32_t m = 0;
	char s[96];
	static const char *bad[] = {"",	  "24", "3-1", "a",    "7,",
				    ",7", "-1", "7 ",  "1--2", "99999999999999999999"};

	assert_int_equal(td_tpm2_pcrs_parse("7", &m), 0);
	assert_int_equal(m, 1u << 7);
	assert_int_equal(td_tpm2_pcrs_parse("0,7", &m), 0);
	assert_int_equal(m, 0x81u);
	assert_int_equal(td_tpm2_pcrs_parse("0-3+7", &m), 0);
	assert_int_equal(m, 0x8fu);
	assert_int_equal(td_tpm2_pcrs_parse("23", &m), 0);
	td_tpm2_pcrs_str(0x8f | 1u << 23, s, sizeof(s));
	assert_string_equal(s, "0,1,2,3,7,23");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (td_tpm2_pcrs_parse(bad[i], &m) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(td_tpm2_pcrs_parse(NULL, &m), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_sizes),     cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_pcr_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
