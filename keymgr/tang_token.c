/* The Tang token payload (docs/FORMAT.md, "Tang token"): encode, decode,
 * URL rule. Pure functions: no I/O, no allocation. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keymgr/tang.h"

#define HDR_LEN 4

size_t td_tang_coord_len(unsigned curve)
{
	switch (curve) {
	case TD_TANG_P256:
		return 32;
	case TD_TANG_P384:
		return 48;
	case TD_TANG_P521:
		return 66;
	default:
		return 0;
	}
}

const char *td_tang_curve_name(unsigned curve)
{
	switch (curve) {
	case TD_TANG_P256:
		return "P-256";
	case TD_TANG_P384:
		return "P-384";
	case TD_TANG_P521:
		return "P-521";
	default:
		return NULL;
	}
}

unsigned td_tang_curve_from_name(const char *name)
{
	for (unsigned c = TD_TANG_P256; c <= TD_TANG_P521; c++)
		if (name && !strcmp(name, td_tang_curve_name(c)))
			return c;
	return 0;
}

static int url_check_n(const char *url, size_t n, char *err, size_t errlen)
{
	if (n < TD_TANG_URL_MIN || n > TD_TANG_URL_MAX) {
		snprintf(err, errlen, "the Tang URL must be %d to %d characters", TD_TANG_URL_MIN,
			 TD_TANG_URL_MAX);
		return -EINVAL;
	}
	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen,
			 "the Tang URL must start with http:// (Tang's exchange is signed and "
			 "blinded; it does not rely on TLS)");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)url[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' || ch == '?' || ch == '#') {
			snprintf(
			    err, errlen,
			    "the Tang URL may hold only printable ASCII without space, \", \\, "
			    "? or #");
			return -EINVAL;
		}
	}
	if (url[7] == '/' || url[n - 1] == '/') {
		snprintf(err, errlen, "the Tang URL needs a host and no trailing /");
		return -EINVAL;
	}
	return 0;
}

int td_tang_url_check(const char *url, char *err, size_t errlen)
{
	return url_check_n(url, strnlen(url, TD_TANG_URL_MAX + 1), err, errlen);
}

int td_tang_token_encode(const struct td_tang_token *t, uint8_t *buf, size_t cap)
{
	size_t L = td_tang_coord_len(t->curve), n = strnlen(t->url, sizeof(t->url)), off;
	char err[160];

	if (!L || n > TD_TANG_URL_MAX || td_tang_url_check(t->url, err, sizeof(err)) < 0 ||
	    cap < HDR_LEN + n + 2 * TD_TANG_THP_LEN + 4 * L)
		return -EINVAL;
	buf[0] = TD_TANG_VERSION;
	buf[1] = t->curve;
	buf[2] = (uint8_t)n;
	buf[3] = 0;
	memcpy(buf + HDR_LEN, t->url, n);
	off = HDR_LEN + n;
	memcpy(buf + off, t->kid, TD_TANG_THP_LEN);
	off += TD_TANG_THP_LEN;
	memcpy(buf + off, t->signer, TD_TANG_THP_LEN);
	off += TD_TANG_THP_LEN;
	memcpy(buf + off, t->sx, L);
	memcpy(buf + off + L, t->sy, L);
	memcpy(buf + off + 2 * L, t->cx, L);
	memcpy(buf + off + 3 * L, t->cy, L);
	return (int)(off + 4 * L);
}

int td_tang_token_decode(const uint8_t *buf, size_t len, struct td_tang_token *t, char *err,
			 size_t errlen)
{
	size_t L, n, off;

	memset(t, 0, sizeof(*t));
	if (len < HDR_LEN) {
		snprintf(err, errlen, "Tang token too short (%zu bytes)", len);
		return -EINVAL;
	}
	if (buf[0] != TD_TANG_VERSION) {
		snprintf(err, errlen, "Tang token version %u is not supported (only %d)", buf[0],
			 TD_TANG_VERSION);
		return -EINVAL;
	}
	L = td_tang_coord_len(buf[1]);
	if (!L) {
		snprintf(err, errlen, "Tang token names unknown curve %u", buf[1]);
		return -EINVAL;
	}
	n = buf[2];
	if (buf[3] != 0) {
		snprintf(err, errlen, "Tang token reserved byte is not zero");
		return -EINVAL;
	}
	if (len != HDR_LEN + n + 2 * TD_TANG_THP_LEN + 4 * L) {
		snprintf(err, errlen, "Tang token length %zu does not match its fields (%zu)", len,
			 HDR_LEN + n + 2 * TD_TANG_THP_LEN + 4 * L);
		return -EINVAL;
	}
	if (url_check_n((const char *)buf + HDR_LEN, n, err, errlen) < 0)
		return -EINVAL;
	t->curve = buf[1];
	memcpy(t->url, buf + HDR_LEN, n);
	t->url[n] = 0;
	off = HDR_LEN + n;
	memcpy(t->kid, buf + off, TD_TANG_THP_LEN);
	off += TD_TANG_THP_LEN;
	memcpy(t->signer, buf + off, TD_TANG_THP_LEN);
	off += TD_TANG_THP_LEN;
	memcpy(t->sx, buf + off, L);
	memcpy(t->sy, buf + off + L, L);
	memcpy(t->cx, buf + off + 2 * L, L);
	memcpy(t->cy, buf + off + 3 * L, L);
	return 0;
}

void td_tang_thp_str(const uint8_t thp[TD_TANG_THP_LEN], char *out, size_t outlen)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	unsigned acc = 0, bits = 0;

	for (size_t i = 0; i < TD_TANG_THP_LEN; i++) {
		acc = (acc << 8) | thp[i];
		bits += 8;
		while (bits >= 6 && o + 1 < outlen) {
			bits -= 6;
			out[o++] = a[(acc >> bits) & 63];
		}
	}
	if (bits && o + 1 < outlen)
		out[o++] = a[(acc << (6 - bits)) & 63];
	if (outlen)
		out[o] = 0;
}
