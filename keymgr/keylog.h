/* The key-event log (docs/FORMAT.md, "Key-event log"; SECURITY.md).
 *
 * One text line per key event in <statedir>/<uuid>/keylog, hash-chained
 * from a genesis value bound to the image UUID; the chain's head is
 * anchored in the authenticated crypt header (td_hdr_keylog_anchor_*,
 * crypt/header.h). A command that holds the volume key records an event
 * and moves the anchor like this:
 *
 *	struct td_keylog_anchor cur, next;
 *	td_hdr_keylog_anchor_get(h, &cur, ...);     (h's MAC verified with vk)
 *	td_keylog_append(uuid, "enroll", slot, TD_KEYLOG_OK, &cur, &next, ...);
 *	td_hdr_keylog_anchor_set(h, &next);
 *	h->seqno++; td_hdr_seal(h, vk); td_hdr_store(...);
 *
 * (keymgr/vevent.c wraps this in td_volume_record / td_volume_commit.) A command
 * without the key passes cur = NULL and leaves the header alone: its
 * entry is "unanchored" until the next keyed event.
 *
 * keylog_fmt.c holds the pure functions (no I/O: unit tests, fuzzing),
 * keylog.c the file access. */
#ifndef TD_KEYMGR_KEYLOG_H
#define TD_KEYMGR_KEYLOG_H

#include <stddef.h>
#include <stdint.h>

#include "crypt/header.h"

#define TD_KEYLOG_HASH_LEN 32
#define TD_KEYLOG_LINE_MAX 512	       /* bytes of one entry, the '\n' included */
#define TD_KEYLOG_OP_MAX 32	       /* characters of op */
#define TD_KEYLOG_FILE_MAX (64u << 20) /* a longer log is refused as hostile */
#define TD_KEYLOG_SLOT_NONE (-1)
#define TD_KEYLOG_OK "ok"
#define TD_KEYLOG_FAIL "fail"

#define TD_KEYLOG_GENESIS_DOMAIN "tdcrypt v1 keylog genesis\n"
#define TD_KEYLOG_ENTRY_DOMAIN "tdcrypt v1 keylog entry\n"

/* Operation names the project writes (op is any [a-z0-9-]{1,32}). */
#define TD_KEYLOG_OP_FORMAT "format"
#define TD_KEYLOG_OP_ENROLL "enroll"
#define TD_KEYLOG_OP_REMOVE "remove"
#define TD_KEYLOG_OP_LOAD "load"
#define TD_KEYLOG_OP_UNLOAD "unload"
#define TD_KEYLOG_OP_ACCEPT_ROLLBACK "accept-rollback"
#define TD_KEYLOG_OP_SCRUB "scrub"
#define TD_KEYLOG_OP_RESET "reset" /* only as the first line of a file */
/* volume-key rotation (docs/FORMAT.md, "Volume-key rotation") */
#define TD_KEYLOG_OP_REENC_START "reencrypt-start"
#define TD_KEYLOG_OP_REENC_PROGRESS "reencrypt-progress"
#define TD_KEYLOG_OP_REENC_END "reencrypt-end"
#define TD_KEYLOG_OP_REENC_REWRAP "reencrypt-rewrap" /* a slot kept: pending wrap */
#define TD_KEYLOG_OP_REENC_DROP "reencrypt-drop"     /* a slot dropped at the end */

struct td_keylog_entry {
	uint64_t seq;
	uint64_t time; /* seconds since the epoch */
	uint32_t uid;
	uint8_t uuid[16];
	char op[TD_KEYLOG_OP_MAX + 1];
	int slot;	 /* 0..15 or TD_KEYLOG_SLOT_NONE */
	char outcome[8]; /* TD_KEYLOG_OK or TD_KEYLOG_FAIL */
	uint8_t prev[TD_KEYLOG_HASH_LEN];
	uint8_t hash[TD_KEYLOG_HASH_LEN];
};

/* The outcome of checking a log. */
struct td_keylog_result {
	uint64_t entries;    /* the next seq: lines in the file, plus reset_at after a reset */
	uint64_t reset_at;   /* seq of the reset entry starting the file, UINT64_MAX: none */
	uint64_t anchored;   /* the anchor's count (0: none) */
	uint64_t unanchored; /* entries - anchored, when the log verifies */
	uint64_t bad_seq;    /* the first bad entry, UINT64_MAX when none or n/a */
	uint8_t head[TD_KEYLOG_HASH_LEN]; /* hash of the last entry (genesis when empty) */
};

/* ---- pure functions (keylog_fmt.c) ---- */

/* SHA-256(TD_KEYLOG_GENESIS_DOMAIN || uuid). */
int td_keylog_genesis(const uint8_t uuid[16], uint8_t out[TD_KEYLOG_HASH_LEN]);
/* SHA-256(TD_KEYLOG_ENTRY_DOMAIN || the line up to " hash="); e->hash is
 * not read. -EINVAL when e cannot be formatted. */
int td_keylog_entry_hash(const struct td_keylog_entry *e, uint8_t out[TD_KEYLOG_HASH_LEN]);
/* The canonical line of e, '\n' included, NUL-terminated. Returns its
 * length (without the NUL), or -EINVAL when a field is out of range or
 * buf (at least TD_KEYLOG_LINE_MAX + 1 bytes is always enough) is short. */
int td_keylog_format(const struct td_keylog_entry *e, char *buf, size_t len);
/* Parses one line of len bytes (without its '\n'; need not be
 * NUL-terminated). Strict: the re-formatted entry must be byte-identical.
 * The hashes are not checked. 0, or -EBADMSG with the reason in err. */
int td_keylog_parse_line(const char *line, size_t len, struct td_keylog_entry *e, char *err,
			 size_t errlen);
/* Checks a whole log (len bytes at buf) of image uuid: every line, the
 * chain and, when anchor is not NULL, the anchor (count 0 = none; the
 * caller has authenticated it). 0 when intact, else -EBADMSG with a
 * message naming the first bad entry in err. res is filled either way. */
int td_keylog_verify_buf(const char *buf, size_t len, const uint8_t uuid[16],
			 const struct td_keylog_anchor *anchor, struct td_keylog_result *res,
			 char *err, size_t errlen);
/* Splits buf into lines: *off is where to start (0 first); sets *line and
 * *linelen (without '\n') and advances *off. 1 = a line, 0 = end of
 * buffer, -EBADMSG = a last line without '\n' (torn). */
int td_keylog_next_line(const char *buf, size_t len, size_t *off, const char **line,
			size_t *linelen);

/* ---- the log file (keylog.c) ---- */

/* Reads <statedir>/<uuid>/keylog into a malloc'ed buffer (*buf NULL and
 * *len 0 when there is no log yet). Negative errno with err set. */
int td_keylog_read(const uint8_t uuid[16], char **buf, size_t *len, char *err, size_t errlen);

/* td_keylog_read + td_keylog_verify_buf. A missing log is an empty one. */
int td_keylog_verify(const uint8_t uuid[16], const struct td_keylog_anchor *anchor,
		     struct td_keylog_result *res, char *err, size_t errlen);

/* Appends one event (time now, uid = getuid()) and fsyncs it, under an
 * exclusive flock of the log. cur: the header's authenticated anchor when
 * the caller holds the volume key, else NULL; with cur the existing log
 * must verify against it, or nothing is appended (-EBADMSG: a tampered log
 * is never extended, so a new anchor cannot hide the tampering); without
 * it only the chain is checked. next (may be NULL) gets the anchor of the
 * log including the new entry: the caller stores it in the header. slot
 * is 0..15 or TD_KEYLOG_SLOT_NONE, outcome TD_KEYLOG_OK / TD_KEYLOG_FAIL.
 * 0 or negative errno with err set (nothing appended then). */
int td_keylog_append(const uint8_t uuid[16], const char *op, int slot, const char *outcome,
		     const struct td_keylog_anchor *cur, struct td_keylog_anchor *next, char *err,
		     size_t errlen);

/* Starts a new log after a reset (docs/FORMAT.md, "Reset"): the old file,
 * if any, is kept as keylog.before-reset.<seconds>; the new one holds one
 * reset entry continuing from cur, the header's authenticated anchor (count
 * 0 = none: from the genesis). next gets the anchor to store in the header.
 * 0 or negative errno with err set. */
int td_keylog_reset(const uint8_t uuid[16], const struct td_keylog_anchor *cur,
		    struct td_keylog_anchor *next, char *err, size_t errlen);

#endif
