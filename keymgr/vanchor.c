/* The TPM NV counter rollback anchor (keymgr/vanchor.h; docs/FORMAT.md,
 * "Rollback anchor in a TPM NV counter"). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "integrity/integrity.h"
#include "keymgr/keylog.h"
#include "keymgr/tpm2.h"
#include "keymgr/vanchor.h"
#include "keymgr/vreport.h"

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int td_nv_anchor_get(const struct td_crypt_hdr *h, struct td_nv_anchor *a, char *err, size_t errlen)
{
	const uint8_t *p = h->freshness + TD_NV_ANCHOR_OFF;
	static const uint8_t zero[TD_NV_ANCHOR_LEN];

	memset(a, 0, sizeof(*a));
	if (!memcmp(p, zero, sizeof(zero)))
		return 0;
	if (memcmp(p, TD_NV_ANCHOR_MAGIC, 8) || get32(p + 8) != TD_NV_ANCHOR_VERSION ||
	    memcmp(p + 32, zero, 32)) {
		snprintf(err, errlen, "malformed TPM NV rollback anchor in the header");
		return -EBADMSG;
	}
	a->index = get32(p + 12);
	a->counter = get64(p + 16);
	a->generation = get64(p + 24);
	if (a->index < TD_TPM2_NV_FIRST || a->index > TD_TPM2_NV_LAST) {
		snprintf(err, errlen, "TPM NV rollback anchor: index 0x%08x out of range",
			 a->index);
		return -EBADMSG;
	}
	a->present = true;
	return 0;
}

void td_nv_anchor_set(struct td_crypt_hdr *h, const struct td_nv_anchor *a)
{
	uint8_t *p = h->freshness + TD_NV_ANCHOR_OFF;

	memset(p, 0, TD_NV_ANCHOR_LEN);
	memcpy(p, TD_NV_ANCHOR_MAGIC, 8);
	put32(p + 8, TD_NV_ANCHOR_VERSION);
	put32(p + 12, a->index);
	put64(p + 16, a->counter);
	put64(p + 24, a->generation);
}

/* The image's generation, authenticated with v's key. */
static int generation(struct td_volume *v, uint64_t *gen, char *err, size_t errlen)
{
	struct ti_fresh_status st;
	int rc;

	if (strcmp(v->h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) != 0) {
		snprintf(err, errlen,
			 "the image has no integrity metadata, hence no generation to anchor");
		return -EINVAL;
	}
	rc = td_volume_fresh_status(v, v->vk, &st, err, errlen);
	if (rc == 0)
		*gen = st.generation;
	return rc;
}

/* Header first (durable, both copies), then the counter: a crash between
 * leaves the header ahead, which the next check accepts. */
static int advance(struct td_volume *v, const char *device, struct td_nv_anchor *a, uint64_t n,
		   uint64_t gen, char *err, size_t errlen)
{
	int rc;

	a->present = true;
	a->counter = n + 1;
	a->generation = gen;
	td_nv_anchor_set(v->h, a);
	rc = td_volume_store(v, err, errlen);
	if (rc == 0)
		rc = td_tpm2_nv_increment(device, a->index, err, errlen);
	return rc;
}

int td_volume_anchor_tpm2(struct td_volume *v, const char *device, uint32_t index,
			  struct td_nv_anchor *out, char *err, size_t errlen)
{
	struct td_nv_anchor a;
	uint64_t gen = 0, n = 0;
	int rc;

	rc = td_nv_anchor_get(v->h, &a, err, errlen);
	if (rc == 0)
		rc = generation(v, &gen, err, errlen);
	if (rc == 0 && a.present && index && index != a.index) {
		snprintf(err, errlen,
			 "the image is anchored at NV index 0x%08x already (not 0x%08x)", a.index,
			 index);
		rc = -EEXIST;
	}
	if (rc == 0 && !a.present) {
		a.index = index;
		rc = td_tpm2_nv_define(device, &a.index, &n, err, errlen);
	} else if (rc == 0) {
		rc = td_tpm2_nv_read(device, a.index, &n, err, errlen);
	}
	if (rc == 0)
		rc = advance(v, device, &a, n, gen, err, errlen);
	td_volume_record(v, TD_KEYLOG_OP_ANCHOR, TD_KEYLOG_SLOT_NONE, rc == 0, true);
	td_volume_commit(v, TD_KEYLOG_OP_ANCHOR);
	if (rc == 0 && out)
		*out = a;
	return rc;
}

int td_volume_anchor_check(struct td_volume *v, const char *device, bool *bumped, char *err,
			   size_t errlen)
{
	struct td_nv_anchor a;
	uint64_t gen = 0, n = 0;
	int rc;

	*bumped = false;
	rc = td_nv_anchor_get(v->h, &a, err, errlen);
	if (rc < 0 || !a.present)
		return rc;
	rc = td_tpm2_nv_read(device, a.index, &n, err, errlen);
	if (rc == 0)
		rc = generation(v, &gen, err, errlen);
	if (rc < 0)
		return rc;
	if (a.counter < n) {
		snprintf(err, errlen,
			 "the image was rolled back: its header was written at TPM counter %" PRIu64
			 " (NV index 0x%08x), which is now at %" PRIu64
			 "; if this is a deliberate restore, accept it with 'vdkey anchor SPEC "
			 "--tpm2-nv'",
			 a.counter, a.index, n);
		return -ESTALE;
	}
	if (gen < a.generation) {
		snprintf(err, errlen,
			 "the image was rolled back: its data is at generation %" PRIu64
			 ", older than the %" PRIu64
			 " its header recorded at the last load; if this is a deliberate restore, "
			 "accept it with 'vdkey anchor SPEC --tpm2-nv'",
			 gen, a.generation);
		return -ESTALE;
	}
	if (!v->writable) {
		td_volume_warn(v,
			       "the image is open read-only (%s): the TPM NV anchor was checked "
			       "but not advanced",
			       v->ro_why);
		return 0;
	}
	rc = advance(v, device, &a, n, gen, err, errlen);
	*bumped = rc == 0;
	return rc;
}
