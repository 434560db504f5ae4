/* Unit tests for the NBD wire format (tapdisk/nbd/nbd_proto.c): well-formed
 * and malformed requests, options with every length off by one in both
 * directions, and byte-exact encodings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/nbd/nbd_proto.h"

#define MIB (1024u * 1024u)

static void put_req(uint8_t *b, uint32_t magic, uint16_t flags, uint16_t type, uint64_t handle,
		    uint64_t off, uint32_t len)
{
	nbd_put32(b, magic);
	nbd_put16(b + 4, flags);
	nbd_put16(b + 6, type);
	nbd_put64(b + 8, handle);
	nbd_put64(b + 16, off);
	nbd_put32(b + 24, len);
}

static void test_endian(void **state)
{
	uint8_t b[8];

	nbd_put64(b, 0x0102030405060708ull);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[7], 8);
	assert_true(nbd_get64(b) == 0x0102030405060708ull);
	assert_int_equal(nbd_get32(b + 4), 0x05060708);
	assert_int_equal(nbd_get16(b + 6), 0x0708);
	nbd_put16(b, 0xfffe);
	assert_int_equal(nbd_get16(b), 0xfffe);
}

static void test_request_parse(void **state)
{
	uint8_t b[NBD_REQUEST_LEN];
	struct nbd_request rq;
	uint16_t type;

	for (type = 0; type <= 9; type++) {
		put_req(b, NBD_REQUEST_MAGIC, 0xa5a5, type, 0xdeadbeefcafef00dull,
			0xfffffffffffffe00ull, 0xffffffffu);
		assert_int_equal(nbd_parse_request(b, &rq), 0);
		assert_int_equal(rq.type, type);
		assert_int_equal(rq.flags, 0xa5a5);
		assert_true(rq.handle == 0xdeadbeefcafef00dull);
		assert_true(rq.offset == 0xfffffffffffffe00ull);
		assert_int_equal(rq.length, 0xffffffffu);
	}
}

static void test_request_bad_magic(void **state)
{
	uint8_t b[NBD_REQUEST_LEN];
	struct nbd_request rq;
	int byte, bit;

	/* Every single-bit corruption of the magic is refused. */
	for (byte = 0; byte < 4; byte++) {
		for (bit = 0; bit < 8; bit++) {
			put_req(b, NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, 1, 0, 512);
			b[byte] ^= (uint8_t)(1u << bit);
			assert_int_equal(nbd_parse_request(b, &rq), -EPROTO);
		}
	}
	/* The simple-reply magic is not a request magic. */
	put_req(b, NBD_SIMPLE_REPLY_MAGIC, 0, NBD_CMD_READ, 1, 0, 512);
	assert_int_equal(nbd_parse_request(b, &rq), -EPROTO);
	memset(b, 0, sizeof(b));
	assert_int_equal(nbd_parse_request(b, &rq), -EPROTO);
}

static void test_payload_len(void **state)
{
	struct nbd_request rq = {.length = 4096};

	rq.type = NBD_CMD_WRITE;
	assert_int_equal(nbd_request_payload_len(&rq), 4096);
	/* Only WRITE has a payload: an unknown command's length is not one. */
	for (rq.type = 0; rq.type < 64; rq.type++)
		if (rq.type != NBD_CMD_WRITE)
			assert_int_equal(nbd_request_payload_len(&rq), 0);
	rq.type = 0xffff;
	assert_int_equal(nbd_request_payload_len(&rq), 0);
}

struct check_case {
	uint16_t type, flags;
	uint64_t off;
	uint32_t len;
	bool ro;
	uint32_t want;
};

static void test_check_request(void **state)
{
	const uint64_t size = 64 * MIB;
	static const struct check_case cases[] = {
	    /* reads */
	    {NBD_CMD_READ, 0, 0, 4096, false, 0},
	    {NBD_CMD_READ, 0, 512, 512, false, 0},
	    {NBD_CMD_READ, 0, 100, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 511, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 0, 511, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 0, 513, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 0, 32 * MIB, false, 0},
	    {NBD_CMD_READ, 0, 0, 32 * MIB + 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 0, 0xfffffe00u, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 64 * MIB - 512, 512, false, 0},
	    {NBD_CMD_READ, 0, 64 * MIB - 512, 1024, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 64 * MIB, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 64 * MIB, 0, false, 0},
	    {NBD_CMD_READ, 0, 64 * MIB + 512, 0, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, UINT64_MAX - 511, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 1ull << 63, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, false, 0},
	    {NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0x8000, 0, 512, false, NBD_EINVAL},
	    {NBD_CMD_READ, 0, 0, 4096, true, 0},
	    /* writes */
	    {NBD_CMD_WRITE, 0, 0, 4096, false, 0},
	    {NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 512, false, 0},
	    {NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, false, NBD_EINVAL},
	    {NBD_CMD_WRITE, 0, 1, 512, false, NBD_EINVAL},
	    {NBD_CMD_WRITE, 0, 0, 32 * MIB + 4096, false, NBD_EINVAL},
	    {NBD_CMD_WRITE, 0, 64 * MIB - 512, 1024, false, NBD_ENOSPC},
	    {NBD_CMD_WRITE, 0, 64 * MIB, 512, false, NBD_ENOSPC},
	    {NBD_CMD_WRITE, 0, UINT64_MAX - 511, 1024, false, NBD_ENOSPC},
	    {NBD_CMD_WRITE, 0, 0, 4096, true, NBD_EPERM},
	    {NBD_CMD_WRITE, 0, 64 * MIB, 4096, true, NBD_EPERM},
	    /* trim and write zeroes: not bound by the payload limit */
	    {NBD_CMD_TRIM, 0, 0, 64 * MIB, false, 0},
	    {NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 4096, false, 0},
	    {NBD_CMD_TRIM, 0, 64 * MIB - 512, 1024, false, NBD_EINVAL},
	    {NBD_CMD_TRIM, 0, 0, 4096, true, NBD_EPERM},
	    {NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 4096, false, NBD_EINVAL},
	    {NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MIB, false, 0},
	    {NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, 512, 512, false, 0},
	    {NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 4096, false, NBD_EINVAL},
	    {NBD_CMD_WRITE_ZEROES, 0, 64 * MIB, 4096, false, NBD_ENOSPC},
	    {NBD_CMD_WRITE_ZEROES, 0, 0, 4096, true, NBD_EPERM},
	    {NBD_CMD_WRITE_ZEROES, 0, 3, 4096, false, NBD_EINVAL},
	    /* flush and disconnect ignore offset and length */
	    {NBD_CMD_FLUSH, 0, 0, 0, false, 0},
	    {NBD_CMD_FLUSH, 0, 12345, 77, false, 0},
	    {NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, true, 0},
	    {NBD_CMD_FLUSH, NBD_CMD_FLAG_NO_HOLE, 0, 0, false, NBD_EINVAL},
	    {NBD_CMD_DISC, 0xffff, 1, 1, false, 0},
	    /* never negotiated or unknown */
	    {NBD_CMD_CACHE, 0, 0, 4096, false, NBD_EINVAL},
	    {NBD_CMD_BLOCK_STATUS, 0, 0, 4096, false, NBD_EINVAL},
	    {8, 0, 0, 4096, false, NBD_EINVAL},
	    {99, 0, 0, 0, false, NBD_EINVAL},
	    {0xffff, 0, 0, 0, false, NBD_EINVAL},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct check_case *c = &cases[i];
		struct nbd_export ex = {
		    .size = size, .readonly = c->ro, .max_io = 32 * MIB, .align = 512};
		struct nbd_request rq = {
		    .flags = c->flags, .type = c->type, .offset = c->off, .length = c->len};

		if (nbd_check_request(&rq, &ex) != c->want)
			fail_msg(
			    "case %zu: type %u flags 0x%x off %llu len %u ro %d: got %u want %u", i,
			    c->type, c->flags, (unsigned long long)c->off, c->len, c->ro,
			    nbd_check_request(&rq, &ex), c->want);
	}
}

static void test_client_flags(void **state)
{
	uint8_t b[4];
	bool nz = true;
	uint32_t f;

	nbd_put32(b, 0);
	assert_int_equal(nbd_parse_client_flags(b, &nz), 0);
	assert_false(nz);
	nbd_put32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	assert_int_equal(nbd_parse_client_flags(b, &nz), 0);
	assert_true(nz);
	for (f = 2; f < 32; f++) {
		nbd_put32(b, NBD_FLAG_C_FIXED_NEWSTYLE | (1u << f));
		assert_int_equal(nbd_parse_client_flags(b, &nz), -EPROTO);
	}
	nbd_put32(b, 0xffffffffu);
	assert_int_equal(nbd_parse_client_flags(b, &nz), -EPROTO);
}

static void test_opt_hdr(void **state)
{
	uint8_t b[NBD_OPT_HDR_LEN];
	struct nbd_opt_hdr h;
	int i;

	nbd_put64(b, NBD_IHAVEOPT);
	nbd_put32(b + 8, NBD_OPT_GO);
	nbd_put32(b + 12, 0xffffffffu);
	assert_int_equal(nbd_parse_opt_hdr(b, &h), 0);
	assert_int_equal(h.option, NBD_OPT_GO);
	assert_int_equal(h.length, 0xffffffffu);
	for (i = 0; i < 8; i++) {
		nbd_put64(b, NBD_IHAVEOPT);
		b[i] ^= 0x20;
		assert_int_equal(nbd_parse_opt_hdr(b, &h), -EPROTO);
	}
	nbd_put64(b, NBD_MAGIC);
	assert_int_equal(nbd_parse_opt_hdr(b, &h), -EPROTO);
}

static size_t info_payload(uint8_t *b, uint32_t name_len_field, const char *name, size_t name_len,
			   uint16_t n_field, const uint16_t *infos, unsigned n)
{
	unsigned i;

	nbd_put32(b, name_len_field);
	memcpy(b + 4, name, name_len);
	nbd_put16(b + 4 + name_len, n_field);
	for (i = 0; i < n; i++)
		nbd_put16(b + 6 + name_len + 2 * i, infos[i]);
	return 6 + name_len + 2 * n;
}

static void test_info_opt_valid(void **state)
{
	static const uint16_t infos[] = {NBD_INFO_BLOCK_SIZE, 0x7777, NBD_INFO_NAME,
					 NBD_INFO_BLOCK_SIZE};
	uint8_t b[64];
	struct nbd_info_opt io;
	size_t len;

	len = info_payload(b, 0, "", 0, 0, NULL, 0);
	assert_int_equal(len, 6);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), 0);
	assert_int_equal(io.name_len, 0);
	assert_int_equal(io.n_info, 0);
	assert_false(io.want_block_size || io.want_name || io.want_description);

	len = info_payload(b, 3, "exp", 3, 4, infos, 4);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), 0);
	assert_int_equal(io.name_len, 3);
	assert_memory_equal(io.name, "exp", 3);
	assert_int_equal(io.n_info, 4);
	assert_true(io.want_block_size);
	assert_true(io.want_name);
	assert_false(io.want_description);
}

/* The option length, the name length and the info count must agree
 * exactly; one byte too many or too few anywhere is invalid. */
static void test_info_opt_lengths(void **state)
{
	static const uint16_t infos[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME};
	uint8_t b[64];
	struct nbd_info_opt io;
	size_t len, l;

	len = info_payload(b, 3, "exp", 3, 2, infos, 2); /* 13 bytes */
	assert_int_equal(nbd_parse_info_opt(b, len, &io), 0);
	/* option length off by one both ways, and every shorter length */
	assert_int_equal(nbd_parse_info_opt(b, len + 1, &io), -EINVAL);
	for (l = 0; l < len; l++)
		assert_int_equal(nbd_parse_info_opt(b, l, &io), -EINVAL);
	/* name length off by one both ways */
	nbd_put32(b, 4);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put32(b, 2);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put32(b, 0xffffffffu);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put32(b, (uint32_t)len);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put32(b, (uint32_t)len - 6 + 1);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put32(b, 3);
	/* info count off by one both ways, and absurd */
	nbd_put16(b + 7, 3);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put16(b + 7, 1);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put16(b + 7, 0xffff);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	nbd_put16(b + 7, 2);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), 0);
}

/* Exhaustive over small shapes: accepted exactly when 6 + name + 2n
 * equals the option length. */
static void test_info_opt_exhaustive(void **state)
{
	uint8_t b[128];
	struct nbd_info_opt io;
	uint32_t name_len;
	unsigned n;
	size_t len;

	memset(b, 'x', sizeof(b));
	for (len = 0; len <= 60; len++) {
		for (name_len = 0; name_len <= 64; name_len++) {
			for (n = 0; n <= 30; n++) {
				int rc, want;

				nbd_put32(b, name_len);
				if (4 + name_len + 2 <= sizeof(b))
					nbd_put16(b + 4 + name_len, (uint16_t)n);
				want = 6 + name_len + 2 * n == len ? 0 : -EINVAL;
				rc = nbd_parse_info_opt(b, len, &io);
				if (rc != want)
					fail_msg("len %zu name_len %u n %u: got %d want %d", len,
						 name_len, n, rc, want);
				memset(b + 4, 'x', sizeof(b) - 4);
			}
		}
	}
}

static void test_info_opt_names(void **state)
{
	uint8_t *b = calloc(1, 8192);
	struct nbd_info_opt io;
	size_t len;

	assert_non_null(b);
	memset(b + 4, 'n', 4097);
	/* 4096 bytes is the protocol's limit, 4097 is over it */
	nbd_put32(b, 4096);
	nbd_put16(b + 4 + 4096, 0);
	assert_int_equal(nbd_parse_info_opt(b, 4096 + 6, &io), 0);
	nbd_put32(b, 4097);
	nbd_put16(b + 4 + 4097, 0);
	assert_int_equal(nbd_parse_info_opt(b, 4097 + 6, &io), -ENAMETOOLONG);
	assert_int_equal(nbd_opt_err_from_errno(-ENAMETOOLONG), NBD_REP_ERR_TOO_BIG);
	/* NUL inside, at the start, at the end */
	len = info_payload(b, 3, "a\0b", 3, 0, NULL, 0);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	len = info_payload(b, 3, "\0ab", 3, 0, NULL, 0);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	len = info_payload(b, 3, "ab\0", 3, 0, NULL, 0);
	assert_int_equal(nbd_parse_info_opt(b, len, &io), -EINVAL);
	assert_int_equal(nbd_opt_err_from_errno(-EINVAL), NBD_REP_ERR_INVALID);
	free(b);
}

/* Random bytes must never crash the parser; whatever it accepts is
 * self-consistent. (ASan in the sanitizer build catches overreads.) */
static void test_info_opt_random(void **state)
{
	struct nbd_info_opt io;
	unsigned i, seed = 12345;

	for (i = 0; i < 20000; i++) {
		size_t len = (seed = seed * 1103515245u + 12345u) % 80, j;
		uint8_t *b = malloc(len ? len : 1);

		assert_non_null(b);
		for (j = 0; j < len; j++)
			b[j] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 16);
		if (len >= 4 && (seed & 1)) /* make plausible name lengths common */
			nbd_put32(b, (uint32_t)(seed >> 8) % 16);
		if (nbd_parse_info_opt(b, len, &io) == 0)
			assert_int_equal(6 + io.name_len + 2u * io.n_info, len);
		free(b);
	}
}

static void test_check_name(void **state)
{
	static uint8_t big[NBD_MAX_STRING + 1];

	memset(big, 'a', sizeof(big));
	assert_int_equal(nbd_check_name(NULL, 0), 0);
	assert_int_equal(nbd_check_name(big, NBD_MAX_STRING), 0);
	assert_int_equal(nbd_check_name(big, NBD_MAX_STRING + 1), -ENAMETOOLONG);
	assert_int_equal(nbd_check_name((const uint8_t *)"a\0", 2), -EINVAL);
}

static void test_name_matches(void **state)
{
	const uint8_t *n = (const uint8_t *)"export";

	assert_true(nbd_name_matches(n, 0, NULL));
	assert_true(nbd_name_matches(n, 0, "export"));
	assert_true(nbd_name_matches(n, 6, "export"));
	assert_false(nbd_name_matches(n, 6, NULL));
	assert_false(nbd_name_matches(n, 5, "export"));
	assert_false(nbd_name_matches((const uint8_t *)"exports", 7, "export"));
	assert_false(nbd_name_matches(n, 6, "Export"));
	assert_false(nbd_name_matches(n, 6, ""));
}

static void test_encode_handshake(void **state)
{
	uint8_t b[NBD_EXPORT_NAME_REPLY_MAX + 8];
	static const uint8_t greeting[NBD_GREETING_LEN] = {
	    'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C', 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 3};

	nbd_encode_greeting(b);
	assert_memory_equal(b, greeting, sizeof(greeting));

	memset(b, 0xff, sizeof(b));
	assert_int_equal(
	    nbd_encode_export_name_reply(b, sizeof(b), 0x1122334455667788ull, 0x0155, false), 134);
	assert_true(nbd_get64(b) == 0x1122334455667788ull);
	assert_int_equal(nbd_get16(b + 8), 0x0155);
	for (int i = 10; i < 134; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(b[134], 0xff);
	assert_int_equal(nbd_encode_export_name_reply(b, sizeof(b), 1, 1, true), 10);
	assert_int_equal(nbd_encode_export_name_reply(b, 133, 1, 1, false), 0);
	assert_int_equal(nbd_encode_export_name_reply(b, 9, 1, 1, true), 0);
}

static void test_encode_opt_replies(void **state)
{
	uint8_t b[NBD_MAX_STRING + 64];

	assert_int_equal(nbd_encode_opt_reply(b, sizeof(b), NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, 0),
			 20);
	assert_true(nbd_get64(b) == NBD_REP_MAGIC);
	assert_int_equal(nbd_get32(b + 8), NBD_OPT_GO);
	assert_int_equal(nbd_get32(b + 12), 0x80000006u);
	assert_int_equal(nbd_get32(b + 16), 0);
	assert_int_equal(nbd_encode_opt_reply(b, 19, 1, 1, 0), 0);

	assert_int_equal(nbd_encode_info_export(b, sizeof(b), NBD_OPT_INFO, 64 * MIB, 0x10d), 32);
	assert_int_equal(nbd_get32(b + 12), NBD_REP_INFO);
	assert_int_equal(nbd_get32(b + 16), 12);
	assert_int_equal(nbd_get16(b + 20), NBD_INFO_EXPORT);
	assert_true(nbd_get64(b + 22) == 64 * MIB);
	assert_int_equal(nbd_get16(b + 30), 0x10d);
	assert_int_equal(nbd_encode_info_export(b, 31, NBD_OPT_INFO, 1, 1), 0);

	assert_int_equal(nbd_encode_info_block_size(b, sizeof(b), NBD_OPT_GO, 512, 4096, 32 * MIB),
			 34);
	assert_int_equal(nbd_get32(b + 16), 14);
	assert_int_equal(nbd_get16(b + 20), NBD_INFO_BLOCK_SIZE);
	assert_int_equal(nbd_get32(b + 22), 512);
	assert_int_equal(nbd_get32(b + 26), 4096);
	assert_int_equal(nbd_get32(b + 30), 32 * MIB);
	assert_int_equal(nbd_encode_info_block_size(b, 33, NBD_OPT_GO, 1, 1, 1), 0);

	assert_int_equal(nbd_encode_info_string(b, sizeof(b), NBD_OPT_GO, NBD_INFO_NAME,
						(const uint8_t *)"exp", 3),
			 25);
	assert_int_equal(nbd_get32(b + 16), 5);
	assert_int_equal(nbd_get16(b + 20), NBD_INFO_NAME);
	assert_memory_equal(b + 22, "exp", 3);
	assert_int_equal(
	    nbd_encode_info_string(b, 24, NBD_OPT_GO, NBD_INFO_NAME, (const uint8_t *)"exp", 3), 0);
	assert_int_equal(
	    nbd_encode_info_string(b, sizeof(b), NBD_OPT_GO, NBD_INFO_NAME, b, NBD_MAX_STRING + 1),
	    0);

	assert_int_equal(nbd_encode_rep_server(b, sizeof(b), NBD_OPT_LIST, NULL, 0), 24);
	assert_int_equal(nbd_get32(b + 12), NBD_REP_SERVER);
	assert_int_equal(nbd_get32(b + 16), 4);
	assert_int_equal(nbd_get32(b + 20), 0);
	assert_int_equal(
	    nbd_encode_rep_server(b, sizeof(b), NBD_OPT_LIST, (const uint8_t *)"ab", 2), 26);
	assert_int_equal(nbd_get32(b + 16), 6);
	assert_int_equal(nbd_get32(b + 20), 2);
	assert_memory_equal(b + 24, "ab", 2);
	assert_int_equal(nbd_encode_rep_server(b, 25, NBD_OPT_LIST, (const uint8_t *)"ab", 2), 0);
}

static void test_simple_reply(void **state)
{
	uint8_t b[NBD_SIMPLE_REPLY_LEN];

	nbd_encode_simple_reply(b, NBD_EINVAL, 0x0102030405060708ull);
	assert_int_equal(nbd_get32(b), 0x67446698u);
	assert_int_equal(nbd_get32(b + 4), 22);
	assert_true(nbd_get64(b + 8) == 0x0102030405060708ull);
}

static void test_flags(void **state)
{
	uint16_t rw = nbd_transmission_flags(false), ro = nbd_transmission_flags(true);

	assert_true(rw & NBD_FLAG_HAS_FLAGS);
	assert_true(rw & NBD_FLAG_SEND_FLUSH);
	assert_true(rw & NBD_FLAG_SEND_FUA);
	assert_true(rw & NBD_FLAG_SEND_TRIM);
	assert_true(rw & NBD_FLAG_SEND_WRITE_ZEROES);
	assert_true(rw & NBD_FLAG_CAN_MULTI_CONN);
	assert_false(rw & NBD_FLAG_READ_ONLY);
	/* nothing we do not implement */
	assert_false(rw & (NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO |
			   NBD_FLAG_SEND_RESIZE | NBD_FLAG_ROTATIONAL));
	assert_int_equal(ro, rw | NBD_FLAG_READ_ONLY);
}

static void test_errno_map(void **state)
{
	assert_int_equal(nbd_errno_to_nbd(0), 0);
	assert_int_equal(nbd_errno_to_nbd(-EPERM), NBD_EPERM);
	assert_int_equal(nbd_errno_to_nbd(-EROFS), NBD_EPERM);
	assert_int_equal(nbd_errno_to_nbd(-EIO), NBD_EIO);
	assert_int_equal(nbd_errno_to_nbd(-ENOMEM), NBD_ENOMEM);
	assert_int_equal(nbd_errno_to_nbd(-EINVAL), NBD_EINVAL);
	assert_int_equal(nbd_errno_to_nbd(-ENOSPC), NBD_ENOSPC);
	assert_int_equal(nbd_errno_to_nbd(-EDQUOT), NBD_ENOSPC);
	assert_int_equal(nbd_errno_to_nbd(-EFBIG), NBD_ENOSPC);
	assert_int_equal(nbd_errno_to_nbd(-EOVERFLOW), NBD_EOVERFLOW);
	assert_int_equal(nbd_errno_to_nbd(-ENOTSUP), NBD_ENOTSUP);
	assert_int_equal(nbd_errno_to_nbd(-EOPNOTSUPP), NBD_ENOTSUP);
	assert_int_equal(nbd_errno_to_nbd(-ESHUTDOWN), NBD_ESHUTDOWN);
	assert_int_equal(nbd_errno_to_nbd(EIO), NBD_EIO); /* positive errno too */
	/* integrity failures and anything unexpected are I/O errors */
	assert_int_equal(nbd_errno_to_nbd(-EBADMSG), NBD_EIO);
	assert_int_equal(nbd_errno_to_nbd(-ETIMEDOUT), NBD_EIO);
	assert_int_equal(nbd_errno_to_nbd(-ENOENT), NBD_EIO);
	assert_int_equal(nbd_errno_to_nbd(-9999), NBD_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_endian),
	    cmocka_unit_test(test_request_parse),
	    cmocka_unit_test(test_request_bad_magic),
	    cmocka_unit_test(test_payload_len),
	    cmocka_unit_test(test_check_request),
	    cmocka_unit_test(test_client_flags),
	    cmocka_unit_test(test_opt_hdr),
	    cmocka_unit_test(test_info_opt_valid),
	    cmocka_unit_test(test_info_opt_lengths),
	    cmocka_unit_test(test_info_opt_exhaustive),
	    cmocka_unit_test(test_info_opt_names),
	    cmocka_unit_test(test_info_opt_random),
	    cmocka_unit_test(test_check_name),
	    cmocka_unit_test(test_name_matches),
	    cmocka_unit_test(test_encode_handshake),
	    cmocka_unit_test(test_encode_opt_replies),
	    cmocka_unit_test(test_simple_reply),
	    cmocka_unit_test(test_flags),
	    cmocka_unit_test(test_errno_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
