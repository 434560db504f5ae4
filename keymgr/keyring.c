#include <errno.h>
#include <keyutils.h>
#include <stdio.h>
#include <string.h>

#include "keymgr/keyring.h"
#include "keymgr/secmem.h"

void td_uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
		 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
		 u[14], u[15]);
}

void td_keyring_desc(const uint8_t uuid[16], char *out, size_t len)
{
	char s[37];

	td_uuid_str(uuid, s);
	snprintf(out, len, "tdcrypt:v1:%s", s);
}

int td_keyring_store(const uint8_t uuid[16], const struct td_volkey *vk, unsigned flags,
		     unsigned timeout_s, char *err, size_t errlen)
{
	key_perm_t perm = KEY_POS_ALL | KEY_USR_VIEW;
	uint8_t *payload;
	char desc[64];
	key_serial_t id;

	td_keyring_desc(uuid, desc, sizeof(desc));
	if (flags & TD_KEYRING_USER_READABLE)
		perm |= KEY_USR_READ | KEY_USR_SEARCH;
	payload = td_secure_alloc(TD_VOLKEY_LEN + 1);
	if (!payload) {
		snprintf(err, errlen, "out of secure memory");
		return -ENOMEM;
	}
	memcpy(payload, td_volkey_bytes(vk), TD_VOLKEY_LEN);
	payload[TD_VOLKEY_LEN] = (flags & TD_KEYRING_ONCE) ? 1 : 0;
	id = add_key("user", desc, payload, TD_VOLKEY_LEN + 1, KEY_SPEC_USER_KEYRING);
	td_secure_free(payload);
	if (id < 0) {
		snprintf(err, errlen, "cannot add the key to the user keyring: %s", strerror(errno));
		return -errno;
	}
	if (keyctl_setperm(id, perm) < 0 || (timeout_s && keyctl_set_timeout(id, timeout_s) < 0)) {
		int e = errno;

		keyctl_invalidate(id);
		snprintf(err, errlen, "cannot set the key's permissions: %s", strerror(e));
		return -e;
	}
	return id;
}

int td_keyring_present(const uint8_t uuid[16])
{
	char desc[64];
	key_serial_t id;

	td_keyring_desc(uuid, desc, sizeof(desc));
	id = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	return id < 0 ? -errno : id;
}

/* The last key this process fetched, kept in locked memory: a tapdisk
 * that pauses and reopens its image (migration, snapshots) after dropping
 * its privileges, or after a --once key left the keyring, needs it again
 * and can no longer read the keyring. */
static struct {
	uint8_t uuid[16];
	struct td_volkey *vk;
} cache;

void td_keyring_forget(void)
{
	td_volkey_free(&cache.vk);
}

static struct td_volkey *cache_copy(const uint8_t uuid[16])
{
	if (!cache.vk || memcmp(cache.uuid, uuid, 16) != 0)
		return NULL;
	return td_volkey_from_bytes(td_volkey_bytes(cache.vk), TD_VOLKEY_LEN);
}

int td_keyring_fetch(const uint8_t uuid[16], struct td_volkey **out, char *err, size_t errlen)
{
	char desc[64], us[37];
	uint8_t *buf = NULL;
	key_serial_t id;
	long n;
	int rc;

	*out = cache_copy(uuid);
	if (*out)
		return 0;
	td_keyring_desc(uuid, desc, sizeof(desc));
	td_uuid_str(uuid, us);
	id = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	if (id < 0) {
		rc = errno == EACCES ? -EACCES : -ENOKEY;
		if (rc == -ENOKEY)
			snprintf(err, errlen,
				 "no key loaded for image %s: run 'vdkey load SPEC' (as this "
				 "user) first",
				 us);
		else
			snprintf(err, errlen, "the key for image %s is not searchable by this process",
				 us);
		goto out;
	}
	buf = td_secure_alloc(TD_VOLKEY_LEN + 2);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of secure memory");
		goto out;
	}
	n = keyctl_read(id, (char *)buf, TD_VOLKEY_LEN + 2);
	if (n < 0) {
		rc = -errno;
		snprintf(err, errlen,
			 "the key for image %s is in the keyring but this process may not read it "
			 "(%s): start tapdisk from the session that ran 'vdkey load', or load it "
			 "with --user-readable",
			 us, strerror(errno));
		goto out;
	}
	if (n != TD_VOLKEY_LEN + 1) {
		rc = -EINVAL;
		snprintf(err, errlen, "the keyring entry %s holds %ld bytes, not a volume key", desc,
			 n);
		goto out;
	}
	*out = td_volkey_from_bytes(buf, TD_VOLKEY_LEN);
	if (!*out) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of secure memory");
		goto out;
	}
	if (buf[TD_VOLKEY_LEN] & 1)
		keyctl_invalidate(id); /* loaded with --once */
	td_volkey_free(&cache.vk);
	cache.vk = td_volkey_from_bytes(buf, TD_VOLKEY_LEN);
	memcpy(cache.uuid, uuid, 16);
	rc = 0;
out:
	if (buf)
		td_secure_free(buf);
	return rc;
}

int td_keyring_remove(const uint8_t uuid[16], char *err, size_t errlen)
{
	char desc[64], us[37];
	key_serial_t id;
	int removed = 0;

	td_keyring_desc(uuid, desc, sizeof(desc));
	td_uuid_str(uuid, us);
	while ((id = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0)) >= 0) {
		if (keyctl_invalidate(id) < 0 && keyctl_unlink(id, KEY_SPEC_USER_KEYRING) < 0) {
			snprintf(err, errlen, "cannot remove the key for image %s: %s", us,
				 strerror(errno));
			return -errno;
		}
		if (++removed > 16)
			break;
	}
	if (!removed) {
		snprintf(err, errlen, "no key loaded for image %s", us);
		return -ENOKEY;
	}
	return 0;
}
