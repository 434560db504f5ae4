#include "tapdisk/qos/bucket.h"

#define NANO 1000000000ll

static uint64_t clamp(uint64_t v)
{
	return v > TD_TB_MAX ? TD_TB_MAX : v;
}

uint64_t td_tb_default_burst(uint64_t rate)
{
	uint64_t b = clamp(rate) / 10;

	return b ? b : 1;
}

static void accrue(struct td_tb *b, uint64_t now_ns)
{
	__int128 cap;

	if (now_ns <= b->t_ns)
		return; /* the same instant, or a clock that went back: nothing */
	if (b->rate) {
		cap = (__int128)b->burst * NANO;
		if (b->level < cap) {
			b->level += (__int128)b->rate * (now_ns - b->t_ns);
			if (b->level > cap)
				b->level = cap;
		}
	}
	b->t_ns = now_ns;
}

void td_tb_init(struct td_tb *b, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
	b->rate = clamp(rate);
	b->burst = b->rate ? (burst ? clamp(burst) : td_tb_default_burst(b->rate)) : 0;
	b->level = (__int128)b->burst * NANO;
	b->t_ns = now_ns;
}

void td_tb_set(struct td_tb *b, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
	__int128 cap;

	if (!b->rate) {
		td_tb_init(b, rate, burst, now_ns);
		return;
	}
	accrue(b, now_ns);
	b->rate = clamp(rate);
	b->burst = b->rate ? (burst ? clamp(burst) : td_tb_default_burst(b->rate)) : 0;
	cap = (__int128)b->burst * NANO;
	if (b->level > cap)
		b->level = cap;
	if (!b->rate)
		b->level = 0;
}

uint64_t td_tb_wait(struct td_tb *b, uint64_t cost, uint64_t now_ns)
{
	__int128 need;

	if (!b->rate)
		return 0;
	accrue(b, now_ns);
	need = (__int128)(cost < b->burst ? cost : b->burst) * NANO;
	if (b->level >= need)
		return 0;
	/* rounded up: at that instant the level is there */
	return (uint64_t)((need - b->level + b->rate - 1) / b->rate);
}

void td_tb_take(struct td_tb *b, uint64_t cost, uint64_t now_ns)
{
	if (!b->rate)
		return;
	accrue(b, now_ns);
	b->level -= (__int128)clamp(cost) * NANO;
}

int64_t td_tb_tokens(struct td_tb *b, uint64_t now_ns)
{
	if (!b->rate)
		return 0;
	accrue(b, now_ns);
	return (int64_t)(b->level / NANO);
}
