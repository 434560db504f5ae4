/* The QoS token bucket (tapdisk/qos/bucket.h) on a fake clock, and the
 * QoS settings words (tapdisk/qos/limits.h). No timing: every instant is
 * passed in. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/qos/bucket.h"
#include "tapdisk/qos/limits.h"

#define S 1000000000ull /* one second, in ns */
#define MS 1000000ull

/* A full bucket lets `burst` requests go at once, then one per 1/rate. */
static void test_burst_then_rate(void **state)
{
	struct td_tb b;
	uint64_t t = 5 * S;

	(void)state;
	td_tb_init(&b, 100, 500, t);
	for (int i = 0; i < 500; i++) {
		assert_int_equal(td_tb_wait(&b, 1, t), 0);
		td_tb_take(&b, 1, t);
	}
	/* empty: the next token comes in 10 ms */
	assert_int_equal(td_tb_wait(&b, 1, t), 10 * MS);
	assert_int_equal(td_tb_wait(&b, 1, t + 10 * MS - 1), 1);
	assert_int_equal(td_tb_wait(&b, 1, t + 10 * MS), 0);
	/* one second later: exactly 100 requests, then a wait again */
	t += S;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(td_tb_wait(&b, 1, t), 0);
		td_tb_take(&b, 1, t);
	}
	assert_true(td_tb_wait(&b, 1, t) > 0);
	assert_int_equal(td_tb_tokens(&b, t), 0);
}

/* Never more than rate x time + burst over a long run, whatever the
 * pattern of arrivals. */
static void test_long_run_rate(void **state)
{
	struct td_tb b;
	uint64_t t = 0, spent = 0;

	(void)state;
	td_tb_init(&b, 1000, 0, 0); /* default burst: 100 */
	assert_int_equal(b.burst, 100);
	while (t < 60 * S) {
		uint64_t w = td_tb_wait(&b, 1, t);

		if (w == 0) {
			td_tb_take(&b, 1, t);
			spent++;
		} else {
			t += w;
		}
	}
	assert_true(spent <= 1000 * 60 + 100 + 1);
	assert_true(spent >= 1000 * 60 + 100 - 1);
}

/* A request bigger than the bucket goes when the bucket is full; its
 * cost leaves a debt that the next ones wait out. */
static void test_big_request_debt(void **state)
{
	struct td_tb b;
	uint64_t t = 0;

	(void)state;
	td_tb_init(&b, 1 << 20, 64 << 10, t);		 /* 1 MiB/s, 64 KiB bucket */
	assert_int_equal(td_tb_wait(&b, 4 << 20, t), 0); /* full: a 4 MiB request goes */
	td_tb_take(&b, 4 << 20, t);
	assert_int_equal(td_tb_tokens(&b, t), (64 << 10) - (4 << 20));
	/* the debt (4 MiB - 64 KiB) is paid at 1 MiB/s: 3.9375 s, then 4 KiB more */
	assert_int_equal(td_tb_wait(&b, 0, t), 3937500000ull);
	assert_int_equal(td_tb_wait(&b, 4096, t), 3937500000ull + 3906250ull);
	/* a zero-byte request (a discard) waits only for the debt */
	assert_int_equal(td_tb_wait(&b, 0, t + 3937500000ull), 0);
}

static void test_unlimited_and_live_change(void **state)
{
	struct td_tb b;
	uint64_t t = 0;

	(void)state;
	td_tb_init(&b, 0, 0, t);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(td_tb_wait(&b, 1 << 30, t), 0);
	td_tb_take(&b, 1 << 30, t);
	/* unlimited -> limited: starts full */
	td_tb_set(&b, 10, 5, t);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(td_tb_wait(&b, 1, t), 0);
		td_tb_take(&b, 1, t);
	}
	assert_int_equal(td_tb_wait(&b, 1, t), 100 * MS);
	/* raised live: the empty bucket fills at the new rate from now on */
	t += 50 * MS; /* half a token accrued at 10/s */
	td_tb_set(&b, 1000, 5, t);
	assert_int_equal(td_tb_wait(&b, 1, t), 500 * 1000ull); /* the other half at 1000/s */
	/* lowered live: the level is cut to the new burst */
	t += S;
	td_tb_set(&b, 1, 2, t);
	assert_int_equal(td_tb_tokens(&b, t), 2);
	/* back to unlimited */
	td_tb_set(&b, 0, 0, t);
	assert_int_equal(td_tb_wait(&b, 1 << 30, t), 0);
}

static void test_clock_and_extremes(void **state)
{
	struct td_tb b;

	(void)state;
	/* a clock that goes back accrues nothing (and does not crash) */
	td_tb_init(&b, 100, 1, 10 * S);
	td_tb_take(&b, 1, 10 * S);
	assert_int_equal(td_tb_wait(&b, 1, 9 * S), 10 * MS);
	/* the largest values do not overflow */
	td_tb_init(&b, UINT64_MAX, UINT64_MAX, 0);
	assert_int_equal(b.rate, TD_TB_MAX);
	assert_int_equal(b.burst, TD_TB_MAX);
	td_tb_take(&b, UINT64_MAX, 0);
	td_tb_take(&b, UINT64_MAX, 0);
	assert_true(td_tb_wait(&b, UINT64_MAX, 0) > 0);
	assert_int_equal(td_tb_wait(&b, UINT64_MAX, 365ull * 24 * 3600 * S), 0);
	assert_int_equal(td_tb_default_burst(5), 1);
	assert_int_equal(td_tb_default_burst(12345), 1234);
}

static void test_limits_words(void **state)
{
	struct td_qos_limits q;
	char err[256], buf[1024];

	(void)state;
	td_qos_limits_default(&q);
	assert_int_equal(q.weight, TD_QOS_WEIGHT_DEFAULT);
	assert_false(td_qos_limits_any(&q));
	assert_int_equal(td_qos_limits_parse("iops=500,bps=10M,read-iops=7,write-bps-burst=64K,"
					     "weight=3",
					     &q, err, sizeof(err)),
			 0);
	assert_int_equal(q.iops[TD_QOS_TOTAL], 500);
	assert_int_equal(q.bps[TD_QOS_TOTAL], 10 << 20);
	assert_int_equal(q.iops[TD_QOS_READ], 7);
	assert_int_equal(q.bps_burst[TD_QOS_WRITE], 64 << 10);
	assert_int_equal(q.weight, 3);
	assert_true(td_qos_limits_any(&q));
	/* a partial change keeps the rest; 0 removes a limit */
	assert_int_equal(td_qos_limits_parse("iops=0", &q, err, sizeof(err)), 0);
	assert_int_equal(q.iops[TD_QOS_TOTAL], 0);
	assert_int_equal(q.bps[TD_QOS_TOTAL], 10 << 20);
	/* refused, and nothing changes */
	const char *bad[] = {"iops",
			     "iops=",
			     "iops=-1",
			     "iops=1x",
			     "iops=10K",
			     "bps=1Q",
			     "weight=0",
			     "weight=10001",
			     "speed=3",
			     "iops=1,,bps=2",
			     ",iops=1",
			     "iops=1,",
			     "bps=99999999999999999999",
			     "iops=1125899906842625",
			     "iops=1,iops=2",
			     "weight=5,bps=1,weight=5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct td_qos_limits before = q;

		err[0] = 0;
		assert_int_equal(td_qos_limits_parse(bad[i], &q, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != 0);
		assert_memory_equal(&before, &q, sizeof(q));
	}
	assert_int_equal(td_qos_limits_parse(NULL, &q, err, sizeof(err)), 0);
	assert_int_equal(td_qos_limits_format(&q, "qos_", "\n", 1, buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "qos_read_iops=7\n"));
	assert_non_null(strstr(buf, "qos_weight=3"));
	assert_int_equal(td_qos_limits_format(&q, "", ",", 0, buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "write-bps-burst=65536"));
	assert_int_equal(td_qos_limits_format(&q, "", ",", 0, buf, 20), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_rate),
	    cmocka_unit_test(test_long_run_rate),
	    cmocka_unit_test(test_big_request_debt),
	    cmocka_unit_test(test_unlimited_and_live_change),
	    cmocka_unit_test(test_clock_and_extremes),
	    cmocka_unit_test(test_limits_words),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
