/* What vdkey's commands share: messages, opening and unlocking an image
 * (with the report of keyslots the KDF budget kept from being tried), the
 * KDF of a new keyslot from the options, sizes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymgr/keyslot.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vtoken.h"

void vdkey_say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", VDKEY_PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void vdkey_warn(void *opaque, const char *msg)
{
	(void)opaque;
	vdkey_say("%s", msg);
}

int vdkey_open(struct td_volume *v, const char *spec, unsigned flags, bool header)
{
	char err[1024];
	int rc;

	td_volume_init(v, vdkey_warn, NULL);
	if (header)
		rc = td_volume_open(v, spec, flags, err, sizeof(err));
	else
		rc = td_volume_open_lower(v, spec, flags, err, sizeof(err));
	if (rc < 0)
		vdkey_say("%s", err);
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

/* Which keyslots an unlock did not try (over the KDF budget), and how to
 * let them be tried. opened: the passphrase opened another slot. */
static void budget_report(const struct td_crypt_hdr *h, bool opened)
{
	struct td_unlock_plan *plan = calloc(1, sizeof(*plan));
	struct td_kdf_budget b = td_kdf_budget_get();

	if (!plan)
		return;
	td_keyslot_plan(h, -1, &b, plan);
	if (plan->nskip && !opened)
		vdkey_say("no keyslot within this host's KDF budget opens with this passphrase; "
			  "not tried:");
	for (int i = 0; i < plan->nskip; i++)
		vdkey_say("%s keyslot %d: %s (%s)", opened ? "note: not tried:" : " ",
			  plan->skipped[i], plan->why[i], over_option(plan->over[i]));
	if (plan->nskip && !opened)
		vdkey_say(
		    "a header asking this much is hostile, or its keyslots were made for a "
		    "bigger host: if they are yours, raise the budget (--kdf-max-memory SIZE, "
		    "--kdf-max-time SECONDS, --kdf-max-total-time SECONDS) or lift it "
		    "(--allow-expensive-kdf)");
	free(plan);
}

int vdkey_unlock(struct td_volume *v, const char *key_file, const char *op)
{
	char err[1024];
	int rc = td_volume_unlock(v, key_file, op, err, sizeof(err));

	if (rc == 0 || rc == -E2BIG)
		budget_report(v->h, rc == 0);
	if (rc < 0 && rc != -E2BIG) /* E2BIG: budget_report said it */
		vdkey_say("%s", err);
	return rc;
}

char vdkey_lock_msg[320];

void vdkey_note_unlocked_heap(void)
{
	static bool said;

	if (vdkey_lock_msg[0] && !said) {
		said = true;
		vdkey_say("warning: %s", vdkey_lock_msg);
	}
}

int vdkey_unlock_any(struct td_volume *v, const struct vdkey_opts *o, const char *op)
{
	struct td_token_opts to = {.tpm2_device = o->tpm2_device};
	char err[1024];
	int rc;

	if (td_token_slots(v->h) == 0) {
		if (!o->token_only)
			return vdkey_unlock(v, o->key_file, op);
		vdkey_say("--token-only: the image has no TPM2 or Tang keyslot");
		return -ENOENT;
	}
	vdkey_note_unlocked_heap();
	/* each slot that fails has said why (the session's warnings) */
	rc = td_volume_unlock_tokens(v, &to, op, err, sizeof(err));
	if (rc == 0)
		return 0;
	if (o->token_only) {
		vdkey_say("%s; not asking for a passphrase (--token-only)",
			  rc == -ENOENT ? err : "no keyslot opened without a passphrase");
		return rc;
	}
	vdkey_say("falling back to the passphrase");
	return vdkey_unlock(v, o->key_file, op);
}

int vdkey_get_key(struct td_volume *v, const char *key_file)
{
	if (td_volume_key_from_keyring(v) == 0)
		return 0;
	return vdkey_unlock(v, key_file, NULL);
}

int vdkey_kdf_params(const struct vdkey_opts *o, struct td_kdf_params *kp)
{
	enum td_kdf_id id = o->pbkdf ? td_kdf_from_name(o->pbkdf) : TD_KDF_ARGON2ID;
	struct td_kdf_budget budget;
	enum td_kdf_over over;
	char err[256], why[256];

	if (id == TD_KDF_NONE) {
		vdkey_say("unknown --pbkdf '%s' (argon2id, pbkdf2 or scrypt)", o->pbkdf);
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
		vdkey_say("%s", err);
		return -EINVAL;
	}
	budget = td_kdf_budget_get();
	over = td_kdf_budget_check(&budget, kp, why, sizeof(why));
	if (over != TD_KDF_FITS) {
		vdkey_say("refusing to create a keyslot over this host's KDF budget: %s (%s). "
			  "Every unlock of it would need the same override. Add "
			  "--allow-expensive-kdf (or raise the budget) to create it anyway.",
			  why, over_option(over));
		return -E2BIG;
	}
	return 0;
}

uint64_t vdkey_parse_size(const char *arg)
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

void vdkey_hex(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}
