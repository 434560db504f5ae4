/* What the key-management commands report about an image (vdkey list,
 * audit, log; docs/AUDIT.md), as data, on a session of keymgr/volume.h.
 * Nothing here prints, asks for a secret or consumes a loaded key: the key
 * is read from the keyring only to authenticate what it can. */
#ifndef TD_KEYMGR_VREPORT_H
#define TD_KEYMGR_VREPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "integrity/format.h"
#include "integrity/integrity.h"
#include "integrity/scrub.h"
#include "keymgr/keylog.h"
#include "keymgr/volume.h"

/* ---- list and audit (vreport.c) ---- */

/* The key-event log checked against the header's anchor, which counts only
 * when the key authenticates the header (docs/AUDIT.md, "keylog"). */
struct td_keylog_status {
	struct td_keylog_result r;
	bool authenticated; /* the key was available and the header MAC verified */
	bool verified;	    /* the chain and the anchor check out, and authenticated */
	char error[768];    /* why not verified; "" when verified */
};

/* Freshness (docs/AUDIT.md, "freshness"). */
struct td_fresh_report {
	bool have; /* the image has integrity metadata */
	int rc;	   /* 0: st is valid, else err says why */
	struct ti_fresh_status st;
	char err[512];
	bool scrub_seen; /* the last audit --scrub in the key-event log: */
	uint64_t scrub_time;
	char scrub_outcome[8];
};

/* Volume-key rotation (docs/AUDIT.md, "rotation"): from the header's
 * reencryption record and the key-event log. */
struct td_rotation_report {
	bool in_progress;
	uint64_t boundary, blocks, window; /* in_progress */
	bool start_seen, end_seen;	   /* the last reencrypt-start / -end logged */
	uint64_t start_time, end_time;
	/* the last rotation's keyslots (bit i): re-wrapped, dropped at its end */
	unsigned rewrapped, dropped;
};

struct td_report {
	const char *copy_state[2]; /* primary, secondary: "ok", "corrupt", "stale" */
	int keyslots_active;
	bool key_loaded;	/* for this very file */
	char keyring_desc[128]; /* "" when the image's identity is unknown */
	bool have_layout;	/* integrity hmac-sha256 and its parameters decode */
	struct ti_params layout;
	/* td_report_audit */
	struct td_keylog_status keylog;
	struct td_fresh_report fresh;
	struct td_rotation_report rotation;
};

/* What vdkey list shows: the header's state and parameters (v opened with
 * its header). */
void td_report_header(struct td_volume *v, struct td_report *r);
/* What vdkey audit adds: the key-event log's state and freshness. key: a
 * key that may authenticate the header besides the one in the keyring (the
 * one a scrub fetched; NULL: none). */
void td_report_audit(struct td_volume *v, const struct td_volkey *key, struct td_report *r);
/* A tree root that does not verify, or a rolled-back image: the audit fails. */
bool td_report_alarm(const struct td_report *r);

/* ---- freshness (vfresh.c) ---- */

/* The generation, the trusted generation and the tree root of v's image,
 * authenticated with vk. */
int td_volume_fresh_status(const struct td_volume *v, const struct td_volkey *vk,
			   struct ti_fresh_status *st, char *err, size_t errlen);

/* ---- the scrub (vscrub.c) ---- */

typedef void (*td_scrub_progress_fn)(uint64_t done, uint64_t total, void *opaque);

/* vdkey audit --scrub on v's image (v opened with its header): opens the
 * crypt layer over it the way tapdisk does (the key from the keyring, the
 * image lock, journal recovery), verifies every written block's MAC
 * (integrity/scrub.h; progress may be NULL), records the scrub as a key
 * event anchored with that key, and re-reads v's header (the event moved
 * its anchor). *key (may be NULL) gets a copy of the key the scrub used,
 * which a --once key leaves nowhere else. */
int td_volume_scrub(struct td_volume *v, td_scrub_progress_fn progress, void *opaque,
		    struct ti_scrub_result *res, struct td_volkey **key, char *err, size_t errlen);

/* ---- the key-event log (vlog.c) ---- */

/* The header's anchor; authenticated only when v has the key. */
int td_volume_log_anchor(const struct td_volume *v, struct td_keylog_anchor *a, char *err,
			 size_t errlen);
/* Walks a log read with td_keylog_read: *off is where to start (0 first).
 * 1 with *e, 0 at the end, -EBADMSG for a line that does not parse (why
 * says how; the walk goes on with the next line). */
int td_vlog_next(const char *buf, size_t len, size_t *off, struct td_keylog_entry *e, char *why,
		 size_t whylen);

#endif
