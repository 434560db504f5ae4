/* tang_point URL KID CRV SX SY CX CY: our Tang recovery (keymgr/tang.c,
 * td_tang_recover_point) of the shared point K = c·S for a client point C
 * bound to the server key S named KID at URL (all base64url, CRV "P-521"
 * ...), printed as a JWK. t-tang-keyslot feeds it the epk and kid of a
 * clevis JWE and decrypts that JWE with `jose jwe dec -k K`: our recovery
 * through a real tang server yields clevis's ECDH-ES point. Test tool only:
 * it prints a secret. */
#include <stdio.h>
#include <string.h>

#include <jose/jose.h>

#include "keymgr/tang.h"

static int b64(const char *s, uint8_t *out, size_t n)
{
	return jose_b64_dec_buf(s, strlen(s), NULL, 0) == n &&
		       jose_b64_dec_buf(s, strlen(s), out, n) == n
		   ? 0
		   : -1;
}

int main(int argc, char **argv)
{
	struct td_tang_token t = {0};
	uint8_t tok[TD_TANG_TOKEN_MAX];
	char err[1024], *jwk = NULL;
	size_t L;
	int len;

	if (argc != 8) {
		fprintf(stderr, "usage: tang_point URL KID CRV SX SY CX CY\n");
		return 2;
	}
	snprintf(t.url, sizeof(t.url), "%s", argv[1]);
	t.curve = (uint8_t)td_tang_curve_from_name(argv[3]);
	L = td_tang_coord_len(t.curve);
	if (!L || b64(argv[2], t.kid, sizeof(t.kid)) || b64(argv[4], t.sx, L) ||
	    b64(argv[5], t.sy, L) || b64(argv[6], t.cx, L) || b64(argv[7], t.cy, L)) {
		fprintf(stderr, "tang_point: bad arguments\n");
		return 2;
	}
	len = td_tang_token_encode(&t, tok, sizeof(tok));
	if (len < 0) {
		fprintf(stderr, "tang_point: cannot encode the token\n");
		return 2;
	}
	if (td_tang_recover_point(tok, (size_t)len, 0, &jwk, err, sizeof(err)) < 0) {
		fprintf(stderr, "tang_point: %s\n", err);
		return 1;
	}
	printf("%s\n", jwk);
	td_tang_free(jwk);
	return 0;
}
