/* Opening a VHD image and its parent chain. Synchronous (open time only):
 * every hostile value the footer, the dynamic header, the BAT or the
 * parent locators can hold is refused here with one line saying what was
 * wrong, before anything is written. Parents are found through their
 * locators (docs/FORMAT-vhd.md, "Parent locators"), opened read-only and
 * read-locked through the confinement of tapdisk/block/files.h; a parent
 * that loops back into the chain, or whose UUID is not the one its child
 * records, is refused. */
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
#include "tapdisk/vhd/vhd_int.h"

static void img_free(struct vimg *im)
{
	if (!im)
		return;
	if (im->locked)
		td_image_unlock(im->fd, "vhd");
	if (im->fd >= 0)
		close(im->fd);
	if (im->fd_buf >= 0)
		close(im->fd_buf);
	if (im->bat)
		td_buf_put(im->bat, im->bat_len);
	free(im->full);
	free(im->path);
	free(im);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Reads the BAT and checks every entry: inside the file, clear of the
 * metadata, no two blocks overlapping. */
static int load_bat(struct vimg *im, char *why, size_t whylen)
{
	const struct vhd_header *h = &im->h;
	struct vhd_range res[3 + VHD_NLOC];
	uint64_t blen = (uint64_t)h->bitmap_bytes + h->block_size;
	uint32_t *sorted, nalloc = 0;
	int nres, rc;

	im->bat_len = (size_t)((h->bat_bytes + 4095) & ~4095ull);
	im->bat = td_buf_get(im->bat_len);
	if (!im->bat)
		return -ENOMEM;
	memset(im->bat, 0xff, im->bat_len);
	rc = td_read_exact(im->fd_buf, im->bat, (size_t)h->max_entries * 4, h->table_offset);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the BAT: %s", strerror(-rc));
		return rc;
	}
	im->full = calloc(1, h->max_entries / 8 + 1);
	sorted = malloc((size_t)h->max_entries * sizeof(*sorted));
	if (!im->full || !sorted) {
		free(sorted);
		return -ENOMEM;
	}
	nres = vhd_reserved_ranges(h, im->hdr_off, im->diff, res);
	for (uint32_t i = 0; i < h->max_entries; i++) {
		uint32_t e = v_bat(im, i);
		uint64_t off;

		if (vhd_bat_check(e, h, im->footer_off, res, nres, &off) < 0) {
			snprintf(
			    why, whylen,
			    "BAT entry %u (block at byte %llu) lies outside the file or on its "
			    "metadata (footer, header, BAT, parent locators): the image is "
			    "damaged or truncated",
			    i, (unsigned long long)e * VHD_SECTOR);
			free(sorted);
			return -EINVAL;
		}
		if (e != VHD_BAT_UNUSED)
			sorted[nalloc++] = e;
	}
	qsort(sorted, nalloc, sizeof(*sorted), cmp_u32);
	for (uint32_t i = 1; i < nalloc; i++) {
		if (((uint64_t)sorted[i] - sorted[i - 1]) * VHD_SECTOR < blen) {
			snprintf(why, whylen,
				 "two BAT entries point at overlapping blocks (at byte %llu and "
				 "%llu): the image is damaged",
				 (unsigned long long)sorted[i - 1] * VHD_SECTOR,
				 (unsigned long long)sorted[i] * VHD_SECTOR);
			free(sorted);
			return -EINVAL;
		}
	}
	free(sorted);
	return 0;
}

/* Can this O_DIRECT descriptor do 512-byte units? Tried on the second
 * sector; a file shorter than two sectors is not tried. */
static bool direct_512_ok(int fd, const struct stat *st)
{
	uint8_t *b;
	ssize_t n;

	if ((uint64_t)st->st_size < 2 * VHD_SECTOR)
		return true;
	b = td_buf_get(4096);
	if (!b)
		return false;
	n = pread(fd, b, VHD_SECTOR, VHD_SECTOR);
	td_buf_put(b, 4096);
	return n == VHD_SECTOR;
}

static int read_footer(struct vimg *im, const char *path, char *why, size_t whylen)
{
	uint8_t b[VHD_FOOTER_LEN];
	char e2[256];
	int rc;

	if (im->file_size < VHD_FOOTER_LEN) {
		snprintf(why, whylen, "is %llu bytes, too short for a VHD footer",
			 (unsigned long long)im->file_size);
		return -EINVAL;
	}
	im->footer_off = im->file_size - VHD_FOOTER_LEN;
	rc = td_read_exact(im->fd_buf, b, sizeof(b), im->footer_off);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the footer: %s", strerror(-rc));
		return rc;
	}
	rc = vhd_footer_parse(b, &im->f, why, whylen);
	if (rc == -ENOENT && im->file_size >= 2 * VHD_FOOTER_LEN) {
		/* no footer at the end: a dynamic disk keeps a copy at 0 */
		if (td_read_exact(im->fd_buf, b, sizeof(b), 0) == 0 &&
		    vhd_footer_parse(b, &im->f, e2, sizeof(e2)) == 0 &&
		    im->f.type != VHD_TYPE_FIXED) {
			td_warn("vhd: '%s': no footer in the last 512 bytes; using the copy at "
				"offset 0 (a crash while the file grew?)",
				path);
			im->footer_from_copy = true;
			rc = 0;
		}
	}
	if (rc < 0)
		return rc;
	memcpy(im->footer_raw, b, sizeof(b));
	return 0;
}

/* Opens one image: regular file, locked, footer, header and BAT checked.
 * why gets the reason without the path. */
static int open_one(struct vhd *v, const char *path, bool top, bool writable, char *why,
		    size_t whylen)
{
	struct vimg *im = calloc(1, sizeof(*im));
	struct td_file fb;
	struct vhd_layout lay;
	uint8_t hb[VHD_HEADER_LEN];
	int rc;

	if (!im)
		return -ENOMEM;
	im->fd = im->fd_buf = -1;
	im->path = strdup(path);
	if (!im->path) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = td_image_file_open(v->ctx, top ? NULL : &v->confine, path, 0, &fb, why, whylen);
	if (rc < 0)
		goto fail;
	im->fd_buf = fb.fd;
	for (uint32_t k = 0; k < v->nimg; k++) {
		if (v->img[k]->dev == fb.st.st_dev && v->img[k]->ino == fb.st.st_ino) {
			rc = -ELOOP;
			snprintf(why, whylen, "is already in the chain (the parent chain loops)");
			goto fail;
		}
	}
	im->dev = fb.st.st_dev;
	im->ino = fb.st.st_ino;
	im->file_size = (uint64_t)fb.st.st_size;
	rc = td_image_open_data(v->ctx, top ? NULL : &v->confine, path, writable, &fb.st,
				direct_512_ok, &im->fd, &im->direct, &im->locked, why, whylen);
	if (rc < 0)
		goto fail;
	rc = read_footer(im, path, why, whylen);
	if (rc < 0)
		goto fail;
	im->vsize = im->f.cur_size;
	if (im->f.saved_state)
		td_warn("vhd: '%s' is marked as holding a saved VM state; serving it anyway", path);
	if (im->f.type == VHD_TYPE_FIXED) {
		im->fixed = true;
		/* a fixed disk's file is its data and the footer, nothing else */
		if (im->vsize != im->footer_off) {
			rc = -EINVAL;
			snprintf(
			    why, whylen,
			    "is a fixed disk of %llu bytes in a file of %llu bytes (it must be "
			    "the size plus the 512-byte footer: truncated or padded?)",
			    (unsigned long long)im->vsize, (unsigned long long)im->file_size);
			goto fail;
		}
		goto done;
	}
	im->diff = im->f.type == VHD_TYPE_DIFF;
	im->hdr_off = im->f.data_offset;
	lay = (struct vhd_layout){.file_size = im->file_size,
				  .footer_off = im->footer_off,
				  .vsize = im->vsize,
				  .diff = im->diff};
	if (im->hdr_off > im->footer_off || im->footer_off - im->hdr_off < VHD_HEADER_LEN) {
		rc = -EINVAL;
		snprintf(why, whylen, "the dynamic header offset %llu is outside the file",
			 (unsigned long long)im->hdr_off);
		goto fail;
	}
	rc = td_read_exact(im->fd_buf, hb, sizeof(hb), im->hdr_off);
	if (rc < 0) {
		snprintf(why, whylen, "cannot read the dynamic header: %s", strerror(-rc));
		goto fail;
	}
	rc = vhd_header_parse(hb, im->hdr_off, &lay, &im->h, why, whylen);
	if (rc < 0)
		goto fail;
	rc = load_bat(im, why, whylen);
	if (rc < 0) {
		if (rc == -ENOMEM)
			snprintf(why, whylen, "out of memory for the BAT");
		goto fail;
	}
done:
	v->img[v->nimg++] = im;
	return 0;
fail:
	img_free(im);
	return rc;
}

/* The directory of an image's path, absolute. */
static int dir_of(const char *path, char *out, size_t outlen)
{
	char tmp[PATH_MAX], cwd[PATH_MAX];
	int n;

	snprintf(tmp, sizeof(tmp), "%s", path);
	if (path[0] == '/')
		n = snprintf(out, outlen, "%s", dirname(tmp));
	else if (getcwd(cwd, sizeof(cwd)))
		n = snprintf(out, outlen, "%s/%s", cwd, dirname(tmp));
	else
		n = -1;
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

struct cand {
	char path[PATH_MAX];
	const char *from;
};

/* The parent's candidate paths, in the order we try them. */
static int parent_candidates(struct vimg *child, struct cand *c, int max)
{
	static const struct {
		uint32_t code;
		const char *name;
	} order[] = {{VHD_PLAT_W2RU, "W2ru"}, {VHD_PLAT_W2KU, "W2ku"}, {VHD_PLAT_MACX, "MacX"}};
	char dir[PATH_MAX], name[VHD_MAX_PATH];
	uint8_t *data;
	int n = 0;

	if (dir_of(child->path, dir, sizeof(dir)) < 0)
		return 0;
	data = malloc(VHD_MAX_LOCATOR);
	if (!data)
		return -ENOMEM;
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		for (int i = 0; i < VHD_NLOC && n < max - 1; i++) {
			const struct vhd_locator *l = &child->h.loc[i];
			int w;

			if (l->code != order[k].code || !l->len)
				continue;
			if (td_read_exact(child->fd_buf, data, l->len, l->off) < 0 ||
			    vhd_locator_decode(l->code, data, l->len, name, sizeof(name)) < 0)
				continue; /* unusable here: the next one may do */
			w = name[0] == '/'
				? snprintf(c[n].path, sizeof(c[n].path), "%s", name)
				: snprintf(c[n].path, sizeof(c[n].path), "%s/%s", dir, name);
			if (w < 0 || (size_t)w >= sizeof(c[n].path))
				continue;
			c[n++].from = order[k].name;
		}
	}
	free(data);
	if (n < max && vhd_parent_name(child->h.parent_name_raw, name, sizeof(name)) == 0) {
		const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
		int w = snprintf(c[n].path, sizeof(c[n].path), "%s/%s", dir, base);

		if (base[0] && w > 0 && (size_t)w < sizeof(c[n].path))
			c[n++].from = "parent name";
	}
	return n;
}

static void uuid_text(const uint8_t u[16], char out[37])
{
	td_uuid_str(u, out);
}

static int open_parent(struct vhd *v, struct vimg *child, char *err, size_t errlen)
{
	struct cand *c = calloc(VHD_NLOC + 1, sizeof(*c));
	char why[512], first[700] = "";
	bool sealed = v->ctx->files && td_files_sealed(v->ctx->files);
	int n, rc = -ENOENT;

	if (!c)
		return -ENOMEM;
	n = parent_candidates(child, c, VHD_NLOC + 1);
	if (n < 0) {
		free(c);
		return n;
	}
	for (int i = 0; i < n; i++) {
		rc = open_one(v, c[i].path, false, false, why, sizeof(why));
		if (rc == 0) {
			struct vimg *p = v->img[v->nimg - 1];

			if (memcmp(p->f.uuid, child->h.parent_uuid, 16)) {
				char a[37], b[37];

				uuid_text(p->f.uuid, a);
				uuid_text(child->h.parent_uuid, b);
				snprintf(
				    err, errlen,
				    "parent '%s' of '%s' (from its %s locator) has UUID %s, but "
				    "the child expects %s: the chain is inconsistent (the "
				    "parent was replaced or rewritten)",
				    c[i].path, child->path, c[i].from, a, b);
				free(c);
				return -EINVAL;
			}
			free(c);
			return 0;
		}
		if (!first[0])
			snprintf(first, sizeof(first), "'%s' (%s locator) %s", c[i].path, c[i].from,
				 why);
		/* only a parent that is not there moves on to the next locator */
		if (rc != -ENOENT && !(sealed && rc == -EACCES)) {
			snprintf(err, errlen, "parent of '%s': '%s' (%s locator) %s", child->path,
				 c[i].path, c[i].from, why);
			free(c);
			return rc;
		}
	}
	free(c);
	if (!n)
		snprintf(err, errlen,
			 "differencing disk '%s' names no parent this host can use (no W2ku, "
			 "W2ru or MacX locator and no parent name decode)",
			 child->path);
	else
		snprintf(err, errlen, "parent of '%s' not found: %s", child->path, first);
	return rc < 0 ? rc : -ENOENT;
}

int v_open_chain(struct vhd *v, const char *path, char *err, size_t errlen)
{
	char why[512];
	int rc;

	rc = open_one(v, path, true, v->writable, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "vhd image '%s': %s", path, why);
		return rc;
	}
	rc = td_confine_init(&v->confine, path, v->img[0]->fd_buf,
			     (const char *const *)v->opts.dirs, v->opts.ndirs, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "vhd image '%s': %s", path, why);
		goto fail;
	}
	while (v->img[v->nimg - 1]->diff) {
		if (v->nimg >= VHD_MAX_CHAIN) {
			snprintf(err, errlen, "vhd image '%s': parent chain deeper than %u images",
				 path, VHD_MAX_CHAIN);
			rc = -ELOOP;
			goto fail;
		}
		rc = open_parent(v, v->img[v->nimg - 1], err, errlen);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	v_close_chain(v);
	return rc;
}

void v_close_chain(struct vhd *v)
{
	while (v->nimg) {
		img_free(v->img[v->nimg - 1]);
		v->img[--v->nimg] = NULL;
	}
	td_confine_free(&v->confine);
}
