/* The qcow2 image driver, and creating qcow2 images: fresh ones (tests,
 * tools) and overlays for live snapshots (tap-ctl snapshot: pause, create
 * an overlay whose backing file is the current image, reopen on the
 * overlay, unpause). */
#ifndef TD_QCOW2_H
#define TD_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"

/* The qcow2 image driver (drv_qcow2.c and the files of qcow2_int.h). */
extern const struct td_driver td_drv_qcow2;

/* Writes a new, empty qcow2 v3 image at path (which must not exist):
 * cluster_size a power of two from 4 KiB to 2 MiB (0 = 64 KiB), size in
 * bytes (a multiple of 512). The refcount table is sized for the whole
 * virtual disk, so the image never needs it grown. 0 or -errno with a
 * one-line reason in err. */
int td_qcow2_create(const char *path, uint64_t size, uint64_t cluster_size, char *err,
		    size_t errlen);

/* Writes a new, empty qcow2 v3 image (64 KiB clusters) at new_path (which
 * must not exist) whose backing file is backing_path (stored as given; a
 * relative name is relative to new_path's directory, as QEMU resolves
 * it), with the backing format (qcow2 or raw) detected and recorded. size
 * 0 means the backing file's virtual size. For tools and tests: it opens
 * the backing file by path. */
int td_qcow2_create_overlay(const char *new_path, const char *backing_path, uint64_t size,
			    char *err, size_t errlen);

/* Writes into fd (a new, empty file root created at new_path) an empty
 * qcow2 v3 image (64 KiB clusters) whose backing file is backing_path
 * (stored as given: absolute), with its format (qcow2 or raw) detected
 * and its virtual size taken. The backing file is opened through ctx's
 * file table (tapdisk/block/files.h). */
int td_qcow2_create_overlay_fd(struct td_ctx *ctx, int fd, const char *new_path,
			       const char *backing_path, char *err, size_t errlen);

#endif
