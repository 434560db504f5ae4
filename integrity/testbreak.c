/* Test builds only (libtd-test.a, -DTD_TEST_BUILD): the switches that
 * break the integrity layer on purpose, so the crash simulator can show
 * that it notices (tests/tools/crashsim.c --break). Production builds
 * contain neither this nor the code paths it selects. */
#ifdef TD_TEST_BUILD
#include "integrity/integ.h"

static enum ti_test_break mode = TI_TEST_NONE;

void ti_test_break(enum ti_test_break m)
{
	mode = m;
}

enum ti_test_break ti_test_break_mode(void)
{
	return mode;
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int ti_testbreak_empty;
#endif
