#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keymgr/keyring.h"
#include "keymgr/statedir.h"
#include "tapdisk/core/util.h"

const char *td_statedir(void)
{
	const char *e = getenv("TDCRYPT_STATE_DIR");
	return e && *e ? e : "/var/lib/tdcrypt";
}

static int mkdir_one(const char *p, char *err, size_t errlen)
{
	if (mkdir(p, 0700) == 0 || errno == EEXIST)
		return 0;
	int rc = -errno;
	snprintf(err, errlen, "cannot create the state directory %s: %s", p, strerror(-rc));
	return rc;
}

int td_statedir_path(const uint8_t uuid[16], const char *name, int create, char *out, size_t outlen,
		     char *err, size_t errlen)
{
	char u[37], dir[4096];
	int rc;

	td_uuid_str(uuid, u);
	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", td_statedir(), u) >= sizeof(dir) ||
	    (size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen) {
		snprintf(err, errlen, "state directory path too long");
		return -ENAMETOOLONG;
	}
	if (create) {
		rc = mkdir_one(td_statedir(), err, errlen);
		if (rc == 0)
			rc = mkdir_one(dir, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int gen_fd_cached(const uint8_t uuid[16]);

int td_state_gen_read(const uint8_t uuid[16], uint64_t *gen, char *err, size_t errlen)
{
	char path[4200], buf[64];
	int rc, fd, own = 0;
	ssize_t n;

	*gen = 0;
	rc = td_statedir_path(uuid, "generation", 0, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	fd = gen_fd_cached(uuid);
	if (fd < 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			if (errno == ENOENT)
				return 0;
			rc = -errno;
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
			return rc;
		}
		own = 1;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	rc = n < 0 ? -errno : 0;
	if (own)
		close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	if (n == 0)
		return 0; /* created, never written */
	buf[n] = 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n')) {
		snprintf(err, errlen, "%s is malformed (expected a decimal generation)", path);
		return -EINVAL;
	}
	*gen = v;
	return 0;
}

static struct {
	uint8_t uuid[16];
	int fd;
} gen_fds[8];
static int gen_nfds;

static int gen_fd_cached(const uint8_t uuid[16])
{
	for (int i = 0; i < gen_nfds; i++)
		if (!memcmp(gen_fds[i].uuid, uuid, 16))
			return gen_fds[i].fd;
	return -1;
}

static int gen_fd(const uint8_t uuid[16], char *err, size_t errlen)
{
	char path[4200];
	int i, rc, fd;

	for (i = 0; i < gen_nfds; i++)
		if (!memcmp(gen_fds[i].uuid, uuid, 16))
			return gen_fds[i].fd;
	rc = td_statedir_path(uuid, "generation", 1, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	if (gen_nfds < (int)(sizeof(gen_fds) / sizeof(gen_fds[0]))) {
		memcpy(gen_fds[gen_nfds].uuid, uuid, 16);
		gen_fds[gen_nfds++].fd = fd;
	}
	return fd;
}

int td_state_gen_prepare(const uint8_t uuid[16], char *err, size_t errlen)
{
	int fd = gen_fd(uuid, err, errlen);
	return fd < 0 ? fd : 0;
}

int td_state_gen_write(const uint8_t uuid[16], uint64_t gen, char *err, size_t errlen)
{
	char buf[32];
	int fd, rc;

	fd = gen_fd(uuid, err, errlen);
	if (fd < 0)
		return fd;
	snprintf(buf, sizeof(buf), "%020" PRIu64 "\n", gen);
	if (pwrite(fd, buf, 21, 0) != 21 || fdatasync(fd) < 0) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot record generation %" PRIu64 " in %s: %s", gen,
			 td_statedir(), strerror(-rc));
		return rc;
	}
	return 0;
}

const struct td_trust_ops td_statedir_trust = {
    .gen_prepare = td_state_gen_prepare,
    .gen_read = td_state_gen_read,
    .gen_write = td_state_gen_write,
};
