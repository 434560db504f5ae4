#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/daemon/uidalloc.h"

/* A root-owned directory, created if missing; never a link. */
static int root_dir(int parent, const char *name, mode_t mode, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (mkdirat(parent, name, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", name, strerror(errno));
		return -errno;
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", name, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022)) {
		snprintf(err, errlen, "%s must be a directory of root's that only root can write",
			 name);
		close(fd);
		return -EPERM;
	}
	return fd;
}

int td_uid_allocate(const struct td_hostconf *hc, uid_t *uid, int *lock_fd, char *err,
		    size_t errlen)
{
	uint64_t span = (uint64_t)hc->uid_last - hc->uid_first + 1, start = 0, i;
	int run, top, dir = -1, rc = -EAGAIN;

	run = root_dir(AT_FDCWD, "/run", 0755, err, errlen);
	if (run < 0)
		return run;
	top = root_dir(run, "tdcrypt", 0755, err, errlen);
	close(run);
	if (top < 0)
		return top;
	dir = root_dir(top, "uids", 0700, err, errlen);
	close(top);
	if (dir < 0)
		return dir;
	if (getrandom(&start, sizeof(start), 0) != sizeof(start))
		start = (uint64_t)getpid();
	for (i = 0; i < span; i++) {
		uid_t u = (uid_t)(hc->uid_first + (start + i) % span);
		char name[16];
		int fd;

		if (getpwuid(u) || getgrgid((gid_t)u))
			continue; /* an account's: never shared with a VBD */
		snprintf(name, sizeof(name), "%u", (unsigned)u);
		fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			char pid[24];
			int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

			if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) {
				/* the pid is informational only */
			}
			*uid = u;
			*lock_fd = fd;
			rc = 0;
			break;
		}
		close(fd);
	}
	close(dir);
	if (rc < 0)
		snprintf(err, errlen,
			 "no free uid in the VBD range %u-%u (%s): every one is in use",
			 (unsigned)hc->uid_first, (unsigned)hc->uid_last,
			 hc->path[0] ? hc->path : "the default range");
	return rc;
}
