/* A key-management session on one image (keymgr/volume.h): the lower chain,
 * the crypt header read from it and written back, and the volume key that
 * authenticates it (from a keyslot or the keyring). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/crypt.h"
#include "crypt/hdrio.h"
#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/keyslot.h"
#include "keymgr/secret_input.h"
#include "keymgr/statedir.h"
#include "keymgr/volume.h"
#include "tapdisk/block/spec.h"

void td_volume_warn(const struct td_volume *v, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (!v->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->warn(v->warn_opaque, msg);
}

void td_volume_init(struct td_volume *v, td_volume_warn_fn warn, void *opaque)
{
	memset(v, 0, sizeof(*v));
	v->which = -1;
	v->slot = -1;
	v->warn = warn;
	v->warn_opaque = opaque;
}

/* The lower spec of spec, canonical (tapdisk/block/spec.h): without a top
 * layer that takes the volume key (the crypt layer, td_driver.needs_key).
 * A spec that does not parse is kept as it is: opening it says why. */
static void lower_spec(const char *spec, char *out, size_t len)
{
	struct td_spec s;
	char err[512];

	snprintf(out, len, "%s", spec);
	if (td_spec_parse(spec, &s, err, sizeof(err)) < 0)
		return;
	if (s.nlayers > 1 && s.layers[0].drv->needs_key) {
		free(s.layers[0].opts);
		memmove(&s.layers[0], &s.layers[1], (size_t)(s.nlayers - 1) * sizeof(s.layers[0]));
		s.nlayers--;
	}
	if (td_spec_format(&s, out, len) < 0)
		snprintf(out, len, "%s", spec);
	td_spec_free(&s);
}

/* TD_VOL_DECRYPT: the crypt layer's key source, the keyring as tapdisk
 * reads it (a --once key is consumed); the session keeps a copy, with which
 * the scrub's key event is anchored after the chain is closed. */
static int fetch_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		     const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	struct td_volume *v = opaque;
	int rc = td_keyring_fetch(uuid, id, where, out, err, errlen);

	if (rc == 0) {
		td_volkey_free(&v->fetched);
		v->fetched = td_volkey_from_bytes(td_volkey_bytes(*out), TD_VOLKEY_LEN);
	}
	return rc;
}

static int fetch_next_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	(void)opaque;
	(void)where;
	return td_keyring_fetch_next(uuid, id, out, err, errlen);
}

/* One attempt at opening the chain of spec (v->spec, or the crypt layer
 * over it) for writing or not. */
static int chain_open(struct td_volume *v, bool write, bool decrypt, char *err, size_t errlen)
{
	char spec[TD_SPEC_MAX_LEN + 64];

	v->ctx.readonly = !write;
	v->ctx.nolock = !write;
	v->ctx.get_key = decrypt ? fetch_key : NULL;
	v->ctx.key_opaque = decrypt ? v : NULL;
	/* a volume-key rotation under way: read and write with both keys */
	v->ctx.get_next_key = decrypt ? fetch_next_key : NULL;
	if (decrypt)
		snprintf(spec, sizeof(spec), "%s:%s", td_drv_crypt.name, v->spec);
	else
		snprintf(spec, sizeof(spec), "%s", v->spec);
	return td_chain_open(&v->ctx, spec, &v->chain, err, errlen);
}

int td_volume_open_lower(struct td_volume *v, const char *spec, unsigned flags, char *err,
			 size_t errlen)
{
	bool write = flags & (TD_VOL_WRITE | TD_VOL_TRY_WRITE);
	int rc;

	lower_spec(spec, v->spec, sizeof(v->spec));
	v->h = calloc(1, sizeof(*v->h));
	if (!v->h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->ctx.loop = td_loop_new();
	v->ctx.io = v->ctx.loop ? td_io_new(v->ctx.loop, 64) : NULL;
	v->ctx.workers = v->ctx.loop ? td_workers_new(v->ctx.loop, 0) : NULL;
	v->ctx.trust = &td_statedir_trust;
	if (!v->ctx.io || !v->ctx.workers) {
		snprintf(err, errlen, "cannot set up asynchronous I/O");
		return -ENOMEM;
	}
	rc = chain_open(v, write, flags & TD_VOL_DECRYPT, err, errlen);
	if ((flags & TD_VOL_TRY_WRITE) &&
	    (rc == -EBUSY || rc == -EROFS || rc == -EACCES || rc == -EPERM)) {
		snprintf(v->ro_why, sizeof(v->ro_why), "%s",
			 rc == -EBUSY ? "the image is locked by a running tapdisk"
				      : "the image is not writable");
		rc = chain_open(v, false, flags & TD_VOL_DECRYPT, err, errlen);
		write = false;
	}
	if (rc == 0 && td_layer_ephemeral(v->chain->top)) {
		/* what vdkey writes there is gone when it exits */
		snprintf(err, errlen, "%s: refused: %s", v->spec,
			 td_layer_ephemeral(v->chain->top));
		td_chain_close(v->chain);
		v->chain = NULL;
		return -EINVAL;
	}
	v->writable = rc == 0 && write;
	return rc;
}

int td_volume_load_header(struct td_volume *v, char *err, size_t errlen)
{
	char e[1024], note[512];
	int rc;

	rc = td_hdr_load(v->chain->top, v->h, &v->which, &v->other, note, sizeof(note), e,
			 sizeof(e));
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", v->spec, e);
		return rc;
	}
	if (v->other != TD_HDR_OTHER_OK)
		td_volume_warn(v,
			       "warning: the %s header copy is %s (%s). Run 'vdkey repair %s' to "
			       "rewrite it.",
			       v->which ? "primary" : "secondary",
			       v->other == TD_HDR_OTHER_CORRUPT ? "corrupt" : "stale", note,
			       v->spec);
	return 0;
}

int td_volume_open(struct td_volume *v, const char *spec, unsigned flags, char *err, size_t errlen)
{
	int rc = td_volume_open_lower(v, spec, flags, err, errlen);

	return rc < 0 ? rc : td_volume_load_header(v, err, errlen);
}

void td_volume_close(struct td_volume *v)
{
	td_volkey_free(&v->vk);
	td_volkey_free(&v->fetched);
	if (v->chain)
		td_chain_close_sync(v->chain);
	v->chain = NULL;
	td_workers_free(v->ctx.workers);
	td_io_free(v->ctx.io);
	td_loop_free(v->ctx.loop);
	memset(&v->ctx, 0, sizeof(v->ctx));
	if (v->h) {
		td_wipe(v->h, sizeof(*v->h));
		free(v->h);
	}
	v->h = NULL;
}

int td_volume_unlock(struct td_volume *v, const char *key_file, const char *op, char *err,
		     size_t errlen)
{
	struct td_secret s = {0};
	int rc;

	rc = td_secret_read(key_file, "Passphrase: ", false, &s, err, errlen);
	if (rc < 0)
		goto out;
	rc = td_volume_unlock_pass(v, s.buf, s.len, NULL, err, errlen);
out:
	td_secret_free(&s);
	if (rc < 0 && op)
		td_volume_record(v, op, TD_KEYLOG_SLOT_NONE, false, false);
	return rc;
}

int td_volume_unlock_pass(struct td_volume *v, const void *pass, size_t passlen, const char *op,
			  char *err, size_t errlen)
{
	int rc;

	rc = td_keyslot_unlock(v->h, -1, pass, passlen, &v->vk, &v->slot);
	if (rc == -EPERM)
		snprintf(err, errlen, "wrong passphrase: no keyslot opens with it");
	else if (rc == -EBADMSG)
		snprintf(err, errlen,
			 "header authentication failed: the passphrase is right but the header "
			 "was changed without the volume key; refusing it");
	else if (rc == -E2BIG)
		snprintf(err, errlen,
			 "no keyslot within this host's KDF budget opens with this passphrase");
	else if (rc < 0)
		snprintf(err, errlen, "cannot unlock: %s", strerror(-rc));
	if (rc < 0 && op)
		td_volume_record(v, op, TD_KEYLOG_SLOT_NONE, false, false);
	return rc;
}

int td_volume_peek_key(const struct td_volume *v, struct td_volkey **out)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	char err[512];

	*out = NULL;
	if (td_layer_identity(v->chain->top, id, NULL, 0) < 0)
		return -ENOKEY;
	return td_keyring_peek(v->h->uuid, id, out, err, sizeof(err));
}

int td_volume_adopt_key(struct td_volume *v, struct td_volkey **vk)
{
	int rc = -EBADMSG;

	if (*vk && td_hdr_check_volkey(v->h, *vk) == 0 && td_hdr_verify_mac(v->h, *vk) == 0) {
		td_volkey_free(&v->vk);
		v->vk = *vk;
		*vk = NULL;
		rc = 0;
	}
	td_volkey_free(vk);
	return rc;
}

int td_volume_key_from_keyring(struct td_volume *v)
{
	struct td_volkey *vk = NULL;

	if (td_volume_peek_key(v, &vk) < 0)
		return -ENOKEY;
	return td_volume_adopt_key(v, &vk) == 0 ? 0 : -ENOKEY;
}

int td_volume_identity(const struct td_volume *v, uint8_t id[TD_IMAGE_ID_LEN], char *err,
		       size_t errlen)
{
	char where[512];
	int rc = td_layer_identity(v->chain->top, id, where, sizeof(where));

	if (rc < 0)
		snprintf(err, errlen, "%s: cannot tell which image this is: %s", v->spec,
			 strerror(-rc));
	return rc;
}

int td_volume_store(struct td_volume *v, char *err, size_t errlen)
{
	int rc;

	v->h->seqno++;
	rc = td_hdr_seal(v->h, v->vk);
	if (rc < 0) {
		snprintf(err, errlen, "cannot seal the header");
		return rc;
	}
	return td_hdr_store(v->chain->top, v->h, v->which, err, errlen);
}
