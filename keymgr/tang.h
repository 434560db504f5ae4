/* Tang keyslots (docs/FORMAT.md, "Tang token"): the KEK of a KDF id 5 slot
 * is bound to a Tang server with the McCallum-Relyea exchange.
 *
 * tang_token.c: the token payload, encoded and decoded (pure functions, no
 * I/O; what the unit test and the fuzzer drive). tang.c: the advertisement
 * (GET /adv, JWS verified, exchange key chosen), provisioning and recovery
 * (POST /rec/<kid>) with libjose for every JWK/JWS/ECMR operation and
 * libcurl for the two HTTP requests. Only vdkey links tang.c (with
 * -ljose -ljansson -lcurl); tapdisk never does. */
#ifndef TD_KEYMGR_TANG_H
#define TD_KEYMGR_TANG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_TANG_VERSION 1
#define TD_TANG_URL_MIN 8
#define TD_TANG_URL_MAX 255
#define TD_TANG_COORD_MAX 66 /* P-521 */
#define TD_TANG_THP_LEN 32   /* SHA-256 JWK thumbprint */
#define TD_TANG_KEK_LEN 32
/* the largest payload: 68 + 255 + 4 * 66 */
#define TD_TANG_TOKEN_MAX 587

enum td_tang_curve {
	TD_TANG_P256 = 1,
	TD_TANG_P384 = 2,
	TD_TANG_P521 = 3,
};

struct td_tang_token {
	uint8_t curve;			 /* enum td_tang_curve */
	char url[TD_TANG_URL_MAX + 1];	 /* NUL-terminated */
	uint8_t kid[TD_TANG_THP_LEN];	 /* S's SHA-256 thumbprint: /rec/<kid> */
	uint8_t signer[TD_TANG_THP_LEN]; /* the pinned/trusted adv signing key's */
	uint8_t sx[TD_TANG_COORD_MAX], sy[TD_TANG_COORD_MAX]; /* server exchange key S */
	uint8_t cx[TD_TANG_COORD_MAX], cy[TD_TANG_COORD_MAX]; /* client point C = c·G */
};

/* ---- tang_token.c ---- */

/* Coordinate bytes of a curve id (32, 48, 66), 0 when unknown. */
size_t td_tang_coord_len(unsigned curve);
/* The JWK name of a curve id ("P-521"), NULL when unknown; the id of a
 * name, 0 when unsupported. */
const char *td_tang_curve_name(unsigned curve);
unsigned td_tang_curve_from_name(const char *name);
/* Whether url follows the token's rule (http://, 8..255 printable ASCII,
 * no space " \ ? #, no trailing /): 0, or -EINVAL with the reason. */
int td_tang_url_check(const char *url, char *err, size_t errlen);
/* Encodes t into buf (cap >= TD_TANG_TOKEN_MAX): the length, or -EINVAL. */
int td_tang_token_encode(const struct td_tang_token *t, uint8_t *buf, size_t cap);
/* Decodes and checks a payload: 0, or -EINVAL with the reason in err.
 * Never reads past len. */
int td_tang_token_decode(const uint8_t *buf, size_t len, struct td_tang_token *t, char *err,
			 size_t errlen);

/* ---- tang.c ---- */

/* Asked, on a terminal, whether to trust a server whose advertisement is
 * signed by keys with these SHA-256 thumbprints (base64url, comma
 * separated); true: trust the first. */
typedef bool (*td_tang_confirm_fn)(const char *url, const char *thumbprints, void *opaque);

struct td_tang_enroll {
	const char *url;
	const char *thumbprint; /* pin (S256 or S1, base64url, as tang-show-keys prints), or NULL */
	bool trust;		/* no pin: trust whatever signs the advertisement */
	td_tang_confirm_fn confirm; /* no pin, no trust: ask (NULL: refuse) */
	void *opaque;
	unsigned timeout_s; /* per request (0: 10) */
};

/* Provisioning: GET url/adv, verify, pick the exchange key, make C, check a
 * recovery through the server, and return the token payload (*len bytes
 * of token, cap >= TD_TANG_TOKEN_MAX) and the KEK.
 * 0, or a negative errno with the reason in err: -EHOSTUNREACH (server
 * down or unreachable), -EBADMSG (a bad advertisement or answer), -EPERM
 * (thumbprint mismatch or trust refused), -EINVAL (bad URL/pin). */
int td_tang_provision(const struct td_tang_enroll *a, uint8_t *token, size_t cap, size_t *len,
		      uint8_t kek[TD_TANG_KEK_LEN], char *err, size_t errlen);
/* Recovery: the KEK of a token through its server. 0, or -EINVAL (bad
 * token), -EHOSTUNREACH (server down or unreachable), -ENOKEY (the server
 * does not have the key: not advertised nor kept), -EBADMSG (a bad answer),
 * with the reason in err. */
int td_tang_recover(const uint8_t *token, size_t len, unsigned timeout_s,
		    uint8_t kek[TD_TANG_KEK_LEN], char *err, size_t errlen);

/* For interoperability tests only (tests/tools/tang_point.c): the shared
 * point K of a token through its server, as a public JWK (JSON text,
 * td_tang_free it). K is as secret as the KEK: vdkey never prints it. */
int td_tang_recover_point(const uint8_t *token, size_t len, unsigned timeout_s, char **jwk,
			  char *err, size_t errlen);
void td_tang_free(char *p);

/* The response parsers (for the fuzzer; used by the two calls above).
 * td_tang_adv_check: body of GET /adv, verified and pinned as a says; on
 * success t->curve, kid, signer, sx, sy are set. */
int td_tang_adv_check(const char *body, size_t len, const struct td_tang_enroll *a,
		      struct td_tang_token *t, char *err, size_t errlen);
/* The server's answer to /rec as the point's x and y (L bytes each for
 * curve): 0 or -EBADMSG. */
int td_tang_rec_parse(const char *body, size_t len, unsigned curve, uint8_t *x, uint8_t *y,
		      char *err, size_t errlen);

/* The signer thumbprint of a token as base64url (out >= 44 bytes). */
void td_tang_thp_str(const uint8_t thp[TD_TANG_THP_LEN], char *out, size_t outlen);

#endif
