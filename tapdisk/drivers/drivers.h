/* The image drivers of this folder: raw files and block devices through
 * libaio, and Ceph RBD images through librbd. */
#ifndef TD_DRIVERS_H
#define TD_DRIVERS_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_aio;
extern const struct td_driver td_drv_rbd;

#endif
