/* libFuzzer harness for the Tang keyslot parsers (keymgr/tang.h): the token
 * payload (keymgr/tang_token.c) and the two server answers (keymgr/tang.c:
 * the advertisement, verified with libjose, and the /rec point).
 *
 * Input: byte 0 mode, then the bytes, copied into a buffer of exactly their
 * size (ASan sees any overread).
 *   mode % 4 == 0: a token payload; what decodes must re-encode to exactly
 *                  its input (one encoding per token).
 *   mode % 4 == 1: an advertisement body, checked pinned to the thumbprint
 *                  of the seed's signing key, then trusting any signer.
 *   mode % 4 == 2: a /rec answer for curve (mode >> 2) % 5 (0 and 4 are
 *                  unknown curves).
 *   mode % 4 == 3: a token, then the URL rule alone on its bytes. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keymgr/tang.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct td_tang_enroll e = {.url = "http://tang.example"};
	uint8_t again[TD_TANG_TOKEN_MAX], x[TD_TANG_COORD_MAX], y[TD_TANG_COORD_MAX];
	struct td_tang_token t;
	char err[1024], *buf;
	size_t len;
	int rc;

	if (size < 1)
		return 0;
	len = size - 1;
	buf = malloc(len ? len : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, len);
	switch (data[0] % 4) {
	case 0:
		rc = td_tang_token_decode((const uint8_t *)buf, len, &t, err, sizeof(err));
		assert(rc == 0 || err[0]);
		if (rc == 0) {
			assert(td_tang_token_encode(&t, again, sizeof(again)) == (int)len);
			assert(memcmp(again, buf, len) == 0);
		}
		break;
	case 1:
		e.thumbprint = "Ku2ERGI6GSy8L_wqUm9lvsa1lg1CGnmSCC833vtM5Hg";
		rc = td_tang_adv_check(buf, len, &e, &t, err, sizeof(err));
		assert(rc == 0 || err[0]);
		e.thumbprint = NULL;
		e.trust = true;
		rc = td_tang_adv_check(buf, len, &e, &t, err, sizeof(err));
		assert(rc == 0 || err[0]);
		if (rc == 0)
			assert(td_tang_coord_len(t.curve) != 0);
		break;
	case 2:
		rc = td_tang_rec_parse(buf, len, (unsigned)(data[0] >> 2) % 5, x, y, err,
				       sizeof(err));
		assert(rc == 0 || err[0]);
		break;
	default: {
		char *s = malloc(len + 1);

		if (s) {
			memcpy(s, buf, len);
			s[len] = 0;
			rc = td_tang_url_check(s, err, sizeof(err));
			assert(rc == 0 || err[0]);
			free(s);
		}
		break;
	}
	}
	free(buf);
	return 0;
}
