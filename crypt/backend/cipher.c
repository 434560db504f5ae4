/* OpenSSL 3 / libargon2 implementation of crypt/backend/cipher.h.  Nothing outside
 * this file includes an OpenSSL or libargon2 header. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
/* the SHA-256 block API is deprecated in OpenSSL 3 but is the only way to
 * resume from a saved state without allocating */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"

#define XTS_IV_LEN 16
#define HKDF_MAX_OUT (255 * TD_SHA256_LEN)

/* ------------------------------------------------------------------ */
/* AES-256-XTS */

/* Two contexts, one per direction: each is keyed once here, and a call
 * only loads the IV.  A single context would have to redo the key
 * schedule whenever the direction changes, i.e. on every read after a
 * write. */
struct td_xts {
	EVP_CIPHER_CTX *enc;
	EVP_CIPHER_CTX *dec;
};

static EVP_CIPHER_CTX *xts_ctx_new(const uint8_t *key, int enc)
{
	EVP_CIPHER *alg = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	EVP_CIPHER_CTX *ret = NULL;

	alg = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
	if (!alg)
		goto out;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto out;
	if (EVP_CipherInit_ex2(ctx, alg, key, NULL, enc, NULL) != 1)
		goto out;
	ret = ctx;
	ctx = NULL;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(alg);
	return ret;
}

struct td_xts *td_xts_new(const uint8_t key[TD_XTS_KEY_LEN])
{
	struct td_xts *x = NULL;
	struct td_xts *ret = NULL;
	int err = EINVAL;

	if (!key)
		goto out;
	err = ENOMEM;
	x = calloc(1, sizeof(*x));
	if (!x)
		goto out;
	/* OpenSSL copies the key into its own schedule (and refuses two equal
	 * halves); the caller's buffer stays the caller's to wipe. */
	err = EIO;
	x->enc = xts_ctx_new(key, 1);
	x->dec = xts_ctx_new(key, 0);
	if (!x->enc || !x->dec)
		goto out;
	ret = x;
	x = NULL;
	err = 0;
out:
	td_xts_free(x);
	if (!ret)
		errno = err;
	return ret;
}

void td_xts_free(struct td_xts *x)
{
	if (!x)
		return;
	EVP_CIPHER_CTX_free(x->enc); /* cleanses the key schedule */
	EVP_CIPHER_CTX_free(x->dec);
	free(x);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* One data unit under the plain64 tweak.  XTS treats every Update call as
 * a complete data unit, so the whole unit goes in one call. */
static int xts_unit(EVP_CIPHER_CTX *ctx, int enc, uint64_t sector, const void *in, void *out,
		    size_t len)
{
	uint8_t iv[XTS_IV_LEN] = {0};
	int outl = 0;
	int ret = -EINVAL;

	if (!in || !out || len < 16 || len % 16 != 0 || len > TD_XTS_MAX_UNIT)
		goto out;
	put_le64(iv, sector);
	ret = -EIO;
	if (EVP_CipherInit_ex2(ctx, NULL, NULL, iv, enc, NULL) != 1)
		goto out;
	if (EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1)
		goto out;
	if ((size_t)outl != len)
		goto out;
	ret = 0;
out:
	return ret;
}

int td_xts_encrypt(struct td_xts *x, uint64_t sector, const void *in, void *out, size_t len)
{
	if (!x)
		return -EINVAL;
	return xts_unit(x->enc, 1, sector, in, out, len);
}

int td_xts_decrypt(struct td_xts *x, uint64_t sector, const void *in, void *out, size_t len)
{
	if (!x)
		return -EINVAL;
	return xts_unit(x->dec, 0, sector, in, out, len);
}

static int xts_blocks(struct td_xts *x, int enc, uint64_t first_sector, size_t block_size,
		      const void *in, void *out, size_t nblocks)
{
	const uint8_t *src = in;
	uint8_t *dst = out;
	int ret = -EINVAL;

	if (!x || !in || !out)
		goto out;
	if (nblocks > 0 && first_sector + (nblocks - 1) < first_sector)
		goto out; /* sector number would wrap */
	ret = 0;
	for (size_t i = 0; i < nblocks; i++) {
		ret = xts_unit(enc ? x->enc : x->dec, enc, first_sector + i, src + i * block_size,
			       dst + i * block_size, block_size);
		if (ret < 0)
			goto out;
	}
out:
	return ret;
}

int td_xts_encrypt_blocks(struct td_xts *x, uint64_t first_sector, size_t block_size,
			  const void *in, void *out, size_t nblocks)
{
	return xts_blocks(x, 1, first_sector, block_size, in, out, nblocks);
}

int td_xts_decrypt_blocks(struct td_xts *x, uint64_t first_sector, size_t block_size,
			  const void *in, void *out, size_t nblocks)
{
	return xts_blocks(x, 0, first_sector, block_size, in, out, nblocks);
}

/* ------------------------------------------------------------------ */
/* HMAC-SHA256 */

/* HMAC (RFC 2104) over OpenSSL's SHA-256 block function, with the keyed
 * inner and outer states computed once: starting a message is a struct
 * copy. (EVP_MAC re-initialisation costs two allocations and a context
 * duplication per message in OpenSSL 3 — per 4 KiB block on our hot
 * path.) The states are key material: they live in secure memory. */
struct td_hmac {
	SHA256_CTX inner, outer, work;
	int started;
};

struct td_hmac *td_hmac_new(const void *key, size_t keylen)
{
	uint8_t k[64], pad[64];
	struct td_hmac *h = NULL;
	size_t i;

	if (!key && keylen) {
		errno = EINVAL;
		return NULL;
	}
	h = td_secure_alloc(sizeof(*h));
	if (!h)
		return NULL;
	memset(k, 0, sizeof(k));
	if (keylen > sizeof(k))
		SHA256(key, keylen, k);
	else if (keylen)
		memcpy(k, key, keylen);
	for (i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x36;
	SHA256_Init(&h->inner);
	SHA256_Update(&h->inner, pad, 64);
	for (i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x5c;
	SHA256_Init(&h->outer);
	SHA256_Update(&h->outer, pad, 64);
	td_wipe(k, sizeof(k));
	td_wipe(pad, sizeof(pad));
	return h;
}

void td_hmac_free(struct td_hmac *h)
{
	if (h)
		td_secure_free(h); /* wipes */
}

int td_hmac_begin(struct td_hmac *h)
{
	if (!h)
		return -EINVAL;
	h->work = h->inner;
	h->started = 1;
	return 0;
}

int td_hmac_update(struct td_hmac *h, const void *data, size_t len)
{
	if (!h || !h->started || (!data && len))
		return -EINVAL;
	if (len && SHA256_Update(&h->work, data, len) != 1)
		return -EIO;
	return 0;
}

int td_hmac_end(struct td_hmac *h, uint8_t out[TD_HMAC_SHA256_LEN])
{
	uint8_t d[TD_HMAC_SHA256_LEN];
	SHA256_CTX o;
	int ret = -EINVAL;

	if (!h || !h->started || !out)
		goto out;
	h->started = 0;
	ret = -EIO;
	if (SHA256_Final(d, &h->work) != 1)
		goto out;
	o = h->outer;
	if (SHA256_Update(&o, d, sizeof(d)) != 1 || SHA256_Final(out, &o) != 1)
		goto out;
	ret = 0;
out:
	td_wipe(d, sizeof(d));
	td_wipe(&o, sizeof(o));
	td_wipe(&h->work, sizeof(h->work));
	return ret;
}

int td_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
		   uint8_t out[TD_HMAC_SHA256_LEN])
{
	struct td_hmac *h = NULL;
	int ret = -EINVAL;

	if (!out)
		goto out;
	h = td_hmac_new(key, keylen);
	if (!h) {
		ret = -errno;
		goto out;
	}
	ret = td_hmac_begin(h);
	if (ret < 0)
		goto out;
	ret = td_hmac_update(h, msg, len);
	if (ret < 0)
		goto out;
	ret = td_hmac_end(h, out);
out:
	td_hmac_free(h);
	return ret;
}

/* ------------------------------------------------------------------ */
/* SHA-256 */

struct td_sha256 {
	EVP_MD_CTX *ctx;
	EVP_MD *md;
};

int td_sha256(const void *msg, size_t len, uint8_t out[TD_SHA256_LEN])
{
	struct td_sha256 *s = NULL;
	int ret = -EINVAL;

	if (!out || (!msg && len))
		goto out;
	s = td_sha256_new();
	if (!s) {
		ret = -errno;
		goto out;
	}
	ret = td_sha256_update(s, msg, len);
	if (ret < 0)
		goto out;
	ret = td_sha256_final(s, out);
out:
	td_sha256_free(s);
	return ret;
}

struct td_sha256 *td_sha256_new(void)
{
	struct td_sha256 *s = NULL;
	struct td_sha256 *ret = NULL;
	int err = ENOMEM;

	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	err = EIO;
	s->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	s->ctx = EVP_MD_CTX_new();
	if (!s->md || !s->ctx)
		goto out;
	if (EVP_DigestInit_ex2(s->ctx, s->md, NULL) != 1)
		goto out;
	ret = s;
	s = NULL;
	err = 0;
out:
	td_sha256_free(s);
	if (!ret)
		errno = err;
	return ret;
}

void td_sha256_free(struct td_sha256 *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->ctx);
	EVP_MD_free(s->md);
	free(s);
}

int td_sha256_update(struct td_sha256 *s, const void *data, size_t len)
{
	int ret = -EINVAL;

	if (!s || (!data && len))
		goto out;
	ret = 0;
	if (len == 0)
		goto out;
	ret = -EIO;
	if (EVP_DigestUpdate(s->ctx, data, len) != 1)
		goto out;
	ret = 0;
out:
	return ret;
}

int td_sha256_final(struct td_sha256 *s, uint8_t out[TD_SHA256_LEN])
{
	unsigned int outl = 0;
	int ret = -EINVAL;

	if (!s || !out)
		goto out;
	ret = -EIO;
	if (EVP_DigestFinal_ex(s->ctx, out, &outl) != 1 || outl != TD_SHA256_LEN)
		goto out;
	if (EVP_DigestInit_ex2(s->ctx, s->md, NULL) != 1)
		goto out;
	ret = 0;
out:
	return ret;
}

/* ------------------------------------------------------------------ */
/* HKDF-SHA256 */

int td_hkdf_sha256(const void *salt, size_t saltlen, const void *ikm, size_t ikmlen,
		   const void *info, size_t infolen, void *out, size_t outlen)
{
	static const uint8_t empty[1];
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[5];
	OSSL_PARAM *p = params;
	int ret = -EINVAL;

	if ((!salt && saltlen) || (!ikm && ikmlen) || (!info && infolen) || !out)
		goto out;
	if (outlen == 0 || outlen > HKDF_MAX_OUT)
		goto out;
	ret = -EIO;
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (!kdf)
		goto out;
	kctx = EVP_KDF_CTX_new(kdf);
	if (!kctx)
		goto out;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(ikmlen ? ikm : empty),
						 ikmlen);
	/* An absent salt is HashLen zero bytes, exactly as RFC 5869 says. */
	if (saltlen)
		*p++ =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
	if (infolen)
		*p++ =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, outlen, params) != 1)
		goto out;
	ret = 0;
out:
	EVP_KDF_CTX_free(kctx); /* cleanses the copied IKM */
	EVP_KDF_free(kdf);
	return ret;
}

/* ------------------------------------------------------------------ */
/* AES-256-GCM */

/* Shared set-up: key, 96-bit nonce, AAD. */
static EVP_CIPHER_CTX *gcm_start(const uint8_t *key, const uint8_t *nonce, const void *aad,
				 size_t aadlen, int enc)
{
	EVP_CIPHER *alg = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	EVP_CIPHER_CTX *ret = NULL;
	int outl = 0;

	alg = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (!alg)
		goto out;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto out;
	/* 12 bytes is GCM's default IV length. */
	if (EVP_CipherInit_ex2(ctx, alg, key, nonce, enc, NULL) != 1)
		goto out;
	if (aadlen && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aadlen) != 1)
		goto out;
	ret = ctx;
	ctx = NULL;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(alg);
	return ret;
}

int td_aead_seal(const uint8_t key[TD_AEAD_KEY_LEN], const uint8_t nonce[TD_AEAD_NONCE_LEN],
		 const void *aad, size_t aadlen, const void *pt, size_t len, void *ct,
		 uint8_t tag[TD_AEAD_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t final[16];
	int outl = 0;
	int ret = -EINVAL;

	if (!key || !nonce || (!aad && aadlen) || (!pt && len) || (!ct && len) || !tag)
		goto out;
	if (aadlen > INT_MAX || len > INT_MAX)
		goto out;
	ret = -EIO;
	ctx = gcm_start(key, nonce, aad, aadlen, 1);
	if (!ctx)
		goto out;
	if (len && EVP_CipherUpdate(ctx, ct, &outl, pt, (int)len) != 1)
		goto out;
	if ((size_t)outl != len)
		goto out;
	if (EVP_CipherFinal_ex(ctx, final, &outl) != 1 || outl != 0)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TD_AEAD_TAG_LEN, tag) != 1)
		goto out;
	ret = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

int td_aead_open(const uint8_t key[TD_AEAD_KEY_LEN], const uint8_t nonce[TD_AEAD_NONCE_LEN],
		 const void *aad, size_t aadlen, const void *ct, size_t len,
		 const uint8_t tag[TD_AEAD_TAG_LEN], void *pt)
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t tagbuf[TD_AEAD_TAG_LEN];
	uint8_t final[16];
	int outl = 0;
	int ret = -EINVAL;

	if (!key || !nonce || (!aad && aadlen) || (!ct && len) || (!pt && len) || !tag)
		goto out;
	if (aadlen > INT_MAX || len > INT_MAX)
		goto out;
	ret = -EIO;
	ctx = gcm_start(key, nonce, aad, aadlen, 0);
	if (!ctx)
		goto out;
	if (len && EVP_CipherUpdate(ctx, pt, &outl, ct, (int)len) != 1)
		goto out;
	if ((size_t)outl != len)
		goto out;
	memcpy(tagbuf, tag, sizeof(tagbuf)); /* the ctrl takes a non-const pointer */
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TD_AEAD_TAG_LEN, tagbuf) != 1)
		goto out;
	ret = -EBADMSG;
	if (EVP_CipherFinal_ex(ctx, final, &outl) != 1)
		goto out;
	ret = 0;
out:
	if (ret < 0 && pt && len)
		OPENSSL_cleanse(pt, len);
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Password KDFs */

static int argon2_errno(int rc)
{
	switch (rc) {
	case ARGON2_OK:
		return 0;
	case ARGON2_MEMORY_ALLOCATION_ERROR:
		return -ENOMEM;
	case ARGON2_THREAD_FAIL:
		return -EAGAIN;
	default:
		return -EINVAL; /* every other code is a parameter out of range */
	}
}

int td_kdf_argon2id_ext(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
			const void *secret, size_t secretlen, const void *ad, size_t adlen,
			uint32_t t_cost, uint32_t m_cost_kib, uint32_t parallelism, void *out,
			size_t outlen)
{
	argon2_context ctx;
	int ret = -EINVAL;

	if ((!pw && pwlen) || !salt || (!secret && secretlen) || (!ad && adlen) || !out)
		goto out;
	if (pwlen > UINT32_MAX || saltlen > UINT32_MAX || secretlen > UINT32_MAX ||
	    adlen > UINT32_MAX || outlen > UINT32_MAX)
		goto out;
	memset(&ctx, 0, sizeof(ctx));
	/* libargon2 takes non-const pointers but, without the CLEAR flags,
	 * only reads the inputs. */
	ctx.out = out;
	ctx.outlen = (uint32_t)outlen;
	ctx.pwd = (uint8_t *)pw;
	ctx.pwdlen = (uint32_t)pwlen;
	ctx.salt = (uint8_t *)salt;
	ctx.saltlen = (uint32_t)saltlen;
	ctx.secret = (uint8_t *)secret;
	ctx.secretlen = (uint32_t)secretlen;
	ctx.ad = (uint8_t *)ad;
	ctx.adlen = (uint32_t)adlen;
	ctx.t_cost = t_cost;
	ctx.m_cost = m_cost_kib;
	ctx.lanes = parallelism;
	ctx.threads = parallelism;
	ctx.version = ARGON2_VERSION_13;
	ctx.flags = ARGON2_DEFAULT_FLAGS;
	ret = argon2_errno(argon2_ctx(&ctx, Argon2_id));
out:
	return ret;
}

int td_kdf_argon2id(const void *pw, size_t pwlen, const void *salt, size_t saltlen, uint32_t t_cost,
		    uint32_t m_cost_kib, uint32_t parallelism, void *out, size_t outlen)
{
	return td_kdf_argon2id_ext(pw, pwlen, salt, saltlen, NULL, 0, NULL, 0, t_cost, m_cost_kib,
				   parallelism, out, outlen);
}

int td_kdf_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
			 uint32_t iterations, void *out, size_t outlen)
{
	int ret = -EINVAL;

	if ((!pw && pwlen) || (!salt && saltlen) || !out)
		goto out;
	if (pwlen > INT_MAX || saltlen > INT_MAX || outlen == 0 || outlen > INT_MAX)
		goto out;
	if (iterations == 0 || iterations > INT_MAX)
		goto out;
	ret = -EIO;
	if (PKCS5_PBKDF2_HMAC(pwlen ? pw : "", (int)pwlen, saltlen ? salt : (const void *)"",
			      (int)saltlen, (int)iterations, EVP_sha256(), (int)outlen, out) != 1)
		goto out;
	ret = 0;
out:
	return ret;
}

int td_kdf_scrypt(const void *pw, size_t pwlen, const void *salt, size_t saltlen, uint64_t N,
		  uint32_t r, uint32_t p, void *out, size_t outlen)
{
	uint64_t vmem, bmem, maxmem;
	int ret = -EINVAL;

	if ((!pw && pwlen) || (!salt && saltlen) || !out || outlen == 0)
		goto out;
	if (N < 2 || (N & (N - 1)) != 0 || r == 0 || p == 0)
		goto out;
	/* OpenSSL refuses to run unless maxmem covers V (128 r (N + 2)) and
	 * B (128 r p); give it exactly that plus a little. */
	if (__builtin_mul_overflow((uint64_t)128 * r, N + 2, &vmem))
		goto out;
	if (__builtin_mul_overflow((uint64_t)128 * r, (uint64_t)p, &bmem))
		goto out;
	if (__builtin_add_overflow(vmem, bmem, &maxmem) ||
	    __builtin_add_overflow(maxmem, (uint64_t)1 << 16, &maxmem))
		goto out;
	ret = -EIO;
	if (EVP_PBE_scrypt(pwlen ? pw : "", pwlen, saltlen ? salt : (const void *)"", saltlen, N, r,
			   p, maxmem, out, outlen) != 1)
		goto out;
	ret = 0;
out:
	return ret;
}

/* ------------------------------------------------------------------ */
/* Misc */

int td_random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;
	int ret = -EINVAL;

	if (!buf && len)
		goto out;
	ret = -EIO;
	while (len > 0) {
		int chunk = len > (1u << 30) ? (1 << 30) : (int)len;

		if (RAND_bytes(p, chunk) != 1)
			goto out;
		p += chunk;
		len -= (size_t)chunk;
	}
	ret = 0;
out:
	return ret;
}

int td_ct_memeq(const void *a, const void *b, size_t n)
{
	if (n == 0)
		return 1;
	return CRYPTO_memcmp(a, b, n) == 0;
}
