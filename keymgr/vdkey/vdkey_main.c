/* vdkey: key management for encrypted VBDs (format, keyslots, keyring
 * handoff, header backup, audit). See 'vdkey --help'. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <keyutils.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypt/hdrio.h"
#include "integrity/integrity.h"
#include "integrity/scrub.h"
#include "keymgr/keylog.h"
#include "keymgr/keyring.h"
#include "keymgr/statedir.h"
#include "keymgr/keyslot.h"
#include "crypt/backend/secmem.h"
#include "keymgr/secret_input.h"
#include "crypt/backend/volkey.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/registry/registry.h"
#include "tapdisk/control/ctl.h"
#include "tapdisk/core/log.h"
#include "tapdisk/block/vbd.h"

static const char *prog = "vdkey";

struct opts {
	const char *key_file, *new_key_file, *integrity, *pbkdf;
	long slot;
	long iterations, memory_kib, time_cost, parallel;
	bool json, scrub, once, user_readable, force, verify, reset;
	unsigned timeout_s;
	const char *journal_size;
	/* the KDF budget: --kdf-max-memory, --kdf-max-time, --kdf-max-total-time */
	const char *kdf_max_memory, *kdf_max_time, *kdf_max_total_time;
	bool allow_expensive_kdf;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vdkey COMMAND SPEC [OPTIONS]\n"
		"\n"
		"Key management for encrypted virtual disks. SPEC names the image with or\n"
		"without the crypt: prefix, e.g. qcow2:/srv/vm1.qcow2 or crypt:aio:/dev/vg/vm2.\n"
		"\n"
		"Commands:\n"
		"  format SPEC --key-file F [--integrity hmac-sha256|none] [--journal-size SIZE]\n"
		"              [KDF options] [--force]\n"
		"                       write a new crypt header: fresh random volume key, keyslot 0;\n"
		"                       --journal-size: the MAC journal, 1M..256M in 4K steps\n"
		"                       (default 4M; on rbd, 1/64 of the image within 4M..32M)\n"
		"  enroll SPEC --key-file F --new-key-file G [--slot N] [KDF options]\n"
		"                       add a keyslot for another passphrase\n"
		"  remove SPEC --key-file F --slot N\n"
		"                       remove a keyslot (never the last one)\n"
		"  list SPEC [--json]   keyslots and header parameters (no secret needed)\n"
		"  load SPEC --key-file F [--once] [--user-readable] [--timeout S]\n"
		"                       unlock the volume key into the kernel keyring for tapdisk,\n"
		"                       bound to this very file (a copy, a renamed file or a\n"
		"                       snapshot overlay needs its own load)\n"
		"  unload SPEC          remove it from the keyring\n"
		"  log SPEC [--json] [--verify | --reset] [--key-file F]\n"
		"                       the image's key-event log (see 'vdkey log --help')\n"
		"  accept-rollback SPEC --key-file F\n"
		"                       accept an image older than the generation this host\n"
		"                       last saw (a deliberate restore); logged\n"
		"  audit SPEC [--json] [--scrub]\n"
		"                       compliance report on the header and keyslots; --scrub\n"
		"                       also verifies every written block's MAC (key loaded;\n"
		"                       exit status 1 if any fails; JSON schema: docs/AUDIT.md)\n"
		"  header-backup SPEC FILE    save both header copies to FILE\n"
		"  header-restore SPEC FILE   write them back (after checking FILE)\n"
		"  repair SPEC --key-file F   rewrite both header copies from the valid one\n"
		"\n"
		"Secrets come from --key-file FILE ('-' = standard input, bytes used exactly as\n"
		"they are) or, on a terminal, a no-echo prompt; never from arguments or the\n"
		"environment.\n"
		"\n"
		"KDF options (format, enroll):\n"
		"  --pbkdf argon2id|pbkdf2|scrypt   default argon2id (t=3, 256 MiB, 4 lanes)\n"
		"  --pbkdf-iterations N             pbkdf2 iterations / argon2id passes\n"
		"  --pbkdf-memory KiB               argon2id memory\n"
		"  --pbkdf-parallel N               argon2id lanes\n"
		"\n"
		"KDF budget (every command that runs a keyslot's KDF: load, enroll, remove,\n"
		"repair, accept-rollback, log --verify/--reset; and format and enroll for the\n"
		"keyslot they create). A header chooses its keyslots' KDF parameters, so a\n"
		"hostile one could make an unlock take hours and all the memory; no keyslot\n"
		"over the budget is tried (its KDF never runs), the others are, cheapest first,\n"
		"and format/enroll refuse to create one:\n"
		"  --kdf-max-memory SIZE            memory one keyslot's KDF may use (K/M/G\n"
		"                                   suffix; default 1G, or half the RAM if less)\n"
		"  --kdf-max-time SECONDS           work one keyslot may cost (default 16)\n"
		"  --kdf-max-total-time SECONDS     work all the keyslots tried for one passphrase\n"
		"                                   may cost (default twice --kdf-max-time)\n"
		"  --allow-expensive-kdf            no budget (the format's limits still apply)\n"
		"Work is in reference seconds: 1 GiB passed through the KDF (argon2id t x m,\n"
		"scrypt 256*N*r*p bytes, pbkdf2 128 bytes per iteration), about a second of one\n"
		"core. vdkey's default keyslots cost 0.75 (argon2id), 0.25 (scrypt) and 0.07\n"
		"(pbkdf2); a keyslot costing at most a sixteenth of the total budget (2 s by\n"
		"default) is always tried, whatever else the header holds.\n"
		"\n"
		"Exit status: 0 success, 1 failure (one line on stderr says why), 2 usage.\n");
}

/* ---- opening the lower image ---------------------------------------------- */

struct lower {
	struct td_ctx ctx;
	struct td_chain *chain;
	char spec[TD_SPEC_MAX_LEN];
};

static const char *strip_crypt(const char *spec)
{
	if (!strncmp(spec, "tap:", 4))
		spec += 4;
	if (!strncmp(spec, "crypt:", 6))
		spec += 6;
	return spec;
}

/* quiet: errors that a caller falls back from (image locked or not
 * writable) are not printed. */
static int lower_open_q(struct lower *lo, const char *spec, bool write, bool quiet)
{
	char err[1024];
	int rc;

	memset(lo, 0, sizeof(*lo));
	snprintf(lo->spec, sizeof(lo->spec), "%s", strip_crypt(spec));
	lo->ctx.loop = td_loop_new();
	lo->ctx.io = lo->ctx.loop ? td_io_new(lo->ctx.loop, 64) : NULL;
	lo->ctx.workers = lo->ctx.loop ? td_workers_new(lo->ctx.loop, 0) : NULL;
	lo->ctx.readonly = !write;
	lo->ctx.nolock = !write;
	lo->ctx.trust = &td_statedir_trust;
	if (!lo->ctx.io || !lo->ctx.workers) {
		fprintf(stderr, "%s: cannot set up asynchronous I/O\n", prog);
		return -ENOMEM;
	}
	rc = td_chain_open(&lo->ctx, lo->spec, &lo->chain, err, sizeof(err));
	if (rc < 0) {
		if (!quiet || !(rc == -EBUSY || rc == -EROFS || rc == -EACCES || rc == -EPERM))
			fprintf(stderr, "%s: %s\n", prog, err);
		return rc;
	}
	return 0;
}

static int lower_open(struct lower *lo, const char *spec, bool write)
{
	return lower_open_q(lo, spec, write, false);
}

static void lower_close(struct lower *lo)
{
	td_chain_close_sync(lo->chain);
	td_workers_free(lo->ctx.workers);
	td_io_free(lo->ctx.io);
	td_loop_free(lo->ctx.loop);
	lo->chain = NULL;
}

static int load_hdr(struct lower *lo, struct td_crypt_hdr *h, int *which, int *other)
{
	char err[1024], note[512];
	int rc;

	rc = td_hdr_load(lo->chain->top, h, which, other, note, sizeof(note), err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, lo->spec, err);
		return rc;
	}
	if (*other != TD_HDR_OTHER_OK)
		fprintf(stderr, "%s: warning: the %s header copy is %s (%s). Run 'vdkey repair %s' "
				"to rewrite it.\n",
			prog, *which ? "primary" : "secondary",
			*other == TD_HDR_OTHER_CORRUPT ? "corrupt" : "stale", note, lo->spec);
	return 0;
}

/* which: the copy currently valid (0 = A, 1 = B), -1 when there is none */
static int store_hdr(struct lower *lo, struct td_crypt_hdr *h, const struct td_volkey *vk,
		     int which)
{
	char err[512];
	int rc;

	h->seqno++;
	rc = td_hdr_seal(h, vk);
	if (rc == 0)
		rc = td_hdr_store(lo->chain->top, h, which, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "cannot seal the header");
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", prog, err);
	return rc;
}

/* The option that raises the budget limit a keyslot is over. */
static const char *over_option(enum td_kdf_over over)
{
	switch (over) {
	case TD_KDF_OVER_MEMORY:
		return "--kdf-max-memory";
	case TD_KDF_OVER_COST:
		return "--kdf-max-time";
	default:
		return "--kdf-max-total-time";
	}
}

static int kdf_from_opts(const struct opts *o, struct td_kdf_params *kp)
{
	enum td_kdf_id id = o->pbkdf ? td_kdf_from_name(o->pbkdf) : TD_KDF_ARGON2ID;
	struct td_kdf_budget budget;
	enum td_kdf_over over;
	char err[256], why[256];

	if (id == TD_KDF_NONE) {
		fprintf(stderr, "%s: unknown --pbkdf '%s' (argon2id, pbkdf2 or scrypt)\n", prog,
			o->pbkdf);
		return -EINVAL;
	}
	*kp = td_kdf_params_default(id);
	if (id == TD_KDF_ARGON2ID) {
		if (o->iterations > 0)
			kp->t_cost = (uint32_t)o->iterations;
		if (o->memory_kib > 0)
			kp->m_cost_kib = (uint32_t)o->memory_kib;
		if (o->parallel > 0)
			kp->parallelism = (uint32_t)o->parallel;
	} else if (id == TD_KDF_PBKDF2_SHA256) {
		if (o->iterations > 0)
			kp->iterations = (uint32_t)o->iterations;
	} else if (o->iterations > 0) {
		kp->n = (uint64_t)o->iterations;
	}
	if (td_kdf_params_check(kp, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return -EINVAL;
	}
	budget = td_kdf_budget_get();
	over = td_kdf_budget_check(&budget, kp, why, sizeof(why));
	if (over != TD_KDF_FITS) {
		fprintf(
		    stderr,
		    "%s: refusing to create a keyslot over this host's KDF budget: %s (%s). "
		    "Every unlock of it would need the same override. Add --allow-expensive-kdf "
		    "(or raise the budget) to create it anyway.\n",
		    prog, why, over_option(over));
		return -E2BIG;
	}
	return 0;
}

/* Which keyslots td_keyslot_unlock did not try (over the KDF budget), and
 * how to let them be tried. opened: the passphrase opened another slot. */
static void budget_report(const struct td_crypt_hdr *h, bool opened)
{
	struct td_unlock_plan *plan = calloc(1, sizeof(*plan));
	struct td_kdf_budget b = td_kdf_budget_get();

	if (!plan)
		return;
	td_keyslot_plan(h, -1, &b, plan);
	if (plan->nskip && !opened)
		fprintf(stderr,
			"%s: no keyslot within this host's KDF budget opens with this passphrase; "
			"not tried:\n",
			prog);
	for (int i = 0; i < plan->nskip; i++)
		fprintf(stderr, "%s: %s keyslot %d: %s (%s)\n", prog,
			opened ? "note: not tried:" : " ", plan->skipped[i], plan->why[i],
			over_option(plan->over[i]));
	if (plan->nskip && !opened)
		fprintf(stderr,
			"%s: a header asking this much is hostile, or its keyslots were made for a "
			"bigger host: if they are yours, raise the budget (--kdf-max-memory SIZE, "
			"--kdf-max-time SECONDS, --kdf-max-total-time SECONDS) or lift it "
			"(--allow-expensive-kdf)\n",
			prog);
	free(plan);
}

static int unlock(const struct td_crypt_hdr *h, const char *key_file, struct td_volkey **vk,
		  int *slot)
{
	struct td_secret s = {0};
	char err[512];
	int rc;

	rc = td_secret_read(key_file, "Passphrase: ", false, &s, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return rc;
	}
	rc = td_keyslot_unlock(h, -1, s.buf, s.len, vk, slot);
	td_secret_free(&s);
	if (rc == 0 || rc == -E2BIG)
		budget_report(h, rc == 0);
	if (rc == -EPERM)
		fprintf(stderr, "%s: wrong passphrase: no keyslot opens with it\n", prog);
	else if (rc == -EBADMSG)
		fprintf(stderr,
			"%s: header authentication failed: the passphrase is right but the header "
			"was changed without the volume key; refusing it\n",
			prog);
	else if (rc < 0 && rc != -E2BIG) /* E2BIG: budget_report said it */
		fprintf(stderr, "%s: cannot unlock: %s\n", prog, strerror(-rc));
	return rc;
}

/* What most commands start with: the lower image open, its header
 * loaded (the valid copy in `which`), and — when key_file is given — the
 * volume key unlocked. vsess_close undoes all of it and wipes the header. */
struct vsess {
	struct lower lo;
	struct td_crypt_hdr *h;
	struct td_volkey *vk; /* set: v->h's MAC was verified with it */
	int which, other, slot;
	bool writable;	    /* the image is open for writing (and locked) */
	bool anchor_moved;  /* v->h carries a new key-event log anchor: store it */
	char ro_why[160];   /* why a "write if possible" open fell back to read-only */
};

static void keylog_record(struct vsess *v, const char *op, int slot, bool ok, bool anchor);

/* write: 0 read-only (no lock), 1 for writing, 2 for writing if the image
 * can be (else read-only, with the reason in v->ro_why: a running tapdisk
 * holds its lock, or it is read-only). op: the key event a failed unlock
 * is recorded as (NULL: none). */
static int vsess_open_op(struct vsess *v, const char *op, const char *spec, int write,
			 bool need_key, const char *key_file)
{
	int rc;

	memset(v, 0, sizeof(*v));
	v->slot = -1;
	v->h = calloc(1, sizeof(*v->h));
	if (!v->h)
		return -ENOMEM;
	rc = lower_open_q(&v->lo, spec, write != 0, write == 2);
	if (write == 2 && (rc == -EBUSY || rc == -EROFS || rc == -EACCES || rc == -EPERM)) {
		snprintf(v->ro_why, sizeof(v->ro_why), "%s",
			 rc == -EBUSY ? "the image is locked by a running tapdisk"
				      : "the image is not writable");
		lower_close(&v->lo);
		rc = lower_open(&v->lo, spec, false);
	} else if (rc == 0) {
		v->writable = write != 0;
	}
	if (rc == 0)
		rc = load_hdr(&v->lo, v->h, &v->which, &v->other);
	if (rc == 0 && need_key) {
		rc = unlock(v->h, key_file, &v->vk, &v->slot);
		if (rc < 0 && op)
			keylog_record(v, op, TD_KEYLOG_SLOT_NONE, false, false);
	}
	return rc;
}

static int vsess_open(struct vsess *v, const char *spec, bool write, bool need_key,
		      const char *key_file)
{
	return vsess_open_op(v, NULL, spec, write ? 1 : 0, need_key, key_file);
}

static void vsess_close(struct vsess *v)
{
	td_volkey_free(&v->vk);
	if (v->lo.chain)
		lower_close(&v->lo);
	if (v->h) {
		td_wipe(v->h, sizeof(*v->h));
		free(v->h);
	}
	v->h = NULL;
}

/* ---- the key-event log (keymgr/keylog.h) ----------------------------------- */

/* The identity of the image a lower chain opened: what a loaded key is
 * bound to (keymgr/keyring.h). */
static int image_id(const struct lower *lo, uint8_t id[TD_IMAGE_ID_LEN])
{
	char where[512];
	int rc = td_layer_identity(lo->chain->top, id, where, sizeof(where));

	if (rc < 0)
		fprintf(stderr, "%s: %s: cannot tell which image this is: %s\n", prog, lo->spec,
			strerror(-rc));
	return rc;
}

/* The volume key of uuid loaded for the image lo opened, from the keyring
 * without consuming it (a key loaded with --once stays for the tapdisk it
 * is meant for): 0, or negative errno when there is none or it cannot be
 * read. */
static int keyring_peek(const struct lower *lo, const uint8_t uuid[16], struct td_volkey **out)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	char desc[128];
	uint8_t *buf;
	key_serial_t kid;
	long n;
	int rc = -ENOKEY;

	*out = NULL;
	if (td_layer_identity(lo->chain->top, id, NULL, 0) < 0)
		return -ENOKEY;
	td_keyring_desc(uuid, id, desc, sizeof(desc));
	kid = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
	if (kid < 0)
		return -ENOKEY;
	buf = td_secure_alloc(TD_VOLKEY_LEN + 2);
	if (!buf)
		return -ENOMEM;
	n = keyctl_read(kid, (char *)buf, TD_VOLKEY_LEN + 2);
	if (n == TD_VOLKEY_LEN + 1) {
		*out = td_volkey_from_bytes(buf, TD_VOLKEY_LEN);
		rc = *out ? 0 : -ENOMEM;
	} else {
		rc = n < 0 ? -errno : -EINVAL;
	}
	td_secure_free(buf);
	return rc;
}

/* The key a crypt chain of this process fetched (audit --scrub): a key
 * loaded with --once is gone from the keyring afterwards, but the scrub's
 * key event is still anchored with it. */
static struct {
	uint8_t uuid[16];
	struct td_volkey *vk;
} fetched;

static int vdkey_get_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			 const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	int rc = td_keyring_fetch(uuid, id, where, out, err, errlen);

	if (rc == 0) {
		td_volkey_free(&fetched.vk);
		fetched.vk = td_volkey_from_bytes(td_volkey_bytes(*out), TD_VOLKEY_LEN);
		memcpy(fetched.uuid, uuid, 16);
	}
	return rc;
}

static int fetched_copy(const uint8_t uuid[16], struct td_volkey **out)
{
	if (!fetched.vk || memcmp(fetched.uuid, uuid, 16) != 0)
		return -ENOKEY;
	*out = td_volkey_from_bytes(td_volkey_bytes(fetched.vk), TD_VOLKEY_LEN);
	return *out ? 0 : -ENOMEM;
}

/* Adopts vk as the session's key when it opens h: the digest matches and
 * the header MAC verifies (so the anchor in it can be trusted). */
static int vsess_adopt_key(struct vsess *v, struct td_volkey **vk)
{
	int rc = -EBADMSG;

	if (*vk && td_hdr_check_volkey(v->h, *vk) == 0 && td_hdr_verify_mac(v->h, *vk) == 0) {
		td_volkey_free(&v->vk);
		v->vk = *vk;
		*vk = NULL;
		rc = 0;
	}
	td_volkey_free(vk);
	return rc;
}

/* The volume key for an opened session: from the keyring when loaded (a
 * --once key is not consumed), else from key_file or a prompt. Either way
 * v->h's MAC is verified with it, so its anchor can be trusted. */
static int vsess_get_key(struct vsess *v, const char *key_file)
{
	struct td_volkey *vk = NULL;

	if (keyring_peek(&v->lo, v->h->uuid, &vk) == 0 && vsess_adopt_key(v, &vk) == 0)
		return 0;
	return unlock(v->h, key_file, &v->vk, &v->slot);
}

/* Records a key event of v's image. With anchor set and the key in hand
 * (v->vk: the header is authenticated) the log is first checked against
 * the header's anchor and, once the entry is on disk, v->h's anchor moves
 * to include it (v->anchor_moved): the next store_hdr writes it. Without,
 * the entry is unanchored. A log that cannot be written is a warning on
 * stderr, never a failure of the command. */
static void keylog_record(struct vsess *v, const char *op, int slot, bool ok, bool anchor)
{
	struct td_keylog_anchor cur, next;
	char err[1024];
	int rc;

	anchor = anchor && v->vk;
	if (anchor && td_hdr_keylog_anchor_get(v->h, &cur, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: warning: %s event not recorded: %s\n", prog, op, err);
		return;
	}
	rc = td_keylog_append(v->h->uuid, op, slot, ok ? TD_KEYLOG_OK : TD_KEYLOG_FAIL,
			      anchor ? &cur : NULL, &next, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: warning: %s event not recorded in the key-event log: %s\n",
			prog, op, err);
		return;
	}
	if (anchor) {
		td_hdr_keylog_anchor_set(v->h, &next);
		v->anchor_moved = true;
	}
}

/* For commands that do not rewrite the header themselves: writes the
 * moved anchor when the image is writable, else says the entry stays
 * unanchored. A failure is a warning (the event itself happened). */
static void keylog_commit(struct vsess *v, const char *op)
{
	if (!v->anchor_moved)
		return;
	if (v->writable && store_hdr(&v->lo, v->h, v->vk, v->which) == 0) {
		v->anchor_moved = false;
		return;
	}
	fprintf(stderr,
		"%s: note: the %s event is in the key-event log but not anchored in the "
		"header (%s); the next event with the key anchors it\n",
		prog, op, v->writable ? "cannot write the header" : v->ro_why);
}

/* ---- commands --------------------------------------------------------------- */

/* The smallest journal vdkey writes: the largest request (VBD_MAX_IO) must
 * fit an empty epoch with room to spare (the integrity layer refuses a
 * write that does not; the format itself allows down to 16 blocks, which
 * the crash simulator uses with small requests). */
#define JOURNAL_BLOCKS_MIN_FORMAT 256u
_Static_assert(TI_JOURNAL_BLOCKS_FOR(VBD_MAX_IO / TI_BLOCK) + 1 < JOURNAL_BLOCKS_MIN_FORMAT / 2,
	       "the largest request must fit half the smallest journal");

/* --journal-size (K/M/G suffix, a multiple of 4 KiB, 1 MiB..256 MiB) in
 * 4 KiB blocks; 0 with a message on a bad value. */
static uint32_t parse_journal_size(const char *arg)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (end != arg && !errno) {
		unsigned shift = 0;

		if (*end == 'K' || *end == 'k')
			shift = 10;
		else if (*end == 'M' || *end == 'm')
			shift = 20;
		else if (*end == 'G' || *end == 'g')
			shift = 30;
		if (shift)
			end++;
		if (!*end && arg[0] != '-' && v <= (1ull << 40) >> shift) {
			v <<= shift;
			if (v % 4096 == 0 && v / 4096 >= JOURNAL_BLOCKS_MIN_FORMAT &&
			    v / 4096 <= TI_JOURNAL_BLOCKS_MAX)
				return (uint32_t)(v / 4096);
		}
	}
	fprintf(stderr,
		"%s: bad --journal-size '%s': give a multiple of 4K from 1M to 256M "
		"(e.g. 32M)\n",
		prog, arg);
	return 0;
}

/* The MAC journal's size in 4 KiB blocks when --journal-size is not given.
 * A bigger journal means fewer checkpoints: each one drains the writes in
 * flight and writes the dirty tag pages, which costs network round trips
 * on RBD, so there the default grows with the image (1/64 of it, 4..32
 * MiB). Recovery after a crash reads at most 64 data blocks per journal
 * block. */
static uint32_t default_journal_blocks(const struct td_layer *lower)
{
	uint64_t b = lower->size / 64 / 4096;
	const char *t = getenv("TD_JOURNAL_BLOCKS"); /* tests: any size the format allows */

	if (t && atoi(t) >= (int)TI_JOURNAL_BLOCKS_MIN && atoi(t) <= (int)TI_JOURNAL_BLOCKS_MAX)
		return (uint32_t)atoi(t);
	if (strcmp(lower->drv->name, "rbd") != 0)
		return TI_JOURNAL_BLOCKS_DEFAULT;
	if (b < TI_JOURNAL_BLOCKS_DEFAULT)
		b = TI_JOURNAL_BLOCKS_DEFAULT;
	if (b > 8 * TI_JOURNAL_BLOCKS_DEFAULT)
		b = 8 * TI_JOURNAL_BLOCKS_DEFAULT;
	return (uint32_t)b;
}

static int cmd_format(const char *spec, const struct opts *o)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_volkey *vk = NULL;
	struct td_secret s = {0};
	struct td_kdf_params kp;
	struct lower lo;
	int rc, which, other, slot;
	char err[512], uuid[TD_HDR_UUID_STR_LEN];
	const char *integ = o->integrity ? o->integrity : TD_HDR_INTEGRITY_HMAC_SHA256;
	struct ti_params prm;
	uint32_t jblocks = 0; /* --journal-size, 0: the default */

	if (!h)
		return 1;
	if (strcmp(integ, TD_HDR_INTEGRITY_NONE) && strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256)) {
		fprintf(stderr, "%s: unknown --integrity '%s' (none or hmac-sha256)\n", prog, integ);
		free(h);
		return 2;
	}
	if (o->journal_size && !strcmp(integ, TD_HDR_INTEGRITY_NONE)) {
		fprintf(stderr, "%s: --journal-size needs integrity (there is no journal with "
			"--integrity none)\n", prog);
		free(h);
		return 2;
	}
	if (o->journal_size && !(jblocks = parse_journal_size(o->journal_size))) {
		free(h);
		return 2;
	}
	if ((rc = kdf_from_opts(o, &kp)) < 0) {
		free(h);
		return rc == -E2BIG ? 1 : 2;
	}
	rc = lower_open(&lo, spec, true);
	if (rc < 0)
		goto out;
	rc = td_hdr_load(lo.chain->top, h, &which, &other, err, sizeof(err), err, sizeof(err));
	if (rc == 0 && !o->force) {
		td_hdr_uuid_str(h->uuid, uuid);
		fprintf(stderr,
			"%s: %s already has a crypt header (image %s); formatting again destroys "
			"access to its data. Add --force to do it anyway.\n",
			prog, lo.spec, uuid);
		rc = -EEXIST;
		goto out;
	}
	rc = td_hdr_init_new(h, lo.chain->top->size, integ);
	if (rc < 0) {
		fprintf(stderr, "%s: %s is too small (%llu bytes) for a crypt header and data\n",
			prog, lo.spec, (unsigned long long)lo.chain->top->size);
		goto out;
	}
	if (strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256) == 0) {
		/* data first, then its metadata, all inside the lower image */
		/* integrity/ no longer reads the environment: until vdkey has an
		 * option for it, TD_INTEGRITY_LAYOUT_VERSION=1 is read here */
		const char *lv = getenv("TD_INTEGRITY_LAYOUT_VERSION");

		rc = ti_layout_version(lo.chain->top->size, h->data_offset,
				       jblocks ? jblocks : default_journal_blocks(lo.chain->top),
				       lv && !strcmp(lv, "1") ? 1 : TI_PARAMS_VERSION, &prm);
		if (rc < 0) {
			fprintf(stderr, "%s: %s is too small for data and integrity metadata\n",
				prog, lo.spec);
			goto out;
		}
		h->data_size = prm.data_blocks * TD_BLOCK_SIZE;
		ti_params_encode(&prm, h->integrity_params);
	}
	rc = td_secret_read(o->key_file, "Enter passphrase for the new image: ", true, &s, err,
			    sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		goto out;
	}
	vk = td_volkey_new_random();
	if (!vk) {
		rc = -ENOMEM;
		goto out;
	}
	slot = td_keyslot_add(h, 0, vk, s.buf, s.len, &kp);
	if (slot < 0) {
		rc = slot;
		fprintf(stderr, "%s: cannot create keyslot 0: %s\n", prog, strerror(-rc));
		goto out;
	}
	if (strcmp(integ, TD_HDR_INTEGRITY_HMAC_SHA256) == 0) {
		uint8_t *mk = td_secure_alloc(32);

		rc = mk ? td_volkey_derive(vk, TD_SUBKEY_MAC, mk, 32) : -ENOMEM;
		if (rc == 0)
			rc = ti_format(lo.chain->top, &prm, h->uuid, mk, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "out of secure memory");
		if (mk)
			td_secure_free(mk);
		if (rc < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			goto out;
		}
	}
	h->seqno = 0; /* store_hdr makes it 1 */
	{
		/* the new image's log starts here; the header anchors entry 0 */
		struct td_keylog_anchor none = {0}, next;

		if (td_keylog_append(h->uuid, TD_KEYLOG_OP_FORMAT, 0, TD_KEYLOG_OK, &none, &next, err,
				     sizeof(err)) == 0)
			td_hdr_keylog_anchor_set(h, &next);
		else
			fprintf(stderr, "%s: warning: format event not recorded: %s\n", prog, err);
	}
	rc = store_hdr(&lo, h, vk, -1);
	if (rc < 0) {
		if (td_keylog_append(h->uuid, TD_KEYLOG_OP_FORMAT, 0, TD_KEYLOG_FAIL, NULL, NULL, err,
				     sizeof(err)) < 0)
			fprintf(stderr, "%s: warning: %s\n", prog, err);
		goto out;
	}
	td_hdr_uuid_str(h->uuid, uuid);
	printf("formatted %s: image %s, aes-xts-plain64, integrity %s, %llu data bytes, "
	       "keyslot 0 (%s)\n",
	       lo.spec, uuid, h->integrity, (unsigned long long)h->data_size, td_kdf_name(kp.id));
out:
	td_secret_free(&s);
	td_volkey_free(&vk);
	if (lo.chain)
		lower_close(&lo);
	td_wipe(h, sizeof(*h));
	free(h);
	return rc < 0 ? 1 : 0;
}

static int cmd_enroll(const char *spec, const struct opts *o)
{
	struct td_secret s = {0};
	struct td_kdf_params kp;
	struct vsess v;
	int rc, slot;
	char err[512];

	if (!o->new_key_file && !isatty(STDIN_FILENO) && o->key_file && !strcmp(o->key_file, "-")) {
		fprintf(stderr, "%s enroll: --new-key-file G is required\n", prog);
		return 2;
	}
	if ((rc = kdf_from_opts(o, &kp)) < 0)
		return rc == -E2BIG ? 1 : 2;
	rc = vsess_open_op(&v, TD_KEYLOG_OP_ENROLL, spec, 1, true, o->key_file);
	if (rc < 0)
		goto out;
	rc = td_secret_read(o->new_key_file, "Enter the new passphrase: ", true, &s, err,
			    sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		goto out;
	}
	slot = td_keyslot_add(v.h, o->slot >= 0 ? (int)o->slot : -1, v.vk, s.buf, s.len, &kp);
	if (slot < 0) {
		rc = slot;
		keylog_record(&v, TD_KEYLOG_OP_ENROLL,
			      o->slot >= 0 && o->slot < TD_HDR_KEYSLOTS ? (int)o->slot
									: TD_KEYLOG_SLOT_NONE,
			      false, false);
		if (rc == -ENOSPC)
			fprintf(stderr, "%s: all %d keyslots are in use: remove one first (vdkey "
					"remove)\n",
				prog, TD_HDR_KEYSLOTS);
		else if (rc == -EEXIST)
			fprintf(stderr, "%s: keyslot %ld is already in use\n", prog, o->slot);
		else
			fprintf(stderr, "%s: cannot add the keyslot: %s\n", prog, strerror(-rc));
		goto out;
	}
	keylog_record(&v, TD_KEYLOG_OP_ENROLL, slot, true, true);
	rc = store_hdr(&v.lo, v.h, v.vk, v.which);
	if (rc == 0)
		printf("added keyslot %d (%s)\n", slot, td_kdf_name(kp.id));
	else
		keylog_record(&v, TD_KEYLOG_OP_ENROLL, slot, false, false);
out:
	td_secret_free(&s);
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

static int cmd_remove(const char *spec, const struct opts *o)
{
	struct vsess v;
	int rc;

	if (o->slot < 0) {
		fprintf(stderr, "%s remove: --slot N is required\n", prog);
		return 2;
	}
	rc = vsess_open_op(&v, TD_KEYLOG_OP_REMOVE, spec, 1, true, o->key_file);
	if (rc < 0)
		goto out;
	rc = td_keyslot_remove(v.h, (int)o->slot);
	if (rc < 0)
		keylog_record(&v, TD_KEYLOG_OP_REMOVE,
			      o->slot < TD_HDR_KEYSLOTS ? (int)o->slot : TD_KEYLOG_SLOT_NONE, false,
			      false);
	if (rc == -EBUSY) {
		fprintf(stderr, "%s: keyslot %ld is the last active one; removing it would lose "
				"the data for good (enroll another first)\n",
			prog, o->slot);
		goto out;
	} else if (rc == -ENOENT) {
		fprintf(stderr, "%s: keyslot %ld is not active\n", prog, o->slot);
		goto out;
	} else if (rc < 0) {
		fprintf(stderr, "%s: invalid keyslot %ld (0..%d)\n", prog, o->slot,
			TD_HDR_KEYSLOTS - 1);
		goto out;
	}
	keylog_record(&v, TD_KEYLOG_OP_REMOVE, (int)o->slot, true, true);
	rc = store_hdr(&v.lo, v.h, v.vk, v.which);
	if (rc == 0)
		printf("removed keyslot %ld\n", o->slot);
	else
		keylog_record(&v, TD_KEYLOG_OP_REMOVE, (int)o->slot, false, false);
out:
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

static void kdf_desc(const struct td_kdf_params *k, char *buf, size_t len)
{
	switch (k->id) {
	case TD_KDF_ARGON2ID:
		snprintf(buf, len, "argon2id t=%u m=%u KiB p=%u", k->t_cost, k->m_cost_kib,
			 k->parallelism);
		break;
	case TD_KDF_PBKDF2_SHA256:
		snprintf(buf, len, "pbkdf2-sha256 iterations=%u", k->iterations);
		break;
	case TD_KDF_SCRYPT:
		snprintf(buf, len, "scrypt N=%llu r=%u p=%u", (unsigned long long)k->n, k->r, k->p);
		break;
	default:
		snprintf(buf, len, "unknown");
	}
}

static void kdf_json(const struct td_kdf_params *k, char *buf, size_t len)
{
	switch (k->id) {
	case TD_KDF_ARGON2ID:
		snprintf(buf, len, "{\"type\": \"argon2id\", \"time\": %u, \"memory_kib\": %u, "
				   "\"parallelism\": %u}",
			 k->t_cost, k->m_cost_kib, k->parallelism);
		break;
	case TD_KDF_PBKDF2_SHA256:
		snprintf(buf, len, "{\"type\": \"pbkdf2-sha256\", \"iterations\": %u}", k->iterations);
		break;
	case TD_KDF_SCRYPT:
		snprintf(buf, len, "{\"type\": \"scrypt\", \"n\": %llu, \"r\": %u, \"p\": %u}",
			 (unsigned long long)k->n, k->r, k->p);
		break;
	default:
		snprintf(buf, len, "{\"type\": \"unknown\"}");
	}
}

/* ---- audit --scrub ---------------------------------------------------------- */

static void scrub_progress(uint64_t done, uint64_t total, void *opaque)
{
	unsigned *last = opaque;
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;

	if (pct == *last)
		return;
	*last = pct;
	fprintf(stderr, "\rscrub: %3u%% (%llu of %llu blocks)", pct, (unsigned long long)done,
		(unsigned long long)total);
	if (done == total)
		fputc('\n', stderr);
}

/* Opens crypt:LOWER the way tapdisk does (key from the keyring, image
 * lock, journal recovery) and verifies every written block's MAC. */
static int run_scrub(const char *spec, struct ti_scrub_result *res)
{
	struct lower lo;
	struct td_layer *integ;
	char err[1024];
	unsigned last = ~0u;
	int rc;

	memset(&lo, 0, sizeof(lo));
	snprintf(lo.spec, sizeof(lo.spec), "crypt:%s", strip_crypt(spec));
	lo.ctx.loop = td_loop_new();
	lo.ctx.io = lo.ctx.loop ? td_io_new(lo.ctx.loop, 64) : NULL;
	lo.ctx.workers = lo.ctx.loop ? td_workers_new(lo.ctx.loop, 0) : NULL;
	lo.ctx.get_key = vdkey_get_key;
	lo.ctx.trust = &td_statedir_trust;
	if (!lo.ctx.io || !lo.ctx.workers) {
		fprintf(stderr, "%s: cannot set up asynchronous I/O\n", prog);
		rc = -ENOMEM;
		goto out;
	}
	rc = td_chain_open(&lo.ctx, lo.spec, &lo.chain, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s audit --scrub: %s\n", prog, err);
		goto out;
	}
	integ = lo.chain->top->below;
	if (!integ || integ->drv != &td_drv_integrity) {
		fprintf(stderr,
			"%s audit --scrub: %s has no integrity metadata (integrity none): there "
			"are no MACs to verify\n",
			prog, lo.spec);
		rc = -EINVAL;
		goto out;
	}
	rc = ti_scrub(integ, isatty(STDERR_FILENO) ? scrub_progress : NULL, &last, res);
	if (rc < 0)
		fprintf(stderr, "%s audit --scrub: cannot read the image: %s\n", prog,
			strerror(-rc));
out:
	td_chain_close_sync(lo.chain);
	td_workers_free(lo.ctx.workers);
	td_io_free(lo.ctx.io);
	td_loop_free(lo.ctx.loop);
	return rc;
}

static void print_layout_json(const struct ti_params *prm)
{
	printf(",\n  \"integrity_layout\": {\"data_start\": %llu, \"data_blocks\": %llu, "
	       "\"block_size\": %u, \"super_off\": %llu, \"journal_off\": %llu, "
	       "\"journal_blocks\": %u, \"tags_off\": %llu, \"tags_pages\": %llu, "
	       "\"tag_entry_size\": %u, \"tag_offset_in_entry\": 8, \"tag_size\": %u, "
	       "\"tree_off\": %llu, \"tree_pages\": %llu}",
	       (unsigned long long)prm->data_start, (unsigned long long)prm->data_blocks,
	       TI_BLOCK, (unsigned long long)prm->super_off, (unsigned long long)prm->journal_off,
	       prm->journal_blocks, (unsigned long long)prm->tags_off,
	       (unsigned long long)prm->tags_pages, TI_ENTRY_LEN, TI_TAG_LEN,
	       (unsigned long long)prm->tree_off, (unsigned long long)prm->tree_pages);
}

static void print_scrub_json(const struct ti_scrub_result *r)
{
	size_t i;

	printf(",\n  \"scrub\": {\"blocks_total\": %llu, \"verified\": %llu, "
	       "\"unwritten\": %llu, \"failed\": %llu, \"failed_blocks\": [",
	       (unsigned long long)r->blocks_total, (unsigned long long)r->verified,
	       (unsigned long long)r->unwritten, (unsigned long long)r->failed);
	for (i = 0; i < r->nlisted; i++)
		printf("%s%llu", i ? ", " : "", (unsigned long long)r->failed_blocks[i]);
	printf("], \"failed_blocks_truncated\": %s}", r->truncated ? "true" : "false");
}

static void print_scrub_text(const struct ti_scrub_result *r)
{
	size_t i;

	printf("Scrub:        %llu blocks: %llu verified, %llu unwritten, %llu FAILED\n",
	       (unsigned long long)r->blocks_total, (unsigned long long)r->verified,
	       (unsigned long long)r->unwritten, (unsigned long long)r->failed);
	if (!r->failed)
		return;
	printf("Failed:      ");
	for (i = 0; i < r->nlisted; i++)
		printf(" %llu", (unsigned long long)r->failed_blocks[i]);
	printf("%s\n", r->truncated ? " ... (list truncated)" : "");
}

/* audit --scrub is a key event: recorded (and anchored with the key the
 * scrub used, still in this process) after the scrub's chain is closed. */
static void scrub_record(const char *spec, bool ok)
{
	struct td_volkey *vk = NULL;
	struct vsess v;

	if (vsess_open_op(&v, NULL, spec, 2, false, NULL) == 0) {
		if (keyring_peek(&v.lo, v.h->uuid, &vk) == 0 || fetched_copy(v.h->uuid, &vk) == 0)
			vsess_adopt_key(&v, &vk);
		keylog_record(&v, TD_KEYLOG_OP_SCRUB, TD_KEYLOG_SLOT_NONE, ok, true);
		keylog_commit(&v, TD_KEYLOG_OP_SCRUB);
	}
	vsess_close(&v);
}

/* The key-event log's state for audit: checked against the header's
 * anchor, which counts only when the key (from the keyring, never
 * consumed) authenticates the header. */
struct keylog_status {
	struct td_keylog_result r;
	bool authenticated, verified;
	char error[768];
};

static void keylog_status_get(const struct lower *lo, const struct td_crypt_hdr *h,
			      bool key_cached, struct keylog_status *ks)
{
	struct td_volkey *vk = NULL;
	struct td_keylog_anchor a;
	char err[640];
	int rc;

	memset(ks, 0, sizeof(*ks));
	if (keyring_peek(lo, h->uuid, &vk) == 0 || (key_cached && fetched_copy(h->uuid, &vk) == 0))
		ks->authenticated =
		    td_hdr_check_volkey(h, vk) == 0 && td_hdr_verify_mac(h, vk) == 0;
	td_volkey_free(&vk);
	rc = td_hdr_keylog_anchor_get(h, &a, err, sizeof(err));
	if (rc == 0)
		rc = td_keylog_verify(h->uuid, &a, &ks->r, err, sizeof(err));
	if (rc < 0)
		snprintf(ks->error, sizeof(ks->error), "%s", err);
	else if (!ks->authenticated)
		snprintf(ks->error, sizeof(ks->error),
			 "the chain is intact but the header's anchor is not authenticated: no "
			 "key loaded (run 'vdkey load SPEC', or 'vdkey log SPEC --verify')");
	ks->verified = rc == 0 && ks->authenticated;
}

static void hexstr(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* ---- freshness (issue 9): generation, trusted generation, tree root ------- */

struct fresh_report {
	bool have;		/* integrity metadata present */
	int rc;			/* 0: st is valid */
	struct ti_fresh_status st;
	char err[512];
	bool scrub_seen;
	uint64_t scrub_time;
	char scrub_outcome[8];
};

static void last_scrub(const uint8_t uuid[16], struct fresh_report *fr)
{
	char *buf = NULL, err[256];
	size_t len = 0, off = 0, ll;
	const char *line;
	struct td_keylog_entry e;

	if (td_keylog_read(uuid, &buf, &len, err, sizeof(err)) < 0)
		return;
	while (td_keylog_next_line(buf, len, &off, &line, &ll) > 0)
		if (td_keylog_parse_line(line, ll, &e, err, sizeof(err)) == 0 &&
		    !strcmp(e.op, TD_KEYLOG_OP_SCRUB)) {
			fr->scrub_seen = true;
			fr->scrub_time = e.time;
			snprintf(fr->scrub_outcome, sizeof(fr->scrub_outcome), "%s", e.outcome);
		}
	free(buf);
}

static void fresh_get(struct lower *lo, const struct td_crypt_hdr *h, const struct ti_params *prm,
		      struct fresh_report *fr)
{
	struct td_volkey *vk = NULL;
	uint8_t *k = NULL;

	memset(fr, 0, sizeof(*fr));
	fr->have = true;
	fr->rc = -ENOKEY;
	last_scrub(h->uuid, fr);
	if (keyring_peek(lo, h->uuid, &vk) < 0 || td_hdr_check_volkey(h, vk) < 0) {
		snprintf(fr->err, sizeof(fr->err),
			 "the generation and tree root are authenticated with the volume key: load "
			 "it first (vdkey load SPEC)");
		goto out;
	}
	k = td_volkey_integrity_keys(vk);
	fr->rc = k ? ti_fresh_status(lo->chain->top, prm, h->uuid, k, k + 32, &fr->st, fr->err,
				     sizeof(fr->err))
		   : -ENOMEM;
out:
	if (k)
		td_secure_free(k);
	td_volkey_free(&vk);
}

static void print_fresh_json(const struct fresh_report *fr)
{
	char js[1100];

	printf(",\n  \"freshness\": {");
	if (fr->rc == 0) {
		printf("\"integrity_version\": %u, \"tree\": %s, \"tree_root_verified\": %s, "
		       "\"generation\": %llu, \"trusted_generation\": %llu, \"rollback\": %s, ",
		       fr->st.version, fr->st.version >= 2 ? "true" : "false",
		       fr->st.root_ok < 0 ? "null" : fr->st.root_ok ? "true" : "false",
		       (unsigned long long)fr->st.generation, (unsigned long long)fr->st.trusted,
		       fr->st.rollback ? "true" : "false");
	} else {
		td_json_str(js, sizeof(js), fr->err);
		printf("\"verified\": false, \"error\": %s, ", js);
	}
	if (fr->scrub_seen)
		printf("\"last_scrub\": {\"time\": %llu, \"outcome\": \"%s\"}}",
		       (unsigned long long)fr->scrub_time, fr->scrub_outcome);
	else
		printf("\"last_scrub\": null}");
}

static void print_fresh_text(const struct fresh_report *fr)
{
	if (fr->rc == 0)
		printf("Freshness:    %s, generation %llu (this host trusts %llu)%s%s\n",
		       fr->st.version >= 2 ? "hash tree" : "none (integrity version 1: re-create "
							   "the image for replay protection)",
		       (unsigned long long)fr->st.generation, (unsigned long long)fr->st.trusted,
		       fr->st.root_ok == 1 ? ", tree root verified"
		       : fr->st.root_ok == 0 ? ", TREE ROOT DOES NOT VERIFY"
					     : "",
		       fr->st.rollback ? ", ROLLED BACK" : "");
	else
		printf("Freshness:    not verified (%s)\n", fr->err);
	if (fr->scrub_seen)
		printf("Last scrub:   %llu (unix time), %s\n", (unsigned long long)fr->scrub_time,
		       fr->scrub_outcome);
}

static void print_keylog_json(const struct keylog_status *ks)
{
	char head[2 * TD_KEYLOG_HASH_LEN + 1], js[1600];

	hexstr(head, ks->r.head, TD_KEYLOG_HASH_LEN);
	printf(",\n  \"keylog\": {\"entries\": %" PRIu64 ", \"anchored\": %" PRIu64
	       ", \"unanchored\": %" PRIu64 ", \"head\": \"%s\", \"anchor_authenticated\": %s, "
	       "\"verified\": %s, \"reset_at\": ",
	       ks->r.entries, ks->r.anchored, ks->r.unanchored, head,
	       ks->authenticated ? "true" : "false", ks->verified ? "true" : "false");
	if (ks->r.reset_at != UINT64_MAX)
		printf("%" PRIu64, ks->r.reset_at);
	else
		printf("null");
	printf(", \"error\": ");
	if (ks->error[0]) {
		td_json_str(js, sizeof(js), ks->error);
		printf("%s}", js);
	} else {
		printf("null}");
	}
}

/* list and audit: the header, both copies' state, every keyslot. */
static int cmd_list(const char *spec, const struct opts *o, bool audit)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct lower lo = {0};
	char uuid[TD_HDR_UUID_STR_LEN], kd[160], js[8192];
	const char *copy_state[2];
	int rc, which, other, i, active;
	bool key_loaded, have_layout = false, scrubbed = false, have_id;
	uint8_t id[TD_IMAGE_ID_LEN];
	char kdesc[128] = "";
	struct ti_scrub_result sres = {0};
	struct ti_params prm;
	struct keylog_status kls;
	struct fresh_report fr = {0};

	if (!h)
		return 1;
	rc = lower_open(&lo, spec, false);
	if (rc < 0)
		goto out;
	rc = load_hdr(&lo, h, &which, &other);
	if (rc < 0)
		goto out;
	td_hdr_uuid_str(h->uuid, uuid);
	copy_state[which] = "ok";
	copy_state[!which] = other == TD_HDR_OTHER_OK ? "ok"
			     : other == TD_HDR_OTHER_CORRUPT ? "corrupt"
							     : "stale";
	active = td_keyslot_count_active(h);
	have_id = image_id(&lo, id) == 0;
	key_loaded = have_id && td_keyring_present(h->uuid, id) > 0;
	if (have_id)
		td_keyring_desc(h->uuid, id, kdesc, sizeof(kdesc));
	if (!strcmp(h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256)) {
		char perr[256];

		have_layout = ti_params_decode(h->integrity_params, lo.chain->top->size, &prm, perr,
					       sizeof(perr)) == 0;
	}
	if (audit && o->scrub) {
		rc = run_scrub(spec, &sres);
		scrub_record(spec, rc == 0 && !sres.failed);
		if (rc < 0)
			goto out;
		scrubbed = true;
		/* the scrub event moved the log's anchor: report the header as it is now */
		rc = load_hdr(&lo, h, &which, &other);
		if (rc < 0)
			goto out;
	}
	if (audit)
		keylog_status_get(&lo, h, scrubbed, &kls);
	if (audit && have_layout)
		fresh_get(&lo, h, &prm, &fr);
	if (o->json) {
		td_json_str(js, sizeof(js), lo.spec);
		printf("{\n  \"spec\": %s,\n  \"uuid\": \"%s\",\n  \"format_version\": %d,\n"
		       "  \"sequence\": %llu,\n  \"header_copies\": {\"primary\": \"%s\", "
		       "\"secondary\": \"%s\"},\n"
		       "  \"cipher\": \"%s\",\n  \"key_bits\": %u,\n  \"sector_size\": %u,\n"
		       "  \"tweak\": \"plain64\",\n  \"integrity\": \"%s\",\n  \"tag_size\": %u,\n"
		       "  \"data_offset\": %llu,\n  \"data_size\": %llu,\n  \"key_loaded\": %s,\n"
		       "  \"keyring_description\": \"%s\",\n"
		       "  \"keyslots_total\": %d,\n  \"keyslots_active\": %d,\n  \"keyslots\": [",
		       js, uuid, TD_HDR_VERSION, (unsigned long long)h->seqno, copy_state[0],
		       copy_state[1], h->cipher, h->key_bits, h->sector_size, h->integrity,
		       h->tag_size, (unsigned long long)h->data_offset,
		       (unsigned long long)h->data_size, key_loaded ? "true" : "false", kdesc,
		       TD_HDR_KEYSLOTS, active);
		for (i = 0, rc = 0; i < TD_HDR_KEYSLOTS; i++) {
			if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
				continue;
			kdf_json(&h->slots[i].kdf, kd, sizeof(kd));
			printf("%s\n    {\"slot\": %d, \"kdf\": %s}", rc++ ? "," : "", i, kd);
		}
		printf("\n  ]");
		if (audit)
			printf(",\n  \"at_rest_encryption\": true,\n  \"header_authenticated\": "
			       "\"verified when a tapdisk or vdkey opens it with the key\"");
		if (have_layout)
			print_layout_json(&prm);
		if (scrubbed)
			print_scrub_json(&sres);
		if (audit && fr.have)
			print_fresh_json(&fr);
		if (audit)
			print_keylog_json(&kls);
		printf("\n}\n");
		rc = 0;
	} else {
		printf("Image:        %s\n", lo.spec);
		printf("UUID:         %s\n", uuid);
		printf("Header:       version %d, sequence %llu, primary %s, secondary %s\n",
		       TD_HDR_VERSION, (unsigned long long)h->seqno, copy_state[0], copy_state[1]);
		printf("Cipher:       %s, %u-bit key, %u-byte sectors, 64-bit block-number tweak\n",
		       h->cipher, h->key_bits, h->sector_size);
		printf("Integrity:    %s", h->integrity);
		if (h->tag_size && have_layout)
			printf(" (%u-byte tags, %u KiB MAC journal)", h->tag_size,
			       prm.journal_blocks * (TI_BLOCK / 1024));
		else if (h->tag_size)
			printf(" (%u-byte tags)", h->tag_size);
		printf("\nData:         %llu bytes at offset %llu\n", (unsigned long long)h->data_size,
		       (unsigned long long)h->data_offset);
		printf("Key loaded:   %s\n", key_loaded ? "yes (kernel keyring)" : "no");
		printf("Keyslots:     %d of %d active\n", active, TD_HDR_KEYSLOTS);
		for (i = 0; i < TD_HDR_KEYSLOTS; i++) {
			if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
				continue;
			kdf_desc(&h->slots[i].kdf, kd, sizeof(kd));
			printf("  %2d: %s\n", i, kd);
		}
		if (scrubbed)
			print_scrub_text(&sres);
		if (audit && fr.have)
			print_fresh_text(&fr);
		if (audit) {
			printf("Key log:      %" PRIu64 " entries, %" PRIu64 " anchored: %s", kls.r.entries,
			       kls.r.anchored, kls.verified ? "verified" : "NOT verified");
			if (kls.error[0])
				printf(" (%s)", kls.error);
			printf("\n");
		}
	}
	/* a block that fails verification fails the audit, and so does a
	 * tree root that does not verify or a rolled-back image */
	if (scrubbed && sres.failed)
		rc = -EBADMSG;
	if (fr.have && fr.rc == 0 && (fr.st.root_ok == 0 || fr.st.rollback))
		rc = -EBADMSG;
out:
	if (lo.chain)
		lower_close(&lo);
	ti_scrub_result_free(&sres);
	free(h);
	return rc < 0 ? 1 : 0;
}

static int cmd_accept_rollback(const char *spec, const struct opts *o)
{
	struct vsess v;
	struct ti_params prm;
	struct ti_fresh_status st;
	char err[768], uuid[TD_HDR_UUID_STR_LEN];
	uint8_t *k = NULL;
	int rc = vsess_open_op(&v, TD_KEYLOG_OP_ACCEPT_ROLLBACK, spec, 1, true, o->key_file);

	if (rc < 0)
		goto out;
	td_hdr_uuid_str(v.h->uuid, uuid);
	if (strcmp(v.h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) != 0) {
		fprintf(stderr, "%s accept-rollback: image %s has no integrity metadata, hence no "
				"generation: nothing to accept\n",
			prog, uuid);
		rc = -EINVAL;
		goto out;
	}
	rc = ti_params_decode(v.h->integrity_params, v.lo.chain->top->size, &prm, err, sizeof(err));
	if (rc == 0)
		rc = (k = td_volkey_integrity_keys(v.vk)) ? 0 : -ENOMEM;
	if (rc == 0)
		rc = ti_fresh_status(v.lo.chain->top, &prm, v.h->uuid, k, k + 32, &st, err,
				     sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s accept-rollback: %s\n", prog, err);
		goto out;
	}
	if (!st.rollback) {
		printf("image %s: generation %llu is not older than the trusted generation %llu; "
		       "nothing to accept\n",
		       uuid, (unsigned long long)st.generation, (unsigned long long)st.trusted);
		goto out;
	}
	rc = ti_accept_generation(v.lo.ctx.trust, v.h->uuid, st.generation, err, sizeof(err));
	keylog_record(&v, TD_KEYLOG_OP_ACCEPT_ROLLBACK, v.slot, rc == 0, true);
	keylog_commit(&v, TD_KEYLOG_OP_ACCEPT_ROLLBACK);
	if (rc < 0) {
		fprintf(stderr, "%s accept-rollback: %s\n", prog, err);
		goto out;
	}
	printf("accepted the rollback of image %s: trusted generation %llu -> %llu (recorded in "
	       "the key-event log)\n",
	       uuid, (unsigned long long)st.trusted, (unsigned long long)st.generation);
out:
	if (k)
		td_secure_free(k);
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

static int cmd_load(const char *spec, const struct opts *o)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	struct vsess v;
	char err[512], uuid[TD_HDR_UUID_STR_LEN];
	unsigned flags = (o->once ? TD_KEYRING_ONCE : 0) |
			 (o->user_readable ? TD_KEYRING_USER_READABLE : 0);
	/* for writing when it can be, to move the key-event log's anchor */
	int rc = vsess_open_op(&v, TD_KEYLOG_OP_LOAD, spec, 2, true, o->key_file);

	if (rc < 0)
		goto out;
	rc = image_id(&v.lo, id);
	if (rc == 0 && (rc = td_keyring_store(v.h->uuid, id, v.vk, flags, o->timeout_s, err,
					      sizeof(err))) < 0)
		fprintf(stderr, "%s: %s\n", prog, err);
	if (rc < 0) {
		keylog_record(&v, TD_KEYLOG_OP_LOAD, v.slot, false, true);
		keylog_commit(&v, TD_KEYLOG_OP_LOAD);
		goto out;
	}
	keylog_record(&v, TD_KEYLOG_OP_LOAD, v.slot, true, true);
	keylog_commit(&v, TD_KEYLOG_OP_LOAD);
	td_hdr_uuid_str(v.h->uuid, uuid);
	printf("loaded the key of image %s (keyslot %d) into the user keyring%s\n", uuid, v.slot,
	       o->once ? "; the first tapdisk to open it removes it" : "");
	rc = 0;
out:
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

static int cmd_unload(const char *spec)
{
	uint8_t id[TD_IMAGE_ID_LEN];
	struct vsess v;
	struct td_volkey *vk = NULL;
	char err[512];
	int rc = vsess_open_op(&v, NULL, spec, 2, false, NULL);

	if (rc == 0) {
		/* the key, read before it goes, lets this event move the anchor */
		if (keyring_peek(&v.lo, v.h->uuid, &vk) == 0)
			vsess_adopt_key(&v, &vk);
		rc = image_id(&v.lo, id);
		if (rc == 0)
			rc = td_keyring_remove(v.h->uuid, id, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "%s: %s\n", prog, err);
		else
			printf("removed the key from the keyring\n");
		keylog_record(&v, TD_KEYLOG_OP_UNLOAD, TD_KEYLOG_SLOT_NONE, rc == 0, true);
		keylog_commit(&v, TD_KEYLOG_OP_UNLOAD);
	}
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

static void usage_log(FILE *f)
{
	fprintf(f,
		"Usage: vdkey log SPEC [--json]\n"
		"       vdkey log SPEC --verify [--json] [--key-file F]\n"
		"       vdkey log SPEC --reset [--key-file F]\n"
		"\n"
		"The key-event log of the image: every format, enroll, remove, load, unload,\n"
		"accept-rollback and audit --scrub, with its time, user id, keyslot and outcome\n"
		"(ok or fail). It lives in the trusted state directory\n"
		"($TDCRYPT_STATE_DIR, default /var/lib/tdcrypt), one line per event, each\n"
		"hash-chained to the one before; the chain's head is anchored in the\n"
		"authenticated crypt header by every event made with the volume key.\n"
		"\n"
		"Without --verify it prints the entries (no secret needed; --json: an array\n"
		"of objects). The 'anchored' column is read from the header and is not\n"
		"authenticated.\n"
		"\n"
		"--verify authenticates the header with the volume key (from the keyring when\n"
		"it is loaded — a --once key is not consumed — else from --key-file F or a\n"
		"prompt) and checks every entry, the chain and the anchor. It names the\n"
		"first problem: a modified entry (hash mismatch at seq N), a removed or\n"
		"reordered one (entry removed or reordered / prev-hash mismatch at seq N), a\n"
		"cut tail or deleted log (the anchor points past the end of the log), or a\n"
		"rewritten history (head hash mismatch at the anchored entry). Entries after\n"
		"the anchor (failed attempts without the key, a load while a tapdisk holds\n"
		"the image) are reported as unanchored: they are not protected until the\n"
		"next event with the key anchors them. Format: docs/FORMAT.md.\n"
		"\n"
		"--reset (needs the volume key and a writable image) is the way out of a log\n"
		"that fails verification, which is never extended: the old file is kept as\n"
		"keylog.before-reset.<seconds> next to it, a new log starts with one 'reset'\n"
		"entry continuing from the header's authenticated anchor, and the anchor\n"
		"moves to it. The reset entry, its time and user id stay in the log for\n"
		"auditors; entries before it are no longer checked.\n"
		"\n"
		"Without a loaded key, --verify and --reset unlock a keyslot: the KDF budget\n"
		"options (--kdf-max-memory, --kdf-max-time, --kdf-max-total-time,\n"
		"--allow-expensive-kdf; see vdkey --help) apply.\n"
		"\n"
		"Exit status: 0 the log verifies (or was printed, or was reset), 1 it does not\n"
		"(one line on stderr says why) or it cannot be read, 2 usage.\n");
}

/* vdkey log SPEC --reset */
static int cmd_log_reset(const char *spec, const struct opts *o)
{
	struct td_keylog_anchor cur, next;
	struct vsess v;
	char err[1024], uuid[TD_HDR_UUID_STR_LEN];
	int rc, ret = 1;

	rc = vsess_open(&v, spec, true, false, NULL);
	if (rc < 0)
		goto out;
	td_hdr_uuid_str(v.h->uuid, uuid);
	rc = vsess_get_key(&v, o->key_file);
	if (rc < 0)
		goto out;
	rc = td_hdr_keylog_anchor_get(v.h, &cur, err, sizeof(err));
	if (rc == 0)
		rc = td_keylog_reset(v.h->uuid, &cur, &next, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: image %s: cannot reset the key-event log: %s\n", prog, uuid,
			err);
		goto out;
	}
	td_hdr_keylog_anchor_set(v.h, &next);
	rc = store_hdr(&v.lo, v.h, v.vk, v.which);
	if (rc < 0) {
		fprintf(stderr,
			"%s: image %s: the new log is in place but the header could not be "
			"rewritten; run 'vdkey log SPEC --reset' again\n",
			prog, uuid);
		goto out;
	}
	printf("key-event log of image %s reset at seq %llu; the old log is kept as "
	       "keylog.before-reset.* in the state directory\n",
	       uuid, (unsigned long long)cur.count);
	ret = 0;
out:
	vsess_close(&v);
	return ret;
}

static void fmt_utc(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t > (uint64_t)INT64_MAX / 2 || !gmtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "?");
}

static void print_log_entries(const char *buf, size_t len, uint64_t anchored, bool json)
{
	struct td_keylog_entry e;
	const char *line;
	char perr[256], js[600], t[40], u[TD_HDR_UUID_STR_LEN], prev[65], hash[65], slot[8];
	size_t off = 0, ll;
	uint64_t i = 0;
	int r;

	if (json)
		printf("[");
	else
		printf("%-5s %-20s %-6s %-16s %-4s %-7s %s\n", "SEQ", "TIME (UTC)", "UID", "OP",
		       "SLOT", "OUTCOME", "ANCHORED");
	for (; (r = td_keylog_next_line(buf, len, &off, &line, &ll)) != 0; i++) {
		if (r < 0)
			snprintf(perr, sizeof(perr), "torn last line (no newline)");
		if (r < 0 || td_keylog_parse_line(line, ll, &e, perr, sizeof(perr)) < 0) {
			if (json) {
				td_json_str(js, sizeof(js), perr);
				printf("%s\n  {\"line\": %" PRIu64 ", \"malformed\": %s}", i ? "," : "",
				       i + 1, js);
			} else {
				printf("line %" PRIu64 ": MALFORMED: %s\n", i + 1, perr);
			}
			continue;
		}
		fmt_utc(e.time, t, sizeof(t));
		td_hdr_uuid_str(e.uuid, u);
		hexstr(prev, e.prev, 32);
		hexstr(hash, e.hash, 32);
		if (e.slot == TD_KEYLOG_SLOT_NONE)
			snprintf(slot, sizeof(slot), json ? "null" : "-");
		else
			snprintf(slot, sizeof(slot), "%d", e.slot);
		if (json)
			printf("%s\n  {\"seq\": %" PRIu64 ", \"time\": %" PRIu64
			       ", \"time_utc\": \"%s\", \"uid\": %" PRIu32
			       ", \"uuid\": \"%s\", \"op\": \"%s\", \"slot\": %s, \"outcome\": \"%s\", "
			       "\"anchored\": %s, \"prev\": \"%s\", \"hash\": \"%s\"}",
			       i ? "," : "", e.seq, e.time, t, e.uid, u, e.op, slot, e.outcome,
			       i < anchored ? "true" : "false", prev, hash);
		else
			printf("%-5" PRIu64 " %-20s %-6" PRIu32 " %-16s %-4s %-7s %s\n", e.seq, t, e.uid,
			       e.op, slot, e.outcome, i < anchored ? "yes" : "no");
	}
	printf(json ? "\n]\n" : "");
}

/* vdkey log SPEC [--json] [--verify] */
static int cmd_log(const char *spec, const struct opts *o)
{
	struct td_keylog_anchor a;
	struct td_keylog_result r;
	struct vsess v;
	char err[768], uuid[TD_HDR_UUID_STR_LEN], head[65], js[1600];
	char *buf = NULL;
	size_t len = 0;
	int rc, ret = 1;

	rc = vsess_open(&v, spec, false, false, NULL);
	if (rc < 0)
		goto out;
	td_hdr_uuid_str(v.h->uuid, uuid);
	if (o->verify) {
		/* the anchor counts only in an authenticated header */
		rc = vsess_get_key(&v, o->key_file);
		if (rc < 0)
			goto out;
	}
	rc = td_hdr_keylog_anchor_get(v.h, &a, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: image %s: %s\n", prog, uuid, err);
		goto out;
	}
	if (!o->verify) {
		rc = td_keylog_read(v.h->uuid, &buf, &len, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			goto out;
		}
		print_log_entries(buf, len, a.count, o->json);
		if (!o->json)
			printf("image %s: the header anchors %" PRIu64 " entr%s (not authenticated: "
			       "use --verify)\n",
			       uuid, a.count, a.count == 1 ? "y" : "ies");
		ret = 0;
		goto out;
	}
	rc = td_keylog_verify(v.h->uuid, &a, &r, err, sizeof(err));
	if (o->json) {
		hexstr(head, r.head, 32);
		printf("{\"uuid\": \"%s\", \"entries\": %" PRIu64 ", \"anchored\": %" PRIu64
		       ", \"unanchored\": %" PRIu64 ", \"head\": \"%s\", \"verified\": %s, "
		       "\"reset_at\": ",
		       uuid, r.entries, r.anchored, r.unanchored, head, rc == 0 ? "true" : "false");
		if (r.reset_at != UINT64_MAX)
			printf("%" PRIu64 ", \"error\": ", r.reset_at);
		else
			printf("null, \"error\": ");
		if (rc < 0) {
			td_json_str(js, sizeof(js), err);
			printf("%s}\n", js);
		} else {
			printf("null}\n");
		}
	}
	if (rc < 0) {
		fprintf(stderr, "%s: key-event log of image %s FAILED verification: %s\n", prog, uuid,
			err);
		goto out;
	}
	if (!o->json) {
		printf("key-event log of image %s verifies: %" PRIu64 " entries, %" PRIu64
		       " anchored in the authenticated header",
		       uuid, r.entries, r.anchored);
		if (r.unanchored)
			printf("; %" PRIu64 " unanchored entr%s after the anchor (not protected until "
			       "the next event with the key)",
			       r.unanchored, r.unanchored == 1 ? "y" : "ies");
		printf("\n");
	}
	ret = 0;
out:
	free(buf);
	vsess_close(&v);
	return ret;
}

static int cmd_backup(const char *spec, const char *file)
{
	uint8_t *buf = td_buf_get(TD_HDR_BACKUP_SIZE);
	struct vsess v;
	int rc, fd = -1;

	/* the header must be valid before anyone relies on this backup */
	rc = vsess_open(&v, spec, false, false, NULL);
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	if (rc < 0)
		goto out;
	rc = td_hdr_read_area(v.lo.chain->top, buf);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot read the header area: %s\n", prog, strerror(-rc));
		goto out;
	}
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, TD_HDR_BACKUP_SIZE) != TD_HDR_BACKUP_SIZE || fsync(fd) < 0) {
		rc = -errno;
		fprintf(stderr, "%s: cannot write '%s': %s%s\n", prog, file, strerror(errno),
			errno == EEXIST ? " (will not overwrite an existing file)" : "");
		goto out;
	}
	printf("saved both header copies (%d bytes) to %s\n", TD_HDR_BACKUP_SIZE, file);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	vsess_close(&v);
	td_buf_put(buf, TD_HDR_BACKUP_SIZE);
	return rc < 0 ? 1 : 0;
}

static int cmd_restore(const char *spec, const char *file)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct lower lo = {0};
	uint8_t *buf = td_buf_get(TD_HDR_BACKUP_SIZE);
	char note[512];
	int rc, which, other, fd = -1;
	struct stat st;

	if (!h || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "%s: cannot open '%s': %s\n", prog, file, strerror(errno));
		goto out;
	}
	if (st.st_size != TD_HDR_BACKUP_SIZE ||
	    read(fd, buf, TD_HDR_BACKUP_SIZE) != TD_HDR_BACKUP_SIZE) {
		rc = -EINVAL;
		fprintf(stderr, "%s: '%s' is not a header backup (%d bytes expected)\n", prog, file,
			TD_HDR_BACKUP_SIZE);
		goto out;
	}
	rc = td_hdr_pick(buf + TD_HDR_OFFSET_A, buf + TD_HDR_OFFSET_B, TD_HDR_COPY_SIZE, h, &which,
			 &other, note, sizeof(note));
	if (rc < 0) {
		fprintf(stderr, "%s: '%s' holds no valid crypt header: %s\n", prog, file, note);
		goto out;
	}
	rc = lower_open(&lo, spec, true);
	if (rc < 0)
		goto out;
	rc = td_hdr_write_area(lo.chain->top, buf);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot write the header area: %s\n", prog, strerror(-rc));
		goto out;
	}
	printf("restored the header from %s\n", file);
out:
	if (fd >= 0)
		close(fd);
	if (lo.chain)
		lower_close(&lo);
	td_buf_put(buf, TD_HDR_BACKUP_SIZE);
	free(h);
	return rc < 0 ? 1 : 0;
}

static int cmd_repair(const char *spec, const struct opts *o)
{
	struct vsess v;
	int rc = vsess_open(&v, spec, true, true, o->key_file);

	if (rc == 0)
		rc = store_hdr(&v.lo, v.h, v.vk, v.which);
	if (rc == 0)
		printf("rewrote both header copies (sequence %llu)\n", (unsigned long long)v.h->seqno);
	vsess_close(&v);
	return rc < 0 ? 1 : 0;
}

/* SIZE in bytes with an optional K/M/G/T suffix (powers of 1024); 0 when
 * it is not one. */
static uint64_t parse_size(const char *arg)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (end == arg || errno || arg[0] == '-')
		return 0;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift)
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)v << shift;
}

/* SECONDS (a decimal number, more than 0, at most a million) in KDF work
 * units; 0 when it is not one. */
static uint64_t parse_seconds(const char *arg)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !(v > 0) || v > 1e6)
		return 0;
	v *= (double)TD_KDF_UNITS_PER_SECOND;
	return v < 1 ? 1 : (uint64_t)v;
}

/* The process-wide KDF budget from --kdf-max-memory, --kdf-max-time,
 * --kdf-max-total-time and --allow-expensive-kdf. */
static int budget_from_opts(const struct opts *o)
{
	struct td_kdf_budget b = td_kdf_budget_default();

	if (o->allow_expensive_kdf &&
	    (o->kdf_max_memory || o->kdf_max_time || o->kdf_max_total_time)) {
		fprintf(stderr,
			"%s: --allow-expensive-kdf lifts the budget that --kdf-max-* set: "
			"give one or the other\n",
			prog);
		return -EINVAL;
	}
	if (o->allow_expensive_kdf) {
		b = td_kdf_budget_unlimited();
		td_kdf_budget_set(&b);
		return 0;
	}
	if (o->kdf_max_memory && !(b.max_memory = parse_size(o->kdf_max_memory))) {
		fprintf(stderr, "%s: bad --kdf-max-memory '%s' (a size, e.g. 512M or 2G)\n", prog,
			o->kdf_max_memory);
		return -EINVAL;
	}
	if (o->kdf_max_time) {
		if (!(b.max_cost = parse_seconds(o->kdf_max_time))) {
			fprintf(stderr, "%s: bad --kdf-max-time '%s' (seconds, e.g. 16 or 0.5)\n",
				prog, o->kdf_max_time);
			return -EINVAL;
		}
		b.max_total_cost = b.max_cost > UINT64_MAX / 2 ? UINT64_MAX : 2 * b.max_cost;
	}
	if (o->kdf_max_total_time && !(b.max_total_cost = parse_seconds(o->kdf_max_total_time))) {
		fprintf(stderr, "%s: bad --kdf-max-total-time '%s' (seconds, e.g. 32)\n", prog,
			o->kdf_max_total_time);
		return -EINVAL;
	}
	td_kdf_budget_set(&b);
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_KEYFILE = 256,
		O_NEWKEY,
		O_INTEG,
		O_JOURNAL,
		O_PBKDF,
		O_ITER,
		O_MEM,
		O_PAR,
		O_SLOT,
		O_JSON,
		O_SCRUB,
		O_ONCE,
		O_UREAD,
		O_TIMEOUT,
		O_FORCE,
		O_VERIFY,
		O_RESET,
		O_KDF_MEM,
		O_KDF_TIME,
		O_KDF_TOTAL,
		O_KDF_ALLOW
	};
	static const struct option longopts[] = {
	    {"key-file", required_argument, NULL, O_KEYFILE},
	    {"new-key-file", required_argument, NULL, O_NEWKEY},
	    {"integrity", required_argument, NULL, O_INTEG},
	    {"journal-size", required_argument, NULL, O_JOURNAL},
	    {"pbkdf", required_argument, NULL, O_PBKDF},
	    {"pbkdf-iterations", required_argument, NULL, O_ITER},
	    {"pbkdf-memory", required_argument, NULL, O_MEM},
	    {"pbkdf-parallel", required_argument, NULL, O_PAR},
	    {"slot", required_argument, NULL, O_SLOT},
	    {"json", no_argument, NULL, O_JSON},
	    {"scrub", no_argument, NULL, O_SCRUB},
	    {"once", no_argument, NULL, O_ONCE},
	    {"user-readable", no_argument, NULL, O_UREAD},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"force", no_argument, NULL, O_FORCE},
	    {"verify", no_argument, NULL, O_VERIFY},
	    {"reset", no_argument, NULL, O_RESET},
	    {"kdf-max-memory", required_argument, NULL, O_KDF_MEM},
	    {"kdf-max-time", required_argument, NULL, O_KDF_TIME},
	    {"kdf-max-total-time", required_argument, NULL, O_KDF_TOTAL},
	    {"allow-expensive-kdf", no_argument, NULL, O_KDF_ALLOW},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct opts o = {.slot = -1};
	const char *cmd, *spec, *file = NULL;
	int c;

	/* before libcrypto allocates anything: its contexts in locked, wiped memory */
	td_secure_crypto_heap();
	td_drivers_set(td_registry());

	td_log_init("vdkey");
	td_secure_harden_process();
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_KEYFILE:
			o.key_file = optarg;
			break;
		case O_NEWKEY:
			o.new_key_file = optarg;
			break;
		case O_INTEG:
			o.integrity = optarg;
			break;
		case O_JOURNAL:
			o.journal_size = optarg;
			break;
		case O_PBKDF:
			o.pbkdf = optarg;
			break;
		case O_ITER:
			o.iterations = strtol(optarg, NULL, 0);
			break;
		case O_MEM:
			o.memory_kib = strtol(optarg, NULL, 0);
			break;
		case O_PAR:
			o.parallel = strtol(optarg, NULL, 0);
			break;
		case O_SLOT:
			o.slot = strtol(optarg, NULL, 0);
			break;
		case O_JSON:
			o.json = true;
			break;
		case O_SCRUB:
			o.scrub = true;
			break;
		case O_ONCE:
			o.once = true;
			break;
		case O_UREAD:
			o.user_readable = true;
			break;
		case O_TIMEOUT:
			o.timeout_s = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case O_FORCE:
			o.force = true;
			break;
		case O_VERIFY:
			o.verify = true;
			break;
		case O_RESET:
			o.reset = true;
			break;
		case O_KDF_MEM:
			o.kdf_max_memory = optarg;
			break;
		case O_KDF_TIME:
			o.kdf_max_time = optarg;
			break;
		case O_KDF_TOTAL:
			o.kdf_max_total_time = optarg;
			break;
		case O_KDF_ALLOW:
			o.allow_expensive_kdf = true;
			break;
		case 'h':
			if (!strcmp(cmd, "log"))
				usage_log(stdout);
			else
				usage(stdout);
			return 0;
		default:
			fprintf(stderr, "%s: see vdkey --help\n", prog);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s %s: expected SPEC (see vdkey --help)\n", prog, cmd);
		return 2;
	}
	if (budget_from_opts(&o) < 0)
		return 2;
	spec = argv[optind++];
	if (!strcmp(cmd, "header-backup") || !strcmp(cmd, "header-restore")) {
		if (optind >= argc) {
			fprintf(stderr, "%s %s: expected SPEC FILE\n", prog, cmd);
			return 2;
		}
		file = argv[optind++];
	}
	if (optind != argc) {
		fprintf(stderr, "%s %s: unexpected argument '%s'\n", prog, cmd, argv[optind]);
		return 2;
	}
	if (!strcmp(cmd, "format"))
		return cmd_format(spec, &o);
	if (!strcmp(cmd, "enroll"))
		return cmd_enroll(spec, &o);
	if (!strcmp(cmd, "remove"))
		return cmd_remove(spec, &o);
	if (!strcmp(cmd, "list"))
		return cmd_list(spec, &o, false);
	if (!strcmp(cmd, "audit"))
		return cmd_list(spec, &o, true);
	if (!strcmp(cmd, "load"))
		return cmd_load(spec, &o);
	if (!strcmp(cmd, "unload"))
		return cmd_unload(spec);
	if (!strcmp(cmd, "log")) {
		if (o.reset && (o.verify || o.json)) {
			fprintf(stderr, "%s: log: --reset takes neither --verify nor --json\n", prog);
			return 2;
		}
		return o.reset ? cmd_log_reset(spec, &o) : cmd_log(spec, &o);
	}
	if (!strcmp(cmd, "accept-rollback"))
		return cmd_accept_rollback(spec, &o);
	if (!strcmp(cmd, "header-backup"))
		return cmd_backup(spec, file);
	if (!strcmp(cmd, "header-restore"))
		return cmd_restore(spec, file);
	if (!strcmp(cmd, "repair"))
		return cmd_repair(spec, &o);
	fprintf(stderr, "%s: unknown command '%s' (see vdkey --help)\n", prog, cmd);
	return 2;
}
