/* The ram driver's spec (tapdisk/drivers/ram.h) and the byte counts it
 * and the qos layer read (td_parse_size, tapdisk/core/util.h): every form
 * parses one way only, and every bad one is refused with a message. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/block/spec.h"
#include "tapdisk/core/util.h"
#include "tapdisk/drivers/ram.h"
#include "tapdisk/registry/registry.h"

static void test_sizes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(td_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(td_parse_size("64k", &v), 0);
	assert_int_equal(v, 64 << 10);
	assert_int_equal(td_parse_size("3M", &v), 0);
	assert_int_equal(v, 3 << 20);
	assert_int_equal(td_parse_size("2G", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(td_parse_size("1T", &v), 0);
	assert_int_equal(v, 1ull << 40);
	assert_int_equal(td_parse_size("0", &v), 0);
	assert_int_equal(td_parse_size("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(td_parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(td_parse_size("17179869184G", &v), -ERANGE);
	const char *bad[] = {"", "K", "-1", "+1", " 1", "1 ", "1KB", "1KiB", "1.5G", "0x10", "1P"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(td_parse_size(bad[i], &v), -EINVAL);
	assert_int_equal(td_parse_size(NULL, &v), -EINVAL);
}

static void ok(const char *path, const char *name, uint64_t size, const char *group)
{
	struct td_ram_spec r;
	char err[512] = "";

	assert_int_equal(td_ram_parse(path, &r, err, sizeof(err)), 0);
	assert_string_equal(r.name, name);
	assert_int_equal(r.size, size);
	assert_string_equal(r.group, group);
}

static void bad(const char *path, const char *says)
{
	struct td_ram_spec r;
	char err[512] = "";

	assert_int_equal(td_ram_parse(path, &r, err, sizeof(err)), -EINVAL);
	if (!strstr(err, says)) {
		fprintf(stderr, "'%s': '%s' lacks '%s'\n", path, err, says);
		fail();
	}
}

static void test_ram_forms(void **state)
{
	(void)state;
	ok("1G", "", 1ull << 30, "");
	ok("4096", "", 4096, "");
	ok("vm1,size=512M", "vm1", 512 << 20, "");
	ok("_x.y-z,size=4k", "_x.y-z", 4096, "");
	ok("vm1,shm=disk,size=1M", "vm1", 1 << 20, "disk");
	ok("vm1,size=1M,shm=1001", "vm1", 1 << 20, "1001");
	bad("0", "empty");
	bad("1000", "not a multiple of 4096");
	bad("1X", "is not a size");
	bad("1G,shm=disk", "options need a named RAM disk");
	bad("99999T", "too large");
	bad("vm1", "without its size");
	bad("9vm,size=1G", "is not a size");
	bad("vm/1,size=1G", "neither a size nor a name");
	bad("../x,size=1G", "neither a size nor a name");
	bad("vm1,size=1G,size=2G", "twice");
	bad("vm1,size=x", "is not a size");
	bad("vm1,shm=", "bad shm=");
	bad("vm1,size=1G,shm=a b", "bad shm=");
	bad("vm1,size=1G,colour=blue", "unknown option");
	bad("vm1,shm=g", "has no size=");
	bad("vm1,size=1G,", "empty option");
	bad(",size=1G", "nothing before");
	bad("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,size=1G",
	    "at most 64");
}

/* The spec parser hands everything after "ram:" to the driver: the comma
 * of a named RAM disk is not a driver option. */
static void test_in_spec(void **state)
{
	struct td_spec s;
	char err[512], out[512];

	(void)state;
	assert_int_equal(td_spec_parse("qos,iops=5:crypt:ram:vm1,size=1G", &s, err, sizeof(err)),
			 0);
	assert_int_equal(s.nlayers, 3);
	assert_string_equal(s.layers[0].drv->name, "qos");
	assert_string_equal(s.layers[0].opts, "iops=5");
	assert_string_equal(s.layers[2].drv->name, "ram");
	assert_null(s.layers[2].opts);
	assert_string_equal(s.path, "vm1,size=1G");
	assert_int_equal(td_spec_format(&s, out, sizeof(out)), 0);
	assert_string_equal(out, "qos,iops=5:crypt:ram:vm1,size=1G");
	td_spec_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_ram_forms),
	    cmocka_unit_test(test_in_spec),
	};

	td_drivers_set(td_registry());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
