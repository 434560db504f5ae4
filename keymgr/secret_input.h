/* Reading passphrases: from a key file (or "-" for standard input) or a
 * no-echo terminal prompt. Never from argv or the environment. The
 * result lives in secure memory (crypt/backend/secmem.h). */
#ifndef TD_KEYMGR_SECRET_INPUT_H
#define TD_KEYMGR_SECRET_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#define TD_PASS_MAX 8192

struct td_secret {
	char *buf; /* td_secure_alloc'd */
	size_t len;
};

/* file: path, "-" or NULL (prompt on the terminal). confirm: ask twice.
 * The file's bytes are used exactly (no newline stripping, like
 * cryptsetup's --key-file); a typed passphrase ends at the newline. */
int td_secret_read(const char *file, const char *prompt, bool confirm, struct td_secret *out,
		   char *err, size_t errlen);
void td_secret_free(struct td_secret *s);

#endif
