/* vdkey format: the options that choose the new image's format, checked
 * before the image is touched, then td_volume_format (keymgr/vops.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/format.h"
#include "keymgr/keyslot.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vops.h"

/* A whole number lo..hi, or 0. */
static unsigned long number(const char *arg, unsigned long lo, unsigned long hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	return end != arg && !*end && !errno && arg[0] != '-' && v >= lo && v <= hi ? v : 0;
}

/* The MAC journal in 4 KiB blocks from --journal-size (K/M/G suffix, a
 * multiple of 4 KiB, 1 MiB..256 MiB) or --journal-blocks (16..65536, for
 * tests and experts); 0 with a message on a bad value. */
static uint32_t journal_blocks(const struct vdkey_opts *o)
{
	uint64_t v;

	if (o->journal_blocks) {
		v = number(o->journal_blocks, TI_JOURNAL_BLOCKS_MIN, TI_JOURNAL_BLOCKS_MAX);
		if (!v)
			vdkey_say(
			    "bad --journal-blocks '%s': give a number of 4K blocks from %u to "
			    "%u",
			    o->journal_blocks, TI_JOURNAL_BLOCKS_MIN, TI_JOURNAL_BLOCKS_MAX);
		return (uint32_t)v;
	}
	v = vdkey_parse_size(o->journal_size);
	if (v % TI_BLOCK == 0 && v / TI_BLOCK >= TD_FORMAT_JOURNAL_MIN &&
	    v / TI_BLOCK <= TI_JOURNAL_BLOCKS_MAX)
		return (uint32_t)(v / TI_BLOCK);
	vdkey_say("bad --journal-size '%s': give a multiple of 4K from 1M to 256M (e.g. 32M)",
		  o->journal_size);
	return 0;
}

/* The format options, checked: 0, or 2 (usage) with a message. */
static int format_args(const struct vdkey_opts *o, struct td_format_args *a)
{
	const char *needs = o->journal_size	   ? "--journal-size"
			    : o->journal_blocks	   ? "--journal-blocks"
			    : o->integrity_version ? "--integrity-version"
						   : NULL;

	a->integrity = o->integrity ? o->integrity : TD_HDR_INTEGRITY_HMAC_SHA256;
	if (strcmp(a->integrity, TD_HDR_INTEGRITY_NONE) &&
	    strcmp(a->integrity, TD_HDR_INTEGRITY_HMAC_SHA256)) {
		vdkey_say("unknown --integrity '%s' (none or hmac-sha256)", a->integrity);
		return 2;
	}
	if (needs && !strcmp(a->integrity, TD_HDR_INTEGRITY_NONE)) {
		vdkey_say("%s needs integrity (there is no %s with --integrity none)", needs,
			  o->journal_size || o->journal_blocks ? "journal" : "integrity metadata");
		return 2;
	}
	if (o->journal_size && o->journal_blocks) {
		vdkey_say("--journal-size and --journal-blocks both size the MAC journal: give "
			  "one");
		return 2;
	}
	if ((o->journal_size || o->journal_blocks) && !(a->journal_blocks = journal_blocks(o)))
		return 2;
	if (o->integrity_version &&
	    !(a->integrity_version = (unsigned)number(o->integrity_version, 1, 2))) {
		vdkey_say("bad --integrity-version '%s' (1 or 2)", o->integrity_version);
		return 2;
	}
	a->key_file = o->key_file;
	a->force = o->force;
	return 0;
}

int vdkey_format(const char *spec, const struct vdkey_opts *o)
{
	struct td_format_args a = {0};
	struct td_volume v;
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	int rc = format_args(o, &a);

	if (rc)
		return rc;
	rc = vdkey_kdf_params(o, &a.kdf);
	if (rc < 0)
		return rc == -E2BIG ? 1 : 2;
	rc = vdkey_open(&v, spec, TD_VOL_WRITE, false);
	if (rc == 0 && (rc = td_volume_format(&v, &a, err, sizeof(err))) < 0)
		vdkey_say("%s", err);
	if (rc == 0) {
		td_hdr_uuid_str(v.h->uuid, uuid);
		printf("formatted %s: image %s, aes-xts-plain64, integrity %s, %llu data bytes, "
		       "keyslot 0 (%s)\n",
		       v.spec, uuid, v.h->integrity, (unsigned long long)v.h->data_size,
		       td_kdf_name(a.kdf.id));
	}
	td_volume_close(&v);
	return rc < 0 ? 1 : 0;
}
