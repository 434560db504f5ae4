/* The process's QoS state (tapdisk/qos/qos.h): made by the daemon, kept
 * across pauses, changed live by tap-ctl qos. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/loop.h"
#include "tapdisk/qos/qos_int.h"

struct td_qos_ctl *td_qos_ctl_new(void)
{
	struct td_qos_ctl *q = calloc(1, sizeof(*q));

	if (q)
		td_qos_limits_default(&q->lim);
	return q;
}

void td_qos_ctl_free(struct td_qos_ctl *q)
{
	if (!q)
		return;
	td_qos_arbiter_leave(q->arb);
	free(q->spec_opts);
	free(q);
}

bool td_qos_ctl_present(const struct td_qos_ctl *q)
{
	return q && q->have_spec;
}

int td_qos_ctl_slot(const struct td_qos_ctl *q)
{
	return q && q->arb ? td_qos_arbiter_slot(q->arb) : -1;
}

void qos_apply(struct td_qos_ctl *q, uint64_t now)
{
	for (int d = 0; d < TD_QOS_NDIR; d++) {
		td_tb_set(&q->iops[d], q->lim.iops[d], q->lim.iops_burst[d], now);
		td_tb_set(&q->bps[d], q->lim.bps[d], q->lim.bps_burst[d], now);
	}
	td_tb_set(&q->host_iops_tb, q->share_iops, 0, now);
	td_tb_set(&q->host_bps_tb, q->share_bps, 0, now);
}

int td_qos_ctl_join(struct td_qos_ctl *q, const char *dir, uint64_t host_iops, uint64_t host_bps,
		    char *err, size_t errlen)
{
	if (!q->have_spec || (!host_iops && !host_bps) || q->arb)
		return 0;
	q->arb = td_qos_arbiter_join(dir, q->lim.weight, err, errlen);
	if (!q->arb)
		return -EAGAIN;
	q->host_iops = host_iops;
	q->host_bps = host_bps;
	/* alone until the first look says otherwise */
	q->share_iops = host_iops;
	q->share_bps = host_bps;
	q->busy_vbds = 1;
	qos_apply(q, td_now_ns());
	return 0;
}

int td_qos_ctl_set(struct td_qos_ctl *q, const char *opts, char *err, size_t errlen)
{
	int rc;

	if (!td_qos_ctl_present(q)) {
		snprintf(err, errlen,
			 "this VBD has no qos layer (start it with one, e.g. "
			 "qos,iops=500:aio:/img)");
		return -ENOTSUP;
	}
	rc = td_qos_limits_parse(opts, &q->lim, err, errlen);
	if (rc < 0)
		return rc;
	qos_apply(q, td_now_ns());
	if (q->layer)
		qos_layer_kick(q->layer);
	return 0;
}

int td_qos_ctl_report(struct td_qos_ctl *q, char *buf, size_t len)
{
	char lim[1024];
	int w;

	if (!td_qos_ctl_present(q)) {
		w = snprintf(buf, len, "qos=0\n");
		return w < 0 || (size_t)w >= len ? -ENOSPC : 0;
	}
	if (td_qos_limits_format(&q->lim, "qos_", "\n", 1, lim, sizeof(lim)) < 0)
		return -ENOSPC;
	w = snprintf(buf, len,
		     "qos=1\n%s\nqos_host_iops=%llu\nqos_host_bps=%llu\nqos_share_iops=%llu\n"
		     "qos_share_bps=%llu\nqos_busy_vbds=%u\nqos_slot=%d\nqos_table_weight=%u\n"
		     "qos_queued=%u\nqos_passed=%llu\nqos_delayed=%llu\nqos_delay_ms_total=%llu\n"
		     "qos_delay_ms_max=%.1f\n",
		     lim, (unsigned long long)q->host_iops, (unsigned long long)q->host_bps,
		     (unsigned long long)q->share_iops, (unsigned long long)q->share_bps,
		     q->arb ? q->busy_vbds : 0, td_qos_ctl_slot(q),
		     q->arb ? td_qos_arbiter_weight(q->arb) : 0,
		     q->layer ? qos_layer_queued(q->layer) : 0, (unsigned long long)q->passed,
		     (unsigned long long)q->delayed, (unsigned long long)(q->delay_ns / 1000000),
		     (double)q->max_delay_ns / 1e6);
	return w < 0 || (size_t)w >= len ? -ENOSPC : 0;
}
