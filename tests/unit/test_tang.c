/* Tang keyslots (keymgr/tang.h) without a network: the token payload of
 * docs/FORMAT.md ("Tang token") encoded and decoded, hostile payloads
 * (every truncation, every byte flipped, bad URLs) refused with a reason
 * and never read past their length; the advertisement check on
 * advertisements signed here with libjose (pin, wrong pin, no pin, a
 * payload edited after signing, no exchange key, junk) and the parser of
 * the server's /rec answer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jose/jose.h>

#include "crypt/header.h"
#include "keymgr/tang.h"

static void fill(struct td_tang_token *t, unsigned curve, const char *url)
{
	size_t L = td_tang_coord_len(curve);

	memset(t, 0, sizeof(*t));
	t->curve = (uint8_t)curve;
	snprintf(t->url, sizeof(t->url), "%s", url);
	for (size_t i = 0; i < TD_TANG_THP_LEN; i++) {
		t->kid[i] = (uint8_t)(i + 1);
		t->signer[i] = (uint8_t)(0xa0 + i);
	}
	for (size_t i = 0; i < L; i++) {
		t->sx[i] = (uint8_t)(3 * i);
		t->sy[i] = (uint8_t)(5 * i);
		t->cx[i] = (uint8_t)(7 * i);
		t->cy[i] = (uint8_t)(11 * i);
	}
}

static void test_roundtrip(void **state)
{
	uint8_t buf[TD_TANG_TOKEN_MAX];
	struct td_tang_token t, u;
	char err[256];

	(void)state;
	for (unsigned c = TD_TANG_P256; c <= TD_TANG_P521; c++) {
		int n;

		fill(&t, c, "http://tang.example:7500/x");
		n = td_tang_token_encode(&t, buf, sizeof(buf));
		assert_int_equal(n, 68 + 26 + 4 * (int)td_tang_coord_len(c));
		assert_int_equal(td_tang_token_decode(buf, (size_t)n, &u, err, sizeof(err)), 0);
		assert_memory_equal(&t, &u, sizeof(t));
	}
	/* the largest payload fits a keyslot token */
	char url[TD_TANG_URL_MAX + 1];
	memset(url, 'a', TD_TANG_URL_MAX);
	memcpy(url, "http://", 7);
	url[TD_TANG_URL_MAX] = 0;
	fill(&t, TD_TANG_P521, url);
	assert_int_equal(td_tang_token_encode(&t, buf, sizeof(buf)), TD_TANG_TOKEN_MAX);
	assert_true(TD_TANG_TOKEN_MAX <= TD_HDR_TOKEN_MAX);
	/* too small a buffer, unknown curve: refused */
	assert_int_equal(td_tang_token_encode(&t, buf, TD_TANG_TOKEN_MAX - 1), -EINVAL);
	t.curve = 9;
	assert_int_equal(td_tang_token_encode(&t, buf, sizeof(buf)), -EINVAL);
}

static void test_hostile_tokens(void **state)
{
	uint8_t buf[TD_TANG_TOKEN_MAX], *cp;
	struct td_tang_token t, u;
	char err[256];
	int n;

	(void)state;
	fill(&t, TD_TANG_P521, "http://127.0.0.1:7500");
	n = td_tang_token_encode(&t, buf, sizeof(buf));
	assert_true(n > 0);
	/* every truncation, each in an exact-size heap copy (ASan sees an
	 * overread), is refused with a reason */
	for (int len = 0; len < n; len++) {
		cp = malloc(len ? (size_t)len : 1);
		memcpy(cp, buf, (size_t)len);
		err[0] = 0;
		assert_int_equal(td_tang_token_decode(cp, (size_t)len, &u, err, sizeof(err)),
				 -EINVAL);
		assert_true(err[0] != 0);
		free(cp);
	}
	/* a trailing byte */
	cp = calloc(1, (size_t)n + 1);
	memcpy(cp, buf, (size_t)n);
	assert_int_equal(td_tang_token_decode(cp, (size_t)n + 1, &u, err, sizeof(err)), -EINVAL);
	free(cp);
	/* every byte flipped: refused, or a token that encodes back the same
	 * (one encoding per token) */
	for (int i = 0; i < n; i++) {
		for (unsigned x = 1; x < 256; x <<= 1) {
			uint8_t m[TD_TANG_TOKEN_MAX], again[TD_TANG_TOKEN_MAX];

			memcpy(m, buf, (size_t)n);
			m[i] ^= (uint8_t)x;
			if (td_tang_token_decode(m, (size_t)n, &u, err, sizeof(err)) < 0)
				continue;
			assert_int_equal(td_tang_token_encode(&u, again, sizeof(again)), n);
			assert_memory_equal(again, m, (size_t)n);
		}
	}
	/* header fields */
	uint8_t m[TD_TANG_TOKEN_MAX];
	memcpy(m, buf, (size_t)n);
	m[0] = 2;
	assert_int_equal(td_tang_token_decode(m, (size_t)n, &u, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version"));
	memcpy(m, buf, (size_t)n);
	m[1] = 0;
	assert_int_equal(td_tang_token_decode(m, (size_t)n, &u, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "curve"));
	memcpy(m, buf, (size_t)n);
	m[3] = 1;
	assert_int_equal(td_tang_token_decode(m, (size_t)n, &u, err, sizeof(err)), -EINVAL);
	memcpy(m, buf, (size_t)n);
	m[2] = 200; /* URL length beyond the payload */
	assert_int_equal(td_tang_token_decode(m, (size_t)n, &u, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "length"));
}

static void test_urls(void **state)
{
	static const char *bad[] = {
	    "https://127.0.0.1",
	    "ftp://tang.example",
	    "http://",
	    "http:/",
	    "http://tang example",
	    "http://tang?x=1",
	    "http://tang#frag",
	    "http://tang/",
	    "http:///path",
	    "http://tang\"x",
	    "http://t\\ang",
	    "http://t\x01ng",
	    "http://t\xc3\xa9ng.example",
	    "HTTP://tang.example",
	    "",
	};
	char err[256], longurl[300];

	(void)state;
	assert_int_equal(td_tang_url_check("http://127.0.0.1:7500", err, sizeof(err)), 0);
	assert_int_equal(td_tang_url_check("http://tang.example/sub/path", err, sizeof(err)), 0);
	assert_int_equal(td_tang_url_check("http://[::1]:80", err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(td_tang_url_check(bad[i], err, sizeof(err)), -EINVAL);
		assert_true(err[0] != 0);
	}
	memset(longurl, 'a', sizeof(longurl) - 1);
	longurl[sizeof(longurl) - 1] = 0;
	memcpy(longurl, "http://", 7);
	assert_int_equal(td_tang_url_check(longurl, err, sizeof(err)), -EINVAL);
	longurl[TD_TANG_URL_MAX] = 0;
	assert_int_equal(td_tang_url_check(longurl, err, sizeof(err)), 0);
}

static void test_thp_str(void **state)
{
	uint8_t z[TD_TANG_THP_LEN] = {0}, f[TD_TANG_THP_LEN];
	char s[48];

	(void)state;
	td_tang_thp_str(z, s, sizeof(s));
	assert_string_equal(s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	memset(f, 0xff, sizeof(f));
	td_tang_thp_str(f, s, sizeof(s));
	assert_string_equal(s, "__________________________________________8");
	/* same as libjose's encoder */
	for (size_t i = 0; i < sizeof(f); i++)
		f[i] = (uint8_t)(i * 37 + 5);
	char ref[64] = "";
	size_t n = jose_b64_enc_buf(f, sizeof(f), ref, sizeof(ref) - 1);
	ref[n] = 0;
	td_tang_thp_str(f, s, sizeof(s));
	assert_string_equal(s, ref);
}

/* ---- advertisements signed here, as tangd signs them ---- */

struct adv {
	json_t *sig, *exc; /* private keys */
	char thp[64];
};

static char *make_adv(struct adv *a, bool with_exc, bool tamper)
{
	json_t *keys, *payload, *jws, *sp, *ep;
	char *s, *out;

	if (!a->sig) {
		a->sig = json_pack("{s:s}", "alg", "ES512");
		a->exc = json_pack("{s:s}", "alg", "ECMR");
		assert_true(jose_jwk_gen(NULL, a->sig));
		assert_true(jose_jwk_gen(NULL, a->exc));
		json_t *p = json_deep_copy(a->sig), *t;
		jose_jwk_pub(NULL, p);
		t = jose_jwk_thp(NULL, p, "S256");
		snprintf(a->thp, sizeof(a->thp), "%s", json_string_value(t));
		json_decref(t);
		json_decref(p);
	}
	sp = json_deep_copy(a->sig);
	ep = json_deep_copy(a->exc);
	jose_jwk_pub(NULL, sp);
	jose_jwk_pub(NULL, ep);
	json_object_set_new(sp, "key_ops", json_pack("[s]", "verify"));
	keys = json_pack("[o]", sp);
	if (with_exc)
		json_array_append_new(keys, ep);
	else
		json_decref(ep);
	payload = json_pack("{s:o}", "keys", keys);
	s = json_dumps(payload, JSON_SORT_KEYS | JSON_COMPACT);
	jws = json_pack("{s:o}", "payload", jose_b64_enc(s, strlen(s)));
	free(s);
	json_t *tmpl = json_pack("{s:{s:s}}", "protected", "cty", "jwk-set+json");
	assert_true(jose_jws_sig(NULL, jws, tmpl, a->sig));
	json_decref(tmpl);
	if (tamper) {
		/* a payload with the exchange key dropped, signature kept */
		json_t *k2 = json_pack("{s:[o]}", "keys", json_deep_copy(json_array_get(keys, 0)));
		s = json_dumps(k2, JSON_SORT_KEYS | JSON_COMPACT);
		json_object_set_new(jws, "payload", jose_b64_enc(s, strlen(s)));
		free(s);
		json_decref(k2);
	}
	out = json_dumps(jws, JSON_COMPACT);
	json_decref(jws);
	json_decref(payload);
	return out;
}

static void test_adv(void **state)
{
	struct adv a = {0};
	struct td_tang_enroll e = {.url = "http://tang.example"};
	struct td_tang_token t;
	char err[1024], *adv = make_adv(&a, true, false), *bad;

	(void)state;
	/* pinned */
	e.thumbprint = a.thp;
	memset(&t, 0, sizeof(t));
	assert_int_equal(td_tang_adv_check(adv, strlen(adv), &e, &t, err, sizeof(err)), 0);
	assert_int_equal(t.curve, TD_TANG_P521);
	char s[48];
	td_tang_thp_str(t.signer, s, sizeof(s));
	assert_string_equal(s, a.thp);
	/* a wrong pin, none (no confirm), trust */
	e.thumbprint = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	assert_int_equal(td_tang_adv_check(adv, strlen(adv), &e, &t, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, a.thp));
	e.thumbprint = NULL;
	assert_int_equal(td_tang_adv_check(adv, strlen(adv), &e, &t, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "--tang-trust"));
	e.trust = true;
	assert_int_equal(td_tang_adv_check(adv, strlen(adv), &e, &t, err, sizeof(err)), 0);
	/* edited after signing */
	bad = make_adv(&a, true, true);
	assert_int_equal(td_tang_adv_check(bad, strlen(bad), &e, &t, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "signature"));
	free(bad);
	/* no exchange key */
	bad = make_adv(&a, false, false);
	assert_int_equal(td_tang_adv_check(bad, strlen(bad), &e, &t, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "exchange key"));
	free(bad);
	/* junk */
	static const char *junk[] = {
	    "",
	    "null",
	    "[]",
	    "{}",
	    "{\"payload\": 5}",
	    "{\"payload\": \"!!!\"}",
	    "{\"payload\": \"e30\"}",
	    "{\"payload\": \"eyJrZXlzIjogW119\"}",
	    "{\"payload\": \"eyJrZXlzIjogWzEsMl19\", \"signature\": \"x\"}"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		assert_int_equal(
		    td_tang_adv_check(junk[i], strlen(junk[i]), &e, &t, err, sizeof(err)),
		    -EBADMSG);
	/* every truncation of a real advertisement */
	for (size_t n = 0; n < strlen(adv); n += 7)
		assert_int_not_equal(td_tang_adv_check(adv, n, &e, &t, err, sizeof(err)), 0);
	free(adv);
	json_decref(a.sig);
	json_decref(a.exc);
}

static void test_rec_parse(void **state)
{
	json_t *k = json_pack("{s:s,s:s}", "alg", "ECMR", "crv", "P-256");
	uint8_t x[66], y[66];
	char err[256], *s;

	(void)state;
	assert_true(jose_jwk_gen(NULL, k));
	jose_jwk_pub(NULL, k);
	s = json_dumps(k, 0);
	assert_int_equal(td_tang_rec_parse(s, strlen(s), TD_TANG_P256, x, y, err, sizeof(err)), 0);
	/* another curve than the token's */
	assert_int_equal(td_tang_rec_parse(s, strlen(s), TD_TANG_P521, x, y, err, sizeof(err)),
			 -EBADMSG);
	free(s);
	json_object_set_new(k, "x", json_string("AAAA"));
	s = json_dumps(k, 0);
	assert_int_equal(td_tang_rec_parse(s, strlen(s), TD_TANG_P256, x, y, err, sizeof(err)),
			 -EBADMSG);
	free(s);
	static const char *junk[] = {"",
				     "{",
				     "[]",
				     "{\"kty\":\"EC\"}",
				     "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
				     "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":1,\"y\":2}"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		assert_int_equal(td_tang_rec_parse(junk[i], strlen(junk[i]), TD_TANG_P256, x, y,
						   err, sizeof(err)),
				 -EBADMSG);
	json_decref(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_hostile_tokens),
	    cmocka_unit_test(test_urls),      cmocka_unit_test(test_thp_str),
	    cmocka_unit_test(test_adv),	      cmocka_unit_test(test_rec_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
