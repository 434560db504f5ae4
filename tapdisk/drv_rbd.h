/* rbd: a Ceph RBD image as the bottom of the chain (tapdisk/drv_rbd.c).
 * What the rest of tapdisk needs to know about it. */
#ifndef TD_DRV_RBD_H
#define TD_DRV_RBD_H

#include <stdbool.h>
#include <stddef.h>

/* Does this spec's image driver talk to a Ceph cluster (no local file,
 * network system calls needed)? */
bool td_rbd_spec_is_rbd(const char *spec);

/* Is name usable as an RBD snapshot name (what tap-ctl snapshot takes)? */
bool td_rbd_snap_name_ok(const char *name);

/* Creates snapshot `name` of the image at `path` (POOL/IMAGE) with the
 * rbd layer's options `opts` (may be NULL). Blocking: for a paused VBD
 * only (tapdisk/server.c). Negative errno and a one-line message. */
int td_rbd_snapshot(const char *path, const char *opts, const char *name, char *err,
		    size_t errlen);

#endif
