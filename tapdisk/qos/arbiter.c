#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/qos/arbiter.h"
#include "tapdisk/qos/limits.h"

#define ARB_MAGIC "TDQOSAR1"
#define ARB_VERSION 1u
/* the lock bytes, past the end of the table */
#define REG_BYTE(i) ((off_t)(1 << 20) + (i))
#define ACT_BYTE(i) ((off_t)(2 << 20) + (i))

struct arb_slot {
	uint32_t weight; /* 0: free */
	uint32_t pid;
	uint8_t pad[56];
};

struct arb_file {
	char magic[8];
	uint32_t version, nslots;
	uint8_t pad[48];
	struct arb_slot slot[TD_QOS_ARB_SLOTS];
};

struct td_qos_arbiter {
	int fd; /* read-only: the mapping and the locks */
	const volatile struct arb_file *map;
	int slot;
	bool busy;
};

static int lock_byte(int fd, short type, off_t at, bool wait)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};

	return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Does any other open file hold a lock on byte at? */
static bool locked_by_other(int fd, off_t at)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return true; /* assume the worst: taken */
	return fl.l_type != F_UNLCK;
}

/* The directory: root's (our user's), nobody else may write it. */
static int open_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	int dfd;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (fstat(dfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(err, errlen,
			 "%s must belong to uid %u and be writable by it alone: refused", dir,
			 (unsigned)geteuid());
		close(dfd);
		return -EPERM;
	}
	return dfd;
}

static int check_file(int fd, const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(err, errlen,
			 "%s/arbiter is not a table of ours (a regular file of uid %u, writable by "
			 "it alone): refused",
			 dir, (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

/* The table, made if new (size 0), checked if not. */
static int table_ready(int rw, const char *dir, char *err, size_t errlen)
{
	struct arb_file hdr;
	struct stat st;

	if (fstat(rw, &st) < 0)
		return -errno;
	if (st.st_size == 0) {
		memset(&hdr, 0, sizeof(hdr));
		memcpy(hdr.magic, ARB_MAGIC, 8);
		hdr.version = ARB_VERSION;
		hdr.nslots = TD_QOS_ARB_SLOTS;
		if (pwrite(rw, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
			snprintf(err, errlen, "cannot write %s/arbiter: %s", dir, strerror(errno));
			return -EIO;
		}
		return 0;
	}
	if (st.st_size != (off_t)sizeof(hdr) ||
	    pread(rw, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr.magic, ARB_MAGIC, 8) || hdr.version != ARB_VERSION ||
	    hdr.nslots != TD_QOS_ARB_SLOTS) {
		snprintf(err, errlen,
			 "%s/arbiter is not an arbiter table of this version: refused (remove it "
			 "when no tapdisk runs)",
			 dir);
		return -EINVAL;
	}
	return 0;
}

/* Under the mutex: a free slot (nobody holds its registration byte); the
 * weights of free slots are cleared on the way (tapdisks that died). */
static int take_slot(struct td_qos_arbiter *a, int rw, uint32_t weight, char *err, size_t errlen)
{
	struct arb_slot s;
	int i, mine = -1;

	for (i = 0; i < TD_QOS_ARB_SLOTS; i++) {
		off_t at = (off_t)offsetof(struct arb_file, slot) + (off_t)i * (off_t)sizeof(s);

		if (locked_by_other(rw, REG_BYTE(i)))
			continue;
		if (pread(rw, &s, sizeof(s), at) == (ssize_t)sizeof(s) && s.weight) {
			memset(&s, 0, sizeof(s));
			if (pwrite(rw, &s, sizeof(s), at) != (ssize_t)sizeof(s))
				return -EIO;
		}
		if (mine < 0 && lock_byte(a->fd, F_RDLCK, REG_BYTE(i), false) == 0)
			mine = i;
	}
	if (mine < 0) {
		snprintf(err, errlen, "all %d slots are taken", TD_QOS_ARB_SLOTS);
		return -ENOSPC;
	}
	memset(&s, 0, sizeof(s));
	s.weight = weight;
	s.pid = (uint32_t)getpid();
	if (pwrite(rw, &s, sizeof(s),
		   (off_t)offsetof(struct arb_file, slot) + (off_t)mine * (off_t)sizeof(s)) !=
	    (ssize_t)sizeof(s)) {
		snprintf(err, errlen, "cannot write the slot: %s", strerror(errno));
		return -EIO;
	}
	a->slot = mine;
	return 0;
}

struct td_qos_arbiter *td_qos_arbiter_join(const char *dir, uint32_t weight, char *err,
					   size_t errlen)
{
	struct td_qos_arbiter *a = calloc(1, sizeof(*a));
	int dfd = -1, lk = -1, rw = -1, rc = -ENOMEM;
	struct stat s1, s2;
	void *m;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->fd = -1;
	a->slot = -1;
	dfd = open_dir(dir, err, errlen);
	if (dfd < 0)
		goto fail;
	lk = openat(dfd, "arbiter.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lk < 0 || lock_byte(lk, F_WRLCK, 0, true) < 0) {
		snprintf(err, errlen, "cannot take %s/arbiter.lock: %s", dir, strerror(errno));
		goto fail;
	}
	rw = openat(dfd, "arbiter", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	a->fd = openat(dfd, "arbiter", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (rw < 0 || a->fd < 0) {
		snprintf(err, errlen, "cannot open %s/arbiter: %s", dir, strerror(errno));
		goto fail;
	}
	if (check_file(rw, dir, err, errlen) < 0 || fstat(rw, &s1) < 0 || fstat(a->fd, &s2) < 0 ||
	    s1.st_ino != s2.st_ino || s1.st_dev != s2.st_dev)
		goto fail;
	if ((rc = table_ready(rw, dir, err, errlen)) < 0 ||
	    (rc = take_slot(a, rw, weight, err, errlen)) < 0)
		goto fail;
	m = mmap(NULL, sizeof(struct arb_file), PROT_READ, MAP_SHARED, a->fd, 0);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s/arbiter: %s", dir, strerror(errno));
		goto fail;
	}
	a->map = m;
	close(rw);
	close(lk); /* the mutex goes with it */
	close(dfd);
	return a;
fail:
	if (rw >= 0)
		close(rw);
	if (lk >= 0)
		close(lk);
	if (dfd >= 0)
		close(dfd);
	td_qos_arbiter_leave(a);
	return NULL;
}

void td_qos_arbiter_leave(struct td_qos_arbiter *a)
{
	if (!a)
		return;
	if (a->map)
		munmap((void *)a->map, sizeof(struct arb_file));
	if (a->fd >= 0)
		close(a->fd); /* drops the slot's locks: it is free again */
	free(a);
}

int td_qos_arbiter_slot(const struct td_qos_arbiter *a)
{
	return a->slot;
}

uint32_t td_qos_arbiter_weight(const struct td_qos_arbiter *a)
{
	uint32_t w = a->map->slot[a->slot].weight;

	return w ? (w > TD_QOS_WEIGHT_MAX ? TD_QOS_WEIGHT_MAX : w) : 1;
}

void td_qos_arbiter_busy(struct td_qos_arbiter *a, bool busy)
{
	if (busy == a->busy)
		return;
	if (lock_byte(a->fd, busy ? F_RDLCK : F_UNLCK, ACT_BYTE(a->slot), false) == 0)
		a->busy = busy;
}

uint64_t td_qos_arbiter_busy_weights(struct td_qos_arbiter *a, unsigned *nbusy)
{
	uint64_t sum = td_qos_arbiter_weight(a);
	unsigned n = 1;

	/* only slots with a weight can count; ours is counted above (our own
	 * locks are not reported to us) */
	for (int i = 0; i < TD_QOS_ARB_SLOTS; i++) {
		uint32_t w = a->map->slot[i].weight;

		if (i == a->slot || !w || !locked_by_other(a->fd, ACT_BYTE(i)))
			continue;
		sum += w > TD_QOS_WEIGHT_MAX ? TD_QOS_WEIGHT_MAX : w;
		n++;
	}
	if (nbusy)
		*nbusy = n;
	return sum;
}

int td_qos_arbiter_set_weight(const char *dir, int slot, pid_t pid, uint32_t weight, char *err,
			      size_t errlen)
{
	struct arb_slot s;
	off_t at = (off_t)offsetof(struct arb_file, slot) + (off_t)slot * (off_t)sizeof(s);
	int dfd, lk = -1, rw = -1, rc = -EIO;

	if (slot < 0 || slot >= TD_QOS_ARB_SLOTS || weight < 1 || weight > TD_QOS_WEIGHT_MAX) {
		snprintf(err, errlen, "bad slot or weight");
		return -EINVAL;
	}
	dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -errno;
	}
	lk = openat(dfd, "arbiter.lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	rw = openat(dfd, "arbiter", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (lk < 0 || rw < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open the arbiter table in %s: %s%s", dir,
			 strerror(errno), errno == EACCES ? " (changing a weight needs root)" : "");
		goto out;
	}
	if ((rc = check_file(rw, dir, err, errlen)) < 0)
		goto out;
	if (lock_byte(lk, F_WRLCK, 0, true) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot take %s/arbiter.lock: %s", dir, strerror(errno));
		goto out;
	}
	rc = -ESRCH;
	if (pread(rw, &s, sizeof(s), at) != (ssize_t)sizeof(s) || s.pid != (uint32_t)pid ||
	    !locked_by_other(rw, REG_BYTE(slot))) {
		snprintf(err, errlen, "slot %d of the arbiter is not tapdisk %d's", slot, (int)pid);
		goto out;
	}
	s.weight = weight;
	rc = pwrite(rw, &s, sizeof(s), at) == (ssize_t)sizeof(s) ? 0 : -EIO;
	if (rc < 0)
		snprintf(err, errlen, "cannot write the arbiter table: %s", strerror(errno));
out:
	if (rw >= 0)
		close(rw);
	if (lk >= 0)
		close(lk);
	close(dfd);
	return rc;
}
