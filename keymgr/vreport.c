/* The data of vdkey list and audit (keymgr/vreport.h, docs/AUDIT.md): the
 * header's state, whether a key is loaded for the file, the integrity
 * layout, and for the audit the key-event log's state and freshness. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/volkey.h"
#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/keyslot.h"
#include "keymgr/vreport.h"

void td_report_header(struct td_volume *v, struct td_report *r)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	char err[768];

	memset(r, 0, sizeof(*r));
	r->copy_state[v->which] = "ok";
	r->copy_state[!v->which] = v->other == TD_HDR_OTHER_OK	      ? "ok"
				   : v->other == TD_HDR_OTHER_CORRUPT ? "corrupt"
								      : "stale";
	r->keyslots_active = td_keyslot_count_active(v->h);
	if (td_volume_identity(v, id, err, sizeof(err)) == 0) {
		r->key_loaded = td_keyring_present(v->h->uuid, id) > 0;
		td_keyring_desc(v->h->uuid, id, r->keyring_desc, sizeof(r->keyring_desc));
	} else {
		td_volume_warn(v, "%s", err);
	}
	if (!strcmp(v->h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256))
		r->have_layout = ti_params_decode(v->h->integrity_params, v->chain->top->size,
						  &r->layout, err, sizeof(err)) == 0;
}

/* A copy of the key loaded for v's image (never consumed), else of key. */
static struct td_volkey *some_key(const struct td_volume *v, const struct td_volkey *key)
{
	struct td_volkey *vk = NULL;

	if (td_volume_peek_key(v, &vk) == 0)
		return vk;
	return key ? td_volkey_from_bytes(td_volkey_bytes(key), TD_VOLKEY_LEN) : NULL;
}

static void keylog_status(const struct td_volume *v, const struct td_volkey *key,
			  struct td_keylog_status *ks)
{
	struct td_volkey *vk = some_key(v, key);
	struct td_keylog_anchor a;
	char err[640];
	int rc;

	memset(ks, 0, sizeof(*ks));
	ks->authenticated =
	    vk && td_hdr_check_volkey(v->h, vk) == 0 && td_hdr_verify_mac(v->h, vk) == 0;
	td_volkey_free(&vk);
	rc = td_hdr_keylog_anchor_get(v->h, &a, err, sizeof(err));
	if (rc == 0)
		rc = td_keylog_verify(v->h->uuid, &a, &ks->r, err, sizeof(err));
	if (rc < 0)
		snprintf(ks->error, sizeof(ks->error), "%s", err);
	else if (!ks->authenticated)
		snprintf(ks->error, sizeof(ks->error),
			 "the chain is intact but the header's anchor is not authenticated: no "
			 "key loaded (run 'vdkey load SPEC', or 'vdkey log SPEC --verify')");
	ks->verified = rc == 0 && ks->authenticated;
}

/* The last audit --scrub in the key-event log. */
static void last_scrub(const uint8_t uuid[16], struct td_fresh_report *fr)
{
	struct td_keylog_entry e;
	char *buf = NULL, err[256];
	size_t len = 0, off = 0;
	int r;

	if (td_keylog_read(uuid, &buf, &len, err, sizeof(err)) < 0)
		return;
	while ((r = td_vlog_next(buf, len, &off, &e, err, sizeof(err))) != 0)
		if (r > 0 && !strcmp(e.op, TD_KEYLOG_OP_SCRUB)) {
			fr->scrub_seen = true;
			fr->scrub_time = e.time;
			snprintf(fr->scrub_outcome, sizeof(fr->scrub_outcome), "%s", e.outcome);
		}
	free(buf);
}

/* Authenticated with the key loaded for the file only (never consumed). */
static void freshness(const struct td_volume *v, struct td_fresh_report *fr)
{
	struct td_volkey *vk = NULL;

	memset(fr, 0, sizeof(*fr));
	fr->have = true;
	fr->rc = -ENOKEY;
	last_scrub(v->h->uuid, fr);
	if (td_volume_peek_key(v, &vk) < 0 || td_hdr_check_volkey(v->h, vk) < 0)
		snprintf(fr->err, sizeof(fr->err),
			 "the generation and tree root are authenticated with the volume key: load "
			 "it first (vdkey load SPEC)");
	else
		fr->rc = td_volume_fresh_status(v, vk, &fr->st, fr->err, sizeof(fr->err));
	td_volkey_free(&vk);
}

/* The rotation under way (header) and the last one logged. */
static void rotation(const struct td_volume *v, struct td_rotation_report *ro)
{
	struct td_keylog_entry e;
	struct td_reenc_rec rec;
	char *buf = NULL, err[256];
	size_t len = 0, off = 0;
	int r;

	memset(ro, 0, sizeof(*ro));
	ro->blocks = v->h->data_size / TD_BLOCK_SIZE;
	if (td_hdr_reenc_get(v->h, &rec, err, sizeof(err)) == 1) {
		ro->in_progress = true;
		ro->boundary = rec.boundary;
		ro->window = rec.window;
		for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
			const struct td_keyslot *ks = &v->h->slots[i];

			if (ks->state != TD_KEYSLOT_ACTIVE)
				continue;
			if (ks->pending || (uint32_t)i == rec.new_slot)
				ro->rewrapped |= 1u << i;
			else
				ro->dropped |= 1u << i;
		}
	}
	if (td_keylog_read(v->h->uuid, &buf, &len, err, sizeof(err)) < 0)
		return;
	while ((r = td_vlog_next(buf, len, &off, &e, err, sizeof(err))) != 0) {
		if (r <= 0 || strcmp(e.outcome, "ok"))
			continue;
		if (!strcmp(e.op, TD_KEYLOG_OP_REENC_START)) {
			ro->start_seen = true;
			ro->start_time = e.time;
			if (!ro->in_progress)
				ro->rewrapped = ro->dropped = 0;
		} else if (!ro->in_progress && e.slot >= 0 && e.slot < TD_HDR_KEYSLOTS &&
			   !strcmp(e.op, TD_KEYLOG_OP_REENC_REWRAP)) {
			ro->rewrapped |= 1u << e.slot;
		} else if (!ro->in_progress && e.slot >= 0 && e.slot < TD_HDR_KEYSLOTS &&
			   !strcmp(e.op, TD_KEYLOG_OP_REENC_DROP)) {
			ro->dropped |= 1u << e.slot;
		} else if (!strcmp(e.op, TD_KEYLOG_OP_REENC_END)) {
			ro->end_seen = true;
			ro->end_time = e.time;
		}
	}
	free(buf);
}

void td_report_audit(struct td_volume *v, const struct td_volkey *key, struct td_report *r)
{
	rotation(v, &r->rotation);
	keylog_status(v, key, &r->keylog);
	if (r->have_layout)
		freshness(v, &r->fresh);
}

bool td_report_alarm(const struct td_report *r)
{
	return r->fresh.have && r->fresh.rc == 0 &&
	       (r->fresh.st.root_ok == 0 || r->fresh.st.rollback);
}
