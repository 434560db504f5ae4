/* Opening a VMDK image: the file the spec names is either a hosted
 * sparse extent (monolithicSparse, streamOptimized: the whole disk) or a
 * text descriptor listing extents (docs/FORMAT-vmdk.md, "What an image
 * is"). Synchronous (open time only). Every value the header, the footer,
 * the descriptor and the grain directories hold is checked here, before
 * anything is read through them or written, and a refusal names the file
 * and the reason. Extent files named by a descriptor are opened through the
 * confinement of tapdisk/block/files.h, exactly like qcow2 backing files. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/vmdk/vmdk_int.h"

static void file_free(struct vmfile *f)
{
	if (!f)
		return;
	if (f->locked)
		td_image_unlock(f->fd, "vmdk");
	if (f->fd >= 0)
		close(f->fd);
	if (f->fd_buf >= 0 && f->fd_buf != f->fd)
		close(f->fd_buf);
	free(f->path);
	free(f);
}

/* Opens one file (top: the spec's, else an extent a descriptor names),
 * twice: page cache and O_DIRECT; locked. */
static int file_open(struct vm *v, const char *path, bool top, bool writable, struct vmfile **out,
		     char *why, size_t whylen)
{
	struct vmfile *f = calloc(1, sizeof(*f));
	struct td_file fb;
	unsigned how = writable ? TD_FILE_RW : 0;
	bool direct;
	int rc;

	if (!f)
		return -ENOMEM;
	f->fd = f->fd_buf = -1;
	f->path = strdup(path);
	if (!f->path) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = td_image_file_open(v->ctx, top ? NULL : &v->confine, path, how, &fb, why, whylen);
	if (rc < 0)
		goto fail;
	f->fd_buf = fb.fd;
	if (!S_ISREG(fb.st.st_mode)) {
		snprintf(why, whylen, "is not a regular file");
		rc = -EINVAL;
		goto fail;
	}
	for (unsigned i = 0; i < v->nfiles; i++) {
		if (v->files[i]->dev == fb.st.st_dev && v->files[i]->ino == fb.st.st_ino) {
			snprintf(why, whylen,
				 "is named twice (by two extents, or an extent names the "
				 "descriptor)");
			rc = -EINVAL;
			goto fail;
		}
	}
	f->dev = fb.st.st_dev;
	f->ino = fb.st.st_ino;
	f->size = f->phys = (uint64_t)fb.st.st_size;
	f->writable = writable;
	rc = td_image_open_data(v->ctx, top ? NULL : &v->confine, path, writable, &fb.st, NULL,
				&f->fd, &direct, &f->locked, why, whylen);
	if (rc < 0)
		goto fail;
	*out = f;
	return 0;
fail:
	file_free(f);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Reads a grain directory (gd_entries 32-bit entries at sector off). */
static int read_gd(struct vmext *x, uint64_t off, uint32_t **out)
{
	size_t n = (size_t)x->h.gd_entries;
	uint8_t *b = malloc(x->h.gd_span);
	uint32_t *gd = malloc(n * sizeof(*gd));
	int rc;

	if (!b || !gd) {
		free(b);
		free(gd);
		return -ENOMEM;
	}
	rc = td_read_zeroed(x->f->fd_buf, b, (size_t)x->h.gd_span, off * VMDK_SECTOR);
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			gd[i] = vmdk_le32(b + 4 * i);
	free(b);
	if (rc < 0) {
		free(gd);
		return rc;
	}
	*out = gd;
	return 0;
}

/* The grain directories: read, every entry checked, the two copies
 * reconciled (docs/FORMAT-vmdk.md, "Redundant tables"), every GT's place
 * listed (sorted; no two GTs may overlap). */
static int load_gds(struct vm *v, struct vmext *x, char *why, size_t whylen)
{
	uint64_t fsz = x->f->size;
	size_t n = (size_t)x->h.gd_entries, k = 0;
	int rc;

	/* all extents together: no more grain directory than one extent may
	 * have (memory: a descriptor may name 4096 sparse extents) */
	if (v->gd_total + n > VMDK_MAX_GD_ENTRIES) {
		snprintf(why, whylen,
			 "the grain directories of all extents would hold more than %llu entries",
			 (unsigned long long)VMDK_MAX_GD_ENTRIES);
		return -EINVAL;
	}
	v->gd_total += n;
	rc = read_gd(x, x->h.gd_offset, &x->gd);
	if (rc == 0 && x->h.rgd)
		rc = read_gd(x, x->h.rgd_offset, &x->rgd);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the grain directory: %s", strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const char *pw = vmdk_gd_entry_check(&x->h, x->gd[i], fsz);
		const char *rw = x->rgd ? vmdk_gd_entry_check(&x->h, x->rgd[i], fsz) : NULL;

		if (!x->rgd) {
			if (pw) {
				snprintf(why, whylen, "grain directory entry %zu (sector %u) %s", i,
					 x->gd[i], pw);
				return -EINVAL;
			}
			continue;
		}
		if (pw && rw) {
			snprintf(why, whylen,
				 "grain directory entry %zu %s, and so does the redundant one", i,
				 pw);
			return -EINVAL;
		}
		if (x->f->writable && (pw || rw || !x->gd[i] != !x->rgd[i])) {
			snprintf(why, whylen,
				 "grain directory entry %zu (%u) and its redundant copy (%u) "
				 "disagree: %s; refusing to write (open it read-only, or repair it "
				 "with qemu-img convert)",
				 i, x->gd[i], x->rgd[i],
				 pw   ? pw
				 : rw ? rw
				      : "one of them is 0");
			return -EINVAL;
		}
		if (pw) {
			td_warn("vmdk: '%s': grain directory entry %zu %s: using the redundant one",
				x->f->path, i, pw);
			x->gd[i] = x->rgd[i];
		} else if (rw) {
			td_warn("vmdk: '%s': redundant grain directory entry %zu %s: ignored",
				x->f->path, i, rw);
			x->rgd[i] = 0;
		}
	}
	for (size_t i = 0; i < n; i++)
		k += (x->gd[i] != 0) + (x->rgd && x->rgd[i]);
	x->gt_offs = malloc((k ? k : 1) * sizeof(*x->gt_offs));
	if (!x->gt_offs)
		return -ENOMEM;
	k = 0;
	for (size_t i = 0; i < n; i++) {
		if (x->gd[i])
			x->gt_offs[k++] = (uint64_t)x->gd[i] * VMDK_SECTOR;
		if (x->rgd && x->rgd[i])
			x->gt_offs[k++] = (uint64_t)x->rgd[i] * VMDK_SECTOR;
	}
	qsort(x->gt_offs, k, sizeof(*x->gt_offs), cmp_u64);
	for (size_t i = 1; i < k; i++) {
		if (x->gt_offs[i - 1] + x->h.gt_span > x->gt_offs[i]) {
			snprintf(why, whylen,
				 "two grain tables overlap (at bytes %llu and %llu): corrupt",
				 (unsigned long long)x->gt_offs[i - 1],
				 (unsigned long long)x->gt_offs[i]);
			return -EINVAL;
		}
	}
	x->ngt_offs = k;
	return 0;
}

/* A hosted sparse extent in x->f: header (and footer), embedded
 * descriptor, grain directories. */
static int load_sparse(struct vm *v, struct vmext *x, char *why, size_t whylen)
{
	uint8_t hdr[VMDK_SECTOR];
	char r[256];
	int rc;

	rc = td_read_zeroed(x->f->fd_buf, hdr, sizeof(hdr), 0);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the header: %s", strerror(-rc));
		return rc;
	}
	if (x->f->size < VMDK_SECTOR) {
		snprintf(why, whylen, "is shorter than a VMDK header (truncated)");
		return -EINVAL;
	}
	rc = vmdk_hdr_decode(hdr, sizeof(hdr), &x->h, r, sizeof(r));
	if (rc < 0) {
		snprintf(why, whylen, "%s", r);
		return rc;
	}
	if (x->h.gd_offset == VMDK_GD_AT_END) {
		uint8_t tail[2 * VMDK_SECTOR];

		if (x->f->size < 4 * VMDK_SECTOR) {
			snprintf(why, whylen,
				 "the grain directory is 'at the end' but the file is too short "
				 "for a footer (truncated)");
			return -EINVAL;
		}
		rc = td_read_zeroed(x->f->fd_buf, tail, sizeof(tail), x->f->size - 3 * VMDK_SECTOR);
		if (rc < 0) {
			snprintf(why, whylen, "cannot read the footer: %s", strerror(-rc));
			return rc;
		}
		rc = vmdk_footer_merge(&x->h, tail, tail + VMDK_SECTOR, r, sizeof(r));
		if (rc < 0) {
			snprintf(why, whylen, "%s", r);
			return rc;
		}
	}
	rc = vmdk_hdr_check(&x->h, x->f->size, r, sizeof(r));
	if (rc < 0) {
		snprintf(why, whylen, "%s", r);
		return rc;
	}
	if (x->h.desc_size) {
		size_t dl = (size_t)(x->h.desc_size * VMDK_SECTOR);
		char *d = malloc(dl);
		struct vmdk_desc desc;

		if (!d)
			return -ENOMEM;
		rc = td_read_zeroed(x->f->fd_buf, d, dl, x->h.desc_offset * VMDK_SECTOR);
		if (rc < 0)
			snprintf(r, sizeof(r), "cannot read it: %s", strerror(-rc));
		else
			rc = vmdk_desc_parse(d, dl, true, &desc, r, sizeof(r));
		free(d);
		if (rc < 0) {
			snprintf(why, whylen, "embedded descriptor: %s", r);
			return rc;
		}
		vmdk_desc_free(&desc);
	}
	if (x->h.compressed && x->f->writable) {
		snprintf(why, whylen,
			 "streamOptimized VMDK is read-only here: serve it with --readonly or "
			 "convert it (qemu-img convert -O vmdk -o subformat=monolithicSparse)");
		return -EROFS;
	}
	if (x->h.compressed)
		v->compressed = true;
	rc = load_gds(v, x, why, whylen);
	if (rc < 0)
		return rc;
	x->alloc_next = (x->f->size + 4095) & ~4095ull;
	return 0;
}

static int add_file(struct vm *v, struct vmfile *f)
{
	if (v->nfiles >= VMDK_MAX_EXTENTS + 1) {
		file_free(f);
		return -E2BIG;
	}
	v->files[v->nfiles++] = f;
	return 0;
}

/* A descriptor file: its extents, in order. */
static int open_descriptor(struct vm *v, const char *path, char *err, size_t errlen)
{
	struct vmfile *df = v->files[0];
	struct vmdk_desc d;
	char why[512], r[256], xpath[PATH_MAX];
	char *text;
	uint64_t start = 0;
	int rc;

	if (df->size > VMDK_MAX_DESC_BYTES) {
		snprintf(err, errlen,
			 "vmdk image '%s': not a VMDK image (text, but larger than a descriptor "
			 "may be: %u bytes)",
			 path, VMDK_MAX_DESC_BYTES);
		return -EINVAL;
	}
	text = malloc(df->size + 1);
	if (!text)
		return -ENOMEM;
	rc = td_read_zeroed(df->fd_buf, text, (size_t)df->size, 0);
	if (rc < 0)
		snprintf(r, sizeof(r), "cannot read the descriptor: %s", strerror(-rc));
	else
		rc = vmdk_desc_parse(text, (size_t)df->size, false, &d, r, sizeof(r));
	free(text);
	if (rc < 0) {
		snprintf(err, errlen, "vmdk image '%s': %s", path, r);
		return rc;
	}
	rc = td_confine_init(&v->confine, path, df->fd_buf, (const char *const *)v->opts.dirs,
			     v->opts.ndirs, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "vmdk image '%s': %s", path, why);
		goto out;
	}
	v->confined = true;
	v->ext = calloc(d.next, sizeof(*v->ext));
	if (!v->ext) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < d.next; i++) {
		const struct vmdk_dext *dx = &d.ext[i];
		struct vmext *x = &v->ext[i];
		bool w = v->writable && dx->access == VMDK_ACC_RW;

		x->idx = i;
		x->type = dx->type;
		x->access = dx->access;
		x->start = start;
		x->len = dx->sectors * VMDK_SECTOR;
		x->flat_off = dx->offset * VMDK_SECTOR;
		start += x->len;
		v->next = i + 1;
		if (dx->type == VMDK_EXT_ZERO || dx->access == VMDK_ACC_NOACCESS)
			continue;
		rc = td_image_path_beside(path, dx->name, xpath, sizeof(xpath), why, sizeof(why));
		if (rc == 0)
			rc = file_open(v, xpath, false, w, &x->f, why, sizeof(why));
		if (rc == 0)
			rc = add_file(v, x->f);
		if (rc < 0) {
			x->f = NULL;
			snprintf(err, errlen, "vmdk image '%s': extent %u ('%s'): %s", path, i,
				 dx->name, why);
			goto out;
		}
		if (dx->type != VMDK_EXT_SPARSE)
			continue;
		rc = load_sparse(v, x, why, sizeof(why));
		if (rc == 0 && x->h.capacity < dx->sectors) {
			snprintf(why, sizeof(why),
				 "the descriptor gives it %llu sectors, its header only %llu",
				 (unsigned long long)dx->sectors,
				 (unsigned long long)x->h.capacity);
			rc = -EINVAL;
		}
		if (rc < 0) {
			snprintf(err, errlen, "vmdk image '%s': extent %u ('%s'): %s", path, i,
				 dx->name, why);
			goto out;
		}
	}
	v->size = start;
	rc = 0;
out:
	vmdk_desc_free(&d);
	return rc;
}

int vm_open_image(struct vm *v, const char *path, char *err, size_t errlen)
{
	uint8_t head[VMDK_SECTOR];
	struct vmfile *f;
	char why[512];
	int rc;

	v->path = strdup(path);
	if (!v->path)
		return -ENOMEM;
	rc = file_open(v, path, true, v->writable, &f, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "vmdk image '%s': %s", path, why);
		return rc;
	}
	v->files[v->nfiles++] = f;
	rc = td_read_zeroed(f->fd_buf, head, sizeof(head), 0);
	if (rc < 0) {
		snprintf(err, errlen, "vmdk image '%s': cannot read: %s", path, strerror(-rc));
		goto fail;
	}
	if (f->size >= 4 && vmdk_le32(head) == VMDK_MAGIC) {
		struct vmext *x = calloc(1, sizeof(*x));

		if (!x) {
			rc = -ENOMEM;
			goto fail;
		}
		v->ext = x;
		v->next = 1;
		x->type = VMDK_EXT_SPARSE;
		x->access = VMDK_ACC_RW;
		x->f = f;
		rc = load_sparse(v, x, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "vmdk image '%s': %s", path, why);
			goto fail;
		}
		x->len = x->h.capacity * VMDK_SECTOR;
		v->size = x->len;
	} else if (f->size >= 4 && vmdk_le32(head) == VMDK_COWD_MAGIC) {
		snprintf(err, errlen,
			 "vmdk image '%s': ESX 2 sparse extents (COWD) are not supported", path);
		rc = -ENOTSUP;
		goto fail;
	} else if (vmdk_looks_like_text(head, f->size < sizeof(head) ? f->size : sizeof(head))) {
		rc = open_descriptor(v, path, err, errlen);
		if (rc < 0)
			goto fail;
	} else {
		snprintf(err, errlen,
			 "vmdk image '%s': not a VMDK image (neither a sparse extent, KDMV, nor a "
			 "text descriptor)",
			 path);
		rc = -EINVAL;
		goto fail;
	}
	if (v->size < TD_BLOCK_SIZE) {
		snprintf(err, errlen, "vmdk image '%s': smaller than one 4 KiB block", path);
		rc = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	vm_close_image(v);
	return rc < 0 ? rc : -EINVAL;
}

void vm_close_image(struct vm *v)
{
	for (unsigned i = 0; i < v->next; i++) {
		free(v->ext[i].gd);
		free(v->ext[i].rgd);
		free(v->ext[i].gt_offs);
	}
	free(v->ext);
	v->ext = NULL;
	v->next = 0;
	while (v->nfiles)
		file_free(v->files[--v->nfiles]);
	if (v->confined)
		td_confine_free(&v->confine);
	v->confined = false;
	free(v->path);
	v->path = NULL;
}
