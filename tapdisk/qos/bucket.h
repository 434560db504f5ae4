/* A token bucket: the arithmetic of one QoS limit, with the time passed
 * in (a unit test feeds it a fake clock; the qos layer the loop's).
 *
 * Tokens accrue at `rate` per second up to `burst`. A request costs
 * `cost` tokens (1 for an IOPS limit, its bytes for a bytes-per-second
 * one) and may go once the bucket holds min(cost, burst): a request
 * bigger than the whole bucket goes when the bucket is full. Its cost is
 * then taken, which may leave the bucket in debt (below zero), so what
 * follows waits until the debt is paid: over any long interval no more
 * than rate × time + burst tokens are spent. The level is kept in
 * nano-tokens (tokens × 10^9), so accrual is exact to the nanosecond. */
#ifndef TD_QOS_BUCKET_H
#define TD_QOS_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#define TD_TB_MAX (1ull << 50) /* largest rate or burst (a petabyte a second) */

struct td_tb {
	uint64_t rate;	/* tokens per second; 0: unlimited */
	uint64_t burst; /* the bucket's size in tokens (>= 1 when limited) */
	__int128 level; /* nano-tokens; negative: in debt */
	uint64_t t_ns;	/* the clock of the last accrual */
};

/* The burst when none is given: a tenth of a second's worth, at least 1. */
uint64_t td_tb_default_burst(uint64_t rate);

/* A new bucket, full. rate 0: unlimited; burst 0: the default. Values
 * above TD_TB_MAX are clamped to it. */
void td_tb_init(struct td_tb *b, uint64_t rate, uint64_t burst, uint64_t now_ns);
/* A live change: what accrued so far counts at the old rate, the level is
 * kept (cut to the new burst); a bucket that was unlimited starts full. */
void td_tb_set(struct td_tb *b, uint64_t rate, uint64_t burst, uint64_t now_ns);
/* 0 when a request of cost may go now, else how many ns until it may. */
uint64_t td_tb_wait(struct td_tb *b, uint64_t cost, uint64_t now_ns);
/* Spends cost (after td_tb_wait said 0). */
void td_tb_take(struct td_tb *b, uint64_t cost, uint64_t now_ns);
/* Whole tokens in the bucket now (negative: debt), for statistics. */
int64_t td_tb_tokens(struct td_tb *b, uint64_t now_ns);

#endif
