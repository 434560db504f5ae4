/* TPM2 keyslots with libtss2's ESYS (keymgr/tpm2.h; the objects and the
 * policy: docs/FORMAT.md, "TPM2 token").
 *
 * Secrets: the KEK lives in the caller's secure memory; the one structure
 * of ours that carries it to the TPM (TPM2B_SENSITIVE_CREATE) is in secure
 * memory too, and what ESYS returns from TPM2_Unseal is wiped before
 * Esys_Free. The commands that carry the KEK run in a session salted with
 * the primary key with AES-128-CFB parameter encryption, so it crosses the
 * TCTI (a socket, /dev/tpmrm0) encrypted. libtss2's own copies (the
 * sensitive input ESYS keeps for TPM2_Create, the command buffer Unseal's
 * answer is decrypted in) are heap blocks: vdkey's free wipes them
 * (keymgr/vdkey/wipe_heap.c), and what its calls left on our stack is
 * wiped after them (td_wipe_stack). Its logging is switched off
 * (TSS2_LOG=all+none): a trace level would print command buffers. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "crypt/backend/secmem.h"
#include "crypt/header.h"
#include "keymgr/tpm2.h"
#include "keymgr/tpm2_token.h"

struct tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *esys;
	ESYS_TR primary;
	char conf[512]; /* the TCTI configuration used, for messages */
};

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A TPM format-one response code without its handle/session/parameter
 * number. */
static TSS2_RC rc_base(TSS2_RC rc)
{
	if (rc & TSS2_RC_LAYER_MASK)
		return rc;
	if (rc & TPM2_RC_FMT1)
		return rc & (TPM2_RC_FMT1 | 0x3f);
	return rc & 0xfff;
}

static int tss_errno(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

	if (layer == TSS2_TCTI_RC_LAYER)
		return -EHOSTUNREACH;
	return -EIO;
}

static void tpm_close(struct tpm *t)
{
	if (t->esys) {
		if (t->primary != ESYS_TR_NONE)
			Esys_FlushContext(t->esys, t->primary);
		Esys_Finalize(&t->esys);
	}
	if (t->tcti)
		Tss2_TctiLdr_Finalize(&t->tcti);
	t->primary = ESYS_TR_NONE;
}

/* The TCTI configuration: --tpm2-device, else the environment tpm2-tools
 * reads, else "" (the loader's default). */
static void tcti_conf(const char *device, char *out, size_t len)
{
	const char *env = NULL;

	if (!device || !*device) {
		env = getenv("TPM2TOOLS_TCTI");
		if (!env || !*env)
			env = getenv("TCTI");
		device = env && *env ? env : "";
	}
	if (device[0] == '/')
		snprintf(out, len, "device:%s", device);
	else
		snprintf(out, len, "%s", device);
}

/* The storage primary of docs/FORMAT.md, re-created in the owner
 * hierarchy: deterministic for a given TPM. */
static TSS2_RC create_primary(struct tpm *t)
{
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION creation = {0};
	TPM2B_PUBLIC tmpl = {
	    .publicArea =
		{
		    .type = TPM2_ALG_ECC,
		    .nameAlg = TPM2_ALG_SHA256,
		    .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
					TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
					TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
					TPMA_OBJECT_DECRYPT,
		    .parameters.eccDetail =
			{
			    .symmetric = {.algorithm = TPM2_ALG_AES,
					  .keyBits.aes = 128,
					  .mode.aes = TPM2_ALG_CFB},
			    .scheme = {.scheme = TPM2_ALG_NULL},
			    .curveID = TPM2_ECC_NIST_P256,
			    .kdf = {.scheme = TPM2_ALG_NULL},
			},
		},
	};

	return Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				  ESYS_TR_NONE, &sens, &tmpl, &outside, &creation, &t->primary,
				  NULL, NULL, NULL, NULL);
}

/* primary: also create the storage primary (keyslots; NV needs none) */
static int tpm_open(struct tpm *t, const char *device, bool primary, char *err, size_t errlen)
{
	TSS2_RC rc;

	memset(t, 0, sizeof(*t));
	t->primary = ESYS_TR_NONE;
	/* no libtss2 logging: at trace level it prints command buffers */
	setenv("TSS2_LOG", "all+none", 1);
	tcti_conf(device, t->conf, sizeof(t->conf));
	rc = Tss2_TctiLdr_Initialize(t->conf[0] ? t->conf : NULL, &t->tcti);
	if (rc != TSS2_RC_SUCCESS) {
		say(err, errlen,
		    "cannot reach the TPM (TCTI '%s'): %s; choose it with --tpm2-device or "
		    "TPM2TOOLS_TCTI",
		    t->conf[0] ? t->conf : "default", Tss2_RC_Decode(rc));
		t->tcti = NULL;
		return -EHOSTUNREACH;
	}
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc == TSS2_RC_SUCCESS && primary)
		rc = create_primary(t);
	if (rc != TSS2_RC_SUCCESS) {
		int e = tss_errno(rc);

		if (e == -EHOSTUNREACH)
			say(err, errlen, "cannot reach the TPM (TCTI '%s'): %s",
			    t->conf[0] ? t->conf : "default", Tss2_RC_Decode(rc));
		else
			say(err, errlen,
			    "the TPM refused to create the storage primary key in the owner "
			    "hierarchy (an owner password set?): %s",
			    Tss2_RC_Decode(rc));
		tpm_close(t);
		return e;
	}
	return 0;
}

static void pcr_selection(uint32_t pcrs, TPML_PCR_SELECTION *sel)
{
	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = 3;
	for (int i = 0; i < 3; i++)
		sel->pcrSelections[0].pcrSelect[i] = (uint8_t)(pcrs >> (8 * i));
}

/* A session salted with the primary: HMAC (parameter encryption both
 * ways), policy, or trial (no salt, no encryption). */
static TSS2_RC start_session(struct tpm *t, TPM2_SE type, ESYS_TR *s)
{
	TPMT_SYM_DEF aes = {
	    .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
	TPMT_SYM_DEF none = {.algorithm = TPM2_ALG_NULL};
	bool trial = type == TPM2_SE_TRIAL;

	return Esys_StartAuthSession(t->esys, trial ? ESYS_TR_NONE : t->primary, ESYS_TR_NONE,
				     ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, type,
				     trial ? &none : &aes, TPM2_ALG_SHA256, s);
}

int td_tpm2_seal(const char *device, uint32_t pcrs, uint8_t *token, size_t cap, size_t *token_len,
		 uint8_t *kek, char *err, size_t errlen)
{
	TPM2B_SENSITIVE_CREATE *sens = NULL;
	TPM2B_DIGEST empty = {0}, *policy = NULL;
	TPM2B_PUBLIC *out_pub = NULL;
	TPM2B_PRIVATE *out_priv = NULL;
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION creation = {0}, sel;
	ESYS_TR trial = ESYS_TR_NONE, hmac = ESYS_TR_NONE;
	struct td_tpm2_token tok = {0};
	struct tpm t;
	const char *what = "";
	TSS2_RC rc;
	int ret;

	if (!pcrs || (pcrs & ~TD_TPM2_PCR_VALID)) {
		say(err, errlen, "bad PCR selection (PCRs 0-23, at least one)");
		return -EINVAL;
	}
	ret = tpm_open(&t, device, true, err, errlen);
	if (ret < 0)
		return ret;
	pcr_selection(pcrs, &sel);
	what = "computing the PCR policy";
	rc = start_session(&t, TPM2_SE_TRIAL, &trial);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_PolicyPCR(t.esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty,
				    &sel);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_PolicyGetDigest(t.esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					  &policy);
	if (rc != TSS2_RC_SUCCESS)
		goto tpm_fail;
	what = "sealing the key";
	sens = td_secure_alloc(sizeof(*sens));
	if (!sens || RAND_bytes(kek, TD_TPM2_KEK_LEN) != 1) {
		say(err, errlen, "cannot make a key: out of (locked) memory or randomness");
		ret = -ENOMEM;
		goto out;
	}
	sens->sensitive.data.size = TD_TPM2_KEK_LEN;
	memcpy(sens->sensitive.data.buffer, kek, TD_TPM2_KEK_LEN);
	tok.pub.publicArea.type = TPM2_ALG_KEYEDHASH;
	tok.pub.publicArea.nameAlg = TPM2_ALG_SHA256;
	tok.pub.publicArea.objectAttributes = TD_TPM2_SEALED_ATTRS;
	tok.pub.publicArea.authPolicy = *policy;
	tok.pub.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	rc = start_session(&t, TPM2_SE_HMAC, &hmac);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_TRSess_SetAttributes(t.esys, hmac,
					       TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT |
						   TPMA_SESSION_CONTINUESESSION,
					       0xff);
	if (rc == TSS2_RC_SUCCESS)
		rc =
		    Esys_Create(t.esys, t.primary, hmac, ESYS_TR_NONE, ESYS_TR_NONE, sens, &tok.pub,
				&outside, &creation, &out_priv, &out_pub, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		goto tpm_fail;
	tok.version = TD_TPM2_TOKEN_VERSION;
	tok.primary = TD_TPM2_PRIMARY_ECC_P256;
	tok.bank = TPM2_ALG_SHA256;
	tok.pcrs = pcrs;
	tok.pub = *out_pub;
	tok.priv = *out_priv;
	ret = td_tpm2_token_encode(&tok, token, cap, token_len);
	if (ret < 0)
		say(err, errlen, "the TPM's sealed object does not fit a token (%s)",
		    ret == -E2BIG ? "too big" : "unexpected attributes");
	goto out;
tpm_fail:
	ret = tss_errno(rc);
	say(err, errlen, "TPM error while %s: %s", what, Tss2_RC_Decode(rc));
out:
	if (trial != ESYS_TR_NONE)
		Esys_FlushContext(t.esys, trial);
	if (hmac != ESYS_TR_NONE)
		Esys_FlushContext(t.esys, hmac);
	Esys_Free(policy);
	Esys_Free(out_pub);
	Esys_Free(out_priv);
	td_secure_free(sens);
	tpm_close(&t);
	td_wipe_stack(); /* libtss2 marshalled the KEK on its way out */
	if (ret < 0)
		td_wipe(kek, TD_TPM2_KEK_LEN);
	return ret;
}

int td_tpm2_unseal(const char *device, const uint8_t *token, size_t len, uint8_t *kek, char *err,
		   size_t errlen)
{
	TPM2B_SENSITIVE_DATA *out = NULL;
	TPM2B_DIGEST empty = {0};
	TPML_PCR_SELECTION sel;
	ESYS_TR obj = ESYS_TR_NONE, ps = ESYS_TR_NONE;
	struct td_tpm2_token *tok;
	char pcrs[96], why[256];
	struct tpm t;
	TSS2_RC rc;
	int ret;

	tok = calloc(1, sizeof(*tok));
	if (!tok)
		return -ENOMEM;
	if (td_tpm2_token_decode(token, len, tok, why, sizeof(why)) < 0) {
		say(err, errlen, "malformed TPM2 token: %s", why);
		free(tok);
		return -EINVAL;
	}
	td_tpm2_pcrs_str(tok->pcrs, pcrs, sizeof(pcrs));
	ret = tpm_open(&t, device, true, err, errlen);
	if (ret < 0) {
		free(tok);
		return ret;
	}
	rc = Esys_Load(t.esys, t.primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &tok->priv,
		       &tok->pub, &obj);
	if (rc != TSS2_RC_SUCCESS) {
		ret = tss_errno(rc);
		if (ret == -EIO) {
			ret = -ENOKEY;
			say(err, errlen,
			    "the TPM cannot load the sealed key: it was sealed by another TPM (or "
			    "this TPM's owner hierarchy was cleared since): %s",
			    Tss2_RC_Decode(rc));
		} else {
			say(err, errlen, "cannot reach the TPM: %s", Tss2_RC_Decode(rc));
		}
		goto out;
	}
	pcr_selection(tok->pcrs, &sel);
	rc = start_session(&t, TPM2_SE_POLICY, &ps);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_PolicyPCR(t.esys, ps, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty,
				    &sel);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_TRSess_SetAttributes(
		    t.esys, ps, TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION, 0xff);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_Unseal(t.esys, obj, ps, ESYS_TR_NONE, ESYS_TR_NONE, &out);
	if (rc != TSS2_RC_SUCCESS) {
		ret = tss_errno(rc);
		if (rc_base(rc) == TPM2_RC_POLICY_FAIL) {
			ret = -EACCES;
			say(err, errlen,
			    "the TPM refused to unseal: the PCR policy does not hold (PCR %s of "
			    "the "
			    "sha256 bank changed since enrollment)",
			    pcrs);
		} else {
			say(err, errlen, "TPM error while unsealing: %s", Tss2_RC_Decode(rc));
		}
		goto out;
	}
	if (out->size != TD_TPM2_KEK_LEN) {
		say(err, errlen, "the TPM unsealed %u bytes, not a %d-byte key", out->size,
		    TD_TPM2_KEK_LEN);
		ret = -EIO;
		goto out;
	}
	memcpy(kek, out->buffer, TD_TPM2_KEK_LEN);
	ret = 0;
out:
	if (out) {
		td_wipe(out, sizeof(*out));
		Esys_Free(out);
	}
	if (ps != ESYS_TR_NONE)
		Esys_FlushContext(t.esys, ps);
	if (obj != ESYS_TR_NONE)
		Esys_FlushContext(t.esys, obj);
	tpm_close(&t);
	td_wipe_stack(); /* libtss2 decrypted the unsealed KEK */
	free(tok);
	return ret;
}

/* ---- NV counters ---- */

#define NV_COUNTER_ATTRS                                                                           \
	((TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) | TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE |       \
	 TPMA_NV_NO_DA)

/* The ESYS handle of NV index `index`, checked to be one of our counters. */
static int nv_handle(struct tpm *t, uint32_t index, ESYS_TR *h, char *err, size_t errlen)
{
	TPM2B_NV_PUBLIC *pub = NULL;
	TPMA_NV want = NV_COUNTER_ATTRS | TPMA_NV_WRITTEN, mask;
	TSS2_RC rc;
	int ret = 0;

	rc = Esys_TR_FromTPMPublic(t->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, h);
	if (rc != TSS2_RC_SUCCESS) {
		*h = ESYS_TR_NONE;
		ret = tss_errno(rc);
		if (ret == -EIO) {
			ret = -ENOENT;
			say(err, errlen,
			    "the TPM has no NV index 0x%08x (another TPM, or this one was cleared)",
			    index);
		} else {
			say(err, errlen, "cannot reach the TPM: %s", Tss2_RC_Decode(rc));
		}
		return ret;
	}
	rc = Esys_NV_ReadPublic(t->esys, *h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		say(err, errlen, "cannot read NV index 0x%08x's attributes: %s", index,
		    Tss2_RC_Decode(rc));
		ret = tss_errno(rc);
	} else {
		mask = want | TPMA_NV_TPM2_NT_MASK;
		if ((pub->nvPublic.attributes & mask) != want || pub->nvPublic.dataSize != 8) {
			say(err, errlen,
			    "NV index 0x%08x is not a counter vdkey defined (attributes 0x%08x)",
			    index, pub->nvPublic.attributes);
			ret = -EINVAL;
		}
	}
	Esys_Free(pub);
	return ret;
}

static int nv_read(struct tpm *t, ESYS_TR h, uint32_t index, uint64_t *value, char *err,
		   size_t errlen)
{
	TPM2B_MAX_NV_BUFFER *data = NULL;
	TSS2_RC rc;

	rc = Esys_NV_Read(t->esys, h, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &data);
	if (rc != TSS2_RC_SUCCESS || data->size != 8) {
		say(err, errlen, "cannot read the counter at NV index 0x%08x: %s", index,
		    rc ? Tss2_RC_Decode(rc) : "not 8 bytes");
		Esys_Free(data);
		return rc ? tss_errno(rc) : -EIO;
	}
	*value = 0;
	for (int i = 0; i < 8; i++) /* big-endian, as the TPM keeps it */
		*value = *value << 8 | data->buffer[i];
	Esys_Free(data);
	return 0;
}

int td_tpm2_nv_define(const char *device, uint32_t *index, uint64_t *value, char *err,
		      size_t errlen)
{
	TPM2B_AUTH auth = {0};
	TPM2B_NV_PUBLIC pub = {
	    .nvPublic =
		{
		    .nameAlg = TPM2_ALG_SHA256,
		    .attributes = NV_COUNTER_ATTRS,
		    .dataSize = 8,
		},
	};
	ESYS_TR h = ESYS_TR_NONE;
	uint32_t i = *index ? *index : TD_TPM2_NV_DEFAULT;
	uint32_t last = *index ? *index : TD_TPM2_NV_DEFAULT + 255;
	struct tpm t;
	TSS2_RC rc = TSS2_RC_SUCCESS;
	int ret;

	if (i < TD_TPM2_NV_FIRST || i > TD_TPM2_NV_LAST) {
		say(err, errlen, "NV index 0x%08x is outside 0x%08x-0x%08x", i, TD_TPM2_NV_FIRST,
		    TD_TPM2_NV_LAST);
		return -EINVAL;
	}
	ret = tpm_open(&t, device, false, err, errlen);
	if (ret < 0)
		return ret;
	for (; i <= last; i++) {
		pub.nvPublic.nvIndex = i;
		rc = Esys_NV_DefineSpace(t.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					 ESYS_TR_NONE, &auth, &pub, &h);
		if (rc == TSS2_RC_SUCCESS || rc_base(rc) != TPM2_RC_NV_DEFINED)
			break;
	}
	if (rc != TSS2_RC_SUCCESS) {
		ret = tss_errno(rc);
		if (rc_base(rc) == TPM2_RC_NV_DEFINED) {
			ret = *index ? -EEXIST : -ENOSPC;
			say(err, errlen, "NV index %s0x%08x is in use%s", *index ? "" : "up to ",
			    last, *index ? " (choose another with --nv-index)" : "");
		} else {
			say(err, errlen, "the TPM refused to define an NV counter: %s",
			    Tss2_RC_Decode(rc));
		}
		goto out;
	}
	rc = Esys_NV_Increment(t.esys, h, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
	if (rc != TSS2_RC_SUCCESS) {
		say(err, errlen, "cannot increment the new NV counter 0x%08x: %s", i,
		    Tss2_RC_Decode(rc));
		ret = tss_errno(rc);
		goto out;
	}
	ret = nv_read(&t, h, i, value, err, errlen);
	if (ret == 0)
		*index = i;
out:
	tpm_close(&t);
	return ret;
}

int td_tpm2_nv_read(const char *device, uint32_t index, uint64_t *value, char *err, size_t errlen)
{
	ESYS_TR h;
	struct tpm t;
	int ret = tpm_open(&t, device, false, err, errlen);

	if (ret < 0)
		return ret;
	ret = nv_handle(&t, index, &h, err, errlen);
	if (ret == 0)
		ret = nv_read(&t, h, index, value, err, errlen);
	tpm_close(&t);
	return ret;
}

int td_tpm2_nv_increment(const char *device, uint32_t index, char *err, size_t errlen)
{
	ESYS_TR h;
	struct tpm t;
	TSS2_RC rc;
	int ret = tpm_open(&t, device, false, err, errlen);

	if (ret < 0)
		return ret;
	ret = nv_handle(&t, index, &h, err, errlen);
	if (ret == 0) {
		rc = Esys_NV_Increment(t.esys, h, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
		if (rc != TSS2_RC_SUCCESS) {
			say(err, errlen, "cannot increment the NV counter 0x%08x: %s", index,
			    Tss2_RC_Decode(rc));
			ret = tss_errno(rc);
		}
	}
	tpm_close(&t);
	return ret;
}
