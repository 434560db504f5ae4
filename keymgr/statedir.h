/* Trusted local state of the key manager, per image UUID.
 *
 * A root-owned directory (default /var/lib/tdcrypt, overridden by the
 * TDCRYPT_STATE_DIR environment variable — a path, not a secret — so tests
 * and unprivileged users can point it elsewhere). Each image gets a
 * subdirectory named by its UUID (mode 0700) holding:
 *
 *   generation   the highest integrity generation seen: 20 decimal digits
 *                and '\n', rewritten in place (one 21-byte pwrite + fdatasync)
 *   keylog       the key-event log (keymgr/keylog.h)
 *
 * What this protects, and what it does not, is in SECURITY.md. */
#ifndef TD_KEYMGR_STATEDIR_H
#define TD_KEYMGR_STATEDIR_H

#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"

/* The state directory in use (no trailing slash). */
const char *td_statedir(void);

/* Builds "<statedir>/<uuid>/<name>" into out, creating the directories
 * (0700) when create is set. Negative errno with a message in err. */
int td_statedir_path(const uint8_t uuid[16], const char *name, int create, char *out, size_t outlen,
		     char *err, size_t errlen);

/* The trusted generation for uuid: 0 with *gen = 0 when none is recorded,
 * negative errno on an unreadable or malformed file. */
int td_state_gen_read(const uint8_t uuid[16], uint64_t *gen, char *err, size_t errlen);
/* Records gen. The file is opened (created) once per process and UUID and
 * the descriptor kept, so a tapdisk that dropped its privileges after
 * its first open can still advance it when it reopens the image. */
int td_state_gen_write(const uint8_t uuid[16], uint64_t gen, char *err, size_t errlen);
/* Opens (creating) the generation file now and keeps the descriptor; a
 * tapdisk calls this before it drops privileges. */
int td_state_gen_prepare(const uint8_t uuid[16], char *err, size_t errlen);

/* The three above as a chain's trusted store (td_ctx.trust). */
extern const struct td_trust_ops td_statedir_trust;

#endif
