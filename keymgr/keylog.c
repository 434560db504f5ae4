/* The key-event log file: <statedir>/<uuid>/keylog (keymgr/keylog.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keymgr/keylog.h"
#include "keymgr/statedir.h"

/* Reads all of fd (a regular file of at most TD_KEYLOG_FILE_MAX bytes). */
static int read_all(int fd, const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	size_t got = 0;
	char *b;

	*buf = NULL;
	*len = 0;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;

		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		return -EINVAL;
	}
	if (st.st_size > (off_t)TD_KEYLOG_FILE_MAX) {
		snprintf(err, errlen, "%s is %lld bytes, more than a key-event log may hold (%u)",
			 path, (long long)st.st_size, TD_KEYLOG_FILE_MAX);
		return -EFBIG;
	}
	if (st.st_size == 0)
		return 0;
	b = malloc((size_t)st.st_size);
	if (!b) {
		snprintf(err, errlen, "out of memory reading %s", path);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, b + got, (size_t)st.st_size - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;

			snprintf(err, errlen, "cannot read %s: %s", path,
				 n < 0 ? strerror(-rc) : "file shrank while reading");
			free(b);
			return rc;
		}
		got += (size_t)n;
	}
	*buf = b;
	*len = got;
	return 0;
}

int td_keylog_read(const uint8_t uuid[16], char **buf, size_t *len, char *err, size_t errlen)
{
	char path[4200];
	int fd, rc;

	*buf = NULL;
	*len = 0;
	rc = td_statedir_path(uuid, "keylog", 0, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		snprintf(err, errlen, "cannot open the key-event log %s: %s", path, strerror(-rc));
		return rc;
	}
	flock(fd, LOCK_SH); /* not in the middle of an append */
	rc = read_all(fd, path, buf, len, err, errlen);
	close(fd);
	return rc;
}

/* Fills e (time now, uid = getuid()) and formats its line into line:
 * the line's length, or negative errno. */
static int entry_line(const uint8_t uuid[16], uint64_t seq, const char *op, int slot,
		      const char *outcome, const uint8_t prev[TD_KEYLOG_HASH_LEN],
		      struct td_keylog_entry *e, char *line, size_t linelen)
{
	int rc;

	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->time = (uint64_t)time(NULL);
	e->uid = (uint32_t)getuid();
	memcpy(e->uuid, uuid, 16);
	snprintf(e->op, sizeof(e->op), "%s", op);
	e->slot = slot;
	snprintf(e->outcome, sizeof(e->outcome), "%s", outcome);
	memcpy(e->prev, prev, TD_KEYLOG_HASH_LEN);
	rc = td_keylog_entry_hash(e, e->hash);
	return rc < 0 ? rc : td_keylog_format(e, line, linelen);
}

int td_keylog_verify(const uint8_t uuid[16], const struct td_keylog_anchor *anchor,
		     struct td_keylog_result *res, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	rc = td_keylog_read(uuid, &buf, &len, err, errlen);
	if (rc == 0)
		rc = td_keylog_verify_buf(buf, len, uuid, anchor, res, err, errlen);
	else
		memset(res, 0, sizeof(*res));
	free(buf);
	return rc;
}

/* Opens the log at path (created if missing) and takes an exclusive flock
 * on it. A reset renames the file away while others may be waiting for
 * its lock: whoever gets the lock on a file that is no longer the one at
 * path closes it and tries again, so nothing is ever appended to a log
 * that was set aside. The fd, or negative errno with err set. */
static int open_locked(const char *path, char *err, size_t errlen)
{
	struct stat a, b;
	int tries, fd, rc;

	for (tries = 0; tries < 100; tries++) {
		fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot open the key-event log %s: %s", path,
				 strerror(-rc));
			return rc;
		}
		if (flock(fd, LOCK_EX) < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(-rc));
			close(fd);
			return rc;
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return fd;
		close(fd); /* renamed away (reset) while we waited: take the new one */
	}
	snprintf(err, errlen, "the key-event log %s keeps being replaced; not writing it", path);
	return -EAGAIN;
}

int td_keylog_append(const uint8_t uuid[16], const char *op, int slot, const char *outcome,
		     const struct td_keylog_anchor *cur, struct td_keylog_anchor *next, char *err,
		     size_t errlen)
{
	struct td_keylog_result res;
	struct td_keylog_entry e;
	char path[4200], line[TD_KEYLOG_LINE_MAX + 1], verr[512];
	char *buf = NULL;
	size_t len = 0;
	ssize_t w;
	int fd = -1, rc, n;

	memset(&e, 0, sizeof(e));
	if (!op || !outcome || strlen(op) > TD_KEYLOG_OP_MAX ||
	    strlen(outcome) >= sizeof(e.outcome)) {
		snprintf(err, errlen, "invalid key-event log entry");
		return -EINVAL;
	}
	rc = td_statedir_path(uuid, "keylog", 1, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	fd = open_locked(path, err, errlen);
	if (fd < 0)
		return fd;
	rc = read_all(fd, path, &buf, &len, err, errlen);
	if (rc < 0)
		goto out;
	rc = td_keylog_verify_buf(buf, len, uuid, cur, &res, verr, sizeof(verr));
	if (rc < 0) {
		snprintf(err, errlen,
			 "the key-event log %s fails verification (%s); not extending it "
			 "(see 'vdkey log SPEC --verify')",
			 path, verr);
		goto out;
	}
	n = entry_line(uuid, res.entries, op, slot, outcome, res.head, &e, line, sizeof(line));
	if (n < 0) {
		rc = n;
		snprintf(err, errlen,
			 "invalid key-event log entry (op '%s', slot %d, outcome '%s')", op, slot,
			 outcome);
		goto out;
	}
	w = write(fd, line, (size_t)n);
	if (w != n || fsync(fd) < 0) {
		rc = w < 0 || w == n ? -errno : -EIO;
		if (rc == 0)
			rc = -EIO;
		snprintf(err, errlen, "cannot append to the key-event log %s: %s", path,
			 strerror(-rc));
		if (w > 0 && w != n && ftruncate(fd, (off_t)len) == 0)
			fsync(fd); /* no torn line left behind */
		goto out;
	}
	if (next) {
		next->count = e.seq + 1;
		memcpy(next->head, e.hash, TD_KEYLOG_HASH_LEN);
	}
	rc = 0;
out:
	free(buf);
	close(fd); /* releases the flock */
	return rc;
}

int td_keylog_reset(const uint8_t uuid[16], const struct td_keylog_anchor *cur,
		    struct td_keylog_anchor *next, char *err, size_t errlen)
{
	struct td_keylog_entry e;
	uint8_t prev[TD_KEYLOG_HASH_LEN];
	char path[4200], tmp[4300], kept[4300], line[TD_KEYLOG_LINE_MAX + 1];
	struct stat st;
	char *slash;
	ssize_t w;
	int fd = -1, dfd = -1, lfd, rc, n;

	rc = td_statedir_path(uuid, "keylog", 1, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	/* held until the new log is in place: an append waiting for it then
	 * finds the file renamed and writes to the new log (open_locked) */
	tmp[0] = '\0';
	lfd = open_locked(path, err, errlen);
	if (lfd < 0)
		return lfd;
	if (cur->count)
		memcpy(prev, cur->head, TD_KEYLOG_HASH_LEN);
	else if (td_keylog_genesis(uuid, prev) < 0) {
		snprintf(err, errlen, "cannot compute the genesis hash");
		rc = -EIO;
		goto fail;
	}
	n = entry_line(uuid, cur->count, TD_KEYLOG_OP_RESET, TD_KEYLOG_SLOT_NONE, TD_KEYLOG_OK,
		       prev, &e, line, sizeof(line));
	if (n < 0) {
		snprintf(err, errlen, "cannot build the reset entry");
		rc = n;
		goto fail;
	}
	snprintf(tmp, sizeof(tmp), "%s.reset-tmp", path);
	snprintf(kept, sizeof(kept), "%s.before-reset.%llu", path, (unsigned long long)e.time);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(-rc));
		goto fail;
	}
	w = write(fd, line, (size_t)n);
	if (w != n || fsync(fd) < 0) {
		rc = w < 0 || w == n ? -errno : -EIO;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(rc ? -rc : EIO));
		goto fail;
	}
	close(fd);
	fd = -1;
	/* the old log stays, under a name nothing reads (an empty one is
	 * just the file open_locked created: there was no log) */
	if (fstat(lfd, &st) == 0 && st.st_size == 0) {
		if (unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "cannot remove the empty log %s: %s", path,
				 strerror(-rc));
			goto fail;
		}
	} else if (rename(path, kept) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot keep the old log as %s: %s", kept, strerror(-rc));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot install the new log %s: %s", path, strerror(-rc));
		goto fail;
	}
	slash = strrchr(path, '/');
	if (slash) {
		*slash = '\0';
		dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	next->count = e.seq + 1;
	memcpy(next->head, e.hash, TD_KEYLOG_HASH_LEN);
	close(lfd); /* releases the old log's flock */
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	close(lfd);
	return rc ? rc : -EIO;
}
