/* TPM2 token payload: encode, decode (hostile input: every size checked,
 * one encoding per token), PCR lists. Layout: docs/FORMAT.md, "TPM2
 * token". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#include "crypt/header.h"
#include "keymgr/tpm2_token.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | ((uint32_t)get16(p + 2) << 16);
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The fields of the format that are not the TPM's to check. */
static int check_fields(const struct td_tpm2_token *t, char *err, size_t errlen)
{
	const TPMT_PUBLIC *p = &t->pub.publicArea;

	if (t->version != TD_TPM2_TOKEN_VERSION)
		return bad(err, errlen, "TPM2 token version %u (this vdkey reads 1)", t->version);
	if (t->primary != TD_TPM2_PRIMARY_ECC_P256)
		return bad(err, errlen, "unknown TPM2 primary key template %u", t->primary);
	if (t->bank != TPM2_ALG_SHA256)
		return bad(err, errlen, "PCR bank 0x%04x is not supported (only sha256, 0x000b)",
			   t->bank);
	if (!t->pcrs || (t->pcrs & ~TD_TPM2_PCR_VALID))
		return bad(err, errlen, "bad PCR selection 0x%08x (PCRs 0-23, at least one)",
			   t->pcrs);
	if (p->type != TPM2_ALG_KEYEDHASH || p->nameAlg != TPM2_ALG_SHA256)
		return bad(err, errlen, "the sealed object is not a SHA-256 keyed-hash object");
	if (p->objectAttributes != TD_TPM2_SEALED_ATTRS)
		return bad(
		    err, errlen,
		    "the sealed object's attributes 0x%08x are not fixedTPM|fixedParent|noDA",
		    p->objectAttributes);
	if (p->authPolicy.size != TPM2_SHA256_DIGEST_SIZE)
		return bad(err, errlen, "the sealed object has no SHA-256 policy");
	if (p->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL)
		return bad(err, errlen, "the sealed object has a signing scheme");
	if (p->unique.keyedHash.size != TPM2_SHA256_DIGEST_SIZE)
		return bad(err, errlen, "the sealed object's unique field is not 32 bytes");
	if (t->priv.size == 0 || t->priv.size > sizeof(t->priv.buffer))
		return bad(err, errlen, "bad private area size %u", t->priv.size);
	return 0;
}

int td_tpm2_token_encode(const struct td_tpm2_token *t, uint8_t *out, size_t cap, size_t *len)
{
	size_t off = TD_TPM2_HDR_LEN;

	if (check_fields(t, NULL, 0) < 0)
		return -EINVAL;
	if (cap < TD_TPM2_HDR_LEN)
		return -E2BIG;
	put16(out, t->version);
	put16(out + 2, t->primary);
	put16(out + 4, t->bank);
	put16(out + 6, 0);
	put32(out + 8, t->pcrs);
	if (Tss2_MU_TPM2B_PUBLIC_Marshal(&t->pub, out, cap, &off) != TSS2_RC_SUCCESS ||
	    Tss2_MU_TPM2B_PRIVATE_Marshal(&t->priv, out, cap, &off) != TSS2_RC_SUCCESS)
		return -E2BIG;
	*len = off;
	return 0;
}

int td_tpm2_token_decode(const uint8_t *in, size_t len, struct td_tpm2_token *t, char *err,
			 size_t errlen)
{
	size_t off = TD_TPM2_HDR_LEN, relen = 0;
	uint8_t *again;
	int rc;

	memset(t, 0, sizeof(*t));
	if (len < TD_TPM2_HDR_LEN + 4 || len > TD_HDR_TOKEN_MAX)
		return bad(err, errlen, "TPM2 token of %zu bytes (%d-%d)", len, TD_TPM2_HDR_LEN + 4,
			   TD_HDR_TOKEN_MAX);
	t->version = get16(in);
	t->primary = get16(in + 2);
	t->bank = get16(in + 4);
	t->pcrs = get32(in + 8);
	if (get16(in + 6))
		return bad(err, errlen, "TPM2 token: reserved bytes are not zero");
	if (t->version != TD_TPM2_TOKEN_VERSION)
		return bad(err, errlen, "TPM2 token version %u (this vdkey reads 1)", t->version);
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(in, len, &off, &t->pub) != TSS2_RC_SUCCESS)
		return bad(err, errlen, "TPM2 token: the public area does not parse");
	if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(in, len, &off, &t->priv) != TSS2_RC_SUCCESS)
		return bad(err, errlen, "TPM2 token: the private area does not parse");
	if (off != len)
		return bad(err, errlen, "TPM2 token: %zu bytes after the private area", len - off);
	rc = check_fields(t, err, errlen);
	if (rc < 0)
		return rc;
	/* one encoding per token: what we would write is what we read */
	again = calloc(1, TD_HDR_TOKEN_MAX);
	if (!again)
		return bad(err, errlen, "out of memory");
	rc = td_tpm2_token_encode(t, again, TD_HDR_TOKEN_MAX, &relen);
	if (rc == 0 && (relen != len || memcmp(again, in, len)))
		rc = -EINVAL;
	free(again);
	if (rc < 0)
		return bad(err, errlen, "TPM2 token: not in its canonical encoding");
	return 0;
}

int td_tpm2_pcrs_parse(const char *list, uint32_t *mask)
{
	const char *p = list;
	uint32_t m = 0;

	if (!list || !*list)
		return -EINVAL;
	for (;;) {
		char *end;
		long a, b;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		a = strtol(p, &end, 10);
		b = a;
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			b = strtol(p, &end, 10);
		}
		if (a < 0 || b >= TD_TPM2_PCR_COUNT || a > b)
			return -EINVAL;
		for (long i = a; i <= b; i++)
			m |= 1u << i;
		if (!*end)
			break;
		if (*end != ',' && *end != '+')
			return -EINVAL;
		p = end + 1;
	}
	*mask = m;
	return 0;
}

void td_tpm2_pcrs_str(uint32_t mask, char *buf, size_t len)
{
	size_t n = 0;

	if (len)
		buf[0] = 0;
	for (int i = 0; i < 32 && n < len; i++) {
		if (!(mask & (1u << i)))
			continue;
		int w = snprintf(buf + n, len - n, "%s%d", n ? "," : "", i);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}
