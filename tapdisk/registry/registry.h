/* The drivers a production tapdisk knows, for td_drivers_set(): every
 * program that parses specs (tapdisk, tap-ctl, vdkey) sets this list first.
 * A test build (-DTD_TEST_BUILD, Makefile) adds the test drivers of
 * tests/drivers (fault injection, I/O recording); production programs do
 * not contain them. */
#ifndef TD_REGISTRY_H
#define TD_REGISTRY_H

#include "tapdisk/block/driver.h"

const struct td_driver *const *td_registry(void);

#endif
