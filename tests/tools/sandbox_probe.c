/* sandbox_probe: what can code running inside a tapdisk's sandbox do?
 *
 *   sandbox_probe [--uid N --gid N] [--profile files|cluster|none]
 *                 ACTION [ARG] [ACTION [ARG]...]
 *
 * Applies tapdisk's own sandbox code (tapdisk/daemon/sandbox.c) to this process,
 * in tapdisk's order: td_sandbox_drop() to uid/gid when --uid is given
 * (--gid defaults to the uid), then td_sandbox_seccomp() (files, the
 * default) or td_sandbox_seccomp_cluster() (cluster), or no filter (none).
 * Then it performs each action in order and prints one line per action,
 * "ACTION ARG: ok" or "ACTION ARG: <strerror text>". Actions:
 *
 *   open-ro PATH           open(2) read-only
 *   open-rw PATH           open(2) read-write
 *   connect PATH           an AF_UNIX stream socket connected to PATH
 *   keyctl-read DESC       a "user" key DESC searched in @u, @s and @us,
 *                          then read
 *   socket-inet            an AF_INET stream socket
 *   fork                   a child process (it exits at once)
 *   ioctl-tiocsti          TIOCSTI: one keystroke pushed into the input of
 *                          a terminal (below)
 *   read-proc-mem PID      open /proc/PID/mem
 *
 * ioctl-tiocsti uses a pseudo-terminal opened before the sandbox, made
 * the controlling terminal of a new session: the position of a tapdisk
 * started from an administrator's terminal. The kernel allows TIOCSTI on
 * one's own controlling terminal (dev.tty.legacy_tiocsti=1) and to root
 * on any terminal, so without a filter the action succeeds, as root or
 * not; a filter cannot see which terminal a descriptor is, so the pty
 * stands for any of them (fd 0 is never used: the keystroke would land in
 * the shell that ran the probe). Success is checked by reading the byte
 * back from the terminal.
 *
 * Exit status: 0 when every action could be attempted (whatever its
 * result), 1 when the sandbox could not be applied, 2 usage. Sanitizer
 * builds install no seccomp filter (tapdisk/daemon/sandbox.c says so on stderr):
 * tests must not expect EPERM from them. */
#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tapdisk/core/log.h"
#include "tapdisk/daemon/sandbox.h"

#define MAX_ACTIONS 64

struct action {
	const char *name;
	const char *arg; /* NULL for actions without one */
};

static const struct {
	const char *name;
	bool has_arg;
} known[] = {
    {"open-ro", true},	    {"open-rw", true}, {"connect", true},	 {"keyctl-read", true},
    {"socket-inet", false}, {"fork", false},   {"ioctl-tiocsti", false}, {"read-proc-mem", true},
};

/* the terminal for ioctl-tiocsti, opened before the sandbox */
static int tty_fd = -1;
static int tty_err; /* errno when it could not be set up */

static void usage(FILE *f)
{
	fprintf(f, "Usage: sandbox_probe [--uid N --gid N] [--profile files|cluster|none] "
		   "ACTION [ARG] [ACTION [ARG]...]\n"
		   "Actions: open-ro PATH, open-rw PATH, connect PATH, keyctl-read DESCRIPTION,\n"
		   "socket-inet, fork, ioctl-tiocsti, read-proc-mem PID\n");
}

static int find_known(const char *name)
{
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(known[i].name, name))
			return (int)i;
	return -1;
}

static int parse_id(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > 0x7fffffffUL)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* A pty in raw mode as the controlling terminal of a new session. A
 * process group leader cannot start a session, so then a child carries on
 * and the parent waits for it and passes on its exit status. */
static void tty_setup(void)
{
	struct termios t;
	int master, slave = -1;
	pid_t pid;

	if (setsid() < 0) {
		pid = fork();
		if (pid < 0) {
			tty_err = errno;
			return;
		}
		if (pid > 0) {
			int st;

			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
		}
		if (setsid() < 0) {
			tty_err = errno;
			return;
		}
	}
	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    (slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0 ||
	    ioctl(slave, TIOCSCTTY, 0) < 0 || tcgetattr(slave, &t) < 0) {
		tty_err = errno;
		if (slave >= 0)
			close(slave);
		return;
	}
	cfmakeraw(&t);
	tcsetattr(slave, TCSANOW, &t);
	/* the master stays open (leaked on purpose): the pty lives as long as
	 * the probe */
	tty_fd = slave;
}

static int do_tiocsti(void)
{
	char c = 'X', back = 0;

	if (tty_fd < 0)
		return tty_err ? tty_err : ENOTTY;
	if (ioctl(tty_fd, TIOCSTI, &c) < 0)
		return errno;
	/* the keystroke is now in the terminal's input: read it back */
	if (read(tty_fd, &back, 1) != 1)
		return errno ? errno : EIO;
	return back == c ? 0 : EIO;
}

static int do_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int do_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, rc = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		rc = errno;
	close(fd);
	return rc;
}

/* The first error that is not "no such key" wins: under the filter every
 * search fails with EPERM, outside it an unreachable key is ENOKEY. */
static int do_keyctl_read(const char *desc)
{
	static const key_serial_t rings[] = {KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING,
					     KEY_SPEC_USER_SESSION_KEYRING};
	key_serial_t id = -1;
	int rc = ENOKEY;
	char buf[4096];
	long n;

	for (size_t i = 0; i < sizeof(rings) / sizeof(rings[0]) && id < 0; i++) {
		id = keyctl_search(rings[i], "user", desc, 0);
		if (id < 0 && errno != ENOKEY && rc == ENOKEY)
			rc = errno;
	}
	if (id < 0)
		return rc;
	n = keyctl_read(id, buf, sizeof(buf));
	rc = n < 0 ? errno : 0;
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

static int do_socket_inet(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int do_fork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0); /* may itself be refused: the child is reaped at exit */
	return 0;
}

static int do_read_proc_mem(const char *pid)
{
	char path[64];
	unsigned v;

	if (parse_id(pid, &v) < 0)
		return EINVAL;
	snprintf(path, sizeof(path), "/proc/%u/mem", v);
	return do_open(path, O_RDONLY);
}

static int run(const struct action *a)
{
	if (!strcmp(a->name, "open-ro"))
		return do_open(a->arg, O_RDONLY);
	if (!strcmp(a->name, "open-rw"))
		return do_open(a->arg, O_RDWR);
	if (!strcmp(a->name, "connect"))
		return do_connect(a->arg);
	if (!strcmp(a->name, "keyctl-read"))
		return do_keyctl_read(a->arg);
	if (!strcmp(a->name, "socket-inet"))
		return do_socket_inet();
	if (!strcmp(a->name, "fork"))
		return do_fork();
	if (!strcmp(a->name, "ioctl-tiocsti"))
		return do_tiocsti();
	return do_read_proc_mem(a->arg);
}

int main(int argc, char **argv)
{
	struct action acts[MAX_ACTIONS];
	const char *profile = "files";
	unsigned uid = 0, gid = 0;
	bool drop = false, have_gid = false, want_tty = false;
	char err[1024];
	int i, n = 0, rc;

	td_log_init("sandbox_probe");
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--uid") && parse_id(argv[i + 1], &uid) == 0) {
			drop = true;
		} else if (!strcmp(argv[i], "--gid") && parse_id(argv[i + 1], &gid) == 0) {
			have_gid = true;
		} else if (!strcmp(argv[i], "--profile") &&
			   (!strcmp(argv[i + 1], "files") || !strcmp(argv[i + 1], "cluster") ||
			    !strcmp(argv[i + 1], "none"))) {
			profile = argv[i + 1];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (have_gid && !drop) {
		fprintf(stderr, "sandbox_probe: --gid needs --uid\n");
		return 2;
	}
	if (!have_gid)
		gid = uid;
	for (; i < argc; i++) {
		int k = find_known(argv[i]);

		if (k < 0 || n == MAX_ACTIONS || (known[k].has_arg && i + 1 >= argc)) {
			fprintf(stderr, "sandbox_probe: %s '%s'\n",
				k < 0 ? "unknown action" : "missing argument or too many actions",
				argv[i]);
			usage(stderr);
			return 2;
		}
		acts[n].name = known[k].name;
		acts[n].arg = known[k].has_arg ? argv[++i] : NULL;
		want_tty |= !strcmp(acts[n].name, "ioctl-tiocsti");
		n++;
	}
	if (n == 0) {
		usage(stderr);
		return 2;
	}
	/* what the actions need from before the sandbox */
	if (want_tty)
		tty_setup();
	if (drop && td_sandbox_drop((uid_t)uid, (gid_t)gid, err, sizeof(err)) < 0) {
		fprintf(stderr, "sandbox_probe: %s\n", err);
		return 1;
	}
	rc = 0;
	if (!strcmp(profile, "files"))
		rc = td_sandbox_seccomp(err, sizeof(err));
	else if (!strcmp(profile, "cluster"))
		rc = td_sandbox_seccomp_cluster(err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sandbox_probe: %s\n", err);
		return 1;
	}
	for (i = 0; i < n; i++) {
		int e = run(&acts[i]);

		printf("%s%s%s: %s\n", acts[i].name, acts[i].arg ? " " : "",
		       acts[i].arg ? acts[i].arg : "", e ? strerror(e) : "ok");
		fflush(stdout);
	}
	return 0;
}
