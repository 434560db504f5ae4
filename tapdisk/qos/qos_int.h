/* Inside the qos folder: the process's QoS state, shared by the layer
 * (drv_qos.c) and the control functions (ctl.c). */
#ifndef TD_QOS_INT_H
#define TD_QOS_INT_H

#include "tapdisk/qos/arbiter.h"
#include "tapdisk/qos/bucket.h"
#include "tapdisk/qos/limits.h"
#include "tapdisk/qos/qos.h"

#define QOS_SHARE_NS 100000000ull /* the host share is looked at again every 100 ms */
#define QOS_IDLE_NS 200000000ull  /* no request for 200 ms: idle for the arbiter */

struct td_qos_ctl {
	struct td_qos_limits lim;
	char *spec_opts; /* the layer options lim was last made from */
	bool have_spec;
	struct td_tb iops[TD_QOS_NDIR], bps[TD_QOS_NDIR];
	/* the host arbiter: this VBD's share of the host's capacity */
	struct td_qos_arbiter *arb;
	uint64_t host_iops, host_bps;
	uint64_t share_iops, share_bps;
	unsigned busy_vbds;
	struct td_tb host_iops_tb, host_bps_tb;
	/* the open layer, if any (to look at its queues after a change) */
	struct td_layer *layer;
	/* counters */
	uint64_t passed, delayed, delay_ns, max_delay_ns;
};

/* (Re)computes every bucket from lim, keeping levels (td_tb_set). */
void qos_apply(struct td_qos_ctl *q, uint64_t now);
/* The layer: look at the held requests again (after a change). */
void qos_layer_kick(struct td_layer *l);
/* Requests the layer holds now. */
unsigned qos_layer_queued(struct td_layer *l);

#endif
