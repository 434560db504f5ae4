/* The image drivers of this folder: raw files and block devices through
 * libaio, Ceph RBD images through librbd, and RAM disks in shared memory. */
#ifndef TD_DRIVERS_H
#define TD_DRIVERS_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_aio;
extern const struct td_driver td_drv_rbd;
extern const struct td_driver td_drv_ram;

#endif
