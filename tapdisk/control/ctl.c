#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tapdisk/control/ctl.h"

const char *td_rundir(void)
{
	const char *d = getenv("TAPDISK_RUNDIR");

	return d && *d ? d : "/run/tapdisk";
}

int td_rundir_ensure(char *err, size_t errlen)
{
	const char *d = td_rundir();
	struct stat st;

	if (mkdir(d, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create runtime directory %s: %s (set TAPDISK_RUNDIR)",
			 d, strerror(errno));
		return -errno;
	}
	if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "runtime directory %s is not a directory", d);
		return -ENOTDIR;
	}
	return 0;
}

void td_ctl_path(int minor, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tapdisk.%d.ctl", td_rundir(), minor);
}

const char *td_kv_get(const struct td_kv *kv, const char *key)
{
	int i;

	for (i = 0; i < kv->n; i++)
		if (!strcmp(kv->key[i], key))
			return kv->val[i];
	return NULL;
}

void td_kv_free(struct td_kv *kv)
{
	free(kv->buf);
	memset(kv, 0, sizeof(*kv));
}

static int parse_kv(char *text, struct td_kv *kv)
{
	char *line, *save = NULL;

	kv->buf = text;
	kv->n = 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');

		if (!eq || kv->n == 64)
			continue;
		*eq = 0;
		kv->key[kv->n] = line;
		kv->val[kv->n] = eq + 1;
		kv->n++;
	}
	return 0;
}

static long ms_left(const struct timespec *start, int timeout_ms)
{
	struct timespec now;
	long el;

	clock_gettime(CLOCK_MONOTONIC, &now);
	el = (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
	return timeout_ms - el;
}

/* The command line and its descriptors in one message. */
static int send_cmd(int fd, const char *cmd, const int *fds, int nfds)
{
	size_t len = strlen(cmd);
	char *line = malloc(len + 2);
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	char *cbuf = NULL;
	ssize_t n;
	int rc = 0;

	if (!line)
		return -ENOMEM;
	memcpy(line, cmd, len);
	line[len++] = '\n';
	iov.iov_base = line;
	iov.iov_len = len;
	if (nfds > 0) {
		struct cmsghdr *ch;

		cbuf = calloc(1, CMSG_SPACE(sizeof(int) * (size_t)nfds));
		if (!cbuf) {
			free(line);
			return -ENOMEM;
		}
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		ch = CMSG_FIRSTHDR(&mh);
		ch->cmsg_level = SOL_SOCKET;
		ch->cmsg_type = SCM_RIGHTS;
		ch->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(ch), fds, sizeof(int) * (size_t)nfds);
	}
	n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (n < 0)
		rc = -errno;
	else if ((size_t)n < len && send(fd, line + n, len - (size_t)n, MSG_NOSIGNAL) < 0)
		rc = -errno;
	free(cbuf);
	free(line);
	return rc;
}

int td_ctl_call(const char *path, const char *cmd, struct td_kv *kv, int timeout_ms, char *err,
		size_t errlen)
{
	return td_ctl_call_fds(path, cmd, NULL, 0, kv, timeout_ms, err, errlen);
}

int td_ctl_call_fds(const char *path, const char *cmd, const int *fds, int nfds, struct td_kv *kv,
		    int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timespec start;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = -1, rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		goto out;
	}
	rc = send_cmd(fd, cmd, fds, nfds);
	if (rc < 0) {
		snprintf(err, errlen, "cannot send to %s: %s", path, strerror(-rc));
		goto out;
	}
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long left = timeout_ms < 0 ? -1 : ms_left(&start, timeout_ms);
		ssize_t n;

		if (timeout_ms >= 0 && left <= 0) {
			rc = -ETIMEDOUT;
			snprintf(err, errlen, "no answer from %s to '%s' within %d ms", path, cmd,
				 timeout_ms);
			goto out;
		}
		if (poll(&pfd, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (len + 4096 > cap) {
			char *nb;

			if (cap > (1u << 20)) {
				rc = -E2BIG;
				snprintf(err, errlen, "reply from %s too long", path);
				goto out;
			}
			nb = realloc(buf, cap + 8192);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap += 8192;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			rc = -errno;
			snprintf(err, errlen, "read from %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (!buf) {
		rc = -EPIPE;
		snprintf(err, errlen, "tapdisk at %s closed the connection without answering",
			 path);
		goto out;
	}
	buf[len] = 0;
	if (strncmp(buf, "ok\n", 3) == 0 || strcmp(buf, "ok") == 0) {
		if (kv) {
			memmove(buf, buf + (len >= 3 ? 3 : len), len - (len >= 3 ? 3 : len) + 1);
			parse_kv(buf, kv);
			buf = NULL;
		}
		rc = 0;
	} else {
		char *nl = strchr(buf, '\n');

		if (nl)
			*nl = 0;
		snprintf(err, errlen, "%s", strncmp(buf, "error: ", 7) == 0 ? buf + 7 : buf);
		rc = -EREMOTEIO;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}
