/* Counters every layer of one tapdisk may bump (loop thread only). */
#ifndef TD_STATS_H
#define TD_STATS_H

#include <stdint.h>

struct td_stats_shared {
	uint64_t integrity_failures;
	uint64_t lower_bytes_written, lower_bytes_read;
	uint64_t lower_writes, lower_reads, lower_flushes;
};

#endif
