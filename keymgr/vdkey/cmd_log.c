/* vdkey log SPEC [--json] [--verify | --reset]: the image's key-event log
 * (keymgr/keylog.h, keymgr/vreport.h, vlog.c), printed, verified or reset. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "keymgr/keylog.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"
#include "keymgr/vreport.h"
#include "tapdisk/core/util.h"

void vdkey_usage_log(FILE *f)
{
	fprintf(f,
		"Usage: vdkey log SPEC [--json]\n"
		"       vdkey log SPEC --verify [--json] [--key-file F]\n"
		"       vdkey log SPEC --reset [--key-file F]\n"
		"\n"
		"The key-event log of the image: every format, enroll, remove, load, unload,\n"
		"accept-rollback and audit --scrub, with its time, user id, keyslot and outcome\n"
		"(ok or fail). It lives in the trusted state directory\n"
		"($TDCRYPT_STATE_DIR, default /var/lib/tdcrypt), one line per event, each\n"
		"hash-chained to the one before; the chain's head is anchored in the\n"
		"authenticated crypt header by every event made with the volume key.\n"
		"\n"
		"Without --verify it prints the entries (no secret needed; --json: an array\n"
		"of objects). The 'anchored' column is read from the header and is not\n"
		"authenticated.\n"
		"\n"
		"--verify authenticates the header with the volume key (from the keyring when\n"
		"it is loaded — a --once key is not consumed — else from --key-file F or a\n"
		"prompt) and checks every entry, the chain and the anchor. It names the\n"
		"first problem: a modified entry (hash mismatch at seq N), a removed or\n"
		"reordered one (entry removed or reordered / prev-hash mismatch at seq N), a\n"
		"cut tail or deleted log (the anchor points past the end of the log), or a\n"
		"rewritten history (head hash mismatch at the anchored entry). Entries after\n"
		"the anchor (failed attempts without the key, a load while a tapdisk holds\n"
		"the image) are reported as unanchored: they are not protected until the\n"
		"next event with the key anchors them. Format: docs/FORMAT.md.\n"
		"\n"
		"--reset (needs the volume key and a writable image) is the way out of a log\n"
		"that fails verification, which is never extended: the old file is kept as\n"
		"keylog.before-reset.<seconds> next to it, a new log starts with one 'reset'\n"
		"entry continuing from the header's authenticated anchor, and the anchor\n"
		"moves to it. The reset entry, its time and user id stay in the log for\n"
		"auditors; entries before it are no longer checked.\n"
		"\n"
		"Without a loaded key, --verify and --reset unlock a keyslot: the KDF budget\n"
		"options (--kdf-max-memory, --kdf-max-time, --kdf-max-total-time,\n"
		"--allow-expensive-kdf; see vdkey --help) apply.\n"
		"\n"
		"Exit status: 0 the log verifies (or was printed, or was reset), 1 it does not\n"
		"(one line on stderr says why) or it cannot be read, 2 usage.\n");
}

/* vdkey log SPEC --reset */
static int log_reset(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	uint64_t at;
	int rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);

	if (rc == 0)
		rc = vdkey_get_key(&v, o->key_file);
	if (rc == 0 && (rc = td_volume_log_reset(&v, &at, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		printf("key-event log of image %s reset at seq %llu; the old log is kept as "
		       "keylog.before-reset.* in the state directory\n",
		       uuid, (unsigned long long)at);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

static void fmt_utc(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t > (uint64_t)INT64_MAX / 2 || !gmtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "?");
}

static void print_entries(const char *buf, size_t len, uint64_t anchored, bool json)
{
	struct td_keylog_entry e;
	char why[256], js[600], t[40], u[TD_HDR_UUID_STR_LEN], prev[65], hash[65], slot[8];
	size_t off = 0;
	uint64_t i = 0;
	int r;

	if (json)
		printf("[");
	else
		printf("%-5s %-20s %-6s %-16s %-4s %-7s %s\n", "SEQ", "TIME (UTC)", "UID", "OP",
		       "SLOT", "OUTCOME", "ANCHORED");
	for (; (r = td_vlog_next(buf, len, &off, &e, why, sizeof(why))) != 0; i++) {
		if (r < 0) {
			td_json_str(js, sizeof(js), why);
			if (json)
				printf("%s\n  {\"line\": %" PRIu64 ", \"malformed\": %s}",
				       i ? "," : "", i + 1, js);
			else
				printf("line %" PRIu64 ": MALFORMED: %s\n", i + 1, why);
			continue;
		}
		fmt_utc(e.time, t, sizeof(t));
		td_hdr_uuid_str(e.uuid, u);
		vdkey_hex(prev, e.prev, 32);
		vdkey_hex(hash, e.hash, 32);
		if (e.slot == TD_KEYLOG_SLOT_NONE)
			snprintf(slot, sizeof(slot), json ? "null" : "-");
		else
			snprintf(slot, sizeof(slot), "%d", e.slot);
		if (json)
			printf("%s\n  {\"seq\": %" PRIu64 ", \"time\": %" PRIu64
			       ", \"time_utc\": \"%s\", \"uid\": %" PRIu32
			       ", \"uuid\": \"%s\", \"op\": \"%s\", \"slot\": %s, \"outcome\": "
			       "\"%s\", "
			       "\"anchored\": %s, \"prev\": \"%s\", \"hash\": \"%s\"}",
			       i ? "," : "", e.seq, e.time, t, e.uid, u, e.op, slot, e.outcome,
			       i < anchored ? "true" : "false", prev, hash);
		else
			printf("%-5" PRIu64 " %-20s %-6" PRIu32 " %-16s %-4s %-7s %s\n", e.seq, t,
			       e.uid, e.op, slot, e.outcome, i < anchored ? "yes" : "no");
	}
	printf(json ? "\n]\n" : "");
}

/* The entries (no secret needed; the anchor is not authenticated). */
static int log_print(const struct td_volume *v, const struct td_keylog_anchor *a, bool json)
{
	char err[768], uuid[TD_HDR_UUID_STR_LEN];
	char *buf = NULL;
	size_t len = 0;
	int rc = td_keylog_read(v->h->uuid, &buf, &len, err, sizeof(err));

	if (rc < 0) {
		vdkey_say("%s", err);
		return rc;
	}
	print_entries(buf, len, a->count, json);
	if (!json) {
		td_hdr_uuid_str(v->h->uuid, uuid);
		printf("image %s: the header anchors %" PRIu64 " entr%s (not authenticated: "
		       "use --verify)\n",
		       uuid, a->count, a->count == 1 ? "y" : "ies");
	}
	free(buf);
	return 0;
}

/* --verify: the chain against the anchor of the header v's key
 * authenticated. */
static int log_verify(const struct td_volume *v, const struct td_keylog_anchor *a, bool json)
{
	char err[768], uuid[TD_HDR_UUID_STR_LEN], head[65], js[1600];
	struct td_keylog_result r;
	int rc = td_keylog_verify(v->h->uuid, a, &r, err, sizeof(err));

	td_hdr_uuid_str(v->h->uuid, uuid);
	if (json) {
		vdkey_hex(head, r.head, 32);
		printf("{\"uuid\": \"%s\", \"entries\": %" PRIu64 ", \"anchored\": %" PRIu64
		       ", \"unanchored\": %" PRIu64 ", \"head\": \"%s\", \"verified\": %s, "
		       "\"reset_at\": ",
		       uuid, r.entries, r.anchored, r.unanchored, head, rc == 0 ? "true" : "false");
		if (r.reset_at != UINT64_MAX)
			printf("%" PRIu64 ", \"error\": ", r.reset_at);
		else
			printf("null, \"error\": ");
		if (rc < 0)
			td_json_str(js, sizeof(js), err);
		printf("%s}\n", rc < 0 ? js : "null");
	}
	if (rc < 0) {
		vdkey_say("key-event log of image %s FAILED verification: %s", uuid, err);
		return rc;
	}
	if (!json) {
		printf("key-event log of image %s verifies: %" PRIu64 " entries, %" PRIu64
		       " anchored in the authenticated header",
		       uuid, r.entries, r.anchored);
		if (r.unanchored)
			printf("; %" PRIu64
			       " unanchored entr%s after the anchor (not protected until "
			       "the next event with the key)",
			       r.unanchored, r.unanchored == 1 ? "y" : "ies");
		printf("\n");
	}
	return 0;
}

int vdkey_log(const char *spec, const struct vdkey_opts *o)
{
	struct td_keylog_anchor a;
	struct td_volume v;
	char err[1024];
	int rc;

	if (o->reset)
		return log_reset(spec, o);
	rc = vdkey_open(&v, spec, TD_VOL_READ, true);
	/* the anchor counts only in an authenticated header */
	if (rc == 0 && o->verify)
		rc = vdkey_get_key(&v, o->key_file);
	if (rc == 0 && (rc = td_volume_log_anchor(&v, &a, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0)
		rc = o->verify ? log_verify(&v, &a, o->json) : log_print(&v, &a, o->json);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
