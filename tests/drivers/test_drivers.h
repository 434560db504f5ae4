/* Drivers for tests only, in test builds only (-DTD_TEST_BUILD): fault
 * injection (drv_fault.c), I/O recording for the crash simulator
 * (drv_record.c, record.h) and a raw image that pauses the wrong way for
 * the migration hazard test's control (drv_hazard.c). */
#ifndef TD_TEST_DRIVERS_H
#define TD_TEST_DRIVERS_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_fault;
extern const struct td_driver td_drv_record;
extern const struct td_driver td_drv_hazard;

#endif
