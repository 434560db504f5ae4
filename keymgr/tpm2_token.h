/* The payload of a TPM2 keyslot's token (docs/FORMAT.md, "TPM2 token"):
 * the PCR policy and the sealed object that holds the slot's KEK. Pure
 * encoding and decoding (libtss2-mu marshals the TPM structures); the TPM
 * itself is driven by keymgr/tpm2.c. */
#ifndef TD_KEYMGR_TPM2_TOKEN_H
#define TD_KEYMGR_TPM2_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tpm2_types.h>

#define TD_TPM2_TOKEN_VERSION 1
#define TD_TPM2_PRIMARY_ECC_P256 1 /* the template of docs/FORMAT.md */
#define TD_TPM2_HDR_LEN 12	   /* the fixed fields before the public area */
#define TD_TPM2_PCR_COUNT 24
#define TD_TPM2_PCR_VALID 0x00ffffffu
/* The sealed object's attributes: only the policy authorises it. */
#define TD_TPM2_SEALED_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA)

struct td_tpm2_token {
	uint16_t version; /* TD_TPM2_TOKEN_VERSION */
	uint16_t primary; /* TD_TPM2_PRIMARY_ECC_P256 */
	uint16_t bank;	  /* TPM2_ALG_SHA256 */
	uint32_t pcrs;	  /* bit i = PCR i, within TD_TPM2_PCR_VALID, not 0 */
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
};

/* Encodes t into out (cap bytes): 0 and *len, -EINVAL (t breaks a rule of
 * the format), -E2BIG (does not fit cap). */
int td_tpm2_token_encode(const struct td_tpm2_token *t, uint8_t *out, size_t cap, size_t *len);
/* Decodes and checks a payload: 0, or -EINVAL with the first rule it breaks
 * in err (may be NULL). */
int td_tpm2_token_decode(const uint8_t *in, size_t len, struct td_tpm2_token *t, char *err,
			 size_t errlen);
/* "7", "0,2,7", "0-3,7", also with '+' as separator (systemd's
 * --tpm2-pcrs): 0 and *mask, or -EINVAL (not a list of 0..23, or empty). */
int td_tpm2_pcrs_parse(const char *list, uint32_t *mask);
/* "0,2,7" */
void td_tpm2_pcrs_str(uint32_t mask, char *buf, size_t len);

#endif
