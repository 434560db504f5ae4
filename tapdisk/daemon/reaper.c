#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/daemon/reaper.h"

#define MAX_PATHS 4

static int chan = -1; /* the tapdisk's end */

struct watched {
	char path[4096];
	dev_t dev;
	ino_t ino;
};

static void remove_all(const struct watched *w, int n)
{
	struct stat st;

	for (int i = 0; i < n; i++)
		if (lstat(w[i].path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == w[i].dev &&
		    st.st_ino == w[i].ino)
			unlink(w[i].path);
}

static void helper(int fd)
{
	struct watched w[MAX_PATHS];
	char msg[4100];
	int n = 0;
	bool sealed = false;

	prctl(PR_SET_NAME, "tapdisk-sockets", 0, 0, 0);
	for (;;) {
		ssize_t len = recv(fd, msg, sizeof(msg) - 1, 0);
		struct stat st;

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0)
			break; /* the tapdisk is gone */
		msg[len] = 0;
		if (msg[0] == 'F') {
			remove_all(w, n);
			if (send(fd, "D", 1, MSG_NOSIGNAL) < 0) {
				/* it exits either way */
			}
			_exit(0);
		}
		if (sealed)
			continue;
		if (msg[0] == 'S') {
			sealed = true;
		} else if (msg[0] == 'A' && n < MAX_PATHS && lstat(msg + 1, &st) == 0 &&
			   S_ISSOCK(st.st_mode)) {
			snprintf(w[n].path, sizeof(w[n].path), "%.4095s", msg + 1);
			w[n].dev = st.st_dev;
			w[n].ino = st.st_ino;
			n++;
		}
	}
	remove_all(w, n);
	_exit(0);
}

int td_reaper_start(void)
{
	int sv[2];
	pid_t pid;

	if (geteuid() != 0 || chan >= 0)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -errno;
	}
	if (pid == 0) {
		int fd = sv[1];

		/* a terminal's ^C or a SIGTERM to the group must not stop it before
		 * the tapdisk has finished */
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		for (int i = 0; i < 1024; i++)
			if (i != fd && i != STDERR_FILENO)
				close(i);
		helper(fd);
	}
	close(sv[1]);
	chan = sv[0];
	return 0;
}

void td_reaper_add(const char *path)
{
	char msg[4100];
	int n;

	if (chan < 0)
		return;
	n = snprintf(msg, sizeof(msg), "A%s", path);
	if (n > 0 && (size_t)n < sizeof(msg) && send(chan, msg, (size_t)n, MSG_NOSIGNAL) < 0) {
		/* the helper is gone: the sockets stay, as without it */
	}
}

void td_reaper_seal(void)
{
	if (chan >= 0 && send(chan, "S", 1, MSG_NOSIGNAL) < 0) {
		/* as above */
	}
}

void td_reaper_finish(void)
{
	char c;

	if (chan < 0)
		return;
	if (send(chan, "F", 1, MSG_NOSIGNAL) == 1) {
		while (recv(chan, &c, 1, 0) < 0 && errno == EINTR)
			;
	}
	close(chan);
	chan = -1;
}

int td_reaper_active(void)
{
	return chan >= 0;
}
