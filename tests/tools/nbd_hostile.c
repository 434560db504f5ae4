/* nbd_hostile: hostile and broken NBD clients against a server.
 *
 *   nbd_hostile SOCKET [SERVER_PID]
 *
 * Speaks raw NBD over a Unix socket (no libnbd, so it can send what no
 * real client would). Each case is a named sub-test printing "ok NAME" or
 * "not ok NAME"; after every case a fresh, well-behaved client must still
 * complete a handshake, write a pattern and read it back. With
 * SERVER_PID, the server must stay alive and its VmRSS must stay below
 * RSS_LIMIT_KB during the flood cases. Exit status 1 if anything failed.
 * NBD_HOSTILE_ONLY=name1,name2 runs only the cases whose names are listed.
 *
 * Server behaviour checked here (documented in tapdisk/nbd/nbd.h): oversized
 * writes are drained then EINVAL; writes past the end get ENOSPC, reads and
 * trims EINVAL; bad magics and unknown client flags close the connection. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tapdisk/nbd/nbd_proto.h"

#define IO_TIMEOUT_S 15
#define RSS_LIMIT_KB (256 * 1024)
#define MIB (1024u * 1024u)
#define MAX_IO (32u * MIB)

static const char *sock_path;
static pid_t server_pid;
static uint64_t export_size;
static char fail_msg[512];

/* Records why the current case failed (first reason wins). */
static void __attribute__((format(printf, 1, 2))) failf(const char *fmt, ...)
{
	va_list ap;

	if (fail_msg[0])
		return;
	va_start(ap, fmt);
	vsnprintf(fail_msg, sizeof(fail_msg), fmt, ap);
	va_end(ap);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failf(__VA_ARGS__);                                                        \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static long server_rss_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	if (!server_pid)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)server_pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static bool server_alive(void)
{
	return !server_pid || kill(server_pid, 0) == 0;
}

/* Peak server VmRSS seen by rss_sample(), at most one /proc read per 20 ms. */
static long rss_peak_kb;
static uint64_t rss_last_ms;

static void rss_sample(void)
{
	long kb;

	if (!server_pid || now_ms() - rss_last_ms < 20)
		return;
	rss_last_ms = now_ms();
	kb = server_rss_kb();
	if (kb > rss_peak_kb)
		rss_peak_kb = kb;
}

/* ---- raw socket helpers ---- */

static int xconnect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct timeval tv = {IO_TIMEOUT_S, 0};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void xclose(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* 0 on success, 1 on EOF, -1 on error or timeout. */
static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = recv(fd, p, n, 0);

		if (r == 0)
			return 1;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == ECONNRESET ? 1 : -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The server must close: EOF (after at most some leftover bytes) within
 * the timeout. */
static bool expect_eof(int fd)
{
	uint8_t buf[4096];
	size_t total = 0;

	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return false;
		total += (size_t)r;
		if (total > MIB)
			return false;
	}
}

/* ---- handshake helpers ---- */

static int read_greeting(int fd)
{
	uint8_t g[NBD_GREETING_LEN];
	int rc = read_full(fd, g, sizeof(g));

	if (rc)
		return rc;
	if (nbd_get64(g) != NBD_MAGIC || nbd_get64(g + 8) != NBD_IHAVEOPT)
		return -1;
	if (!(nbd_get16(g + 16) & NBD_FLAG_FIXED_NEWSTYLE))
		return -1;
	return 0;
}

static int send_cflags(int fd, uint32_t flags)
{
	uint8_t b[4];

	nbd_put32(b, flags);
	return write_full(fd, b, 4);
}

/* Connects and finishes the greeting. The server may refuse a connection
 * when at its limit (it closes at once), and closed connections of an
 * earlier case may not be reaped yet, so refusals are retried briefly. */
static int hs_open(uint32_t cflags)
{
	uint64_t deadline = now_ms() + 5000;

	for (;;) {
		int fd = xconnect(), rc;

		if (fd < 0)
			return -1;
		rc = read_greeting(fd);
		if (rc == 0) {
			if (send_cflags(fd, cflags) < 0) {
				close(fd);
				return -1;
			}
			return fd;
		}
		close(fd);
		if (rc < 0 || now_ms() > deadline)
			return -1;
		sleep_ms(50);
	}
}

static int send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[NBD_OPT_HDR_LEN];

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	if (write_full(fd, h, sizeof(h)) < 0)
		return -1;
	return len ? write_full(fd, data, len) : 0;
}

struct opt_reply {
	uint32_t opt, type, len;
	uint8_t data[NBD_MAX_STRING + 64];
};

static int read_opt_reply(int fd, struct opt_reply *r)
{
	uint8_t h[NBD_OPT_REPLY_HDR_LEN];

	if (read_full(fd, h, sizeof(h)))
		return -1;
	if (nbd_get64(h) != NBD_REP_MAGIC)
		return -1;
	r->opt = nbd_get32(h + 8);
	r->type = nbd_get32(h + 12);
	r->len = nbd_get32(h + 16);
	if (r->len > sizeof(r->data))
		return -1;
	return r->len ? (read_full(fd, r->data, r->len) ? -1 : 0) : 0;
}

/* Sends an option and expects exactly one reply of the given type. */
static bool opt_expect(int fd, uint32_t opt, const void *data, uint32_t len, uint32_t type)
{
	struct opt_reply r;

	if (send_opt(fd, opt, data, len) < 0 || read_opt_reply(fd, &r) < 0)
		return false;
	return r.opt == opt && r.type == type;
}

static size_t build_info(uint8_t *buf, const char *name, size_t name_len, const uint16_t *infos,
			 unsigned n)
{
	unsigned i;

	nbd_put32(buf, (uint32_t)name_len);
	memcpy(buf + 4, name, name_len);
	nbd_put16(buf + 4 + name_len, (uint16_t)n);
	for (i = 0; i < n; i++)
		nbd_put16(buf + 6 + name_len + 2 * i, infos[i]);
	return 6 + name_len + 2 * n;
}

struct go_result {
	uint32_t err; /* 0 or the NBD_REP_ERR_* received */
	uint64_t size;
	uint16_t tflags;
	uint32_t bmin, bpref, bmax;
	bool got_export, got_block, got_name;
	char name[NBD_MAX_STRING + 1];
};

/* INFO or GO: reads NBD_REP_INFO replies until the ACK or an error. */
static int info_go(int fd, uint32_t opt, const char *name, const uint16_t *infos, unsigned n,
		   struct go_result *g)
{
	uint8_t buf[NBD_MAX_STRING + 64];
	struct opt_reply r;
	size_t len = build_info(buf, name, strlen(name), infos, n);

	memset(g, 0, sizeof(*g));
	if (send_opt(fd, opt, buf, (uint32_t)len) < 0)
		return -1;
	for (;;) {
		if (read_opt_reply(fd, &r) < 0 || r.opt != opt)
			return -1;
		if (r.type == NBD_REP_ACK)
			return g->got_export ? 0 : -1;
		if (r.type & NBD_REP_FLAG_ERROR) {
			g->err = r.type;
			return 0;
		}
		if (r.type != NBD_REP_INFO || r.len < 2)
			return -1;
		switch (nbd_get16(r.data)) {
		case NBD_INFO_EXPORT:
			if (r.len != 12)
				return -1;
			g->size = nbd_get64(r.data + 2);
			g->tflags = nbd_get16(r.data + 10);
			g->got_export = true;
			break;
		case NBD_INFO_BLOCK_SIZE:
			if (r.len != 14)
				return -1;
			g->bmin = nbd_get32(r.data + 2);
			g->bpref = nbd_get32(r.data + 6);
			g->bmax = nbd_get32(r.data + 10);
			g->got_block = true;
			break;
		case NBD_INFO_NAME:
			memcpy(g->name, r.data + 2, r.len - 2);
			g->name[r.len - 2] = 0;
			g->got_name = true;
			break;
		default:
			break;
		}
	}
}

static int go_default(int fd, struct go_result *g)
{
	static const uint16_t want[] = {NBD_INFO_BLOCK_SIZE};

	if (info_go(fd, NBD_OPT_GO, "", want, 1, g) < 0 || g->err)
		return -1;
	return 0;
}

/* A connection in the transmission phase, or -1. */
static int open_export(void)
{
	struct go_result g;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	if (fd < 0)
		return -1;
	if (go_default(fd, &g) < 0 || (export_size && g.size != export_size)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- transmission helpers ---- */

static void encode_req(uint8_t *b, uint16_t type, uint16_t flags, uint64_t handle, uint64_t off,
		       uint32_t len)
{
	nbd_put32(b, NBD_REQUEST_MAGIC);
	nbd_put16(b + 4, flags);
	nbd_put16(b + 6, type);
	nbd_put64(b + 8, handle);
	nbd_put64(b + 16, off);
	nbd_put32(b + 24, len);
}

static int send_req(int fd, uint16_t type, uint16_t flags, uint64_t handle, uint64_t off,
		    uint32_t len, const void *payload, size_t plen)
{
	uint8_t b[NBD_REQUEST_LEN];

	encode_req(b, type, flags, handle, off, len);
	if (write_full(fd, b, sizeof(b)) < 0)
		return -1;
	return plen ? write_full(fd, payload, plen) : 0;
}

static int read_reply(int fd, uint32_t *err, uint64_t *handle)
{
	uint8_t b[NBD_SIMPLE_REPLY_LEN];

	if (read_full(fd, b, sizeof(b)))
		return -1;
	if (nbd_get32(b) != NBD_SIMPLE_REPLY_MAGIC)
		return -1;
	*err = nbd_get32(b + 4);
	*handle = nbd_get64(b + 8);
	return 0;
}

/* One synchronous request. Returns the NBD error, or -1 when the
 * connection broke or the reply was not for this request. */
static long rq(int fd, uint16_t type, uint16_t flags, uint64_t off, uint32_t len, const void *wbuf,
	       void *rbuf)
{
	static uint64_t next_handle = 0x1000;
	uint64_t h = next_handle++, got;
	uint32_t err;

	if (send_req(fd, type, flags, h, off, len, wbuf, type == NBD_CMD_WRITE ? len : 0) < 0)
		return -1;
	if (read_reply(fd, &err, &got) < 0 || got != h)
		return -1;
	if (type == NBD_CMD_READ && err == 0 && len && read_full(fd, rbuf, len))
		return -1;
	return err;
}

/* Data that says where it lives, so any read can be checked. Buffers
 * may be unaligned (payloads inside a request stream): memcpy words. */
static uint64_t pattern_word(uint64_t off, uint64_t seed)
{
	return (off * 0x9e3779b97f4a7c15ull) ^ seed;
}

static void pattern(void *buf, size_t len, uint64_t off, uint64_t seed)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w = pattern_word(off + i, seed);

		memcpy(p + i, &w, 8);
	}
}

static bool check_pattern(const void *buf, size_t len, uint64_t off, uint64_t seed)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w = pattern_word(off + i, seed);

		if (memcmp(p + i, &w, 8))
			return false;
	}
	return true;
}

static bool all_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Writes a pattern at off and reads it back on the same connection. */
static bool write_verify(int fd, uint64_t off, uint32_t len, uint64_t seed, uint16_t wflags)
{
	uint8_t *w = malloc(len), *r = malloc(len);
	bool ok = false;

	if (!w || !r)
		goto out;
	pattern(w, len, off, seed);
	if (rq(fd, NBD_CMD_WRITE, wflags, off, len, w, NULL) != 0)
		goto out;
	if (rq(fd, NBD_CMD_READ, 0, off, len, NULL, r) != 0)
		goto out;
	ok = memcmp(w, r, len) == 0;
out:
	free(w);
	free(r);
	return ok;
}

static bool read_check(int fd, uint64_t off, uint32_t len, uint64_t seed)
{
	uint8_t *r = malloc(len);
	bool ok = r && rq(fd, NBD_CMD_READ, 0, off, len, NULL, r) == 0 &&
		  check_pattern(r, len, off, seed);

	free(r);
	return ok;
}

static bool disconnect(int *fd)
{
	bool ok = send_req(*fd, NBD_CMD_DISC, 0, 0, 0, 0, NULL, 0) == 0 && expect_eof(*fd);

	xclose(fd);
	return ok;
}

/* The check run after every case: a polite client still gets served. */
static bool good_client(unsigned n)
{
	uint64_t off = ((uint64_t)n * 3 * MIB + 7 * 4096 + 512) % (export_size - MIB);
	int fd = open_export();
	bool ok = false;

	off &= ~511ull;
	CHECK(fd >= 0, "good client: handshake failed");
	CHECK(write_verify(fd, off, 8192 + 512, 0xc0ffee00 + n, 0), "good client: write/read back");
	CHECK(rq(fd, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL) == 0, "good client: flush");
	CHECK(disconnect(&fd), "good client: DISC did not close");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

/* ---- the cases ---- */

static bool t_bad_client_flags(void)
{
	bool ok = false;
	int fd = xconnect();

	CHECK(fd >= 0 && read_greeting(fd) == 0, "greeting");
	CHECK(send_cflags(fd, NBD_FLAG_C_FIXED_NEWSTYLE | 0x80000000u) == 0, "send");
	CHECK(expect_eof(fd), "unknown client flag 31 not refused");
	xclose(&fd);
	fd = xconnect();
	CHECK(fd >= 0 && read_greeting(fd) == 0, "greeting");
	CHECK(send_cflags(fd, 0x7) == 0, "send");
	CHECK(expect_eof(fd), "unknown client flag 2 not refused");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_bad_option_magic(void)
{
	uint8_t h[NBD_OPT_HDR_LEN];
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);

	CHECK(fd >= 0, "handshake");
	nbd_put64(h, NBD_IHAVEOPT ^ 1);
	nbd_put32(h + 8, NBD_OPT_GO);
	nbd_put32(h + 12, 0);
	CHECK(write_full(fd, h, sizeof(h)) == 0, "send");
	CHECK(expect_eof(fd), "bad option magic did not close");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_unknown_option(void)
{
	uint8_t junk[100], buf[4096];
	struct go_result g;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	memset(junk, 0xa5, sizeof(junk));
	CHECK(fd >= 0, "handshake");
	CHECK(opt_expect(fd, 0x7777, junk, sizeof(junk), NBD_REP_ERR_UNSUP), "0x7777");
	CHECK(opt_expect(fd, 0, NULL, 0, NBD_REP_ERR_UNSUP), "option 0");
	CHECK(opt_expect(fd, 0xffffffffu, junk, 3, NBD_REP_ERR_UNSUP), "option ~0");
	CHECK(opt_expect(fd, NBD_OPT_PEEK_EXPORT, NULL, 0, NBD_REP_ERR_UNSUP), "PEEK_EXPORT");
	CHECK(opt_expect(fd, NBD_OPT_SET_META_CONTEXT, junk, 20, NBD_REP_ERR_UNSUP),
	      "SET_META_CONTEXT");
	/* The session is still in sync: GO and a read work. */
	CHECK(go_default(fd, &g) == 0, "GO after unknown options");
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, 4096, NULL, buf) == 0, "read");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_huge_option_length(void)
{
	uint8_t *junk = calloc(1, MIB);
	uint8_t h[NBD_OPT_HDR_LEN], buf[64];
	struct go_result g;
	bool ok = false;
	/* name_len 0 and k info requests: 6 + 2k bytes, just over the bound */
	uint32_t k = (NBD_OPT_DATA_MAX - 6) / 2 + 1, big = 6 + 2 * k;
	int fd = -1;

	CHECK(junk, "oom");
	/* Declares 4 GiB, sends 1 MiB, hangs up. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0, "handshake");
	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, 0x7777);
	nbd_put32(h + 12, 0xffffffffu);
	CHECK(write_full(fd, h, sizeof(h)) == 0 && write_full(fd, junk, MIB) == 0, "send");
	xclose(&fd);
	/* The same with GO, which the server would have to buffer. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0, "handshake");
	nbd_put32(h + 8, NBD_OPT_GO);
	CHECK(write_full(fd, h, sizeof(h)) == 0 && write_full(fd, junk, MIB) == 0, "send");
	xclose(&fd);
	/* Over our bound but complete: refused with TOO_BIG, still in sync. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	CHECK(fd >= 0, "handshake");
	memset(junk, 0, big);
	nbd_put16(junk + 4, (uint16_t)k);
	CHECK(opt_expect(fd, NBD_OPT_GO, junk, big, NBD_REP_ERR_TOO_BIG),
	      "GO over the bound not refused with TOO_BIG");
	CHECK(go_default(fd, &g) == 0, "GO after TOO_BIG");
	CHECK(rq(fd, NBD_CMD_READ, 0, 4096, 64, NULL, buf) == NBD_EINVAL, "misaligned read");
	CHECK(disconnect(&fd), "DISC");
	/* EXPORT_NAME cannot carry an error: closed. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0, "handshake");
	nbd_put32(h + 8, NBD_OPT_EXPORT_NAME);
	nbd_put32(h + 12, 0x100000);
	CHECK(write_full(fd, h, sizeof(h)) == 0, "send");
	CHECK(expect_eof(fd), "huge EXPORT_NAME did not close");
	ok = true;
out:
	xclose(&fd);
	free(junk);
	return ok;
}

/* GO payloads whose internal lengths disagree with the option length, in
 * both directions, all on one connection (each refusal must keep sync). */
static bool t_go_bad_lengths(void)
{
	uint8_t b[64];
	struct go_result g;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	CHECK(fd >= 0, "handshake");
	build_info(b, "abc", 3, NULL, 0); /* 9 bytes, valid shape */
	nbd_put32(b, 100);
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 9, NBD_REP_ERR_INVALID), "name_len 100 > option");
	nbd_put32(b, 4);
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 9, NBD_REP_ERR_INVALID), "name_len one too long");
	nbd_put32(b, 2);
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 9, NBD_REP_ERR_INVALID), "name_len one too short");
	nbd_put32(b, 0xffffffffu);
	CHECK(opt_expect(fd, NBD_OPT_INFO, b, 9, NBD_REP_ERR_INVALID), "name_len ~0");
	build_info(b, "", 0, NULL, 0);
	nbd_put16(b + 4, 1); /* one info request announced, none sent */
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 6, NBD_REP_ERR_INVALID), "info count too big");
	nbd_put16(b + 4, 0);
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 8, NBD_REP_ERR_INVALID), "trailing info bytes");
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 7, NBD_REP_ERR_INVALID), "odd trailing byte");
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 5, NBD_REP_ERR_INVALID), "option too short");
	CHECK(opt_expect(fd, NBD_OPT_GO, NULL, 0, NBD_REP_ERR_INVALID), "empty GO");
	build_info(b, "a\0b", 3, NULL, 0);
	CHECK(opt_expect(fd, NBD_OPT_GO, b, 9, NBD_REP_ERR_INVALID), "NUL in name");
	CHECK(go_default(fd, &g) == 0, "valid GO after the bad ones");
	CHECK(write_verify(fd, 5 * MIB, 4096, 77, 0), "I/O after GO");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_go_unknown_export(void)
{
	static const uint16_t want[] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, 0x4242};
	struct go_result g;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	CHECK(fd >= 0, "handshake");
	CHECK(info_go(fd, NBD_OPT_INFO, "no-such-export", NULL, 0, &g) == 0 &&
		  g.err == NBD_REP_ERR_UNKNOWN,
	      "INFO unknown export: want ERR_UNKNOWN");
	CHECK(info_go(fd, NBD_OPT_GO, "no-such-export", NULL, 0, &g) == 0 &&
		  g.err == NBD_REP_ERR_UNKNOWN,
	      "GO unknown export: want ERR_UNKNOWN");
	CHECK(info_go(fd, NBD_OPT_INFO, "", want, 3, &g) == 0 && !g.err, "INFO \"\"");
	CHECK(g.size == export_size, "INFO size %llu", (unsigned long long)g.size);
	CHECK(g.got_block && g.bmin == 512 && g.bpref == 4096 && g.bmax == MAX_IO,
	      "block sizes %u/%u/%u", g.bmin, g.bpref, g.bmax);
	CHECK((g.tflags & NBD_FLAG_HAS_FLAGS) && (g.tflags & NBD_FLAG_SEND_FLUSH) &&
		  (g.tflags & NBD_FLAG_SEND_FUA) && (g.tflags & NBD_FLAG_SEND_TRIM) &&
		  (g.tflags & NBD_FLAG_SEND_WRITE_ZEROES) && (g.tflags & NBD_FLAG_CAN_MULTI_CONN) &&
		  !(g.tflags & NBD_FLAG_SEND_DF),
	      "transmission flags 0x%x", g.tflags);
	/* Block sizes come even when not asked for. */
	CHECK(info_go(fd, NBD_OPT_INFO, "", NULL, 0, &g) == 0 && !g.err && g.got_block,
	      "INFO without requests");
	CHECK(go_default(fd, &g) == 0, "GO \"\" after refusals");
	CHECK(write_verify(fd, 6 * MIB, 4096, 78, 0), "I/O");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_abort(void)
{
	struct opt_reply r;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);

	CHECK(fd >= 0, "handshake");
	CHECK(send_opt(fd, NBD_OPT_ABORT, NULL, 0) == 0, "send");
	CHECK(read_opt_reply(fd, &r) == 0 && r.type == NBD_REP_ACK && r.opt == NBD_OPT_ABORT,
	      "ABORT not acked");
	CHECK(expect_eof(fd), "ABORT did not close");
	xclose(&fd);
	/* ABORT and hang up without waiting for the ack. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0 && send_opt(fd, NBD_OPT_ABORT, NULL, 0) == 0, "send");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_list(void)
{
	struct opt_reply r;
	struct go_result g;
	bool ok = false, saw_default = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES), n = 0;

	CHECK(fd >= 0, "handshake");
	CHECK(send_opt(fd, NBD_OPT_LIST, NULL, 0) == 0, "send");
	for (;;) {
		CHECK(read_opt_reply(fd, &r) == 0 && r.opt == NBD_OPT_LIST, "LIST reply");
		if (r.type == NBD_REP_ACK)
			break;
		CHECK(r.type == NBD_REP_SERVER && r.len >= 4 && nbd_get32(r.data) <= r.len - 4,
		      "bad REP_SERVER");
		if (nbd_get32(r.data) == 0)
			saw_default = true;
		CHECK(++n < 16, "too many exports listed");
	}
	CHECK(saw_default, "LIST does not name the default export \"\"");
	CHECK(opt_expect(fd, NBD_OPT_LIST, "abcd", 4, NBD_REP_ERR_INVALID), "LIST with data");
	CHECK(go_default(fd, &g) == 0, "GO after LIST");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_structured_reply_refused(void)
{
	uint8_t buf[4096];
	struct go_result g;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	CHECK(fd >= 0, "handshake");
	CHECK(opt_expect(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ERR_UNSUP),
	      "STRUCTURED_REPLY not refused");
	CHECK(opt_expect(fd, NBD_OPT_STARTTLS, NULL, 0, NBD_REP_ERR_POLICY),
	      "STARTTLS not refused with POLICY");
	CHECK(opt_expect(fd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ERR_UNSUP),
	      "EXTENDED_HEADERS not refused");
	CHECK(go_default(fd, &g) == 0, "GO");
	/* rq() insists on the simple reply magic. */
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, sizeof(buf), NULL, buf) == 0, "simple read reply");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_export_name(void)
{
	uint8_t rep[NBD_EXPORT_NAME_REPLY_MAX];
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

	CHECK(fd >= 0, "handshake");
	CHECK(send_opt(fd, NBD_OPT_EXPORT_NAME, NULL, 0) == 0, "send");
	CHECK(read_full(fd, rep, 10) == 0, "EXPORT_NAME reply");
	CHECK(nbd_get64(rep) == export_size, "size");
	CHECK(nbd_get16(rep + 8) & NBD_FLAG_HAS_FLAGS, "flags");
	CHECK(write_verify(fd, 7 * MIB, 4096, 79, 0), "I/O after EXPORT_NAME");
	CHECK(disconnect(&fd), "DISC");
	/* Without NO_ZEROES: 124 zero bytes follow. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0, "handshake");
	CHECK(send_opt(fd, NBD_OPT_EXPORT_NAME, NULL, 0) == 0, "send");
	CHECK(read_full(fd, rep, sizeof(rep)) == 0, "EXPORT_NAME reply with zeroes");
	CHECK(nbd_get64(rep) == export_size && all_zero(rep + 10, 124), "zero padding");
	CHECK(write_verify(fd, 7 * MIB + 8192, 4096, 80, 0), "I/O after padded reply");
	CHECK(disconnect(&fd), "DISC");
	/* Unknown name: the only possible answer is hanging up. */
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	CHECK(fd >= 0, "handshake");
	CHECK(send_opt(fd, NBD_OPT_EXPORT_NAME, "no-such-export", 14) == 0, "send");
	CHECK(expect_eof(fd), "unknown EXPORT_NAME did not close");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_bad_request_magic(void)
{
	uint8_t b[NBD_REQUEST_LEN];
	bool ok = false;
	int fd = open_export();

	CHECK(fd >= 0, "handshake");
	encode_req(b, NBD_CMD_READ, 0, 1, 0, 4096);
	nbd_put32(b, NBD_REQUEST_MAGIC + 1);
	CHECK(write_full(fd, b, sizeof(b)) == 0, "send");
	CHECK(expect_eof(fd), "bad request magic did not close");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_unknown_command(void)
{
	static const uint16_t types[] = {NBD_CMD_CACHE, NBD_CMD_BLOCK_STATUS, 8, 99, 0xffff};
	uint8_t buf[4096];
	bool ok = false;
	unsigned i;
	int fd = open_export();

	CHECK(fd >= 0, "handshake");
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		CHECK(rq(fd, types[i], 0, 0, 4096, NULL, NULL) == NBD_EINVAL,
		      "command %u: want EINVAL", types[i]);
	/* Flags a command does not take. */
	CHECK(rq(fd, NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 4096, NULL, buf) == NBD_EINVAL,
	      "READ with NO_HOLE");
	CHECK(rq(fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, NULL, buf) == NBD_EINVAL,
	      "READ with DF (not negotiated)");
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 4096, NULL, NULL) ==
		  NBD_EINVAL,
	      "WRITE_ZEROES with FAST_ZERO (not negotiated)");
	CHECK(rq(fd, NBD_CMD_READ, 0x8000, 0, 4096, NULL, buf) == NBD_EINVAL, "unknown flag");
	/* FUA on a read is tolerated (the spec says so). */
	CHECK(rq(fd, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096, NULL, buf) == 0, "READ with FUA");
	CHECK(write_verify(fd, 8 * MIB, 4096, 81, 0), "I/O after unknown commands");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_read_too_long(void)
{
	uint8_t *buf = malloc(MAX_IO);
	bool ok = false;
	int fd = open_export();

	CHECK(buf, "oom");
	CHECK(fd >= 0, "handshake");
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, MAX_IO + 512, NULL, buf) == NBD_EINVAL,
	      "32 MiB + 512 read");
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, 0xfffffe00u, NULL, buf) == NBD_EINVAL, "4 GiB read");
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, MAX_IO, NULL, buf) == 0, "32 MiB read must work");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(buf);
	return ok;
}

/* Documented behaviour: the payload is read and discarded, then EINVAL;
 * the connection stays in sync and nothing was written. */
static bool t_write_too_long(void)
{
	uint32_t len = MAX_IO + 4096;
	uint8_t *buf = malloc(len);
	uint64_t off = 16 * MIB;
	bool ok = false;
	int fd = open_export();

	CHECK(buf, "oom");
	CHECK(fd >= 0, "handshake");
	CHECK(write_verify(fd, off, 65536, 82, 0), "seed write");
	pattern(buf, len, off, 83);
	CHECK(rq(fd, NBD_CMD_WRITE, 0, off, len, buf, NULL) == NBD_EINVAL,
	      "32 MiB + 4 KiB write: want EINVAL after the payload");
	CHECK(read_check(fd, off, 65536, 82), "oversized write changed data");
	CHECK(write_verify(fd, off, 65536, 84, 0), "I/O after oversized write");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(buf);
	return ok;
}

static bool t_past_end(void)
{
	uint8_t buf[1024] = {0};
	uint64_t end = export_size;
	bool ok = false;
	int fd = open_export();

	CHECK(fd >= 0, "handshake");
	CHECK(rq(fd, NBD_CMD_READ, 0, end - 512, 1024, NULL, buf) == NBD_EINVAL, "read across end");
	CHECK(rq(fd, NBD_CMD_READ, 0, end, 512, NULL, buf) == NBD_EINVAL, "read at end");
	CHECK(rq(fd, NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, NULL, buf) == NBD_EINVAL,
	      "read overflowing 2^64");
	CHECK(rq(fd, NBD_CMD_READ, 0, 1ull << 63, 512, NULL, buf) == NBD_EINVAL, "read at 2^63");
	CHECK(rq(fd, NBD_CMD_TRIM, 0, end - 512, 1024, NULL, NULL) == NBD_EINVAL,
	      "trim across end");
	CHECK(rq(fd, NBD_CMD_WRITE, 0, end - 512, 1024, buf, NULL) == NBD_ENOSPC,
	      "write across end: want ENOSPC");
	CHECK(rq(fd, NBD_CMD_WRITE, 0, UINT64_MAX - 511, 1024, buf, NULL) == NBD_ENOSPC,
	      "write overflowing 2^64: want ENOSPC");
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, 0, end, 4096, NULL, NULL) == NBD_ENOSPC,
	      "write zeroes past end: want ENOSPC");
	CHECK(rq(fd, NBD_CMD_READ, 0, end - 512, 512, NULL, buf) == 0, "last sector readable");
	CHECK(write_verify(fd, end - 4096, 4096, 85, 0), "last block writable");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_unaligned(void)
{
	uint8_t buf[4096] = {0};
	bool ok = false;
	int fd = open_export();

	CHECK(fd >= 0, "handshake");
	CHECK(rq(fd, NBD_CMD_READ, 0, 100, 512, NULL, buf) == NBD_EINVAL, "offset 100");
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, 100, NULL, buf) == NBD_EINVAL, "length 100");
	CHECK(rq(fd, NBD_CMD_WRITE, 0, 4097, 512, buf, NULL) == NBD_EINVAL, "write offset 4097");
	CHECK(rq(fd, NBD_CMD_WRITE, 0, 4096, 511, buf, NULL) == NBD_EINVAL, "write length 511");
	CHECK(rq(fd, NBD_CMD_TRIM, 0, 1, 4096, NULL, NULL) == NBD_EINVAL, "trim offset 1");
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, 0, 0, 4095, NULL, NULL) == NBD_EINVAL, "zero len 4095");
	/* 512-aligned but not 4 KiB aligned is fine (read-modify-write). */
	CHECK(write_verify(fd, 9 * MIB + 512, 1024, 86, 0), "512-aligned write");
	/* Zero-length requests are no-ops. */
	CHECK(rq(fd, NBD_CMD_READ, 0, 0, 0, NULL, buf) == 0, "zero-length read");
	CHECK(rq(fd, NBD_CMD_WRITE, 0, 0, 0, buf, NULL) == 0, "zero-length write");
	CHECK(read_check(fd, 9 * MIB + 512, 1024, 86), "in sync after zero-length requests");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

static bool t_disconnect_mid_header(void)
{
	uint8_t b[NBD_REQUEST_LEN];
	bool ok = false;
	int fd = open_export();

	CHECK(fd >= 0, "handshake");
	encode_req(b, NBD_CMD_READ, 0, 1, 0, 4096);
	CHECK(write_full(fd, b, 10) == 0, "send");
	xclose(&fd);
	/* ... and in the middle of the handshake, at every step. */
	fd = xconnect();
	CHECK(fd >= 0 && read_greeting(fd) == 0 && write_full(fd, "\0\0", 2) == 0, "cflags");
	xclose(&fd);
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	CHECK(fd >= 0 && write_full(fd, "IHAVEOP", 7) == 0, "option header");
	xclose(&fd);
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE);
	build_info(b, "abcdef", 6, NULL, 0);
	CHECK(fd >= 0, "handshake");
	{
		uint8_t h[NBD_OPT_HDR_LEN];

		nbd_put64(h, NBD_IHAVEOPT);
		nbd_put32(h + 8, NBD_OPT_GO);
		nbd_put32(h + 12, 12);
		CHECK(write_full(fd, h, sizeof(h)) == 0 && write_full(fd, b, 5) == 0,
		      "option data");
	}
	xclose(&fd);
	/* Connect and say nothing at all. */
	fd = xconnect();
	CHECK(fd >= 0, "connect");
	xclose(&fd);
	ok = true;
out:
	xclose(&fd);
	return ok;
}

/* A write cut off mid-payload must not reach the disk. */
static bool t_disconnect_mid_payload(void)
{
	uint32_t len = MIB;
	uint64_t off = 20 * MIB;
	uint8_t *buf = malloc(len);
	bool ok = false;
	int fd = open_export();

	CHECK(buf, "oom");
	CHECK(fd >= 0, "handshake");
	CHECK(write_verify(fd, off, len, 87, 0), "seed write");
	pattern(buf, len, off, 88);
	CHECK(send_req(fd, NBD_CMD_WRITE, 0, 5, off, len, buf, 300 * 1024) == 0, "send");
	xclose(&fd);
	fd = open_export();
	CHECK(fd >= 0, "reconnect");
	CHECK(read_check(fd, off, len, 87), "partially received write reached the disk");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(buf);
	return ok;
}

/* Pushes as many bytes as the socket takes right now (non-blocking). */
static ssize_t push(int fd, const uint8_t *p, size_t n)
{
	ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return r;
}

/* Many writes and reads pipelined, then a hangup without reading a reply.
 * Writes in the batch may or may not land, but nothing may crash. */
static bool t_disconnect_inflight(void)
{
	const unsigned n = 128, len = 65536;
	size_t total = (size_t)n * NBD_REQUEST_LEN + (size_t)(n / 2) * len, sent = 0, pos = 0;
	uint8_t *stream = malloc(total);
	uint64_t deadline;
	bool ok = false;
	unsigned i;
	int fd = open_export();

	CHECK(stream, "oom");
	CHECK(fd >= 0, "handshake");
	for (i = 0; i < n; i++) {
		uint64_t off = 24 * MIB + (uint64_t)(i % 64) * len;

		if (i % 2) {
			encode_req(stream + pos, NBD_CMD_READ, 0, i, off, len);
			pos += NBD_REQUEST_LEN;
		} else {
			encode_req(stream + pos, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, i, off, len);
			pattern(stream + pos + NBD_REQUEST_LEN, len, off, 89);
			pos += NBD_REQUEST_LEN + len;
		}
	}
	deadline = now_ms() + 2000;
	while (sent < total && now_ms() < deadline) {
		ssize_t r = push(fd, stream + sent, total - sent);

		CHECK(r >= 0, "send failed: %s", strerror(errno));
		sent += (size_t)r;
		if (!r)
			sleep_ms(5);
	}
	xclose(&fd);
	sleep_ms(200);
	ok = true;
out:
	xclose(&fd);
	free(stream);
	return ok;
}

/* Fills [0, len) with pattern(seed) using 1 MiB writes. */
static bool seed_region(int fd, uint64_t len, uint64_t seed)
{
	uint8_t *buf = malloc(MIB);
	bool ok = buf != NULL;
	uint64_t off;

	for (off = 0; ok && off < len; off += MIB) {
		pattern(buf, MIB, off, seed);
		ok = rq(fd, NBD_CMD_WRITE, 0, off, MIB, buf, NULL) == 0;
	}
	free(buf);
	return ok;
}

/* n pipelined reads of blk bytes, replies left unread for a second: the
 * server must stop reading rather than balloon, then answer every one. */
static bool flood_reads(unsigned n, unsigned blk)
{
	const unsigned span = 4 * MIB / blk; /* reads cycle over 4 MiB */
	const size_t rep_len = NBD_SIMPLE_REPLY_LEN + blk;
	uint8_t *req = malloc((size_t)n * NBD_REQUEST_LEN), *in = malloc(rep_len);
	bool *seen = calloc(n, 1), ok = false;
	size_t sent = 0, total = (size_t)n * NBD_REQUEST_LEN, got = 0;
	unsigned replies = 0, i;
	uint64_t deadline;
	int fd = open_export();

	CHECK(req && in && seen, "oom");
	CHECK(fd >= 0, "handshake");
	CHECK(seed_region(fd, 4 * MIB, 90), "seed");
	for (i = 0; i < n; i++)
		encode_req(req + (size_t)i * NBD_REQUEST_LEN, NBD_CMD_READ, 0, i,
			   (uint64_t)(i % span) * blk, blk);
	/* Send what the socket takes for a second, reading nothing. */
	rss_peak_kb = 0;
	deadline = now_ms() + 1000;
	while (now_ms() < deadline) {
		ssize_t r = sent < total ? push(fd, req + sent, total - sent) : 0;

		CHECK(r >= 0, "send: %s", strerror(errno));
		sent += (size_t)r;
		rss_sample();
		if (!r)
			sleep_ms(5);
	}
	CHECK(rss_peak_kb < RSS_LIMIT_KB, "server VmRSS %ld kB while flooded", rss_peak_kb);
	deadline = now_ms() + 60000;
	while (replies < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};

		CHECK(now_ms() < deadline, "timeout: %u of %u replies", replies, n);
		CHECK(poll(&p, 1, 1000) >= 0, "poll");
		rss_sample();
		if (p.revents & POLLOUT) {
			ssize_t r = push(fd, req + sent, total - sent);

			CHECK(r >= 0, "send: %s", strerror(errno));
			sent += (size_t)r;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(fd, in + got, rep_len - got, MSG_DONTWAIT);

			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			CHECK(r > 0, "connection closed after %u replies", replies);
			got += (size_t)r;
			if (got < rep_len)
				continue;
			got = 0;
			{
				uint64_t h = nbd_get64(in + 8);

				CHECK(nbd_get32(in) == NBD_SIMPLE_REPLY_MAGIC, "reply magic");
				CHECK(nbd_get32(in + 4) == 0, "read error %u", nbd_get32(in + 4));
				CHECK(h < n && !seen[h], "bad or repeated handle %llu",
				      (unsigned long long)h);
				seen[h] = true;
				CHECK(check_pattern(in + NBD_SIMPLE_REPLY_LEN, blk,
						    (uint64_t)(h % span) * blk, 90),
				      "wrong data for handle %llu", (unsigned long long)h);
			}
			replies++;
		}
	}
	CHECK(rss_peak_kb < RSS_LIMIT_KB, "server VmRSS peaked at %ld kB during the flood",
	      rss_peak_kb);
	if (server_pid)
		printf("# %u reads of %u bytes: server VmRSS peak %ld kB\n", n, blk, rss_peak_kb);
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(req);
	free(in);
	free(seen);
	return ok;
}

static bool t_flood_reads(void)
{
	return flood_reads(10000, 4096);
}

/* Without flow control the unread replies alone would take 640 MiB. */
static bool t_flood_big_reads(void)
{
	return flood_reads(5000, 128 * 1024);
}

/* 256 pipelined 1 MiB writes without reading replies: memory stays
 * bounded by the per-connection payload limit. */
static bool t_flood_writes(void)
{
	const unsigned n = 256;
	const size_t per = NBD_REQUEST_LEN + MIB;
	uint8_t *one = malloc(per);
	unsigned i, replies = 0;
	size_t off_in_req = 0;
	uint64_t deadline = now_ms() + 60000;
	bool ok = false;
	int fd = open_export();

	CHECK(one, "oom");
	CHECK(fd >= 0, "handshake");
	/* The same payload everywhere: offsets differ only in the header. */
	pattern(one + NBD_REQUEST_LEN, MIB, 0, 91);
	rss_peak_kb = 0;
	for (i = 0; i < n;) {
		ssize_t r;

		CHECK(now_ms() < deadline, "timeout sending");
		if (off_in_req == 0)
			encode_req(one, NBD_CMD_WRITE, 0, i, 32 * MIB + (uint64_t)(i % 16) * MIB,
				   MIB);
		r = push(fd, one + off_in_req, per - off_in_req);
		CHECK(r >= 0, "send: %s", strerror(errno));
		off_in_req += (size_t)r;
		if (off_in_req == per) {
			off_in_req = 0;
			i++;
		}
		rss_sample();
		if (!r)
			sleep_ms(2);
	}
	CHECK(rss_peak_kb < RSS_LIMIT_KB, "server VmRSS %ld kB during the write flood",
	      rss_peak_kb);
	if (server_pid)
		printf("# %u writes of 1 MiB: server VmRSS peak %ld kB\n", n, rss_peak_kb);
	for (replies = 0; replies < n; replies++) {
		uint64_t h;
		uint32_t err;

		CHECK(read_reply(fd, &err, &h) == 0, "reply %u", replies);
		CHECK(err == 0 && h < n, "write error %u", err);
	}
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(one);
	return ok;
}

/* 70 clients at once: the server serves up to its limit, refuses the rest
 * by closing (never hangs them), and keeps working. */
static bool t_many_connections(void)
{
	enum { N = 70 };
	int fds[N], served = 0, refused = 0, i;
	uint8_t buf[4096];
	bool ok = false;

	for (i = 0; i < N; i++)
		fds[i] = xconnect();
	for (i = 0; i < N; i++) {
		struct go_result g;
		int rc;

		CHECK(fds[i] >= 0, "connect %d", i);
		rc = read_greeting(fds[i]);
		CHECK(rc >= 0, "connection %d neither served nor refused", i);
		if (rc == 1) {
			refused++;
			xclose(&fds[i]);
			continue;
		}
		CHECK(send_cflags(fds[i], NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) == 0,
		      "cflags");
		CHECK(go_default(fds[i], &g) == 0, "GO on connection %d", i);
		served++;
	}
	for (i = 0; i < N; i++)
		if (fds[i] >= 0)
			CHECK(rq(fds[i], NBD_CMD_READ, 0, (uint64_t)i * 4096, sizeof(buf), NULL,
				 buf) == 0,
			      "read on connection %d", i);
	CHECK(served >= 48 && served <= 64, "%d served, %d refused", served, refused);
	ok = true;
out:
	for (i = 0; i < N; i++)
		xclose(&fds[i]);
	return ok;
}

static bool t_cross_connection(void)
{
	uint64_t off = 40 * MIB + 512;
	bool ok = false;
	int a = open_export(), b = open_export();
	uint8_t *buf = malloc(65536);

	CHECK(buf, "oom");
	CHECK(a >= 0 && b >= 0, "handshake");
	pattern(buf, 65536, off, 92);
	CHECK(rq(a, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, off, 65536, buf, NULL) == 0, "write on A");
	CHECK(read_check(b, off, 65536, 92), "B does not see A's write");
	pattern(buf, 4096, off + 4096, 93);
	CHECK(rq(b, NBD_CMD_WRITE, 0, off + 4096, 4096, buf, NULL) == 0, "write on B");
	CHECK(rq(b, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL) == 0, "flush on B");
	CHECK(read_check(a, off + 4096, 4096, 93), "A does not see B's write");
	CHECK(read_check(a, off, 4096, 92), "A's neighbouring data changed");
	CHECK(disconnect(&a) && disconnect(&b), "DISC");
	ok = true;
out:
	xclose(&a);
	xclose(&b);
	free(buf);
	return ok;
}

static bool t_flush_trim_zeroes(void)
{
	uint64_t off = 44 * MIB;
	uint8_t *buf = malloc(MIB);
	bool ok = false;
	int fd = open_export();

	CHECK(buf, "oom");
	CHECK(fd >= 0, "handshake");
	CHECK(write_verify(fd, off, MIB, 94, 0), "seed");
	CHECK(rq(fd, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL) == 0, "FLUSH");
	CHECK(rq(fd, NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, NULL, NULL) == 0, "FLUSH with FUA");
	CHECK(rq(fd, NBD_CMD_TRIM, 0, off, MIB, NULL, NULL) == 0, "TRIM");
	CHECK(rq(fd, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, off, 4096, NULL, NULL) == 0, "TRIM FUA");
	CHECK(write_verify(fd, off, MIB, 95, 0), "rewrite");
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, 0, off, MIB, NULL, NULL) == 0, "WRITE_ZEROES");
	CHECK(rq(fd, NBD_CMD_READ, 0, off, MIB, NULL, buf) == 0 && all_zero(buf, MIB),
	      "WRITE_ZEROES did not read back zeros");
	CHECK(write_verify(fd, off, MIB, 96, NBD_CMD_FLAG_FUA), "FUA write");
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, off + 512, 8192,
		 NULL, NULL) == 0,
	      "WRITE_ZEROES NO_HOLE|FUA");
	CHECK(rq(fd, NBD_CMD_READ, 0, off, MIB, NULL, buf) == 0, "read");
	CHECK(check_pattern(buf, 512, off, 96) && all_zero(buf + 512, 8192) &&
		  check_pattern(buf + 8704, MIB - 8704, off + 8704, 96),
	      "512-aligned WRITE_ZEROES wrong");
	/* Large zeroing/trim requests are not bound by the 32 MiB I/O limit. */
	CHECK(rq(fd, NBD_CMD_WRITE_ZEROES, 0, 0,
		 (uint32_t)(export_size < 0xfffff000u ? export_size : 0xfffff000u), NULL,
		 NULL) == 0,
	      "WRITE_ZEROES of the whole disk");
	CHECK(rq(fd, NBD_CMD_READ, 0, off, MIB, NULL, buf) == 0 && all_zero(buf, MIB),
	      "whole-disk zeroing");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(buf);
	return ok;
}

/* DISC after pipelined writes: the writes finish, their replies come back,
 * then the server closes. */
static bool t_disc_with_inflight(void)
{
	const unsigned n = 16, len = 65536;
	uint64_t base = 48 * MIB;
	uint8_t *buf = malloc(len);
	bool ok = false, seen[16] = {false};
	unsigned i;
	int fd = open_export();

	CHECK(buf, "oom");
	CHECK(fd >= 0, "handshake");
	for (i = 0; i < n; i++) {
		pattern(buf, len, base + (uint64_t)i * len, 97);
		CHECK(send_req(fd, NBD_CMD_WRITE, 0, i, base + (uint64_t)i * len, len, buf, len) ==
			  0,
		      "send");
	}
	CHECK(send_req(fd, NBD_CMD_DISC, 0, 99, 0, 0, NULL, 0) == 0, "DISC");
	for (i = 0; i < n; i++) {
		uint64_t h;
		uint32_t err;

		CHECK(read_reply(fd, &err, &h) == 0, "reply %u missing after DISC", i);
		CHECK(err == 0 && h < n && !seen[h], "bad reply");
		seen[h] = true;
	}
	CHECK(expect_eof(fd), "no close after DISC");
	xclose(&fd);
	fd = open_export();
	CHECK(fd >= 0, "reconnect");
	CHECK(read_check(fd, base, n * len, 97), "writes before DISC lost");
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	free(buf);
	return ok;
}

static bool t_too_many_options(void)
{
	struct opt_reply r;
	bool ok = false;
	int fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE), i;

	CHECK(fd >= 0, "handshake");
	for (i = 0; i < 5000; i++) {
		if (send_opt(fd, 0x7777, NULL, 0) < 0 || read_opt_reply(fd, &r) < 0)
			break;
		CHECK(r.type == NBD_REP_ERR_UNSUP, "reply type");
	}
	CHECK(i >= 16 && i < 5000, "server answered %d options without closing", i);
	ok = true;
out:
	xclose(&fd);
	return ok;
}

/* Options sent back to back without waiting for replies (clients must not,
 * but the server must cope): every reply still comes, in order. */
static bool t_pipelined_handshake(void)
{
	static const uint16_t want[] = {NBD_INFO_BLOCK_SIZE};
	uint8_t msg[256], info[32];
	struct opt_reply r;
	size_t n = 0, il = build_info(info, "", 0, want, 1);
	bool ok = false;
	int fd = xconnect(), step;

	CHECK(fd >= 0 && read_greeting(fd) == 0, "greeting");
	nbd_put32(msg, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	n = 4;
	nbd_put64(msg + n, NBD_IHAVEOPT);
	nbd_put32(msg + n + 8, NBD_OPT_LIST);
	nbd_put32(msg + n + 12, 0);
	n += 16;
	nbd_put64(msg + n, NBD_IHAVEOPT);
	nbd_put32(msg + n + 8, NBD_OPT_INFO);
	nbd_put32(msg + n + 12, (uint32_t)il);
	memcpy(msg + n + 16, info, il);
	n += 16 + il;
	nbd_put64(msg + n, NBD_IHAVEOPT);
	nbd_put32(msg + n + 8, NBD_OPT_GO);
	nbd_put32(msg + n + 12, (uint32_t)il);
	memcpy(msg + n + 16, info, il);
	n += 16 + il;
	encode_req(msg + n, NBD_CMD_FLUSH, 0, 42, 0, 0);
	n += NBD_REQUEST_LEN;
	CHECK(write_full(fd, msg, n) == 0, "send");
	for (step = 0; step < 3;) {
		CHECK(read_opt_reply(fd, &r) == 0, "reply in step %d", step);
		CHECK(!(r.type & NBD_REP_FLAG_ERROR), "error reply 0x%x", r.type);
		if (r.type == NBD_REP_ACK) {
			CHECK(r.opt == (step == 0   ? NBD_OPT_LIST
					: step == 1 ? NBD_OPT_INFO
						    : NBD_OPT_GO),
			      "ack for option %u out of order", r.opt);
			step++;
		}
	}
	{
		uint64_t h;
		uint32_t err;

		CHECK(read_reply(fd, &err, &h) == 0 && err == 0 && h == 42, "pipelined FLUSH");
	}
	CHECK(disconnect(&fd), "DISC");
	ok = true;
out:
	xclose(&fd);
	return ok;
}

/* Is name in the comma-separated list (NULL: run everything)? */
static bool selected(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	if (!list || !*list)
		return true;
	while ((p = strstr(p, name))) {
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
			return true;
		p += n;
	}
	return false;
}

struct test_case {
	const char *name;
	bool (*fn)(void);
};

static const struct test_case cases[] = {
    {"bad_client_flags", t_bad_client_flags},
    {"bad_option_magic", t_bad_option_magic},
    {"unknown_option", t_unknown_option},
    {"huge_option_length", t_huge_option_length},
    {"go_bad_lengths", t_go_bad_lengths},
    {"go_unknown_export", t_go_unknown_export},
    {"abort", t_abort},
    {"list", t_list},
    {"structured_reply_refused", t_structured_reply_refused},
    {"export_name", t_export_name},
    {"pipelined_handshake", t_pipelined_handshake},
    {"too_many_options", t_too_many_options},
    {"bad_request_magic", t_bad_request_magic},
    {"unknown_command", t_unknown_command},
    {"read_too_long", t_read_too_long},
    {"write_too_long", t_write_too_long},
    {"past_end", t_past_end},
    {"unaligned", t_unaligned},
    {"disconnect_mid_header", t_disconnect_mid_header},
    {"disconnect_mid_payload", t_disconnect_mid_payload},
    {"disconnect_inflight", t_disconnect_inflight},
    {"flood_reads", t_flood_reads},
    {"flood_big_reads", t_flood_big_reads},
    {"flood_writes", t_flood_writes},
    {"many_connections", t_many_connections},
    {"cross_connection", t_cross_connection},
    {"flush_trim_zeroes", t_flush_trim_zeroes},
    {"disc_with_inflight", t_disc_with_inflight},
};

int main(int argc, char **argv)
{
	unsigned i, failed = 0, run = 0, n = sizeof(cases) / sizeof(cases[0]);
	const char *only = getenv("NBD_HOSTILE_ONLY");
	struct go_result g;
	int fd;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s SOCKET [SERVER_PID]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sock_path = argv[1];
	if (argc == 3)
		server_pid = (pid_t)atoi(argv[2]);
	fd = hs_open(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	if (fd < 0 || go_default(fd, &g) < 0 || g.size < 64 * MIB) {
		fprintf(stderr, "nbd_hostile: cannot reach a >= 64 MiB export at %s\n", sock_path);
		return 1;
	}
	export_size = g.size;
	disconnect(&fd);
	for (i = 0; i < n; i++) {
		bool ok;
		uint64_t t0 = now_ms();

		if (!selected(only, cases[i].name))
			continue;
		run++;
		fail_msg[0] = 0;
		ok = cases[i].fn();
		if (!server_alive()) {
			failf("server process died");
			ok = false;
		}
		/* Even after a failed case: is the server still usable? */
		if (!good_client(i)) {
			if (ok) {
				char why[sizeof(fail_msg)];

				snprintf(why, sizeof(why), "afterwards: %s", fail_msg);
				fail_msg[0] = 0;
				failf("%s", why);
			}
			ok = false;
		}
		if (ok) {
			printf("ok %s (%llu ms)\n", cases[i].name,
			       (unsigned long long)(now_ms() - t0));
		} else {
			printf("not ok %s: %s\n", cases[i].name, fail_msg);
			failed++;
		}
		fflush(stdout);
	}
	printf("%u of %u cases failed\n", failed, run);
	return failed ? 1 : 0;
}
