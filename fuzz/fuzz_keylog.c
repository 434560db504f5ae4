/* libFuzzer harness for the key-event log parser and verifier
 * (keymgr/keylog_fmt.c).
 *
 * Input: byte 0 mode, then a log file's bytes (any number of lines).
 * Mode bit 0x01: also check against an anchor built from bytes 1..40 of
 * the input (count from 8 bytes, head from 32), so the anchor comparisons
 * see hostile values, and the log starts after them; otherwise the chain
 * alone is checked.
 *
 * Every line is parsed on its own too: whatever parses must re-format to
 * exactly its input (one encoding per entry), and re-hashing must work. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "keymgr/keylog.h"

static const uint8_t fz_uuid[16] = {0xf0, 0x22, 0x1d, 0x3a, 0x55, 0x10, 0x4e, 0x7c,
				    0x9b, 0x01, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct td_keylog_anchor a, *ap = NULL;
	struct td_keylog_result r;
	struct td_keylog_entry e;
	char err[512], again[TD_KEYLOG_LINE_MAX + 1];
	const char *buf, *line;
	size_t len, off = 0, ll;
	uint8_t h[TD_KEYLOG_HASH_LEN];
	int rc;

	if (size < 1)
		return 0;
	buf = (const char *)data + 1;
	len = size - 1;
	if ((data[0] & 1) && len >= 40) {
		memcpy(&a.count, buf, 8);
		memcpy(a.head, buf + 8, 32);
		ap = &a;
		buf += 40; /* (until session 3 the anchor bytes were also the log's first line) */
		len -= 40;
	}
	rc = td_keylog_verify_buf(buf, len, fz_uuid, ap, &r, err, sizeof(err));
	assert(rc == 0 || (rc < 0 && err[0]));
	assert(rc != 0 || r.entries >= r.anchored);
	while ((rc = td_keylog_next_line(buf, len, &off, &line, &ll)) != 0) {
		assert(off <= len && ll <= len);
		if (rc < 0 || td_keylog_parse_line(line, ll, &e, err, sizeof(err)) < 0)
			continue;
		assert(td_keylog_format(&e, again, sizeof(again)) == (int)ll + 1);
		assert(memcmp(again, line, ll) == 0 && again[ll] == '\n');
		assert(td_keylog_entry_hash(&e, h) == 0);
	}
	return 0;
}
