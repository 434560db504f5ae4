/* libFuzzer harness for the NBD wire parsers (tapdisk/nbd/nbd_proto.c).
 *
 * Byte 0 picks what the rest of the input is fed to; every buffer handed
 * to the code under test is a heap copy of exactly the size it is told,
 * so a read or write past it is an ASan report:
 *   0  client flags (4 bytes)
 *   1  option header (16 bytes)
 *   2  NBD_OPT_INFO / NBD_OPT_GO payload (any length)
 *   3  request header (28 bytes) + an export to judge it against (17 bytes)
 *   4  export name checks (any length)
 *   5  option-reply encoders into a buffer of a fuzzed capacity */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/nbd/nbd_proto.h"

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

static void fuzz_info_opt(const uint8_t *d, size_t n)
{
	struct nbd_info_opt o;
	uint8_t *buf = dup_exact(d, n);
	int rc;

	if (!buf)
		return;
	rc = nbd_parse_info_opt(buf, n, &o);
	if (rc == 0) {
		/* the lengths add up exactly and the name is inside the buffer */
		assert((size_t)o.name_len + 6 + 2 * (size_t)o.n_info == n);
		assert(o.name == buf + 4);
		assert(o.name_len <= NBD_MAX_STRING);
		assert(!o.name_len || !memchr(o.name, 0, o.name_len));
		(void)nbd_name_matches(o.name, o.name_len, "export");
		(void)nbd_name_matches(o.name, o.name_len, NULL);
	} else {
		assert(rc == -EINVAL || rc == -ENAMETOOLONG);
		assert(nbd_opt_err_from_errno(rc) != 0);
	}
	free(buf);
}

static void fuzz_request(const uint8_t *d, size_t n)
{
	struct nbd_request rq;
	struct nbd_export ex;
	uint8_t *buf;
	uint32_t e;

	if (n < NBD_REQUEST_LEN + 17)
		return;
	buf = dup_exact(d, NBD_REQUEST_LEN);
	if (!buf)
		return;
	if (nbd_parse_request(buf, &rq) < 0)
		goto out;
	d += NBD_REQUEST_LEN;
	ex.size = nbd_get64(d);
	ex.max_io = nbd_get32(d + 8);
	ex.readonly = d[12] & 1;
	/* the server always passes a power of two (or 0: no alignment) */
	ex.align = d[13] % 14 ? 1u << (d[13] % 14 - 1) : 0;
	(void)nbd_request_payload_len(&rq);
	e = nbd_check_request(&rq, &ex);
	if (e == 0 && rq.type != NBD_CMD_DISC && rq.type != NBD_CMD_FLUSH) {
		/* accepted: inside the export, aligned, no overflow */
		assert(rq.offset <= ex.size && rq.length <= ex.size - rq.offset);
		if (ex.align)
			assert(rq.offset % ex.align == 0 && rq.length % ex.align == 0);
		if (rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE)
			assert(rq.length <= ex.max_io);
		if (rq.type != NBD_CMD_READ)
			assert(!ex.readonly);
	}
	{
		uint8_t rep[NBD_SIMPLE_REPLY_LEN];

		nbd_encode_simple_reply(rep, e, rq.handle);
		assert(nbd_get64(rep + 8) == rq.handle);
	}
out:
	free(buf);
}

static void fuzz_encoders(const uint8_t *d, size_t n)
{
	size_t cap, len, w;
	uint8_t *out;
	uint32_t opt, type;

	if (n < 8)
		return;
	cap = nbd_get16(d) % 8300;
	opt = nbd_get32(d + 2);
	type = nbd_get16(d + 6);
	d += 8;
	n -= 8;
	len = n;
	out = malloc(cap ? cap : 1);
	if (!out)
		return;
	w = nbd_encode_opt_reply(out, cap, opt, type, (uint32_t)len);
	assert(w <= cap);
	w = nbd_encode_rep_server(out, cap, opt, d, len);
	assert(w <= cap);
	w = nbd_encode_info_string(out, cap, opt, NBD_INFO_NAME, d, len);
	assert(w <= cap);
	w = nbd_encode_info_string(out, cap, opt, NBD_INFO_DESCRIPTION, d, len);
	assert(w <= cap);
	if (n >= 8) {
		w = nbd_encode_info_export(out, cap, opt, nbd_get64(d), nbd_get16(d));
		assert(w <= cap);
		w = nbd_encode_info_block_size(out, cap, opt, nbd_get32(d), nbd_get32(d + 4),
					       nbd_get16(d + 2));
		assert(w <= cap);
		w = nbd_encode_export_name_reply(out, cap, nbd_get64(d), nbd_get16(d), d[0] & 1);
		assert(w <= cap);
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf;
	bool nz;

	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0:
		if (size < 1 + NBD_CLIENT_FLAGS_LEN ||
		    !(buf = dup_exact(data + 1, NBD_CLIENT_FLAGS_LEN)))
			break;
		(void)nbd_parse_client_flags(buf, &nz);
		free(buf);
		break;
	case 1: {
		struct nbd_opt_hdr h;

		if (size < 1 + NBD_OPT_HDR_LEN || !(buf = dup_exact(data + 1, NBD_OPT_HDR_LEN)))
			break;
		if (nbd_parse_opt_hdr(buf, &h) == 0)
			assert(h.length == nbd_get32(buf + 12));
		free(buf);
		break;
	}
	case 2:
		fuzz_info_opt(data + 1, size - 1);
		break;
	case 3:
		fuzz_request(data + 1, size - 1);
		break;
	case 4: {
		int rc;

		if (!(buf = dup_exact(data + 1, size - 1)))
			break;
		rc = nbd_check_name(buf, size - 1);
		assert(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG);
		(void)nbd_name_matches(buf, size - 1, "export");
		(void)nbd_errno_to_nbd(-(int)(data[1 % size]));
		(void)nbd_opt_err_from_errno(-(int)(data[1 % size]));
		free(buf);
		break;
	}
	case 5:
		fuzz_encoders(data + 1, size - 1);
		break;
	}
	return 0;
}
