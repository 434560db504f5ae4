/* vdkey, the key-management CLI: a thin layer over the keymgr library
 * (keymgr/volume.h, vops.h, vreport.h) that parses options, prints what the
 * library returns and turns its errors into exit statuses (0 success, 1
 * failure with one line on stderr saying why, 2 usage).
 *
 * vdkey_main.c parses the options and dispatches; cmd_common.c holds what
 * the commands share (opening an image, unlocking it, the KDF options);
 * cmd_<group>.c one group of commands each. */
#ifndef TD_VDKEY_H
#define TD_VDKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "crypt/header.h"
#include "keymgr/volume.h"

#define VDKEY_PROG "vdkey"

struct vdkey_opts {
	const char *key_file, *new_key_file, *integrity, *pbkdf;
	long slot;
	long iterations, memory_kib, time_cost, parallel;
	bool json, scrub, once, user_readable, force, verify, reset;
	unsigned timeout_s;
	const char *journal_size, *journal_blocks, *integrity_version;
	/* the KDF budget: --kdf-max-memory, --kdf-max-time, --kdf-max-total-time */
	const char *kdf_max_memory, *kdf_max_time, *kdf_max_total_time;
	bool allow_expensive_kdf;
	/* token keyslots: enroll --tang URL [--tang-thumbprint TP | --tang-trust];
	 * enroll --tpm2 [--pcrs LIST] [--tpm2-device DEV]; load --token-only */
	const char *tang, *tang_thumbprint;
	bool tang_trust, token_only;
	bool tpm2;
	const char *pcrs, *tpm2_device;
	/* the rollback anchor: --tpm2-nv, --nv-index */
	bool tpm2_nv;
	const char *nv_index;
	bool wait, status; /* reencrypt */
	/* reencrypt: --keep-slot N[:FILE], --drop-slot N, --keep-only */
	const char *keep_file[TD_HDR_KEYSLOTS];
	bool keep_slot[TD_HDR_KEYSLOTS], drop_slot[TD_HDR_KEYSLOTS], keep_only;
};

/* ---- cmd_common.c ---- */

/* Before a token keyslot's library path (libtss2, libcurl/libjose) runs:
 * when vdkey's memory could not be locked at start (td_vdkey_lock_memory,
 * keymgr/vdkey/wipe_heap.h), says so once on stderr, and what to do. */
void vdkey_note_unlocked_heap(void);
/* what td_vdkey_lock_memory said at start ("" when everything is locked) */
extern char vdkey_lock_msg[320];

/* "vdkey: " + the message + newline on stderr. */
void vdkey_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A session's warn callback (keymgr/volume.h): vdkey_say. */
void vdkey_warn(void *opaque, const char *msg);
/* td_volume_init and td_volume_open (header false: td_volume_open_lower)
 * with flags TD_VOL_*, saying why on failure. */
int vdkey_open(struct td_volume *v, const char *spec, unsigned flags, bool header);
/* td_volume_unlock, saying why it failed and which keyslots the KDF budget
 * kept from being tried. op: the key event a failure is recorded as. */
int vdkey_unlock(struct td_volume *v, const char *key_file, const char *op);
/* vdkey load's unlock: the token keyslots first (keymgr/vtoken.h), saying
 * why each one that fails does; then, unless --token-only, the passphrase
 * (vdkey_unlock). */
int vdkey_unlock_any(struct td_volume *v, const struct vdkey_opts *o, const char *op);
/* The key loaded for the image (not consumed), else vdkey_unlock. */
int vdkey_get_key(struct td_volume *v, const char *key_file);
/* The KDF of a new keyslot from --pbkdf and its parameters, within the
 * budget: 0, -EINVAL (usage), -E2BIG (over the budget). */
int vdkey_kdf_params(const struct vdkey_opts *o, struct td_kdf_params *kp);
/* SIZE in bytes with an optional K/M/G/T suffix (powers of 1024); 0 when
 * it is not one. */
uint64_t vdkey_parse_size(const char *arg);
/* n bytes as lowercase hex, NUL-terminated (out: 2n + 1 bytes). */
void vdkey_hex(char *out, const uint8_t *p, size_t n);

/* ---- cmd_token.c: Tang keyslots (unlocking every token kind is
 * keymgr/vtoken.h's table) ---- */

/* A Tang slot's details for audit: JSON members and text, or empty. */
void vdkey_slot_describe(const struct td_keyslot *ks, char *json, size_t jlen, char *text,
			 size_t tlen);
int vdkey_enroll_tang(const char *spec, const struct vdkey_opts *o);

/* ---- the commands: each returns the exit status ---- */

int vdkey_format(const char *spec, const struct vdkey_opts *o);		  /* cmd_format.c */
int vdkey_enroll(const char *spec, const struct vdkey_opts *o);		  /* cmd_slots.c */
int vdkey_remove(const char *spec, const struct vdkey_opts *o);		  /* cmd_slots.c */
int vdkey_load(const char *spec, const struct vdkey_opts *o);		  /* cmd_load.c */
int vdkey_unload(const char *spec);					  /* cmd_load.c */
int vdkey_list(const char *spec, const struct vdkey_opts *o, bool audit); /* cmd_report.c */
int vdkey_log(const char *spec, const struct vdkey_opts *o);		  /* cmd_log.c */
void vdkey_usage_log(FILE *f);						  /* cmd_log.c */
int vdkey_accept_rollback(const char *spec, const struct vdkey_opts *o);  /* cmd_header.c */
int vdkey_header_backup(const char *spec, const char *file);		  /* cmd_header.c */
int vdkey_header_restore(const char *spec, const char *file);		  /* cmd_header.c */
int vdkey_repair(const char *spec, const struct vdkey_opts *o);		  /* cmd_header.c */
int vdkey_anchor(const char *spec, const struct vdkey_opts *o);		  /* cmd_anchor.c */
/* vdkey load's TPM NV rollback check on an unlocked session (keymgr/vanchor.h),
 * saying why it refuses; a refusal is recorded as key event op. */
int vdkey_anchor_check(struct td_volume *v, const struct vdkey_opts *o, const char *op);
int vdkey_reencrypt(const char *spec, const struct vdkey_opts *o); /* cmd_reencrypt.c */

#endif
