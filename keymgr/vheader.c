/* Header backup and restore (vdkey header-backup, header-restore;
 * keymgr/vops.h): the raw header area, both copies, to and from a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt/backend/secmem.h"
#include "crypt/hdrio.h"
#include "keymgr/vops.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/util.h"

int td_volume_header_backup(struct td_volume *v, const char *file, char *err, size_t errlen)
{
	uint8_t *buf = td_buf_get(TD_HDR_BACKUP_SIZE);
	int rc, fd = -1;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = td_hdr_read_area(v->chain->top, buf);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read the header area: %s", strerror(-rc));
		goto out;
	}
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		rc = -errno;
	else if ((rc = td_write_all(fd, buf, TD_HDR_BACKUP_SIZE, 0)) == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0)
		snprintf(err, errlen, "cannot write '%s': %s%s", file, strerror(-rc),
			 rc == -EEXIST ? " (will not overwrite an existing file)" : "");
out:
	if (fd >= 0)
		close(fd);
	td_buf_put(buf, TD_HDR_BACKUP_SIZE);
	return rc;
}

void td_header_backup_free(uint8_t *buf)
{
	if (buf)
		td_buf_put(buf, TD_HDR_BACKUP_SIZE);
}

int td_header_backup_read(const char *file, uint8_t **out, char *err, size_t errlen)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	uint8_t *buf = td_buf_get(TD_HDR_BACKUP_SIZE);
	char note[512];
	int rc, which, other, fd = -1;
	struct stat st;

	*out = NULL;
	if (!h || !buf) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open '%s': %s", file, strerror(errno));
		goto out;
	}
	if (st.st_size != TD_HDR_BACKUP_SIZE ||
	    read(fd, buf, TD_HDR_BACKUP_SIZE) != TD_HDR_BACKUP_SIZE) {
		rc = -EINVAL;
		snprintf(err, errlen, "'%s' is not a header backup (%d bytes expected)", file,
			 TD_HDR_BACKUP_SIZE);
		goto out;
	}
	rc = td_hdr_pick(buf + TD_HDR_OFFSET_A, buf + TD_HDR_OFFSET_B, TD_HDR_COPY_SIZE, h, &which,
			 &other, note, sizeof(note));
	if (rc < 0) {
		snprintf(err, errlen, "'%s' holds no valid crypt header: %s", file, note);
		goto out;
	}
	*out = buf;
	buf = NULL;
out:
	if (fd >= 0)
		close(fd);
	td_header_backup_free(buf);
	if (h) {
		td_wipe(h, sizeof(*h));
		free(h);
	}
	return rc;
}

int td_volume_header_restore(struct td_volume *v, const uint8_t *buf, char *err, size_t errlen)
{
	int rc = td_hdr_write_area(v->chain->top, buf);

	if (rc < 0)
		snprintf(err, errlen, "cannot write the header area: %s", strerror(-rc));
	return rc;
}
