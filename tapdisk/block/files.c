#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/block/files.h"
#include "tapdisk/block/hostconf.h"

#define PROC_MAGIC 0x9fa0
#define SYSFS_MAGIC_ 0x62656572

struct td_file_ent {
	char *path;
	unsigned how; /* TD_FILE_RW | TD_FILE_DIRECT as asked */
	bool direct;  /* as obtained */
	int fd;
};

struct td_files {
	struct td_file_ent *ents;
	size_t n, cap;
	bool sealed;
	bool upgrade_rw;
};

struct td_files *td_files_new(void)
{
	return calloc(1, sizeof(struct td_files));
}

void td_files_free(struct td_files *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		close(f->ents[i].fd);
		free(f->ents[i].path);
	}
	free(f->ents);
	free(f);
}

void td_files_seal(struct td_files *f)
{
	f->sealed = true;
}

bool td_files_sealed(const struct td_files *f)
{
	return f && f->sealed;
}

void td_files_set_upgrade_rw(struct td_files *f, bool on)
{
	f->upgrade_rw = on;
}

size_t td_files_count(const struct td_files *f)
{
	return f ? f->n : 0;
}

int td_files_entry(const struct td_files *f, size_t i, const char **path, unsigned *how)
{
	*path = f->ents[i].path;
	if (how)
		*how = f->ents[i].how;
	return f->ents[i].fd;
}

/* Stores fd (the table's own) under path/how, replacing an equal key. */
static int table_put(struct td_files *f, const char *path, unsigned how, bool direct, int fd)
{
	struct td_file_ent *e = NULL;
	char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < f->n; i++) {
		if (f->ents[i].how == how && !strcmp(f->ents[i].path, path)) {
			e = &f->ents[i];
			close(e->fd);
			free(e->path);
			break;
		}
	}
	if (!e) {
		if (f->n == f->cap) {
			size_t cap = f->cap ? 2 * f->cap : 8;
			struct td_file_ent *n = realloc(f->ents, cap * sizeof(*n));

			if (!n) {
				free(p);
				return -ENOMEM;
			}
			f->ents = n;
			f->cap = cap;
		}
		e = &f->ents[f->n++];
	}
	e->path = p;
	e->how = how;
	e->direct = direct;
	e->fd = fd;
	return 0;
}

int td_files_add(struct td_files *f, const char *path, unsigned how, int fd, char *err,
		 size_t errlen)
{
	int fl = fcntl(fd, F_GETFL), rc;

	how &= TD_FILE_RW | TD_FILE_DIRECT;
	if (fl < 0 || (fl & O_PATH) || ((how & TD_FILE_RW) && (fl & O_ACCMODE) != O_RDWR)) {
		snprintf(err, errlen, "the descriptor passed for %.300s is not an open file%s",
			 path, (how & TD_FILE_RW) ? " open for reading and writing" : "");
		close(fd);
		return -EBADF;
	}
	rc = table_put(f, path, how, (fl & O_DIRECT) != 0, fd);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		close(fd);
	}
	return rc;
}

/* A read-only request is served by a read-write entry; O_DIRECT must
 * match (it is a property of the open file, shared by duplicates). */
static const struct td_file_ent *table_find(const struct td_files *f, const char *path,
					    unsigned how)
{
	const struct td_file_ent *best = NULL;

	for (size_t i = 0; i < f->n; i++) {
		const struct td_file_ent *e = &f->ents[i];

		if (strcmp(e->path, path) || (e->how & TD_FILE_DIRECT) != (how & TD_FILE_DIRECT))
			continue;
		if ((how & TD_FILE_RW) && !(e->how & TD_FILE_RW))
			continue;
		if (!best || (e->how & TD_FILE_RW) == (how & TD_FILE_RW))
			best = e;
	}
	return best;
}

static int from_table(const struct td_files *f, const char *path, unsigned how, struct td_file *out,
		      char *why, size_t whylen)
{
	const struct td_file_ent *e = table_find(f, path, how);
	int fd;

	if (!e) {
		snprintf(why, whylen,
			 "was not opened before the tapdisk dropped its privileges (a new file "
			 "reaches a running tapdisk only from root: 'tap-ctl unpause -a SPEC' or "
			 "'tap-ctl snapshot')");
		return -EACCES;
	}
	fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0 || fstat(fd, &out->st) < 0) {
		int rc = -errno;

		snprintf(why, whylen, "cannot duplicate its descriptor: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	out->fd = fd;
	out->direct = e->direct;
	return 0;
}

static const char *kind_of(mode_t m)
{
	return S_ISBLK(m) || S_ISCHR(m) ? "a device"
	       : S_ISFIFO(m)		? "a FIFO"
	       : S_ISDIR(m)		? "a directory"
	       : S_ISSOCK(m)		? "a socket"
					: "a special file";
}

/* Type checks on a fresh descriptor, then blocking mode. */
static int check_opened(int fd, unsigned how, struct td_file *out, char *why, size_t whylen)
{
	struct statfs sfs;
	int fl;

	if (fstat(fd, &out->st) < 0 || fstatfs(fd, &sfs) < 0) {
		snprintf(why, whylen, "cannot stat: %s", strerror(errno));
		return -errno;
	}
	if (!S_ISREG(out->st.st_mode) && !((how & TD_FILE_BLKDEV) && S_ISBLK(out->st.st_mode))) {
		snprintf(why, whylen, "is not a regular file%s (%s)",
			 (how & TD_FILE_BLKDEV) ? " or a block device" : "",
			 kind_of(out->st.st_mode));
		return -EINVAL;
	}
	if ((long)sfs.f_type == PROC_MAGIC || (long)sfs.f_type == SYSFS_MAGIC_) {
		snprintf(why, whylen, "lives in /proc or /sys");
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		snprintf(why, whylen, "fcntl: %s", strerror(errno));
		return -errno;
	}
	out->direct = (fl & O_DIRECT) != 0;
	return 0;
}

static int open_flags(unsigned how)
{
	/* O_NONBLOCK: a FIFO must not hang the open before fstat refuses it */
	return ((how & TD_FILE_RW) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
}

static void describe_errno(int e, unsigned how, char *why, size_t whylen)
{
	if (e == ENOENT)
		snprintf(why, whylen, "does not exist");
	else if (e == EACCES || e == EPERM || e == EROFS)
		snprintf(why, whylen,
			 "permission denied opening it %s (check its owner and mode%s)",
			 (how & TD_FILE_RW) ? "for writing" : "read-only",
			 (how & TD_FILE_RW) ? ", or open it read-only" : "");
	else
		snprintf(why, whylen, "cannot open: %s", strerror(e));
}

/* Records a duplicate of a file just opened, before the drop. */
static int record(struct td_ctx *ctx, const char *path, unsigned how, const struct td_file *fl,
		  char *why, size_t whylen)
{
	int dup, rc;

	if (!ctx->files)
		return 0;
	dup = fcntl(fl->fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0) {
		snprintf(why, whylen, "cannot keep its descriptor: %s", strerror(errno));
		return -errno;
	}
	rc = table_put(ctx->files, path, how & (TD_FILE_RW | TD_FILE_DIRECT), fl->direct, dup);
	if (rc < 0) {
		close(dup);
		snprintf(why, whylen, "out of memory");
	}
	return rc;
}

int td_file_open(struct td_ctx *ctx, const char *path, unsigned how, struct td_file *out, char *why,
		 size_t whylen)
{
	unsigned want = how;
	int rc;

	out->fd = -1;
	if (ctx->files && ctx->files->sealed)
		return from_table(ctx->files, path, how, out, why, whylen);
	if (ctx->files && ctx->files->upgrade_rw)
		want |= TD_FILE_RW;
	out->fd = open(path, open_flags(want) | ((want & TD_FILE_DIRECT) ? O_DIRECT : 0));
	if (out->fd < 0 && errno == EINVAL && (want & TD_FILE_DIRECT))
		out->fd = open(path, open_flags(want)); /* tmpfs and others refuse O_DIRECT */
	if (out->fd < 0) {
		rc = -errno;
		describe_errno(errno, want, why, whylen);
		return rc;
	}
	rc = check_opened(out->fd, how, out, why, whylen);
	if (rc == 0)
		rc = record(ctx, path, want, out, why, whylen);
	if (rc < 0) {
		close(out->fd);
		out->fd = -1;
	}
	return rc;
}

/* ---- confinement ---------------------------------------------------------- */

static int add_dir(struct td_confine *c, const char *d, char *err, size_t errlen)
{
	char *copy;

	for (int i = 0; i < c->ndirs; i++)
		if (!strcmp(c->dirs[i], d))
			return 0;
	if (c->ndirs == TD_CONFINE_MAX_DIRS) {
		snprintf(err, errlen, "more than %d backing directories", TD_CONFINE_MAX_DIRS);
		return -E2BIG;
	}
	copy = strdup(d);
	if (!copy)
		return -ENOMEM;
	if (td_path_normalize(copy) < 0 || !strcmp(copy, "/")) {
		snprintf(err, errlen,
			 "backing directory '%.300s' is not an absolute directory below /", d);
		free(copy);
		return -EINVAL;
	}
	c->dirs[c->ndirs++] = copy;
	return 0;
}

int td_confine_init(struct td_confine *c, const char *top_path, int top_fd, const char *const *dirs,
		    int ndirs, char *err, size_t errlen)
{
	const struct td_hostconf *hc;
	char top[4096], *slash;
	struct stat st;
	int rc, i;

	memset(c, 0, sizeof(*c));
	if (fstat(top_fd, &st) < 0) {
		snprintf(err, errlen, "cannot stat the top image: %s", strerror(errno));
		return -errno;
	}
	c->owner = st.st_uid;
	c->group = st.st_gid;
	if (top_path[0] == '/') {
		snprintf(top, sizeof(top), "%s", top_path);
	} else {
		char cwd[3000];

		if (!getcwd(cwd, sizeof(cwd))) {
			snprintf(err, errlen, "getcwd: %s", strerror(errno));
			return -errno;
		}
		snprintf(top, sizeof(top), "%s/%s", cwd, top_path);
	}
	if (td_path_normalize(top) < 0) {
		snprintf(err, errlen, "cannot make sense of the image path '%.300s'", top_path);
		return -EINVAL;
	}
	slash = strrchr(top, '/');
	if (slash == top)
		slash[1] = 0; /* an image in "/" */
	else
		*slash = 0;
	/* an image in "/" gets no directory of its own: "/" would allow all */
	if (strcmp(top, "/") && (rc = add_dir(c, top, err, errlen)) < 0)
		goto fail;
	for (i = 0; i < ndirs; i++)
		if ((rc = add_dir(c, dirs[i], err, errlen)) < 0)
			goto fail;
	hc = td_hostconf(err, errlen);
	if (!hc) {
		rc = -EINVAL;
		goto fail;
	}
	for (i = 0; i < hc->ndirs; i++)
		if ((rc = add_dir(c, hc->backing_dirs[i], err, errlen)) < 0)
			goto fail;
	return 0;
fail:
	td_confine_free(c);
	return rc;
}

void td_confine_free(struct td_confine *c)
{
	for (int i = 0; i < c->ndirs; i++)
		free(c->dirs[i]);
	c->ndirs = 0;
}

/* Without openat2 (Linux < 5.6): the same rules by hand, one component at
 * a time, never following a link and never climbing. */
static int walk_beneath(int dirfd, const char *rel, int flags)
{
	char buf[4096], *save = NULL, *comp, *next;
	int cur = dirfd, fd = -1;

	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	comp = strtok_r(buf, "/", &save);
	while (comp) {
		next = strtok_r(NULL, "/", &save);
		if (!strcmp(comp, "..")) {
			errno = EXDEV;
			fd = -1;
			break;
		}
		fd = openat(cur, comp,
			    next ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
				 : flags | O_NOFOLLOW);
		if (cur != dirfd)
			close(cur);
		if (fd < 0)
			return -1;
		if (!next)
			return fd;
		cur = fd;
		comp = next;
	}
	if (cur != dirfd)
		close(cur);
	if (!errno)
		errno = ENOENT;
	return -1;
}

static int open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how oh = {
	    .flags = (uint64_t)flags,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &oh, sizeof(oh));

	if (fd < 0 && errno == ENOSYS)
		return walk_beneath(dirfd, rel, flags);
	return (int)fd;
}

/* Opens as the top image's owner: fsuid/fsgid and one group, on this
 * thread only (raw system calls; glibc's wrappers would change every
 * thread). Leaving fsuid 0 also drops the file capabilities
 * (CAP_DAC_OVERRIDE, ...) until it is restored. */
static int open_as_owner(const struct td_confine *c, int dirfd, const char *rel, int flags)
{
	gid_t saved_groups[64];
	int ngroups = -1, fd, e;

	if (geteuid() != 0)
		return open_beneath(dirfd, rel, flags); /* unprivileged already */
	ngroups = getgroups(64, saved_groups);
	if (ngroups < 0 || syscall(SYS_setgroups, 1, &c->group) < 0) {
		errno = EPERM;
		return -1;
	}
	syscall(SYS_setfsgid, c->group);
	syscall(SYS_setfsuid, c->owner);
	if ((uid_t)syscall(SYS_setfsuid, -1) != c->owner ||
	    (gid_t)syscall(SYS_setfsgid, -1) != c->group) {
		fd = -1;
		e = EPERM;
	} else {
		fd = open_beneath(dirfd, rel, flags);
		e = errno;
	}
	syscall(SYS_setfsuid, 0);
	syscall(SYS_setfsgid, 0);
	if (syscall(SYS_setgroups, (size_t)ngroups, saved_groups) < 0 ||
	    (uid_t)syscall(SYS_setfsuid, -1) != 0)
		abort(); /* cannot happen for root; never carry on with mixed credentials */
	errno = e;
	return fd;
}

static void list_dirs(const struct td_confine *c, char *out, size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (int i = 0; i < c->ndirs && n < len; i++) {
		int w = snprintf(out + n, len - n, "%s%s", i ? ", " : "", c->dirs[i]);

		if (w < 0)
			break;
		n += (size_t)w;
	}
}

int td_file_open_named(struct td_ctx *ctx, const struct td_confine *c, const char *path,
		       unsigned how, struct td_file *out, char *why, size_t whylen)
{
	char norm[4096], dirs[1024];
	const char *rel = NULL;
	int dirfd = -1, rc, i;

	out->fd = -1;
	how &= ~TD_FILE_BLKDEV; /* a named file is always a regular file */
	if (snprintf(norm, sizeof(norm), "%s", path) >= (int)sizeof(norm)) {
		snprintf(why, whylen, "path is too long");
		return -ENAMETOOLONG;
	}
	if (td_path_normalize(norm) < 0) {
		snprintf(why, whylen, "is not an absolute path below /");
		return -EINVAL;
	}
	if (ctx->files && ctx->files->sealed)
		return from_table(ctx->files, norm, how, out, why, whylen);
	for (i = 0; i < c->ndirs; i++) {
		size_t dl = strlen(c->dirs[i]);

		if (!strncmp(norm, c->dirs[i], dl) && norm[dl] == '/' && norm[dl + 1]) {
			rel = norm + dl + 1;
			break;
		}
	}
	list_dirs(c, dirs, sizeof(dirs));
	if (!rel) {
		snprintf(why, whylen,
			 "resolves to '%.300s', outside the directories a backing file may come "
			 "from (%s): refused. Allow its directory with the driver option "
			 "backing-dir=DIR or backing-dirs in %s",
			 norm, dirs[0] ? dirs : "none", TD_HOSTCONF_PATH);
		return -EPERM;
	}
	dirfd = open(c->dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot open its directory %s: %s", c->dirs[i],
			 strerror(errno));
		return rc;
	}
	out->fd =
	    open_as_owner(c, dirfd, rel, open_flags(how) | ((how & TD_FILE_DIRECT) ? O_DIRECT : 0));
	if (out->fd < 0 && errno == EINVAL && (how & TD_FILE_DIRECT))
		out->fd = open_as_owner(c, dirfd, rel, open_flags(how));
	if (out->fd < 0) {
		rc = -errno;
		if (errno == ELOOP)
			snprintf(
			    why, whylen,
			    "'%.300s' goes through a symbolic link: refused (backing files are "
			    "opened without following links)",
			    norm);
		else if (errno == EXDEV)
			snprintf(why, whylen, "'%.300s' climbs out of %s: refused", norm,
				 c->dirs[i]);
		else if (errno == EACCES || errno == EPERM)
			snprintf(
			    why, whylen,
			    "'%.300s' cannot be read by the top image's owner (uid %u, gid %u): "
			    "refused (backing files are opened with that owner's rights)",
			    norm, (unsigned)c->owner, (unsigned)c->group);
		else
			describe_errno(errno, how, why, whylen);
		goto out;
	}
	rc = check_opened(out->fd, how, out, why, whylen);
	if (rc < 0)
		goto out;
	rc = -EPERM;
	if (out->st.st_uid != 0 && out->st.st_uid != c->owner) {
		snprintf(why, whylen,
			 "'%.300s' belongs to uid %u: refused (a backing file must belong to root "
			 "or to the top image's owner, uid %u)",
			 norm, (unsigned)out->st.st_uid, (unsigned)c->owner);
		goto out;
	}
	rc = record(ctx, norm, how, out, why, whylen);
out:
	if (rc < 0 && out->fd >= 0) {
		close(out->fd);
		out->fd = -1;
	}
	close(dirfd);
	return rc;
}

/* ---- identity --------------------------------------------------------------- */

void td_image_id_from(const void *data, size_t len, uint8_t id[TD_IMAGE_ID_LEN])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	memcpy(id, md, TD_IMAGE_ID_LEN);
}

int td_file_identity(int fd, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct {
		struct file_handle fh;
		unsigned char bytes[MAX_HANDLE_SZ];
	} h;
	char link[64], path[4096];
	uint8_t buf[4096 + 256];
	size_t n = 0;
	struct stat st;
	ssize_t pl;
	int mount_id;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	pl = readlink(link, path, sizeof(path) - 1);
	if (pl < 0 || fstat(fd, &st) < 0)
		return -errno;
	path[pl] = 0;
	if (where)
		snprintf(where, wlen, "%s", path);
#define PUT(p, l)                                                                                  \
	do {                                                                                       \
		memcpy(buf + n, (p), (l));                                                         \
		n += (l);                                                                          \
	} while (0)
	PUT("tdcrypt image id v1", 19);
	PUT(&pl, sizeof(pl));
	PUT(path, (size_t)pl);
	PUT(&st.st_dev, sizeof(st.st_dev));
	PUT(&st.st_ino, sizeof(st.st_ino));
	PUT(&st.st_rdev, sizeof(st.st_rdev));
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (!S_ISBLK(st.st_mode) &&
	    name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH) == 0) {
		PUT(&h.fh.handle_type, sizeof(h.fh.handle_type));
		PUT(h.fh.f_handle, h.fh.handle_bytes);
	}
#undef PUT
	td_image_id_from(buf, n, id);
	return 0;
}

/* ---- memory images ------------------------------------------------------------ */

#define TMPFS_MAGIC_ 0x01021994

/* The table key of a memory image: it starts with a control character,
 * which no spec path may contain (tapdisk/block/spec.c), so no file a spec
 * names can be served the memory, nor the memory a file. */
static void mem_key(const struct td_memfile *m, char *key, size_t len)
{
	if (m->name)
		snprintf(key, len, "\001ram:%s", m->name);
	else
		snprintf(key, len, "\001ram:anon:%llu", (unsigned long long)m->size);
}

static bool mem_name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > TD_SHM_NAME_MAX || n[0] == '.' || n[0] == '-')
		return false;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
		      (*n >= '0' && *n <= '9') || *n == '_' || *n == '-' || *n == '.'))
			return false;
	return true;
}

static int mem_anon(const struct td_memfile *m, unsigned how, struct td_file *out, char *why,
		    size_t whylen)
{
	int fd = memfd_create("tdcrypt-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0) {
		snprintf(why, whylen, "memfd_create: %s", strerror(errno));
		return -errno;
	}
	/* its size is fixed from now on; F_SEAL_SEAL: whoever gets hold of the
	 * descriptor cannot add F_SEAL_WRITE and stop this tapdisk's writes */
	if (ftruncate(fd, (off_t)m->size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    fstat(fd, &out->st) < 0) {
		int rc = -errno;

		snprintf(why, whylen, "cannot size the memory (%llu bytes): %s",
			 (unsigned long long)m->size, strerror(errno));
		close(fd);
		return rc;
	}
	(void)how;
	out->fd = fd;
	return 0;
}

static int mem_group(const char *g, gid_t *gid, char *why, size_t whylen)
{
	struct group *gr = getgrnam(g);
	char *end;
	unsigned long v;

	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	errno = 0;
	v = strtoul(g, &end, 10);
	if (*g && !*end && !errno && v < 0x7fffffffu) {
		*gid = (gid_t)v;
		return 0;
	}
	snprintf(why, whylen,
		 "(shm=%.64s) names a group that does not exist (a group name from /etc/group, or "
		 "a gid)",
		 g);
	return -ENOENT;
}

static int mem_named(const struct td_memfile *m, unsigned how, struct td_file *out, char *why,
		     size_t whylen)
{
	struct open_how oh = {
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	char rel[TD_SHM_NAME_MAX + 16];
	bool rw = how & TD_FILE_RW, created = false;
	struct statfs sfs;
	gid_t gid = 0;
	int dfd, fd = -1, rc;

	if (m->group && (rc = mem_group(m->group, &gid, why, whylen)) < 0)
		return rc;
	snprintf(rel, sizeof(rel), "%s%s", TD_SHM_PREFIX, m->name);
	dfd = open(TD_SHM_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot open %s: %s", TD_SHM_DIR, strerror(errno));
		return rc;
	}
	if (rw) {
		oh.flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
		oh.mode = 0600;
		fd = (int)syscall(SYS_openat2, dfd, rel, &oh, sizeof(oh));
		created = fd >= 0;
	}
	if (fd < 0 && (!rw || errno == EEXIST)) {
		oh.flags = (rw ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC;
		oh.mode = 0;
		fd = (int)syscall(SYS_openat2, dfd, rel, &oh, sizeof(oh));
	}
	close(dfd);
	if (fd < 0) {
		rc = -errno;
		if (errno == ENOENT)
			snprintf(why, whylen,
				 "does not exist (%s/%s): a read-only RAM disk must exist already",
				 TD_SHM_DIR, rel);
		else if (errno == ELOOP)
			snprintf(why, whylen, "%s/%s is a symbolic link: refused", TD_SHM_DIR, rel);
		else
			snprintf(why, whylen, "cannot open %s/%s: %s", TD_SHM_DIR, rel,
				 strerror(errno));
		return rc;
	}
	rc = -EPERM;
	if (fstat(fd, &out->st) < 0 || fstatfs(fd, &sfs) < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot stat %s/%s: %s", TD_SHM_DIR, rel, strerror(errno));
	} else if (!S_ISREG(out->st.st_mode) || out->st.st_nlink != 1 ||
		   (long)sfs.f_type != TMPFS_MAGIC_) {
		snprintf(why, whylen,
			 "%s/%s is not a shared-memory object of ours (a regular file on tmpfs "
			 "with one link): refused",
			 TD_SHM_DIR, rel);
	} else if (out->st.st_uid != geteuid()) {
		snprintf(why, whylen,
			 "%s/%s belongs to uid %u, not to uid %u who creates RAM disks here: "
			 "someone else made it; refused (remove it if it is not yours)",
			 TD_SHM_DIR, rel, (unsigned)out->st.st_uid, (unsigned)geteuid());
	} else if (out->st.st_size != 0 && (uint64_t)out->st.st_size != m->size) {
		rc = -EINVAL;
		snprintf(why, whylen,
			 "%s/%s exists with %llu bytes, the spec says %llu: refused (the same "
			 "size, or remove it to start afresh)",
			 TD_SHM_DIR, rel, (unsigned long long)out->st.st_size,
			 (unsigned long long)m->size);
	} else if (out->st.st_size == 0 && !rw) {
		rc = -EINVAL;
		snprintf(why, whylen, "%s/%s is empty: nothing to serve read-only", TD_SHM_DIR,
			 rel);
	} else {
		rc = 0;
	}
	/* ours: the spec decides who may inspect it */
	if (rc == 0 && rw &&
	    ((m->group && (fchown(fd, (uid_t)-1, gid) < 0 || fchmod(fd, 0640) < 0)) ||
	     (!m->group && fchmod(fd, 0600) < 0) ||
	     (out->st.st_size == 0 && ftruncate(fd, (off_t)m->size) < 0) ||
	     fstat(fd, &out->st) < 0)) {
		rc = -errno;
		snprintf(why, whylen, "cannot set up %s/%s: %s", TD_SHM_DIR, rel, strerror(errno));
	}
	if (rc < 0) {
		close(fd);
		if (created) {
			int d2 = open(TD_SHM_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);

			if (d2 >= 0) {
				unlinkat(d2, rel, 0);
				close(d2);
			}
		}
		return rc;
	}
	out->fd = fd;
	return 0;
}

int td_file_memory(struct td_ctx *ctx, const struct td_memfile *m, unsigned how,
		   struct td_file *out, char *why, size_t whylen)
{
	char key[TD_SHM_NAME_MAX + 32];
	int rc;

	out->fd = -1;
	out->direct = false;
	how &= TD_FILE_RW;
	if (m->size == 0 || (m->name && !mem_name_ok(m->name)) || (m->group && !m->name)) {
		snprintf(why, whylen, "invalid memory image request");
		return -EINVAL;
	}
	mem_key(m, key, sizeof(key));
	if (ctx->files && ctx->files->sealed) {
		rc = from_table(ctx->files, key, how, out, why, whylen);
		if (rc == -EACCES)
			snprintf(why, whylen,
				 "was not created before the tapdisk dropped its privileges: a "
				 "running tapdisk keeps only the RAM disk it started with");
		if (rc == 0 && (uint64_t)out->st.st_size != m->size) {
			snprintf(why, whylen, "has %llu bytes, the spec says %llu",
				 (unsigned long long)out->st.st_size, (unsigned long long)m->size);
			close(out->fd);
			out->fd = -1;
			rc = -EINVAL;
		}
		return rc;
	}
	rc = m->name ? mem_named(m, how, out, why, whylen) : mem_anon(m, how, out, why, whylen);
	if (rc == 0)
		rc = record(ctx, key, how, out, why, whylen);
	if (rc < 0 && out->fd >= 0) {
		close(out->fd);
		out->fd = -1;
	}
	return rc;
}
