/* The vhd image driver (drv_vhd.c and the files of vhd_int.h):
 * Microsoft Virtual Hard Disk 1.0 images, docs/FORMAT-vhd.md. */
#ifndef TD_VHD_H
#define TD_VHD_H

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_vhd;

/* Writes into fd (a new, empty file root created at new_path) an empty
 * differencing VHD over parent_path (both absolute): 2 MiB blocks, the
 * parent's size, UUID and modification time, locators W2ku, W2ru (when
 * both are in one directory) and MacX, and the parent's file name. The
 * parent is opened through ctx's file table (tapdisk/block/files.h).
 * 0 or -errno with a one-line reason in err. */
int td_vhd_create_diff_fd(struct td_ctx *ctx, int fd, const char *new_path, const char *parent_path,
			  char *err, size_t errlen);

#endif
