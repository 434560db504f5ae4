/* tap-ctl: start, list, pause, unpause, inspect and stop tapdisks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tapdisk/block/chain.h"
#include "tapdisk/control/ctl.h"
#include "tapdisk/block/driver.h"
#include "tapdisk/registry/registry.h"
#include "tapdisk/block/files.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/block/spec.h"
#include "tapdisk/block/hostconf.h"
#include "tapdisk/qos/arbiter.h"
#include "tapdisk/qos/limits.h"
#include "crypt/backend/volkey.h"
#include "keymgr/keyring.h"
#include "keymgr/volume.h"

static const char *prog = "tap-ctl";

#if defined(TD_BINDIR) && defined(TD_PKGLIBEXECDIR)
#define TD_TAPDISK_INSTALLED "\nthe installed one (" TD_PKGLIBEXECDIR "/tapdisk), else "
#else
#define TD_TAPDISK_INSTALLED " "
#endif /* the directories come from the Makefile (make install) */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: tap-ctl COMMAND [OPTIONS]\n"
	    "\n"
	    "Commands:\n"
	    "  create -a SPEC [-s SOCKET] [-r]    start a tapdisk serving SPEC over NBD; prints\n"
	    "                                     its URI: nbd+unix:///?socket=PATH\n"
	    "  list [--json]                      running tapdisks: pid, minor, state, spec, URI\n"
	    "  destroy SELECTOR                   drain, flush, close and stop a tapdisk\n"
	    "  pause SELECTOR                     drain in-flight I/O, make it durable, release\n"
	    "                                     the image (requests wait until unpause)\n"
	    "  unpause SELECTOR [-a NEWSPEC] [--next-key]\n"
	    "                                     reopen the image (or NEWSPEC) and resume;\n"
	    "                                     --next-key: first hand the tapdisk the new\n"
	    "                                     key of a volume-key rotation started while\n"
	    "                                     paused (vdkey reencrypt), from the keyring\n"
	    "  stats SELECTOR [--json]            request, byte, error and latency counters\n"
	    "  qos SELECTOR [--iops N] [--bps B] [--weight W] [...]\n"
	    "                                     show or change a VBD's QoS limits live\n"
	    "                                     (0 = no limit; see tap-ctl qos --help)\n"
	    "  snapshot SELECTOR NEWFILE          live snapshot of a qcow2 VBD: NEWFILE becomes\n"
	    "                                     a qcow2 overlay over the current image, which\n"
	    "                                     is then never written again\n"
	    "  snapshot SELECTOR SNAPNAME         live snapshot of an rbd VBD: RBD snapshot\n"
	    "                                     POOL/IMAGE@SNAPNAME\n"
	    "  resize SELECTOR SIZE               grow a VBD's disk online to SIZE bytes\n"
	    "                                     (K, M, G, T suffixes); new connections see it\n"
	    "  xen-connect SELECTOR DOMID RING-REFS EVTCHN [PROTOCOL [persistent]]\n"
	    "                                     serve a Xen guest's blkif ring (a tapdisk\n"
	    "                                     created with --xen; tapback does this)\n"
	    "  xen-disconnect SELECTOR            answer what is in flight, let the ring go\n"
	    "\n"
	    "SELECTOR is -p PID -m MINOR (either or both), or -s SOCKET (the NBD socket).\n"
	    "SPEC is [tap:]DRIVER[:DRIVER...]:PATH, e.g. aio:/srv/vm.img or\n"
	    "crypt:qcow2:/srv/vm.qcow2.\n"
	    "\n"
	    "Environment: TAPDISK_RUNDIR (default /run/tapdisk) holds control sockets,\n"
	    "default NBD sockets and tapdisk.log. The tapdisk program is $TAPDISK_BIN, else\n"
	    "the one beside tap-ctl, else" TD_TAPDISK_INSTALLED "the one on PATH.\n"
	    "'tap-ctl COMMAND --help' describes one command.\n");
}

static void cmd_usage(const char *cmd)
{
	if (!strcmp(cmd, "create"))
		printf("Usage: tap-ctl create -a SPEC [-s SOCKET] [-r|--readonly] [-t SECONDS] [-u "
		       "USER]\n"
		       "                     [--xen] [--ceph-conf PATH] [--ceph-id NAME]\n\n"
		       "Starts one isolated tapdisk process serving SPEC and prints exactly one\n"
		       "line, its NBD URI. -s sets the socket path (default\n"
		       "$TAPDISK_RUNDIR/nbd.<minor>.sock); -t how long to wait for it (30 s).\n"
		       "Fails with the tapdisk's reason (missing image, no key loaded, image\n"
		       "locked by another tapdisk, ...).\n"
		       "Run as root, the tapdisk becomes a uid of its own (from the host's VBD\n"
		       "range, scripts/setup-user.sh) once the image is open and the key read;\n"
		       "-u/--user runs it as USER instead. Nothing is chowned either way: the\n"
		       "image and the sockets stay whose they are (the sockets are root's, 0600).\n"
		       "A loaded key opens only the file it was loaded for ('vdkey load').\n"
		       "--xen: it can also serve a Xen guest's blkif ring (tap-ctl xen-connect).\n"
		       "--ceph-conf/--ceph-id: the Ceph cluster of an rbd: SPEC (default\n"
		       "$CEPH_CONF / $CEPH_ID, then /etc/ceph/ceph.conf and client.admin).\n");
	else if (!strcmp(cmd, "list"))
		printf("Usage: tap-ctl list [--json]\n\nLists running tapdisks. Stale control "
		       "sockets left by killed tapdisks are removed.\n");
	else if (!strcmp(cmd, "stats"))
		printf(
		    "Usage: tap-ctl stats (-p PID | -m MINOR | -s SOCKET) [--json]\n\n"
		    "Counters: reads, writes, flushes, discards, write_zeroes, bytes, errors,\n"
		    "in-flight, integrity failures, lower-image traffic, latency mean/p50/p99.\n");
	else if (!strcmp(cmd, "qos"))
		printf(
		    "Usage: tap-ctl qos (-p PID | -m MINOR | -s SOCKET) [SETTINGS] [--json]\n\n"
		    "Shows the QoS limits and counters of a VBD whose spec has a qos layer\n"
		    "(e.g. qos,iops=500,bps=10M:aio:/img) and, with settings, changes them at\n"
		    "once; the others keep their values. 0 removes a limit. Changes last until\n"
		    "the tapdisk exits (a pause keeps them; unpause -a with other qos options\n"
		    "replaces them).\n\n"
		    "Settings:\n"
		    "  --iops N, --read-iops N, --write-iops N\n"
		    "                     requests per second: all, reads, writes\n"
		    "  --bps B, --read-bps B, --write-bps B\n"
		    "                     bytes per second (K, M, G, T suffixes: powers of 1024)\n"
		    "  --iops-burst N, --read-iops-burst N, --write-iops-burst N\n"
		    "                     requests that may go at full speed after an idle spell\n"
		    "                     (0: a tenth of a second's worth of the limit)\n"
		    "  --bps-burst B, --read-bps-burst B, --write-bps-burst B\n"
		    "                     the same in bytes\n"
		    "  --weight W         1..10000 (default 100): this VBD's share of the host's\n"
		    "                     capacity when VBDs contend for it (qos-host-iops and\n"
		    "                     qos-host-bps in /etc/tdcrypt/tapdisk.conf); root only\n"
		    "Writes are WRITE, WRITE_ZEROES and DISCARD requests (the last two count as\n"
		    "requests, not bytes); a FLUSH is never held.\n");
	else if (!strcmp(cmd, "xen-connect"))
		printf(
		    "Usage: tap-ctl xen-connect (-p PID | -m MINOR | -s SOCKET) DOMID RING-REFS "
		    "EVTCHN [PROTOCOL [persistent]]\n\n"
		    "Hands a Xen guest's block ring to a tapdisk started with --xen (tap-ctl\n"
		    "create --xen): RING-REFS are the grant references of its ring pages, comma\n"
		    "separated (1, 2, 4, 8 or 16 of them), EVTCHN its event channel, PROTOCOL\n"
		    "x86_64-abi (the default) or x86_32-abi. 'persistent': both ends agreed on\n"
		    "feature-persistent, the tapdisk keeps the data pages it maps. tapback\n"
		    "reads them from xenstore and calls this; it is here for tests and "
		    "debugging.\n");
	else if (!strcmp(cmd, "xen-disconnect"))
		printf(
		    "Usage: tap-ctl xen-disconnect (-p PID | -m MINOR | -s SOCKET)\n\n"
		    "Stops taking requests from the ring, answers those in flight, unmaps it.\n");
	else if (!strcmp(cmd, "unpause"))
		printf("Usage: tap-ctl unpause (-p PID | -m MINOR | -s SOCKET) [-a NEWSPEC] "
		       "[--next-key]\n\n"
		       "Reopens the image and resumes the requests that waited. The tapdisk\n"
		       "reopens what it opened before it dropped its privileges. With NEWSPEC,\n"
		       "tap-ctl opens NEWSPEC's files (as the caller, root) and passes them to\n"
		       "the tapdisk; NEWSPEC must stack the same drivers and open the same\n"
		       "image (same size and, under crypt:, the same UUID), else it is refused\n"
		       "and the VBD stays paused.\n"
		       "With --next-key, tap-ctl first reads the new key of a volume-key\n"
		       "rotation started on the paused image ('vdkey reencrypt') from the\n"
		       "caller's keyring and passes it to the tapdisk through a pipe (it cannot\n"
		       "read the keyring any more); the reopened VBD then moves every block to\n"
		       "the new key while it serves.\n");
	else if (!strcmp(cmd, "snapshot"))
		printf(
		    "Usage: tap-ctl snapshot (-p PID | -m MINOR | -s SOCKET) NEWFILE|SNAPNAME\n\n"
		    "Pauses the VBD (drain, flush), creates NEWFILE as a qcow2 overlay whose\n"
		    "backing file is the current image, reopens the chain on it and resumes.\n"
		    "Clients see no error. Under crypt:, the overlay is covered by the same\n"
		    "key and integrity metadata (they live in the image's address space);\n"
		    "a later tapdisk on NEWFILE needs 'vdkey load' for NEWFILE (a loaded key\n"
		    "opens only its own file). tap-ctl creates NEWFILE (it must not exist),\n"
		    "gives it the image owner's ownership and passes it to the tapdisk.\n"
		    "On an rbd: VBD the argument is a snapshot name: pause, flush, RBD\n"
		    "snapshot POOL/IMAGE@SNAPNAME, resume. It opens read-only as\n"
		    "crypt:rbd:POOL/IMAGE@SNAPNAME with the same key.\n");
	else if (!strcmp(cmd, "resize"))
		printf(
		    "Usage: tap-ctl resize (-p PID | -m MINOR | -s SOCKET) SIZE\n\n"
		    "Grows the VBD's disk to SIZE bytes (a multiple of 4096; K, M, G, T\n"
		    "suffixes, powers of 1024) while it serves: pause (drain, flush), grow the\n"
		    "chain from the bottom up (the image file or qcow2 virtual size, then the\n"
		    "integrity metadata, then the crypt header, which commits the new size),\n"
		    "resume. The new range reads as zeros. NBD clients that connect afterwards\n"
		    "see the new size; connections already open keep the old one until they\n"
		    "reconnect. A crash during the grow leaves the old or the new size. Shrinking\n"
		    "is refused, and so is a chain with a layer that cannot grow (the error names\n"
		    "it: e.g. vhd, vmdk, rbd). SIZE equal to the current size does nothing.\n");
	else
		printf("Usage: tap-ctl %s (-p PID | -m MINOR | -s SOCKET)\n", cmd);
}

struct td_entry {
	char ctl[PATH_MAX];
	struct td_kv kv;
};

/* Queries every control socket in the run directory. */
static int scan(struct td_entry **out, int *count)
{
	const char *dir = td_rundir();
	struct td_entry *v = NULL;
	struct dirent *de;
	int n = 0;
	DIR *d;

	*out = NULL;
	*count = 0;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX], err[512];
		struct td_kv kv = {0};
		int minor, rc;
		char tail;

		if (sscanf(de->d_name, "tapdisk.%d.ct%c", &minor, &tail) != 2 || tail != 'l')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = td_ctl_call(path, "info", &kv, 5000, err, sizeof(err));
		if (rc == -ECONNREFUSED || rc == -ENOENT) {
			unlink(path); /* left by a tapdisk that was killed */
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			continue;
		}
		v = realloc(v, sizeof(*v) * (size_t)(n + 1));
		if (!v) {
			closedir(d);
			return -ENOMEM;
		}
		snprintf(v[n].ctl, sizeof(v[n].ctl), "%s", path);
		v[n].kv = kv;
		n++;
	}
	closedir(d);
	*out = v;
	*count = n;
	return 0;
}

static void scan_free(struct td_entry *v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		td_kv_free(&v[i].kv);
	free(v);
}

static const char *kvs(const struct td_kv *kv, const char *k)
{
	const char *v = td_kv_get(kv, k);

	return v ? v : "";
}

struct selector {
	int pid, minor;
	const char *socket;
};

static bool sel_empty(const struct selector *s)
{
	return s->pid < 0 && s->minor < 0 && !s->socket;
}

static bool sel_match(const struct selector *s, const struct td_kv *kv)
{
	if (s->pid >= 0 && atoi(kvs(kv, "pid")) != s->pid)
		return false;
	if (s->minor >= 0 && atoi(kvs(kv, "minor")) != s->minor)
		return false;
	if (s->socket) {
		char a[PATH_MAX], b[PATH_MAX];
		const char *x = realpath(s->socket, a) ? a : s->socket;
		const char *y = realpath(kvs(kv, "socket"), b) ? b : kvs(kv, "socket");

		if (strcmp(x, y) != 0)
			return false;
	}
	return true;
}

/* Finds the one tapdisk the selector names; prints why not otherwise. */
static int find_one(const struct selector *sel, char *ctl, size_t len, struct td_kv *kv_out)
{
	struct td_entry *v;
	int n, i, found = -1, rc;

	if (sel_empty(sel)) {
		fprintf(stderr, "%s: name a tapdisk with -p PID, -m MINOR or -s SOCKET\n", prog);
		return -EINVAL;
	}
	rc = scan(&v, &n);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, td_rundir(), strerror(-rc));
		return rc;
	}
	for (i = 0; i < n; i++) {
		if (!sel_match(sel, &v[i].kv))
			continue;
		if (found >= 0) {
			fprintf(stderr, "%s: the selector matches more than one tapdisk\n", prog);
			scan_free(v, n);
			return -EINVAL;
		}
		found = i;
	}
	if (found < 0) {
		fprintf(stderr, "%s: no running tapdisk matches (see tap-ctl list)\n", prog);
		scan_free(v, n);
		return -ENOENT;
	}
	snprintf(ctl, len, "%s", v[found].ctl);
	if (kv_out) {
		*kv_out = v[found].kv;
		memset(&v[found].kv, 0, sizeof(v[found].kv));
	}
	scan_free(v, n);
	return 0;
}

/* The qos_* keys of a reply as a JSON object (null without a qos layer). */
static void qos_json(const struct td_kv *kv, char *out, size_t len)
{
	size_t n = 0;
	int i;

	if (atoi(kvs(kv, "qos")) != 1) {
		snprintf(out, len, "null");
		return;
	}
	n = (size_t)snprintf(out, len, "{");
	for (i = 0; i < kv->n && n < len; i++) {
		if (strncmp(kv->key[i], "qos_", 4) != 0)
			continue;
		n += (size_t)snprintf(out + n, len - n, "%s\"%s\": %s", n > 1 ? ", " : "",
				      kv->key[i] + 4, kv->val[i]);
	}
	if (n < len)
		snprintf(out + n, len - n, "}");
}

static int cmd_list(bool json)
{
	struct td_entry *v;
	int n, i, rc;

	rc = scan(&v, &n);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, td_rundir(), strerror(-rc));
		return 1;
	}
	if (json) {
		printf("[");
		for (i = 0; i < n; i++) {
			char spec[8192], uri[1024], sock[1024], path[8192], qos[2048];
			const struct td_kv *kv = &v[i].kv;

			td_json_str(spec, sizeof(spec), kvs(kv, "spec"));
			td_json_str(uri, sizeof(uri), kvs(kv, "uri"));
			td_json_str(sock, sizeof(sock), kvs(kv, "socket"));
			td_json_str(path, sizeof(path), kvs(kv, "path"));
			qos_json(kv, qos, sizeof(qos));
			printf(
			    "%s\n  {\"pid\": %s, \"minor\": %s, \"state\": \"%s\", \"spec\": %s, "
			    "\"uri\": %s, \"socket\": %s, \"path\": %s, \"size\": %s, "
			    "\"readonly\": %s, \"connections\": %s, \"qos\": %s}",
			    i ? "," : "", kvs(kv, "pid"), kvs(kv, "minor"), kvs(kv, "state"), spec,
			    uri, sock, path, kvs(kv, "size"),
			    atoi(kvs(kv, "readonly")) ? "true" : "false", kvs(kv, "connections"),
			    qos);
		}
		printf("%s]\n", n ? "\n" : "");
	} else {
		if (n)
			printf("%-8s %-5s %-8s %-40s %s\n", "PID", "MINOR", "STATE", "SPEC", "URI");
		for (i = 0; i < n; i++)
			printf("%-8s %-5s %-8s %-40s %s\n", kvs(&v[i].kv, "pid"),
			       kvs(&v[i].kv, "minor"), kvs(&v[i].kv, "state"),
			       kvs(&v[i].kv, "spec"), kvs(&v[i].kv, "uri"));
	}
	scan_free(v, n);
	return 0;
}

static int tapdisk_binary(char *buf, size_t len)
{
	const char *env = getenv("TAPDISK_BIN");
	char self[PATH_MAX], *dir = NULL;
	ssize_t n;

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		dir = dirname(self);
		snprintf(buf, len, "%s/tapdisk", dir);
		if (access(buf, X_OK) == 0)
			return 0;
	}
#if defined(TD_BINDIR) && defined(TD_PKGLIBEXECDIR)
	/* installed (make install): tapdisk is in $(libexecdir)/tdcrypt. When
	 * this tap-ctl sits in $(bindir) below some root (a staged DESTDIR
	 * tree), look below the same root first. */
	if (dir) {
		size_t dl = strlen(dir), bl = strlen(TD_BINDIR);

		if (dl >= bl && !strcmp(dir + dl - bl, TD_BINDIR)) {
			snprintf(buf, len, "%.*s%s/tapdisk", (int)(dl - bl), dir, TD_PKGLIBEXECDIR);
			if (access(buf, X_OK) == 0)
				return 0;
		}
	}
	snprintf(buf, len, "%s/tapdisk", TD_PKGLIBEXECDIR);
	if (access(buf, X_OK) == 0)
		return 0;
#endif
	snprintf(buf, len, "tapdisk"); /* from PATH */
	return 0;
}

/* Names the tapdisk already serving the image at `spec`'s path, if any. */
static void explain_lock(const char *spec)
{
	struct td_entry *v;
	const char *path = strrchr(spec, ':');
	struct stat a, b;
	int n, i;

	if (!path || stat(path + 1, &a) < 0 || scan(&v, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		if (stat(kvs(&v[i].kv, "path"), &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			fprintf(stderr,
				"%s: the lock holder is tapdisk pid %s (minor %s), serving %s\n",
				prog, kvs(&v[i].kv, "pid"), kvs(&v[i].kv, "minor"),
				kvs(&v[i].kv, "spec"));
			break;
		}
	}
	scan_free(v, n);
}

static const char *ceph_conf, *ceph_id;
static bool xen_mode;

static int cmd_create(const char *spec, const char *sock, bool ro, int timeout_s, const char *user)
{
	char bin[PATH_MAX], logpath[PATH_MAX], fdarg[16], err[512], msg[2048];
	size_t mlen = 0;
	int pfd[2], status;
	pid_t pid;
	time_t deadline;

	if (!spec) {
		fprintf(stderr, "%s create: -a SPEC is required (see tap-ctl create --help)\n",
			prog);
		return 2;
	}
	if (td_rundir_ensure(err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	tapdisk_binary(bin, sizeof(bin));
	snprintf(logpath, sizeof(logpath), "%s/tapdisk.log", td_rundir());
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		fprintf(stderr, "%s: pipe: %s\n", prog, strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		/* the tapdisk: own session, no terminal, log to the run directory */
		int nul = open("/dev/null", O_RDWR), log;
		char *args[16];
		int a = 0;

		setsid();
		log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		if (log >= 0)
			dup2(log, 2);
		fcntl(pfd[1], F_SETFD, 0);
		close(pfd[0]);
		snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
		args[a++] = bin;
		args[a++] = "serve";
		args[a++] = (char *)spec;
		args[a++] = "--socket";
		args[a++] = (char *)(sock ? sock : "auto");
		args[a++] = "--ready-fd";
		args[a++] = fdarg;
		if (ro)
			args[a++] = "--readonly";
		if (user) {
			args[a++] = "--user";
			args[a++] = (char *)user;
		}
		if (xen_mode)
			args[a++] = "--xen";
		if (ceph_conf) {
			args[a++] = "--ceph-conf";
			args[a++] = (char *)ceph_conf;
		}
		if (ceph_id) {
			args[a++] = "--ceph-id";
			args[a++] = (char *)ceph_id;
		}
		args[a] = NULL;
		execvp(bin, args);
		dprintf(pfd[1], "error: cannot run %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	deadline = time(NULL) + timeout_s;
	for (;;) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		int left = (int)(deadline - time(NULL));
		ssize_t n;

		if (left <= 0) {
			fprintf(stderr,
				"%s: tapdisk pid %d did not report ready within %d s; see %s\n",
				prog, (int)pid, timeout_s, logpath);
			kill(pid, SIGTERM);
			close(pfd[0]);
			return 1;
		}
		if (poll(&p, 1, left * 1000) < 0 && errno != EINTR)
			break;
		n = read(pfd[0], msg + mlen, sizeof(msg) - 1 - mlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		mlen += (size_t)n;
		if (mlen >= sizeof(msg) - 1)
			break;
	}
	close(pfd[0]);
	msg[mlen] = 0;
	if (!strncmp(msg, "ok ", 3)) {
		char *s = strstr(msg, "socket="), *e;

		if (s) {
			s += 7;
			e = strchr(s, ' ');
			if (e)
				*e = 0;
			printf("nbd+unix:///?socket=%s\n", s);
			return 0;
		}
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		/* gave no answer but still alive: not ours to keep */
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	if (!strncmp(msg, "error: ", 7)) {
		char *nl = strchr(msg, '\n');

		if (nl)
			*nl = 0;
		fprintf(stderr, "%s: %s\n", prog, msg + 7);
		if (strstr(msg, "locked"))
			explain_lock(spec);
	} else {
		fprintf(stderr, "%s: tapdisk exited (status %d) without reporting; see %s\n", prog,
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), logpath);
	}
	return 1;
}

/* Has pid exited? A zombie (exited, not yet reaped by its parent, which
 * for a daemonized tapdisk is init) counts as exited. */
static bool exited(int pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool z = false;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
		z = p[2] == 'Z' || p[2] == 'X';
	fclose(f);
	return z;
}

static int wait_exit(int pid, int timeout_s)
{
	time_t end = time(NULL) + timeout_s;

	while (time(NULL) <= end) {
		if (exited(pid))
			return 0;
		/* a child of ours (rare: created in this process) must be reaped */
		waitpid(pid, NULL, WNOHANG);
		usleep(5000);
	}
	return -ETIMEDOUT;
}

/* A socket file nobody listens on any more (a tapdisk that ran as a uid
 * of its own cannot remove its sockets from root's directory): removed. */
static void remove_stale_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (!path || !*path || lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED)
		unlink(path);
	close(fd);
}

/* Sends line with the descriptors of files: "LINE\tHOW:PATH...". */
static int call_with_files(const char *ctl, const char *line, struct td_files *files,
			   struct td_kv *kv, char *err, size_t errlen)
{
	size_t n = td_files_count(files), i, len = strlen(line);
	char *full = malloc(len + 1 + n * (PATH_MAX + 16));
	int fds[128], rc;

	if (!full)
		return -ENOMEM;
	if (n > sizeof(fds) / sizeof(fds[0])) {
		free(full);
		snprintf(err, errlen, "the chain has more than %zu files",
			 sizeof(fds) / sizeof(fds[0]));
		return -E2BIG;
	}
	memcpy(full, line, len + 1);
	for (i = 0; i < n; i++) {
		const char *path;
		unsigned how;

		fds[i] = td_files_entry(files, i, &path, &how);
		len += (size_t)sprintf(full + len, "\t%u:%s", how, path);
	}
	rc = td_ctl_call_fds(ctl, full, fds, (int)n, kv, 600000, err, errlen);
	free(full);
	return rc;
}

/* Opens, as root, the files of spec's image the way a tapdisk would (the
 * same drivers, the same confinement), without writing or locking
 * anything, for a tapdisk that can no longer open files itself. */
static int collect_files(const char *spec, bool readonly, struct td_files **out, char *err,
			 size_t errlen)
{
	struct td_ctx ctx = {0};
	struct td_chain *chain = NULL;
	struct td_spec sp, img;
	char imgspec[TD_SPEC_MAX_LEN + 64];
	int rc;

	*out = NULL;
	rc = td_spec_parse(spec, &sp, err, errlen);
	if (rc < 0)
		return rc;
	memset(&img, 0, sizeof(img));
	img.nlayers = 1;
	img.layers[0] = sp.layers[sp.nlayers - 1];
	img.path = sp.path;
	rc = td_spec_format(&img, imgspec, sizeof(imgspec));
	if (rc < 0 || img.layers[0].drv->needs_network || img.layers[0].drv->memory_image) {
		td_spec_free(&sp); /* no local files to pass (the tapdisk keeps its memory) */
		if (rc < 0)
			snprintf(err, errlen, "spec too long");
		return rc;
	}
	td_spec_free(&sp);
	rc = -ENOMEM;
	ctx.loop = td_loop_new();
	ctx.io = ctx.loop ? td_io_new(ctx.loop, 16) : NULL;
	ctx.workers = ctx.loop ? td_workers_new(ctx.loop, 0) : NULL;
	ctx.files = td_files_new();
	ctx.readonly = true; /* nothing written here */
	ctx.nolock = true;   /* the tapdisk takes the locks */
	if (!ctx.io || !ctx.workers || !ctx.files) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	td_files_set_upgrade_rw(ctx.files, !readonly);
	rc = td_chain_open(&ctx, imgspec, &chain, err, errlen);
	if (rc == 0) {
		td_chain_close(chain);
		*out = ctx.files;
		ctx.files = NULL;
	}
out:
	td_files_free(ctx.files);
	td_workers_free(ctx.workers);
	td_io_free(ctx.io);
	td_loop_free(ctx.loop);
	return rc;
}

/* unpause --next-key: the new key of a volume-key rotation started on the
 * paused VBD's image (vdkey reencrypt), read from the caller's keyring and
 * handed to the tapdisk through a pipe: it can no longer read the keyring
 * itself (docs/FORMAT.md, "Volume-key rotation"). */
static int send_next_key(const char *ctl, const char *spec, char *err, size_t errlen)
{
	struct td_volume v;
	struct td_volkey *nk = NULL;
	uint8_t id[TD_IMAGE_ID_LEN];
	int rc, p[2] = {-1, -1};

	td_volume_init(&v, NULL, NULL);
	rc = td_volume_open(&v, spec, TD_VOL_READ, err, errlen);
	if (rc == 0)
		rc = td_volume_identity(&v, id, err, errlen);
	if (rc == 0)
		rc = td_keyring_fetch_next(v.h->uuid, id, &nk, err, errlen);
	td_volume_close(&v);
	if (rc < 0)
		return rc;
	if (pipe(p) < 0 || write(p[1], td_volkey_bytes(nk), TD_VOLKEY_LEN) != TD_VOLKEY_LEN) {
		rc = -errno;
		snprintf(err, errlen, "cannot pass the key: %s", strerror(errno));
	} else {
		close(p[1]);
		p[1] = -1;
		rc = td_ctl_call_fds(ctl, "next-key", &p[0], 1, NULL, 10000, err, errlen);
	}
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	td_volkey_free(&nk);
	return rc;
}

static bool next_key;

static int cmd_simple(const char *cmd, const struct selector *sel, const char *newspec, bool json)
{
	char ctl[PATH_MAX], err[1024], line[8192];
	struct td_kv info = {0}, kv = {0};
	struct td_files *files = NULL;
	int rc, i;

	if (find_one(sel, ctl, sizeof(ctl), &info) < 0)
		return 1;
	if (!strcmp(cmd, "unpause") && next_key &&
	    (rc = send_next_key(ctl, newspec ? newspec : kvs(&info, "spec"), err, sizeof(err))) <
		0) {
		fprintf(stderr, "%s unpause --next-key: %s\n", prog, err);
		td_kv_free(&info);
		return 1;
	}
	if (!strcmp(cmd, "unpause") && newspec) {
		/* a new spec may name new files: root opens them and passes them */
		rc = td_spec_same_layers(kvs(&info, "spec"), newspec, err, sizeof(err));
		if (rc == 0)
			rc = collect_files(newspec, atoi(kvs(&info, "readonly")) != 0, &files, err,
					   sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "%s unpause: %s\n", prog, err);
			td_kv_free(&info);
			return 1;
		}
		snprintf(line, sizeof(line), "unpause %s", newspec);
	} else {
		snprintf(line, sizeof(line), "%s", cmd);
	}
	rc = files ? call_with_files(ctl, line, files, &kv, err, sizeof(err))
		   : td_ctl_call(ctl, line, &kv, !strcmp(cmd, "stats") ? 10000 : 600000, err,
				 sizeof(err));
	td_files_free(files);
	if (rc < 0) {
		fprintf(stderr, "%s %s: %s\n", prog, cmd, err);
		td_kv_free(&info);
		return 1;
	}
	if (!strcmp(cmd, "stats")) {
		if (json) {
			printf("{\"pid\": %s, \"minor\": %s", kvs(&info, "pid"),
			       kvs(&info, "minor"));
			for (i = 0; i < kv.n; i++)
				printf(", \"%s\": %s", kv.key[i], kv.val[i]);
			printf("}\n");
		} else {
			for (i = 0; i < kv.n; i++)
				printf("%-22s %s\n", kv.key[i], kv.val[i]);
		}
	} else if (!strcmp(cmd, "destroy")) {
		if (wait_exit(atoi(kvs(&info, "pid")), 60) < 0) {
			fprintf(stderr, "%s: tapdisk %s did not exit within 60 s\n", prog,
				kvs(&info, "pid"));
			rc = -ETIMEDOUT;
		} else {
			remove_stale_socket(ctl);
			remove_stale_socket(kvs(&info, "socket"));
		}
	}
	td_kv_free(&kv);
	td_kv_free(&info);
	return rc < 0 ? 1 : 0;
}

/* Shows or changes a VBD's QoS settings. A weight goes into the host
 * arbiter's table too, which root alone may write. */
static int cmd_qos(const struct selector *sel, const char *opts, bool json)
{
	char ctl[PATH_MAX], err[1024], line[2048];
	struct td_kv info = {0}, kv = {0};
	struct td_qos_limits lim;
	int rc, i, slot;

	td_qos_limits_default(&lim);
	if (opts[0] && td_qos_limits_parse(opts, &lim, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s qos: %s\n", prog, err);
		return 2;
	}
	if (find_one(sel, ctl, sizeof(ctl), &info) < 0)
		return 1;
	slot = td_kv_get(&info, "qos_slot") ? atoi(kvs(&info, "qos_slot")) : -1;
	if (strstr(opts, "weight=") && slot >= 0) {
		const struct td_hostconf *hc = td_hostconf(err, sizeof(err));

		if (!hc || td_qos_arbiter_set_weight(hc->qos_dir, slot, atoi(kvs(&info, "pid")),
						     lim.weight, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s qos: cannot change the weight: %s\n", prog, err);
			td_kv_free(&info);
			return 1;
		}
	}
	if (strstr(opts, "weight=") && slot < 0 && atoi(kvs(&info, "qos")) == 1)
		fprintf(stderr,
			"%s qos: note: this VBD is in no host arbiter (qos-host-iops and "
			"qos-host-bps are not set in tapdisk.conf): its weight has no effect\n",
			prog);
	snprintf(line, sizeof(line), "qos%s%s", opts[0] ? " " : "", opts);
	rc = td_ctl_call(ctl, line, &kv, 10000, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s qos: %s\n", prog, err);
	} else if (json) {
		printf("{\"pid\": %s, \"minor\": %s", kvs(&info, "pid"), kvs(&info, "minor"));
		for (i = 0; i < kv.n; i++)
			printf(", \"%s\": %s", kv.key[i], kv.val[i]);
		printf("}\n");
	} else {
		for (i = 0; i < kv.n; i++)
			printf("%-22s %s\n", kv.key[i], kv.val[i]);
	}
	td_kv_free(&kv);
	td_kv_free(&info);
	return rc < 0 ? 1 : 0;
}

/* Online grow: the size is checked here and passed in bytes. */
static int cmd_resize(const struct selector *sel, const char *arg)
{
	char ctl[PATH_MAX], err[1024], line[128];
	struct td_kv info = {0};
	uint64_t size;
	int rc;

	if (td_parse_size(arg, &size) < 0 || size == 0 || size % 4096) {
		fprintf(stderr,
			"%s resize: '%s' is not a size (bytes, a multiple of 4096; K, M, G, T "
			"suffixes)\n",
			prog, arg);
		return 2;
	}
	if (find_one(sel, ctl, sizeof(ctl), &info) < 0)
		return 1;
	td_kv_free(&info);
	snprintf(line, sizeof(line), "resize %llu", (unsigned long long)size);
	rc = td_ctl_call(ctl, line, NULL, 600000, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s resize: %s\n", prog, err);
		return 1;
	}
	return 0;
}

/* A live snapshot. A file snapshot's new file is created here, as root
 * (it must not exist; it gets the image owner's ownership through its
 * descriptor) and passed to the tapdisk, which no longer opens files. */
static int cmd_snapshot(const struct selector *sel, const char *arg)
{
	char ctl[PATH_MAX], err[1024], line[PATH_MAX + 32], abs[PATH_MAX];
	struct td_kv info = {0};
	struct td_files *files = NULL;
	unsigned ouid = 0, ogid = 0;
	int fd = -1, fd2 = -1, rc = 1;

	if (find_one(sel, ctl, sizeof(ctl), &info) < 0)
		return 1;
	if (strcmp(kvs(&info, "snapshot"), "file") != 0) {
		snprintf(line, sizeof(line), "snapshot %s", arg);
		rc = td_ctl_call(ctl, line, NULL, 600000, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "%s snapshot: %s\n", prog, err);
		td_kv_free(&info);
		return rc < 0 ? 1 : 0;
	}
	/* the tapdisk may run elsewhere: hand it an absolute path */
	if (arg[0] == '/') {
		snprintf(abs, sizeof(abs), "%s", arg);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)))
			goto out;
		snprintf(abs, sizeof(abs), "%.2047s/%.2000s", cwd, arg);
	}
	fd = open(abs, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "%s snapshot: cannot create %s: %s\n", prog, abs,
			errno == EEXIST ? "it already exists" : strerror(errno));
		goto out;
	}
	if (sscanf(kvs(&info, "image_owner"), "%u:%u", &ouid, &ogid) == 2 && geteuid() == 0 &&
	    fchown(fd, ouid, ogid) < 0) {
		fprintf(stderr, "%s snapshot: cannot give %s to uid %u: %s\n", prog, abs, ouid,
			strerror(errno));
		goto fail;
	}
	/* a second open file for the data, O_DIRECT when the filesystem takes it */
	snprintf(line, sizeof(line), "/proc/self/fd/%d", fd);
	fd2 = open(line, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd2 < 0)
		fd2 = open(line, O_RDWR | O_CLOEXEC);
	files = td_files_new();
	if (fd2 < 0 || !files ||
	    td_files_add(files, abs, TD_FILE_RW, dup(fd), err, sizeof(err)) < 0 ||
	    td_files_add(files, abs, TD_FILE_RW | TD_FILE_DIRECT, fd2, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s snapshot: cannot reopen %s\n", prog, abs);
		fd2 = -1;
		goto fail;
	}
	fd2 = -1;
	snprintf(line, sizeof(line), "snapshot %s", abs);
	if (call_with_files(ctl, line, files, NULL, err, sizeof(err)) == 0) {
		rc = 0;
		goto out;
	}
	fprintf(stderr, "%s snapshot: %s\n", prog, err);
fail:
	unlink(abs); /* ours, created above; the VBD kept its image */
out:
	if (fd2 >= 0)
		close(fd2);
	if (fd >= 0)
		close(fd);
	td_files_free(files);
	td_kv_free(&info);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"readonly", no_argument, NULL, 'r'},
	    {"user", required_argument, NULL, 'u'},
	    {"ceph-conf", required_argument, NULL, 'C'},
	    {"xen", no_argument, NULL, 'X'},
	    {"ceph-id", required_argument, NULL, 'I'},
	    {"next-key", no_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},
	    /* tap-ctl qos: each becomes KEY=VALUE (tapdisk/qos/limits.h) */
	    {"iops", required_argument, NULL, 1000},
	    {"read-iops", required_argument, NULL, 1000},
	    {"write-iops", required_argument, NULL, 1000},
	    {"bps", required_argument, NULL, 1000},
	    {"read-bps", required_argument, NULL, 1000},
	    {"write-bps", required_argument, NULL, 1000},
	    {"iops-burst", required_argument, NULL, 1000},
	    {"read-iops-burst", required_argument, NULL, 1000},
	    {"write-iops-burst", required_argument, NULL, 1000},
	    {"bps-burst", required_argument, NULL, 1000},
	    {"read-bps-burst", required_argument, NULL, 1000},
	    {"write-bps-burst", required_argument, NULL, 1000},
	    {"weight", required_argument, NULL, 1000},
	    {NULL, 0, NULL, 0},
	};
	char qos_opts[1024] = "";
	size_t qlen = 0;
	int li;
	struct selector sel = {.pid = -1, .minor = -1};
	const char *cmd, *spec = NULL, *user = NULL;
	bool json = false, ro = false;
	int c, timeout_s = 30;

	signal(SIGPIPE, SIG_IGN);
	td_log_init("tap-ctl");
	td_drivers_set(td_registry());
	td_log_set_level(TD_LOG_ERR); /* drivers opened to collect files keep quiet */
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "a:s:p:m:t:u:rjh", longopts, &li)) != -1) {
		switch (c) {
		case 1000:
			if (strcmp(cmd, "qos") != 0) {
				fprintf(stderr, "%s %s: --%s belongs to tap-ctl qos\n", prog, cmd,
					longopts[li].name);
				return 2;
			}
			if (strchr(optarg, ',') || strchr(optarg, '=') ||
			    qlen + strlen(longopts[li].name) + strlen(optarg) + 3 >=
				sizeof(qos_opts)) {
				fprintf(stderr, "%s qos: bad --%s '%s'\n", prog, longopts[li].name,
					optarg);
				return 2;
			}
			qlen +=
			    (size_t)snprintf(qos_opts + qlen, sizeof(qos_opts) - qlen, "%s%s=%s",
					     qlen ? "," : "", longopts[li].name, optarg);
			break;
		case 'a':
			spec = optarg;
			break;
		case 's':
			sel.socket = optarg;
			break;
		case 'p':
			sel.pid = atoi(optarg);
			break;
		case 'm':
			sel.minor = atoi(optarg);
			break;
		case 't':
			timeout_s = atoi(optarg);
			break;
		case 'r':
			ro = true;
			break;
		case 'u':
			user = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'C':
			ceph_conf = optarg;
			break;
		case 'X':
			xen_mode = true;
			break;
		case 'I':
			ceph_id = optarg;
			break;
		case 'K':
			if (strcmp(cmd, "unpause") != 0) {
				fprintf(stderr, "%s %s: --next-key belongs to tap-ctl unpause\n",
					prog, cmd);
				return 2;
			}
			next_key = true;
			break;
		case 'h':
			cmd_usage(cmd);
			return 0;
		default:
			fprintf(stderr, "%s: see tap-ctl %s --help\n", prog, cmd);
			return 2;
		}
	}
	if (!strcmp(cmd, "xen-connect")) {
		char line[512], ctl[PATH_MAX], err[1024];
		struct td_kv info = {0};
		int rc;

		if (argc - optind < 3 || argc - optind > 5) {
			fprintf(stderr,
				"%s xen-connect: expected DOMID RING-REFS EVTCHN [PROTOCOL "
				"[persistent]] (see "
				"tap-ctl "
				"xen-connect --help)\n",
				prog);
			return 2;
		}
		snprintf(line, sizeof(line), "xen-connect %s %s %s %s %s", argv[optind],
			 argv[optind + 1], argv[optind + 2],
			 argc - optind >= 4 ? argv[optind + 3] : "",
			 argc - optind == 5 ? argv[optind + 4] : "");
		if (find_one(&sel, ctl, sizeof(ctl), &info) < 0)
			return 1;
		td_kv_free(&info);
		rc = td_ctl_call(ctl, line, NULL, 30000, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "%s xen-connect: %s\n", prog, err);
		return rc < 0 ? 1 : 0;
	}
	if (!strcmp(cmd, "snapshot")) {
		if (optind != argc - 1) {
			fprintf(stderr,
				"%s snapshot: expected NEWFILE or SNAPNAME (see tap-ctl snapshot "
				"--help)\n",
				prog);
			return 2;
		}
		return cmd_snapshot(&sel, argv[optind]);
	}
	if (!strcmp(cmd, "resize")) {
		if (optind != argc - 1) {
			fprintf(stderr, "%s resize: expected SIZE (see tap-ctl resize --help)\n",
				prog);
			return 2;
		}
		return cmd_resize(&sel, argv[optind]);
	}
	if (optind != argc) {
		fprintf(stderr, "%s %s: unexpected argument '%s'\n", prog, cmd, argv[optind]);
		return 2;
	}
	if (!strcmp(cmd, "create"))
		return cmd_create(spec, sel.socket, ro, timeout_s, user);
	if (!strcmp(cmd, "list"))
		return cmd_list(json);
	if (!strcmp(cmd, "qos"))
		return cmd_qos(&sel, qos_opts, json);
	if (!strcmp(cmd, "destroy") || !strcmp(cmd, "pause") || !strcmp(cmd, "stats"))
		return cmd_simple(cmd, &sel, NULL, json);
	if (!strcmp(cmd, "unpause"))
		return cmd_simple(cmd, &sel, spec, json);
	if (!strcmp(cmd, "xen-disconnect"))
		return cmd_simple(cmd, &sel, NULL, json);
	fprintf(stderr, "%s: unknown command '%s' (see tap-ctl --help)\n", prog, cmd);
	return 2;
}
