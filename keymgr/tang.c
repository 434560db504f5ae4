/* Tang provisioning and recovery (keymgr/tang.h; docs/FORMAT.md, "Tang
 * token"). libjose does every JWK, JWS and ECMR operation (its OpenSSL
 * backend checks points are on the curve); libcurl does the two HTTP
 * requests (http:// only, no redirects, bounded answers and time).
 *
 * Secrets: the client scalar c and the ephemeral e exist only as libjose
 * JWKs (jansson strings) and OpenSSL BIGNUMs. vdkey routes libcrypto's heap
 * through the locked, wiping allocator (crypt/backend/secmem.h) and this
 * file routes jansson's through one that wipes every block it frees, so
 * neither outlives its json_decref. The shared point's x coordinate is
 * decoded into td_secure_alloc memory, the KEK goes to the caller's. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jose/jose.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "keymgr/tang.h"

#define ANSWER_MAX (64 * 1024)
#define ADV_KEYS_MAX 64
#define KEK_INFO "tdcrypt v1 tang kek"

/* ---- jansson's heap: wiped on free ---- */

static void *wipe_malloc(size_t n)
{
	return malloc(n);
}

static void wipe_free(void *p)
{
	if (!p)
		return;
	td_wipe(p, malloc_usable_size(p));
	free(p);
}

static void heap_init(void)
{
	static bool done;

	if (!done) {
		json_set_alloc_funcs(wipe_malloc, wipe_free);
		done = true;
	}
}

/* ---- HTTP ---- */

struct answer {
	char *buf;
	size_t len;
	bool too_big;
};

static size_t on_data(char *p, size_t sz, size_t n, void *opaque)
{
	struct answer *a = opaque;
	size_t add = sz * n;
	char *nb;

	if (a->len + add > ANSWER_MAX) {
		a->too_big = true;
		return 0;
	}
	nb = realloc(a->buf, a->len + add + 1);
	if (!nb)
		return 0;
	a->buf = nb;
	memcpy(a->buf + a->len, p, add);
	a->len += add;
	a->buf[a->len] = 0;
	return add;
}

/* GET (body NULL) or POST body to url: 0 with the answer (caller frees
 * a->buf) and *status, or -EHOSTUNREACH / -EBADMSG with the reason. */
static int http(const char *url, const char *body, unsigned timeout_s, struct answer *a,
		long *status, char *err, size_t errlen)
{
	struct curl_slist *hdrs = NULL;
	char cerr[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	CURL *c;

	memset(a, 0, sizeof(*a));
	*status = 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(c = curl_easy_init())) {
		snprintf(err, errlen, "cannot start the HTTP client (libcurl)");
		return -ENOMEM;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(timeout_s ? timeout_s : 10));
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)(timeout_s ? timeout_s : 10));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "vdkey");
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/jwk+json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	if (a->too_big) {
		snprintf(err, errlen, "%s: the answer is larger than %d bytes", url, ANSWER_MAX);
		free(a->buf);
		a->buf = NULL;
		return -EBADMSG;
	}
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "Tang server %s is down or unreachable: %s", url,
			 cerr[0] ? cerr : curl_easy_strerror(cc));
		free(a->buf);
		a->buf = NULL;
		return -EHOSTUNREACH;
	}
	if (!a->buf) {
		a->buf = calloc(1, 1);
		if (!a->buf)
			return -ENOMEM;
	}
	return 0;
}

/* ---- JWK helpers ---- */

/* A public EC JWK of curve from raw coordinates, for ECMR. */
static json_t *point_jwk(unsigned curve, const uint8_t *x, const uint8_t *y)
{
	size_t L = td_tang_coord_len(curve);

	return json_pack("{s:s,s:s,s:o,s:o,s:s,s:[s]}", "kty", "EC", "crv",
			 td_tang_curve_name(curve), "x", jose_b64_enc(x, L), "y",
			 jose_b64_enc(y, L), "alg", "ECMR", "key_ops", "deriveKey");
}

/* A coordinate of jwk, exactly L bytes (RFC 7518 6.2.1.2), into out. */
static int coord(const json_t *jwk, const char *name, size_t L, uint8_t *out)
{
	const json_t *v = json_object_get(jwk, name);
	size_t n;

	if (!json_is_string(v) || json_string_length(v) > 2 * TD_TANG_COORD_MAX)
		return -EBADMSG;
	n = jose_b64_dec(v, NULL, 0);
	if (n != L)
		return -EBADMSG;
	return jose_b64_dec(v, out, L) == L ? 0 : -EBADMSG;
}

/* The curve of an EC JWK, 0 when not one we support. */
static unsigned jwk_curve(const json_t *jwk)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));

	if (!kty || strcmp(kty, "EC"))
		return 0;
	return td_tang_curve_from_name(json_string_value(json_object_get(jwk, "crv")));
}

/* KEK = HKDF-SHA256(x of the shared point K). */
static int kek_of(const json_t *K, unsigned curve, uint8_t kek[TD_TANG_KEK_LEN])
{
	size_t L = td_tang_coord_len(curve);
	uint8_t *x = td_secure_alloc(TD_TANG_COORD_MAX);
	int rc;

	if (!x)
		return -ENOMEM;
	rc = coord(K, "x", L, x);
	if (rc == 0)
		rc = td_hkdf_sha256(NULL, 0, x, L, KEK_INFO, sizeof(KEK_INFO) - 1, kek,
				    TD_TANG_KEK_LEN) < 0
			 ? -EIO
			 : 0;
	td_secure_free(x);
	return rc;
}

static json_t *gen_key(unsigned curve)
{
	json_t *k = json_pack("{s:s,s:s,s:s}", "kty", "EC", "crv", td_tang_curve_name(curve), "alg",
			      "ECMR");

	if (k && !jose_jwk_gen(NULL, k)) {
		json_decref(k);
		return NULL;
	}
	return k;
}

/* ---- the advertisement ---- */

/* base64url SHA-256 (or SHA-1) thumbprints of the signing keys match pin? */
static bool thp_matches(const json_t *k, const char *pin)
{
	const char *algs[] = {"S256", "S1"};

	for (size_t i = 0; i < 2; i++) {
		json_t *t = jose_jwk_thp(NULL, k, algs[i]);
		bool eq = t && json_is_string(t) && !strcmp(json_string_value(t), pin);

		json_decref(t);
		if (eq)
			return true;
	}
	return false;
}

int td_tang_adv_check(const char *body, size_t len, const struct td_tang_enroll *a,
		      struct td_tang_token *t, char *err, size_t errlen)
{
	json_t *jws = NULL, *payload = NULL, *ver = NULL, *keys, *k, *signer = NULL, *exc = NULL;
	char thps[ADV_KEYS_MAX * 45 + 1] = "";
	size_t i, L;
	int rc = -EBADMSG;

	heap_init();
	jws = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(jws) || !json_is_string(json_object_get(jws, "payload"))) {
		snprintf(err, errlen, "the Tang advertisement is not a JWS (no payload)");
		goto out;
	}
	payload = jose_b64_dec_load(json_object_get(jws, "payload"));
	keys = json_object_get(payload, "keys");
	if (!json_is_array(keys) || json_array_size(keys) == 0 ||
	    json_array_size(keys) > ADV_KEYS_MAX) {
		snprintf(err, errlen, "the Tang advertisement lists no keys");
		goto out;
	}
	ver = json_array();
	json_array_foreach(keys, i, k)
	{
		if (!json_is_object(k))
			continue;
		if (jose_jwk_prm(NULL, k, true, "verify"))
			json_array_append(ver, k);
		else if (!exc && jose_jwk_prm(NULL, k, true, "deriveKey") && jwk_curve(k) &&
			 !json_object_get(k, "d") &&
			 !strcmp(json_string_value(json_object_get(k, "alg")) ?: "", "ECMR"))
			exc = k;
	}
	if (json_array_size(ver) == 0) {
		snprintf(err, errlen, "the Tang advertisement has no signing key");
		goto out;
	}
	if (!jose_jws_ver(NULL, jws, NULL, ver, true)) {
		snprintf(err, errlen,
			 "the Tang advertisement's signature does not verify with its keys");
		goto out;
	}
	json_array_foreach(ver, i, k)
	{
		json_t *tp = jose_jwk_thp(NULL, k, "S256");

		if (json_is_string(tp) && strlen(thps) + 45 < sizeof(thps)) {
			if (thps[0])
				strcat(thps, ",");
			strcat(thps, json_string_value(tp));
		}
		json_decref(tp);
		if (!signer && a->thumbprint && thp_matches(k, a->thumbprint))
			signer = k;
	}
	if (a->thumbprint && !signer) {
		snprintf(err, errlen,
			 "no signing key of the Tang server at %s has thumbprint %s (it advertises "
			 "%s): refusing it",
			 a->url, a->thumbprint, thps);
		rc = -EPERM;
		goto out;
	}
	if (!a->thumbprint) {
		if (!a->trust && !(a->confirm && a->confirm(a->url, thps, a->opaque))) {
			snprintf(err, errlen,
				 "the Tang server at %s is not pinned: give --tang-thumbprint TP "
				 "(its signing keys: %s; check with tang-show-keys on the server) "
				 "or --tang-trust",
				 a->url, thps);
			rc = -EPERM;
			goto out;
		}
		signer = json_array_get(ver, 0);
	}
	if (!exc) {
		snprintf(err, errlen, "the Tang advertisement has no ECMR exchange key");
		goto out;
	}
	t->curve = (uint8_t)jwk_curve(exc);
	L = td_tang_coord_len(t->curve);
	if (coord(exc, "x", L, t->sx) < 0 || coord(exc, "y", L, t->sy) < 0 ||
	    jose_jwk_thp_buf(NULL, exc, "S256", t->kid, TD_TANG_THP_LEN) != TD_TANG_THP_LEN ||
	    jose_jwk_thp_buf(NULL, signer, "S256", t->signer, TD_TANG_THP_LEN) != TD_TANG_THP_LEN) {
		snprintf(err, errlen, "the Tang advertisement's exchange key is malformed");
		goto out;
	}
	rc = 0;
out:
	json_decref(ver);
	json_decref(payload);
	json_decref(jws);
	return rc;
}

int td_tang_rec_parse(const char *body, size_t len, unsigned curve, uint8_t *x, uint8_t *y,
		      char *err, size_t errlen)
{
	size_t L = td_tang_coord_len(curve);
	json_t *j;
	int rc = -EBADMSG;

	heap_init();
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!L || !json_is_object(j) || jwk_curve(j) != curve || coord(j, "x", L, x) < 0 ||
	    coord(j, "y", L, y) < 0)
		snprintf(err, errlen, "bad answer from the Tang server: not a %s point (JWK)",
			 L ? td_tang_curve_name(curve) : "known");
	else
		rc = 0;
	json_decref(j);
	return rc;
}

/* ---- recovery ---- */

/* url + suffix into out. */
static void join(char *out, size_t n, const char *url, const char *suffix)
{
	snprintf(out, n, "%s%s", url, suffix);
}

/* The KEK of t through its server. */
static int recover_point(const struct td_tang_token *t, unsigned timeout_s, json_t **Kout,
			 char *err, size_t errlen)
{
	json_t *S = NULL, *C = NULL, *e = NULL, *X = NULL, *Y = NULL, *Z = NULL, *K = NULL;
	uint8_t yx[TD_TANG_COORD_MAX], yy[TD_TANG_COORD_MAX];
	char url[TD_TANG_URL_MAX + 64], kid[48], *body = NULL;
	struct answer ans = {0};
	long status;
	int rc = -EBADMSG;

	heap_init();
	S = point_jwk(t->curve, t->sx, t->sy);
	C = point_jwk(t->curve, t->cx, t->cy);
	e = gen_key(t->curve);
	if (!S || !C || !e) {
		snprintf(err, errlen, "cannot make the ephemeral Tang key");
		rc = -ENOMEM;
		goto out;
	}
	/* X = C + e·G: C public, e private -> addition */
	X = jose_jwk_exc(NULL, C, e);
	if (!X || json_object_set_new(X, "alg", json_string("ECMR")) < 0 ||
	    json_object_set_new(X, "key_ops", json_pack("[s]", "deriveKey")) < 0) {
		snprintf(err, errlen, "the Tang token's points are not on the curve (ECMR failed)");
		goto out;
	}
	json_object_del(X, "d");
	body = json_dumps(X, JSON_COMPACT | JSON_SORT_KEYS);
	td_tang_thp_str(t->kid, kid, sizeof(kid));
	snprintf(url, sizeof(url), "%s/rec/%s", t->url, kid);
	rc = body ? http(url, body, timeout_s, &ans, &status, err, errlen) : -ENOMEM;
	if (rc < 0)
		goto out;
	if (status == 404 || status == 400 || status == 403) {
		snprintf(err, errlen,
			 "the Tang server at %s does not have key %s any more (HTTP %ld): it was "
			 "deleted after a rotation, or this is another server",
			 t->url, kid, status);
		rc = -ENOKEY;
		goto out;
	}
	if (status != 200) {
		snprintf(err, errlen, "bad answer from the Tang server at %s: HTTP %ld", t->url,
			 status);
		rc = -EBADMSG;
		goto out;
	}
	rc = td_tang_rec_parse(ans.buf, ans.len, t->curve, yx, yy, err, errlen);
	if (rc < 0)
		goto out;
	rc = -EBADMSG;
	/* only the coordinates: a "d" in the answer would change the mode */
	Y = point_jwk(t->curve, yx, yy);
	/* Z = e·S, K = Y − Z (both public: subtraction) */
	Z = jose_jwk_exc(NULL, e, S);
	if (!Y || !Z || !jose_jwk_pub(NULL, Z) ||
	    json_object_set_new(Z, "alg", json_string("ECMR")) < 0) {
		snprintf(err, errlen, "bad answer from the Tang server at %s: not a point", t->url);
		goto out;
	}
	K = jose_jwk_exc(NULL, Y, Z);
	if (!K) {
		snprintf(err, errlen, "bad answer from the Tang server at %s: not a point", t->url);
		goto out;
	}
	*Kout = K;
	K = NULL;
	rc = 0;
out:
	td_wipe(yx, sizeof(yx));
	td_wipe(yy, sizeof(yy));
	free(ans.buf);
	if (body) {
		td_wipe(body, strlen(body));
		wipe_free(body);
	}
	json_decref(K);
	json_decref(Z);
	json_decref(Y);
	json_decref(X);
	json_decref(e);
	json_decref(C);
	json_decref(S);
	return rc;
}

/* The KEK of t through its server. */
static int recover(const struct td_tang_token *t, unsigned timeout_s, uint8_t kek[TD_TANG_KEK_LEN],
		   char *err, size_t errlen)
{
	json_t *K = NULL;
	int rc = recover_point(t, timeout_s, &K, err, errlen);

	if (rc == 0 && (rc = kek_of(K, t->curve, kek)) < 0)
		snprintf(err, errlen, "cannot derive the Tang KEK");
	json_decref(K);
	return rc;
}

int td_tang_recover(const uint8_t *token, size_t len, unsigned timeout_s,
		    uint8_t kek[TD_TANG_KEK_LEN], char *err, size_t errlen)
{
	struct td_tang_token t;
	int rc = td_tang_token_decode(token, len, &t, err, errlen);

	if (rc < 0)
		return rc;
	rc = recover(&t, timeout_s, kek, err, errlen);
	td_wipe_stack(); /* libjose's point arithmetic and our KDF left locals there */
	return rc;
}

int td_tang_recover_point(const uint8_t *token, size_t len, unsigned timeout_s, char **jwk,
			  char *err, size_t errlen)
{
	struct td_tang_token t;
	json_t *K = NULL;
	int rc = td_tang_token_decode(token, len, &t, err, errlen);

	*jwk = NULL;
	if (rc == 0)
		rc = recover_point(&t, timeout_s, &K, err, errlen);
	if (rc == 0) {
		json_object_del(K, "alg");
		json_object_del(K, "key_ops");
		*jwk = json_dumps(K, JSON_COMPACT | JSON_SORT_KEYS);
		rc = *jwk ? 0 : -ENOMEM;
	}
	json_decref(K);
	return rc;
}

void td_tang_free(char *p)
{
	wipe_free(p);
}

/* ---- provisioning ---- */

int td_tang_provision(const struct td_tang_enroll *a, uint8_t *token, size_t cap, size_t *len,
		      uint8_t kek[TD_TANG_KEK_LEN], char *err, size_t errlen)
{
	json_t *S = NULL, *c = NULL, *K = NULL;
	struct td_tang_token t;
	uint8_t *check = NULL;
	char url[TD_TANG_URL_MAX + 16];
	struct answer ans = {0};
	long status;
	size_t L;
	int rc;

	heap_init();
	memset(&t, 0, sizeof(t));
	rc = td_tang_url_check(a->url, err, errlen);
	if (rc < 0)
		return rc;
	if (a->thumbprint &&
	    (strlen(a->thumbprint) < 20 || strlen(a->thumbprint) > 64 ||
	     strspn(a->thumbprint,
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
		 strlen(a->thumbprint))) {
		snprintf(err, errlen,
			 "bad --tang-thumbprint '%s' (base64url, as tang-show-keys prints it)",
			 a->thumbprint);
		return -EINVAL;
	}
	snprintf(t.url, sizeof(t.url), "%s", a->url);
	join(url, sizeof(url), a->url, "/adv");
	rc = http(url, NULL, a->timeout_s, &ans, &status, err, errlen);
	if (rc < 0)
		return rc;
	if (status != 200) {
		snprintf(err, errlen, "the Tang server at %s answered HTTP %ld for /adv", a->url,
			 status);
		rc = -EBADMSG;
		goto out;
	}
	rc = td_tang_adv_check(ans.buf, ans.len, a, &t, err, errlen);
	if (rc < 0)
		goto out;
	rc = -EBADMSG;
	L = td_tang_coord_len(t.curve);
	S = point_jwk(t.curve, t.sx, t.sy);
	c = gen_key(t.curve);
	K = S && c ? jose_jwk_exc(NULL, c, S) : NULL; /* K = c·S */
	if (!K || coord(c, "x", L, t.cx) < 0 || coord(c, "y", L, t.cy) < 0) {
		snprintf(err, errlen, "the Tang server's exchange key is not usable (ECMR failed)");
		goto out;
	}
	rc = kek_of(K, t.curve, kek);
	if (rc < 0)
		goto out;
	rc = td_tang_token_encode(&t, token, cap);
	if (rc < 0)
		goto out;
	*len = (size_t)rc;
	/* the round trip a load will make, now: the server answers /rec for
	 * this key and the result matches */
	check = td_secure_alloc(TD_TANG_KEK_LEN);
	rc = check ? recover(&t, a->timeout_s, check, err, errlen) : -ENOMEM;
	if (rc == 0 && memcmp(check, kek, TD_TANG_KEK_LEN) != 0) {
		snprintf(err, errlen,
			 "the Tang server at %s answered a test recovery wrongly: refusing it",
			 a->url);
		rc = -EBADMSG;
	}
out:
	if (rc < 0)
		td_wipe(kek, TD_TANG_KEK_LEN);
	td_secure_free(check);
	free(ans.buf);
	json_decref(K);
	json_decref(c);
	json_decref(S);
	td_wipe_stack();
	return rc;
}
