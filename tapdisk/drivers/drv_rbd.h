/* rbd: a Ceph RBD image as the bottom of the chain (tapdisk/drivers/drv_rbd.c).
 * What the rest of tapdisk needs to know about it. */
#ifndef TD_DRV_RBD_H
#define TD_DRV_RBD_H

#include <stdbool.h>
#include <stddef.h>

/* Is name usable as an RBD snapshot name (what tap-ctl snapshot takes)? */
bool td_rbd_snap_name_ok(const char *name);

#endif
