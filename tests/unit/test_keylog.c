/* The key-event log's pure parts (keymgr/keylog_fmt.c): the encoding and
 * hashes of docs/FORMAT.md ("Key-event log"), strict parsing (every
 * malformed line refused with a clear reason, never a crash), the chain
 * and anchor checks, and the header anchor accessors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypt/backend/cipher.h"
#include "crypt/header.h"
#include "keymgr/keylog.h"
#include "keymgr/statedir.h"

static const uint8_t U[16] = {0x3a, 0xd2, 0xc3, 0xd9, 0xe3, 0xe5, 0x45, 0x9c,
			      0xac, 0x7c, 0x13, 0xfc, 0xca, 0xa7, 0x68, 0xc8};
#define USTR "3ad2c3d9-e3e5-459c-ac7c-13fccaa768c8"

/* A log of n entries; returns its length. */
static size_t make_log(char *buf, size_t cap, int n, struct td_keylog_anchor *a)
{
	static const char *ops[] = {"format", "enroll", "load", "unload", "remove"};
	struct td_keylog_entry e;
	size_t len = 0;

	assert_int_equal(td_keylog_genesis(U, e.prev), 0);
	for (int i = 0; i < n; i++) {
		memset(&e.op, 0, sizeof(e.op));
		e.seq = (uint64_t)i;
		e.time = 1700000000u + (uint64_t)i;
		e.uid = 1000;
		memcpy(e.uuid, U, 16);
		snprintf(e.op, sizeof(e.op), "%s", ops[i % 5]);
		e.slot = i % 3 == 2 ? TD_KEYLOG_SLOT_NONE : i % 16;
		snprintf(e.outcome, sizeof(e.outcome), "%s", i % 4 == 3 ? "fail" : "ok");
		assert_int_equal(td_keylog_entry_hash(&e, e.hash), 0);
		int m = td_keylog_format(&e, buf + len, cap - len);
		assert_true(m > 0);
		len += (size_t)m;
		memcpy(e.prev, e.hash, 32);
	}
	if (a) {
		a->count = (uint64_t)n;
		memcpy(a->head, e.prev, 32);
	}
	return len;
}

static void test_hashes_pinned(void **state)
{
	/* the document's definitions, computed independently */
	uint8_t g[32], want[32], msg[64];
	char body[600], line[TD_KEYLOG_LINE_MAX + 1], hex[65];
	struct td_keylog_entry e;

	memcpy(msg, "tdcrypt v1 keylog genesis\n", 26);
	memcpy(msg + 26, U, 16);
	assert_int_equal(td_sha256(msg, 42, want), 0);
	assert_int_equal(td_keylog_genesis(U, g), 0);
	assert_memory_equal(g, want, 32);

	memset(&e, 0, sizeof(e));
	e.seq = 0;
	e.time = 1700000000;
	e.uid = 0;
	memcpy(e.uuid, U, 16);
	strcpy(e.op, "format");
	e.slot = 0;
	strcpy(e.outcome, "ok");
	memcpy(e.prev, g, 32);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", g[i]);
	snprintf(body, sizeof(body),
		 "tdcrypt v1 keylog entry\nseq=0 time=1700000000 uid=0 uuid=" USTR
		 " op=format slot=0 outcome=ok prev=%s",
		 hex);
	assert_int_equal(td_sha256(body, strlen(body), want), 0);
	assert_int_equal(td_keylog_entry_hash(&e, e.hash), 0);
	assert_memory_equal(e.hash, want, 32);
	int n = td_keylog_format(&e, line, sizeof(line));
	assert_int_equal((size_t)n, strlen(body) - 24 + 71);
	assert_int_equal(line[n - 1], '\n');
	assert_int_equal(strncmp(line, body + 24, strlen(body) - 24), 0);
}

static void test_roundtrip_and_verify(void **state)
{
	static char buf[64 * 600];
	struct td_keylog_anchor a, half;
	struct td_keylog_result r;
	char err[300];
	size_t len = make_log(buf, sizeof(buf), 40, &a);

	assert_int_equal(td_keylog_verify_buf(buf, len, U, &a, &r, err, sizeof(err)), 0);
	assert_int_equal(r.entries, 40);
	assert_int_equal(r.anchored, 40);
	assert_int_equal(r.unanchored, 0);
	assert_memory_equal(r.head, a.head, 32);
	/* no anchor, and an anchor at an earlier entry: an unanchored tail */
	assert_int_equal(td_keylog_verify_buf(buf, len, U, NULL, &r, err, sizeof(err)), 0);
	assert_int_equal(r.unanchored, 40);
	make_log(err, sizeof(err), 1, &half); /* entry 0 alone */
	assert_int_equal(td_keylog_verify_buf(buf, len, U, &half, &r, err, sizeof(err)), 0);
	assert_int_equal(r.unanchored, 39);
	/* an empty log verifies with no anchor, not with one */
	assert_int_equal(td_keylog_verify_buf("", 0, U, NULL, &r, err, sizeof(err)), 0);
	assert_int_equal(td_keylog_verify_buf("", 0, U, &a, &r, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "past the end"));
	/* another image's log */
	uint8_t other[16];
	memcpy(other, U, 16);
	other[15] ^= 1;
	assert_int_equal(td_keylog_verify_buf(buf, len, other, NULL, &r, err, sizeof(err)),
			 -EBADMSG);
	assert_int_equal(r.bad_seq, 0);
}

static void expect_bad(const char *buf, size_t len, const struct td_keylog_anchor *a,
		       const char *needle, uint64_t seq)
{
	struct td_keylog_result r;
	char err[400];

	assert_int_equal(td_keylog_verify_buf(buf, len, U, a, &r, err, sizeof(err)), -EBADMSG);
	if (!strstr(err, needle))
		fail_msg("expected '%s' in '%s'", needle, err);
	assert_int_equal(r.bad_seq, seq);
}

static char *line_start(char *buf, int n)
{
	char *p = buf;

	while (n-- > 0)
		p = strchr(p, '\n') + 1;
	return p;
}

/* One entry continuing from (seq, prev) into buf; its hash into out. */
static size_t add_entry(char *buf, size_t cap, uint64_t seq, const char *op, const uint8_t prev[32],
			uint8_t out[32])
{
	struct td_keylog_entry e;
	int m;

	memset(&e, 0, sizeof(e));
	e.seq = seq;
	e.time = 1700001000u + seq;
	e.uid = 0;
	memcpy(e.uuid, U, 16);
	snprintf(e.op, sizeof(e.op), "%s", op);
	e.slot = TD_KEYLOG_SLOT_NONE;
	snprintf(e.outcome, sizeof(e.outcome), "ok");
	memcpy(e.prev, prev, 32);
	assert_int_equal(td_keylog_entry_hash(&e, e.hash), 0);
	m = td_keylog_format(&e, buf, cap);
	assert_true(m > 0);
	memcpy(out, e.hash, 32);
	return (size_t)m;
}

/* docs/FORMAT.md "Reset": a reset entry starts a file at the anchor it was
 * made under and must itself be anchored. */
static void test_reset(void **state)
{
	char old[4096], buf[4096], err[400];
	struct td_keylog_anchor a, after;
	struct td_keylog_result r;
	uint8_t h1[32], h2[32];
	size_t len;

	(void)state;
	make_log(old, sizeof(old), 7, &a); /* the header anchored 7 entries */
	len = add_entry(buf, sizeof(buf), 7, "reset", a.head, h1);
	len += add_entry(buf + len, sizeof(buf) - len, 8, "load", h1, h2);
	/* anchored at the reset: verifies, one unanchored entry after it */
	after.count = 8;
	memcpy(after.head, h1, 32);
	assert_int_equal(td_keylog_verify_buf(buf, len, U, &after, &r, err, sizeof(err)), 0);
	assert_int_equal(r.reset_at, 7);
	assert_int_equal(r.entries, 9);
	assert_int_equal(r.unanchored, 1);
	assert_memory_equal(r.head, h2, 32);
	/* anchored at the last entry */
	after.count = 9;
	memcpy(after.head, h2, 32);
	assert_int_equal(td_keylog_verify_buf(buf, len, U, &after, &r, err, sizeof(err)), 0);
	assert_int_equal(r.unanchored, 0);
	/* the header still at the old anchor: the reset is not anchored */
	expect_bad(buf, len, &a, "the log was reset at seq 7 but the reset is not anchored", 7);
	/* no anchor in the header at all */
	memset(&after, 0, sizeof(after));
	expect_bad(buf, len, &after, "not anchored", 7);
	/* chain-only checks (no key) take the reset as the start */
	assert_int_equal(td_keylog_verify_buf(buf, len, U, NULL, &r, err, sizeof(err)), 0);
	assert_int_equal(r.entries, 9);
	/* a reset anywhere but the first line is refused */
	len = make_log(buf, sizeof(buf), 3, &a);
	len += add_entry(buf + len, sizeof(buf) - len, 3, "reset", a.head, h1);
	a.count = 4;
	memcpy(a.head, h1, 32);
	expect_bad(buf, len, &a, "is a reset, which may only start a log", 3);
	/* a follower numbered as if the reset were not there */
	len = add_entry(buf, sizeof(buf), 7, "reset", a.head, h1);
	len += add_entry(buf + len, sizeof(buf) - len, 1, "load", h1, h2);
	expect_bad(buf, len, NULL, "entry removed or reordered at seq 8", 8);
}

/* Appends and resets against a log another process holds locked. */
static int flock_waiters(void)
{
	char line[512];
	FILE *f = fopen("/proc/locks", "r");
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "->") && strstr(line, "FLOCK"))
			n++;
	fclose(f);
	return n;
}

static size_t count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static pid_t spawn_append(void)
{
	char err[512];
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(td_keylog_append(U, "unload", TD_KEYLOG_SLOT_NONE, "fail", NULL, NULL, err,
				       sizeof(err)) == 0
			  ? 0
			  : 1);
	return pid;
}

static void reap_ok(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void wait_waiters(int n)
{
	int i;

	for (i = 0; i < 1000 && flock_waiters() < n; i++)
		usleep(10000);
	assert_true(flock_waiters() >= n);
}

static void test_log_set_aside_while_waiting(void **state)
{
	char dir[] = "/tmp/test_keylog.XXXXXX", path[4200], dpath[4200], aside[4300];
	char kept[4500], err[512];
	struct td_keylog_anchor next, after;
	struct td_keylog_result r;
	struct dirent *de;
	DIR *d;
	pid_t p1, p2;
	int fd, i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	setenv("TDCRYPT_STATE_DIR", dir, 1);
	for (i = 0; i < 3; i++)
		assert_int_equal(
		    td_keylog_append(U, "load", 0, "ok", NULL, &next, err, sizeof(err)), 0);
	assert_int_equal(td_statedir_path(U, "keylog", 0, path, sizeof(path), err, sizeof(err)), 0);
	snprintf(dpath, sizeof(dpath), "%s", path);
	*strrchr(dpath, '/') = '\0';
	snprintf(aside, sizeof(aside), "%s.aside", path);

	/* 1. a writer waiting for the lock of a log that is then renamed away
	 * appends to the log now at the path, not to the renamed one */
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	p1 = spawn_append();
	wait_waiters(1);
	assert_int_equal(rename(path, aside), 0);
	/* explicit unlock: the children share this open file (fork) */
	assert_int_equal(flock(fd, LOCK_UN), 0);
	close(fd);
	reap_ok(p1);
	assert_int_equal(count_lines(aside), 3);
	assert_int_equal(count_lines(path), 1); /* a new chain from genesis */
	unlink(path);
	assert_int_equal(rename(aside, path), 0);

	/* 2. a reset and an append both waiting: whichever is granted the lock
	 * first, nothing lands in the kept file after the reset set it aside */
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	p1 = spawn_append();
	wait_waiters(1);
	p2 = fork();
	assert_true(p2 >= 0);
	if (p2 == 0)
		_exit(td_keylog_reset(U, &next, &after, err, sizeof(err)) == 0 ? 0 : 1);
	wait_waiters(2);
	assert_int_equal(flock(fd, LOCK_UN), 0);
	close(fd);
	reap_ok(p1);
	reap_ok(p2);
	kept[0] = '\0';
	d = opendir(dpath);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "keylog.before-reset.", 20) == 0)
			snprintf(kept, sizeof(kept), "%s/%s", dpath, de->d_name);
	closedir(d);
	assert_true(kept[0] != '\0');
	/* 3 + the append + the reset entry, split old / new one way or the other */
	assert_int_equal(count_lines(kept) + count_lines(path), 5);
	assert_true(count_lines(kept) >= 3 && count_lines(path) >= 1);
	assert_int_equal(td_keylog_verify(U, NULL, &r, err, sizeof(err)), 0);
	assert_int_equal(r.reset_at, 3);
	unlink(kept);
	unlink(path);
	rmdir(dpath);
	rmdir(dir);
	unsetenv("TDCRYPT_STATE_DIR");
}

static void test_tampering(void **state)
{
	static char buf[16 * 600], t[16 * 600];
	struct td_keylog_anchor a;
	size_t len = make_log(buf, sizeof(buf), 10, &a);
	char *l, *m;
	size_t l4, l5;

	/* edit a field */
	memcpy(t, buf, len);
	l = line_start(t, 3);
	m = strstr(l, "uid=1000");
	m[4] = '2';
	expect_bad(t, len, &a, "hash mismatch at seq 3", 3);
	/* delete entry 4 */
	memcpy(t, buf, len);
	l = line_start(t, 4);
	m = line_start(t, 5);
	memmove(l, m, len - (size_t)(m - t));
	expect_bad(t, len - (size_t)(m - l), &a, "removed or reordered at seq 4", 4);
	/* swap entries 4 and 5 */
	l = line_start(buf, 4);
	l4 = (size_t)(line_start(buf, 5) - l);
	l5 = (size_t)(line_start(buf, 6) - line_start(buf, 5));
	memcpy(t, buf, len);
	memcpy(t + (l - buf), line_start(buf, 5), l5);
	memcpy(t + (l - buf) + l5, l, l4);
	expect_bad(t, len, &a, "removed or reordered at seq 4", 4);
	/* cut the tail */
	expect_bad(buf, (size_t)(line_start(buf, 9) - buf), &a, "past the end", 9);
	/* torn last line */
	expect_bad(buf, len - 3, &a, "not terminated", 9);
	/* an anchor whose head does not match (rewritten history) */
	a.head[0] ^= 1;
	expect_bad(buf, len, &a, "head hash mismatch at the anchored entry seq 9", 9);
	a.head[0] ^= 1;
	/* prev of an entry changed and its hash recomputed: the next link breaks */
	struct td_keylog_entry e;
	char err[200];
	memcpy(t, buf, len);
	l = line_start(t, 6);
	m = line_start(t, 7);
	assert_int_equal(td_keylog_parse_line(l, (size_t)(m - l) - 1, &e, err, sizeof(err)), 0);
	e.time++;
	assert_int_equal(td_keylog_entry_hash(&e, e.hash), 0);
	char keep = *m; /* td_keylog_format NUL-terminates */
	assert_int_equal(td_keylog_format(&e, l, (size_t)(m - l) + 1), m - l);
	*m = keep;
	expect_bad(t, len, &a, "prev-hash mismatch at seq 7", 7);
}

static void parse_bad(const char *line, const char *needle)
{
	struct td_keylog_entry e;
	char err[300];

	memset(err, 0, sizeof(err));
	assert_int_equal(td_keylog_parse_line(line, strlen(line), &e, err, sizeof(err)), -EBADMSG);
	if (!strstr(err, needle))
		fail_msg("line '%.80s...': expected '%s' in '%s'", line, needle, err);
}

static void test_strict_parse(void **state)
{
	char good[TD_KEYLOG_LINE_MAX + 1], l[2048];
	struct td_keylog_entry e;
	char err[300];
	size_t n = make_log(good, sizeof(good), 1, NULL) - 1;
	const char *H = strstr(good, "prev=") + 5;

	good[n] = 0;
	assert_int_equal(td_keylog_parse_line(good, n, &e, err, sizeof(err)), 0);
	assert_string_equal(e.op, "format");
	assert_int_equal(e.slot, 0);
	assert_int_equal(e.uid, 1000);

#define WITH(from, to)                                                                             \
	do {                                                                                       \
		char *q_ = strstr(strcpy(l, good), from);                                          \
		assert_non_null(q_);                                                               \
		memmove(q_ + strlen(to), q_ + strlen(from), strlen(q_ + strlen(from)) + 1);        \
		memcpy(q_, to, strlen(to));                                                        \
	} while (0)
	WITH("seq=0", "seq=00");
	parse_bad(l, "bad seq");
	WITH("seq=0 ", "");
	parse_bad(l, "missing field 'seq'");
	WITH("time=1700000000", "time=-1");
	parse_bad(l, "bad time");
	WITH("time=1700000000", "time=99999999999999999999");
	parse_bad(l, "bad time");
	WITH("uid=1000", "uid=4294967296");
	parse_bad(l, "bad uid");
	WITH(" uid=1000", "");
	parse_bad(l, "missing field 'uid'");
	WITH("uuid=3ad2", "uuid=3AD2");
	parse_bad(l, "bad uuid");
	WITH("op=format", "op=Format");
	parse_bad(l, "bad op");
	WITH("op=format", "op=");
	parse_bad(l, "bad op");
	WITH("op=format", "op=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	parse_bad(l, "bad op");
	WITH("slot=0", "slot=16");
	parse_bad(l, "bad slot");
	WITH("slot=0", "slot=+1");
	parse_bad(l, "bad slot");
	WITH("outcome=ok", "outcome=maybe");
	parse_bad(l, "bad outcome");
	WITH("outcome=ok", "outcome=okay-but-very-long");
	parse_bad(l, "bad outcome");
	WITH(H, "zz");
	parse_bad(l, "bad prev");
	WITH("prev=", "prev=0");
	parse_bad(l, "bad prev");
	WITH(" hash=", "  hash=");
	parse_bad(l, "missing field 'hash'");
	WITH(" hash=", " hash=A");
	parse_bad(l, "bad hash");
	strcpy(l, good);
	strcat(l, " extra=1");
	parse_bad(l, "unexpected bytes after the hash");
	strcpy(l, good);
	l[strlen(l) - 1] = 'G';
	parse_bad(l, "bad hash");
	strcpy(l, good);
	l[10] = '\t';
	parse_bad(l, "not printable");
	memset(l, 'a', 1500);
	l[1500] = 0;
	parse_bad(l, "too long");
	parse_bad("", "missing field 'seq'");
	parse_bad("seq=", "bad seq");
	parse_bad("seq=1", "missing field 'time'");
	/* a NUL inside the line */
	strcpy(l, good);
	l[20] = 0;
	assert_int_equal(td_keylog_parse_line(l, n, &e, err, sizeof(err)), -EBADMSG);
	/* a small err buffer is fine */
	assert_int_equal(td_keylog_parse_line("x", 1, &e, err, 4), -EBADMSG);
	assert_int_equal(td_keylog_parse_line("x", 1, &e, NULL, 0), -EBADMSG);
}

static void test_random_lines(void **state)
{
	/* random bytes and random mutations of a good line: refused or
	 * accepted, never a crash (and an accepted line re-formats to itself) */
	char good[TD_KEYLOG_LINE_MAX + 1], l[TD_KEYLOG_LINE_MAX + 8], again[TD_KEYLOG_LINE_MAX + 1];
	struct td_keylog_entry e;
	struct td_keylog_result r;
	char err[300];
	size_t n = make_log(good, sizeof(good), 1, NULL);

	srand(7);
	for (int it = 0; it < 20000; it++) {
		size_t len = n;

		memcpy(l, good, n);
		for (int k = rand() % 4; k >= 0; k--)
			l[rand() % n] = (char)(rand() % 256);
		if (it % 7 == 0)
			len = (size_t)rand() % (n + 1);
		if (td_keylog_parse_line(l, len ? len - 1 : 0, &e, err, sizeof(err)) == 0) {
			assert_int_equal(td_keylog_format(&e, again, sizeof(again)), (int)len);
			assert_memory_equal(again, l, len - 1);
		}
		td_keylog_verify_buf(l, len, U, NULL, &r, err, sizeof(err));
	}
}

static void test_anchor_accessors(void **state)
{
	static struct td_crypt_hdr h;
	struct td_keylog_anchor a, b;
	char err[200];

	memset(&h, 0, sizeof(h));
	h.freshness[100] = 7; /* bytes 64.. are not the anchor's */
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &a, err, sizeof(err)), 0);
	assert_int_equal(a.count, 0);
	a.count = 0x0102030405060708ULL;
	for (int i = 0; i < 32; i++)
		a.head[i] = (uint8_t)(0xa0 + i);
	td_hdr_keylog_anchor_set(&h, &a);
	/* the documented bytes */
	assert_memory_equal(h.freshness, "TDKEYLOG", 8);
	assert_int_equal(h.freshness[8], 1);
	assert_int_equal(h.freshness[16], 0x08);
	assert_int_equal(h.freshness[23], 0x01);
	assert_memory_equal(h.freshness + 24, a.head, 32);
	assert_int_equal(h.freshness[100], 7);
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &b, err, sizeof(err)), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	/* malformed anchors are refused */
	h.freshness[60] = 1;
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &b, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "reserved"));
	h.freshness[60] = 0;
	h.freshness[8] = 2;
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &b, err, sizeof(err)), -EBADMSG);
	h.freshness[8] = 1;
	h.freshness[0] = 'X';
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &b, err, sizeof(err)), -EBADMSG);
	h.freshness[0] = 'T';
	memset(h.freshness + 16, 0, 8);
	assert_int_equal(td_hdr_keylog_anchor_get(&h, &b, err, sizeof(err)), -EBADMSG);
	/* count 0 clears it */
	a.count = 0;
	td_hdr_keylog_anchor_set(&h, &a);
	for (int i = 0; i < 64; i++)
		assert_int_equal(h.freshness[i], 0);
	assert_int_equal(h.freshness[100], 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hashes_pinned),
	    cmocka_unit_test(test_roundtrip_and_verify),
	    cmocka_unit_test(test_tampering),
	    cmocka_unit_test(test_strict_parse),
	    cmocka_unit_test(test_random_lines),
	    cmocka_unit_test(test_anchor_accessors),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_log_set_aside_while_waiting),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
