/* The host arbiter: how VBDs, each its own process, share a host's
 * capacity (qos-host-iops, qos-host-bps in /etc/tdcrypt/tapdisk.conf) by
 * weight, among those busy right now (work-conserving: a VBD alone gets
 * all of it; two busy ones with weights 1 and 3 get 1/4 and 3/4).
 *
 * One table file, DIR/arbiter (qos-dir, default /run/tdcrypt/qos), made by
 * root: a slot per VBD holding its weight. A tapdisk joins while it is
 * still root: under a mutex (DIR/arbiter.lock, never kept) it takes a
 * free slot, writes its weight there, and keeps only a read-only
 * descriptor and a read-only mapping. Who is in a slot and who is busy are
 * OFD locks on that descriptor (one byte per slot for each): the kernel
 * drops them when the process dies, so a killed tapdisk never holds a
 * share. Each tapdisk reads the weights of the busy slots and limits
 * itself to its share (the qos layer's extra token buckets). Weights
 * change only through root (tap-ctl qos --weight writes the table).
 *
 * What a compromised tapdisk can do (SECURITY.md): ignore its own share
 * (the limiter runs inside it; only the kernel's I/O controller could
 * stop that), and, through its read-only descriptor, take the locks of
 * other slots so they look busy, which lowers the others' shares at worst
 * to weight / (the sum of every weight in the table). It cannot write a
 * weight, nor free another VBD's slot, nor block a new tapdisk's join. */
#ifndef TD_QOS_ARBITER_H
#define TD_QOS_ARBITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TD_QOS_ARB_SLOTS 256

struct td_qos_arbiter;

/* Joins the arbiter in dir (created, root's, if missing) with weight.
 * NULL with the reason in err. */
struct td_qos_arbiter *td_qos_arbiter_join(const char *dir, uint32_t weight, char *err,
					   size_t errlen);
void td_qos_arbiter_leave(struct td_qos_arbiter *a);
int td_qos_arbiter_slot(const struct td_qos_arbiter *a);
/* This VBD's weight as the table holds it now. */
uint32_t td_qos_arbiter_weight(const struct td_qos_arbiter *a);
/* Marks this VBD busy (it has requests waiting or going) or idle. */
void td_qos_arbiter_busy(struct td_qos_arbiter *a, bool busy);
/* The sum of the weights of the busy VBDs, this one counted as busy, and
 * how many there are. */
uint64_t td_qos_arbiter_busy_weights(struct td_qos_arbiter *a, unsigned *nbusy);

/* For tap-ctl, as root: sets the weight of slot, if the tapdisk pid holds
 * it. 0, or -errno with the reason. */
int td_qos_arbiter_set_weight(const char *dir, int slot, pid_t pid, uint32_t weight, char *err,
			      size_t errlen);

#endif
