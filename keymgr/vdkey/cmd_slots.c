/* vdkey enroll and remove: keyslots (keymgr/vops.h, vslots.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keymgr/keylog.h"
#include "keymgr/keyslot.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/tpm2_token.h"
#include "keymgr/vops.h"
#include "keymgr/vtoken.h"

/* vdkey enroll --tpm2 [--pcrs LIST] [--tpm2-device DEV] */
static int enroll_tpm2(const char *spec, const struct vdkey_opts *o)
{
	struct td_token_opts to = {.tpm2_device = o->tpm2_device};
	uint32_t pcrs = 1u << 7; /* as systemd-cryptenroll: PCR 7, Secure Boot state */
	char err[1024], list[96];
	struct td_volume v;
	int rc;

	if (o->new_key_file || o->pbkdf) {
		fprintf(stderr, "%s enroll: --tpm2 takes no new passphrase or KDF options\n",
			VDKEY_PROG);
		return 2;
	}
	if (o->pcrs && td_tpm2_pcrs_parse(o->pcrs, &pcrs) < 0) {
		fprintf(stderr, "%s enroll: bad --pcrs '%s' (PCR numbers 0-23: 7, 0,7 or 0-3+7)\n",
			VDKEY_PROG, o->pcrs);
		return 2;
	}
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_ENROLL);
	if (rc == 0) {
		vdkey_note_unlocked_heap();
		rc = td_volume_enroll_tpm2(&v, o->slot >= 0 ? (int)o->slot : -1, &to, pcrs, err,
					   sizeof(err));
		td_tpm2_pcrs_str(pcrs, list, sizeof(list));
		if (rc < 0)
			vdkey_say("%s", err);
		else
			printf("added keyslot %d (tpm2, PCR %s of the sha256 bank)\n", rc, list);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_enroll(const char *spec, const struct vdkey_opts *o)
{
	struct td_kdf_params kp;
	struct td_volume v;
	char err[1024];
	int rc;

	if (o->tang && o->tpm2) {
		fprintf(stderr, "%s enroll: --tang and --tpm2 add different keyslots: give one\n",
			VDKEY_PROG);
		return 2;
	}
	if (o->tang)
		return vdkey_enroll_tang(spec, o);
	if (o->tpm2)
		return enroll_tpm2(spec, o);
	if (o->pcrs || o->tpm2_device) {
		fprintf(stderr, "%s enroll: --pcrs and --tpm2-device go with --tpm2\n", VDKEY_PROG);
		return 2;
	}
	if (!o->new_key_file && !isatty(STDIN_FILENO) && o->key_file && !strcmp(o->key_file, "-")) {
		fprintf(stderr, "%s enroll: --new-key-file G is required\n", VDKEY_PROG);
		return 2;
	}
	rc = vdkey_kdf_params(o, &kp);
	if (rc < 0)
		return rc == -E2BIG ? 1 : 2;
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_ENROLL);
	if (rc == 0) {
		rc = td_volume_enroll(&v, o->slot >= 0 ? (int)o->slot : -1, o->new_key_file, &kp,
				      err, sizeof(err));
		if (rc < 0)
			vdkey_say("%s", err);
		else
			printf("added keyslot %d (%s)\n", rc, td_kdf_name(kp.id));
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}

int vdkey_remove(const char *spec, const struct vdkey_opts *o)
{
	struct td_volume v;
	char err[1024];
	int rc;

	if (o->slot < 0) {
		fprintf(stderr, "%s remove: --slot N is required\n", VDKEY_PROG);
		return 2;
	}
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, true);
	if (rc == 0)
		rc = vdkey_unlock(&v, o->key_file, TD_KEYLOG_OP_REMOVE);
	if (rc == 0) {
		rc = td_volume_remove_slot(&v, (int)o->slot, err, sizeof(err));
		if (rc < 0)
			vdkey_say("%s", err);
		else
			printf("removed keyslot %ld\n", o->slot);
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
