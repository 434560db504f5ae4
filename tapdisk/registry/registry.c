#include "tapdisk/registry/registry.h"

#include "crypt/crypt.h"
#include "integrity/integrity.h"
#include "tapdisk/drivers/drivers.h"
#include "tapdisk/qcow2/qcow2.h"
#include "tapdisk/vmdk/vmdk.h"
#include "tapdisk/qos/qos.h"
#include "tapdisk/vhd/vhd.h"
#ifdef TD_TEST_BUILD
#include "tests/drivers/test_drivers.h"
#endif

static const struct td_driver *const drivers[] = {
    &td_drv_aio,   &td_drv_crypt,  &td_drv_qcow2,  &td_drv_integrity, &td_drv_rbd,
    &td_drv_vmdk,  &td_drv_ram,	   &td_drv_qos,	   &td_drv_vhd,
#ifdef TD_TEST_BUILD
    &td_drv_fault, &td_drv_record, &td_drv_hazard,
#endif
    NULL,
};

const struct td_driver *const *td_registry(void)
{
	return drivers;
}
