/* vdkey header-backup, header-restore, repair and accept-rollback: the
 * header itself, and the generation it is trusted at (keymgr/vops.h,
 * vheader.c, vfresh.c). */
#include <stdio.h>

#include "crypt/hdrio.h"
#include "keymgr/keylog.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"

int vdkey_header_backup(const char *spec, const char *file)
{
	struct td_volume v;
	char err[1024];
	/* the header must be valid before anyone relies on this backup */
	int rc = vdkey_open(&v, spec, TD_VOL_READ, true);

	if (rc == 0 && (rc = td_volume_header_backup(&v, file, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0)
		printf("saved both header copies (%d bytes) to %s\n", TD_HDR_BACKUP_SIZE, file);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_header_restore(const char *spec, const char *file)
{
	struct td_volume v;
	uint8_t *buf = NULL;
	char err[1024];
	int rc;

	td_volume_init(&v, vdkey_warn, NULL);
	/* the backup is checked before the image is opened */
	rc = td_header_backup_read(file, &buf, err, sizeof(err));
	if (rc < 0)
		vdkey_say("%s", err);
	if (rc == 0)
		rc = vdkey_open(&v, spec, TD_VOL_WRITE, false);
	if (rc == 0 && (rc = td_volume_header_restore(&v, buf, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0)
		printf("restored the header from %s\n", file);
	td_header_backup_free(buf);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_repair(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	char err[1024];
	int rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);

	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, NULL);
	if (rc == 0 && (rc = td_volume_store(&v, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0)
		printf("rewrote both header copies (sequence %llu)\n",
		       (unsigned long long)v.h->seqno);
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_accept_rollback(const char *spec, const struct vdkey_opts *o)
{
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	struct ti_fresh_status st;
	struct td_volume v;
	bool accepted;
	int rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);

	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_ACCEPT_ROLLBACK);
	if (rc == 0 && (rc = td_volume_accept_rollback(&v, &st, &accepted, err, sizeof(err))) < 0)
		fprintf(stderr, "%s accept-rollback: %s\n", VDKEY_PROG, err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		if (accepted)
			printf("accepted the rollback of image %s: trusted generation %llu -> %llu "
			       "(recorded in the key-event log)\n",
			       uuid, (unsigned long long)st.trusted,
			       (unsigned long long)st.generation);
		else
			printf("image %s: generation %llu is not older than the trusted generation "
			       "%llu; nothing to accept\n",
			       uuid, (unsigned long long)st.generation,
			       (unsigned long long)st.trusted);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
