/* The table of drivers a spec may name. */
#include <string.h>

#include "tapdisk/driver.h"

extern const struct td_driver td_drv_aio;
extern const struct td_driver td_drv_fault;
extern const struct td_driver td_drv_crypt;
extern const struct td_driver td_drv_qcow2;
extern const struct td_driver td_drv_integrity;
extern const struct td_driver td_drv_record;
extern const struct td_driver td_drv_rbd;

static const struct td_driver *const drivers[] = {
	&td_drv_aio,
	&td_drv_fault,
	&td_drv_crypt,
	&td_drv_qcow2,
	&td_drv_integrity,
	&td_drv_record,
	&td_drv_rbd,
	NULL,
};

const struct td_driver *const *td_driver_list(void)
{
	return drivers;
}

const struct td_driver *td_driver_find(const char *name)
{
	const struct td_driver *const *d;

	for (d = drivers; *d; d++)
		if (!strcmp((*d)->name, name) || ((*d)->alias && !strcmp((*d)->alias, name)))
			return *d;
	return NULL;
}
