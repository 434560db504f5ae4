/* Counters every layer of one tapdisk may bump (loop thread only). */
#ifndef TD_STATS_H
#define TD_STATS_H

#include <stdint.h>

struct td_stats_shared {
	uint64_t integrity_failures;
	uint64_t lower_bytes_written, lower_bytes_read;
	uint64_t lower_writes, lower_reads, lower_flushes;
};

enum td_stat_op { TD_STAT_READ, TD_STAT_WRITE, TD_STAT_FLUSH };

/* The one place lower I/O is counted: every completed read, write or flush
 * of the storage under the chain (the file I/O of tapdisk/core/io_aio.c,
 * librbd's operations). res: bytes moved, or -errno (not counted). st may
 * be NULL (tools). */
void td_stats_lower(struct td_stats_shared *st, enum td_stat_op op, int64_t res);

#endif
