/* The event loop's deferred-call queue: a cancelled call never runs, the
 * others still run in order, wherever the cancelled one stood. A driver
 * whose memory holds a td_defer cancels it at close (qcow2 did not, and a
 * round queued at a Xen guest's disconnect ran in freed memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/core/loop.h"

static char order[8];
static int norder;

static void note(void *opaque)
{
	order[norder++] = *(const char *)opaque;
}

static void run(struct td_loop *loop)
{
	norder = 0;
	memset(order, 0, sizeof(order));
	/* one turn runs every queued call */
	assert_int_equal(td_loop_run_once(loop, 0), 0);
}

static void check_cancel(int which, const char *want)
{
	struct td_loop *loop = td_loop_new();
	struct td_defer d[3];
	static const char names[] = "abc";

	assert_non_null(loop);
	for (int i = 0; i < 3; i++) {
		td_defer_init(&d[i], note, (void *)&names[i]);
		td_loop_defer(loop, &d[i]);
	}
	td_loop_defer_cancel(loop, &d[which]);
	assert_false(d[which].queued);
	run(loop);
	assert_string_equal(order, want);
	/* the queue is whole: a new call after the cancel runs too */
	td_loop_defer(loop, &d[which]);
	run(loop);
	assert_int_equal(norder, 1);
	assert_int_equal(order[0], names[which]);
	td_loop_free(loop);
}

static void test_cancel_head(void **state)
{
	(void)state;
	check_cancel(0, "bc");
}

static void test_cancel_middle(void **state)
{
	(void)state;
	check_cancel(1, "ac");
}

static void test_cancel_tail(void **state)
{
	(void)state;
	check_cancel(2, "ab");
}

static void test_cancel_not_queued(void **state)
{
	struct td_loop *loop = td_loop_new();
	struct td_defer d;
	char a = 'a';

	(void)state;
	td_defer_init(&d, note, &a);
	td_loop_defer_cancel(loop, &d); /* never queued: nothing happens */
	td_loop_defer(loop, &d);
	run(loop);
	assert_string_equal(order, "a");
	td_loop_defer_cancel(loop, &d); /* ran already: nothing happens */
	run(loop);
	assert_int_equal(norder, 0);
	td_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cancel_head),
	    cmocka_unit_test(test_cancel_middle),
	    cmocka_unit_test(test_cancel_tail),
	    cmocka_unit_test(test_cancel_not_queued),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
