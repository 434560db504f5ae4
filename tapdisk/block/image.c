/* Plumbing the image drivers share (image.h). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/block/image.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"

void td_wait_wake_all(struct td_wait **list, int err)
{
	struct td_wait *w = *list;

	*list = NULL;
	while (w) {
		struct td_wait *next = w->next;

		w->next = NULL;
		w->err = err;
		w->cb(w);
		w = next;
	}
}

struct opts_ctx {
	struct td_image_opts *o;
	char *err;
	size_t errlen;
};

static size_t dir_key_len(const struct td_image_opts *o, const char *tok)
{
	size_t n = strlen(o->dir_key);

	if (!strncmp(tok, o->dir_key, n) && tok[n] == '=')
		return n + 1;
	if (o->dir_alias) {
		n = strlen(o->dir_alias);
		if (!strncmp(tok, o->dir_alias, n) && tok[n] == '=')
			return n + 1;
	}
	return 0;
}

static int one_opt(char *tok, void *opaque)
{
	struct opts_ctx *c = opaque;
	struct td_image_opts *o = c->o;
	size_t dl = dir_key_len(o, tok);
	uint64_t v;

	if (dl) {
		if (tok[dl] != '/' || o->ndirs == TD_IMAGE_MAX_DIRS) {
			snprintf(c->err, c->errlen,
				 "%s: bad option '%s' (%s=ABSOLUTE_DIR, at most %d)", o->drv, tok,
				 o->dir_key, TD_IMAGE_MAX_DIRS);
			return -EINVAL;
		}
		o->dirs[o->ndirs] = strdup(tok + dl);
		if (!o->dirs[o->ndirs++])
			return -ENOMEM;
		return 0;
	}
	if (strncmp(tok, "cache=", 6)) {
		snprintf(c->err, c->errlen, "%s: bad option '%s' (known: cache=SIZE, %s=DIR)",
			 o->drv, tok, o->dir_key);
		return -EINVAL;
	}
	if (td_parse_size(tok + 6, &v) < 0 || v < (64u << 10) || v > (4ull << 30)) {
		snprintf(c->err, c->errlen, "%s: bad option '%s' (cache=64K..4G)", o->drv, tok);
		return -EINVAL;
	}
	o->cache = v;
	return 0;
}

int td_image_opts_parse(struct td_image_opts *o, const char *opts, char *err, size_t errlen)
{
	struct opts_ctx c = {o, err, errlen};

	return td_opts_each(opts, one_opt, &c);
}

void td_image_opts_free(struct td_image_opts *o)
{
	while (o->ndirs)
		free(o->dirs[--o->ndirs]);
}

int td_image_lock(int fd, bool write, char *why, size_t whylen)
{
	struct flock fl = {.l_type = write ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET};

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES) {
		snprintf(why, whylen,
			 "is locked by another process (is another tapdisk or qemu using it? see "
			 "'tap-ctl list')");
		return -EBUSY;
	}
	snprintf(why, whylen, "cannot be locked: %s", strerror(errno));
	return -errno;
}

int td_image_file_open(struct td_ctx *ctx, const struct td_confine *confine, const char *path,
		       unsigned how, struct td_file *out, char *why, size_t whylen)
{
	return confine ? td_file_open_named(ctx, confine, path, how, out, why, whylen)
		       : td_file_open(ctx, path, how, out, why, whylen);
}

int td_image_open_data(struct td_ctx *ctx, const struct td_confine *confine, const char *path,
		       bool writable, const struct stat *buf_st,
		       bool (*direct_ok)(int fd, const struct stat *st), int *fd, bool *direct,
		       bool *locked, char *why, size_t whylen)
{
	unsigned how = (writable ? TD_FILE_RW : 0) | TD_FILE_DIRECT;
	struct td_file f;
	int rc;

	rc = td_image_file_open(ctx, confine, path, how, &f, why, whylen);
	if (rc < 0)
		return rc;
	*fd = f.fd;
	*direct = f.direct;
	if (f.direct && direct_ok && !direct_ok(f.fd, buf_st)) {
		/* O_DIRECT cannot serve this file: the page cache then */
		close(f.fd);
		*fd = -1;
		rc = td_image_file_open(ctx, confine, path, how & ~TD_FILE_DIRECT, &f, why, whylen);
		if (rc < 0)
			return rc;
		*fd = f.fd;
		*direct = false;
	}
	if (f.st.st_dev != buf_st->st_dev || f.st.st_ino != buf_st->st_ino) {
		snprintf(why, whylen, "changed while being opened");
		return -ESTALE;
	}
	if (!ctx->nolock) {
		rc = td_image_lock(*fd, writable, why, whylen);
		if (rc < 0)
			return rc;
		*locked = true;
	}
	return 0;
}

void td_image_unlock(int fd, const char *drv)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};

	if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
		td_err("%s: cannot release an image lock: %s", drv, strerror(errno));
}

int td_image_path_beside(const char *base, const char *name, char *out, size_t outlen, char *why,
			 size_t whylen)
{
	char dir[PATH_MAX], cwd[PATH_MAX];
	int n;

	snprintf(dir, sizeof(dir), "%s", base);
	if (name[0] == '/')
		n = snprintf(out, outlen, "%s", name);
	else if (base[0] == '/')
		n = snprintf(out, outlen, "%s/%s", dirname(dir), name);
	else if (getcwd(cwd, sizeof(cwd)))
		n = snprintf(out, outlen, "%s/%s/%s", cwd, dirname(dir), name);
	else
		n = -1;
	if (n < 0 || (size_t)n >= outlen) {
		snprintf(why, whylen, "path is too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

void td_image_export_size(struct td_layer *l, const char *drv, const char *what, const char *path,
			  uint64_t vsize)
{
	if (vsize % TD_BLOCK_SIZE)
		td_warn("%s: '%s': %s %llu is not a multiple of %u; the last %llu bytes are not "
			"exported",
			drv, path, what, (unsigned long long)vsize, TD_BLOCK_SIZE,
			(unsigned long long)(vsize % TD_BLOCK_SIZE));
	l->size = vsize & ~(uint64_t)(TD_BLOCK_SIZE - 1);
}

void td_image_vlog_bad(unsigned *left, const char *drv, const char *path, const char *last_note,
		       const char *fmt, va_list ap)
{
	char msg[512];

	if (!*left)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	td_err("%s: '%s': %s%s", drv, path, msg, --*left ? "" : last_note);
}

struct flush_wait {
	struct td_wait w;
	struct td_req *req;
};

static void flush_done(struct td_wait *w)
{
	struct flush_wait *f = (struct flush_wait *)w;
	struct td_req *req = f->req;
	int err = w->err;

	free(f);
	td_req_complete(req, err);
}

struct td_wait *td_image_flush_wait(struct td_ctx *ctx, struct td_req *req, bool writable)
{
	struct flush_wait *f;

	if (!writable) {
		td_req_complete_later(ctx, req, 0);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		td_req_complete_later(ctx, req, -ENOMEM);
		return NULL;
	}
	f->req = req;
	f->w.cb = flush_done;
	return &f->w;
}

int td_snapshot_old_path(const char *path, const char *arg, int new_fd, char *old, size_t oldlen,
			 char *err, size_t errlen)
{
	if (new_fd < 0) {
		snprintf(err, errlen, "snapshot: no file was passed for %s", arg);
		return -EINVAL;
	}
	if (path[0] != '/' && getcwd(old, oldlen))
		snprintf(old + strlen(old), oldlen - strlen(old), "/%s", path);
	else
		snprintf(old, oldlen, "%s", path);
	return 0;
}

bool td_snapshot_arg_absolute(const char *arg)
{
	return arg[0] == '/';
}
