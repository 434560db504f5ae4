#define TD_RBD_DL_IMPL
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "tapdisk/drivers/rbd_dl.h"

struct td_rbd_api td_rbd_api;

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded; /* 1 ok, -errno failed */
static char load_err[512];

static int load(void)
{
	/* RTLD_NODELETE: librados' threads outlive any handle we could close */
	void *rados = dlopen("librados.so.2", RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
	void *rbd = rados ? dlopen("librbd.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE) : NULL;

	if (!rados || !rbd) {
		snprintf(load_err, sizeof(load_err),
			 "cannot load %s (%s): install the librbd1 and librados2 packages to use "
			 "rbd: images",
			 rados ? "librbd.so.1" : "librados.so.2", dlerror());
		return -ENOENT;
	}
#define TD_RBD_SYM(f)                                                                              \
	do {                                                                                       \
		void *s = dlsym(#f[1] == 'b' ? rbd : rados, #f);                                   \
		if (!s) {                                                                          \
			snprintf(load_err, sizeof(load_err),                                       \
				 "the Ceph libraries lack %s: too old?", #f);                      \
			return -ENOENT;                                                            \
		}                                                                                  \
		*(void **)&td_rbd_api.f = s;                                                       \
	} while (0);
	TD_RBD_FUNCS(TD_RBD_SYM)
#undef TD_RBD_SYM
	return 1;
}

int td_rbd_api_load(char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&load_lock);
	if (!loaded)
		loaded = load();
	rc = loaded;
	pthread_mutex_unlock(&load_lock);
	if (rc < 0)
		snprintf(err, errlen, "%s", load_err);
	return rc < 0 ? rc : 0;
}
