/* The volume key object: see crypt/backend/volkey.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"

#define INFO_PREFIX "tdcrypt v1 "
#define PURPOSE_MAX 64
#define SUBKEY_MAX (255 * 32)

/* Allocated as a whole in secure memory, so the struct is the secret. */
struct td_volkey {
	uint8_t key[TD_VOLKEY_LEN];
};

struct td_volkey *td_volkey_new_random(void)
{
	struct td_volkey *vk = NULL;
	struct td_volkey *ret = NULL;
	int err = ENOMEM;

	vk = td_secure_alloc(sizeof(*vk));
	if (!vk) {
		err = errno;
		goto out;
	}
	err = EIO;
	if (td_random_bytes(vk->key, sizeof(vk->key)) < 0)
		goto out;
	ret = vk;
	vk = NULL;
	err = 0;
out:
	td_volkey_free(&vk);
	if (!ret)
		errno = err;
	return ret;
}

struct td_volkey *td_volkey_from_bytes(const void *p, size_t n)
{
	struct td_volkey *ret = NULL;
	int err = EINVAL;

	if (!p || n != TD_VOLKEY_LEN)
		goto out;
	ret = td_secure_alloc(sizeof(*ret));
	if (!ret) {
		err = errno;
		goto out;
	}
	memcpy(ret->key, p, TD_VOLKEY_LEN);
	err = 0;
out:
	if (!ret)
		errno = err;
	return ret;
}

const uint8_t *td_volkey_bytes(const struct td_volkey *vk)
{
	return vk ? vk->key : NULL;
}

void td_volkey_free(struct td_volkey **pp)
{
	if (!pp || !*pp)
		return;
	td_secure_free(*pp); /* wipes */
	*pp = NULL;
}

int td_volkey_equal(const struct td_volkey *a, const struct td_volkey *b)
{
	if (!a || !b)
		return 0;
	return td_ct_memeq(a->key, b->key, TD_VOLKEY_LEN);
}

/* Domain separation: each purpose gets an independent key, so a leak or
 * misuse of one (say the MAC key in a log) says nothing about the others
 * or the XTS key. */
int td_volkey_derive(const struct td_volkey *vk, const char *purpose, void *out, size_t outlen)
{
	char info[sizeof(INFO_PREFIX) - 1 + PURPOSE_MAX];
	size_t plen = 0;
	int ret = -EINVAL;

	if (!vk || !purpose || !out || outlen == 0 || outlen > SUBKEY_MAX)
		goto out;
	plen = strnlen(purpose, PURPOSE_MAX + 1);
	if (plen == 0 || plen > PURPOSE_MAX)
		goto out;
	for (size_t i = 0; i < plen; i++)
		if (purpose[i] <= ' ' || purpose[i] > '~')
			goto out;
	memcpy(info, INFO_PREFIX, sizeof(INFO_PREFIX) - 1);
	memcpy(info + sizeof(INFO_PREFIX) - 1, purpose, plen);
	ret = td_hkdf_sha256(NULL, 0, vk->key, TD_VOLKEY_LEN, info, sizeof(INFO_PREFIX) - 1 + plen,
			     out, outlen);
out:
	if (ret < 0 && out && outlen && outlen <= SUBKEY_MAX)
		td_wipe(out, outlen);
	return ret;
}

uint8_t *td_volkey_integrity_keys(const struct td_volkey *vk)
{
	uint8_t *k = td_secure_alloc(64);

	if (k && (td_volkey_derive(vk, TD_SUBKEY_MAC, k, 32) < 0 ||
		  td_volkey_derive(vk, TD_SUBKEY_TREE, k + 32, 32) < 0)) {
		td_secure_free(k);
		k = NULL;
	}
	return k;
}
