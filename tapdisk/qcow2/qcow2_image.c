/* Opening a qcow2 image and its backing chain. Synchronous (open time
 * only): every hostile value the header, the L1 table or the refcount
 * table can hold is refused here with one line saying what was wrong,
 * before anything is written. Backing files are opened read-only and
 * read-locked, through the confinement of tapdisk/block/files.h (beside the top
 * image or below an allowed directory, no symbolic links, the top image
 * owner's rights, owned by root or that owner); one that loops back into
 * the chain is refused. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/qcow2/qcow2_int.h"
#include "tapdisk/core/util.h"

enum img_fmt { FMT_PROBE, FMT_RAW, FMT_QCOW2 };

/* Reads len bytes at off into a new zeroed 4096-aligned buffer (len
 * rounded up to 4096); the part past EOF stays zero. */
static int read_table(int fd, uint64_t off, size_t len, uint8_t **out, size_t *outlen)
{
	size_t alen = (len + 4095) & ~(size_t)4095;
	uint8_t *b = td_buf_get(alen);
	int rc;

	if (!b)
		return -ENOMEM;
	memset(b, 0, alen);
	rc = td_read_zeroed(fd, b, len, off);
	if (rc < 0) {
		td_buf_put(b, alen);
		return rc;
	}
	*out = b;
	*outlen = alen;
	return 0;
}

static void img_free(struct q2img *im)
{
	if (!im)
		return;
	if (im->locked)
		td_image_unlock(im->fd, "qcow2");
	if (im->fd >= 0)
		close(im->fd);
	if (im->fd_buf >= 0)
		close(im->fd_buf);
	if (im->l1)
		td_buf_put(im->l1, im->l1_len);
	free(im->path);
	free(im);
}

static bool in_region(uint64_t off, uint64_t len, uint64_t start, uint64_t rlen)
{
	return rlen && off < start + rlen && start < off + len;
}

/* An L2 table or refcount block offset: inside the file, clear of the
 * header, the L1 table and the refcount table. */
static const char *check_table_offset(const struct qcow2_hdr *h, uint64_t off, uint64_t file_size)
{
	uint64_t cs = h->cluster_size;

	if (off > file_size || cs > file_size - off)
		return "points past the end of the file";
	if (in_region(off, cs, 0, cs) ||
	    in_region(off, cs, h->l1_offset, (uint64_t)h->l1_size * 8) ||
	    in_region(off, cs, h->rt_offset, (uint64_t)h->rt_clusters * cs))
		return "overlaps the header, the L1 table or the refcount table";
	return NULL;
}

static int load_l1(struct q2 *q, struct q2img *im, char *why, size_t whylen)
{
	const struct qcow2_hdr *h = &im->h;
	uint64_t i, total = 0;
	int rc;

	im->l1_entries = h->l1_needed;
	if (!im->l1_entries)
		return 0;
	for (uint32_t k = 0; k < q->nimg; k++)
		total += q->img[k] ? q->img[k]->l1_len : 0;
	if (total + im->l1_entries * 8 > Q2_MAX_CHAIN_L1) {
		snprintf(why, whylen, "L1 tables of the chain exceed %llu MiB",
			 (unsigned long long)(Q2_MAX_CHAIN_L1 >> 20));
		return -E2BIG;
	}
	rc = read_table(im->fd_buf, h->l1_offset, (size_t)im->l1_entries * 8, &im->l1, &im->l1_len);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the L1 table: %s", strerror(-rc));
		return rc;
	}
	for (i = 0; i < im->l1_entries; i++) {
		uint64_t l2;
		int k = qcow2_l1_decode(q2_l1_entry(im, i), h->cluster_bits, &l2);
		const char *bad;

		if (k < 0) {
			snprintf(why, whylen,
				 "L1 entry %llu is invalid (reserved bits or unaligned)",
				 (unsigned long long)i);
			return -EINVAL;
		}
		if (k && (bad = check_table_offset(h, l2, im->file_size))) {
			snprintf(why, whylen, "L1 entry %llu (L2 table at %llu) %s",
				 (unsigned long long)i, (unsigned long long)l2, bad);
			return -EINVAL;
		}
	}
	return 0;
}

static int load_reftable(struct q2 *q, struct q2img *im, char *why, size_t whylen)
{
	const struct qcow2_hdr *h = &im->h;
	uint64_t i;
	int rc;

	rc = read_table(im->fd_buf, h->rt_offset, (size_t)h->rt_entries * 8, &q->rt, &q->rt_len);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the refcount table: %s", strerror(-rc));
		return rc;
	}
	for (i = 0; i < h->rt_entries; i++) {
		uint64_t rb;
		int k = qcow2_rt_decode(qcow2_be64(q->rt + 8 * i), h->cluster_bits, &rb);
		const char *bad;

		if (k < 0) {
			snprintf(why, whylen, "refcount table entry %llu is invalid (unaligned)",
				 (unsigned long long)i);
			return -EINVAL;
		}
		if (k && (bad = check_table_offset(h, rb, im->file_size))) {
			snprintf(why, whylen, "refcount table entry %llu (block at %llu) %s",
				 (unsigned long long)i, (unsigned long long)rb, bad);
			return -EINVAL;
		}
	}
	return 0;
}

/* Opens one image: regular file only, locked, qcow2 header checked (or
 * raw), L1 loaded. why gets the reason without the path. */
static int open_one(struct q2 *q, const char *path, bool top, bool writable, enum img_fmt fmt,
		    char *why, size_t whylen)
{
	struct q2img *im = calloc(1, sizeof(*im));
	uint8_t *hdr = NULL;
	size_t hdr_len = 0;
	struct td_file fb;
	struct stat st;
	bool direct;
	uint64_t cs;
	int rc;

	if (!im)
		return -ENOMEM;
	im->fd = im->fd_buf = -1;
	im->path = strdup(path);
	if (!im->path) {
		rc = -ENOMEM;
		goto fail;
	}
	/* a page-cache descriptor for the header and unaligned tails, and an
	 * O_DIRECT one for the data */
	rc = td_image_file_open(q->ctx, top ? NULL : &q->confine, path, 0, &fb, why, whylen);
	if (rc < 0)
		goto fail;
	im->fd_buf = fb.fd;
	st = fb.st;
	for (uint32_t k = 0; k < q->nimg; k++) {
		if (q->img[k]->dev == st.st_dev && q->img[k]->ino == st.st_ino) {
			rc = -ELOOP;
			snprintf(why, whylen, "is already in the chain (backing files loop)");
			goto fail;
		}
	}
	im->dev = st.st_dev;
	im->ino = st.st_ino;
	im->file_size = (uint64_t)st.st_size;
	rc = td_image_open_data(q->ctx, top ? NULL : &q->confine, path, writable, &st, NULL,
				&im->fd, &direct, &im->locked, why, whylen);
	if (rc < 0)
		goto fail;
	rc = read_table(im->fd_buf, 0, 4096, &hdr, &hdr_len);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the header: %s", strerror(-rc));
		goto fail;
	}
	if (fmt == FMT_PROBE)
		fmt = im->file_size >= 4 && qcow2_be32(hdr) == QCOW2_MAGIC ? FMT_QCOW2 : FMT_RAW;
	if (fmt == FMT_RAW) {
		im->raw = true;
		im->vsize = im->file_size;
		goto done;
	}
	cs = qcow2_hdr_cluster_size(hdr, hdr_len);
	if (cs > hdr_len) {
		td_buf_put(hdr, hdr_len);
		hdr = NULL;
		rc = read_table(im->fd_buf, 0, (size_t)cs, &hdr, &hdr_len);
		if (rc < 0) {
			snprintf(why, whylen, "cannot read the header: %s", strerror(-rc));
			goto fail;
		}
	}
	rc = qcow2_hdr_parse(hdr, hdr_len, im->file_size, writable ? QCOW2_PARSE_WRITABLE : 0,
			     &im->h, why, whylen);
	if (rc < 0)
		goto fail;
	if (!writable && (im->h.incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)))
		td_warn("qcow2: '%s' is marked %s; reading it anyway (read-only)", path,
			im->h.incompat & QCOW2_INCOMPAT_CORRUPT ? "corrupt" : "dirty");
	im->vsize = im->h.size;
	q->img[q->nimg] = im; /* load_l1 counts the chain's L1 bytes */
	rc = load_l1(q, im, why, whylen);
	q->img[q->nimg] = NULL;
	if (rc < 0)
		goto fail;
	if (top && writable) {
		rc = load_reftable(q, im, why, whylen);
		if (rc < 0) {
			if (q->rt)
				td_buf_put(q->rt, q->rt_len);
			q->rt = NULL;
			goto fail;
		}
	}
done:
	td_buf_put(hdr, hdr_len);
	q->img[q->nimg++] = im;
	return 0;
fail:
	if (hdr)
		td_buf_put(hdr, hdr_len);
	img_free(im);
	return rc;
}

static bool has_protocol(const char *name)
{
	static const char *const protos[] = {
	    "nbd:", "nbd+",    "http:", "https:", "ftp:",	  "ftps:",    "ssh:", "iscsi:",
	    "rbd:", "gluster", "nfs:",	"vvfat:", "host_device:", "null-co:", NULL};

	for (int i = 0; protos[i]; i++)
		if (!strncmp(name, protos[i], strlen(protos[i])))
			return true;
	return false;
}

/* QEMU's rule: a relative backing name is relative to the directory of
 * the image that names it. The result is absolute (the confinement in
 * tapdisk/block/files.h compares paths); nothing is looked up here. */
static int resolve_backing(const char *parent, const char *name, char *out, size_t outlen,
			   char *why, size_t whylen)
{
	if (!strncmp(name, "json:", 5) || has_protocol(name)) {
		snprintf(why, whylen, "uses a protocol or json: syntax, which is not supported");
		return -ENOTSUP;
	}
	if (!strncmp(name, "file:", 5))
		name += 5;
	if (!name[0]) {
		snprintf(why, whylen, "is empty");
		return -EINVAL;
	}
	return td_image_path_beside(parent, name, out, outlen, why, whylen);
}

/* Clears auto-clear feature bits we do not maintain (QEMU's rule for
 * writers), in place in the first 4 KiB of the header. */
static int clear_autoclear(struct q2img *im, char *why, size_t whylen)
{
	uint8_t *b;
	size_t blen;
	int rc;

	rc = read_table(im->fd_buf, 0, 4096, &b, &blen);
	if (rc < 0)
		goto out;
	qcow2_put_be64(b + 88, 0);
	if (pwrite(im->fd, b, 4096, 0) != 4096 || fdatasync(im->fd) < 0)
		rc = -errno;
	td_buf_put(b, blen);
out:
	if (rc < 0)
		snprintf(why, whylen, "cannot clear the auto-clear feature bits: %s",
			 strerror(-rc));
	else
		im->h.autoclear = 0;
	return rc;
}

int q2_open_chain(struct q2 *q, const char *path, char *err, size_t errlen)
{
	char why[512], bpath[PATH_MAX];
	int rc;

	rc = open_one(q, path, true, q->writable, FMT_QCOW2, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "qcow2 image '%s': %s", path, why);
		return rc;
	}
	rc = td_confine_init(&q->confine, path, q->img[0]->fd_buf,
			     (const char *const *)q->opts.dirs, q->opts.ndirs, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "qcow2 image '%s': %s", path, why);
		goto fail;
	}
	for (;;) {
		struct q2img *cur = q->img[q->nimg - 1];
		enum img_fmt fmt = FMT_PROBE;

		if (cur->raw || !cur->h.backing[0])
			break;
		if (q->nimg >= Q2_MAX_CHAIN) {
			snprintf(err, errlen,
				 "qcow2 image '%s': backing chain deeper than %u images", path,
				 Q2_MAX_CHAIN);
			rc = -ELOOP;
			goto fail;
		}
		if (!strcmp(cur->h.backing_fmt, "raw") || !strcmp(cur->h.backing_fmt, "file"))
			fmt = FMT_RAW;
		else if (!strcmp(cur->h.backing_fmt, "qcow2"))
			fmt = FMT_QCOW2;
		else if (cur->h.backing_fmt[0]) {
			snprintf(err, errlen,
				 "backing file '%s' of '%s': format '%s' is not supported (raw and "
				 "qcow2 are)",
				 cur->h.backing, cur->path, cur->h.backing_fmt);
			rc = -ENOTSUP;
			goto fail;
		}
		rc = resolve_backing(cur->path, cur->h.backing, bpath, sizeof(bpath), why,
				     sizeof(why));
		if (rc == 0)
			rc = open_one(q, bpath, false, false, fmt, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "backing file '%s' of '%s': %s", cur->h.backing,
				 cur->path, why);
			goto fail;
		}
	}
	if (q->writable && q2_reftable_grow(q, why, sizeof(why)) < 0) {
		struct stat st;

		/* not fatal: the image just cannot grow as far */
		td_warn("qcow2: '%s': %s", path, why);
		if (fstat(q->img[0]->fd, &st) == 0 && (uint64_t)st.st_size > q->img[0]->file_size)
			q->img[0]->file_size = (uint64_t)st.st_size;
	}
	if (q->writable && q->img[0]->h.autoclear) {
		rc = clear_autoclear(q->img[0], why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "qcow2 image '%s': %s", path, why);
			goto fail;
		}
	}
	return 0;
fail:
	q2_close_chain(q);
	return rc;
}

void q2_close_chain(struct q2 *q)
{
	while (q->nimg) {
		img_free(q->img[q->nimg - 1]);
		q->img[--q->nimg] = NULL;
	}
	if (q->rt)
		td_buf_put(q->rt, q->rt_len);
	q->rt = NULL;
	td_confine_free(&q->confine);
}
