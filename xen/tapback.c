/*
 * tapback — the xenstore half of a Xen block backend whose data path is a
 * tapdisk serving the guest's blkif ring (docs/XEN.md).
 *
 * A long-running dom0 daemon, the user-space counterpart of the kernel's
 * xen-blkback. It watches backend/vbd (relative to dom0's home, i.e.
 * /local/domain/0/backend/vbd) through the real libxenstore and takes the
 * devices whose `script` node names the block-tdcrypt hotplug script
 * (xl: `script=block-tdcrypt`); every other VBD is left to whoever serves
 * it. For each of ours it runs blkback's state machine:
 *
 *   toolstack writes the nodes, state 1
 *     -> tapback publishes the ring limits and features, state 2 (InitWait)
 *   libxl runs `block-tdcrypt add`: it starts the tapdisk (tap-ctl create
 *     --xen) and writes tapdisk-socket and hotplug-status=connected
 *   frontend Initialised (3) or Connected (4), and the tapdisk is up
 *     -> tapback reads ring-ref / ring-ref0..N-1 + ring-page-order,
 *        event-channel and protocol (hostile input: checked strictly),
 *        runs `tap-ctl xen-connect`, writes sectors/info/sector-size,
 *        state 4 (Connected)
 *   frontend Closing -> tap-ctl xen-disconnect, state 5; Closed -> 6;
 *     a frontend that comes back (Initialising) -> InitWait again
 *   toolstack writes state 5 (detach, domain destroyed, xl save): once the
 *     frontend is closed or gone -> xen-disconnect, state 6; libxl then
 *     runs `block-tdcrypt remove` (tap-ctl destroy) and removes the nodes.
 *
 * A failure of ours (tap-ctl xen-connect refused, a frontend that breaks
 * the protocol) is written to hotplug-error, hotplug-status=error, and the
 * backend goes to Closing. Children run with a deadline, so a stuck
 * tap-ctl cannot hang the daemon. Frontend strings never reach a shell:
 * tap-ctl is exec'd with an argument vector of numbers we formatted.
 *
 * The tapdisk also serves its NBD socket (node tapdisk-socket, and
 * dom0-nbd-uri): for dom0 tools, never the guest's data path.
 *
 * On SIGTERM the daemon exits and leaves running tapdisks alone (the VMs
 * keep their disks); a restarted tapback adopts the devices it finds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include "tapdisk/blkif/blkif_proto.h" /* what the ring supports: we advertise that */

enum xenbus_state {
	XB_UNKNOWN = 0,
	XB_INITIALISING = 1,
	XB_INITWAIT = 2,
	XB_INITIALISED = 3,
	XB_CONNECTED = 4,
	XB_CLOSING = 5,
	XB_CLOSED = 6,
};

#define VDISK_READONLY 4
#define MAX_DOMID 0x7FEF	   /* below DOMID_FIRST_RESERVED */
#define MAX_DEVID ((1u << 29) - 1) /* covers the extended xvd encoding */
#define ERRLEN 512
#define SCRIPT_NAME "block-tdcrypt"

struct vbd {
	char *dom, *dev; /* node names as found */
	unsigned domid;
	char *be; /* backend path */
	char *fe; /* frontend path */
	char *fe_token;
	char *sock;	   /* the tapdisk's socket (tap-ctl -s), from the hotplug script */
	int state;	   /* backend state we last wrote */
	bool ring;	   /* the tapdisk serves the ring (xen-connect done) */
	bool ro;	   /* mode r */
	bool tool_closing; /* the toolstack wrote state 5 */
	bool failed;
	struct vbd *next;
};

static struct xs_handle *g_xs;
static const char *g_base = "backend/vbd";
static char g_tapctl[PATH_MAX + 64] = "tap-ctl";
static int g_timeout = 30;
static struct vbd *g_vbds;

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char ts[32];
	time_t t = time(NULL);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", localtime(&t));
	va_list ap;
	fprintf(stderr, "%s tapback: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	char *s;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		logmsg("out of memory");
		exit(1);
	}
	va_end(ap);
	return s;
}

/* ---- xenstore helpers ------------------------------------------------------ */

static char *xs_get(const char *dir, const char *key)
{
	char *p = xasprintf("%s/%s", dir, key);
	unsigned int len;
	char *v = xs_read(g_xs, XBT_NULL, p, &len);
	free(p);
	return v;
}

static int xs_get_int(const char *dir, const char *key, int dflt)
{
	char *v = xs_get(dir, key);
	char *end;
	long n = v ? strtol(v, &end, 10) : 0;
	int r = (v && *v && !*end) ? (int)n : dflt;
	free(v);
	return r;
}

/* Writes KEY=VALUE pairs (NULL-terminated list) under dir in one transaction. */
static bool xs_put(const char *dir, ...)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		xs_transaction_t t = xs_transaction_start(g_xs);
		if (t == XBT_NULL)
			break;
		bool ok = true;
		va_list ap;
		va_start(ap, dir);
		const char *k;
		while (ok && (k = va_arg(ap, const char *))) {
			const char *v = va_arg(ap, const char *);
			char *p = xasprintf("%s/%s", dir, k);
			ok = xs_write(g_xs, t, p, v, strlen(v));
			free(p);
		}
		va_end(ap);
		if (!ok) {
			xs_transaction_end(g_xs, t, true);
			break;
		}
		if (xs_transaction_end(g_xs, t, false))
			return true;
		if (errno != EAGAIN)
			break;
	}
	logmsg("%s: xenstore write failed: %s", dir, strerror(errno));
	return false;
}

static void set_state(struct vbd *v, int state)
{
	char s[8];
	snprintf(s, sizeof(s), "%d", state);
	if (xs_put(v->be, "state", s, NULL)) {
		logmsg("%s: state %d -> %d", v->be, v->state, state);
		v->state = state;
	}
}

static void fail(struct vbd *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct vbd *v, const char *fmt, ...)
{
	char msg[ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++) /* one line */
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	logmsg("%s: error: %s", v->be, msg);
	xs_put(v->be, "hotplug-error", msg, "hotplug-status", "error", NULL);
	v->failed = true;
}

/* ---- children ------------------------------------------------------------- */

/*
 * Runs argv with a deadline; captures stdout and the last stderr line.
 * Returns the exit status, or -1 (and a message in err) if it could not run
 * or was killed at the deadline. Waits for the child's exit, not for EOF:
 * a daemonizing child may leave the pipes open in its grandchild.
 */
static int run(char *const argv[], char *out, size_t outsz, char *err, size_t errsz)
{
	int po[2], pe[2];
	size_t no = 0, ne = 0;
	int status = -1;
	out[0] = err[0] = 0;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		snprintf(err, errsz, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errsz, "fork: %s", strerror(errno));
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		return -1;
	}
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool exited = false, killed = false;
	for (;;) {
		struct pollfd p[2] = {{.fd = po[0], .events = POLLIN},
				      {.fd = pe[0], .events = POLLIN}};
		poll(p, 2, 50);
		ssize_t r;
		while (no + 1 < outsz && (r = read(po[0], out + no, outsz - 1 - no)) > 0)
			no += r;
		while (ne + 1 < errsz && (r = read(pe[0], err + ne, errsz - 1 - ne)) > 0)
			ne += r;
		if (exited)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			exited = true; /* one more drain of the pipes */
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > g_timeout + 5) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			killed = true;
			break;
		}
	}
	close(po[0]);
	close(pe[0]);
	out[no] = 0;
	err[ne] = 0;
	if (killed) {
		snprintf(err, errsz, "%s timed out after %d s", argv[0], g_timeout + 5);
		return -1;
	}
	/* keep the last non-empty line of stderr */
	char *e = err + strlen(err);
	while (e > err && (e[-1] == '\n' || e[-1] == ' '))
		*--e = 0;
	char *nl = strrchr(err, '\n');
	if (nl)
		memmove(err, nl + 1, strlen(nl + 1) + 1);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	snprintf(err, errsz, "%s killed by signal %d", argv[0], WTERMSIG(status));
	return -1;
}

/* ---- hostile input ------------------------------------------------------------ */

/*
 * A frontend node as an unsigned decimal number no larger than max:
 * digits only, no sign, no spaces, at most 10 of them. -1 when the node is
 * missing, -2 when it holds anything else.
 */
static long long fe_number(const char *dir, const char *key, unsigned long long max)
{
	char *p = xasprintf("%s/%s", dir, key);
	unsigned int len = 0;
	char *v = xs_read(g_xs, XBT_NULL, p, &len);
	long long r = -2;

	free(p);
	if (!v)
		return -1;
	if (len >= 1 && len <= 10 && strlen(v) == len) {
		unsigned long long n = 0;
		unsigned int i;

		for (i = 0; i < len && isdigit((unsigned char)v[i]); i++)
			n = n * 10 + (unsigned)(v[i] - '0');
		if (i == len && n <= max)
			r = (long long)n;
	}
	free(v);
	return r;
}

/* The frontend's state, or -1 when it has none (gone, or not a number). */
static int fe_state(struct vbd *v)
{
	long long s = fe_number(v->fe, "state", XB_CLOSED);

	return s < 0 ? -1 : (int)s;
}

/* Size in bytes of the tapdisk serving sock, from `tap-ctl list --json`. */
static long long tapdisk_size(const char *sock, char *err, size_t errsz)
{
	static char out[1 << 20];
	char *argv[] = {g_tapctl, "list", "--json", NULL};
	if (run(argv, out, sizeof(out), err, errsz) != 0)
		return -1;
	char *needle = xasprintf("\"socket\": \"%s\"", sock);
	char *at = strstr(out, needle);
	free(needle);
	char *end = at ? strchr(at, '}') : NULL;
	char *size = at ? strstr(at, "\"size\": ") : NULL;
	if (!size || size > end) {
		snprintf(err, errsz, "tap-ctl list does not show the size of %s", sock);
		return -1;
	}
	return strtoll(size + 8, NULL, 10);
}

/* ---- devices ---------------------------------------------------------------- */

static bool all_digits(const char *s)
{
	if (!*s || strlen(s) > 10)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* Is this VBD ours: does its script node name block-tdcrypt? */
static bool is_ours(const char *be)
{
	char *script = xs_get(be, "script");
	bool ours = false;

	if (script) {
		const char *base = strrchr(script, '/');

		base = base ? base + 1 : script;
		ours = !strcmp(base, SCRIPT_NAME);
	}
	free(script);
	return ours;
}

static struct vbd *find(const char *dom, const char *dev)
{
	for (struct vbd *v = g_vbds; v; v = v->next)
		if (!strcmp(v->dom, dom) && !strcmp(v->dev, dev))
			return v;
	return NULL;
}

static void forget(struct vbd *v)
{
	for (struct vbd **p = &g_vbds; *p; p = &(*p)->next)
		if (*p == v) {
			*p = v->next;
			break;
		}
	if (v->fe_token) {
		char *w = xasprintf("%s/state", v->fe);
		xs_unwatch(g_xs, w, v->fe_token);
		free(w);
	}
	free(v->dom);
	free(v->dev);
	free(v->be);
	free(v->fe);
	free(v->fe_token);
	free(v->sock);
	free(v);
}

static void watch_frontend(struct vbd *v)
{
	char *w = xasprintf("%s/state", v->fe);
	v->fe_token = xasprintf("fe:%s/%s", v->dom, v->dev);
	if (!xs_watch(g_xs, w, v->fe_token)) {
		logmsg("%s: cannot watch %s: %s", v->be, w, strerror(errno));
		free(v->fe_token);
		v->fe_token = NULL;
	}
	free(w);
}

/* Runs tap-ctl VERB -s SOCK [args...]; 0, or -1 with the reason in err. */
static int tapctl(struct vbd *v, const char *verb, char *const *args, char *err, size_t errsz)
{
	char out[4096];
	char *argv[16] = {g_tapctl, (char *)verb, "-s", v->sock};
	int n = 4, rc;

	while (args && *args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	rc = run(argv, out, sizeof(out), err, errsz);
	if (rc > 0 && !*err)
		snprintf(err, errsz, "tap-ctl %s exited with status %d", verb, rc);
	return rc ? -1 : 0;
}

/* Errors of ours: the toolstack's hotplug-error, and the backend closes. */
static void backend_error(struct vbd *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void backend_error(struct vbd *v, const char *fmt, ...)
{
	char msg[ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(v, "%s", msg);
	if (v->state != XB_CLOSING && v->state != XB_CLOSED)
		set_state(v, XB_CLOSING);
}

/* A frontend that breaks the protocol: said in hotplug-error, and the
 * backend closes; the device is not given up (a frontend that starts
 * again from Initialising gets InitWait again). */
static void frontend_error(struct vbd *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void frontend_error(struct vbd *v, const char *fmt, ...)
{
	char msg[ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg("%s: %s", v->be, msg);
	xs_put(v->be, "hotplug-error", msg, NULL);
	if (v->state != XB_CLOSING && v->state != XB_CLOSED)
		set_state(v, XB_CLOSING);
}

/* A new VBD of ours: check the toolstack's nodes, advertise what the ring
 * supports, InitWait. The hotplug script starts the tapdisk. */
static void setup_vbd(struct vbd *v)
{
	char *mode = NULL, *fe = NULL;
	char order[8], segs[8];

	if (!all_digits(v->dom) || strtoul(v->dom, NULL, 10) > MAX_DOMID) {
		fail(v, "domid '%s' is not a domain id (0..%d)", v->dom, MAX_DOMID);
		goto out;
	}
	v->domid = (unsigned)strtoul(v->dom, NULL, 10);
	if (!all_digits(v->dev) || strtoul(v->dev, NULL, 10) > MAX_DEVID) {
		fail(v, "devid '%s' is not a virtual device number (0..%u)", v->dev, MAX_DEVID);
		goto out;
	}
	/* the kernel's blkback takes every vbd backend it sees: it would map
	 * this guest's ring too */
	if (access("/sys/module/xen_blkback", F_OK) == 0) {
		fail(v, "xen-blkback is loaded: it would serve this VBD's ring too; unload it "
			"(modprobe -r xen-blkback) and keep it unloaded (docs/XEN.md)");
		goto out;
	}
	mode = xs_get(v->be, "mode");
	if (!mode || !strcmp(mode, "w") || !strcmp(mode, "rw"))
		v->ro = false;
	else if (!strcmp(mode, "r") || !strcmp(mode, "ro"))
		v->ro = true;
	else {
		fail(v, "mode '%s' is neither r nor w", mode);
		goto out;
	}
	/* the frontend must live in the guest's own tree */
	fe = xs_get(v->be, "frontend");
	char *want = xasprintf("/local/domain/%u/device/vbd/%s", v->domid, v->dev);
	if (fe && strcmp(fe, want)) {
		fail(v, "frontend '%s' is not %s", fe, want);
		free(want);
		goto out;
	}
	v->fe = want;
	snprintf(order, sizeof(order), "%d", TD_BLKIF_MAX_RING_ORDER);
	snprintf(segs, sizeof(segs), "%d", TD_BLKIF_MAX_INDIRECT_SEGS);
	if (!xs_put(v->be, "max-ring-page-order", order, "feature-max-indirect-segments", segs,
		    "feature-flush-cache", "1", "feature-barrier", v->ro ? "0" : "1",
		    "feature-discard", v->ro ? "0" : "1", "discard-granularity", "4096",
		    "discard-alignment", "0", "discard-secure", "0", "feature-persistent", "1",
		    "sector-size", "512", "physical-sector-size", "4096", "info",
		    v->ro ? "4" /* VDISK_READONLY */ : "0", NULL)) {
		v->failed = true;
		goto out;
	}
	set_state(v, XB_INITWAIT);
	watch_frontend(v);
	logmsg("%s: InitWait for frontend %s%s", v->be, v->fe, v->ro ? " (read-only)" : "");
out:
	free(mode);
	free(fe);
}

/* The tapdisk the hotplug script started, once it said so. */
static bool have_tapdisk(struct vbd *v)
{
	if (v->sock)
		return true;
	char *hs = xs_get(v->be, "hotplug-status");
	bool up = hs && !strcmp(hs, "connected");
	free(hs);
	if (!up)
		return false;
	char *sock = xs_get(v->be, "tapdisk-socket");
	if (!sock || sock[0] != '/' || strlen(sock) > 256) {
		free(sock);
		return false;
	}
	v->sock = sock;
	return true;
}

/*
 * Reads what the frontend published (hostile: every node checked) and
 * hands the ring to the tapdisk. 0, or -1 after backend_error().
 */
static int connect_ring(struct vbd *v)
{
	char refs[16 * 21 + 1] = "", port[24], dom[16], proto[16], sectors[32], info[8];
	char err[ERRLEN];
	long long order = fe_number(v->fe, "ring-page-order", TD_BLKIF_MAX_RING_ORDER);
	long long nq = fe_number(v->fe, "multi-queue-num-queues", 1);
	long long evtchn = fe_number(v->fe, "event-channel", UINT32_MAX);
	char *p;

	if (order == -2) {
		frontend_error(v, "frontend ring-page-order is not a number 0..%d",
			       TD_BLKIF_MAX_RING_ORDER);
		return -1;
	}
	if (nq == -2) {
		frontend_error(v, "frontend asks for several queues (we offer one)");
		return -1;
	}
	if (evtchn < 0) {
		frontend_error(v, "frontend event-channel is %s",
			       evtchn == -1 ? "missing" : "not a number");
		return -1;
	}
	if (order == -1 || (order == 0 && fe_number(v->fe, "ring-ref0", UINT32_MAX) == -1)) {
		/* one page: "ring-ref" (Linux writes ring-page-order only above 0) */
		long long r = fe_number(v->fe, "ring-ref", UINT32_MAX);

		if (r < 0) {
			frontend_error(v, "frontend ring-ref is %s",
				       r == -1 ? "missing" : "not a number");
			return -1;
		}
		snprintf(refs, sizeof(refs), "%lld", r);
	} else {
		unsigned n = 1u << order;
		size_t at = 0;

		for (unsigned i = 0; i < n; i++) {
			char key[24];
			long long r;

			snprintf(key, sizeof(key), "ring-ref%u", i);
			r = fe_number(v->fe, key, UINT32_MAX);
			if (r < 0) {
				frontend_error(v, "frontend %s is %s", key,
					       r == -1 ? "missing" : "not a number");
				return -1;
			}
			at += (size_t)snprintf(refs + at, sizeof(refs) - at, "%s%lld", i ? "," : "",
					       r);
		}
	}
	p = xs_get(v->fe, "protocol");
	if (!p)
		snprintf(proto, sizeof(proto), "x86_64-abi"); /* native */
	else if (!strcmp(p, "x86_64-abi") || !strcmp(p, "x86_32-abi"))
		snprintf(proto, sizeof(proto), "%s", p);
	else {
		free(p);
		frontend_error(v, "frontend protocol is neither x86_64-abi nor x86_32-abi");
		return -1;
	}
	free(p);
	snprintf(port, sizeof(port), "%u", (unsigned)evtchn);
	snprintf(dom, sizeof(dom), "%u", v->domid);
	/* persistent grants when the frontend wants them too (blkif.h): it
	 * then reuses its granted pages, and the tapdisk keeps them mapped */
	bool pers = fe_number(v->fe, "feature-persistent", 1) == 1;
	char persistent[] = "persistent";
	char *args[] = {dom, refs, port, proto, pers ? persistent : NULL, NULL};
	if (tapctl(v, "xen-connect", args, err, sizeof(err)) < 0) {
		backend_error(v, "%s", err); /* tap-ctl names itself and the verb */
		return -1;
	}
	v->ring = true;
	long long size = tapdisk_size(v->sock, err, sizeof(err));
	if (size < 0) {
		backend_error(v, "%s", err);
		return -1;
	}
	snprintf(sectors, sizeof(sectors), "%lld", size / 512);
	snprintf(info, sizeof(info), "%d", v->ro ? VDISK_READONLY : 0);
	if (!xs_put(v->be, "sectors", sectors, "info", info, NULL)) {
		v->failed = true;
		return -1;
	}
	logmsg("%s: ring of domain %u connected (refs %s, event channel %s, %s, %s sectors%s)",
	       v->be, v->domid, refs, port, proto, sectors, pers ? ", persistent grants" : "");
	set_state(v, XB_CONNECTED);
	return 0;
}

static void disconnect_ring(struct vbd *v)
{
	char err[ERRLEN];

	if (!v->ring)
		return;
	v->ring = false;
	if (tapctl(v, "xen-disconnect", NULL, err, sizeof(err)) < 0)
		logmsg("%s: tap-ctl xen-disconnect: %s", v->be, err);
	else
		logmsg("%s: ring of domain %u disconnected", v->be, v->domid);
}

/* Moves the backend along with the frontend's and the toolstack's wishes. */
static void step(struct vbd *v)
{
	long long be = fe_number(v->be, "state", XB_CLOSED);
	int fe = fe_state(v);

	have_tapdisk(v); /* remember its socket: the nodes may vanish */

	if (be == XB_CLOSING && v->state != XB_CLOSING && v->state != XB_CLOSED &&
	    !v->tool_closing) {
		logmsg("%s: the toolstack closes the device", v->be);
		v->tool_closing = true;
		v->state = XB_CLOSING;
	}
	if (v->failed) {
		/* closing still works, so that the toolstack can clean up */
		if ((fe < XB_INITIALISING || fe == XB_CLOSED || v->tool_closing) &&
		    v->state != XB_CLOSED) {
			disconnect_ring(v);
			set_state(v, XB_CLOSED);
		}
		return;
	}
	if (fe < XB_INITIALISING) { /* frontend gone (domain destroyed) */
		disconnect_ring(v);
		if (v->state != XB_CLOSED && (v->tool_closing || v->state != XB_INITWAIT))
			set_state(v, XB_CLOSED);
		return;
	}
	if (v->tool_closing) {
		/* detach: a live frontend closes first (it sees our Closing) */
		if (fe == XB_CONNECTED || fe == XB_INITIALISED)
			return;
		disconnect_ring(v);
		if (v->state != XB_CLOSED)
			set_state(v, XB_CLOSED);
		return;
	}
	switch (fe) {
	case XB_INITIALISING:
	case XB_INITWAIT:
		if (v->state == XB_CLOSED || v->state == XB_CLOSING) {
			disconnect_ring(v);
			logmsg("%s: frontend is back, ready to reconnect", v->be);
			set_state(v, XB_INITWAIT);
		}
		break;
	case XB_INITIALISED:
	case XB_CONNECTED:
		if (v->state == XB_INITWAIT && have_tapdisk(v))
			connect_ring(v);
		break;
	case XB_CLOSING:
		disconnect_ring(v);
		if (v->state != XB_CLOSING && v->state != XB_CLOSED)
			set_state(v, XB_CLOSING);
		break;
	case XB_CLOSED:
		disconnect_ring(v);
		if (v->state != XB_CLOSED)
			set_state(v, XB_CLOSED);
		break;
	default:
		logmsg("%s: frontend %s/state is %d, ignored", v->be, v->fe, fe);
		break;
	}
}

/* The hotplug script's remove destroys the tapdisk; if the nodes went
 * without it (no script ran), the tapdisk must not outlive its device. */
static void removed(struct vbd *v)
{
	char out[1 << 12], err[ERRLEN];

	logmsg("%s: removed", v->be);
	if (!v->sock)
		return;
	char *argv[] = {g_tapctl, "list", "--json", NULL};
	if (run(argv, out, sizeof(out), err, sizeof(err)) != 0)
		return;
	char *needle = xasprintf("\"socket\": \"%s\"", v->sock);
	bool running = strstr(out, needle) != NULL;
	free(needle);
	if (!running)
		return;
	logmsg("%s: the tapdisk on %s outlived its device: destroying it", v->be, v->sock);
	if (tapctl(v, "destroy", NULL, err, sizeof(err)) < 0)
		logmsg("%s: tap-ctl destroy -s %s: %s", v->be, v->sock, err);
}

/* Brings one backend/vbd/<dom>/<dev> in line with xenstore. */
static void process(const char *dom, const char *dev)
{
	struct vbd *v = find(dom, dev);
	char *be = xasprintf("%s/%s/%s", g_base, dom, dev);
	unsigned int n;
	char **d = xs_directory(g_xs, XBT_NULL, be, &n);
	bool exists = d != NULL;
	free(d);

	if (!exists) {
		if (v) {
			removed(v);
			forget(v);
		}
		goto out;
	}
	if (!v) {
		int state = xs_get_int(be, "state", -1);
		if (state < 0 || !is_ours(be)) /* toolstack not done writing, or not ours */
			goto out;
		v = calloc(1, sizeof(*v));
		if (!v)
			goto out;
		v->dom = strdup(dom);
		v->dev = strdup(dev);
		v->be = strdup(be);
		v->state = state;
		v->next = g_vbds;
		g_vbds = v;
		if (state == XB_INITIALISING) {
			setup_vbd(v);
		} else {
			/* a restarted tapback: take the device as it stands */
			char *hs = xs_get(be, "hotplug-status");
			v->failed = hs && strcmp(hs, "connected");
			free(hs);
			v->domid = (unsigned)strtoul(dom, NULL, 10);
			v->fe = xasprintf("/local/domain/%u/device/vbd/%s", v->domid, dev);
			char *mode = xs_get(be, "mode");
			v->ro = mode && (!strcmp(mode, "r") || !strcmp(mode, "ro"));
			free(mode);
			have_tapdisk(v);
			v->ring = state == XB_CONNECTED && v->sock;
			logmsg("%s: adopted in state %d (tapdisk on %s)", be, state,
			       v->sock ? v->sock : "?");
			watch_frontend(v);
		}
		goto out;
	}
	if (v->fe)
		step(v);
out:
	free(be);
}

/* Every device under the base, plus every known one (to notice removals). */
static void rescan(void)
{
	unsigned int nd, nv;
	char **doms = xs_directory(g_xs, XBT_NULL, g_base, &nd);
	for (unsigned int i = 0; doms && i < nd; i++) {
		char *p = xasprintf("%s/%s", g_base, doms[i]);
		char **devs = xs_directory(g_xs, XBT_NULL, p, &nv);
		for (unsigned int j = 0; devs && j < nv; j++)
			process(doms[i], devs[j]);
		free(devs);
		free(p);
	}
	free(doms);
	for (struct vbd *v = g_vbds, *next; v; v = next) {
		next = v->next;
		char *dom = strdup(v->dom), *dev = strdup(v->dev);
		process(dom, dev); /* may free v */
		free(dom);
		free(dev);
	}
}

static void on_event(const char *path, const char *token)
{
	if (!strncmp(token, "fe:", 3)) {
		char *dom = strdup(token + 3);
		char *dev = strchr(dom, '/');
		if (dev) {
			*dev++ = 0;
			process(dom, dev);
		}
		free(dom);
		return;
	}
	if (!strcmp(token, "rel")) { /* a domain died: its frontends are gone */
		rescan();
		return;
	}
	/* backend event: backend/vbd/<dom>/<dev>[/key] */
	size_t bl = strlen(g_base);
	const char *rel = path;
	const char *abs_base = strstr(path, g_base);
	if (abs_base)
		rel = abs_base;
	if (strncmp(rel, g_base, bl) || rel[bl] != '/') {
		rescan();
		return;
	}
	char *dom = strdup(rel + bl + 1);
	char *dev = strchr(dom, '/');
	if (dev) {
		*dev++ = 0;
		char *slash = strchr(dev, '/');
		if (slash)
			*slash = 0;
		process(dom, dev);
	} else {
		rescan(); /* a whole domain appeared or went */
	}
	free(dom);
}

static void find_tapctl(void)
{
	const char *env = getenv("TAPCTL");
	if (env && *env) {
		snprintf(g_tapctl, sizeof(g_tapctl), "%s", env);
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	*slash = 0;
	const char *cand[] = {"tap-ctl", "../bin/tap-ctl"};
	for (int i = 0; i < 2; i++) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof(p), "%s/%s", self, cand[i]);
		if (access(p, X_OK) == 0) {
			snprintf(g_tapctl, sizeof(g_tapctl), "%s", p);
			return;
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tapback [--xenstored-path SOCKET] [--tap-ctl PATH] [--timeout S]\n"
		"               [--base PATH]\n"
		"The backend of Xen VBDs served by tapdisk over the blkif ring: watches\n"
		"BASE (default backend/vbd, i.e. /local/domain/0/backend/vbd) in xenstore,\n"
		"takes the devices whose script is " SCRIPT_NAME " (xl disk line\n"
		"script=" SCRIPT_NAME "), runs the blkback state machine for them and hands\n"
		"each guest's ring to the tapdisk the hotplug script started\n"
		"(tap-ctl xen-connect). Other VBDs are left alone. docs/XEN.md.\n"
		"Runs in the foreground, logs to stderr, exits on SIGTERM (tapdisks keep\n"
		"running). tap-ctl is $TAPCTL, else next to tapback, else on PATH.\n"
		"  --xenstored-path SOCKET  xenstore socket (sets XENSTORED_PATH)\n"
		"  --tap-ctl PATH           the tap-ctl program\n"
		"  --timeout S              deadline of each tap-ctl call (default 30)\n"
		"  --base PATH              the xenstore directory to watch (default backend/vbd)\n"
		"  -h, --help               print this help and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"xenstored-path", required_argument, NULL, 'x'},
	    {"tap-ctl", required_argument, NULL, 'c'},
	    {"timeout", required_argument, NULL, 't'},
	    {"base", required_argument, NULL, 'b'},
	    {0},
	};
	int c;
	find_tapctl();
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'x':
			setenv("XENSTORED_PATH", optarg, 1);
			break;
		case 'c':
			snprintf(g_tapctl, sizeof(g_tapctl), "%s", optarg);
			break;
		case 't':
			g_timeout = atoi(optarg);
			if (g_timeout <= 0 || g_timeout > 3600) {
				fprintf(stderr, "tapback: --timeout must be 1..3600 seconds\n");
				return 2;
			}
			break;
		case 'b':
			g_base = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tapback: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL); /* before xs_watch starts its thread */
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);

	g_xs = xs_open(0);
	if (!g_xs) {
		const char *p = getenv("XENSTORED_PATH");
		logmsg("cannot connect to xenstore%s%s: %s", p ? " at " : "", p ? p : "",
		       strerror(errno));
		return 1;
	}
	if (!xs_watch(g_xs, g_base, "be")) {
		logmsg("cannot watch %s: %s", g_base, strerror(errno));
		return 1;
	}
	/* a dead domain's frontends vanish: look at every device again */
	if (!xs_watch(g_xs, "@releaseDomain", "rel"))
		logmsg("cannot watch @releaseDomain: %s", strerror(errno));
	logmsg("watching %s for %s devices (tap-ctl: %s)", g_base, SCRIPT_NAME, g_tapctl);
	int xfd = xs_fileno(g_xs);
	for (;;) {
		struct pollfd p[2] = {{.fd = xfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents) {
			logmsg("stopping (running tapdisks are left serving)");
			break;
		}
		if (p[0].revents & (POLLHUP | POLLERR)) {
			logmsg("xenstore connection lost");
			xs_close(g_xs);
			return 1;
		}
		char **ev;
		while ((ev = xs_check_watch(g_xs))) {
			on_event(ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
			free(ev);
		}
		if (errno != EAGAIN) {
			logmsg("xenstore connection lost: %s", strerror(errno));
			xs_close(g_xs);
			return 1;
		}
	}
	while (g_vbds) {
		struct vbd *v = g_vbds;
		g_vbds = v->next;
		v->next = NULL;
		free(v->fe_token); /* no unwatch on the way out */
		v->fe_token = NULL;
		forget(v);
	}
	xs_close(g_xs);
	return 0;
}
