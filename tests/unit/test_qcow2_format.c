/* The qcow2 format layer: valid headers parse to the documented fields,
 * every hostile header is refused with a reason, L2 entries decode by
 * the spec's bit layout, refcount arithmetic works for every width, the
 * encoder round-trips, and random corruption never crashes the parser.
 * The image creators are parsed back, and checked by qemu-img when it is
 * installed. Offsets are written out again from QEMU's
 * docs/interop/qcow2.txt on purpose: if the code drifts from the spec,
 * these tests fail. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/block/chain.h"
#include "tapdisk/block/driver.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/loop.h"
#include "tapdisk/qcow2/qcow2.h"
#include "tapdisk/qcow2/qcow2_format.h"
#include "tapdisk/registry/registry.h"

#define CS 65536u
#define FILE_SIZE (16u * CS)

static uint8_t buf[CS];
static char err[512];

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

/* A valid v3 image header: 64 KiB clusters, 1 GiB, reftable at cluster 1,
 * L1 at cluster 3, feature table and backing format extensions, backing
 * name after them. */
static void make_valid(uint8_t *b)
{
	memset(b, 0, CS);
	be32(b + 0, 0x514649fb);
	be32(b + 4, 3);
	be32(b + 20, 16);
	be64(b + 24, 1ull << 30);
	be32(b + 36, 2); /* 1 GiB / 512 MiB per L2 table */
	be64(b + 40, 3 * CS);
	be64(b + 48, 1 * CS);
	be32(b + 56, 1);
	be32(b + 96, 4);
	be32(b + 100, 112);
	/* feature name table: incompatible bit 0 "dirty bit" */
	be32(b + 112, 0x6803f857);
	be32(b + 116, 48);
	b[120] = 0;
	b[121] = 0;
	memcpy(b + 122, "dirty bit", 9);
	/* backing format "qcow2" */
	be32(b + 168, 0xe2792aca);
	be32(b + 172, 5);
	memcpy(b + 176, "qcow2", 5);
	/* end, then the backing name */
	memcpy(b + 192, "base.qcow2", 10);
	be64(b + 8, 192);
	be32(b + 16, 10);
}

static int parse(unsigned flags, struct qcow2_hdr *h)
{
	err[0] = 0;
	return qcow2_hdr_parse(buf, CS, FILE_SIZE, flags, h, err, sizeof(err));
}

static void test_valid(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	make_valid(buf);
	assert_int_equal(parse(QCOW2_PARSE_WRITABLE, &h), 0);
	assert_int_equal(h.version, 3);
	assert_int_equal(h.cluster_size, CS);
	assert_int_equal(h.size, 1ull << 30);
	assert_int_equal(h.l1_size, 2);
	assert_int_equal(h.l1_needed, 2);
	assert_int_equal(h.l1_offset, 3 * CS);
	assert_int_equal(h.rt_offset, CS);
	assert_int_equal(h.rt_entries, CS / 8);
	assert_int_equal(h.rb_entries, CS * 8 / 16);
	assert_int_equal(h.l2_bits, 13);
	assert_string_equal(h.backing, "base.qcow2");
	assert_string_equal(h.backing_fmt, "qcow2");
	assert_int_equal(qcow2_hdr_cluster_size(buf, CS), CS);
}

static void test_v2(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	make_valid(buf);
	be32(buf + 4, 2);
	memset(buf + 72, 0, 192 - 72); /* no v3 fields; extensions right after 72 */
	be32(buf + 72, 0xe2792aca);
	be32(buf + 76, 3);
	memcpy(buf + 80, "raw", 3);
	assert_int_equal(parse(0, &h), 0);
	assert_int_equal(h.refcount_order, 4);
	assert_string_equal(h.backing_fmt, "raw");
	assert_int_equal(parse(QCOW2_PARSE_WRITABLE, &h), -ENOTSUP);
	assert_non_null(strstr(err, "version 2"));
}

struct hostile {
	const char *name;
	unsigned off; /* field offset */
	unsigned width;
	uint64_t value;
	const char *expect; /* substring of the message */
};

static const struct hostile cases[] = {
    {"bad magic", 0, 4, 0x51464900, "bad magic"},
    {"version 1", 4, 4, 1, "version 1"},
    {"version 4", 4, 4, 4, "version 4"},
    {"cluster_bits 8", 20, 4, 8, "cluster_bits 8"},
    {"cluster_bits 30", 20, 4, 30, "cluster_bits 30"},
    {"cluster_bits huge", 20, 4, 0xffffffff, "cluster_bits"},
    {"crypt aes", 32, 4, 1, "use the crypt layer above"},
    {"crypt luks", 32, 4, 2, "qcow2 encryption is not supported"},
    {"l1 unaligned", 40, 8, 3 * CS + 512, "L1 table offset"},
    {"l1 past eof", 40, 8, 64ull * CS, "L1 table offset"},
    {"l1 offset huge", 40, 8, ~0ull - 4095, "L1 table offset"},
    {"l1 over header", 40, 8, 0, "overlaps"},
    {"l1 over reftable", 40, 8, CS, "overlaps"},
    {"l1 too large", 36, 4, 0x10000000, "too large"},
    {"l1 too small", 36, 4, 1, "too small"},
    {"rt unaligned", 48, 8, CS + 8, "refcount table offset"},
    {"rt past eof", 48, 8, 15ull * CS + CS, "refcount table offset"},
    {"rt over header", 48, 8, 0, "overlaps"},
    {"rt empty", 56, 4, 0, "refcount table of 0"},
    {"rt too large", 56, 4, 1000, "too large"},
    {"size overflow", 24, 8, 1ull << 63, "too large"},
    {"size needs more l1", 24, 8, 1ull << 40, "too small"},
    {"dirty", 72, 8, 1, "dirty bit"},
    {"corrupt", 72, 8, 2, "marked corrupt"},
    {"data file", 72, 8, 4, "external data file"},
    {"compression bit without type", 72, 8, 8, "compression type"},
    {"extended l2", 72, 8, 16, "subclusters"},
    {"unknown incompat", 72, 8, 1ull << 9, "bit 9"},
    {"refcount order 7", 96, 4, 7, "refcount_order"},
    {"header length small", 100, 4, 96, "header_length"},
    {"header length odd", 100, 4, 116, "header_length"},
    {"header length huge", 100, 4, CS + 8, "header_length"},
    {"backing name too long", 16, 4, 1024, "length"},
    {"backing name outside", 8, 8, CS - 4, "outside"},
    {"backing offset huge", 8, 8, ~0ull, "outside"},
    {"extension overruns", 116, 4, 0xfffffff0, "overruns"},
    {"snapshots (writable)", 60, 4, 1, "snapshot"},
};

static void put_field(uint8_t *b, unsigned off, unsigned width, uint64_t v)
{
	if (width == 4)
		be32(b + off, (uint32_t)v);
	else
		be64(b + off, v);
}

static void test_hostile(void **state)
{
	struct qcow2_hdr h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		make_valid(buf);
		put_field(buf, cases[i].off, cases[i].width, cases[i].value);
		rc = parse(QCOW2_PARSE_WRITABLE, &h);
		if (rc == 0 || !strstr(err, cases[i].expect))
			fail_msg("case '%s': rc %d, message '%s' (want '%s')", cases[i].name, rc,
				 err, cases[i].expect);
		assert_true(strlen(err) > 10);
		assert_null(strchr(err, '\n'));
	}
}

static void test_named_feature(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	make_valid(buf);
	buf[121] = 12; /* the table names bit 12 */
	memcpy(buf + 122, "frobnication\0\0\0", 15);
	be64(buf + 72, 1ull << 12);
	assert_int_equal(parse(0, &h), -ENOTSUP);
	assert_non_null(strstr(err, "frobnication"));
}

static void test_readonly_tolerates(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	/* dirty, corrupt and snapshots only stop writers */
	make_valid(buf);
	be64(buf + 72, 3);
	be32(buf + 60, 1);
	be64(buf + 64, 4 * CS);
	assert_int_equal(parse(0, &h), 0);
	assert_int_not_equal(parse(QCOW2_PARSE_WRITABLE, &h), 0);
}

static void test_compression_type(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	make_valid(buf);
	be64(buf + 72, 8);
	buf[104] = 1; /* zstd, with its bit: accepted (compressed clusters fail per I/O) */
	assert_int_equal(parse(QCOW2_PARSE_WRITABLE, &h), 0);
	assert_int_equal(h.compression_type, 1);
	be64(buf + 72, 0);
	assert_int_not_equal(parse(0, &h), 0); /* type without the bit */
}

static void test_short(void **state)
{
	struct qcow2_hdr h;

	(void)state;
	make_valid(buf);
	assert_int_not_equal(qcow2_hdr_parse(buf, CS, 50, 0, &h, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "too short"));
	assert_int_not_equal(qcow2_hdr_parse(buf, 40, FILE_SIZE, 0, &h, err, sizeof(err)), 0);
	/* tables past a truncated file */
	assert_int_not_equal(qcow2_hdr_parse(buf, CS, 3 * CS, 0, &h, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "L1 table offset"));
}

static void test_l2_decode(void **state)
{
	uint64_t host;
	bool copied;

	(void)state;
	assert_int_equal(qcow2_l2_decode(0, 3, 16, &host, &copied), QCOW2_C_UNALLOC);
	assert_int_equal(qcow2_l2_decode(1ull << 63 | 5 * CS, 3, 16, &host, &copied),
			 QCOW2_C_NORMAL);
	assert_int_equal(host, 5 * CS);
	assert_true(copied);
	assert_int_equal(qcow2_l2_decode(5 * CS, 3, 16, &host, &copied), QCOW2_C_NORMAL);
	assert_false(copied);
	assert_int_equal(qcow2_l2_decode(1, 3, 16, &host, &copied), QCOW2_C_ZERO_PLAIN);
	assert_int_equal(qcow2_l2_decode(1ull << 63 | 7 * CS | 1, 3, 16, &host, &copied),
			 QCOW2_C_ZERO_ALLOC);
	assert_int_equal(host, 7 * CS);
	assert_int_equal(qcow2_l2_decode(1, 2, 16, &host, &copied), QCOW2_C_INVALID);
	assert_int_equal(qcow2_l2_decode(1ull << 62 | 12345, 3, 16, &host, &copied),
			 QCOW2_C_COMPRESSED);
	assert_int_equal(qcow2_l2_decode(5 * CS + 512, 3, 16, &host, &copied),
			 QCOW2_C_INVALID); /* unaligned */
	assert_int_equal(qcow2_l2_decode(5 * CS | 2, 3, 16, &host, &copied),
			 QCOW2_C_INVALID); /* reserved bit 1 */
	assert_int_equal(qcow2_l2_decode(1ull << 56 | 5 * CS, 3, 16, &host, &copied),
			 QCOW2_C_INVALID); /* reserved bit 56 */
	assert_int_equal(qcow2_l2_decode(1ull << 63, 3, 16, &host, &copied),
			 QCOW2_C_INVALID); /* offset 0 with COPIED: external data only */
	/* 4 KiB clusters: 4096-aligned is aligned */
	assert_int_equal(qcow2_l2_decode(3 * 4096, 3, 12, &host, &copied), QCOW2_C_NORMAL);
	/* encoders */
	assert_int_equal(qcow2_l2_normal(9 * CS), 1ull << 63 | 9 * CS);
	assert_int_equal(qcow2_l2_zero_alloc(9 * CS), 1ull << 63 | 9 * CS | 1);
	assert_int_equal(qcow2_l2_zero_plain(), 1);
}

static void test_l1_rt_decode(void **state)
{
	uint64_t off;

	(void)state;
	assert_int_equal(qcow2_l1_decode(0, 16, &off), 0);
	assert_int_equal(qcow2_l1_decode(1ull << 63 | 4 * CS, 16, &off), 1);
	assert_int_equal(off, 4 * CS);
	assert_int_equal(qcow2_l1_decode(4 * CS + 4096, 16, &off), -1);
	assert_int_equal(qcow2_l1_decode(1ull << 60 | 4 * CS, 16, &off), -1);
	assert_int_equal(qcow2_l1_decode(4 * CS | 1, 16, &off), -1);
	assert_int_equal(qcow2_rt_decode(2 * CS, 16, &off), 1);
	assert_int_equal(off, 2 * CS);
	assert_int_equal(qcow2_rt_decode(2 * CS + 8, 16, &off), -1);
	assert_int_equal(qcow2_rt_decode(1ull << 57, 16, &off), -1);
}

static void test_refcounts(void **state)
{
	uint8_t blk[4096];
	uint32_t order;

	(void)state;
	for (order = 0; order <= 6; order++) {
		uint64_t n = qcow2_rb_entries(12, order), max = qcow2_rc_max(order), i;

		assert_int_equal(n, 4096ull * 8 >> order);
		memset(blk, 0, sizeof(blk));
		for (i = 0; i < n; i += 7)
			assert_int_equal(
			    qcow2_rc_set(blk, order, i, (i / 7) % (max < 1000 ? max + 1 : 1000)),
			    0);
		for (i = 0; i < n; i++) {
			uint64_t want = i % 7 ? 0 : (i / 7) % (max < 1000 ? max + 1 : 1000);

			assert_int_equal(qcow2_rc_get(blk, order, i), want);
		}
		if (order < 6)
			assert_int_equal(qcow2_rc_set(blk, order, 0, max + 1), -ERANGE);
	}
	/* 16-bit refcounts are big-endian */
	memset(blk, 0, sizeof(blk));
	qcow2_rc_set(blk, 4, 3, 0x1234);
	assert_int_equal(blk[6], 0x12);
	assert_int_equal(blk[7], 0x34);
	/* 1-bit refcounts: bit 0 is the least significant */
	memset(blk, 0, sizeof(blk));
	qcow2_rc_set(blk, 0, 9, 1);
	assert_int_equal(blk[1], 0x02);
	assert_int_equal(qcow2_rb_entries(16, 4), 32768);
}

static void test_encode_roundtrip(void **state)
{
	struct qcow2_hdr in, out;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.cluster_bits = 16;
	in.size = 10ull << 30;
	in.l1_size = 20;
	in.l1_offset = 3 * CS;
	in.rt_offset = CS;
	in.rt_clusters = 1;
	strcpy(in.backing, "../images/base.raw");
	strcpy(in.backing_fmt, "raw");
	memset(buf, 0, CS);
	assert_int_equal(qcow2_hdr_encode(&in, buf, CS), 0);
	assert_int_equal(
	    qcow2_hdr_parse(buf, CS, FILE_SIZE, QCOW2_PARSE_WRITABLE, &out, err, sizeof(err)), 0);
	assert_int_equal(out.version, 3);
	assert_int_equal(out.size, in.size);
	assert_int_equal(out.l1_size, 20);
	assert_int_equal(out.refcount_order, 4);
	assert_int_equal(out.header_length, 112);
	assert_string_equal(out.backing, in.backing);
	assert_string_equal(out.backing_fmt, "raw");
}

/* Random corruption of a valid header never crashes the parser, and what
 * it accepts keeps its invariants. (Run under SANITIZE=1 for the full
 * value of this test.) */
static void test_fuzz(void **state)
{
	static uint8_t orig[CS];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	struct qcow2_hdr h;
	int iter, accepted = 0;

	(void)state;
	make_valid(orig);
	for (iter = 0; iter < 200000; iter++) {
		int flips, i;

		memcpy(buf, orig, 4096);
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		flips = 1 + (int)(seed % 4);
		for (i = 0; i < flips; i++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			buf[(seed >> 8) % 256] ^= (uint8_t)(1u << (seed % 8));
		}
		if (qcow2_hdr_parse(buf, CS, FILE_SIZE, (unsigned)(iter & 1), &h, err,
				    sizeof(err)) == 0) {
			accepted++;
			assert_true(h.cluster_bits >= 12 && h.cluster_bits <= 21);
			assert_true(h.l1_size >= h.l1_needed);
			assert_true(h.l1_offset + (uint64_t)h.l1_size * 8 <= FILE_SIZE);
			assert_true(h.rt_offset + (uint64_t)h.rt_clusters * h.cluster_size <=
				    FILE_SIZE);
			assert_int_equal(h.crypt_method, 0);
			assert_true(strlen(h.backing) <= QCOW2_MAX_BACKING_NAME);
		} else {
			assert_true(err[0] != 0);
		}
	}
	assert_true(accepted > 0);
}

static char tmpdir[] = "/tmp/tdq2.XXXXXX";

static bool have_qemu_img(void)
{
	return system("command -v qemu-img >/dev/null 2>&1") == 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Reads an image's first cluster and parses it. */
static int parse_file(const char *path, struct qcow2_hdr *h)
{
	static uint8_t b[2u << 20];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	memset(b, 0, sizeof(b));
	n = pread(fd, b, sizeof(b), 0);
	close(fd);
	assert_true(n >= 104);
	return qcow2_hdr_parse(b, (size_t)qcow2_hdr_cluster_size(b, (size_t)n),
			       (uint64_t)st.st_size, QCOW2_PARSE_WRITABLE, h, err, sizeof(err));
}

static void test_create(void **state)
{
	static const uint64_t sizes[] = {4096, 65536, 2u << 20};
	struct qcow2_hdr h;
	char path[256];
	size_t i;

	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/new-%zu.qcow2", tmpdir, i);
		assert_int_equal(td_qcow2_create(path, 10ull << 30, sizes[i], err, sizeof(err)), 0);
		assert_int_equal(parse_file(path, &h), 0);
		assert_int_equal(h.version, 3);
		assert_int_equal(h.cluster_size, sizes[i]);
		assert_int_equal(h.size, 10ull << 30);
		assert_int_equal(h.refcount_order, 4);
		assert_string_equal(h.backing, "");
		/* the refcount table counts the whole disk twice over */
		assert_true(h.rt_entries * h.rb_entries * h.cluster_size >= 20ull << 30);
		if (have_qemu_img())
			assert_int_equal(sh("qemu-img check -q '%s'", path), 0);
		/* never overwrites */
		assert_int_not_equal(td_qcow2_create(path, 1 << 20, sizes[i], err, sizeof(err)), 0);
		assert_non_null(strstr(err, "exists"));
	}
	snprintf(path, sizeof(path), "%s/bad.qcow2", tmpdir);
	assert_int_not_equal(td_qcow2_create(path, 1 << 20, 3000, err, sizeof(err)), 0);
	assert_int_not_equal(td_qcow2_create(path, 1 << 20, 4u << 20, err, sizeof(err)), 0);
	assert_int_not_equal(td_qcow2_create(path, 1000, 65536, err, sizeof(err)), 0);
	assert_int_not_equal(access(path, F_OK), 0);
}

static void test_create_overlay(void **state)
{
	struct qcow2_hdr h;
	char base[256], mid[256], top[256];
	uint8_t pat[8192];
	int fd;

	(void)state;
	snprintf(base, sizeof(base), "%s/base.raw", tmpdir);
	snprintf(mid, sizeof(mid), "%s/mid.qcow2", tmpdir);
	snprintf(top, sizeof(top), "%s/top.qcow2", tmpdir);
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	memset(pat, 0x3c, sizeof(pat));
	assert_int_equal(pwrite(fd, pat, sizeof(pat), 1 << 20), (ssize_t)sizeof(pat));
	assert_int_equal(ftruncate(fd, (3 << 20) + 100), 0); /* odd size: rounded up to 512 */
	close(fd);
	/* relative name, raw backing detected, size from the backing file */
	assert_int_equal(td_qcow2_create_overlay(mid, "base.raw", 0, err, sizeof(err)), 0);
	assert_int_equal(parse_file(mid, &h), 0);
	assert_string_equal(h.backing, "base.raw");
	assert_string_equal(h.backing_fmt, "raw");
	assert_int_equal(h.size, (3 << 20) + 512);
	assert_int_equal(h.cluster_size, 65536);
	/* absolute name, qcow2 backing detected, larger size */
	assert_int_equal(td_qcow2_create_overlay(top, mid, 8 << 20, err, sizeof(err)), 0);
	assert_int_equal(parse_file(top, &h), 0);
	assert_string_equal(h.backing, mid);
	assert_string_equal(h.backing_fmt, "qcow2");
	assert_int_equal(h.size, 8 << 20);
	assert_int_not_equal(td_qcow2_create_overlay(top, mid, 0, err, sizeof(err)), 0);
	snprintf(base, sizeof(base), "%s/none.qcow2", tmpdir);
	assert_int_not_equal(td_qcow2_create_overlay(base, "missing", 0, err, sizeof(err)), 0);
	if (have_qemu_img()) {
		assert_int_equal(sh("qemu-img check -q '%s'", top), 0);
		/* QEMU reads the raw base through both overlays */
		assert_int_equal(sh("qemu-io -f qcow2 -c 'read -P 0x3c 1M 8k' -c 'read -P 0 7M 1M' "
				    "'%s' 2>&1 | grep -qi 'verification failed'",
				    top),
				 256);
	}
	sh("rm -rf '%s'", tmpdir);
}

/* The driver itself, in process, on images our creators made: write,
 * flush, read back, zero, discard; then an overlay (what a live snapshot
 * makes) reads through to it and takes writes, the base untouched. */
static void fill(uint8_t *b, size_t n, uint8_t v)
{
	memset(b, v, n);
}

static void expect(struct td_layer *top, uint64_t off, size_t n, uint8_t v, uint8_t *b)
{
	assert_int_equal(td_layer_sync_io(top, TD_OP_READ, off, b, n, 0), 0);
	for (size_t i = 0; i < n; i++)
		if (b[i] != v)
			fail_msg("byte %llu: %02x, want %02x", (unsigned long long)(off + i), b[i],
				 v);
}

static void test_driver_roundtrip(void **state)
{
	struct td_ctx ctx;
	struct td_chain *c;
	char img[256], ovl[256], spec[300];
	uint8_t *b = NULL;
	char dir[] = "/tmp/tdq2d.XXXXXX";

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/base.qcow2", dir);
	snprintf(ovl, sizeof(ovl), "%s/snap.qcow2", dir);
	assert_int_equal(posix_memalign((void **)&b, 4096, 1 << 20), 0);
	memset(&ctx, 0, sizeof(ctx));
	ctx.loop = td_loop_new();
	assert_non_null(ctx.loop);
	ctx.io = td_io_new(ctx.loop, 64);
	assert_non_null(ctx.io);

	assert_int_equal(td_qcow2_create(img, 64 << 20, 65536, err, sizeof(err)), 0);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(td_chain_open(&ctx, spec, &c, err, sizeof(err)), 0);
	assert_int_equal(c->top->size, 64 << 20);
	fill(b, 1 << 20, 0x5e);
	assert_int_equal(td_layer_sync_io(c->top, TD_OP_WRITE, 3 << 20, b, 1 << 20, 0), 0);
	fill(b, 4096, 0x6f);
	assert_int_equal(td_layer_sync_io(c->top, TD_OP_WRITE, 40960, b, 4096, TD_REQ_FUA), 0);
	assert_int_equal(td_layer_sync_io(c->top, TD_OP_FLUSH, 0, NULL, 0, 0), 0);
	expect(c->top, 3 << 20, 1 << 20, 0x5e, b);
	expect(c->top, 40960, 4096, 0x6f, b);
	expect(c->top, 36864, 4096, 0, b);
	expect(c->top, 60 << 20, 1 << 20, 0, b);
	assert_int_equal(
	    td_layer_sync_io(c->top, TD_OP_WRITE_ZEROES, (3 << 20) + 4096, NULL, 196608, 0), 0);
	assert_int_equal(
	    td_layer_sync_io(c->top, TD_OP_DISCARD, (3 << 20) + 262144, NULL, 262144, 0), 0);
	expect(c->top, 3 << 20, 4096, 0x5e, b);
	expect(c->top, (3 << 20) + 4096, 196608, 0, b);
	expect(c->top, (3 << 20) + 262144, 262144, 0, b);
	expect(c->top, (3 << 20) + 524288, 524288, 0x5e, b);
	td_chain_close_sync(c);
	if (have_qemu_img())
		assert_int_equal(sh("qemu-img check -q '%s'", img), 0);

	/* the snapshot overlay */
	assert_int_equal(td_qcow2_create_overlay(ovl, img, 0, err, sizeof(err)), 0);
	if (have_qemu_img())
		sh("sha256sum '%s' > '%s/sum'", img, dir);
	snprintf(spec, sizeof(spec), "qcow2:%s", ovl);
	assert_int_equal(td_chain_open(&ctx, spec, &c, err, sizeof(err)), 0);
	expect(c->top, (3 << 20) + 524288, 524288, 0x5e, b);
	expect(c->top, 40960, 4096, 0x6f, b);
	fill(b, 8192, 0x7a);
	assert_int_equal(td_layer_sync_io(c->top, TD_OP_WRITE, (3 << 20) + 532480, b, 8192, 0), 0);
	assert_int_equal(td_layer_sync_io(c->top, TD_OP_FLUSH, 0, NULL, 0, 0), 0);
	expect(c->top, (3 << 20) + 524288, 8192, 0x5e, b); /* copied up */
	expect(c->top, (3 << 20) + 532480, 8192, 0x7a, b);
	/* the backing file is read-locked: it cannot be opened for writing */
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	{
		struct td_chain *c2;

		assert_int_not_equal(td_chain_open(&ctx, spec, &c2, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "locked"));
	}
	td_chain_close_sync(c);
	if (have_qemu_img()) {
		assert_int_equal(sh("qemu-img check -q '%s'", ovl), 0);
		assert_int_equal(sh("cd '%s' && sha256sum -c --quiet sum", dir), 0);
	}
	td_io_free(ctx.io);
	td_loop_free(ctx.loop);
	free(b);
	sh("rm -rf '%s'", dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_v2),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_named_feature),
	    cmocka_unit_test(test_readonly_tolerates),
	    cmocka_unit_test(test_compression_type),
	    cmocka_unit_test(test_short),
	    cmocka_unit_test(test_l2_decode),
	    cmocka_unit_test(test_l1_rt_decode),
	    cmocka_unit_test(test_refcounts),
	    cmocka_unit_test(test_encode_roundtrip),
	    cmocka_unit_test(test_fuzz),
	    cmocka_unit_test(test_create),
	    cmocka_unit_test(test_create_overlay),
	    cmocka_unit_test(test_driver_roundtrip),
	};

	td_drivers_set(td_registry());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
