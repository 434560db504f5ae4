/* The volume key: 64 random bytes in secure memory behind an opaque type.
 * Ownership moves by pointer; td_volkey_free wipes it and clears the
 * owner's pointer.  Nothing uses the volume key directly: each use gets
 * its own subkey from td_volkey_derive (HKDF-SHA256, info "tdcrypt v1 " +
 * purpose), see docs/FORMAT.md. */
#ifndef TD_KEYMGR_VOLKEY_H
#define TD_KEYMGR_VOLKEY_H

#include <stddef.h>
#include <stdint.h>

#define TD_VOLKEY_LEN 64

/* Subkey purposes and lengths used by the project. */
#define TD_SUBKEY_XTS "xts"	  /* 64 bytes: AES-256-XTS data key */
#define TD_SUBKEY_MAC "mac"	  /* 32 bytes: per-block HMAC key */
#define TD_SUBKEY_HEADER "header" /* 32 bytes: header MAC key */
#define TD_SUBKEY_DIGEST "digest" /* 32 bytes: volume key digest */
#define TD_SUBKEY_TREE "tree"	  /* 32 bytes: integrity tree key */

struct td_volkey;

/* A fresh random key.  NULL with errno set on failure. */
struct td_volkey *td_volkey_new_random(void);
/* A copy of n == TD_VOLKEY_LEN bytes (the caller wipes its own copy).
 * NULL with errno set (EINVAL for another length). */
struct td_volkey *td_volkey_from_bytes(const void *p, size_t n);
/* TD_VOLKEY_LEN bytes, valid until td_volkey_free.  Do not copy them
 * anywhere that is not secure memory. */
const uint8_t *td_volkey_bytes(const struct td_volkey *vk);
/* Wipes and frees *pp, then sets *pp = NULL.  NULL or *pp NULL: no-op. */
void td_volkey_free(struct td_volkey **pp);
/* 1 if both keys are equal (constant time), else 0. */
int td_volkey_equal(const struct td_volkey *a, const struct td_volkey *b);

/* outlen bytes (1..8160) of the subkey for purpose (1..64 printable
 * characters), deterministic for a given key and purpose. */
int td_volkey_derive(const struct td_volkey *vk, const char *purpose, void *out, size_t outlen);

/* The integrity layer's keys in one secure buffer of 64 bytes: the `mac`
 * subkey, then the `tree` subkey. Free with td_secure_free; NULL on
 * failure. */
uint8_t *td_volkey_integrity_keys(const struct td_volkey *vk);

#endif
