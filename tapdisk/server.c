/* The tapdisk process: opens the VBD, listens for NBD clients and for
 * tap-ctl, and shuts down cleanly (drain, flush, release) on SIGTERM or
 * "destroy". */
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
#include <unistd.h>

#include "tapdisk/bufpool.h"
#include "tapdisk/ctl.h"
#include "tapdisk/drv_rbd.h"
#include "tapdisk/io.h"
#include "tapdisk/log.h"
#include "tapdisk/nbd.h"
#include "tapdisk/qcow2.h"
#include "tapdisk/sandbox.h"
#include "keymgr/keyring.h"
#include "tapdisk/spec.h"
#include "tapdisk/server.h"
#include "tapdisk/stats.h"
#include "tapdisk/vbd.h"

struct ctl_conn;

struct td_server {
	struct td_loop *loop;
	struct td_ctx ctx;
	struct td_stats_shared stats;
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
	char snap_path[4096]; /* the overlay a pending snapshot creates */
	bool snap_was_paused;
};

struct ctl_conn {
	struct td_server *s;
	int fd;
	struct td_watch *w;
	char buf[4096];
	size_t len;
	bool busy;
	bool refused; /* not root, not our owner: answered with an error */
};

static void ctl_conn_close(struct ctl_conn *c)
{
	if (c->w)
		td_loop_del_fd(c->s->loop, c->w);
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

static void do_info(struct ctl_conn *c)
{
	struct td_server *s = c->s;
	char out[8192];

	snprintf(out, sizeof(out),
		 "ok\npid=%d\nminor=%d\nstate=%s\nspec=%s\nsocket=%s\nuri=nbd+unix:///?socket=%s\n"
		 "path=%s\nsize=%llu\nuid=%u\nreadonly=%d\nconnections=%u\ndumpable=%d\n",
		 (int)getpid(), s->minor, state_name(s), vbd_spec(s->vbd), s->nbd_path,
		 s->nbd_path, vbd_path(s->vbd) ? vbd_path(s->vbd) : "", (unsigned long long)vbd_size(s->vbd),
		 (unsigned)getuid(), vbd_readonly(s->vbd) ? 1 : 0,
		 s->nbd ? nbd_server_connections(s->nbd) : 0, prctl(PR_GET_DUMPABLE));
	ctl_reply(c, out);
}

static void do_stats(struct ctl_conn *c)
{
	struct vbd_stats st;
	char out[4096];

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
		 (unsigned long long)st.lower_bytes_read, (unsigned long long)st.lower_bytes_written,
		 (unsigned long long)st.lower_flushes, st.lat_mean_us, st.lat_p50_us,
		 st.lat_p99_us);
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

/* The qcow2 virtual size of the image at path (big-endian u64 at 24). */
static int qcow2_virtual_size(const char *path, uint64_t *size)
{
	uint8_t h[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC), i;

	if (fd < 0)
		return -errno;
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "QFI\xfb", 4) != 0) {
		close(fd);
		return -EINVAL;
	}
	close(fd);
	*size = 0;
	for (i = 24; i < 32; i++)
		*size = (*size << 8) | h[i];
	return 0;
}

/* Live snapshot, after the pause: the current qcow2 image becomes the
 * read-only backing file of a new overlay, and the chain reopens on the
 * overlay. Crypt headers and integrity metadata live in the guest-visible
 * address space, so the overlay inherits them through the backing file. */
static void snapshot_paused(void *opaque, int err)
{
	struct td_server *s = opaque;
	struct ctl_conn *c = s->pause_conn;
	char e[1024], spec[TD_SPEC_MAX_LEN + 64], old[4096], *rp;
	struct td_spec sp;
	uint64_t vsize = 0;
	int rc;

	s->pause_conn = NULL;
	if (err) {
		ctl_errorf(c, "snapshot: pause failed (%s); nothing changed", strerror(-err));
		return;
	}
	rc = td_spec_parse(vbd_spec(s->vbd), &sp, e, sizeof(e));
	if (rc < 0)
		goto undo;
	rp = realpath(sp.path, NULL);
	snprintf(old, sizeof(old), "%s", rp ? rp : sp.path);
	free(rp);
	rc = -EINVAL;
	if (!strcmp(sp.layers[sp.nlayers - 1].drv->name, "rbd")) {
		/* an RBD snapshot of the image: the chain reopens unchanged */
		rc = td_rbd_snapshot(sp.path, sp.layers[sp.nlayers - 1].opts, s->snap_path, e,
				     sizeof(e));
		if (rc == 0 && !s->snap_was_paused)
			rc = vbd_unpause(s->vbd, NULL, e, sizeof(e));
		td_spec_free(&sp);
		if (rc == 0) {
			ctl_reply(c, "ok\n");
			return;
		}
		goto undo;
	} else if (strcmp(sp.layers[sp.nlayers - 1].drv->name, "qcow2") != 0) {
		snprintf(e, sizeof(e), "snapshot needs a qcow2 image (this VBD is %s)",
			 sp.layers[sp.nlayers - 1].drv->name);
	} else if ((rc = qcow2_virtual_size(old, &vsize)) < 0) {
		snprintf(e, sizeof(e), "cannot read the qcow2 size of %.900s", old);
	} else if ((rc = td_qcow2_create_overlay(s->snap_path, old, vsize, e, sizeof(e))) == 0) {
		free(sp.path);
		sp.path = strdup(s->snap_path);
		rc = sp.path ? td_spec_format(&sp, spec, sizeof(spec)) : -ENOMEM;
		if (rc == 0 && (rc = vbd_unpause(s->vbd, spec, e, sizeof(e))) < 0)
			unlink(s->snap_path);
	}
	td_spec_free(&sp);
	if (rc == 0) {
		td_info("snapshot: %s is now the read-only backing file of %s", old, s->snap_path);
		ctl_reply(c, "ok\n");
		return;
	}
undo:
	/* back to the image we had, so the guest keeps running */
	if (!s->snap_was_paused) {
		char e2[512];

		if (vbd_unpause(s->vbd, NULL, e2, sizeof(e2)) < 0)
			td_err("snapshot: cannot reopen the original image either: %s", e2);
	}
	ctl_errorf(c, "snapshot failed: %s", e);
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

static void server_shutdown(struct td_server *s)
{
	if (s->shutting_down)
		return;
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

static void ctl_command(struct ctl_conn *c, char *line)
{
	struct td_server *s = c->s;
	char err[1024];

	if (!strcmp(line, "info")) {
		do_info(c);
	} else if (!strcmp(line, "stats")) {
		do_stats(c);
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
		const char *spec = line[7] ? line + 8 : NULL;

		if (!vbd_paused(s->vbd)) {
			ctl_errorf(c, "not paused");
		} else if (vbd_unpause(s->vbd, spec, err, sizeof(err)) < 0) {
			ctl_errorf(c, "unpause failed: %s", err);
		} else {
			ctl_reply(c, "ok\n");
		}
	} else if (!strncmp(line, "snapshot ", 9)) {
		if (s->shutting_down || s->pause_conn) {
			ctl_errorf(c, "busy: a pause or snapshot is in progress");
			return;
		}
		if (td_rbd_spec_is_rbd(vbd_spec(s->vbd))) {
			if (!td_rbd_snap_name_ok(line + 9)) {
				ctl_errorf(c, "snapshot: bad RBD snapshot name '%.200s'", line + 9);
				return;
			}
		} else if (line[9] != '/') {
			ctl_errorf(c, "snapshot: the new file must be an absolute path");
			return;
		} else if (access(line + 9, F_OK) == 0) {
			ctl_errorf(c, "snapshot: %s already exists", line + 9);
			return;
		}
		snprintf(s->snap_path, sizeof(s->snap_path), "%s", line + 9);
		s->snap_was_paused = vbd_paused(s->vbd);
		s->pause_conn = c;
		td_loop_del_fd(s->loop, c->w);
		c->w = NULL;
		vbd_pause(s->vbd, snapshot_paused, s);
	} else if (!strcmp(line, "selftest-syscalls") && getenv("TD_TEST_HOOKS") &&
		   !strcmp(getenv("TD_TEST_HOOKS"), "1")) {
		/* test hook: what does the sandbox let this process do? */
		char out[512];
		int fd = socket(AF_INET, SOCK_STREAM, 0), e1 = fd < 0 ? errno : 0;
		int f2 = open("/etc/passwd", O_RDONLY), e2 = f2 < 0 ? errno : 0;
		pid_t pid = fork();
		int e3 = pid < 0 ? errno : 0;

		if (fd >= 0)
			close(fd);
		if (f2 >= 0)
			close(f2);
		if (pid == 0)
			_exit(0);
		snprintf(out, sizeof(out), "ok\nsocket_inet=%s\nopen_etc_passwd=%s\nfork=%s\nuid=%u\n",
			 e1 ? strerror(e1) : "allowed", e2 ? strerror(e2) : "allowed",
			 e3 ? strerror(e3) : "allowed", (unsigned)getuid());
		ctl_reply(c, out);
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
		ctl_errorf(c, "unknown command '%.64s' (known: info, stats, pause, unpause [SPEC], "
			      "snapshot FILE|RBDSNAP, destroy)", line);
	}
}

static void on_ctl_data(void *opaque, uint32_t events)
{
	struct ctl_conn *c = opaque;
	ssize_t n;
	char *nl;

	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ctl_conn_close(c);
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
		ctl_errorf(c, "permission denied: only root or the tapdisk's owner may control it");
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
	c->refused = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		     (cred.uid != 0 && cred.uid != getuid());
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
 * process is replaced, a live one is an error.  The socket is bound under a
 * private name, made 0600 and put in the listening state before it is linked
 * to its public name, so a client that sees the file can connect at once (no
 * ECONNREFUSED window between bind() and listen()) and never finds it open
 * to other users.  link() fails with EEXIST rather than replacing, which keeps
 * two servers from claiming one path. */
static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	const char *slash = strrchr(path, '/');
	struct stat st;
	int fd, rc, tries, n;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long (limit %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	/* private name in the same directory (link() cannot cross filesystems) */
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path + 1) : 0, path);
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.td%ld", dir, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket directory of '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	unlink(sa.sun_path); /* ours, left by an earlier process with this pid */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0600) < 0 ||
	    listen(fd, 128) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on '%s': %s", path, strerror(errno));
		unlink(sa.sun_path);
		close(fd);
		return rc;
	}
	for (tries = 0; tries < 2; tries++) {
		if (link(sa.sun_path, path) == 0)
			break;
		rc = -errno;
		if (rc != -EEXIST || socket_alive(path)) {
			snprintf(err, errlen, "cannot listen on '%s': %s", path,
				 rc == -EEXIST ? "another server is listening there"
					       : strerror(-rc));
			unlink(sa.sun_path);
			close(fd);
			return rc == -EEXIST ? -EADDRINUSE : rc;
		}
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "cannot listen on '%s': it exists and is not a socket",
				 path);
			unlink(sa.sun_path);
			close(fd);
			return -EEXIST;
		}
		unlink(path); /* stale, from a process that died */
	}
	unlink(sa.sun_path);
	if (tries == 2) {
		snprintf(err, errlen, "cannot listen on '%s': the path keeps reappearing", path);
		close(fd);
		return -EADDRINUSE;
	}
	return fd;
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

int td_server_main(const struct td_server_opts *o)
{
	struct td_server s;
	char err[1024];
	sigset_t mask;
	bool rbd;
	int rc;

	memset(&s, 0, sizeof(s));
	s.nbd_fd = s.ctl_fd = s.sig_fd = -1;
	s.exit_code = 1;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	umask(077);
	/* before the key is read: key schedules never reach swap */
	if (td_sandbox_lock_memory(err, sizeof(err)) < 0)
		td_warn("%s", err);

	s.loop = td_loop_new();
	s.ctx.loop = s.loop;
	s.ctx.stats = &s.stats;
	s.ctx.readonly = o->readonly;
	if (!s.loop || !(s.ctx.io = td_io_new(s.loop, 256)) ||
	    !(s.ctx.workers = td_workers_new(s.loop, td_workers_default_count()))) {
		snprintf(err, sizeof(err), "cannot set up the event loop, aio or worker threads");
		goto fail;
	}
	rc = vbd_open(&s.ctx, o->spec, &s.vbd, err, sizeof(err));
	if (rc < 0)
		goto fail;
	rbd = td_rbd_spec_is_rbd(vbd_spec(s.vbd)); /* a cluster, no local image file */
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
	s.nbd = nbd_server_new(s.loop, s.vbd, s.nbd_fd, o->export_name);
	s.ctl_watch = td_loop_add_fd(s.loop, s.ctl_fd, EPOLLIN, on_ctl_accept, &s);
	s.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (!s.nbd || !s.ctl_watch || s.sig_fd < 0 ||
	    !(s.sig_watch = td_loop_add_fd(s.loop, s.sig_fd, EPOLLIN, on_signal, &s))) {
		snprintf(err, sizeof(err), "cannot start the NBD server");
		goto fail;
	}
	if (o->user) {
		/* the image stays open; its owner changes so that a reopen after
		 * pause/unpause or snapshot works as the new user */
		uid_t uid;
		gid_t gid;

		if (td_sandbox_lookup(o->user, &uid, &gid, err, sizeof(err)) < 0)
			goto fail;
		if ((vbd_path(s.vbd) && !rbd && chown(vbd_path(s.vbd), uid, gid) < 0) ||
		    chown(s.ctl_path, uid, gid) < 0 || chown(s.nbd_path, uid, gid) < 0) {
			snprintf(err, sizeof(err), "cannot hand the image and sockets to %s: %s",
				 o->user, strerror(errno));
			goto fail;
		}
		if (td_sandbox_drop(uid, gid, err, sizeof(err)) < 0)
			goto fail;
		td_info("running as %s (uid %u)", o->user, (unsigned)uid);
	}
	if (!o->no_seccomp &&
	    (rbd ? td_sandbox_seccomp_cluster(err, sizeof(err)) : td_sandbox_seccomp(err, sizeof(err))) < 0)
		goto fail;
	td_info("serving %s (%llu bytes) on %s, minor %d", vbd_spec(s.vbd),
		(unsigned long long)vbd_size(s.vbd), s.nbd_path, s.minor);
	ready(o->ready_fd, "ok minor=%d socket=%s pid=%d\n", s.minor, s.nbd_path, (int)getpid());
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
	if (s.nbd_fd >= 0) {
		close(s.nbd_fd);
		unlink(s.nbd_path);
	}
	if (s.ctl_fd >= 0) {
		close(s.ctl_fd);
		unlink(s.ctl_path);
	}
	if (s.sig_watch)
		td_loop_del_fd(s.loop, s.sig_watch);
	if (s.sig_fd >= 0)
		close(s.sig_fd);
	vbd_close(s.vbd);
	td_keyring_forget();
	td_workers_free(s.ctx.workers);
	td_io_free(s.ctx.io);
	td_loop_free(s.loop);
	td_buf_trim();
	return s.exit_code;
}
