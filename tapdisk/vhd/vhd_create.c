/* New differencing images (live snapshots: tap-ctl snapshot). Layout:
 * footer copy (0), dynamic header (512), BAT (1536, all unused), the
 * parent locators (512-byte aligned), the footer. Written with ordinary
 * synchronous I/O: creation happens while nothing serves the image
 * (docs/FORMAT-vhd.md, "Images we create"). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tapdisk/core/util.h"
#include "tapdisk/vhd/vhd.h"
#include "tapdisk/vhd/vhd_format.h"

#define CREATE_BLOCK VHD_DEFAULT_BLOCK

/* The parent's footer: the last 512 bytes, or the copy at offset 0. */
static int parent_footer(int fd, uint64_t size, struct vhd_footer *f, char *why, size_t whylen)
{
	uint8_t b[VHD_FOOTER_LEN];
	int rc = -EINVAL;

	if (size < VHD_FOOTER_LEN) {
		snprintf(why, whylen, "is too short to be a VHD");
		return -EINVAL;
	}
	if (pread(fd, b, sizeof(b), (off_t)(size - VHD_FOOTER_LEN)) == (ssize_t)sizeof(b))
		rc = vhd_footer_parse(b, f, why, whylen);
	if (rc == -ENOENT && pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b))
		rc = vhd_footer_parse(b, f, why, whylen);
	return rc;
}

/* file:// URL of an absolute path, percent-encoding all but [A-Za-z0-9/._-~]. */
static int file_url(const char *path, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	if (outlen < 8)
		return -1;
	memcpy(out, "file://", 7);
	n = 7;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || strchr("/._-~", *p);

		if (n + (plain ? 1 : 3) >= outlen)
			return -1;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = 0;
	return (int)n;
}

static int create_diff(int fd, const char *new_path, const char *parent_abs,
		       const struct vhd_footer *pf, const struct stat *pst, char *err,
		       size_t errlen)
{
	char ndir[PATH_MAX], pdir[PATH_MAX], pbase[PATH_MAX], rel[PATH_MAX + 2], url[3 * PATH_MAX];
	uint64_t size = pf->cur_size, off, total;
	struct vhd_footer f;
	struct vhd_header h;
	uint8_t *buf;
	uint8_t loc[3][2 * PATH_MAX + 16];
	int loclen[3], nloc = 0, n, rc;
	uint32_t codes[3];

	memset(&f, 0, sizeof(f));
	memset(&h, 0, sizeof(h));
	snprintf(ndir, sizeof(ndir), "%s", new_path);
	snprintf(ndir, sizeof(ndir), "%s", dirname(ndir));
	snprintf(pdir, sizeof(pdir), "%s", parent_abs);
	snprintf(pdir, sizeof(pdir), "%s", dirname(pdir));
	snprintf(pbase, sizeof(pbase), "%s", parent_abs);
	snprintf(pbase, sizeof(pbase), "%s", basename(pbase));

	/* locators: W2ku (absolute), W2ru (relative, same directory only), MacX */
	n = vhd_utf16_encode(parent_abs, false, true, loc[nloc], sizeof(loc[0]));
	if (n > 0 && (unsigned)n <= VHD_MAX_LOCATOR) {
		codes[nloc] = VHD_PLAT_W2KU;
		loclen[nloc++] = n;
	}
	if (!strcmp(ndir, pdir)) {
		snprintf(rel, sizeof(rel), "./%s", pbase);
		n = vhd_utf16_encode(rel, false, true, loc[nloc], sizeof(loc[0]));
		if (n > 0 && (unsigned)n <= VHD_MAX_LOCATOR) {
			codes[nloc] = VHD_PLAT_W2RU;
			loclen[nloc++] = n;
		}
	}
	n = file_url(parent_abs, url, sizeof(url));
	if (n > 0 && (unsigned)n <= VHD_MAX_LOCATOR && (size_t)n <= sizeof(loc[0])) {
		memcpy(loc[nloc], url, (size_t)n);
		codes[nloc] = VHD_PLAT_MACX;
		loclen[nloc++] = n;
	}
	if (!nloc || vhd_utf16_encode(pbase, true, false, h.parent_name_raw,
				      sizeof(h.parent_name_raw)) < 0) {
		snprintf(err, errlen, "the parent's path '%s' cannot be recorded in a VHD",
			 parent_abs);
		return -ENAMETOOLONG;
	}

	h.data_offset = VHD_NO_OFFSET;
	h.table_offset = VHD_SECTOR + VHD_HEADER_LEN;
	h.version = 0x00010000;
	h.block_size = CREATE_BLOCK;
	h.max_entries = (uint32_t)((size + CREATE_BLOCK - 1) / CREATE_BLOCK);
	memcpy(h.parent_uuid, pf->uuid, 16);
	h.parent_ts = pst->st_mtime > (time_t)VHD_EPOCH_OFFSET
			  ? (uint32_t)(pst->st_mtime - (time_t)VHD_EPOCH_OFFSET)
			  : 0;
	off = h.table_offset + (((uint64_t)h.max_entries * 4 + VHD_SECTOR - 1) & ~511ull);
	for (int i = 0; i < nloc; i++) {
		uint32_t sectors = (uint32_t)((loclen[i] + VHD_SECTOR - 1) / VHD_SECTOR);

		h.loc[i].code = codes[i];
		h.loc[i].space = sectors;
		h.loc[i].len = (uint32_t)loclen[i];
		h.loc[i].off = off;
		off += (uint64_t)sectors * VHD_SECTOR;
	}
	total = off + VHD_FOOTER_LEN;

	memcpy(f.creator_app, "tap", 4);
	f.features = 2;
	f.version = 0x00010000;
	f.data_offset = VHD_SECTOR;
	f.timestamp = (uint32_t)(time(NULL) - (time_t)VHD_EPOCH_OFFSET);
	f.creator_ver = 0x00010003;
	f.creator_os = VHD_PLAT_WI2K;
	f.orig_size = f.cur_size = size;
	f.cyls = pf->cyls;
	f.heads = pf->heads;
	f.spt = pf->spt;
	f.type = VHD_TYPE_DIFF;
	if (getrandom(f.uuid, sizeof(f.uuid), 0) != (ssize_t)sizeof(f.uuid)) {
		snprintf(err, errlen, "no random bytes for the new image's UUID");
		return -EIO;
	}
	f.uuid[6] = (uint8_t)((f.uuid[6] & 0x0f) | 0x40); /* version 4 */
	f.uuid[8] = (uint8_t)((f.uuid[8] & 0x3f) | 0x80);

	buf = calloc(1, (size_t)total);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	vhd_footer_encode(&f, buf);
	vhd_header_encode(&h, buf + VHD_SECTOR);
	memset(buf + h.table_offset, 0xff, (size_t)(h.loc[0].off - h.table_offset));
	for (int i = 0; i < nloc; i++)
		memcpy(buf + h.loc[i].off, loc[i], (size_t)loclen[i]);
	memcpy(buf + total - VHD_FOOTER_LEN, buf, VHD_FOOTER_LEN);
	rc = td_write_all(fd, buf, (size_t)total, 0);
	if (rc == 0 && ftruncate(fd, (off_t)total) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	free(buf);
	if (rc < 0)
		snprintf(err, errlen, "cannot write '%s': %s", new_path, strerror(-rc));
	return rc;
}

int td_vhd_create_diff_fd(struct td_ctx *ctx, int fd, const char *new_path, const char *parent_path,
			  char *err, size_t errlen)
{
	struct vhd_footer pf;
	struct td_file b;
	char why[512];
	int rc;

	if (parent_path[0] != '/' || new_path[0] != '/') {
		snprintf(err, errlen, "snapshot: the paths must be absolute");
		return -EINVAL;
	}
	/* the parent is the image the chain had open: in the file table */
	rc = td_file_open(ctx, parent_path, 0, &b, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "parent '%s' %s", parent_path, why);
		return rc;
	}
	rc = parent_footer(b.fd, (uint64_t)b.st.st_size, &pf, why, sizeof(why));
	if (rc == 0)
		rc = create_diff(fd, new_path, parent_path, &pf, &b.st, err, errlen);
	else
		snprintf(err, errlen, "parent '%s': %s", parent_path, why);
	close(b.fd);
	return rc;
}
