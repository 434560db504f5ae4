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

static int start(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	int rc = vdkey_open(&v, spec, TD_VOL_WRITE, true), slot = -1;

	if (rc == 0 &&
	    (rc = td_volume_reencrypt_start(&v, o->key_file, &slot, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		printf("started the volume-key rotation of image %s: the new key is in keyslot "
		       "%d (same passphrase) and in the keyring; a tapdisk that opens the image "
		       "moves the data while it serves. At the end every other keyslot is "
		       "dropped (enroll them again). 'vdkey reencrypt SPEC --wait' follows it\n",
		       uuid, slot);
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
