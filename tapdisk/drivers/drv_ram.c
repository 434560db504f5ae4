/* ram: a RAM disk in shared memory (tapdisk/drivers/ram.h for the spec).
 *
 * The memory is an anonymous memfd, or the named object
 * /dev/shm/tdcrypt-NAME, made through the file table
 * (td_file_memory, tapdisk/block/files.h) while the tapdisk is still root:
 * the table keeps it across a pause, so an unpause maps the same memory
 * again, and a tapdisk that dropped its privileges creates nothing. A
 * named RAM disk outlives the tapdisk (until it is removed, or the host
 * reboots): vdkey can format a crypt header on it before a tapdisk serves
 * crypt:ram:NAME,size=SIZE. An anonymous one is born empty and dies with
 * its tapdisk (td_driver.ephemeral): crypt refuses it.
 *
 * Requests are copies between the request's buffers and the mapping,
 * completed from the loop; discard and write-zeroes punch holes, which
 * gives the memory back. A named RAM disk holds an OFD lock like aio's, so
 * two tapdisks cannot serve one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/log.h"
#include "tapdisk/drivers/drivers.h"
#include "tapdisk/drivers/ram.h"

struct ram_priv {
	int fd;
	uint8_t *mem;
	uint64_t size;
	bool named, locked;
	char name[TD_SHM_NAME_MAX + 1];
};

/* Refuses a RAM disk bigger than the host's memory: it would be accepted
 * (the pages come on first touch) and kill the host later. */
static int fits_host(uint64_t size, char *err, size_t errlen)
{
	struct sysinfo si;
	uint64_t total;

	if (sysinfo(&si) < 0)
		return 0;
	total = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
	if (size <= total)
		return 0;
	snprintf(err, errlen,
		 "ram: %llu MiB is more than this host's memory and swap (%llu MiB): refused",
		 (unsigned long long)(size >> 20), (unsigned long long)(total >> 20));
	return -ENOMEM;
}

static int lock_named(struct ram_priv *p, bool ro, char *err, size_t errlen)
{
	struct flock fl = {.l_type = ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};

	if (fcntl(p->fd, F_OFD_SETLK, &fl) == 0) {
		p->locked = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EACCES) {
		snprintf(err, errlen,
			 "RAM disk '%s' is in use by another process (is another tapdisk serving "
			 "it? see 'tap-ctl list')",
			 p->name);
		return -EBUSY;
	}
	snprintf(err, errlen, "cannot lock RAM disk '%s': %s", p->name, strerror(errno));
	return -errno;
}

static int ram_open(struct td_layer *l, const char *path, const char *opts, char *err,
		    size_t errlen)
{
	struct ram_priv *p = l->priv;
	bool ro = l->ctx->readonly;
	struct td_ram_spec rs;
	struct td_memfile m;
	struct td_file f;
	char why[512];
	int rc;

	p->fd = -1;
	if (opts) {
		snprintf(err, errlen,
			 "ram: options go after the colon (ram:NAME,size=SIZE[,shm=GROUP]), not "
			 "'ram,%s:'",
			 opts);
		return -EINVAL;
	}
	rc = td_ram_parse(path, &rs, err, errlen);
	if (rc < 0)
		return rc;
	if (!td_files_sealed(l->ctx->files) && (rc = fits_host(rs.size, err, errlen)) < 0)
		return rc;
	m.name = rs.name[0] ? rs.name : NULL;
	m.size = rs.size;
	m.group = rs.group[0] ? rs.group : NULL;
	rc = td_file_memory(l->ctx, &m, ro ? 0 : TD_FILE_RW, &f, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "ram: RAM disk %s%s%s %s", m.name ? "'" : "",
			 m.name ? m.name : "(anonymous)", m.name ? "'" : "", why);
		return rc;
	}
	p->fd = f.fd;
	p->size = rs.size;
	p->named = m.name != NULL;
	snprintf(p->name, sizeof(p->name), "%s", rs.name);
	if (p->named && !l->ctx->nolock && (rc = lock_named(p, ro, err, errlen)) < 0)
		goto fail;
	p->mem =
	    mmap(NULL, (size_t)p->size, PROT_READ | (ro ? 0 : PROT_WRITE), MAP_SHARED, p->fd, 0);
	if (p->mem == MAP_FAILED) {
		rc = -errno;
		p->mem = NULL;
		snprintf(err, errlen, "ram: cannot map %llu bytes: %s", (unsigned long long)p->size,
			 strerror(errno));
		goto fail;
	}
	/* the disk's contents have no place in a core dump */
	madvise(p->mem, (size_t)p->size, MADV_DONTDUMP);
	l->size = p->size;
	return 0;
fail:
	if (p->locked) {
		struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};

		fcntl(p->fd, F_OFD_SETLK, &fl);
		p->locked = false;
	}
	close(p->fd);
	p->fd = -1;
	return rc;
}

static void ram_close(struct td_layer *l)
{
	struct ram_priv *p = l->priv;

	if (p->mem)
		munmap(p->mem, (size_t)p->size);
	p->mem = NULL;
	if (p->fd >= 0) {
		/* the lock is on the open file, which the file table keeps */
		if (p->locked) {
			struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};

			if (fcntl(p->fd, F_OFD_SETLK, &fl) < 0)
				td_err("ram: cannot release the lock of '%s': %s", p->name,
				       strerror(errno));
		}
		close(p->fd);
	}
	p->fd = -1;
	p->locked = false;
}

static void ram_rw(struct td_layer *l, struct td_req *req)
{
	struct ram_priv *p = l->priv;
	uint64_t off = req->off;

	for (int i = 0; i < req->iovcnt; i++) {
		size_t n = req->iov[i].iov_len;

		if (req->op == TD_OP_READ)
			memcpy(req->iov[i].iov_base, p->mem + off, n);
		else
			memcpy(p->mem + off, req->iov[i].iov_base, n);
		off += n;
	}
	td_req_complete_later(l->ctx, req, 0);
}

static void ram_flush(struct td_layer *l, struct td_req *req)
{
	/* memory is as durable as this disk gets */
	td_req_complete_later(l->ctx, req, 0);
}

static void ram_zero(struct td_layer *l, struct td_req *req, bool punch)
{
	struct ram_priv *p = l->priv;
	int rc = 0;

	if (!punch) {
		memset(p->mem + req->off, 0, (size_t)req->len);
	} else if (fallocate(p->fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, (off_t)req->off,
			     (off_t)req->len) < 0) {
		/* the range still reads what it held: zero it by hand */
		rc = errno == EOPNOTSUPP ? 0 : -errno;
		if (rc == 0)
			memset(p->mem + req->off, 0, (size_t)req->len);
	}
	td_req_complete_later(l->ctx, req, rc);
}

static void ram_discard(struct td_layer *l, struct td_req *req)
{
	ram_zero(l, req, true);
}

static void ram_write_zeroes(struct td_layer *l, struct td_req *req)
{
	ram_zero(l, req, !(req->flags & TD_REQ_NO_UNMAP));
}

static int ram_identity(struct td_layer *l, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen)
{
	struct ram_priv *p = l->priv;

	return td_file_identity(p->fd, id, where, wlen);
}

static const char *ram_ephemeral(const struct td_layer *l)
{
	const struct ram_priv *p = l->priv;

	if (p->named)
		return NULL;
	return "an anonymous RAM disk (ram:SIZE) is born empty in each process and gone with "
	       "it; use a named one (ram:NAME,size=SIZE), which stays in " TD_SHM_DIR
	       "/" TD_SHM_PREFIX "NAME until it is removed, and format that";
}

const struct td_driver td_drv_ram = {
    .name = "ram",
    .summary = "RAM disk in shared memory: ram:SIZE, or ram:NAME,size=SIZE[,shm=GROUP] "
	       "(/dev/shm/tdcrypt-NAME)",
    .is_image = true,
    .priv_size = sizeof(struct ram_priv),
    .open = ram_open,
    .close = ram_close,
    .read = ram_rw,
    .write = ram_rw,
    .flush = ram_flush,
    .discard = ram_discard,
    .write_zeroes = ram_write_zeroes,
    .identity = ram_identity,
    .memory_image = true,
    .ephemeral = ram_ephemeral,
};
