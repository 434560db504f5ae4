/* Crypto backend: the only header through which the project reaches OpenSSL
 * and libargon2.  Every type is opaque; every function returns 0 or a
 * negative errno (-EINVAL for bad arguments, -ENOMEM, -EIO for a library
 * failure, -EBADMSG for an authentication failure).
 *
 * Contexts (td_xts, td_hmac, td_sha256) are not thread-safe: use one per
 * thread.  Creating one is expensive (key schedule, provider fetch); using
 * one is cheap, so create them once and reuse them. */
#ifndef TD_CRYPT_CIPHER_H
#define TD_CRYPT_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#define TD_XTS_KEY_LEN 64
#define TD_XTS_MAX_UNIT (1u << 24) /* bytes per data unit (OpenSSL's limit) */
#define TD_SHA256_LEN 32
#define TD_HMAC_SHA256_LEN 32
#define TD_AEAD_KEY_LEN 32
#define TD_AEAD_NONCE_LEN 12
#define TD_AEAD_TAG_LEN 16

/* ---- AES-256-XTS, tweak = sector number as 64-bit LE ("plain64") ---- */

struct td_xts;

/* Keys both directions once.  The caller keeps (and wipes) its key copy;
 * the context holds its own.  Returns NULL with errno set on failure. */
struct td_xts *td_xts_new(const uint8_t key[TD_XTS_KEY_LEN]);
void td_xts_free(struct td_xts *x);

/* One data unit: len is a multiple of 16, 16 <= len <= TD_XTS_MAX_UNIT.
 * in == out is allowed; any other overlap is not. */
int td_xts_encrypt(struct td_xts *x, uint64_t sector, const void *in, void *out, size_t len);
int td_xts_decrypt(struct td_xts *x, uint64_t sector, const void *in, void *out, size_t len);

/* nblocks consecutive units of block_size bytes; unit i uses sector
 * first_sector + i. */
int td_xts_encrypt_blocks(struct td_xts *x, uint64_t first_sector, size_t block_size,
			  const void *in, void *out, size_t nblocks);
int td_xts_decrypt_blocks(struct td_xts *x, uint64_t first_sector, size_t block_size,
			  const void *in, void *out, size_t nblocks);

/* ---- HMAC-SHA256 with a reusable key schedule ---- */

struct td_hmac;

struct td_hmac *td_hmac_new(const void *key, size_t keylen);
void td_hmac_free(struct td_hmac *h);
/* begin / update... / end, as many messages as wanted under the same key. */
int td_hmac_begin(struct td_hmac *h);
int td_hmac_update(struct td_hmac *h, const void *data, size_t len);
int td_hmac_end(struct td_hmac *h, uint8_t out[TD_HMAC_SHA256_LEN]);
int td_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
		   uint8_t out[TD_HMAC_SHA256_LEN]);

/* ---- SHA-256 ---- */

struct td_sha256;

int td_sha256(const void *msg, size_t len, uint8_t out[TD_SHA256_LEN]);
struct td_sha256 *td_sha256_new(void);
void td_sha256_free(struct td_sha256 *s);
int td_sha256_update(struct td_sha256 *s, const void *data, size_t len);
/* Writes the digest and resets the context for the next message. */
int td_sha256_final(struct td_sha256 *s, uint8_t out[TD_SHA256_LEN]);

/* ---- HKDF-SHA256 (RFC 5869); saltlen 0 = the RFC's all-zero salt ---- */

int td_hkdf_sha256(const void *salt, size_t saltlen, const void *ikm, size_t ikmlen,
		   const void *info, size_t infolen, void *out, size_t outlen);

/* ---- AES-256-GCM, for wrapping keys ---- */

int td_aead_seal(const uint8_t key[TD_AEAD_KEY_LEN], const uint8_t nonce[TD_AEAD_NONCE_LEN],
		 const void *aad, size_t aadlen, const void *pt, size_t len, void *ct,
		 uint8_t tag[TD_AEAD_TAG_LEN]);
/* -EBADMSG when the tag does not verify; pt is then zeroed, never left
 * holding unauthenticated plaintext. */
int td_aead_open(const uint8_t key[TD_AEAD_KEY_LEN], const uint8_t nonce[TD_AEAD_NONCE_LEN],
		 const void *aad, size_t aadlen, const void *ct, size_t len,
		 const uint8_t tag[TD_AEAD_TAG_LEN], void *pt);

/* ---- Password KDFs ---- */

/* Argon2id version 1.3 (libargon2), lanes = threads = parallelism. */
int td_kdf_argon2id(const void *pw, size_t pwlen, const void *salt, size_t saltlen, uint32_t t_cost,
		    uint32_t m_cost_kib, uint32_t parallelism, void *out, size_t outlen);
/* The same with Argon2's optional secret (K) and associated data (X). */
int td_kdf_argon2id_ext(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
			const void *secret, size_t secretlen, const void *ad, size_t adlen,
			uint32_t t_cost, uint32_t m_cost_kib, uint32_t parallelism, void *out,
			size_t outlen);
int td_kdf_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
			 uint32_t iterations, void *out, size_t outlen);
/* N a power of two > 1; memory use is about 128 * r * (N + p) bytes. */
int td_kdf_scrypt(const void *pw, size_t pwlen, const void *salt, size_t saltlen, uint64_t N,
		  uint32_t r, uint32_t p, void *out, size_t outlen);

/* ---- Misc ---- */

int td_random_bytes(void *buf, size_t len);
/* Constant time in n; returns 1 if equal, 0 otherwise. */
int td_ct_memeq(const void *a, const void *b, size_t n);

#endif
