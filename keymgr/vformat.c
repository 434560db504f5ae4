/* Formatting an image (vdkey format, keymgr/vops.h): a new crypt header
 * with a fresh random volume key and keyslot 0, the integrity metadata the
 * header records (docs/FORMAT.md), and the key-event log's first entry,
 * anchored in the header. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/hdrio.h"
#include "integrity/format.h"
#include "integrity/integrity.h"
#include "keymgr/keylog.h"
#include "keymgr/keyslot.h"
#include "keymgr/secret_input.h"
#include "keymgr/vops.h"
#include "tapdisk/block/vbd.h"

/* The integrity layer refuses a write that does not fit an empty epoch with
 * room to spare: the largest request must fit half the smallest journal
 * vdkey writes unless asked (the format allows down to 16 blocks, which the
 * crash simulator uses with small requests). */
_Static_assert(TI_JOURNAL_BLOCKS_FOR(VBD_MAX_IO / TI_BLOCK) + 1 < TD_FORMAT_JOURNAL_MIN / 2,
	       "the largest request must fit half the smallest journal");

/* The MAC journal (4 KiB blocks) when none is asked for. A bigger journal
 * means fewer checkpoints: each one drains the writes in flight and writes
 * the dirty tag pages, which costs round trips on an image reached over the
 * network (RBD), so there it is 1/64 of the image within 1..8 times the
 * default. Recovery after a crash reads at most 64 data blocks per journal
 * block. */
static uint32_t journal_default(struct td_layer *lower)
{
	uint64_t b = lower->size / 64 / TI_BLOCK;

	if (!td_layer_image(lower)->drv->needs_network)
		return TI_JOURNAL_BLOCKS_DEFAULT;
	if (b < TI_JOURNAL_BLOCKS_DEFAULT)
		b = TI_JOURNAL_BLOCKS_DEFAULT;
	if (b > 8 * TI_JOURNAL_BLOCKS_DEFAULT)
		b = 8 * TI_JOURNAL_BLOCKS_DEFAULT;
	return (uint32_t)b;
}

/* The header of the new image in v->h, and the layout of its integrity
 * metadata in *prm (when it has any). */
static int new_header(struct td_volume *v, const struct td_format_args *a, const char *integ,
		      struct ti_params *prm, char *err, size_t errlen)
{
	struct td_layer *lower = v->chain->top;
	char e[512], uuid[TD_HDR_UUID_STR_LEN];
	int which, other, rc;

	rc = td_hdr_load(lower, v->h, &which, &other, e, sizeof(e), e, sizeof(e));
	if (rc == 0 && !a->force) {
		td_hdr_uuid_str(v->h->uuid, uuid);
		snprintf(err, errlen,
			 "%s already has a crypt header (image %s); formatting again destroys "
			 "access to its data. Add --force to do it anyway.",
			 v->spec, uuid);
		return -EEXIST;
	}
	rc = td_hdr_init_new(v->h, lower->size, integ);
	if (rc < 0) {
		snprintf(err, errlen, "%s is too small (%llu bytes) for a crypt header and data",
			 v->spec, (unsigned long long)lower->size);
		return rc;
	}
	if (strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256) != 0)
		return 0;
	/* data first, then its metadata, all inside the lower image */
	rc =
	    ti_layout_version(lower->size, v->h->data_offset,
			      a->journal_blocks ? a->journal_blocks : journal_default(lower),
			      a->integrity_version ? a->integrity_version : TI_PARAMS_VERSION, prm);
	if (rc < 0) {
		snprintf(err, errlen, "%s is too small for data and integrity metadata", v->spec);
		return rc;
	}
	v->h->data_size = prm->data_blocks * TD_BLOCK_SIZE;
	ti_params_encode(prm, v->h->integrity_params);
	return 0;
}

/* Fresh integrity metadata under the new key's MAC subkey. */
static int integrity_format(struct td_volume *v, const struct ti_params *prm, char *err,
			    size_t errlen)
{
	uint8_t *mk = td_secure_alloc(32);
	int rc = mk ? td_volkey_derive(v->vk, TD_SUBKEY_MAC, mk, 32) : -ENOMEM;

	if (rc == 0)
		rc = ti_format(v->chain->top, prm, v->h->uuid, mk, err, errlen);
	else
		snprintf(err, errlen, "out of secure memory");
	if (mk)
		td_secure_free(mk);
	return rc;
}

static int check_args(const struct td_format_args *a, const char *integ, char *err, size_t errlen)
{
	if (strcmp(integ, TD_HDR_INTEGRITY_NONE) && strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256)) {
		snprintf(err, errlen, "unknown integrity '%s' (none or hmac-sha256)", integ);
		return -EINVAL;
	}
	if (a->integrity_version > TI_PARAMS_VERSION) {
		snprintf(err, errlen, "integrity metadata version %u: 1 or 2",
			 a->integrity_version);
		return -EINVAL;
	}
	if (a->journal_blocks && (a->journal_blocks < TI_JOURNAL_BLOCKS_MIN ||
				  a->journal_blocks > TI_JOURNAL_BLOCKS_MAX)) {
		snprintf(err, errlen, "a MAC journal of %u blocks: the format allows %u to %u",
			 a->journal_blocks, TI_JOURNAL_BLOCKS_MIN, TI_JOURNAL_BLOCKS_MAX);
		return -EINVAL;
	}
	return 0;
}

int td_volume_format(struct td_volume *v, const struct td_format_args *a, char *err, size_t errlen)
{
	const char *integ = a->integrity ? a->integrity : TD_HDR_INTEGRITY_HMAC_SHA256;
	struct td_keylog_anchor none = {0}, next;
	struct td_secret s = {0};
	struct ti_params prm;
	char e[1024];
	int rc;

	rc = check_args(a, integ, err, errlen);
	if (rc == 0)
		rc = new_header(v, a, integ, &prm, err, errlen);
	if (rc == 0)
		rc = td_secret_read(a->key_file, "Enter passphrase for the new image: ", true, &s,
				    err, errlen);
	if (rc < 0)
		goto out;
	td_volkey_free(&v->vk);
	v->vk = td_volkey_new_random();
	if (!v->vk) {
		snprintf(err, errlen, "out of secure memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = td_keyslot_add(v->h, 0, v->vk, s.buf, s.len, &a->kdf);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create keyslot 0: %s", strerror(-rc));
		goto out;
	}
	v->slot = 0;
	if (!strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256) &&
	    (rc = integrity_format(v, &prm, err, errlen)) < 0)
		goto out;
	v->h->seqno = 0; /* td_volume_store makes it 1 */
	v->which = -1;	 /* no valid copy to keep */
	/* the new image's log starts here; the header anchors entry 0 */
	if (td_keylog_append(v->h->uuid, TD_KEYLOG_OP_FORMAT, 0, TD_KEYLOG_OK, &none, &next, e,
			     sizeof(e)) == 0)
		td_hdr_keylog_anchor_set(v->h, &next);
	else
		td_volume_warn(v, "warning: format event not recorded: %s", e);
	rc = td_volume_store(v, err, errlen);
	if (rc < 0 && td_keylog_append(v->h->uuid, TD_KEYLOG_OP_FORMAT, 0, TD_KEYLOG_FAIL, NULL,
				       NULL, e, sizeof(e)) < 0)
		td_volume_warn(v, "warning: %s", e);
out:
	td_secret_free(&s);
	return rc;
}
