/* The vmdk image driver: VMware virtual disks, monolithicSparse read and
 * write, streamOptimized read, descriptor files with flat and sparse
 * extents (docs/FORMAT-vmdk.md). */
#ifndef TD_VMDK_H
#define TD_VMDK_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_vmdk;

#endif
