/*
 * tapback — the xenstore side of a tap: VBD.
 *
 * Watches backend/vbd (relative to dom0's home, i.e.
 * /local/domain/0/backend/vbd) through the real libxenstore. For each
 * backend/vbd/<domid>/<devid> whose `state` the toolstack has written
 * (libxl writes params, mode, frontend and state=1 in one transaction) it
 * starts a tapdisk with `tap-ctl create`, publishes the disk geometry,
 * features and the NBD socket the data path attaches to, sets
 * hotplug-status=connected and state=2 (InitWait), then follows the
 * frontend's state: 3/4 -> Connected, 5 -> Closing, 6 -> Closing, Closed.
 * When the backend node disappears the tapdisk is destroyed.
 *
 * Any failure (bad node, tap-ctl error, timeout) is written to the device's
 * hotplug-error, hotplug-status=error, and logged; the device is then left
 * alone until its node is removed. Children run with a deadline, so a stuck
 * tap-ctl cannot hang the daemon. On SIGTERM the daemon exits and leaves
 * running tapdisks alone (the VMs keep their disks); a restarted tapback
 * adopts devices whose hotplug-status it finds already set.
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
#define MAX_DOMID 0x7FEF /* below DOMID_FIRST_RESERVED */
#define MAX_DEVID ((1u << 29) - 1) /* covers the extended xvd encoding */
#define ERRLEN 512

struct vbd {
	char *dom, *dev; /* node names as found */
	char *be;	 /* backend path */
	char *fe;	 /* frontend path */
	char *fe_token;
	char *sock;
	int state; /* backend state we last wrote */
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
		struct pollfd p[2] = { { .fd = po[0], .events = POLLIN },
				       { .fd = pe[0], .events = POLLIN } };
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

/* Size in bytes of the tapdisk serving sock, from `tap-ctl list --json`. */
static long long tapdisk_size(const char *sock, char *err, size_t errsz)
{
	static char out[1 << 20];
	char *argv[] = { g_tapctl, "list", "--json", NULL };
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

/*
 * The tapdisk spec from params: optional "tap:"/"tap2:"/"tapdisk:" prefixes
 * are dropped; what remains must be DRIVER[:DRIVER...]:/PATH. NULL + msg
 * when it is not.
 */
static char *spec_of(const char *params, char *msg, size_t msgsz)
{
	const char *p = params;
	for (const char *pre[] = { "tap:", "tap2:", "tapdisk:" }, **q = pre; q < pre + 3; q++)
		if (!strncmp(p, *q, strlen(*q)))
			p += strlen(*q);
	for (const char *c = params; *c; c++)
		if (!isprint((unsigned char)*c)) {
			snprintf(msg, msgsz, "params contains a control character");
			return NULL;
		}
	const char *colon = strchr(p, ':');
	if (!*p || *p == '/' || !colon || colon == p) {
		snprintf(msg, msgsz, "params '%s' names no driver (expected [tap:]DRIVER:/PATH)",
			 params);
		return NULL;
	}
	const char *path = strrchr(p, ':') + 1;
	/* driver options (fault,op=read:...) may contain ':'-free commas only */
	if (*path != '/') {
		snprintf(msg, msgsz, "params '%s' has no absolute image path", params);
		return NULL;
	}
	if (*p == '-') {
		snprintf(msg, msgsz, "params '%s' starts with '-'", params);
		return NULL;
	}
	return strdup(p);
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

static void destroy_tapdisk(struct vbd *v)
{
	char out[4096], err[ERRLEN];
	char *argv[] = { g_tapctl, "destroy", "-s", v->sock, NULL };
	int rc = run(argv, out, sizeof(out), err, sizeof(err));
	if (rc)
		logmsg("%s: tap-ctl destroy -s %s failed: %s", v->be, v->sock, err);
	else
		logmsg("%s: tapdisk on %s destroyed", v->be, v->sock);
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

/* Starts the tapdisk for a new device and publishes it. */
static void connect_vbd(struct vbd *v)
{
	char msg[ERRLEN], out[4096], err[ERRLEN];
	char *params = NULL, *mode = NULL, *spec = NULL;

	if (!all_digits(v->dom) || strtoul(v->dom, NULL, 10) > MAX_DOMID) {
		fail(v, "domid '%s' is not a domain id (0..%d)", v->dom, MAX_DOMID);
		goto out;
	}
	if (!all_digits(v->dev) || strtoul(v->dev, NULL, 10) > MAX_DEVID) {
		fail(v, "devid '%s' is not a virtual device number (0..%u)", v->dev, MAX_DEVID);
		goto out;
	}
	params = xs_get(v->be, "params");
	if (!params || !*params) {
		fail(v, "no params node: the toolstack must write params (e.g. tap:crypt:qcow2:/img)");
		goto out;
	}
	spec = spec_of(params, msg, sizeof(msg));
	if (!spec) {
		fail(v, "%s", msg);
		goto out;
	}
	mode = xs_get(v->be, "mode");
	bool ro;
	if (!mode || !strcmp(mode, "w") || !strcmp(mode, "rw"))
		ro = false;
	else if (!strcmp(mode, "r") || !strcmp(mode, "ro"))
		ro = true;
	else {
		fail(v, "mode '%s' is neither r nor w", mode);
		goto out;
	}
	char *fe = xs_get(v->be, "frontend");
	if (fe && *fe == '/')
		v->fe = fe;
	else {
		free(fe);
		v->fe = xasprintf("/local/domain/%s/device/vbd/%s", v->dom, v->dev);
	}

	char tmo[16];
	snprintf(tmo, sizeof(tmo), "%d", g_timeout);
	char *argv[] = { g_tapctl, "create", "-a", spec, "-t", tmo, ro ? "-r" : NULL, NULL };
	logmsg("%s: starting tapdisk for %s%s", v->be, spec, ro ? " (read-only)" : "");
	int rc = run(argv, out, sizeof(out), err, sizeof(err));
	if (rc) {
		fail(v, "tap-ctl create -a %s: %s", spec, *err ? err : "failed");
		goto out;
	}
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
	const char *s = strstr(out, "socket=");
	if (strncmp(out, "nbd+unix://", 11) || !s || !s[7]) {
		fail(v, "tap-ctl create printed '%s', not an nbd+unix URI", out);
		goto out;
	}
	v->sock = strdup(s + 7);
	long long size = tapdisk_size(v->sock, err, sizeof(err));
	if (size < 0) {
		destroy_tapdisk(v);
		fail(v, "%s", err);
		goto out;
	}
	char sectors[32], info[8];
	snprintf(sectors, sizeof(sectors), "%lld", size / 512);
	snprintf(info, sizeof(info), "%d", ro ? VDISK_READONLY : 0);
	if (!xs_put(v->be, "sectors", sectors, "sector-size", "512", "physical-sector-size", "4096",
		    "info", info, "feature-flush-cache", "1", "feature-discard", "1", "nbd-socket",
		    v->sock, "nbd-uri", out, "hotplug-status", "connected", NULL)) {
		destroy_tapdisk(v);
		v->failed = true;
		goto out;
	}
	logmsg("%s: serving %s on %s, %s sectors", v->be, spec, v->sock, sectors);
	set_state(v, XB_INITWAIT);
	watch_frontend(v);
out:
	free(params);
	free(mode);
	free(spec);
}

/* Moves the backend along with the frontend's state. */
static void follow_frontend(struct vbd *v)
{
	int fe = xs_get_int(v->fe, "state", -1);
	if (fe < 0)
		return;
	switch (fe) {
	case XB_INITIALISING:
	case XB_INITWAIT:
		if (v->state == XB_CLOSED) /* frontend came back (e.g. reboot) */
			set_state(v, XB_INITWAIT);
		break;
	case XB_INITIALISED:
	case XB_CONNECTED:
		if (v->state == XB_INITWAIT)
			set_state(v, XB_CONNECTED);
		break;
	case XB_CLOSING:
		if (v->state != XB_CLOSING && v->state != XB_CLOSED)
			set_state(v, XB_CLOSING);
		break;
	case XB_CLOSED:
		if (v->state != XB_CLOSING && v->state != XB_CLOSED)
			set_state(v, XB_CLOSING);
		if (v->state != XB_CLOSED)
			set_state(v, XB_CLOSED);
		break;
	default:
		logmsg("%s: frontend %s/state is %d, ignored", v->be, v->fe, fe);
		break;
	}
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
			logmsg("%s: removed", be);
			if (v->sock)
				destroy_tapdisk(v);
			forget(v);
		}
		goto out;
	}
	if (!v) {
		int state = xs_get_int(be, "state", -1);
		if (state < 0) /* toolstack not done writing yet */
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
		char *hs = xs_get(be, "hotplug-status");
		if (hs && !strcmp(hs, "connected")) { /* adopt after a restart */
			v->sock = xs_get(be, "nbd-socket");
			char *fe = xs_get(be, "frontend");
			v->fe = fe ? fe : xasprintf("/local/domain/%s/device/vbd/%s", dom, dev);
			logmsg("%s: adopted (tapdisk on %s)", be, v->sock ? v->sock : "?");
			watch_frontend(v);
		} else if (hs) {
			v->failed = true;
		} else {
			connect_vbd(v);
		}
		free(hs);
		goto out;
	}
	if (!v->failed && v->fe)
		follow_frontend(v);
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
	const char *cand[] = { "tap-ctl", "../bin/tap-ctl" };
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
	fprintf(f, "Usage: tapback [--xenstored-path SOCKET] [--tap-ctl PATH] [--timeout S]\n"
		   "               [--base PATH]\n"
		   "Serves Xen tap: VBDs: watches BASE (default backend/vbd, i.e.\n"
		   "/local/domain/0/backend/vbd) in xenstore and runs one tapdisk per\n"
		   "backend/vbd/<domid>/<devid> through tap-ctl, publishing its NBD socket.\n"
		   "Runs in the foreground, logs to stderr, exits on SIGTERM (tapdisks keep\n"
		   "running). tap-ctl is $TAPCTL, else next to tapback, else on PATH.\n"
		   "  --xenstored-path SOCKET  xenstore socket (sets XENSTORED_PATH)\n"
		   "  --timeout S              tap-ctl create -t S (default 30)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "xenstored-path", required_argument, NULL, 'x' },
		{ "tap-ctl", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "base", required_argument, NULL, 'b' },
		{ 0 },
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
	logmsg("watching %s (tap-ctl: %s)", g_base, g_tapctl);
	int xfd = xs_fileno(g_xs);
	for (;;) {
		struct pollfd p[2] = { { .fd = xfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
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
