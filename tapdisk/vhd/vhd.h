/* The vhd image driver (drv_vhd.c and the files of vhd_int.h):
 * Microsoft Virtual Hard Disk 1.0 images, docs/FORMAT-vhd.md. */
#ifndef TD_VHD_H
#define TD_VHD_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_vhd;

#endif
