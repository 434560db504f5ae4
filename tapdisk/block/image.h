/* Plumbing the image drivers (qcow2, vhd, vmdk) share, so that each
 * format's files hold only what is the format's own: parked
 * continuations, the common spec options, the exported size, guest
 * flushes that wait for a writeback, live-snapshot arguments. The file
 * I/O request is in fio.h. */
#ifndef TD_BLOCK_IMAGE_H
#define TD_BLOCK_IMAGE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/files.h"

/* A parked continuation: a request waiting for a table load, a claim, a
 * writeback round. err is set by whoever wakes it. */
struct td_wait {
	void (*cb)(struct td_wait *w);
	struct td_wait *next;
	int err;
};

/* Wakes every waiter of a list (detached first, so callbacks may park again). */
void td_wait_wake_all(struct td_wait **list, int err);

/* ---- spec options ---------------------------------------------------------- */

#define TD_IMAGE_MAX_DIRS 8

/* cache=SIZE (64K..4G, K/M/G suffixes) and DIR_KEY=DIR (repeatable, at
 * most TD_IMAGE_MAX_DIRS: a directory other files of the image may come
 * from, tapdisk/block/files.h). */
struct td_image_opts {
	const char *drv;       /* "qcow2": the messages' prefix */
	const char *dir_key;   /* "backing-dir" */
	const char *dir_alias; /* a second name for it, or NULL */
	uint64_t cache;	       /* set to the default before parsing */
	char *dirs[TD_IMAGE_MAX_DIRS];
	int ndirs;
};

/* Parses opts (NULL: none) into o: 0, -EINVAL with a message in err
 * saying what is allowed, -ENOMEM. */
int td_image_opts_parse(struct td_image_opts *o, const char *opts, char *err, size_t errlen);
void td_image_opts_free(struct td_image_opts *o);

/* ---- open ----------------------------------------------------------------- */

/* Opens a file of an image through the file table (files.h): the top
 * image by the spec's path (confine NULL), a file it names (a backing
 * file, a parent, an extent) under confine's rules. */
int td_image_file_open(struct td_ctx *ctx, const struct td_confine *confine, const char *path,
		       unsigned how, struct td_file *out, char *why, size_t whylen);

/* The data descriptor of a file already open (buf_st: its page-cache
 * descriptor's stat): opened the same way with TD_FILE_DIRECT (and
 * TD_FILE_RW when writable) into *fd, which the caller closes even on
 * failure; reopened without O_DIRECT when direct_ok (NULL: any) refuses
 * the O_DIRECT one; -ESTALE when it is not the same file any more; then
 * locked (td_image_lock) unless ctx->nolock. *direct: O_DIRECT it is. */
int td_image_open_data(struct td_ctx *ctx, const struct td_confine *confine, const char *path,
		       bool writable, const struct stat *buf_st,
		       bool (*direct_ok)(int fd, const struct stat *st), int *fd, bool *direct,
		       bool *locked, char *why, size_t whylen);

/* An OFD lock on an image file (a write lock for writers, a read lock for
 * readers): 0, -EBUSY with why saying another process holds it, -errno. */
int td_image_lock(int fd, bool write, char *why, size_t whylen);
/* Releases it explicitly: the process's file table may keep the open file
 * across a pause (tapdisk/block/files.h). Failures are logged for drv. */
void td_image_unlock(int fd, const char *drv);

/* name (a backing file, a parent, an extent another file of the image
 * names) as a path: as is when absolute, else beside base (the naming
 * file; a relative base is taken from the working directory). 0, or
 * -ENAMETOOLONG with why. */
int td_image_path_beside(const char *base, const char *name, char *out, size_t outlen, char *why,
			 size_t whylen);

/* The size the layer exports: vsize cut to whole blocks, with a warning
 * naming what is cut off ("virtual size" of drv's image at path). */
void td_image_export_size(struct td_layer *l, const char *drv, const char *what, const char *path,
			  uint64_t vsize);

/* ---- hostile images -------------------------------------------------------- */

/* Logs a problem of the image at path (a bad table entry, a region read
 * as EIO) as "drv: 'path': message", rate limited: nothing once *left is
 * 0; the last message logged ends with last_note. */
void td_image_vlog_bad(unsigned *left, const char *drv, const char *path, const char *last_note,
		       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* ---- flush ---------------------------------------------------------------- */

/* A guest flush of a driver whose writeback calls a wait back: a wait
 * that completes req with its err (and frees itself). NULL when there is
 * nothing to wait for (!writable: req completes with 0) or no memory
 * (-ENOMEM); req is then completed from the loop. */
struct td_wait *td_image_flush_wait(struct td_ctx *ctx, struct td_req *req, bool writable);

/* ---- live snapshots (TD_SNAP_FILE) ------------------------------------------ */

/* The paused image's path made absolute (what the new overlay names as
 * its backing file or parent) into old: 0, or -EINVAL with a message
 * when no file was passed for arg. */
int td_snapshot_old_path(const char *path, const char *arg, int new_fd, char *old, size_t oldlen,
			 char *err, size_t errlen);
/* The driver's snapshot_arg_ok for file snapshots: an absolute path. */
bool td_snapshot_arg_absolute(const char *arg);

#endif
