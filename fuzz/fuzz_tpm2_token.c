/* libFuzzer harness for the TPM2 token payload (keymgr/tpm2_token.c;
 * docs/FORMAT.md, "TPM2 token").
 *
 * Input: the payload bytes as a keyslot token holds them (any length; the
 * decoder refuses more than 632). An accepted payload must re-encode to the
 * very same bytes (one encoding per token) and its PCR list must print and
 * parse back to the same selection. The input is also tried, cut at 63
 * bytes and NUL-terminated, as a --pcrs list. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "crypt/header.h"
#include "keymgr/tpm2_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct td_tpm2_token t;
	static uint8_t again[TD_HDR_TOKEN_MAX];
	char err[256], list[96], str[64];
	size_t len = 0;
	uint32_t m = 0;

	if (td_tpm2_token_decode(data, size, &t, err, sizeof(err)) == 0) {
		assert(size <= TD_HDR_TOKEN_MAX);
		assert(td_tpm2_token_encode(&t, again, sizeof(again), &len) == 0);
		assert(len == size && memcmp(again, data, size) == 0);
		td_tpm2_pcrs_str(t.pcrs, list, sizeof(list));
		assert(td_tpm2_pcrs_parse(list, &m) == 0 && m == t.pcrs);
	} else {
		assert(err[0]);
	}
	len = size < sizeof(str) - 1 ? size : sizeof(str) - 1;
	memcpy(str, data, len);
	str[len] = 0;
	if (td_tpm2_pcrs_parse(str, &m) == 0)
		assert(m && !(m & ~TD_TPM2_PCR_VALID));
	return 0;
}
