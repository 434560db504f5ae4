/* The settings of one VBD's QoS: limits on requests and bytes per second
 * (all requests, reads, writes), each with its burst, and the weight the
 * host arbiter shares a host's capacity by. The same words are the qos
 * layer's spec options (qos,iops=500,bps=10M:...) and, with two dashes,
 * the options of tap-ctl qos:
 *
 *   iops, read-iops, write-iops           requests per second (0: no limit)
 *   bps, read-bps, write-bps              bytes per second, K/M/G/T suffixes
 *   iops-burst, read-iops-burst, ...      requests that may go at once
 *   bps-burst, read-bps-burst, ...        bytes that may go at once
 *                                         (a burst of 0: a tenth of a
 *                                         second's worth of its limit)
 *   weight                                1..10000, default 100
 *
 * Reads are READ requests; writes are WRITE, WRITE_ZEROES and DISCARD
 * (the last two count as requests, not as bytes); a FLUSH is never held. */
#ifndef TD_QOS_LIMITS_H
#define TD_QOS_LIMITS_H

#include <stddef.h>
#include <stdint.h>

enum td_qos_dir { TD_QOS_TOTAL, TD_QOS_READ, TD_QOS_WRITE, TD_QOS_NDIR };

#define TD_QOS_WEIGHT_DEFAULT 100u
#define TD_QOS_WEIGHT_MAX 10000u

struct td_qos_limits {
	uint64_t iops[TD_QOS_NDIR], bps[TD_QOS_NDIR];		  /* 0: unlimited */
	uint64_t iops_burst[TD_QOS_NDIR], bps_burst[TD_QOS_NDIR]; /* 0: the default */
	uint32_t weight;
};

void td_qos_limits_default(struct td_qos_limits *q);
/* Applies "key=value[,key=value...]" to q: only the keys named change.
 * On error q is unchanged and err says which word is wrong. NULL or "" is
 * no change. */
int td_qos_limits_parse(const char *opts, struct td_qos_limits *q, char *err, size_t errlen);
/* Every setting as "PREFIXkey=value" joined by sep, with '-' in key names
 * written as '_' when underscores is set (for key=value replies). */
int td_qos_limits_format(const struct td_qos_limits *q, const char *prefix, const char *sep,
			 int underscores, char *buf, size_t len);
/* Is any limit set? */
int td_qos_limits_any(const struct td_qos_limits *q);

#endif
