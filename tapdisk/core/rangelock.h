/* A block range lock: shared holders may overlap each other, an exclusive
 * holder overlaps nobody; a request that conflicts waits, and conflicting
 * requests are granted in arrival order. Loop thread only.
 *
 * Embed a td_rl_item in the request, fill first/last/exclusive/granted,
 * call td_rl_acquire (granted runs now or later) and td_rl_release. */
#ifndef TD_RANGELOCK_H
#define TD_RANGELOCK_H

#include <stdbool.h>
#include <stdint.h>

struct td_rl_item {
	uint64_t first, last; /* inclusive block range */
	bool exclusive, locked;
	void (*granted)(struct td_rl_item *it);
	struct td_rl_item *next_held, *next_wait;
};

struct td_rangelock {
	struct td_rl_item *held;
	struct td_rl_item *wait_head, *wait_tail;
};

void td_rl_acquire(struct td_rangelock *rl, struct td_rl_item *it);
/* Releases it and runs `granted` for every waiter that may now go. */
void td_rl_release(struct td_rangelock *rl, struct td_rl_item *it);

#endif
