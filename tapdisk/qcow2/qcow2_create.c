/* Writing new qcow2 images. Layout, in clusters: the header, the refcount
 * table (sized for the whole virtual disk plus its metadata), the
 * refcount blocks counting the initial clusters, the L1 table. Written
 * with ordinary synchronous I/O: creation happens while nothing serves
 * the image. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/util.h"
#include "tapdisk/qcow2/qcow2.h"
#include "tapdisk/qcow2/qcow2_format.h"

/* Writes the image into fd when fd >= 0 (the caller's), else creates path. */
static int create(int fd_in, const char *path, uint64_t size, uint64_t cs, const char *backing,
		  const char *backing_fmt, char *err, size_t errlen)
{
	struct qcow2_hdr h;
	unsigned bits = 0;
	uint64_t l2_entries, rb_entries, l1c, rt = 1, rbs = 1, meta, i, future;
	uint8_t *buf = NULL;
	int fd, rc;

	while (bits < 63 && (1ull << bits) < cs)
		bits++;
	if ((1ull << bits) != cs || bits < QCOW2_MIN_CLUSTER_BITS ||
	    bits > QCOW2_MAX_CLUSTER_BITS) {
		snprintf(err, errlen, "cluster size %llu is not a power of two from 4 KiB to 2 MiB",
			 (unsigned long long)cs);
		return -EINVAL;
	}
	if (size == 0 || size % 512 || size > QCOW2_MAX_VIRTUAL_SIZE) {
		snprintf(err, errlen, "size %llu is not a positive multiple of 512 (or too large)",
			 (unsigned long long)size);
		return -EINVAL;
	}
	memset(&h, 0, sizeof(h));
	l2_entries = cs / 8;
	rb_entries = qcow2_rb_entries(bits, 4);
	h.cluster_bits = bits;
	h.size = size;
	h.l1_size = (uint32_t)td_div_up(size, cs * l2_entries);
	if ((uint64_t)h.l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(err, errlen,
			 "size %llu needs an L1 table over %u MiB: use larger clusters",
			 (unsigned long long)size, QCOW2_MAX_L1_BYTES >> 20);
		return -EINVAL;
	}
	l1c = td_div_up((uint64_t)h.l1_size * 8, cs);
	if (!l1c)
		l1c = 1;
	/* the refcount table covers every cluster the image can ever need:
	 * metadata, all data, all L2 tables, all refcount blocks, and as much
	 * again for leaks */
	for (i = 0; i < 8; i++) {
		future = 2 * (1 + rt + l1c + td_div_up(size, cs) + h.l1_size + rbs);
		rbs = td_div_up(future, rb_entries);
		rt = td_div_up(rbs * 8, cs);
	}
	if (rt * cs > QCOW2_MAX_REFTABLE_BYTES)
		rt = QCOW2_MAX_REFTABLE_BYTES / cs;
	/* refcount blocks needed for the clusters written now */
	rbs = 1;
	for (i = 0; i < 8; i++)
		rbs = td_div_up(1 + rt + rbs + l1c, rb_entries);
	meta = 1 + rt + rbs + l1c;
	h.rt_offset = cs;
	h.rt_clusters = (uint32_t)rt;
	h.l1_offset = (1 + rt + rbs) * cs;
	snprintf(h.backing, sizeof(h.backing), "%s", backing ? backing : "");
	snprintf(h.backing_fmt, sizeof(h.backing_fmt), "%s", backing_fmt ? backing_fmt : "");

	buf = calloc(1, (size_t)((1 + rt + rbs) * cs));
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (qcow2_hdr_encode(&h, buf, (size_t)cs) < 0) {
		free(buf);
		snprintf(err, errlen, "backing file name is too long");
		return -EINVAL;
	}
	for (i = 0; i < rbs; i++)
		qcow2_put_be64(buf + cs + 8 * i, (1 + rt + i) * cs);
	for (i = 0; i < meta; i++)
		qcow2_rc_set(buf + (1 + rt) * cs, 4, i, 1); /* blocks are contiguous */

	fd = fd_in >= 0 ? fd_in : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
		free(buf);
		return rc;
	}
	rc = td_write_all(fd, buf, (size_t)((1 + rt + rbs) * cs), 0);
	if (rc == 0 && ftruncate(fd, (off_t)(meta * cs)) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd_in < 0 && close(fd) < 0 && rc == 0)
		rc = -errno;
	free(buf);
	if (rc < 0) {
		snprintf(err, errlen, "cannot write '%s': %s", path, strerror(-rc));
		if (fd_in < 0)
			unlink(path); /* else the caller (tap-ctl, as root) removes it */
	}
	return rc;
}

int td_qcow2_create(const char *path, uint64_t size, uint64_t cluster_size, char *err,
		    size_t errlen)
{
	return create(-1, path, size, cluster_size ? cluster_size : 65536, NULL, NULL, err, errlen);
}

/* Reads the backing file's format and virtual size (rounded up to 512). */
static int probe_backing(int bfd, const struct stat *st, const char **fmt, uint64_t *size)
{
	uint8_t hdr[72];
	ssize_t n;

	memset(hdr, 0, sizeof(hdr));
	n = pread(bfd, hdr, sizeof(hdr), 0);
	if (n < 0)
		return -errno;
	if (n >= 32 && qcow2_be32(hdr) == QCOW2_MAGIC) {
		*fmt = "qcow2";
		*size = (qcow2_be64(hdr + 24) + 511) & ~511ull;
	} else {
		*fmt = "raw";
		*size = ((uint64_t)st->st_size + 511) & ~511ull;
	}
	return 0;
}

int td_qcow2_create_overlay(const char *new_path, const char *backing_path, uint64_t size,
			    char *err, size_t errlen)
{
	char resolved[PATH_MAX], dir[PATH_MAX];
	const char *fmt;
	uint64_t bsize;
	struct stat st;
	int fd, rc;

	if (backing_path[0] == '/') {
		snprintf(resolved, sizeof(resolved), "%s", backing_path);
	} else {
		snprintf(dir, sizeof(dir), "%s", new_path);
		snprintf(resolved, sizeof(resolved), "%s/%s", dirname(dir), backing_path);
	}
	fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "backing file '%s': %s", backing_path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "backing file '%s' is not a regular file", backing_path);
		return -EINVAL;
	}
	rc = probe_backing(fd, &st, &fmt, &bsize);
	close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "backing file '%s': %s", backing_path, strerror(-rc));
		return rc;
	}
	return create(-1, new_path, size ? size : bsize, 65536, backing_path, fmt, err, errlen);
}

int td_qcow2_create_overlay_fd(struct td_ctx *ctx, int fd, const char *new_path,
			       const char *backing_path, char *err, size_t errlen)
{
	struct td_file b;
	const char *fmt;
	char why[512];
	uint64_t size;
	int rc;

	/* the backing file is the image the chain had open: in the table */
	rc = td_file_open(ctx, backing_path, 0, &b, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "backing file '%s' %s", backing_path, why);
		return rc;
	}
	rc = probe_backing(b.fd, &b.st, &fmt, &size);
	close(b.fd);
	if (rc < 0) {
		snprintf(err, errlen, "backing file '%s': %s", backing_path, strerror(-rc));
		return rc;
	}
	return create(fd, new_path, size, 65536, backing_path, fmt, err, errlen);
}
