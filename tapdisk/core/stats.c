#include "tapdisk/core/stats.h"

void td_stats_lower(struct td_stats_shared *st, enum td_stat_op op, int64_t res)
{
	if (!st || res < 0)
		return;
	switch (op) {
	case TD_STAT_READ:
		st->lower_reads++;
		st->lower_bytes_read += (uint64_t)res;
		break;
	case TD_STAT_WRITE:
		st->lower_writes++;
		st->lower_bytes_written += (uint64_t)res;
		break;
	case TD_STAT_FLUSH:
		st->lower_flushes++;
		break;
	}
}
