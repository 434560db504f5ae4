/* librbd and librados, loaded on first use.
 *
 * Linking them would map ~12 MiB of Ceph libraries (libceph-common,
 * librbd, librados, their C++ runtime) into every tapdisk, file-backed
 * ones included, and the loader's relocations make most of it resident.
 * The rbd driver instead calls through this table, filled by dlopen() the
 * first time a cluster is needed (at open time, before the sandbox). */
#ifndef TD_RBD_DL_H
#define TD_RBD_DL_H

#include <stddef.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#define TD_RBD_FUNCS(X)                                                                            \
	X(rados_cluster_fsid)                                                                      \
	X(rados_conf_get)                                                                          \
	X(rados_conf_parse_env)                                                                    \
	X(rados_conf_read_file)                                                                    \
	X(rados_conf_set)                                                                          \
	X(rados_connect)                                                                           \
	X(rados_create)                                                                            \
	X(rados_ioctx_create)                                                                      \
	X(rados_ioctx_destroy)                                                                     \
	X(rados_ioctx_get_id)                                                                      \
	X(rados_shutdown)                                                                          \
	X(rbd_aio_close)                                                                           \
	X(rbd_aio_create_completion)                                                               \
	X(rbd_aio_discard)                                                                         \
	X(rbd_aio_flush)                                                                           \
	X(rbd_aio_get_return_value)                                                                \
	X(rbd_aio_readv)                                                                           \
	X(rbd_aio_release)                                                                         \
	X(rbd_aio_write_zeroes)                                                                    \
	X(rbd_aio_writev)                                                                          \
	X(rbd_close)                                                                               \
	X(rbd_get_features)                                                                        \
	X(rbd_get_id)                                                                              \
	X(rbd_get_size)                                                                            \
	X(rbd_lock_acquire)                                                                        \
	X(rbd_lock_get_owners)                                                                     \
	X(rbd_lock_get_owners_cleanup)                                                             \
	X(rbd_open)                                                                                \
	X(rbd_open_read_only)                                                                      \
	X(rbd_snap_create)

struct td_rbd_api {
#define TD_RBD_PTR(f) __typeof__(f) *f;
	TD_RBD_FUNCS(TD_RBD_PTR)
#undef TD_RBD_PTR
};

extern struct td_rbd_api td_rbd_api;

/* Loads the libraries once; 0, or -ENOENT with a message saying which
 * package provides them. Thread-safe. */
int td_rbd_api_load(char *err, size_t errlen);

#ifndef TD_RBD_DL_IMPL
/* the driver's calls go through the table */
#define rados_cluster_fsid td_rbd_api.rados_cluster_fsid
#define rados_conf_get td_rbd_api.rados_conf_get
#define rados_conf_parse_env td_rbd_api.rados_conf_parse_env
#define rados_conf_read_file td_rbd_api.rados_conf_read_file
#define rados_conf_set td_rbd_api.rados_conf_set
#define rados_connect td_rbd_api.rados_connect
#define rados_create td_rbd_api.rados_create
#define rados_ioctx_create td_rbd_api.rados_ioctx_create
#define rados_ioctx_destroy td_rbd_api.rados_ioctx_destroy
#define rados_ioctx_get_id td_rbd_api.rados_ioctx_get_id
#define rados_shutdown td_rbd_api.rados_shutdown
#define rbd_aio_close td_rbd_api.rbd_aio_close
#define rbd_aio_create_completion td_rbd_api.rbd_aio_create_completion
#define rbd_aio_discard td_rbd_api.rbd_aio_discard
#define rbd_aio_flush td_rbd_api.rbd_aio_flush
#define rbd_aio_get_return_value td_rbd_api.rbd_aio_get_return_value
#define rbd_aio_readv td_rbd_api.rbd_aio_readv
#define rbd_aio_release td_rbd_api.rbd_aio_release
#define rbd_aio_write_zeroes td_rbd_api.rbd_aio_write_zeroes
#define rbd_aio_writev td_rbd_api.rbd_aio_writev
#define rbd_close td_rbd_api.rbd_close
#define rbd_get_features td_rbd_api.rbd_get_features
#define rbd_get_id td_rbd_api.rbd_get_id
#define rbd_get_size td_rbd_api.rbd_get_size
#define rbd_lock_acquire td_rbd_api.rbd_lock_acquire
#define rbd_lock_get_owners td_rbd_api.rbd_lock_get_owners
#define rbd_lock_get_owners_cleanup td_rbd_api.rbd_lock_get_owners_cleanup
#define rbd_open td_rbd_api.rbd_open
#define rbd_open_read_only td_rbd_api.rbd_open_read_only
#define rbd_snap_create td_rbd_api.rbd_snap_create
#endif

#endif
