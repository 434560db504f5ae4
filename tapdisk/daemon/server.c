/* The tapdisk process: opens the VBD, listens for NBD clients and for
 * tap-ctl, and shuts down cleanly (drain, flush, release) on SIGTERM or
 * "destroy".
 *
 * Privileges: everything is opened first, as whoever started us (root,
 * normally): the chain's files (kept in the file table, tapdisk/block/files.h),
 * the key, the state directory, the sockets. Then the file table is
 * sealed, and a tapdisk started by root becomes a uid of its own
 * (tapdisk/daemon/uidalloc.h) under a seccomp filter before it serves a single
 * request. Nothing is chowned: the image and the sockets stay whose they
 * were. The control socket admits root and whoever started the tapdisk,
 * never the tapdisk's own uid; root alone brings new files, as
 * descriptors passed with a command (unpause -a, snapshot). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "keymgr/keyring.h"
#include "tapdisk/blkif/blkif.h"
#include "keymgr/statedir.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/control/ctl.h"
#include "tapdisk/block/files.h"
#include "tapdisk/block/hostconf.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/log.h"
#include "tapdisk/nbd/nbd.h"
#include "tapdisk/qos/qos.h"
#include "tapdisk/daemon/notify.h"
#include "tapdisk/daemon/reaper.h"
#include "tapdisk/daemon/sandbox.h"
#include "tapdisk/daemon/server.h"
#include "tapdisk/block/spec.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/daemon/uidalloc.h"
#include "tapdisk/block/vbd.h"
#include "tapdisk/core/util.h"

struct ctl_conn;

struct td_server {
	struct td_loop *loop;
	struct td_ctx ctx;
	struct td_stats_shared stats;
	struct td_qos_ctl *qos; /* live QoS limits and the host arbiter (tapdisk/qos) */
	struct vbd *vbd;
	struct nbd_server *nbd;
	int nbd_fd, ctl_fd, sig_fd;
	struct td_watch *ctl_watch, *sig_watch;
	int minor;
	char nbd_path[108], ctl_path[108];
	bool shutting_down;
	int exit_code;
	struct ctl_conn *destroy_conn; /* answered once shut down */
	struct ctl_conn *pause_conn;
	char snap_arg[4096]; /* a pending snapshot's new file or name */
	uint64_t resize_to;  /* a pending resize's new size */
	bool snap_was_paused;
	int snap_pause_err;
	/* unpause and snapshot open a chain (synchronous I/O that runs the
	 * loop): they run as a task, at the top of the loop, never inside the
	 * callback that asked for them */
	struct td_task task;
	struct ctl_conn *task_conn;
	void (*task_fn)(struct td_server *s, struct ctl_conn *c);
	char task_spec[TD_SPEC_MAX_LEN];
	bool task_has_spec;
	struct td_files *files;
	uid_t admin_uid; /* who started us: admitted to the control socket (with root) */
	uid_t image_uid; /* the owner of the top image file (snapshots give it theirs) */
	gid_t image_gid;
	int uid_lock_fd;
	bool dropped;
	struct td_volkey *key; /* the key this tapdisk serves with, for reopening */
	uint8_t key_uuid[16];
	struct td_volkey *next_key; /* a volume-key rotation's new key (same image) */
	/* a Xen guest's ring (tapdisk serve --xen; xen-connect) */
	struct td_xenio *xen;
	const struct td_xenio_ops *xen_ops;
	struct td_blkif *blkif;
	struct ctl_conn *xen_disconnect_conn;
	bool blkif_closing;
};

#define CTL_MAX_FDS 128

struct ctl_conn {
	struct td_server *s;
	int fd;
	struct td_watch *w;
	char buf[16384];
	size_t len;
	bool busy;
	bool refused;	      /* not root, not our starter: answered with an error */
	int fds[CTL_MAX_FDS]; /* descriptors root passed with the command */
	int nfds;
};

static void ctl_conn_close(struct ctl_conn *c)
{
	if (c->w)
		td_loop_del_fd(c->s->loop, c->w);
	while (c->nfds)
		close(c->fds[--c->nfds]);
	close(c->fd);
	free(c);
}

static void ctl_reply(struct ctl_conn *c, const char *text)
{
	size_t len = strlen(text), off = 0;

	/* replies are small; the socket buffer takes them whole */
	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	ctl_conn_close(c);
}

static void ctl_errorf(struct ctl_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ctl_errorf(struct ctl_conn *c, const char *fmt, ...)
{
	char msg[1024], line[1100];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "error: %s\n", msg);
	ctl_reply(c, line);
}

static const char *state_name(struct td_server *s)
{
	if (s->shutting_down)
		return "closing";
	if (vbd_paused(s->vbd))
		return "paused";
	if (s->pause_conn)
		return "pausing";
	return "running";
}

static const char *snapshot_kind_name(enum td_snapshot_kind k)
{
	return k == TD_SNAP_FILE ? "file" : k == TD_SNAP_NAMED ? "named" : "none";
}

static void do_info(struct ctl_conn *c)
{
	struct td_server *s = c->s;
	const struct td_driver *img = vbd_image_driver(s->vbd);
	char out[8192];
	size_t n;

	snprintf(out, sizeof(out),
		 "ok\npid=%d\nminor=%d\nstate=%s\nspec=%s\nsocket=%s\nuri=nbd+unix:///?socket=%s\n"
		 "path=%s\nsize=%llu\nuid=%u\nreadonly=%d\nconnections=%u\ndumpable=%d\n"
		 "snapshot=%s\nimage_owner=%u:%u\nxen=%s\n",
		 (int)getpid(), s->minor, state_name(s), vbd_spec(s->vbd), s->nbd_path, s->nbd_path,
		 vbd_path(s->vbd) ? vbd_path(s->vbd) : "", (unsigned long long)vbd_size(s->vbd),
		 (unsigned)getuid(), vbd_readonly(s->vbd) ? 1 : 0,
		 s->nbd ? nbd_server_connections(s->nbd) : 0, prctl(PR_GET_DUMPABLE),
		 snapshot_kind_name(img->snapshot_kind), (unsigned)s->image_uid,
		 (unsigned)s->image_gid,
		 !s->xen    ? "no"
		 : s->blkif ? (s->blkif_closing ? "closing" : "connected")
			    : "ready");
	n = strlen(out);
	td_qos_ctl_report(s->qos, out + n, sizeof(out) - n);
	ctl_reply(c, out);
}

static void do_stats(struct ctl_conn *c)
{
	struct vbd_stats st;
	char out[8192];
	size_t n;

	vbd_get_stats(c->s->vbd, &st);
	snprintf(out, sizeof(out),
		 "ok\nreads=%llu\nwrites=%llu\nflushes=%llu\ndiscards=%llu\nwrite_zeroes=%llu\n"
		 "bytes_read=%llu\nbytes_written=%llu\nerrors=%llu\nin_flight=%llu\n"
		 "integrity_failures=%llu\nlower_bytes_read=%llu\nlower_bytes_written=%llu\n"
		 "lower_flushes=%llu\nlatency_mean_us=%.1f\nlatency_p50_us=%.1f\n"
		 "latency_p99_us=%.1f\n",
		 (unsigned long long)st.reads, (unsigned long long)st.writes,
		 (unsigned long long)st.flushes, (unsigned long long)st.discards,
		 (unsigned long long)st.write_zeroes, (unsigned long long)st.bytes_read,
		 (unsigned long long)st.bytes_written, (unsigned long long)st.errors,
		 (unsigned long long)st.in_flight, (unsigned long long)st.integrity_failures,
		 (unsigned long long)st.lower_bytes_read,
		 (unsigned long long)st.lower_bytes_written, (unsigned long long)st.lower_flushes,
		 st.lat_mean_us, st.lat_p50_us, st.lat_p99_us);
	n = strlen(out);
	td_qos_ctl_report(c->s->qos, out + n, sizeof(out) - n);
	ctl_reply(c, out);
}

static void paused_cb(void *opaque, int err)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->pause_conn;

	s->pause_conn = NULL;
	if (!c)
		return;
	if (err)
		ctl_errorf(c, "pause failed: flush returned %s; the VBD keeps running",
			   strerror(-err));
	else
		ctl_reply(c, "ok\n");
}

/* Live snapshot, after the pause: the image driver makes it (its
 * snapshot capability), and the chain reopens on what it made. For a
 * file snapshot the new file came from root with the command, already in
 * the file table; the current image becomes its read-only backing file.
 * Crypt headers and integrity metadata live in the guest-visible address
 * space, so the overlay inherits them through the backing file. */
static void run_task(void *opaque)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->task_conn;

	s->task_conn = NULL;
	s->task_fn(s, c);
}

/* Runs fn(s, c) as the server's task: at the top of the loop. */
static void start_task(struct td_server *s, struct ctl_conn *c,
		       void (*fn)(struct td_server *s, struct ctl_conn *c))
{
	s->task_conn = c;
	s->task_fn = fn;
	td_task_init(&s->task, run_task, s);
	td_loop_task(s->loop, &s->task);
}

static void snapshot_task(struct td_server *s, struct ctl_conn *c)
{
	char e[1024];

	if (s->snap_pause_err) {
		ctl_errorf(c, "snapshot: pause failed (%s); nothing changed",
			   strerror(-s->snap_pause_err));
		return;
	}
	if (vbd_snapshot(s->vbd, s->snap_arg, !s->snap_was_paused, e, sizeof(e)) < 0) {
		ctl_errorf(c, "snapshot failed: %s", e);
		return;
	}
	ctl_reply(c, "ok\n");
}

static void snapshot_paused(void *opaque, int err)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->pause_conn;

	s->pause_conn = NULL;
	s->snap_pause_err = err;
	start_task(s, c, snapshot_task);
}

/* Online grow, after the pause: the chain grows from the top
 * (vbd_resize), then reopens at the new size; NBD clients connecting from
 * now on see it. */
static void resize_task(struct td_server *s, struct ctl_conn *c)
{
	char e[1024];

	if (s->snap_pause_err) {
		ctl_errorf(c, "resize: pause failed (%s); nothing changed",
			   strerror(-s->snap_pause_err));
		return;
	}
	if (vbd_resize(s->vbd, s->resize_to, !s->snap_was_paused, e, sizeof(e)) < 0) {
		char e2[512];

		ctl_errorf(c, "resize failed: %s", e);
		if (!s->snap_was_paused && vbd_paused(s->vbd) &&
		    vbd_unpause(s->vbd, NULL, e2, sizeof(e2)) < 0)
			td_err("resize: cannot reopen the image: %s", e2);
		return;
	}
	ctl_reply(c, "ok\n");
}

static void resize_paused(void *opaque, int err)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->pause_conn;

	s->pause_conn = NULL;
	s->snap_pause_err = err;
	start_task(s, c, resize_task);
}

static void unpause_task(struct td_server *s, struct ctl_conn *c)
{
	char err[1024];

	if (!vbd_paused(s->vbd))
		ctl_errorf(c, "not paused");
	else if (vbd_unpause(s->vbd, s->task_has_spec ? s->task_spec : NULL, err, sizeof(err)) < 0)
		ctl_errorf(c, "unpause failed: %s", err);
	else
		ctl_reply(c, "ok\n");
}

static void shutdown_done(void *opaque, int err)
{
	struct td_server *s = opaque;

	if (err) {
		td_err("shutdown: final flush failed: %s", strerror(-err));
		s->exit_code = 1;
	}
	if (s->destroy_conn) {
		if (err)
			ctl_errorf(s->destroy_conn, "final flush failed: %s", strerror(-err));
		else
			ctl_reply(s->destroy_conn, "ok\n");
		s->destroy_conn = NULL;
	}
	td_loop_stop(s->loop);
}

static void nbd_stopped(void *opaque)
{
	struct td_server *s = opaque;

	vbd_pause(s->vbd, shutdown_done, s);
}

static void server_shutdown(struct td_server *s);

static void shutdown_after_blkif(void *opaque)
{
	struct td_server *s = opaque;

	s->blkif = NULL;
	s->blkif_closing = false;
	s->shutting_down = false;
	server_shutdown(s);
}

static void server_shutdown(struct td_server *s)
{
	if (s->shutting_down)
		return;
	if (s->blkif) {
		/* the ring's requests are answered before the VBD pauses (those
		 * parked by a pause fail: they would never run now) */
		s->shutting_down = true;
		vbd_fail_waiting(s->vbd, -ESHUTDOWN);
		if (!s->blkif_closing) {
			s->blkif_closing = true;
			td_blkif_disconnect(s->blkif, shutdown_after_blkif, s);
		}
		return;
	}
	s->shutting_down = true;
	td_info("shutting down: draining and flushing %s", vbd_spec(s->vbd));
	if (s->ctl_watch) {
		td_loop_del_fd(s->loop, s->ctl_watch);
		s->ctl_watch = NULL;
	}
	/* requests parked by a pause will never run now */
	vbd_fail_waiting(s->vbd, -ESHUTDOWN);
	if (s->nbd)
		nbd_server_shutdown(s->nbd, nbd_stopped, s);
	else
		nbd_stopped(s);
}

/* Files root passed with a command: "COMMAND\tHOW:PATH\tHOW:PATH..." with
 * one descriptor per PATH, HOW the kind of request it serves (TD_FILE_RW |
 * TD_FILE_DIRECT, decimal). They join the file table (root's latest word wins)
 * and are the only way a new file reaches a tapdisk that dropped its
 * privileges. */
static int take_files(struct ctl_conn *c, char *line, char *err, size_t errlen)
{
	char *tab = strchr(line, '\t'), *path;
	int i = 0, rc = 0;

	if (tab)
		*tab = 0;
	for (path = tab ? tab + 1 : NULL; path; i++) {
		char *next = strchr(path, '\t');

		if (next)
			*next = 0;
		if (i >= c->nfds) {
			snprintf(err, errlen, "more paths than descriptors were passed");
			return -EINVAL;
		}
		path = next ? next + 1 : NULL;
	}
	if (i != c->nfds) {
		snprintf(err, errlen, "%d descriptors were passed for %d paths", c->nfds, i);
		return -EINVAL;
	}
	path = tab ? tab + 1 : NULL;
	for (i = 0; i < c->nfds && rc == 0; i++) {
		char *colon;
		unsigned long how = strtoul(path, &colon, 10);

		if (*colon != ':' || colon == path || how > (TD_FILE_RW | TD_FILE_DIRECT)) {
			snprintf(err, errlen, "malformed file entry '%.200s' (expected HOW:PATH)",
				 path);
			rc = -EINVAL;
			break;
		}
		rc = td_files_add(c->s->files, colon + 1, (unsigned)how, c->fds[i], err, errlen);
		c->fds[i] = -1; /* the table's now (or closed) */
		path += strlen(path) + 1;
	}
	for (; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
	return rc;
}

static void xen_disconnected(void *opaque)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->xen_disconnect_conn;

	s->blkif = NULL;
	s->blkif_closing = false;
	s->xen_disconnect_conn = NULL;
	if (c)
		ctl_reply(c, "ok\n");
}

/* next-key: a volume-key rotation's new key, from tap-ctl unpause
 * --next-key (docs/FORMAT.md, "Volume-key rotation"): 64 bytes in a pipe,
 * the one descriptor passed (not a file for the file table). */
static void ctl_next_key(struct ctl_conn *c)
{
	struct td_server *s = c->s;
	uint8_t *k = td_secure_alloc(TD_VOLKEY_LEN + 1);
	ssize_t n = -1;

	if (c->nfds == 1 && k)
		n = read(c->fds[0], k, TD_VOLKEY_LEN + 1);
	while (c->nfds)
		close(c->fds[--c->nfds]);
	if (n != TD_VOLKEY_LEN) {
		ctl_errorf(c, "next-key: expected one descriptor holding a 64-byte key");
	} else {
		td_volkey_free(&s->next_key);
		s->next_key = td_volkey_from_bytes(k, TD_VOLKEY_LEN);
		if (s->next_key)
			ctl_reply(c, "ok\n");
		else
			ctl_errorf(c, "next-key: out of secure memory");
	}
	if (k)
		td_secure_free(k);
}

static void ctl_command(struct ctl_conn *c, char *line)
{
	struct td_server *s = c->s;
	char err[1024];

	if (!strcmp(line, "next-key")) {
		ctl_next_key(c);
		return;
	}
	if (take_files(c, line, err, sizeof(err)) < 0) {
		ctl_errorf(c, "%s", err);
		return;
	}
	if (!strcmp(line, "info")) {
		do_info(c);
	} else if (!strcmp(line, "stats")) {
		do_stats(c);
	} else if (!strcmp(line, "qos") || !strncmp(line, "qos ", 4)) {
		char out[4096];

		if (line[3] && td_qos_ctl_set(s->qos, line + 4, err, sizeof(err)) < 0) {
			ctl_errorf(c, "%s", err);
			return;
		}
		if (!td_qos_ctl_present(s->qos)) {
			ctl_errorf(c, "this VBD has no qos layer (start it with one, e.g. "
				      "qos,iops=500:aio:/img)");
			return;
		}
		snprintf(out, sizeof(out), "ok\n");
		td_qos_ctl_report(s->qos, out + 3, sizeof(out) - 3);
		if (line[3])
			td_info("qos: %s", line + 4);
		ctl_reply(c, out);
	} else if (!strcmp(line, "pause")) {
		if (s->shutting_down) {
			ctl_errorf(c, "tapdisk is shutting down");
		} else if (s->pause_conn) {
			ctl_errorf(c, "a pause is already in progress");
		} else {
			s->pause_conn = c;
			c->busy = true;
			td_loop_del_fd(s->loop, c->w);
			c->w = NULL;
			vbd_pause(s->vbd, paused_cb, s);
		}
	} else if (!strcmp(line, "unpause") || !strncmp(line, "unpause ", 8)) {
		if (!vbd_paused(s->vbd)) {
			ctl_errorf(c, "not paused");
		} else if (s->task_conn || s->pause_conn) {
			ctl_errorf(c, "busy: a pause, unpause or snapshot is in progress");
		} else if (line[7] && strlen(line + 8) >= sizeof(s->task_spec)) {
			ctl_errorf(c, "spec too long");
		} else {
			s->task_has_spec = line[7] != 0;
			if (s->task_has_spec)
				snprintf(s->task_spec, sizeof(s->task_spec), "%s", line + 8);
			td_loop_del_fd(s->loop, c->w);
			c->w = NULL;
			start_task(s, c, unpause_task);
		}
	} else if (!strncmp(line, "snapshot ", 9)) {
		const struct td_driver *img = vbd_image_driver(s->vbd);
		const char *arg = line + 9;

		if (s->shutting_down || s->pause_conn || s->task_conn) {
			ctl_errorf(c, "busy: a pause, unpause or snapshot is in progress");
			return;
		}
		if (img->snapshot_kind == TD_SNAP_NONE || !img->snapshot) {
			ctl_errorf(c, "snapshot: the %s driver cannot take live snapshots",
				   img->name);
			return;
		}
		if (img->snapshot_arg_ok && !img->snapshot_arg_ok(arg)) {
			ctl_errorf(c, "snapshot: '%.300s' is not %s", arg,
				   img->snapshot_kind == TD_SNAP_FILE ? "an absolute path"
								      : "a valid snapshot name");
			return;
		}
		snprintf(s->snap_arg, sizeof(s->snap_arg), "%s", arg);
		s->snap_was_paused = vbd_paused(s->vbd);
		s->pause_conn = c;
		td_loop_del_fd(s->loop, c->w);
		c->w = NULL;
		vbd_pause(s->vbd, snapshot_paused, s);
	} else if (!strncmp(line, "resize ", 7)) {
		uint64_t size;

		if (s->shutting_down || s->pause_conn || s->task_conn) {
			ctl_errorf(c, "busy: a pause, unpause, snapshot or resize is in progress");
			return;
		}
		if (td_parse_size(line + 7, &size) < 0 || size == 0 || size % TD_BLOCK_SIZE) {
			ctl_errorf(c, "resize: '%.64s' is not a size in bytes, a multiple of %u",
				   line + 7, TD_BLOCK_SIZE);
			return;
		}
		if (vbd_readonly(s->vbd)) {
			ctl_errorf(c, "resize: the VBD is read-only");
			return;
		}
		if (size < vbd_size(s->vbd)) {
			ctl_errorf(
			    c, "resize: shrinking is not supported (%llu bytes now, %llu asked)",
			    (unsigned long long)vbd_size(s->vbd), (unsigned long long)size);
			return;
		}
		s->resize_to = size;
		s->snap_was_paused = vbd_paused(s->vbd);
		s->pause_conn = c;
		td_loop_del_fd(s->loop, c->w);
		c->w = NULL;
		vbd_pause(s->vbd, resize_paused, s);
	} else if (!strncmp(line, "xen-connect ", 12)) {
		struct td_blkif_params bp;

		if (!s->xen)
			ctl_errorf(c, "this tapdisk was not started for Xen (tapdisk serve --xen)");
		else if (s->blkif)
			ctl_errorf(c, "a ring is connected already (xen-disconnect first)");
		else if (s->shutting_down)
			ctl_errorf(c, "tapdisk is shutting down");
		else if (td_blkif_params_parse(line + 12, &bp, err, sizeof(err)) < 0)
			ctl_errorf(c, "xen-connect: %s", err);
		else if (!(s->blkif = td_blkif_connect(s->loop, s->vbd, s->xen_ops, s->xen, &bp,
						       err, sizeof(err))))
			ctl_errorf(c, "xen-connect: %s", err);
		else
			ctl_reply(c, "ok\n");
	} else if (!strcmp(line, "xen-disconnect")) {
		if (!s->blkif || s->blkif_closing) {
			ctl_errorf(c, "no ring is connected");
		} else {
			s->blkif_closing = true;
			s->xen_disconnect_conn = c;
			td_loop_del_fd(s->loop, c->w);
			c->w = NULL;
			td_blkif_disconnect(s->blkif, xen_disconnected, s);
		}
	} else if (!strcmp(line, "destroy")) {
		if (s->destroy_conn) {
			ctl_errorf(c, "already shutting down");
			return;
		}
		s->destroy_conn = c;
		td_loop_del_fd(s->loop, c->w);
		c->w = NULL;
		server_shutdown(s);
	} else {
		ctl_errorf(
		    c,
		    "unknown command '%.64s' (known: info, stats, qos [SETTINGS], pause, "
		    "unpause [SPEC], "
		    "snapshot FILE|NAME, resize SIZE, xen-connect DOMID REFS EVTCHN [PROTOCOL], "
		    "xen-disconnect, destroy)",
		    line);
	}
}

static void on_ctl_data(void *opaque, uint32_t events)
{
	struct ctl_conn *c = opaque;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
	} cm;
	struct iovec iov = {.iov_base = c->buf + c->len, .iov_len = sizeof(c->buf) - 1 - c->len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm)};
	struct cmsghdr *ch;
	ssize_t n;
	char *nl;

	n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	for (ch = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; ch; ch = CMSG_NXTHDR(&mh, ch)) {
		int *fds = (int *)CMSG_DATA(ch);
		size_t k, cnt;

		if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt; k++) {
			if (c->refused || c->nfds == CTL_MAX_FDS)
				close(fds[k]); /* never kept from anyone but root */
			else
				c->fds[c->nfds++] = fds[k];
		}
	}
	if (n <= 0) {
		ctl_conn_close(c);
		return;
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		ctl_errorf(c, "too many descriptors passed (at most %d)", CTL_MAX_FDS);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = 0;
	nl = strchr(c->buf, '\n');
	if (!nl) {
		if (c->len >= sizeof(c->buf) - 1)
			ctl_errorf(c, "command too long");
		return;
	}
	*nl = 0;
	if (c->refused) {
		ctl_errorf(c, "permission denied: only root (or whoever started this tapdisk) may "
			      "control it");
		return;
	}
	ctl_command(c, c->buf);
}

static void on_ctl_accept(void *opaque, uint32_t events)
{
	struct td_server *s = opaque;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct ctl_conn *c;
	int fd;

	fd = accept4(s->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	/* the command is read before the refusal is sent, so the peer gets
	 * the message rather than a reset */
	/* root, or whoever started this tapdisk; never the tapdisk's own uid
	 * once it dropped its privileges (code running as it must not steer it) */
	c->refused = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		     (cred.uid != 0 && cred.uid != s->admin_uid);
	c->s = s;
	c->fd = fd;
	c->w = td_loop_add_fd(s->loop, fd, EPOLLIN, on_ctl_data, c);
	if (!c->w) {
		close(fd);
		free(c);
	}
}

static void on_signal(void *opaque, uint32_t events)
{
	struct td_server *s = opaque;
	struct signalfd_siginfo si;

	if (read(s->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	td_info("signal %u received", si.ssi_signo);
	server_shutdown(s);
}

/* Is there a live server behind this socket path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return true; /* assume the worst */
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

/* Binds a listening Unix socket; a stale socket file left by a killed
 * process is replaced, a live one is an error. The directory is opened
 * once and every step works inside it (bind through /proc/self/fd, linkat,
 * unlinkat), so a directory swapped for a link meanwhile cannot send us
 * elsewhere. The socket is bound under a private name, put in the
 * listening state and only then linked to its public name, so a client
 * that sees the file can connect at once (no ECONNREFUSED window between
 * bind() and listen()); the umask makes it 0600 from birth: no chmod or
 * chown by path ever follows. link() fails with EEXIST rather than
 * replacing, which keeps two servers from claiming one path. */
static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[4096], priv[64], base[256], via[sizeof(sa.sun_path)];
	const char *slash = strrchr(path, '/');
	struct stat st;
	int fd = -1, dfd, rc, tries, n;
	mode_t old_umask;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long (limit %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	if (!dir[0])
		snprintf(dir, sizeof(dir), "/");
	snprintf(base, sizeof(base), "%s", slash ? slash + 1 : path);
	if (!base[0]) {
		snprintf(err, errlen, "socket path '%s' names a directory", path);
		return -EINVAL;
	}
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on '%s': %s", path, strerror(errno));
		return rc;
	}
	snprintf(priv, sizeof(priv), ".td%ld.sock", (long)getpid());
	n = snprintf(via, sizeof(via), "/proc/self/fd/%d/%s", dfd, priv);
	if (n < 0 || (size_t)n >= sizeof(via)) {
		snprintf(err, errlen, "socket path '%s' is too long", path);
		rc = -ENAMETOOLONG;
		goto out;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", via);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	unlinkat(dfd, priv, 0); /* ours, left by an earlier process with this pid */
	old_umask = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (rc < 0 || listen(fd, 128) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on '%s': %s", path, strerror(errno));
		unlinkat(dfd, priv, 0);
		goto out;
	}
	for (tries = 0; tries < 2; tries++) {
		if (linkat(dfd, priv, dfd, base, 0) == 0)
			break;
		rc = -errno;
		if (rc != -EEXIST || socket_alive(path)) {
			snprintf(err, errlen, "cannot listen on '%s': %s", path,
				 rc == -EEXIST ? "another server is listening there"
					       : strerror(-rc));
			unlinkat(dfd, priv, 0);
			rc = rc == -EEXIST ? -EADDRINUSE : rc;
			goto out;
		}
		if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen,
				 "cannot listen on '%s': it exists and is not a socket", path);
			unlinkat(dfd, priv, 0);
			rc = -EEXIST;
			goto out;
		}
		unlinkat(dfd, base, 0); /* stale, from a process that died */
	}
	unlinkat(dfd, priv, 0);
	if (tries == 2) {
		snprintf(err, errlen, "cannot listen on '%s': the path keeps reappearing", path);
		rc = -EADDRINUSE;
		goto out;
	}
	close(dfd);
	return fd;
out:
	if (fd >= 0)
		close(fd);
	close(dfd);
	return rc;
}

static int claim_minor(struct td_server *s, int want, char *err, size_t errlen)
{
	int m, fd;

	for (m = want < 0 ? 0 : want; m < TD_CTL_MAX_MINOR; m++) {
		td_ctl_path(m, s->ctl_path, sizeof(s->ctl_path));
		fd = listen_unix(s->ctl_path, err, errlen);
		if (fd >= 0) {
			s->minor = m;
			s->ctl_fd = fd;
			return 0;
		}
		if (fd != -EADDRINUSE || want >= 0)
			return fd;
	}
	snprintf(err, errlen, "no free minor number in %s", td_rundir());
	return -ENOSPC;
}

static void ready(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ready(int fd, const char *fmt, ...)
{
	char line[1200];
	va_list ap;

	if (fd < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (write(fd, line, strlen(line)) < 0) {
		/* tap-ctl gave up waiting; we carry on */
	}
	close(fd);
}

/* The chain's key source: the kernel keyring, for the image's UUID and
 * the identity of the file the chain opened (keymgr/keyring.h), once,
 * while we still can; then the copy kept in locked memory, for reopening
 * the same image (same UUID) after a pause or a snapshot. */
static int server_get_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			  const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	struct td_server *s = opaque;
	int rc;

	if (s->key) {
		char us[37];

		if (!memcmp(s->key_uuid, uuid, 16)) {
			*out = td_volkey_from_bytes(td_volkey_bytes(s->key), TD_VOLKEY_LEN);
			return *out ? 0 : -ENOMEM;
		}
		td_uuid_str(uuid, us);
		snprintf(err, errlen,
			 "image %s is not the image this tapdisk serves: it holds the key of one "
			 "image only (start another tapdisk for it)",
			 us);
		return -ENOKEY;
	}
	rc = td_keyring_fetch(uuid, id, where, out, err, errlen);
	if (rc < 0)
		return rc;
	s->key = td_volkey_from_bytes(td_volkey_bytes(*out), TD_VOLKEY_LEN);
	if (!s->key) {
		td_volkey_free(out);
		snprintf(err, errlen, "out of secure memory");
		return -ENOMEM;
	}
	memcpy(s->key_uuid, uuid, 16);
	return 0;
}

/* A volume-key rotation's new key (docs/FORMAT.md): from the keyring at
 * the first open (before the sandbox leaves the session keyring), then
 * the copy in locked memory. */
static int server_get_next_key(void *opaque, const uint8_t uuid[16],
			       const uint8_t id[TD_IMAGE_ID_LEN], const char *where,
			       struct td_volkey **out, char *err, size_t errlen)
{
	struct td_server *s = opaque;
	int rc;

	(void)where;
	if (s->key && memcmp(s->key_uuid, uuid, 16)) {
		snprintf(err, errlen, "not the image this tapdisk serves");
		return -ENOKEY;
	}
	if (!s->next_key) {
		rc = td_keyring_fetch_next(uuid, id, out, err, errlen);
		if (rc < 0)
			return rc;
		s->next_key = td_volkey_from_bytes(td_volkey_bytes(*out), TD_VOLKEY_LEN);
		if (!s->next_key) {
			td_volkey_free(out);
			snprintf(err, errlen, "out of secure memory");
			return -ENOMEM;
		}
		return 0;
	}
	*out = td_volkey_from_bytes(td_volkey_bytes(s->next_key), TD_VOLKEY_LEN);
	return *out ? 0 : -ENOMEM;
}

/* The rotation finished: reopening (unpause, snapshot) uses the new key;
 * the old one is wiped. */
static void server_key_rotated(void *opaque, const uint8_t uuid[16])
{
	struct td_server *s = opaque;

	if (!s->next_key || (s->key && memcmp(s->key_uuid, uuid, 16)))
		return;
	td_volkey_free(&s->key);
	s->key = s->next_key;
	s->next_key = NULL;
	memcpy(s->key_uuid, uuid, 16);
}

/* Whom the tapdisk becomes: --user, else (as root) a uid of its own,
 * else nobody new (an unprivileged user's tapdisk stays that user). */
static int choose_identity(struct td_server *s, const struct td_server_opts *o,
			   const struct td_hostconf *hc, uid_t *uid, gid_t *gid, bool *drop,
			   char *err, size_t errlen)
{
	*drop = false;
	if (o->user) {
		if (td_sandbox_lookup(o->user, uid, gid, err, errlen) < 0)
			return -ENOENT;
		*drop = true;
		return 0;
	}
	if (geteuid() != 0)
		return 0;
	if (td_uid_allocate(hc, uid, &s->uid_lock_fd, err, errlen) < 0)
		return -EAGAIN;
	*gid = (gid_t)*uid;
	*drop = true;
	return 0;
}

int td_server_main(const struct td_server_opts *o)
{
	const struct td_hostconf *hc;
	struct td_server s;
	char err[1024];
	sigset_t mask;
	bool net, drop;
	uid_t uid = 0;
	gid_t gid = 0;
	int rc;

	memset(&s, 0, sizeof(s));
	s.nbd_fd = s.ctl_fd = s.sig_fd = s.uid_lock_fd = -1;
	s.exit_code = 1;
	s.admin_uid = getuid();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	umask(077);
	tzset(); /* the time zone file is read now, not after the sandbox is in place */
	/* before any image or key: the helper that removes our sockets at the end */
	rc = td_reaper_start();
	if (rc < 0)
		td_warn("cannot start the socket clean-up helper (%s): the socket files will "
			"outlive this tapdisk",
			strerror(-rc));

	s.loop = td_loop_new();
	s.ctx.loop = s.loop;
	s.ctx.stats = &s.stats;
	s.ctx.readonly = o->readonly;
	s.ctx.get_key = server_get_key;
	s.ctx.get_next_key = server_get_next_key;
	s.ctx.key_rotated = server_key_rotated;
	s.ctx.rekey = true;
	s.ctx.key_opaque = &s;
	s.ctx.trust = &td_statedir_trust;
	if (!(hc = td_hostconf(err, sizeof(err))))
		goto fail;
	if (s.loop)
		td_loop_set_poll_ns(s.loop, hc->ring_poll_us * 1000u);
	if (!(s.qos = td_qos_ctl_new())) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	s.ctx.qos = s.qos;
	if (!s.loop || !(s.ctx.io = td_io_new(s.loop, 256)) ||
	    !(s.ctx.workers = td_workers_new(
		  s.loop, o->workers >= 0 ? o->workers : td_workers_default_count())) ||
	    !(s.files = td_files_new())) {
		snprintf(err, sizeof(err), "cannot set up the event loop, aio or worker threads");
		goto fail;
	}
	s.ctx.files = s.files;
	td_io_set_stats(s.ctx.io, &s.stats);
	rc = vbd_open(&s.ctx, o->spec, &s.vbd, err, sizeof(err));
	if (rc < 0)
		goto fail;
	net = vbd_image_driver(s.vbd)->needs_network;
	/* the host arbiter's table is opened now, while we may */
	if (td_qos_ctl_join(s.qos, hc->qos_dir, hc->qos_host_iops, hc->qos_host_bps, err,
			    sizeof(err)) < 0)
		td_warn("qos: cannot join the host arbiter in %s (%s): this VBD keeps its own "
			"limits only, its weight has no effect",
			hc->qos_dir, err);
	if (td_files_count(s.files) > 0) {
		/* the first file a chain opens is its top image */
		const char *p0;
		struct stat st;

		if (fstat(td_files_entry(s.files, 0, &p0, NULL), &st) == 0) {
			s.image_uid = st.st_uid;
			s.image_gid = st.st_gid;
		}
	}
	if (td_rundir_ensure(err, sizeof(err)) < 0)
		goto fail;
	if (claim_minor(&s, o->minor, err, sizeof(err)) < 0)
		goto fail;
	if (!o->socket || !strcmp(o->socket, "auto"))
		snprintf(s.nbd_path, sizeof(s.nbd_path), "%s/nbd.%d.sock", td_rundir(), s.minor);
	else
		snprintf(s.nbd_path, sizeof(s.nbd_path), "%s", o->socket);
	s.nbd_fd = listen_unix(s.nbd_path, err, sizeof(err));
	if (s.nbd_fd < 0)
		goto fail;
	td_reaper_add(s.ctl_path);
	td_reaper_add(s.nbd_path);
	s.nbd = nbd_server_new(s.loop, s.vbd, s.nbd_fd, o->export_name);
	s.ctl_watch = td_loop_add_fd(s.loop, s.ctl_fd, EPOLLIN, on_ctl_accept, &s);
	s.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (!s.nbd || !s.ctl_watch || s.sig_fd < 0 ||
	    !(s.sig_watch = td_loop_add_fd(s.loop, s.sig_fd, EPOLLIN, on_signal, &s))) {
		snprintf(err, sizeof(err), "cannot start the NBD server");
		goto fail;
	}
	if (o->xen && !(s.xen = td_xenio_open(&s.xen_ops, err, sizeof(err))))
		goto fail;
	if (choose_identity(&s, o, hc, &uid, &gid, &drop, err, sizeof(err)) < 0)
		goto fail;
	/* the key schedules are in libcrypto's locked heap already
	 * (td_secure_crypto_heap); lock the rest too where the limit allows */
	if (td_sandbox_lock_memory(err, sizeof(err)) < 0)
		td_warn("%s", err);
	/* from here on no file is opened by path: only what the table holds,
	 * and what root passes with a command */
	td_files_seal(s.files);
	td_reaper_seal();
	if (drop) {
		if (td_sandbox_drop(uid, gid, err, sizeof(err)) < 0)
			goto fail;
		s.dropped = true;
		td_info("running as uid %u%s%s", (unsigned)uid,
			o->user ? ", user " : " (a uid of its own)", o->user ? o->user : "");
	}
	if (!o->no_seccomp && td_sandbox_seccomp_profile((net ? TD_SANDBOX_NETWORK : 0) |
							     (o->xen ? TD_SANDBOX_XEN : 0),
							 err, sizeof(err)) < 0)
		goto fail;
	td_info("serving %s (%llu bytes) on %s, minor %d", vbd_spec(s.vbd),
		(unsigned long long)vbd_size(s.vbd), s.nbd_path, s.minor);
	ready(o->ready_fd, "ok minor=%d socket=%s pid=%d\n", s.minor, s.nbd_path, (int)getpid());
	td_notify_ready("serving %s on %s, minor %d", vbd_spec(s.vbd), s.nbd_path, s.minor);
	s.exit_code = 0;
	rc = td_loop_run(s.loop);
	if (rc < 0) {
		td_err("event loop: %s", strerror(-rc));
		s.exit_code = 1;
	}
	goto out;
fail:
	td_err("%s", err);
	ready(o->ready_fd, "error: %s\n", err);
out:
	if (s.nbd)
		nbd_server_free(s.nbd);
	if (s.nbd_fd >= 0)
		close(s.nbd_fd);
	if (s.ctl_fd >= 0)
		close(s.ctl_fd);
	/* a tapdisk that became a uid of its own cannot remove its sockets from a
	 * directory of root's: the helper does (tapdisk/daemon/reaper.h) */
	if (td_reaper_active()) {
		td_reaper_finish();
	} else {
		if (s.nbd_fd >= 0)
			unlink(s.nbd_path);
		if (s.ctl_fd >= 0)
			unlink(s.ctl_path);
	}
	if (s.sig_watch)
		td_loop_del_fd(s.loop, s.sig_watch);
	if (s.sig_fd >= 0)
		close(s.sig_fd);
	vbd_close(s.vbd);
	td_qos_ctl_free(s.qos);
	td_xenio_close(s.xen);
	td_volkey_free(&s.key);
	td_volkey_free(&s.next_key);
	td_files_free(s.files);
	td_workers_free(s.ctx.workers);
	td_io_free(s.ctx.io);
	td_loop_free(s.loop);
	td_buf_trim();
	if (s.uid_lock_fd >= 0)
		close(s.uid_lock_fd); /* the uid is free again */
	return s.exit_code;
}
