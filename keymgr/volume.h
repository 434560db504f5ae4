/* A key-management session on one image: what every vdkey command works
 * on (keymgr/vops.h, keymgr/vreport.h).
 *
 * td_volume_open opens the image's lower chain — the spec with its keyed
 * top layer (the crypt layer, td_driver.needs_key) dropped — the way tapdisk
 * opens it below the crypt layer, and reads the crypt header from it.
 * td_volume_unlock (a keyslot) or td_volume_key_from_keyring (a loaded key,
 * never consumed) then gives the session the volume key, with which the
 * header's MAC is verified, so its key-event log anchor can be trusted.
 *
 *	struct td_volume v;
 *	td_volume_init(&v, warn, opaque);
 *	rc = td_volume_open(&v, spec, TD_VOL_WRITE, err, sizeof(err));
 *	rc = td_volume_unlock(&v, key_file, TD_KEYLOG_OP_ENROLL, err, sizeof(err));
 *	... change v.h, td_volume_record(&v, ...), td_volume_store(&v, ...)
 *	td_volume_close(&v);
 *
 * Every function returns 0 (or what it says) or a negative errno with a
 * one-line message in err, and prints nothing: warnings (a header copy to
 * repair, a key event that could not be recorded or anchored) go to the
 * session's warn callback.
 *
 * volume.c holds the session, vevent.c the key events it records. */
#ifndef TD_KEYMGR_VOLUME_H
#define TD_KEYMGR_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt/header.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/block/driver.h"

struct td_volkey;

/* How td_volume_open opens the image: */
/* read-only, no image lock (inspection) */
#define TD_VOL_READ 0x0
/* for writing: takes the image lock */
#define TD_VOL_WRITE 0x1
/* for writing if the image can be, else read-only (a running tapdisk holds
 * its lock, or it is read-only: ro_why says which) */
#define TD_VOL_TRY_WRITE 0x2
/* with the crypt layer on top, keyed from the keyring as tapdisk is (the
 * session keeps a copy of the key); no header is read */
#define TD_VOL_DECRYPT 0x4

/* A warning for the user, one line (no trailing newline). */
typedef void (*td_volume_warn_fn)(void *opaque, const char *msg);

struct td_volume {
	struct td_ctx ctx;
	struct td_chain *chain;
	char spec[TD_SPEC_MAX_LEN]; /* the lower spec as opened (without the crypt layer) */
	struct td_crypt_hdr *h;	    /* the header, wiped at close */
	struct td_volkey *vk;	    /* set: h's MAC was verified with it */
	int which;		    /* the copy h came from: 0 primary, 1 secondary, -1 none */
	int other;		    /* enum td_hdr_other: the state of the other copy */
	int slot;		    /* the keyslot that opened vk, -1 */
	bool writable;		    /* open for writing (and locked) */
	bool anchor_moved;	    /* h carries a new key-event log anchor: store it */
	char ro_why[160];	    /* why a TD_VOL_TRY_WRITE open is read-only */
	struct td_volkey *fetched;  /* TD_VOL_DECRYPT: the key the crypt layer fetched */
	td_volume_warn_fn warn;
	void *warn_opaque;
};

/* ---- the session (volume.c) ---- */

/* Hands a warning to v's warn callback (for the keymgr files). */
void td_volume_warn(const struct td_volume *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Zeroes v; warn (may be NULL) gets the session's warnings. */
void td_volume_init(struct td_volume *v, td_volume_warn_fn warn, void *opaque);
/* Opens the lower chain of spec (written with or without the crypt layer)
 * with flags TD_VOL_*, then reads the header (td_volume_load_header). */
int td_volume_open(struct td_volume *v, const char *spec, unsigned flags, char *err, size_t errlen);
/* The lower chain only (format, header-restore, the scrub's crypt chain). */
int td_volume_open_lower(struct td_volume *v, const char *spec, unsigned flags, char *err,
			 size_t errlen);
/* (Re)reads the header: v->h, v->which, v->other; a copy to repair is a
 * warning. -ENOMSG when the image has no crypt header. */
int td_volume_load_header(struct td_volume *v, char *err, size_t errlen);
/* Closes the chain, wipes and frees the header and the keys. */
void td_volume_close(struct td_volume *v);

/* Reads a passphrase (keymgr/secret_input.h: key_file, "-" or NULL for a
 * prompt) and opens a keyslot with it under the process's KDF budget
 * (keymgr/keyslot.h): v->vk, v->slot. A failure is recorded as key event
 * op (NULL: not recorded). -EPERM wrong passphrase, -EBADMSG the header
 * was changed, -E2BIG nothing within the budget opened (td_keyslot_plan
 * says which keyslots were not tried). */
int td_volume_unlock(struct td_volume *v, const char *key_file, const char *op, char *err,
		     size_t errlen);
/* The same with a passphrase already read (pass, passlen). */
int td_volume_unlock_pass(struct td_volume *v, const void *pass, size_t passlen, const char *op,
			  char *err, size_t errlen);
/* The key loaded for this image, read without consuming it, as the
 * session's key when it opens v->h (digest and MAC): 0 or -ENOKEY. */
int td_volume_key_from_keyring(struct td_volume *v);
/* *vk becomes the session's key when it opens v->h (0), else it is freed
 * (-EBADMSG); *vk is NULL afterwards either way. */
int td_volume_adopt_key(struct td_volume *v, struct td_volkey **vk);
/* The key loaded for this image (not consumed), not adopted: the caller
 * frees *out. 0 or negative errno. */
int td_volume_peek_key(const struct td_volume *v, struct td_volkey **out);
/* The identity of the image the chain opened (keymgr/keyring.h binds a
 * loaded key to it). */
int td_volume_identity(const struct td_volume *v, uint8_t id[TD_IMAGE_ID_LEN], char *err,
		       size_t errlen);
/* Writes v->h to both copies: sequence + 1, sealed with v->vk. */
int td_volume_store(struct td_volume *v, char *err, size_t errlen);

/* ---- key events (vevent.c; keymgr/keylog.h) ---- */

/* Records a key event of v's image. With anchor set and the key in hand
 * (v->vk) the log is first checked against the header's anchor and, once
 * the entry is on disk, v->h's anchor moves to include it (anchor_moved:
 * the next td_volume_store writes it). Without, the entry is unanchored. A
 * log that cannot be written is a warning, never a failure. */
void td_volume_record(struct td_volume *v, const char *op, int slot, bool ok, bool anchor);
/* For operations that do not rewrite the header themselves: stores a moved
 * anchor when the image is writable, else warns that the entry stays
 * unanchored. */
void td_volume_commit(struct td_volume *v, const char *op);

#endif
