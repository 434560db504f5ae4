#include <errno.h>
#include <keyutils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymgr/keyring.h"
#include "tapdisk/core/util.h"
#include "crypt/backend/secmem.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

static void desc_prefix(const uint8_t uuid[16], char *out, size_t len)
{
	char s[37];

	td_uuid_str(uuid, s);
	snprintf(out, len, "tdcrypt:v2:%s:", s);
}

void td_keyring_desc(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], char *out,
		     size_t len)
{
	char pre[64], h[2 * TD_IMAGE_ID_LEN + 1];

	desc_prefix(uuid, pre, sizeof(pre));
	hex(id, TD_IMAGE_ID_LEN, h);
	snprintf(out, len, "%s%s", pre, h);
}

static int store_desc(const char *desc, const struct td_volkey *vk, unsigned flags,
		      unsigned timeout_s, char *err, size_t errlen);

int td_keyring_store(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		     const struct td_volkey *vk, unsigned flags, unsigned timeout_s, char *err,
		     size_t errlen)
{
	char desc[128];

	td_keyring_desc(uuid, id, desc, sizeof(desc));
	return store_desc(desc, vk, flags, timeout_s, err, errlen);
}

/* The new key of a volume-key rotation: the image's description + ":next". */
static void next_desc(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], char *out,
		      size_t len)
{
	char d[128];

	td_keyring_desc(uuid, id, d, sizeof(d));
	snprintf(out, len, "%s:next", d);
}

int td_keyring_store_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  const struct td_volkey *vk, unsigned flags, char *err, size_t errlen)
{
	char desc[160];

	next_desc(uuid, id, desc, sizeof(desc));
	return store_desc(desc, vk, flags & ~TD_KEYRING_ONCE, 0, err, errlen);
}

int td_keyring_fetch_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  struct td_volkey **out, char *err, size_t errlen)
{
	char desc[160], us[37];
	uint8_t *buf;
	key_serial_t kid;
	long n;

	*out = NULL;
	next_desc(uuid, id, desc, sizeof(desc));
	td_uuid_str(uuid, us);
	kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	if (kid < 0) {
		snprintf(err, errlen,
			 "image %s is being re-encrypted but its new key is not loaded: run "
			 "'vdkey load SPEC' with the passphrase given to 'vdkey reencrypt'",
			 us);
		return -ENOKEY;
	}
	buf = td_secure_alloc(TD_VOLKEY_LEN + 2);
	if (!buf) {
		snprintf(err, errlen, "out of secure memory");
		return -ENOMEM;
	}
	n = keyctl_read(kid, (char *)buf, TD_VOLKEY_LEN + 2);
	if (n == TD_VOLKEY_LEN + 1)
		*out = td_volkey_from_bytes(buf, TD_VOLKEY_LEN);
	td_secure_free(buf);
	if (!*out) {
		snprintf(err, errlen, "cannot read the new key of image %s from the keyring", us);
		return n < 0 ? -EACCES : -EINVAL;
	}
	return 0;
}

void td_keyring_remove_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN])
{
	char desc[160];
	key_serial_t kid;
	int i;

	next_desc(uuid, id, desc, sizeof(desc));
	for (i = 0; i < 16 && (kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0)) >= 0;
	     i++)
		if (keyctl_invalidate(kid) < 0)
			keyctl_unlink(kid, KEY_SPEC_USER_KEYRING);
}

static int store_desc(const char *desc, const struct td_volkey *vk, unsigned flags,
		      unsigned timeout_s, char *err, size_t errlen)
{
	key_perm_t perm = KEY_POS_ALL | KEY_USR_VIEW;
	uint8_t *payload;
	key_serial_t kid;

	if (flags & TD_KEYRING_USER_READABLE)
		perm |= KEY_USR_READ | KEY_USR_SEARCH;
	payload = td_secure_alloc(TD_VOLKEY_LEN + 1);
	if (!payload) {
		snprintf(err, errlen, "out of secure memory");
		return -ENOMEM;
	}
	memcpy(payload, td_volkey_bytes(vk), TD_VOLKEY_LEN);
	payload[TD_VOLKEY_LEN] = (flags & TD_KEYRING_ONCE) ? 1 : 0;
	kid = add_key("user", desc, payload, TD_VOLKEY_LEN + 1, KEY_SPEC_USER_KEYRING);
	td_secure_free(payload);
	if (kid < 0) {
		snprintf(err, errlen, "cannot add the key to the user keyring: %s",
			 strerror(errno));
		return -errno;
	}
	if (keyctl_setperm(kid, perm) < 0 ||
	    (timeout_s && keyctl_set_timeout(kid, timeout_s) < 0)) {
		int e = errno;

		keyctl_invalidate(kid);
		snprintf(err, errlen, "cannot set the key's permissions: %s", strerror(e));
		return -e;
	}
	return kid;
}

int td_keyring_present(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN])
{
	char desc[128];
	key_serial_t kid;

	td_keyring_desc(uuid, id, desc, sizeof(desc));
	kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	return kid < 0 ? -errno : kid;
}

int td_keyring_count_others(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN])
{
	char pre[64], mine[128];
	key_serial_t *ids = NULL;
	long n;
	int count = 0;

	desc_prefix(uuid, pre, sizeof(pre));
	td_keyring_desc(uuid, id, mine, sizeof(mine));
	n = keyctl_read_alloc(KEY_SPEC_USER_KEYRING, (void **)&ids);
	for (long i = 0; i < n / (long)sizeof(key_serial_t); i++) {
		char *d = NULL, *name;

		if (keyctl_describe_alloc(ids[i], &d) < 0)
			continue;
		/* "type;uid;gid;perm;description" */
		name = strrchr(d, ';');
		if (!strncmp(d, "user;", 5) && name && !strncmp(name + 1, pre, strlen(pre)) &&
		    strcmp(name + 1, mine) != 0 && !strstr(name + 1, ":next"))
			count++;
		free(d);
	}
	free(ids);
	return count;
}

/* fetch and peek: consume invalidates a key loaded with TD_KEYRING_ONCE */
static int keyring_get(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], const char *where,
		       bool consume, struct td_volkey **out, char *err, size_t errlen)
{
	char desc[128], us[37];
	uint8_t *buf = NULL;
	key_serial_t kid;
	long n;
	int rc;

	*out = NULL;
	td_keyring_desc(uuid, id, desc, sizeof(desc));
	td_uuid_str(uuid, us);
	kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	if (kid < 0) {
		rc = errno == EACCES ? -EACCES : -ENOKEY;
		if (rc == -EACCES)
			snprintf(err, errlen,
				 "the key for image %s is not searchable by this process", us);
		else if (td_keyring_count_others(uuid, id) > 0)
			snprintf(
			    err, errlen,
			    "the key loaded for image %s belongs to another file, not to %s: a "
			    "loaded key opens only the file it was loaded for (a copy, a renamed "
			    "file or another file with the same UUID is refused). If this is the "
			    "image you mean, run 'vdkey load SPEC' for it",
			    us, where ? where : "this one");
		else
			snprintf(err, errlen,
				 "no key loaded for image %s: run 'vdkey load SPEC' (as this user) "
				 "first (for the file %s)",
				 us, where ? where : "?");
		goto out;
	}
	buf = td_secure_alloc(TD_VOLKEY_LEN + 2);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of secure memory");
		goto out;
	}
	n = keyctl_read(kid, (char *)buf, TD_VOLKEY_LEN + 2);
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
		snprintf(err, errlen, "the keyring entry %s holds %ld bytes, not a volume key",
			 desc, n);
		goto out;
	}
	*out = td_volkey_from_bytes(buf, TD_VOLKEY_LEN);
	if (!*out) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of secure memory");
		goto out;
	}
	if (consume && (buf[TD_VOLKEY_LEN] & 1))
		keyctl_invalidate(kid); /* loaded with --once */
	rc = 0;
out:
	if (buf)
		td_secure_free(buf);
	return rc;
}

int td_keyring_fetch(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], const char *where,
		     struct td_volkey **out, char *err, size_t errlen)
{
	return keyring_get(uuid, id, where, true, out, err, errlen);
}

int td_keyring_peek(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		    struct td_volkey **out, char *err, size_t errlen)
{
	return keyring_get(uuid, id, NULL, false, out, err, errlen);
}

int td_keyring_key_fn(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		      const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	(void)opaque;
	return td_keyring_fetch(uuid, id, where, out, err, errlen);
}

int td_keyring_remove(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], char *err,
		      size_t errlen)
{
	char desc[128], us[37];
	key_serial_t kid;
	int removed = 0;

	td_keyring_desc(uuid, id, desc, sizeof(desc));
	td_uuid_str(uuid, us);
	while ((kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0)) >= 0) {
		if (keyctl_invalidate(kid) < 0 && keyctl_unlink(kid, KEY_SPEC_USER_KEYRING) < 0) {
			snprintf(err, errlen, "cannot remove the key for image %s: %s", us,
				 strerror(errno));
			return -errno;
		}
		if (++removed > 16)
			break;
	}
	if (!removed) {
		if (td_keyring_count_others(uuid, id) > 0)
			snprintf(err, errlen,
				 "no key loaded for this file of image %s (a key for the same UUID "
				 "is loaded for another file)",
				 us);
		else
			snprintf(err, errlen, "no key loaded for image %s", us);
		return -ENOKEY;
	}
	return 0;
}
