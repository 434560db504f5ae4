/* The event loop. Its deferred-call queue: a cancelled call never runs, the
 * others still run in order, wherever the cancelled one stood. A driver
 * whose memory holds a td_defer cancels it at close (qcow2 did not, and a
 * round queued at a Xen guest's disconnect ran in freed memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

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

/* ---- polling before a wait -------------------------------------------------- */

static int ready_calls, ready_at, run_calls;
static struct td_loop *poll_loop;
static struct td_poller *poll_self;
static bool del_in_run;

static void on_fd(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events; /* level-triggered and never read: ready at every wait */
}

static bool p_ready(void *opaque)
{
	(void)opaque;
	return ++ready_calls == ready_at;
}

static void p_run(void *opaque)
{
	(void)opaque;
	run_calls++;
	if (del_in_run)
		td_loop_del_poller(poll_loop, poll_self);
}

static struct td_loop *poll_setup(struct td_poller *p, int at, uint64_t ns)
{
	struct td_loop *loop = td_loop_new();

	assert_non_null(loop);
	ready_calls = run_calls = 0;
	ready_at = at;
	del_in_run = false;
	td_poller_init(p, p_ready, p_run, NULL);
	td_loop_add_poller(loop, p);
	td_loop_set_poll_ns(loop, ns);
	poll_loop = loop;
	poll_self = p;
	return loop;
}

/* Asked to poll, the loop calls ready() until it says yes and runs the
 * poller instead of sleeping; the wait itself would have lasted 5 s. */
static void test_poll_runs_ready(void **state)
{
	struct td_poller p;
	struct td_loop *loop = poll_setup(&p, 500, 60000000000ull);
	uint64_t hits, polls, budget;

	(void)state;
	td_loop_poll_soon(loop);
	assert_int_equal(td_loop_run_once(loop, 5000), 0);
	assert_int_equal(run_calls, 1);
	assert_int_equal(ready_calls, 500);
	td_loop_poll_stats(loop, &hits, &polls, &budget);
	assert_int_equal(hits, 1);
	assert_int_equal(polls, 1);
	td_loop_free(loop);
}

/* Not asked (no td_loop_poll_soon since the last wait), or with a budget
 * of 0, the loop never looks: an idle tapdisk sleeps at once. */
static void test_poll_only_when_asked(void **state)
{
	struct td_poller p;
	struct td_loop *loop = poll_setup(&p, 1, 60000000000ull);

	(void)state;
	assert_int_equal(td_loop_run_once(loop, 1), 0);
	assert_int_equal(ready_calls, 0);
	/* asked once: polled once, then not again */
	ready_at = -1;
	td_loop_poll_soon(loop);
	assert_int_equal(td_loop_run_once(loop, 1), 0);
	assert_true(ready_calls > 0);
	ready_calls = 0;
	assert_int_equal(td_loop_run_once(loop, 1), 0);
	assert_int_equal(ready_calls, 0);
	td_loop_set_poll_ns(loop, 0);
	td_loop_poll_soon(loop);
	assert_int_equal(td_loop_run_once(loop, 1), 0);
	assert_int_equal(ready_calls, 0);
	td_loop_free(loop);
}

/* A poll that finds nothing ends with its budget (here the wait's 20 ms
 * timeout, below the 60 s budget) and the loop goes on to wait. */
static void test_poll_budget_ends(void **state)
{
	struct td_poller p;
	struct td_loop *loop = poll_setup(&p, -1, 60000000000ull);
	uint64_t hits, polls, budget;

	(void)state;
	td_loop_poll_soon(loop);
	assert_int_equal(td_loop_run_once(loop, 20), 0);
	assert_true(ready_calls >= 64);
	assert_int_equal(run_calls, 0);
	td_loop_poll_stats(loop, &hits, &polls, &budget);
	assert_int_equal(hits, 0);
	assert_int_equal(polls, 1);
	td_loop_free(loop);
}

/* A turn that does not sleep (a deferred call is queued) keeps the request
 * to poll for the next wait; a poller may remove itself in its run(). */
static void test_poll_kept_and_removed(void **state)
{
	struct td_poller p;
	struct td_loop *loop = poll_setup(&p, 3, 60000000000ull);
	struct td_defer d;
	static const char c = 'x';

	(void)state;
	td_defer_init(&d, note, (void *)&c);
	td_loop_poll_soon(loop);
	td_loop_defer(loop, &d);
	assert_int_equal(td_loop_run_once(loop, 60000), 0); /* runs d, does not sleep */
	assert_int_equal(ready_calls, 0);
	del_in_run = true;
	assert_int_equal(td_loop_run_once(loop, 60000), 0);
	assert_int_equal(run_calls, 1);
	td_loop_poll_soon(loop);
	ready_calls = 0;
	assert_int_equal(td_loop_run_once(loop, 1), 0);
	assert_int_equal(ready_calls, 0);
	td_loop_free(loop);
}

/* The budget adapts: a poll that finds nothing and a wait that then sleeps
 * longer than the most a poll may last (100 ms here; the wait lasts 150 ms)
 * halve it, down to a 64th of the most; a wait woken soon after the poll
 * gave up (an event already there) doubles it, up to the most. The most is
 * large so that a preempted test process cannot turn a short wait into a
 * long one. */
static void test_poll_budget_adapts(void **state)
{
	struct td_poller p;
	struct td_loop *loop = poll_setup(&p, -1, 100000000);
	uint64_t hits, polls, budget;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t one = 1;
	struct td_watch *w;

	(void)state;
	for (int i = 0; i < 8; i++) {
		td_loop_poll_soon(loop);
		assert_int_equal(td_loop_run_once(loop, 150), 0);
	}
	td_loop_poll_stats(loop, &hits, &polls, &budget);
	assert_int_equal(polls, 8);
	assert_int_equal(hits, 0);
	assert_int_equal(budget, 100000000 / 64);
	/* an event that is there as soon as the poll gives up */
	assert_true(efd >= 0);
	w = td_loop_add_fd(loop, efd, EPOLLIN, on_fd, NULL);
	assert_non_null(w);
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	td_loop_poll_soon(loop);
	assert_int_equal(td_loop_run_once(loop, 150), 0);
	td_loop_poll_stats(loop, &hits, &polls, &budget);
	assert_int_equal(budget, 2 * (100000000 / 64));
	for (int i = 0; i < 8; i++) {
		td_loop_poll_soon(loop);
		assert_int_equal(td_loop_run_once(loop, 150), 0);
	}
	td_loop_poll_stats(loop, &hits, &polls, &budget);
	assert_int_equal(budget, 100000000);
	td_loop_del_fd(loop, w);
	td_loop_run_once(loop, 0);
	close(efd);
	td_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cancel_head),	       cmocka_unit_test(test_cancel_middle),
	    cmocka_unit_test(test_cancel_tail),	       cmocka_unit_test(test_cancel_not_queued),
	    cmocka_unit_test(test_poll_runs_ready),    cmocka_unit_test(test_poll_only_when_asked),
	    cmocka_unit_test(test_poll_budget_ends),   cmocka_unit_test(test_poll_kept_and_removed),
	    cmocka_unit_test(test_poll_budget_adapts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
