/* VBD spec parser: good forms, and many bad strings each refused with a
 * message that names the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/block/spec.h"
#include "tapdisk/registry/registry.h"

static void test_good(void **state)
{
	struct td_spec s;
	char err[512], canon[512];

	assert_int_equal(td_spec_parse("aio:/tmp/x.img", &s, err, sizeof(err)), 0);
	assert_int_equal(s.nlayers, 1);
	assert_string_equal(s.layers[0].drv->name, "aio");
	assert_string_equal(s.path, "/tmp/x.img");
	td_spec_free(&s);

	assert_int_equal(td_spec_parse("tap:aio:/tmp/x.img", &s, err, sizeof(err)), 0);
	assert_int_equal(s.nlayers, 1);
	td_spec_free(&s);

	/* the path may contain colons: everything after the image driver */
	assert_int_equal(td_spec_parse("aio:/tmp/a:b:c", &s, err, sizeof(err)), 0);
	assert_string_equal(s.path, "/tmp/a:b:c");
	td_spec_free(&s);

	assert_int_equal(td_spec_parse("fault,fail_nth=3,op=read:aio:/x", &s, err, sizeof(err)), 0);
	assert_int_equal(s.nlayers, 2);
	assert_string_equal(s.layers[0].drv->name, "fault");
	assert_string_equal(s.layers[0].opts, "fail_nth=3,op=read");
	assert_null(s.layers[1].opts);
	assert_int_equal(td_spec_format(&s, canon, sizeof(canon)), 0);
	assert_string_equal(canon, "fault,fail_nth=3,op=read:aio:/x");
	td_spec_free(&s);

	assert_int_equal(td_spec_parse("tap:fault:fault:aio:rel/path", &s, err, sizeof(err)), 0);
	assert_int_equal(s.nlayers, 3);
	assert_string_equal(s.path, "rel/path");
	td_spec_free(&s);
}

struct bad {
	const char *spec;
	const char *must_mention;
};

static void test_bad(void **state)
{
	static const struct bad cases[] = {
	    {"", "empty"},
	    {"tap:", "names no driver"},
	    {"/tmp/x.img", "names no driver"},
	    {"aio:", "empty path"},
	    {"tap:aio:", "empty path"},
	    {"foo:/tmp/x", "unknown driver 'foo'"},
	    {"tap:foo:aio:/x", "unknown driver 'foo'"},
	    {"AIO:/x", "unknown driver 'AIO'"},
	    {":/x", "empty or overlong driver name"},
	    {"::", "empty or overlong driver name"},
	    {"fault:/x", "no image driver"},
	    {"fault:fault", "no image driver"},
	    {"fault,:aio:/x", "empty option list"},
	    {"fault,a b:aio:/x", "spaces or control"},
	    {"aio:/x\ny", "control characters"},
	    {"fault:fault:fault:fault:fault:fault:fault:fault:aio:/x", "more than"},
	    {"tap:tap:aio:/x", "unknown driver 'tap'"},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:/x",
	     "overlong"},
	    {"fault,x=1", "no driver"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct td_spec s;
		char err[512] = "";
		int rc = td_spec_parse(cases[i].spec, &s, err, sizeof(err));

		if (rc == 0 || !strstr(err, cases[i].must_mention))
			fail_msg("spec '%s': rc=%d err='%s' (wanted '%s')", cases[i].spec, rc, err,
				 cases[i].must_mention);
	}
}

static void test_null_and_long(void **state)
{
	struct td_spec s;
	char err[256], big[TD_SPEC_MAX_LEN + 10];

	assert_int_not_equal(td_spec_parse(NULL, &s, err, sizeof(err)), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	memcpy(big, "aio:", 4);
	assert_int_not_equal(td_spec_parse(big, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "too long"));
	/* a tiny error buffer is not overrun */
	assert_int_not_equal(td_spec_parse("foo:/x", &s, err, 8), 0);
	assert_int_equal(strlen(err), 7);
}

static void test_unknown_lists_known(void **state)
{
	struct td_spec s;
	char err[512];

	assert_int_not_equal(td_spec_parse("bogus:/x", &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "known: "));
	assert_non_null(strstr(err, "aio"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_null_and_long),
	    cmocka_unit_test(test_unknown_lists_known),
	};
	td_drivers_set(td_registry());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
