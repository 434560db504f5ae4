/* rbd: a Ceph RBD image, through librbd's asynchronous API.
 *
 * Spec: rbd[,OPTIONS]:POOL/IMAGE[@SNAP]. A named snapshot opens read-only.
 * Options (comma-separated key=value):
 *   conf=PATH         ceph.conf (default: $CEPH_CONF, then librados' search path)
 *   id=NAME           client id, e.g. admin (default: $CEPH_ID, then admin)
 *   timeout=S         I/O bound: OSD and monitor operations that do not
 *                     finish within S seconds fail with EIO (default 30)
 *   open_timeout=S    how long to try to reach the monitors at open (default 15)
 *
 * Threads: librbd runs its own; its completion callbacks touch nothing but
 * the finished op, which they push onto a mutex-protected list before
 * signalling an eventfd watched by the tapdisk loop. Requests complete on
 * the loop thread (td_req_complete). Nothing on the I/O path blocks; open,
 * close and snapshot do (they run at open/pause time).
 *
 * Locking: a read-write open takes RBD's exclusive lock with
 * rbd_lock_acquire(RBD_LOCK_MODE_EXCLUSIVE), which also switches off
 * librbd's cooperative lock hand-over: a second client -- another
 * tapdisk on any host of the cluster -- is refused instead of being handed
 * the lock. rbd_close() (pause, destroy) releases it.
 *
 * Durability: the librbd cache is off, so a write is on the OSDs when
 * librbd acknowledges it (FUA needs nothing more) and flush is cheap.
 *
 * The cluster connection (rados_t) is kept for the life of the process
 * and shared by every open of the same conf/id: pause/unpause and
 * snapshots reopen only the image, after the sandbox is in place. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tapdisk/drivers/rbd_dl.h" /* librbd/librados, loaded on first use */

#include "tapdisk/block/driver.h"
#include "tapdisk/drivers/drivers.h"
#include "tapdisk/drivers/drv_rbd.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/block/spec.h"
#include "tapdisk/core/stats.h"

#define RBD_DEFAULT_TIMEOUT 30
#define RBD_DEFAULT_OPEN_TIMEOUT 15
#define RBD_NAME_MAX 256

struct rbd_opts {
	char conf[PATH_MAX];   /* "" = default search */
	char id[128];	       /* "" = admin */
	unsigned timeout;      /* seconds */
	unsigned open_timeout; /* seconds */
};

/* One cluster connection per distinct option set, for the process's life. */
struct rbd_conn {
	struct rbd_opts o;
	rados_t cluster;
	char mon_host[512];
	struct rbd_conn *next;
};

static struct rbd_conn *conns;
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;

struct rbd_op {
	struct td_req *req;
	struct rbd_priv *p;
	ssize_t ret;
	struct rbd_op *next;
};

struct rbd_priv {
	struct td_layer *l;
	struct rbd_conn *conn;
	rados_ioctx_t io;
	rbd_image_t image;
	bool have_io, have_image;
	char pool[RBD_NAME_MAX], name[RBD_NAME_MAX], snap[RBD_NAME_MAX];
	int efd;
	struct td_watch *watch;
	pthread_mutex_t lock; /* done list, shared with librbd's threads */
	bool lock_init;
	struct rbd_op *done_head, *done_tail;
	struct td_pool ops;
	unsigned errors_logged;
	struct td_defer quiesce_defer;
};

/* ---- names and options ---------------------------------------------------- */

static bool name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len >= RBD_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == ':' || c == ',')
			return false;
	}
	return true;
}

bool td_rbd_snap_name_ok(const char *name)
{
	return name && name_ok(name, strlen(name));
}

/* POOL/IMAGE[@SNAP] */
static int parse_path(const char *path, struct rbd_priv *p, char *err, size_t errlen)
{
	const char *slash = strchr(path, '/'), *at;

	if (!slash)
		goto bad;
	at = strchr(slash + 1, '@');
	if (!name_ok(path, (size_t)(slash - path)))
		goto bad;
	if (at) {
		if (!name_ok(slash + 1, (size_t)(at - slash - 1)) ||
		    !name_ok(at + 1, strlen(at + 1)))
			goto bad;
	} else if (!name_ok(slash + 1, strlen(slash + 1))) {
		goto bad;
	}
	snprintf(p->pool, sizeof(p->pool), "%.*s", (int)(slash - path), path);
	if (at) {
		snprintf(p->name, sizeof(p->name), "%.*s", (int)(at - slash - 1), slash + 1);
		snprintf(p->snap, sizeof(p->snap), "%s", at + 1);
	} else {
		snprintf(p->name, sizeof(p->name), "%s", slash + 1);
		p->snap[0] = 0;
	}
	return 0;
bad:
	snprintf(err, errlen,
		 "rbd: bad image name '%s' (expected POOL/IMAGE or POOL/IMAGE@SNAPSHOT, e.g. "
		 "rbd:rbd/vm1)",
		 path);
	return -EINVAL;
}

static int parse_secs(const char *v, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || n == 0 || n > 86400)
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

static int parse_opts(const char *opts, struct rbd_opts *o, char *err, size_t errlen)
{
	const char *env;
	char *copy, *tok, *save = NULL;
	int rc = 0;

	memset(o, 0, sizeof(*o));
	o->timeout = RBD_DEFAULT_TIMEOUT;
	o->open_timeout = RBD_DEFAULT_OPEN_TIMEOUT;
	env = getenv("CEPH_CONF");
	if (env && *env)
		snprintf(o->conf, sizeof(o->conf), "%s", env);
	env = getenv("CEPH_ID");
	if (env && *env)
		snprintf(o->id, sizeof(o->id), "%s", env);
	if (!opts)
		return 0;
	copy = strdup(opts);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		rc = -EINVAL;
		if (!eq)
			break;
		*eq++ = 0;
		if (!strcmp(tok, "conf") && *eq && strlen(eq) < sizeof(o->conf))
			snprintf(o->conf, sizeof(o->conf), "%s", eq);
		else if (!strcmp(tok, "id") && *eq && strlen(eq) < sizeof(o->id))
			snprintf(o->id, sizeof(o->id), "%s", eq);
		else if (!strcmp(tok, "timeout") && parse_secs(eq, &o->timeout) == 0)
			;
		else if (!strcmp(tok, "open_timeout") && parse_secs(eq, &o->open_timeout) == 0)
			;
		else
			break;
		rc = 0;
	}
	if (rc < 0)
		snprintf(err, errlen,
			 "rbd: bad option near '%s' (known: conf=PATH, id=NAME, timeout=SECONDS, "
			 "open_timeout=SECONDS)",
			 tok ? tok : opts);
	free(copy);
	return rc;
}

/* ---- the cluster connection ------------------------------------------------ */

static int conf_set(rados_t c, const char *k, const char *v, char *err, size_t errlen)
{
	int rc = rados_conf_set(c, k, v);

	if (rc < 0)
		snprintf(err, errlen, "rbd: cannot set %s=%s: %s", k, v, strerror(-rc));
	return rc;
}

static int conn_get(const struct rbd_opts *o, struct rbd_conn **out, char *err, size_t errlen)
{
	struct rbd_conn *c;
	char t[32], ot[32];
	int rc;

	rc = td_rbd_api_load(err, errlen);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&conns_lock);
	for (c = conns; c; c = c->next) {
		if (!strcmp(c->o.conf, o->conf) && !strcmp(c->o.id, o->id) &&
		    c->o.timeout == o->timeout && c->o.open_timeout == o->open_timeout) {
			pthread_mutex_unlock(&conns_lock);
			*out = c;
			return 0;
		}
	}
	pthread_mutex_unlock(&conns_lock);

	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->o = *o;
	rc = rados_create(&c->cluster, o->id[0] ? o->id : NULL);
	if (rc < 0) {
		snprintf(err, errlen, "rbd: cannot create a cluster handle for client '%s': %s",
			 o->id[0] ? o->id : "admin", strerror(-rc));
		free(c);
		return rc;
	}
	rc = rados_conf_read_file(c->cluster, o->conf[0] ? o->conf : NULL);
	if (rc < 0) {
		if (o->conf[0])
			snprintf(err, errlen, "rbd: cannot read the Ceph configuration '%s': %s",
				 o->conf, strerror(-rc));
		else
			snprintf(
			    err, errlen,
			    "rbd: no Ceph configuration found (set CEPH_CONF, use --ceph-conf, "
			    "or rbd,conf=PATH:...; default /etc/ceph/ceph.conf): %s",
			    strerror(-rc));
		goto fail;
	}
	rados_conf_parse_env(c->cluster, NULL); /* CEPH_ARGS, like the ceph tools */
	snprintf(t, sizeof(t), "%u", o->timeout);
	snprintf(ot, sizeof(ot), "%u", o->open_timeout);
	/* a tapdisk opens no admin socket (a local control channel into the
	 * process) and caches nothing: acknowledged means on the OSDs */
	if ((rc = conf_set(c->cluster, "admin_socket", "", err, errlen)) < 0 ||
	    (rc = conf_set(c->cluster, "rbd_cache", "false", err, errlen)) < 0 ||
	    (rc = conf_set(c->cluster, "rados_osd_op_timeout", t, err, errlen)) < 0 ||
	    (rc = conf_set(c->cluster, "rados_mon_op_timeout", t, err, errlen)) < 0 ||
	    (rc = conf_set(c->cluster, "client_mount_timeout", ot, err, errlen)) < 0)
		goto fail;
	if (rados_conf_get(c->cluster, "mon_host", c->mon_host, sizeof(c->mon_host)) < 0 ||
	    !c->mon_host[0])
		snprintf(c->mon_host, sizeof(c->mon_host), "(none configured)");
	rc = rados_connect(c->cluster);
	if (rc < 0) {
		snprintf(err, errlen,
			 "rbd: cannot reach the Ceph cluster: monitor(s) %s did not answer within "
			 "%u s as client.%s (%s; conf %s)",
			 c->mon_host, o->open_timeout, o->id[0] ? o->id : "admin", strerror(-rc),
			 o->conf[0] ? o->conf : "default search path");
		goto fail;
	}
	pthread_mutex_lock(&conns_lock);
	c->next = conns;
	conns = c;
	pthread_mutex_unlock(&conns_lock);
	*out = c;
	return 0;
fail:
	rados_shutdown(c->cluster);
	free(c);
	return rc;
}

static int ioctx_open(struct rbd_conn *c, const char *pool, rados_ioctx_t *io, char *err,
		      size_t errlen)
{
	int rc = rados_ioctx_create(c->cluster, pool, io);

	if (rc == -ENOENT)
		snprintf(err, errlen, "rbd: pool '%s' does not exist (cluster %s)", pool,
			 c->mon_host);
	else if (rc < 0)
		snprintf(err, errlen, "rbd: cannot open pool '%s': %s", pool, strerror(-rc));
	return rc;
}

/* ---- completions ------------------------------------------------------------ */

/* librbd's thread: only the op and the done list. */
static void rbd_cb(rbd_completion_t comp, void *arg)
{
	struct rbd_op *op = arg;
	struct rbd_priv *p = op->p;
	uint64_t one = 1;

	op->ret = rbd_aio_get_return_value(comp);
	rbd_aio_release(comp);
	pthread_mutex_lock(&p->lock);
	op->next = NULL;
	if (p->done_tail)
		p->done_tail->next = op;
	else
		p->done_head = op;
	p->done_tail = op;
	if (p->done_head == op && write(p->efd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow: the loop drains it */
	}
	pthread_mutex_unlock(&p->lock);
}

static void op_put(struct rbd_priv *p, struct rbd_op *op)
{
	td_pool_put(&p->ops, op);
}

static int map_err(struct rbd_priv *p, const struct td_req *req, ssize_t ret)
{
	int e = (int)-ret;

	if (ret >= 0)
		return 0;
	if (p->errors_logged < 20) {
		p->errors_logged++;
		td_err("rbd: %s/%s: op %d at %llu+%llu failed: %s%s", p->pool, p->name,
		       (int)req->op, (unsigned long long)req->off, (unsigned long long)req->len,
		       strerror(e),
		       e == ETIMEDOUT ? " (cluster unreachable within the timeout)" : "");
	}
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		return -ENOSPC;
	case EINVAL:
	case EOPNOTSUPP:
	case EROFS:
		return -e;
	default:
		return -EIO;
	}
}

static void on_done(void *opaque, uint32_t events)
{
	struct rbd_priv *p = opaque;
	struct td_stats_shared *st = p->l->ctx->stats;
	struct rbd_op *list;
	uint64_t v;

	if (read(p->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		td_err("rbd: eventfd read: %m");
	pthread_mutex_lock(&p->lock);
	list = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (list) {
		struct rbd_op *op = list;
		struct td_req *req = op->req;
		int err;

		list = op->next;
		if (!req) {
			/* the quiesce's asynchronous close of the image */
			err = op->ret < 0 ? (int)op->ret : 0;
			op_put(p, op);
			p->have_image = false;
			if (err)
				td_err("rbd: closing %s/%s: %s", p->pool, p->name, strerror(-err));
			td_layer_quiesced(p->l, err);
			continue;
		}
		err = map_err(p, req, op->ret);
		if (!err && req->op != TD_OP_DISCARD && req->op != TD_OP_WRITE_ZEROES)
			td_stats_lower(st,
				       req->op == TD_OP_READ	? TD_STAT_READ
				       : req->op == TD_OP_WRITE ? TD_STAT_WRITE
								: TD_STAT_FLUSH,
				       req->op == TD_OP_FLUSH ? 0 : (int64_t)req->len);
		op_put(p, op);
		td_req_complete(req, err);
	}
}

/* ---- open / close ----------------------------------------------------------- */

static void describe_owner(struct rbd_priv *p, char *buf, size_t len)
{
	char *owners[8];
	size_t n = 8, i, off = 0;
	rbd_lock_mode_t mode;
	int rc = rbd_lock_get_owners(p->image, &mode, owners, &n);

	if (rc < 0 || n == 0) {
		snprintf(buf, len, "owner unknown%s%s", rc < 0 ? ": " : "",
			 rc < 0 ? strerror(-rc) : "");
		return;
	}
	buf[0] = 0;
	for (i = 0; i < n && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%sowner %s", i ? ", " : "", owners[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
	rbd_lock_get_owners_cleanup(owners, n);
}

static void rbd_close_layer(struct td_layer *l)
{
	struct rbd_priv *p = l->priv;

	if (p->have_image) {
		int rc = rbd_close(p->image); /* flushes, releases the exclusive lock */

		if (rc < 0)
			td_err("rbd: closing %s/%s: %s", p->pool, p->name, strerror(-rc));
		p->have_image = false;
	}
	if (p->have_io)
		rados_ioctx_destroy(p->io);
	p->have_io = false;
	if (p->watch)
		td_loop_del_fd(l->ctx->loop, p->watch);
	p->watch = NULL;
	if (p->efd >= 0)
		close(p->efd);
	p->efd = -1;
	td_pool_drain(&p->ops);
	if (p->lock_init)
		pthread_mutex_destroy(&p->lock);
	p->lock_init = false;
}

static int rbd_open_layer(struct td_layer *l, const char *path, const char *opts, char *err,
			  size_t errlen)
{
	struct rbd_priv *p = l->priv;
	struct rbd_opts o;
	bool ro;
	uint64_t size, features = 0;
	int rc;

	p->l = l;
	p->efd = -1;
	td_pool_init(&p->ops, sizeof(struct rbd_op));
	rc = parse_path(path, p, err, errlen);
	if (rc < 0)
		return rc;
	rc = parse_opts(opts, &o, err, errlen);
	if (rc < 0)
		return rc;
	ro = l->ctx->readonly || p->snap[0];
	pthread_mutex_init(&p->lock, NULL);
	p->lock_init = true;
	rc = conn_get(&o, &p->conn, err, errlen);
	if (rc < 0)
		goto fail;
	rc = ioctx_open(p->conn, p->pool, &p->io, err, errlen);
	if (rc < 0)
		goto fail;
	p->have_io = true;
	if (ro)
		rc = rbd_open_read_only(p->io, p->name, &p->image, p->snap[0] ? p->snap : NULL);
	else
		rc = rbd_open(p->io, p->name, &p->image, NULL);
	if (rc < 0) {
		if (rc == -ENOENT && p->snap[0])
			snprintf(err, errlen,
				 "rbd: image %s/%s or its snapshot '%s' does not exist", p->pool,
				 p->name, p->snap);
		else if (rc == -ENOENT)
			snprintf(
			    err, errlen,
			    "rbd: image %s/%s does not exist (create it: rbd create --size ... "
			    "%s/%s)",
			    p->pool, p->name, p->pool, p->name);
		else
			snprintf(err, errlen, "rbd: cannot open image %s/%s: %s", p->pool, p->name,
				 strerror(-rc));
		goto fail;
	}
	p->have_image = true;
	if (!ro && !l->ctx->nolock) {
		rbd_get_features(p->image, &features);
		if (!(features & RBD_FEATURE_EXCLUSIVE_LOCK)) {
			rc = -EINVAL;
			snprintf(err, errlen,
				 "rbd: image %s/%s lacks the exclusive-lock feature, so two hosts "
				 "could write it at once (rbd feature enable %s/%s exclusive-lock)",
				 p->pool, p->name, p->pool, p->name);
			goto fail;
		}
		/* exclusive mode: no cooperative hand-over to later clients */
		rc = rbd_lock_acquire(p->image, RBD_LOCK_MODE_EXCLUSIVE);
		if (rc < 0) {
			char who[512];

			describe_owner(p, who, sizeof(who));
			if (rc == -EROFS || rc == -EBUSY)
				snprintf(
				    err, errlen,
				    "image %s/%s is locked by another client (%s); is another "
				    "tapdisk serving it on some host? (see 'rbd lock ls %s/%s')",
				    p->pool, p->name, who, p->pool, p->name);
			else
				snprintf(err, errlen,
					 "image %s/%s: cannot take the exclusive lock (%s): %s",
					 p->pool, p->name, who, strerror(-rc));
			rc = -EBUSY;
			goto fail;
		}
	}
	rc = rbd_get_size(p->image, &size);
	if (rc < 0) {
		snprintf(err, errlen, "rbd: cannot read the size of %s/%s: %s", p->pool, p->name,
			 strerror(-rc));
		goto fail;
	}
	if (size % TD_BLOCK_SIZE) {
		rc = -EINVAL;
		snprintf(err, errlen,
			 "rbd: image %s/%s is %llu bytes, not a multiple of %u (rbd resize)",
			 p->pool, p->name, (unsigned long long)size, TD_BLOCK_SIZE);
		goto fail;
	}
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0) {
		rc = -errno;
		snprintf(err, errlen, "rbd: eventfd: %s", strerror(errno));
		goto fail;
	}
	p->watch = td_loop_add_fd(l->ctx->loop, p->efd, EPOLLIN, on_done, p);
	if (!p->watch) {
		rc = -ENOMEM;
		snprintf(err, errlen, "rbd: cannot watch the completion eventfd");
		goto fail;
	}
	l->size = size;
	td_dbg("rbd: opened %s/%s%s%s (%llu bytes, %s, cluster %s, timeout %u s)", p->pool, p->name,
	       p->snap[0] ? "@" : "", p->snap, (unsigned long long)size,
	       ro ? "read-only" : (l->ctx->nolock ? "read-write, no lock" : "exclusive lock held"),
	       p->conn->mon_host, o.timeout);
	return 0;
fail:
	rbd_close_layer(l);
	return rc;
}

/* ---- quiesce ------------------------------------------------------------------
 * The image is closed asynchronously (rbd_aio_close: librbd flushes and
 * releases the exclusive lock on its own threads), so a pause never blocks
 * the loop on the cluster; close() then only frees. */

static void quiesce_nothing(void *opaque)
{
	struct td_layer *l = opaque;

	td_layer_quiesced(l, 0);
}

static void rbd_quiesce_layer(struct td_layer *l)
{
	struct rbd_priv *p = l->priv;
	struct rbd_op *op;
	rbd_completion_t comp;
	int rc = -ENOMEM;

	if (!p->have_image) {
		td_defer_init(&p->quiesce_defer, quiesce_nothing, l);
		td_loop_defer(l->ctx->loop, &p->quiesce_defer);
		return;
	}
	op = td_pool_get(&p->ops);
	if (op) {
		memset(op, 0, sizeof(*op));
		op->p = p;
		rc = rbd_aio_create_completion(op, rbd_cb, &comp);
		if (rc == 0) {
			rc = rbd_aio_close(p->image, comp);
			if (rc < 0)
				rbd_aio_release(comp);
		}
	}
	if (rc < 0) {
		/* closed the blocking way at close() instead */
		if (op)
			op_put(p, op);
		td_err("rbd: %s/%s: asynchronous close: %s", p->pool, p->name, strerror(-rc));
		td_defer_init(&p->quiesce_defer, quiesce_nothing, l);
		td_loop_defer(l->ctx->loop, &p->quiesce_defer);
	}
}

/* ---- I/O -------------------------------------------------------------------- */

static void rbd_submit(struct td_layer *l, struct td_req *req)
{
	struct rbd_priv *p = l->priv;
	struct rbd_op *op = td_pool_get(&p->ops);
	rbd_completion_t comp;
	int rc;

	if (!op) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	op->req = req;
	op->p = p;
	op->ret = 0;
	op->next = NULL;
	rc = rbd_aio_create_completion(op, rbd_cb, &comp);
	if (rc < 0)
		goto fail;
	switch (req->op) {
	case TD_OP_READ:
		rc = rbd_aio_readv(p->image, req->iov, req->iovcnt, req->off, comp);
		break;
	case TD_OP_WRITE:
		/* no cache: acknowledged writes are durable, FUA included */
		rc = rbd_aio_writev(p->image, req->iov, req->iovcnt, req->off, comp);
		break;
	case TD_OP_FLUSH:
		rc = rbd_aio_flush(p->image, comp);
		break;
	case TD_OP_DISCARD:
		rc = rbd_aio_discard(p->image, req->off, req->len, comp);
		break;
	case TD_OP_WRITE_ZEROES:
		rc = rbd_aio_write_zeroes(
		    p->image, req->off, (size_t)req->len, comp,
		    (req->flags & TD_REQ_NO_UNMAP) ? RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc < 0) {
		rbd_aio_release(comp);
		goto fail;
	}
	return;
fail:
	op_put(p, op);
	td_req_complete_later(l->ctx, req, map_err(p, req, rc));
}

/* ---- hooks for the server ------------------------------------------------- */

/* The image's identity: the cluster, the pool and the image's id, which
 * a copy (rbd cp, import of an export) does not share. */
static int rbd_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct rbd_priv *p = l->priv;
	char buf[512], fsid[64] = "", imgid[128] = "";
	int n;

	if (rados_cluster_fsid(p->conn->cluster, fsid, sizeof(fsid)) < 0 ||
	    rbd_get_id(p->image, imgid, sizeof(imgid)) < 0)
		return -EIO;
	n = snprintf(buf, sizeof(buf), "rbd\n%s\n%lld\n%s", fsid,
		     (long long)rados_ioctx_get_id(p->io), imgid);
	td_image_id_from(buf, (size_t)n, id);
	if (where)
		snprintf(where, wlen, "rbd:%s/%s (id %s)", p->pool, p->name, imgid);
	return 0;
}

static int rbd_snapshot(struct td_ctx *ctx, const char *path, const char *opts, const char *name,
			int new_fd, char *err, size_t errlen)
{
	struct rbd_priv p;
	struct rbd_opts o;
	int rc;

	memset(&p, 0, sizeof(p));
	if (!td_rbd_snap_name_ok(name)) {
		snprintf(
		    err, errlen,
		    "bad snapshot name '%s' (letters, digits, '-', '_', '.'; no '/', '@', ':', "
		    "',' or spaces)",
		    name ? name : "");
		return -EINVAL;
	}
	rc = parse_path(path, &p, err, errlen);
	if (rc < 0)
		return rc;
	if (p.snap[0]) {
		snprintf(err, errlen, "%s is a snapshot already (read-only)", path);
		return -EROFS;
	}
	if ((rc = parse_opts(opts, &o, err, errlen)) < 0 ||
	    (rc = conn_get(&o, &p.conn, err, errlen)) < 0 ||
	    (rc = ioctx_open(p.conn, p.pool, &p.io, err, errlen)) < 0)
		return rc;
	rc = rbd_open(p.io, p.name, &p.image, NULL);
	if (rc < 0) {
		snprintf(err, errlen, "cannot open image %s/%s: %s", p.pool, p.name, strerror(-rc));
	} else {
		rc = rbd_snap_create(p.image, name);
		if (rc == -EEXIST)
			snprintf(err, errlen, "snapshot %s@%s already exists", path, name);
		else if (rc < 0)
			snprintf(err, errlen, "rbd snapshot %s@%s: %s", path, name, strerror(-rc));
		else
			td_info("rbd: created snapshot %s@%s", path, name);
		rbd_close(p.image);
	}
	rados_ioctx_destroy(p.io);
	return rc;
}

const struct td_driver td_drv_rbd = {
    .name = "rbd",
    .summary = "Ceph RBD image (librbd, asynchronous; exclusive lock; POOL/IMAGE[@SNAP])",
    .is_image = true,
    .priv_size = sizeof(struct rbd_priv),
    .open = rbd_open_layer,
    .quiesce = rbd_quiesce_layer,
    .close = rbd_close_layer,
    .read = rbd_submit,
    .write = rbd_submit,
    .flush = rbd_submit,
    .discard = rbd_submit,
    .write_zeroes = rbd_submit,
    .identity = rbd_identity,
    .needs_network = true,
    .snapshot_kind = TD_SNAP_NAMED,
    .snapshot = rbd_snapshot,
    .snapshot_arg_ok = td_rbd_snap_name_ok,
};
