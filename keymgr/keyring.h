/* Handing the volume key from vdkey to tapdisk through the kernel keyring.
 *
 * vdkey load adds a "user" key described "tdcrypt:v2:<image uuid>:<id>"
 * to the caller's user keyring (@u), holding the 64-byte volume key
 * followed by one flags byte (TD_KEYRING_ONCE). <id> is the hex identity
 * of the image file it was loaded for (tapdisk/block/files.h td_file_identity:
 * path, device, inode, file handle; for rbd the cluster, pool and image
 * id): the UUID is written in the image, so anyone who can write images
 * can copy it, and a loaded key must open only the file it was loaded
 * for, not a copy, a renamed file or another file with the same UUID. Default
 * permissions: possessor all, user view only — only processes of that
 * user that possess it (reach it through their session keyring, as the
 * tapdisk started from the same session does) can read it. The key never
 * touches argv, the environment or a file. */
#ifndef TD_KEYMGR_KEYRING_H
#define TD_KEYMGR_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt/backend/volkey.h"
#include "tapdisk/block/files.h"

#define TD_KEYRING_USER_READABLE 0x1u /* also let same-uid non-possessors read it */
#define TD_KEYRING_ONCE 0x2u	      /* the first tapdisk that reads it invalidates it */

void td_keyring_desc(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], char *out,
		     size_t len);

/* Adds (or replaces) the key for uuid, bound to the image id. timeout_s 0
 * = no expiry. The key id, or -errno with a message. */
int td_keyring_store(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		     const struct td_volkey *vk, unsigned flags, unsigned timeout_s, char *err,
		     size_t errlen);
/* Reads the key for uuid and image id into secure memory, and invalidates
 * it when it was stored with TD_KEYRING_ONCE. -ENOKEY with a message that
 * says what to do when there is none (naming the case where a key for
 * this UUID is loaded for another file). where: the image's path, for
 * messages. */
int td_keyring_fetch(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], const char *where,
		     struct td_volkey **out, char *err, size_t errlen);
/* The same without consuming it: a key loaded with TD_KEYRING_ONCE stays
 * for the tapdisk it is meant for (vdkey reads it to authenticate a
 * header). */
int td_keyring_peek(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		    struct td_volkey **out, char *err, size_t errlen);
/* The same as a chain's key source (tapdisk/block/driver.h td_key_fn). */
int td_keyring_key_fn(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		      const char *where, struct td_volkey **out, char *err, size_t errlen);
/* > 0 (the key id) when a key for uuid and id is loaded. */
int td_keyring_present(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN]);
/* How many keys for uuid are loaded for files other than id. */
int td_keyring_count_others(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN]);
int td_keyring_remove(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN], char *err,
		      size_t errlen);

/* The new key of a volume-key rotation (docs/FORMAT.md, "Volume-key
 * rotation"), described as the image's key plus ":next"; never consumed. */
int td_keyring_store_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  const struct td_volkey *vk, unsigned flags, char *err, size_t errlen);
int td_keyring_fetch_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  struct td_volkey **out, char *err, size_t errlen);
void td_keyring_remove_next(const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN]);

#endif
