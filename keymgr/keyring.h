/* Handing the volume key from vdkey to tapdisk through the kernel keyring.
 *
 * vdkey load adds a "user" key described "tdcrypt:v1:<image uuid>" to the
 * caller's user keyring (@u), holding the 64-byte volume key followed by
 * one flags byte (TD_KEYRING_ONCE). Default
 * permissions: possessor all, user view only — only processes of that
 * user that possess it (reach it through their session keyring, as the
 * tapdisk started from the same session does) can read it. The key never
 * touches argv, the environment or a file. */
#ifndef TD_KEYMGR_KEYRING_H
#define TD_KEYMGR_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keymgr/volkey.h"

#define TD_KEYRING_USER_READABLE 0x1u /* also let same-uid non-possessors read it */
#define TD_KEYRING_ONCE 0x2u /* the first tapdisk that reads it invalidates it */

void td_uuid_str(const uint8_t uuid[16], char out[37]);
void td_keyring_desc(const uint8_t uuid[16], char *out, size_t len);

/* Adds (or replaces) the key for uuid. timeout_s 0 = no expiry. */
int td_keyring_store(const uint8_t uuid[16], const struct td_volkey *vk, unsigned flags,
		     unsigned timeout_s, char *err, size_t errlen);
/* Reads the key for uuid into secure memory (from the process's own copy
 * when it fetched the same key before), and invalidates it when it was
 * stored with TD_KEYRING_ONCE. -ENOKEY with the "run vdkey load"
 * message when there is none. */
int td_keyring_fetch(const uint8_t uuid[16], struct td_volkey **out, char *err, size_t errlen);
/* > 0 (the key id) when a key for uuid is loaded. */
int td_keyring_present(const uint8_t uuid[16]);
int td_keyring_remove(const uint8_t uuid[16], char *err, size_t errlen);
/* Wipes the process's copy of the last fetched key (see td_keyring_fetch:
 * a tapdisk keeps it so it can reopen its image after a pause). */
void td_keyring_forget(void);

#endif
