/* What the key-management commands do to an image, on a session of
 * keymgr/volume.h. Each returns 0 (or what it says) or a negative errno
 * with a one-line message in err, and prints nothing; the key events they
 * make are recorded in the image's key-event log (SECURITY.md, "The
 * key-event log"). */
#ifndef TD_KEYMGR_VOPS_H
#define TD_KEYMGR_VOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt/header.h"
#include "integrity/integrity.h"
#include "keymgr/volume.h"
#include "keymgr/vtoken.h"

/* ---- format (vformat.c) ---- */

/* The smallest MAC journal vdkey format writes by default or with
 * --journal-size (1 MiB): the largest request a tapdisk accepts fits half
 * of it. The format itself allows TI_JOURNAL_BLOCKS_MIN (tests, experts). */
#define TD_FORMAT_JOURNAL_MIN 256u

struct td_format_args {
	const char *integrity;	    /* TD_HDR_INTEGRITY_HMAC_SHA256 (NULL) or _NONE */
	unsigned integrity_version; /* of the integrity metadata: 1 or 2 (0: TI_PARAMS_VERSION) */
	uint32_t journal_blocks;    /* TI_JOURNAL_BLOCKS_MIN..MAX (0: the default, on rbd more) */
	struct td_kdf_params kdf;   /* keyslot 0's */
	const char *key_file;	    /* the passphrase: a file, "-" or NULL (prompt) */
	bool force;		    /* over an existing crypt header */
};

/* Formats the image of v (td_volume_open_lower, TD_VOL_WRITE): a new crypt
 * header with a fresh random volume key and keyslot 0, the integrity
 * metadata it records, and the first key event. Afterwards v->h and v->vk
 * are the new image's. */
int td_volume_format(struct td_volume *v, const struct td_format_args *a, char *err, size_t errlen);

/* ---- keyslots (vslots.c); v unlocked and writable ---- */

/* Adds a keyslot (slot, or the first free one when -1) for the passphrase
 * read from new_key_file ("-", or NULL: a prompt, asked twice). Returns the
 * slot index. */
int td_volume_enroll(struct td_volume *v, int slot, const char *new_key_file,
		     const struct td_kdf_params *kp, char *err, size_t errlen);
/* Adds a token keyslot (keymgr/keyslot.h td_keyslot_add_token: kind
 * TD_KDF_TPM2 or TD_KDF_TANG) whose KEK an unlocker released. Returns the
 * slot index. */
int td_volume_enroll_token(struct td_volume *v, int slot, int kind, const uint8_t *token,
			   size_t token_len, const uint8_t *kek, size_t kek_len, char *err,
			   size_t errlen);
/* Removes a keyslot; never the last one (-EBUSY). */
int td_volume_remove_slot(struct td_volume *v, int slot, char *err, size_t errlen);

/* ---- the kernel keyring (vload.c) ---- */

/* Loads v's unlocked volume key into the keyring, bound to the image file
 * (keymgr/keyring.h: flags TD_KEYRING_*, timeout_s 0 = none). Opened with
 * TD_VOL_TRY_WRITE, so that the event can move the anchor. */
int td_volume_load(struct td_volume *v, unsigned flags, unsigned timeout_s, char *err,
		   size_t errlen);
/* Removes the key loaded for v's image; the key, read before it goes,
 * anchors the event. */
int td_volume_unload(struct td_volume *v, char *err, size_t errlen);

/* ---- rollback (vfresh.c) ---- */

/* Makes the image's generation this host's trusted one when it is older
 * (a deliberate restore), with v unlocked and writable. *st gets the state
 * found; *accepted whether there was a rollback to accept (0 either way). */
int td_volume_accept_rollback(struct td_volume *v, struct ti_fresh_status *st, bool *accepted,
			      char *err, size_t errlen);

/* ---- header backup and restore (vheader.c) ---- */

/* Saves both header copies (TD_HDR_BACKUP_SIZE bytes, crypt/hdrio.h) of v
 * (its header read, so known valid) into a new file, mode 0600. */
int td_volume_header_backup(struct td_volume *v, const char *file, char *err, size_t errlen);
/* Reads a backup file and checks that it holds a valid header: *buf for
 * td_volume_header_restore, freed with td_header_backup_free. */
int td_header_backup_read(const char *file, uint8_t **buf, char *err, size_t errlen);
void td_header_backup_free(uint8_t *buf);
/* Writes a backup over the header area of v (td_volume_open_lower,
 * TD_VOL_WRITE). */
int td_volume_header_restore(struct td_volume *v, const uint8_t *buf, char *err, size_t errlen);

/* ---- the key-event log (vlog.c) ---- */

/* Starts a new log (keymgr/keylog.h td_keylog_reset) at the header's
 * authenticated anchor and anchors it, with v's key (v writable).
 * *reset_at gets the seq of the reset entry. */
int td_volume_log_reset(struct td_volume *v, uint64_t *reset_at, char *err, size_t errlen);

/* ---- volume-key rotation (vreencrypt.c; docs/FORMAT.md) ---- */
/* Which keyslots a rotation keeps (docs/FORMAT.md, "Keys during the
 * pass"): every slot is kept unless dropped; a token slot through its
 * token, a passphrase slot through file[i] (--keep-slot N:FILE) or, when
 * prompt is set, a terminal prompt. A passphrase slot with neither, or a
 * token slot whose token cannot release its KEK now, refuses the rotation
 * unless drop[i] (--drop-slot N) or keep_only (--keep-only: every slot
 * neither given nor keep[i] is dropped). */
struct td_reenc_keep {
	const char *file[TD_HDR_KEYSLOTS];
	bool keep[TD_HDR_KEYSLOTS];
	bool drop[TD_HDR_KEYSLOTS];
	bool keep_only;
	bool prompt;
	struct td_token_opts tok;
};
/* What a started rotation does with the keyslots: bit i. */
struct td_reenc_slots {
	int slot; /* the slot the passphrase given opened (the record's new slot) */
	unsigned rewrapped, dropped;
};
/* Starts a rotation on v (opened TD_VOL_WRITE, not unlocked; integrity
 * none): reads the passphrase (key_file), opens the old key with it, makes
 * a new random key, gives every kept slot a pending wrap of it (k), writes
 * them and the reencryption record in one header update and loads both
 * keys into the keyring. A tapdisk that opens the image then moves the
 * data. Nothing is written when a slot refuses (err names it). */
int td_volume_reencrypt_start(struct td_volume *v, const char *key_file,
			      const struct td_reenc_keep *k, struct td_reenc_slots *res, char *err,
			      size_t errlen);
/* During a rotation: opens the new key's slot with pass and loads that key
 * into the keyring as the rotation's new key: 1; 0 when no rotation is
 * under way. */
int td_volume_load_next(struct td_volume *v, const void *pass, size_t passlen, char *err,
			size_t errlen);
/* The same for a token slot that opened the old key (v->slot, through
 * td_volume_unlock_tokens): its token releases the KEK again, which opens
 * the slot's pending wrap: 1; 0 when no rotation is under way. */
int td_volume_load_next_token(struct td_volume *v, const struct td_token_opts *o, char *err,
			      size_t errlen);
/* After a rotation (v->h the new key's): the keyring's new key becomes the
 * image's key. */
int td_volume_reencrypt_adopt(struct td_volume *v, char *err, size_t errlen);

#endif
