/* Per-VBD QoS: the qos layer and the process's QoS state.
 *
 * The layer (qos,iops=500,bps=10M:crypt:qcow2:/img; its words in
 * tapdisk/qos/limits.h) holds requests in two queues (reads, writes) until
 * the token buckets of their limits allow them, then sends them down in
 * arrival order; a loop timer wakes it when the next one may go. A request
 * held for a shared limit (all requests, or the host's share) holds back
 * the younger requests of the other queue too, so none waits forever.
 *
 * The state (struct td_qos_ctl) belongs to the process, not to the layer:
 * the limits changed live (tap-ctl qos) survive a pause, whose unpause
 * opens the layer again, and so do the counters. A spec whose qos options
 * differ from those the state was made from (unpause -a NEWSPEC) sets the
 * limits anew. The state also holds the process's seat in the host
 * arbiter (tapdisk/qos/arbiter.h), joined at start while still root. */
#ifndef TD_QOS_H
#define TD_QOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_qos;

struct td_qos_ctl;

struct td_qos_ctl *td_qos_ctl_new(void);
void td_qos_ctl_free(struct td_qos_ctl *q);
/* Did a qos layer open (is there anything to show or change)? */
bool td_qos_ctl_present(const struct td_qos_ctl *q);
/* Joins the host arbiter in dir, sharing host_iops and host_bps (0: that
 * one is not shared) by the weight the spec gave: after the chain opened,
 * before the privilege drop. 0 or -errno with the reason (the caller warns:
 * the VBD then has its own limits only). */
int td_qos_ctl_join(struct td_qos_ctl *q, const char *dir, uint64_t host_iops, uint64_t host_bps,
		    char *err, size_t errlen);
/* The arbiter slot joined, or -1. */
int td_qos_ctl_slot(const struct td_qos_ctl *q);
/* A live change: "key=value,..." (tapdisk/qos/limits.h); takes effect at
 * once (held requests are looked at again). 0 or -EINVAL with a reason. */
int td_qos_ctl_set(struct td_qos_ctl *q, const char *opts, char *err, size_t errlen);
/* "qos_KEY=VALUE\n" lines: the limits, the arbiter's figures and the
 * counters (numbers only, so tap-ctl stats --json can show them raw). */
int td_qos_ctl_report(struct td_qos_ctl *q, char *buf, size_t len);

#endif
