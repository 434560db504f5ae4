/* TPM2 keyslots: sealing a slot's 32-byte KEK to a TPM under a PCR policy
 * and unsealing it (docs/FORMAT.md, "TPM2 token"), with libtss2 (ESYS and
 * the TCTI loader). Only vdkey links it.
 *
 * Which TPM: `device` — a TCTI configuration as tpm2-tools takes it
 * ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321", "tabrmd", ...)
 * or a path (/dev/tpmrm0, taken as "device:PATH"); NULL: the environment's
 * TPM2TOOLS_TCTI, else TCTI, else the loader's default (the resource
 * manager daemon, then /dev/tpmrm0, /dev/tpm0). */
#ifndef TD_KEYMGR_TPM2_H
#define TD_KEYMGR_TPM2_H

#include <stddef.h>
#include <stdint.h>

#define TD_TPM2_KEK_LEN 32

/* Seals a fresh random KEK (into kek, TD_TPM2_KEK_LEN bytes of the
 * caller's secure memory) to the TPM under PolicyPCR over `pcrs` (bit i =
 * PCR i, SHA-256 bank) as they are now, and writes the token payload into
 * token (cap bytes): 0 and *token_len, or a negative errno with a one-line
 * message in err: -EHOSTUNREACH the TPM cannot be reached, -EINVAL bad
 * arguments, -EIO the TPM refused (err says what). */
int td_tpm2_seal(const char *device, uint32_t pcrs, uint8_t *token, size_t cap, size_t *token_len,
		 uint8_t *kek, char *err, size_t errlen);
/* Unseals the KEK a token holds into kek (TD_TPM2_KEK_LEN bytes of secure
 * memory): 0, or -EINVAL (malformed token), -EHOSTUNREACH (TPM not
 * reachable), -ENOKEY (the sealed object does not load: another TPM, or
 * its owner hierarchy was cleared), -EACCES (the PCR policy does not hold:
 * a selected PCR changed), -EIO (another TPM error), with err saying it. */
int td_tpm2_unseal(const char *device, const uint8_t *token, size_t len, uint8_t *kek, char *err,
		   size_t errlen);

/* ---- NV counters: the rollback anchor (docs/FORMAT.md, "Rollback anchor
 * in a TPM NV counter") ---- */

#define TD_TPM2_NV_FIRST 0x01000000u
#define TD_TPM2_NV_LAST 0x01ffffffu
#define TD_TPM2_NV_DEFAULT 0x01800100u /* where the search for a free index starts */

/* Defines a counter at *index (0: the first free one from
 * TD_TPM2_NV_DEFAULT) and increments it once (a counter reads only once
 * written): 0 with *index and *value, -EEXIST (the index asked for is in
 * use), -ENOSPC (no free index), -EHOSTUNREACH, -EIO. */
int td_tpm2_nv_define(const char *device, uint32_t *index, uint64_t *value, char *err,
		      size_t errlen);
/* The counter's value: 0, -ENOENT (no such index: another TPM, or the TPM
 * was cleared), -EINVAL (the index is not an 8-byte counter),
 * -EHOSTUNREACH, -EIO. */
int td_tpm2_nv_read(const char *device, uint32_t index, uint64_t *value, char *err, size_t errlen);
/* Adds one to the counter: the errors of td_tpm2_nv_read. */
int td_tpm2_nv_increment(const char *device, uint32_t index, char *err, size_t errlen);

#endif
