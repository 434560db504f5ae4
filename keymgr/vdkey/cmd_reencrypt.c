/* vdkey reencrypt: start a volume-key rotation, show it, follow it to its
 * end (keymgr/vops.h, vreencrypt.c; docs/FORMAT.md, "Volume-key
 * rotation"). The data moves in a tapdisk that has the image open. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"

/* "0, 1, 3" for the bits of mask, "none" for 0. */
static void slot_list(unsigned mask, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = 0;
	for (int i = 0; i < TD_HDR_KEYSLOTS && o < len; i++)
		if (mask & (1u << i))
			o += (size_t)snprintf(buf + o, len - o, "%s%d", o ? ", " : "", i);
	if (!mask)
		snprintf(buf, len, "none");
}

static int start(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	struct td_reenc_keep k;
	struct td_reenc_slots res;
	char err[1024], uuid[TD_HDR_UUID_STR_LEN], kept[80], dropped[80];
	int rc, stdin_users = o->key_file && !strcmp(o->key_file, "-");

	memset(&k, 0, sizeof(k));
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		k.file[i] = o->keep_file[i];
		k.keep[i] = o->keep_slot[i];
		k.drop[i] = o->drop_slot[i];
		stdin_users += o->keep_file[i] && !strcmp(o->keep_file[i], "-");
	}
	if (stdin_users > 1) {
		vdkey_say("reencrypt: standard input ('-') can give one passphrase only");
		return 2;
	}
	k.keep_only = o->keep_only;
	k.prompt = true;
	k.tok.tpm2_device = o->tpm2_device;
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0 &&
	    (rc = td_volume_reencrypt_start(&v, o->key_file, &k, &res, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		slot_list(res.rewrapped, kept, sizeof(kept));
		slot_list(res.dropped, dropped, sizeof(dropped));
		printf("started the volume-key rotation of image %s: the new key is in the "
		       "keyring and re-wrapped keyslots %s; dropped at the end: keyslot%s %s. A "
		       "tapdisk that opens the image moves the data while it serves; 'vdkey "
		       "reencrypt SPEC --wait' follows it\n",
		       uuid, kept, res.dropped & (res.dropped - 1) ? "s" : "", dropped);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

/* 0 rotating (*b, *n, staged window *w), 1 finished (the header is the keyring's new
 * key's), or -errno. */
static int poll_state(struct td_volume *v, uint64_t *b, uint64_t *n, uint64_t *w, char *err,
		      size_t errlen)
{
	struct td_reenc_rec r;
	int rc = td_volume_load_header(v, err, errlen);

	if (rc < 0)
		return rc;
	*n = v->h->data_size / TD_BLOCK_SIZE;
	rc = td_hdr_reenc_get(v->h, &r, err, errlen);
	if (rc < 0)
		return rc;
	*b = rc ? r.boundary : *n;
	*w = r.window;
	return rc ? 0 : 1;
}

static int status(const char *spec)
{
	struct td_volume v;
	char err[1024];
	uint64_t b = 0, n = 0, w = 0;
	int rc = vdkey_open(&v, spec, TD_VOL_READ, true);

	if (rc == 0 && (rc = poll_state(&v, &b, &n, &w, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	else if (rc == 0)
		printf("rotating: block %llu of %llu (%.1f%%) under the new key; staged window: "
		       "%llu blocks\n",
		       (unsigned long long)b, (unsigned long long)n, n ? 100.0 * b / n : 0.0,
		       (unsigned long long)w);
	else if (rc == 1)
		printf("no volume-key rotation under way\n");
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

/* Polls the header until the rotation ends, recording its progress at
 * each quarter and its end in the key-event log (unanchored while a
 * tapdisk holds the image), then makes the new key the keyring's key. */
static int wait_end(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	char err[1024];
	uint64_t b = 0, n = 0, w = 0;
	int rc = vdkey_open(&v, spec, TD_VOL_READ, true), quarter = -1;
	time_t t0 = time(NULL);
	struct timespec ts = {0, 100 * 1000 * 1000};

	/* a header read while the tapdisk rewrites it finds one copy stale:
	 * expected here, not worth a warning each time */
	v.warn = NULL;

	while (rc == 0) {
		rc = poll_state(&v, &b, &n, &w, err, sizeof(err));
		if (rc < 0) {
			vdkey_say("%s", err);
			break;
		}
		if (rc == 1)
			break;
		if (n && (int)(4 * b / n) > quarter) {
			if (quarter >= 0)
				td_volume_record(&v, TD_KEYLOG_OP_REENC_PROGRESS,
						 TD_KEYLOG_SLOT_NONE, true, false);
			quarter = (int)(4 * b / n);
		}
		if (o->timeout_s && time(NULL) - t0 >= (time_t)o->timeout_s) {
			vdkey_say("the rotation is at block %llu of %llu after %u s: is a tapdisk "
				  "serving the image? (it continues when one opens it)",
				  (unsigned long long)b, (unsigned long long)n, o->timeout_s);
			rc = -ETIMEDOUT;
			break;
		}
		nanosleep(&ts, NULL);
	}
	if (rc == 1) {
		struct td_volkey *nk = NULL;
		uint8_t id[TD_IMAGE_ID_LEN];

		/* the end is what the header says under the new key */
		rc = td_volume_identity(&v, id, err, sizeof(err));
		if (rc == 0 && td_keyring_fetch_next(v.h->uuid, id, &nk, err, sizeof(err)) == 0 &&
		    td_volume_adopt_key(&v, &nk) == 0) {
			td_volume_record(&v, TD_KEYLOG_OP_REENC_END, TD_KEYLOG_SLOT_NONE, true,
					 false);
			rc = td_volume_reencrypt_adopt(&v, err, sizeof(err));
			if (rc < 0)
				vdkey_say("%s", err);
			else
				printf("the volume-key rotation is complete: every block is under "
				       "the new key, the old key opens nothing\n");
		} else if (rc == 0) {
			printf("no volume-key rotation under way\n");
		} else {
			vdkey_say("%s", err);
		}
		td_volkey_free(&nk);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_reencrypt(const char *spec, const struct vdkey_opts *o)
{
	if (o->wait && o->status) {
		vdkey_say("reencrypt: --wait and --status exclude each other");
		return 2;
	}
	if (o->status)
		return status(spec);
	if (o->wait)
		return wait_end(spec, o);
	return start(spec, o);
}
