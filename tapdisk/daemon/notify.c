/* sd_notify's readiness message, by hand (notify.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tapdisk/daemon/notify.h"

static int notify_fd = -1;

int td_notify_open(void)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	socklen_t salen;
	int fd, e;

	if (!name || !*name)
		return 0;
	len = strlen(name);
	if ((name[0] != '/' && name[0] != '@') || len >= sizeof(sa.sun_path)) {
		unsetenv("NOTIFY_SOCKET");
		return -EINVAL;
	}
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = 0; /* abstract: no terminating NUL counted */
	else
		len++;
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	unsetenv("NOTIFY_SOCKET");
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	notify_fd = fd;
	return 0;
}

void td_notify_ready(const char *fmt, ...)
{
	static const char head[] = "READY=1\nSTATUS=";
	char msg[1200];
	va_list ap;

	if (notify_fd < 0)
		return;
	memcpy(msg, head, sizeof(head));
	va_start(ap, fmt);
	if (vsnprintf(msg + sizeof(head) - 1, sizeof(msg) - sizeof(head) + 1, fmt, ap) < 0)
		msg[sizeof(head) - 1] = 0;
	va_end(ap);
	/* a long status is cut; the message still goes */
	if (send(notify_fd, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
		/* the manager went away: nothing to tell it */
	}
	close(notify_fd);
	notify_fd = -1;
}
