/* vdkey list and audit [--scrub]: the report of keymgr/vreport.h as text
 * or JSON (docs/AUDIT.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "crypt/backend/volkey.h"
#include "keymgr/keyslot.h"
#include "keymgr/tpm2_token.h"
#include "keymgr/vanchor.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vreport.h"
#include "keymgr/vtoken.h"
#include "tapdisk/core/util.h"

static void kdf_json(const struct td_kdf_params *k, char *buf, size_t len)
{
	switch (k->id) {
	case TD_KDF_ARGON2ID:
		snprintf(buf, len,
			 "{\"type\": \"argon2id\", \"time\": %u, \"memory_kib\": %u, "
			 "\"parallelism\": %u}",
			 k->t_cost, k->m_cost_kib, k->parallelism);
		break;
	case TD_KDF_PBKDF2_SHA256:
		snprintf(buf, len, "{\"type\": \"pbkdf2-sha256\", \"iterations\": %u}",
			 k->iterations);
		break;
	case TD_KDF_SCRYPT:
		snprintf(buf, len, "{\"type\": \"scrypt\", \"n\": %llu, \"r\": %u, \"p\": %u}",
			 (unsigned long long)k->n, k->r, k->p);
		break;
	case TD_KDF_TPM2:
	case TD_KDF_TANG:
		snprintf(buf, len, "{\"type\": \"%s\"}", td_kdf_name(k->id));
		break;
	default:
		snprintf(buf, len, "{\"type\": \"unknown\"}");
	}
}

/* What a slot's token says, as JSON (", \"tpm2\": {...}") or text; "" for
 * a passphrase slot. */
static void token_desc(const struct td_keyslot *ks, bool json, char *buf, size_t len)
{
	struct td_tpm2_token *t;
	char pcrs[96], why[200];

	buf[0] = 0;
	if (ks->kdf.id != TD_KDF_TPM2)
		return;
	t = calloc(1, sizeof(*t));
	if (!t)
		return;
	if (td_tpm2_token_decode(ks->token, ks->token_len, t, why, sizeof(why)) < 0) {
		if (json)
			snprintf(buf, len, ", \"tpm2\": {\"error\": \"malformed token\"}");
		else
			snprintf(buf, len, " (malformed token: %s)", why);
	} else {
		td_tpm2_pcrs_str(t->pcrs, pcrs, sizeof(pcrs));
		if (json)
			snprintf(buf, len, ", \"tpm2\": {\"pcr_bank\": \"sha256\", \"pcrs\": [%s]}",
				 pcrs);
		else
			snprintf(buf, len, " (PCR %s of the sha256 bank)", pcrs);
	}
	free(t);
}

/* "rollback_anchor" (and "tpm2_nv"): where the trusted generation lives. */
static void print_anchor_json(const struct td_crypt_hdr *h, const struct td_report *r)
{
	struct td_nv_anchor a;
	char err[160];

	if (td_nv_anchor_get(h, &a, err, sizeof(err)) < 0) {
		printf(",\n  \"rollback_anchor\": \"tpm2-nv\",\n  \"tpm2_nv\": {\"error\": "
		       "\"malformed\"}");
	} else if (a.present) {
		printf(",\n  \"rollback_anchor\": \"tpm2-nv\",\n  \"tpm2_nv\": {\"index\": "
		       "\"0x%08x\", \"counter\": %llu, \"generation\": %llu}",
		       a.index, (unsigned long long)a.counter, (unsigned long long)a.generation);
	} else {
		printf(",\n  \"rollback_anchor\": \"%s\"",
		       r->have_layout && r->layout.version >= 2 ? "state-directory" : "none");
	}
}

/* On a terminal: a progress line on standard error. */
static void scrub_progress(uint64_t done, uint64_t total, void *opaque)
{
	unsigned *last = opaque;
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;

	if (pct == *last)
		return;
	*last = pct;
	fprintf(stderr, "\rscrub: %3u%% (%llu of %llu blocks)", pct, (unsigned long long)done,
		(unsigned long long)total);
	if (done == total)
		fputc('\n', stderr);
}

static void print_layout_json(const struct ti_params *prm)
{
	printf(",\n  \"integrity_layout\": {\"data_start\": %llu, \"data_blocks\": %llu, "
	       "\"block_size\": %u, \"super_off\": %llu, \"journal_off\": %llu, "
	       "\"journal_blocks\": %u, \"tags_off\": %llu, \"tags_pages\": %llu, "
	       "\"tag_entry_size\": %u, \"tag_offset_in_entry\": 8, \"tag_size\": %u, "
	       "\"tree_off\": %llu, \"tree_pages\": %llu}",
	       (unsigned long long)prm->data_start, (unsigned long long)prm->data_blocks, TI_BLOCK,
	       (unsigned long long)prm->super_off, (unsigned long long)prm->journal_off,
	       prm->journal_blocks, (unsigned long long)prm->tags_off,
	       (unsigned long long)prm->tags_pages, TI_ENTRY_LEN, TI_TAG_LEN,
	       (unsigned long long)prm->tree_off, (unsigned long long)prm->tree_pages);
}

static void print_scrub_json(const struct ti_scrub_result *r)
{
	size_t i;

	printf(",\n  \"scrub\": {\"blocks_total\": %llu, \"verified\": %llu, "
	       "\"unwritten\": %llu, \"failed\": %llu, \"failed_blocks\": [",
	       (unsigned long long)r->blocks_total, (unsigned long long)r->verified,
	       (unsigned long long)r->unwritten, (unsigned long long)r->failed);
	for (i = 0; i < r->nlisted; i++)
		printf("%s%llu", i ? ", " : "", (unsigned long long)r->failed_blocks[i]);
	printf("], \"failed_blocks_truncated\": %s}", r->truncated ? "true" : "false");
}

static void print_scrub_text(const struct ti_scrub_result *r)
{
	size_t i;

	printf("Scrub:        %llu blocks: %llu verified, %llu unwritten, %llu FAILED\n",
	       (unsigned long long)r->blocks_total, (unsigned long long)r->verified,
	       (unsigned long long)r->unwritten, (unsigned long long)r->failed);
	if (!r->failed)
		return;
	printf("Failed:      ");
	for (i = 0; i < r->nlisted; i++)
		printf(" %llu", (unsigned long long)r->failed_blocks[i]);
	printf("%s\n", r->truncated ? " ... (list truncated)" : "");
}

static void print_fresh_json(const struct td_fresh_report *fr)
{
	char js[1100];

	printf(",\n  \"freshness\": {");
	if (fr->rc == 0) {
		printf("\"integrity_version\": %u, \"tree\": %s, \"tree_root_verified\": %s, "
		       "\"generation\": %llu, \"trusted_generation\": %llu, \"rollback\": %s, ",
		       fr->st.version, fr->st.version >= 2 ? "true" : "false",
		       fr->st.root_ok < 0 ? "null"
		       : fr->st.root_ok	  ? "true"
					  : "false",
		       (unsigned long long)fr->st.generation, (unsigned long long)fr->st.trusted,
		       fr->st.rollback ? "true" : "false");
	} else {
		td_json_str(js, sizeof(js), fr->err);
		printf("\"verified\": false, \"error\": %s, ", js);
	}
	if (fr->scrub_seen)
		printf("\"last_scrub\": {\"time\": %llu, \"outcome\": \"%s\"}}",
		       (unsigned long long)fr->scrub_time, fr->scrub_outcome);
	else
		printf("\"last_scrub\": null}");
}

static void print_fresh_text(const struct td_fresh_report *fr)
{
	if (fr->rc == 0)
		printf("Freshness:    %s, generation %llu (this host trusts %llu)%s%s\n",
		       fr->st.version >= 2 ? "hash tree"
					   : "none (integrity version 1: re-create the image for "
					     "replay protection)",
		       (unsigned long long)fr->st.generation, (unsigned long long)fr->st.trusted,
		       fr->st.root_ok == 1   ? ", tree root verified"
		       : fr->st.root_ok == 0 ? ", TREE ROOT DOES NOT VERIFY"
					     : "",
		       fr->st.rollback ? ", ROLLED BACK" : "");
	else
		printf("Freshness:    not verified (%s)\n", fr->err);
	if (fr->scrub_seen)
		printf("Last scrub:   %llu (unix time), %s\n", (unsigned long long)fr->scrub_time,
		       fr->scrub_outcome);
}

static void print_keylog_json(const struct td_keylog_status *ks)
{
	char head[2 * TD_KEYLOG_HASH_LEN + 1], js[1600];

	vdkey_hex(head, ks->r.head, TD_KEYLOG_HASH_LEN);
	printf(",\n  \"keylog\": {\"entries\": %" PRIu64 ", \"anchored\": %" PRIu64
	       ", \"unanchored\": %" PRIu64 ", \"head\": \"%s\", \"anchor_authenticated\": %s, "
	       "\"verified\": %s, \"reset_at\": ",
	       ks->r.entries, ks->r.anchored, ks->r.unanchored, head,
	       ks->authenticated ? "true" : "false", ks->verified ? "true" : "false");
	if (ks->r.reset_at != UINT64_MAX)
		printf("%" PRIu64, ks->r.reset_at);
	else
		printf("null");
	printf(", \"error\": ");
	if (ks->error[0]) {
		td_json_str(js, sizeof(js), ks->error);
		printf("%s}", js);
	} else {
		printf("null}");
	}
}

static void print_rotation_json(const struct td_rotation_report *ro)
{
	printf(",\n  \"rotation\": {\"in_progress\": %s", ro->in_progress ? "true" : "false");
	if (ro->in_progress)
		printf(", \"boundary\": %llu, \"blocks\": %llu, \"staged_window\": %llu",
		       (unsigned long long)ro->boundary, (unsigned long long)ro->blocks,
		       (unsigned long long)ro->window);
	if (ro->start_seen)
		printf(", \"last_start\": %llu", (unsigned long long)ro->start_time);
	else
		printf(", \"last_start\": null");
	if (ro->end_seen)
		printf(", \"last_end\": %llu", (unsigned long long)ro->end_time);
	else
		printf(", \"last_end\": null");
	for (int k = 0; k < 2; k++) {
		unsigned m = k ? ro->dropped : ro->rewrapped;
		bool first = true;

		printf(", \"%s\": [", k ? "dropped" : "rewrapped");
		for (int i = 0; i < TD_HDR_KEYSLOTS; i++)
			if (m & (1u << i)) {
				printf("%s%d", first ? "" : ", ", i);
				first = false;
			}
		printf("]");
	}
	printf("}");
}

static void print_json(const struct td_volume *v, const struct td_report *r, bool audit,
		       const struct ti_scrub_result *sres)
{
	const struct td_crypt_hdr *h = v->h;
	char uuid[TD_HDR_UUID_STR_LEN], kd[160], js[8192], tk[320], tj[1024], tt[512];
	int i, n = 0;

	td_hdr_uuid_str(h->uuid, uuid);
	td_json_str(js, sizeof(js), v->spec);
	printf("{\n  \"spec\": %s,\n  \"uuid\": \"%s\",\n  \"format_version\": %d,\n"
	       "  \"sequence\": %llu,\n  \"header_copies\": {\"primary\": \"%s\", "
	       "\"secondary\": \"%s\"},\n"
	       "  \"cipher\": \"%s\",\n  \"key_bits\": %u,\n  \"sector_size\": %u,\n"
	       "  \"tweak\": \"plain64\",\n  \"integrity\": \"%s\",\n  \"tag_size\": %u,\n"
	       "  \"data_offset\": %llu,\n  \"data_size\": %llu,\n  \"key_loaded\": %s,\n"
	       "  \"keyring_description\": \"%s\",\n"
	       "  \"keyslots_total\": %d,\n  \"keyslots_active\": %d,\n  \"keyslots\": [",
	       js, uuid, TD_HDR_VERSION, (unsigned long long)h->seqno, r->copy_state[0],
	       r->copy_state[1], h->cipher, h->key_bits, h->sector_size, h->integrity, h->tag_size,
	       (unsigned long long)h->data_offset, (unsigned long long)h->data_size,
	       r->key_loaded ? "true" : "false", r->keyring_desc, TD_HDR_KEYSLOTS,
	       r->keyslots_active);
	for (i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
			continue;
		kdf_json(&h->slots[i].kdf, kd, sizeof(kd));
		token_desc(&h->slots[i], true, tk, sizeof(tk));
		vdkey_slot_describe(&h->slots[i], tj, sizeof(tj), tt, sizeof(tt));
		printf("%s\n    {\"slot\": %d, \"kind\": \"%s\", \"kdf\": %s%s%s}", n++ ? "," : "",
		       i, td_keyslot_kind_name((int)h->slots[i].kdf.id), kd, tk, tj);
	}
	printf("\n  ]");
	if (audit)
		printf(",\n  \"at_rest_encryption\": true,\n  \"header_authenticated\": "
		       "\"verified when a tapdisk or vdkey opens it with the key\"");
	if (r->have_layout)
		print_layout_json(&r->layout);
	if (sres)
		print_scrub_json(sres);
	if (audit && r->fresh.have)
		print_fresh_json(&r->fresh);
	if (audit) /* where the trusted generation lives (docs/AUDIT.md) */
		print_anchor_json(h, r);
	if (audit)
		print_keylog_json(&r->keylog);
	if (audit)
		print_rotation_json(&r->rotation);
	printf("\n}\n");
}

static void print_text(const struct td_volume *v, const struct td_report *r, bool audit,
		       const struct ti_scrub_result *sres)
{
	const struct td_crypt_hdr *h = v->h;
	char uuid[TD_HDR_UUID_STR_LEN], kd[160], tk[320], tj[1024], tt[512];
	int i;

	td_hdr_uuid_str(h->uuid, uuid);
	printf("Image:        %s\n", v->spec);
	printf("UUID:         %s\n", uuid);
	printf("Header:       version %d, sequence %llu, primary %s, secondary %s\n",
	       TD_HDR_VERSION, (unsigned long long)h->seqno, r->copy_state[0], r->copy_state[1]);
	printf("Cipher:       %s, %u-bit key, %u-byte sectors, 64-bit block-number tweak\n",
	       h->cipher, h->key_bits, h->sector_size);
	printf("Integrity:    %s", h->integrity);
	if (h->tag_size && r->have_layout)
		printf(" (%u-byte tags, %u KiB MAC journal)", h->tag_size,
		       r->layout.journal_blocks * (TI_BLOCK / 1024));
	else if (h->tag_size)
		printf(" (%u-byte tags)", h->tag_size);
	printf("\nData:         %llu bytes at offset %llu\n", (unsigned long long)h->data_size,
	       (unsigned long long)h->data_offset);
	printf("Key loaded:   %s\n", r->key_loaded ? "yes (kernel keyring)" : "no");
	printf("Keyslots:     %d of %d active\n", r->keyslots_active, TD_HDR_KEYSLOTS);
	for (i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
			continue;
		td_kdf_desc(&h->slots[i].kdf, kd, sizeof(kd));
		token_desc(&h->slots[i], false, tk, sizeof(tk));
		vdkey_slot_describe(&h->slots[i], tj, sizeof(tj), tt, sizeof(tt));
		printf("  %2d: %s%s%s\n", i, kd, tk, tt);
	}
	if (sres)
		print_scrub_text(sres);
	if (audit && r->fresh.have)
		print_fresh_text(&r->fresh);
	if (audit) {
		printf("Key log:      %" PRIu64 " entries, %" PRIu64 " anchored: %s",
		       r->keylog.r.entries, r->keylog.r.anchored,
		       r->keylog.verified ? "verified" : "NOT verified");
		if (r->keylog.error[0])
			printf(" (%s)", r->keylog.error);
		printf("\n");
		if (r->rotation.in_progress)
			printf("Rotation:     under way, block %llu of %llu under the new key\n",
			       (unsigned long long)r->rotation.boundary,
			       (unsigned long long)r->rotation.blocks);
		else if (r->rotation.end_seen)
			printf("Rotation:     last volume-key rotation ended at %llu (unix time)\n",
			       (unsigned long long)r->rotation.end_time);
		else
			printf("Rotation:     none logged\n");
	}
}

/* list and audit: the header, both copies' state, every keyslot. */
int vdkey_list(const char *spec, const struct vdkey_opts *o, bool audit)
{
	struct ti_scrub_result sres = {0};
	struct td_volkey *key = NULL;
	struct td_report r;
	struct td_volume v;
	bool scrubbed = false;
	unsigned last = ~0u;
	char err[1024];
	int rc = vdkey_open(&v, spec, TD_VOL_READ, true);

	if (rc < 0)
		goto out;
	td_report_header(&v, &r);
	if (audit && o->scrub) {
		rc = td_volume_scrub(&v, isatty(STDERR_FILENO) ? scrub_progress : NULL, &last,
				     &sres, &key, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "%s audit --scrub: %s\n", VDKEY_PROG, err);
			goto out;
		}
		scrubbed = true;
	}
	if (audit)
		td_report_audit(&v, key, &r);
	if (o->json)
		print_json(&v, &r, audit, scrubbed ? &sres : NULL);
	else
		print_text(&v, &r, audit, scrubbed ? &sres : NULL);
	/* a block that fails verification fails the audit, and so does a
	 * tree root that does not verify or a rolled-back image */
	if ((scrubbed && sres.failed) || (audit && td_report_alarm(&r)))
		rc = -EBADMSG;
out:
	td_volkey_free(&key);
	ti_scrub_result_free(&sres);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
