/* The host settings file (tapdisk/block/hostconf.h), the lexical path
 * normalization the backing-file confinement relies on, the file table's
 * lookup rules (tapdisk/block/files.h) and the same-layers rule of unpause. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/files.h"
#include "tapdisk/block/hostconf.h"
#include "tapdisk/block/spec.h"
#include "tapdisk/registry/registry.h"

static void norm(const char *in, const char *want)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", in);
	if (!want) {
		assert_int_equal(td_path_normalize(buf), -EINVAL);
		return;
	}
	assert_int_equal(td_path_normalize(buf), 0);
	assert_string_equal(buf, want);
}

static void test_normalize(void **state)
{
	(void)state;
	norm("/a/b/c", "/a/b/c");
	norm("//a///b/", "/a/b");
	norm("/a/./b/.", "/a/b");
	norm("/a/b/../c", "/a/c");
	norm("/a/b/../../c", "/c");
	norm("/a/..", "/");
	norm("/", "/");
	norm("/a/b/../../..", NULL); /* above the root */
	norm("/..", NULL);
	norm("a/b", NULL); /* relative */
	norm("", NULL);
	norm("/a/.../b", "/a/.../b"); /* only "." and ".." are special */
	norm("/a/..b/c", "/a/..b/c");
}

static void test_parse(void **state)
{
	struct td_hostconf c;
	char err[512];

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(td_hostconf_parse("", &c, err, sizeof(err)), 0);
	assert_int_equal(c.uid_first, TD_UID_RANGE_FIRST);
	assert_int_equal(c.uid_last, TD_UID_RANGE_LAST);
	assert_int_equal(c.ndirs, 0);
	assert_int_equal(c.ring_poll_us, TD_RING_POLL_US_DEFAULT);
	assert_int_equal(td_hostconf_parse("ring-poll-us = 0\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.ring_poll_us, 0);
	assert_int_equal(td_hostconf_parse("ring-poll-us = 100000\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.ring_poll_us, TD_RING_POLL_US_MAX);
	assert_int_equal(td_hostconf_parse("# comment\n\n  uid-range = 100000-100099  # tail\n"
					   "backing-dirs = /srv/golden /srv//base/./ \n",
					   &c, err, sizeof(err)),
			 0);
	assert_int_equal(c.uid_first, 100000);
	assert_int_equal(c.uid_last, 100099);
	assert_int_equal(c.ndirs, 2);
	assert_string_equal(c.backing_dirs[0], "/srv/golden");
	assert_string_equal(c.backing_dirs[1], "/srv/base");
	td_hostconf_clear(&c);

	/* each bad file is refused with the line and the reason */
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"uid-range = 0-10\n", "line 1: uid-range"},
	    {"uid-range = 20-10\n", "line 1: uid-range"},
	    {"uid-range = 10-2147483647\n", "line 1: uid-range"},
	    {"uid-range = 10\n", "line 1: uid-range"},
	    {"uid-range = a-b\n", "line 1: uid-range"},
	    {"\nbacking-dirs = relative/dir\n", "line 2: backing-dirs entry 'relative/dir'"},
	    {"backing-dirs = /\n", "backing-dirs entry '/'"},
	    {"backing-dirs = /../x\n", "backing-dirs entry"},
	    {"uid_range = 1-2\n", "unknown setting 'uid_range'"},
	    {"just words\n", "line 1: expected 'setting = value'"},
	    {"ring-poll-us = 100001\n", "line 1: ring-poll-us must be a whole number"},
	    {"ring-poll-us = -1\n", "line 1: ring-poll-us"},
	    {"ring-poll-us = 5us\n", "line 1: ring-poll-us"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_not_equal(td_hostconf_parse(bad[i].text, &c, err, sizeof(err)), 0);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err, bad[i].msg);
		/* a refused file leaves the defaults, not half of its settings */
		assert_int_equal(c.uid_first, TD_UID_RANGE_FIRST);
		assert_int_equal(c.ndirs, 0);
	}
}

/* A sealed table hands out only what it holds: a read-write entry serves a
 * read-only request, O_DIRECT must match, nothing else is opened. */
static void test_table(void **state)
{
	struct td_ctx ctx = {0};
	struct td_file f;
	char dir[] = "/tmp/tdhcXXXXXX", path[64], other[64], why[512];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = open(other, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	ctx.files = td_files_new();
	assert_non_null(ctx.files);
	/* before the seal: opened and recorded */
	assert_int_equal(td_file_open(&ctx, path, TD_FILE_RW, &f, why, sizeof(why)), 0);
	close(f.fd);
	assert_int_equal(td_files_count(ctx.files), 1);
	td_files_seal(ctx.files);
	/* after: served from the table, also read-only */
	assert_int_equal(td_file_open(&ctx, path, TD_FILE_RW, &f, why, sizeof(why)), 0);
	close(f.fd);
	assert_int_equal(td_file_open(&ctx, path, 0, &f, why, sizeof(why)), 0);
	close(f.fd);
	/* O_DIRECT is another open file: not in the table */
	assert_int_equal(td_file_open(&ctx, path, TD_FILE_DIRECT, &f, why, sizeof(why)), -EACCES);
	/* a file that exists but was never opened: refused, with the way out */
	assert_int_equal(td_file_open(&ctx, other, 0, &f, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "tap-ctl unpause -a"));
	/* root passes a read-only descriptor: it serves read-only requests only */
	fd = open(other, O_RDONLY);
	assert_int_equal(td_files_add(ctx.files, other, 0, fd, why, sizeof(why)), 0);
	assert_int_equal(td_file_open(&ctx, other, 0, &f, why, sizeof(why)), 0);
	close(f.fd);
	assert_int_equal(td_file_open(&ctx, other, TD_FILE_RW, &f, why, sizeof(why)), -EACCES);
	/* and a read-only descriptor cannot be passed off as a read-write one */
	fd = open(other, O_RDONLY);
	assert_int_equal(td_files_add(ctx.files, other, TD_FILE_RW, fd, why, sizeof(why)), -EBADF);
	td_files_free(ctx.files);
	unlink(path);
	unlink(other);
	rmdir(dir);
}

static void test_same_layers(void **state)
{
	char err[512];

	(void)state;
	assert_int_equal(td_spec_same_layers("crypt:aio:/a", "crypt:aio:/b", err, sizeof(err)), 0);
	assert_int_equal(
	    td_spec_same_layers("tap:crypt:qcow:/a", "crypt:qcow2:/b", err, sizeof(err)), 0);
	assert_int_equal(td_spec_same_layers("crypt:aio:/a", "aio:/a", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must stack the same drivers as the VBD (crypt:aio:...)"));
	assert_int_equal(td_spec_same_layers("crypt:aio:/a", "crypt:qcow2:/a", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(td_spec_same_layers("aio:/a", "crypt:aio:/a", err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_same_layers),
	};

	td_drivers_set(td_registry());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
