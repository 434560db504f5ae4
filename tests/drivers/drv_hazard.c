/* hazard: a raw image driver that pauses the wrong way, for the control
 * run of the migration hazard test (tests/tools/migrate_hazard.c, test
 * builds only). Writes are acknowledged at once and reach the file
 * delay_ms later; a FLUSH is acknowledged at once; the quiesce of a pause
 * releases the image lock at once, and the writes still held land
 * afterwards, when another tapdisk may already have taken the image and
 * written newer data: exactly the write-after-write hazard that a correct
 * pause (drain, flush, quiesce, then release) prevents.
 *
 * Spec: hazard,delay_ms=D:PATH (default 800). Blocking file I/O on the
 * loop thread: it is a test driver. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/log.h"
#include "tests/drivers/test_drivers.h"

/* outlives the layer: writes still held after close land through it */
struct hz_file {
	int fd;
	unsigned held;
	bool closed;
};

struct hz_write {
	struct hz_file *f;
	struct td_timer t;
	uint64_t off;
	size_t len;
	uint8_t buf[];
};

struct hz_priv {
	struct hz_file *f;
	uint64_t delay_ms;
	struct td_defer defer;
};

static void file_unref(struct hz_file *f)
{
	if (f->closed && !f->held) {
		close(f->fd);
		free(f);
	}
}

static int hz_open(struct td_layer *l, const char *path, const char *opts, char *err, size_t errlen)
{
	struct hz_priv *p = l->priv;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	struct td_file tf;
	char why[512];
	int rc;

	p->delay_ms = 800;
	if (opts && (sscanf(opts, "delay_ms=%lu", (unsigned long *)&p->delay_ms) != 1)) {
		snprintf(err, errlen, "hazard: bad option '%s' (delay_ms=D)", opts);
		return -EINVAL;
	}
	rc = td_file_open(l->ctx, path, TD_FILE_RW, &tf, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "hazard: image '%s' %s", path, why);
		return rc;
	}
	if (fcntl(tf.fd, F_OFD_SETLK, &fl) < 0) {
		snprintf(err, errlen, "hazard: image '%s' is locked by another process", path);
		close(tf.fd);
		return -EBUSY;
	}
	p->f = calloc(1, sizeof(*p->f));
	if (!p->f) {
		close(tf.fd);
		return -ENOMEM;
	}
	p->f->fd = tf.fd;
	l->size = (uint64_t)tf.st.st_size & ~(uint64_t)(TD_BLOCK_SIZE - 1);
	td_warn("TEST DRIVER hazard: writes land %llu ms after they are acknowledged, even "
		"after a pause",
		(unsigned long long)p->delay_ms);
	return 0;
}

static void land(void *opaque)
{
	struct hz_write *w = opaque;
	struct hz_file *f = w->f;

	if (pwrite(f->fd, w->buf, w->len, (off_t)w->off) != (ssize_t)w->len)
		td_err("hazard: late write at %llu failed", (unsigned long long)w->off);
	f->held--;
	free(w);
	file_unref(f);
}

static void hz_read(struct td_layer *l, struct td_req *req)
{
	struct hz_priv *p = l->priv;
	ssize_t n = preadv(p->f->fd, req->iov, req->iovcnt, (off_t)req->off);

	td_req_complete_later(l->ctx, req, n == (ssize_t)req->len ? 0 : -EIO);
}

static void hz_write(struct td_layer *l, struct td_req *req)
{
	struct hz_priv *p = l->priv;
	struct hz_write *w = malloc(sizeof(*w) + req->len);
	size_t at = 0;

	if (!w) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	for (int i = 0; i < req->iovcnt; i++) {
		memcpy(w->buf + at, req->iov[i].iov_base, req->iov[i].iov_len);
		at += req->iov[i].iov_len;
	}
	w->f = p->f;
	w->off = req->off;
	w->len = (size_t)req->len;
	p->f->held++;
	td_timer_init(&w->t, land, w);
	td_loop_timer_arm(l->ctx->loop, &w->t, p->delay_ms * 1000000ull);
	td_req_complete_later(l->ctx, req, 0); /* the lie */
}

static void hz_ok(struct td_layer *l, struct td_req *req)
{
	td_req_complete_later(l->ctx, req, 0);
}

static void quiesced(void *opaque)
{
	td_layer_quiesced(opaque, 0);
}

static void hz_quiesce(struct td_layer *l)
{
	struct hz_priv *p = l->priv;
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};

	/* the wrong way: released while writes are still held */
	fcntl(p->f->fd, F_OFD_SETLK, &fl);
	td_defer_init(&p->defer, quiesced, l);
	td_loop_defer(l->ctx->loop, &p->defer);
}

static void hz_close(struct td_layer *l)
{
	struct hz_priv *p = l->priv;

	if (!p->f)
		return;
	p->f->closed = true;
	file_unref(p->f);
	p->f = NULL;
}

const struct td_driver td_drv_hazard = {
    .name = "hazard",
    .summary = "TEST: a raw image whose pause releases the lock with writes still held",
    .is_image = true,
    .priv_size = sizeof(struct hz_priv),
    .open = hz_open,
    .quiesce = hz_quiesce,
    .close = hz_close,
    .read = hz_read,
    .write = hz_write,
    .flush = hz_ok,
    .discard = hz_ok,
    .write_zeroes = hz_ok,
};
