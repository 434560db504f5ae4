/* Keyslot wrapping and unwrapping: see keymgr/keyslot.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypt/backend/cipher.h"
#include "crypt/header.h"
#include "keymgr/keyslot.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"

#define KEK_LEN TD_AEAD_KEY_LEN
#define STR_(x) #x
#define STR(x) STR_(x)

_Static_assert(TD_HDR_WRAPPED_LEN == TD_VOLKEY_LEN, "a slot wraps exactly the volume key");
_Static_assert(TD_HDR_NONCE_LEN == TD_AEAD_NONCE_LEN, "GCM nonce");
_Static_assert(TD_HDR_TAG_LEN == TD_AEAD_TAG_LEN, "GCM tag");

struct td_kdf_params td_kdf_params_default(enum td_kdf_id kind)
{
	struct td_kdf_params p;

	memset(&p, 0, sizeof(p));
	switch (kind) {
	case TD_KDF_ARGON2ID:
		p.id = kind;
		p.t_cost = 3;
		p.m_cost_kib = 262144;
		p.parallelism = 4;
		break;
	case TD_KDF_PBKDF2_SHA256:
		p.id = kind;
		p.iterations = 600000;
		break;
	case TD_KDF_SCRYPT:
		p.id = kind;
		p.n = 1u << 17;
		p.r = 8;
		p.p = 1;
		break;
	default:
		break;
	}
	return p;
}

struct td_kdf_params td_kdf_params_minimal(enum td_kdf_id kind)
{
	struct td_kdf_params p;

	memset(&p, 0, sizeof(p));
	switch (kind) {
	case TD_KDF_ARGON2ID:
		p.id = kind;
		p.t_cost = 1;
		p.m_cost_kib = 8;
		p.parallelism = 1;
		break;
	case TD_KDF_PBKDF2_SHA256:
		p.id = kind;
		p.iterations = 1000;
		break;
	case TD_KDF_SCRYPT:
		p.id = kind;
		p.n = 16;
		p.r = 1;
		p.p = 1;
		break;
	default:
		break;
	}
	return p;
}

const char *td_kdf_name(enum td_kdf_id id)
{
	switch (id) {
	case TD_KDF_ARGON2ID:
		return "argon2id";
	case TD_KDF_PBKDF2_SHA256:
		return "pbkdf2-sha256";
	case TD_KDF_SCRYPT:
		return "scrypt";
	case TD_KDF_TPM2:
		return "tpm2";
	case TD_KDF_TANG:
		return "tang";
	default:
		return "unknown";
	}
}

enum td_kdf_id td_kdf_from_name(const char *name)
{
	if (!name)
		return TD_KDF_NONE;
	if (strcmp(name, "argon2id") == 0)
		return TD_KDF_ARGON2ID;
	if (strcmp(name, "pbkdf2-sha256") == 0 || strcmp(name, "pbkdf2") == 0)
		return TD_KDF_PBKDF2_SHA256;
	if (strcmp(name, "scrypt") == 0)
		return TD_KDF_SCRYPT;
	return TD_KDF_NONE;
}

/* ---- the KDF budget ---------------------------------------------------------- */

static struct td_kdf_budget budget_cur;
static bool budget_is_set;

struct td_kdf_budget td_kdf_budget_default(void)
{
	struct td_kdf_budget b = {TD_KDF_BUDGET_MEMORY, TD_KDF_BUDGET_COST,
				  TD_KDF_BUDGET_TOTAL_COST};
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);

	/* a host must not swap itself to death unlocking a disk */
	if (pages > 0 && psize > 0 && (uint64_t)pages * (uint64_t)psize / 2 < b.max_memory)
		b.max_memory = (uint64_t)pages * (uint64_t)psize / 2;
	return b;
}

struct td_kdf_budget td_kdf_budget_unlimited(void)
{
	struct td_kdf_budget b = {UINT64_MAX, UINT64_MAX, UINT64_MAX};

	return b;
}

void td_kdf_budget_set(const struct td_kdf_budget *b)
{
	budget_cur = b ? *b : td_kdf_budget_default();
	budget_is_set = true;
}

struct td_kdf_budget td_kdf_budget_get(void)
{
	return budget_is_set ? budget_cur : td_kdf_budget_default();
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t td_kdf_memory(const struct td_kdf_params *kp)
{
	switch (kp->id) {
	case TD_KDF_ARGON2ID:
		return mul_sat(kp->m_cost_kib, 1024);
	case TD_KDF_PBKDF2_SHA256:
		return 0;
	case TD_KDF_SCRYPT:
		/* V: 128 * r * (N + 2) bytes, B: 128 * r * p (OpenSSL's layout) */
		return mul_sat(128ull * kp->r, add_sat(kp->n, 2ull + kp->p));
	default:
		return UINT64_MAX;
	}
}

uint64_t td_kdf_cost(const struct td_kdf_params *kp)
{
	uint64_t bytes;

	switch (kp->id) {
	case TD_KDF_ARGON2ID:
		return mul_sat(kp->t_cost, kp->m_cost_kib);
	case TD_KDF_PBKDF2_SHA256:
		return ((uint64_t)kp->iterations + 7) / 8;
	case TD_KDF_SCRYPT:
		bytes = mul_sat(mul_sat(mul_sat(256, kp->n), kp->r), kp->p);
		return bytes == UINT64_MAX ? UINT64_MAX : (bytes + 1023) / 1024;
	default:
		return UINT64_MAX;
	}
}

void td_kdf_desc(const struct td_kdf_params *k, char *buf, size_t len)
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
	case TD_KDF_TPM2:
	case TD_KDF_TANG:
		snprintf(buf, len, "%s token", td_kdf_name(k->id));
		break;
	default:
		snprintf(buf, len, "unknown");
	}
}

/* The same in the budget's messages. */
static void kdf_describe(const struct td_kdf_params *k, char *buf, size_t len)
{
	if (k->id == TD_KDF_PBKDF2_SHA256)
		snprintf(buf, len, "pbkdf2-sha256 with %u iterations", k->iterations);
	else if (k->id == TD_KDF_ARGON2ID || k->id == TD_KDF_SCRYPT)
		td_kdf_desc(k, buf, len);
	else
		snprintf(buf, len, "KDF %u", (unsigned)k->id);
}

static void fmt_mib(uint64_t bytes, char *buf, size_t len)
{
	if (bytes % (1u << 20) == 0 || bytes >= (1ull << 30))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes >> 20));
	else
		snprintf(buf, len, "%llu KiB", (unsigned long long)(bytes >> 10));
}

/* reference seconds with two decimals, "16.00" */
static void fmt_secs(uint64_t units, char buf[24])
{
	uint64_t hundredths =
	    units / TD_KDF_UNITS_PER_SECOND * 100 +
	    ((units % TD_KDF_UNITS_PER_SECOND) * 100 + TD_KDF_UNITS_PER_SECOND / 2) /
		TD_KDF_UNITS_PER_SECOND;

	snprintf(buf, 24, "%llu.%02llu", (unsigned long long)(hundredths / 100),
		 (unsigned long long)(hundredths % 100));
}

enum td_kdf_over td_kdf_budget_check(const struct td_kdf_budget *b, const struct td_kdf_params *kp,
				     char *why, size_t whylen)
{
	uint64_t mem = td_kdf_memory(kp), cost = td_kdf_cost(kp);
	char desc[64], m1[24], m2[24];

	kdf_describe(kp, desc, sizeof(desc));
	if (mem > b->max_memory) {
		fmt_mib(mem, m1, sizeof(m1));
		fmt_mib(b->max_memory, m2, sizeof(m2));
		if (why)
			snprintf(why, whylen, "%s needs %s of memory; the budget is %s per keyslot",
				 desc, m1, m2);
		return TD_KDF_OVER_MEMORY;
	}
	if (cost > b->max_cost) {
		fmt_secs(cost, m1);
		fmt_secs(b->max_cost, m2);
		if (why)
			snprintf(
			    why, whylen,
			    "%s costs %s reference seconds of work; the budget is %s per keyslot",
			    desc, m1, m2);
		return TD_KDF_OVER_COST;
	}
	return TD_KDF_FITS;
}

void td_keyslot_plan(const struct td_crypt_hdr *h, int slot, const struct td_kdf_budget *b,
		     struct td_unlock_plan *plan)
{
	uint64_t cost[TD_HDR_KEYSLOTS], total = 0;
	int cand[TD_HDR_KEYSLOTS], n = 0;
	char desc[64], c[24], t[24], m[24];

	memset(plan, 0, sizeof(*plan));
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		enum td_kdf_over over;

		if ((slot >= 0 && i != slot) || h->slots[i].state != TD_KEYSLOT_ACTIVE)
			continue;
		/* a token slot opens with its token, never with a passphrase */
		if (td_kdf_is_token(h->slots[i].kdf.id))
			continue;
		over = td_kdf_budget_check(b, &h->slots[i].kdf, plan->why[plan->nskip],
					   sizeof(plan->why[0]));
		if (over != TD_KDF_FITS) {
			plan->over[plan->nskip] = over;
			plan->skipped[plan->nskip++] = i;
			continue;
		}
		cost[i] = td_kdf_cost(&h->slots[i].kdf);
		/* insertion by (cost, index): the cheapest slots first */
		int j = n++;

		for (; j > 0 && cost[cand[j - 1]] > cost[i]; j--)
			cand[j] = cand[j - 1];
		cand[j] = i;
	}
	for (int k = 0; k < n; k++) {
		int i = cand[k];

		if (cost[i] > b->max_total_cost - total) {
			kdf_describe(&h->slots[i].kdf, desc, sizeof(desc));
			fmt_secs(cost[i], c);
			fmt_secs(total, t);
			fmt_secs(b->max_total_cost, m);
			snprintf(
			    plan->why[plan->nskip], sizeof(plan->why[0]),
			    "%s costs %s reference seconds; after the %s of the cheaper keyslots "
			    "tried first that is over the budget of %s for one passphrase",
			    desc, c, t, m);
			plan->over[plan->nskip] = TD_KDF_OVER_TOTAL_COST;
			plan->skipped[plan->nskip++] = i;
			continue;
		}
		total += cost[i];
		plan->order[plan->ntry++] = i;
	}
}

int td_kdf_derive(const struct td_kdf_params *kp, const void *pass, size_t passlen,
		  const uint8_t salt[TD_HDR_SALT_LEN], void *out, size_t outlen)
{
	struct td_kdf_budget budget;
	int ret = -EINVAL;

	if (!kp || !salt || !out || (!pass && passlen))
		goto out;
	/* Never run a KDF with parameters a header could not carry: they
	 * bound the memory and time a hostile header can make us spend. */
	ret = td_kdf_params_check(kp, NULL, 0);
	if (ret < 0)
		goto out;
	/* ... and none that this host's budget does not allow */
	budget = td_kdf_budget_get();
	ret = -E2BIG;
	if (td_kdf_budget_check(&budget, kp, NULL, 0) != TD_KDF_FITS)
		goto out;
	switch (kp->id) {
	case TD_KDF_ARGON2ID:
		ret = td_kdf_argon2id(pass, passlen, salt, TD_HDR_SALT_LEN, kp->t_cost,
				      kp->m_cost_kib, kp->parallelism, out, outlen);
		break;
	case TD_KDF_PBKDF2_SHA256:
		ret = td_kdf_pbkdf2_sha256(pass, passlen, salt, TD_HDR_SALT_LEN, kp->iterations,
					   out, outlen);
		break;
	case TD_KDF_SCRYPT:
		ret = td_kdf_scrypt(pass, passlen, salt, TD_HDR_SALT_LEN, kp->n, kp->r, kp->p, out,
				    outlen);
		break;
	default:
		ret = -EINVAL;
		break;
	}
out:
	return ret;
}

int td_keyslot_count_active(const struct td_crypt_hdr *h)
{
	int n = 0;

	if (!h)
		return 0;
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++)
		n += h->slots[i].state == TD_KEYSLOT_ACTIVE;
	return n;
}

/* Only the chosen KDF's fields, so what is wrapped (and bound into the
 * AAD) is exactly what decode will read back. */
static struct td_kdf_params normalized(const struct td_kdf_params *kp)
{
	struct td_kdf_params p;

	memset(&p, 0, sizeof(p));
	p.id = kp->id;
	switch (kp->id) {
	case TD_KDF_ARGON2ID:
		p.t_cost = kp->t_cost;
		p.m_cost_kib = kp->m_cost_kib;
		p.parallelism = kp->parallelism;
		break;
	case TD_KDF_PBKDF2_SHA256:
		p.iterations = kp->iterations;
		break;
	case TD_KDF_SCRYPT:
		p.n = kp->n;
		p.r = kp->r;
		p.p = kp->p;
		break;
	default:
		break;
	}
	return p;
}

/* A fresh salt and nonce for ks (going into slot), and its AAD: the AAD's
 * length or a negative errno. */
static int fresh_wrap(const struct td_crypt_hdr *h, int slot, struct td_keyslot *ks,
		      uint8_t aad[TD_HDR_AAD_MAX])
{
	int ret = td_random_bytes(ks->salt, sizeof(ks->salt));

	if (ret == 0)
		ret = td_random_bytes(ks->nonce, sizeof(ks->nonce));
	if (ret == 0)
		ret = td_hdr_keyslot_aad(h->uuid, slot, ks, aad);
	return ret;
}

/* slot itself when it is free, the first free one for -1: -EEXIST, -ENOSPC. */
static int pick_slot(const struct td_crypt_hdr *h, int slot)
{
	if (slot >= 0)
		return h->slots[slot].state == TD_KEYSLOT_ACTIVE ? -EEXIST : slot;
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++)
		if (h->slots[i].state != TD_KEYSLOT_ACTIVE)
			return i;
	return -ENOSPC;
}

int td_keyslot_add(struct td_crypt_hdr *h, int slot, const struct td_volkey *vk, const void *pass,
		   size_t passlen, const struct td_kdf_params *kp)
{
	struct td_keyslot ks;
	uint8_t aad[TD_HDR_AAD_MAX];
	uint8_t digest[TD_HDR_DIGEST_LEN];
	uint8_t *kek = NULL;
	int aadlen;
	int first = 0;
	int ret = -EINVAL;

	if (!h || !vk || !pass || passlen == 0 || !kp)
		goto out;
	if (slot < -1 || slot >= TD_HDR_KEYSLOTS || td_kdf_is_token(kp->id))
		goto out;
	ret = td_kdf_params_check(kp, NULL, 0);
	if (ret < 0)
		goto out;
	first = td_keyslot_count_active(h) == 0;
	if (first) {
		ret = td_hdr_vk_digest(vk, digest);
		if (ret < 0)
			goto out;
	} else {
		/* Wrapping a different key would make a slot that "opens" to a
		 * key this image was never encrypted with. */
		ret = td_hdr_check_volkey(h, vk);
		if (ret < 0) {
			ret = -EINVAL;
			goto out;
		}
	}
	ret = slot = pick_slot(h, slot);
	if (ret < 0)
		goto out;

	memset(&ks, 0, sizeof(ks));
	ks.state = TD_KEYSLOT_ACTIVE;
	ks.kdf = normalized(kp);
	ret = aadlen = fresh_wrap(h, slot, &ks, aad);
	if (ret < 0)
		goto out;
	ret = -ENOMEM;
	kek = td_secure_alloc(KEK_LEN);
	if (!kek)
		goto out;
	ret = td_kdf_derive(&ks.kdf, pass, passlen, ks.salt, kek, KEK_LEN);
	if (ret < 0)
		goto out;
	ret = td_aead_seal(kek, ks.nonce, aad, (size_t)aadlen, td_volkey_bytes(vk), TD_VOLKEY_LEN,
			   ks.wrapped, ks.tag);
	if (ret < 0)
		goto out;
	if (first)
		memcpy(h->vk_digest, digest, sizeof(digest));
	h->slots[slot] = ks;
	ret = slot;
out:
	td_secure_free(kek);
	return ret;
}

/* Slot i's own wrap (pending false) or its pending wrap under a KEK: 0
 * and *out set when the wrap opens and the key matches digest; -EPERM
 * when it does not; another error when it could not be tried. */
static int open_wrap(const struct td_crypt_hdr *h, int i, const uint8_t *kek, bool pending,
		     const uint8_t digest[TD_HDR_DIGEST_LEN], struct td_volkey **out)
{
	const struct td_keyslot *ks = &h->slots[i];
	uint8_t aad[TD_HDR_AAD_MAX], dig[TD_HDR_DIGEST_LEN];
	uint8_t *key = NULL;
	struct td_volkey *vk = NULL;
	int aadlen;
	int ret = -EINVAL;

	ret = aadlen = td_hdr_keyslot_aad(h->uuid, i, ks, aad);
	if (ret < 0)
		goto out;
	ret = -ENOMEM;
	key = td_secure_alloc(TD_VOLKEY_LEN);
	if (!key)
		goto out;
	ret = -EPERM;
	if (pending && !ks->pending)
		goto out;
	ret = pending ? td_aead_open(kek, ks->pending_nonce, aad, (size_t)aadlen,
				     ks->pending_wrapped, TD_HDR_WRAPPED_LEN, ks->pending_tag, key)
		      : td_aead_open(kek, ks->nonce, aad, (size_t)aadlen, ks->wrapped,
				     TD_HDR_WRAPPED_LEN, ks->tag, key);
	if (ret == -EBADMSG)
		ret = -EPERM;
	if (ret < 0)
		goto out;
	vk = td_volkey_from_bytes(key, TD_VOLKEY_LEN);
	if (!vk) {
		ret = -errno;
		goto out;
	}
	ret = td_hdr_vk_digest(vk, dig);
	if (ret < 0)
		goto out;
	ret = -EPERM;
	if (!td_ct_memeq(dig, digest, TD_HDR_DIGEST_LEN))
		goto out;
	*out = vk;
	vk = NULL;
	ret = 0;
out:
	td_volkey_free(&vk);
	td_secure_free(key);
	return ret;
}

static int open_slot(const struct td_crypt_hdr *h, int i, const uint8_t *kek,
		     struct td_volkey **out)
{
	return open_wrap(h, i, kek, false, h->vk_digest, out);
}

/* One passphrase slot: its KDF, then open_slot. */
static int try_slot(const struct td_crypt_hdr *h, int i, const void *pass, size_t passlen,
		    struct td_volkey **out)
{
	const struct td_keyslot *ks = &h->slots[i];
	uint8_t *kek = NULL;
	int ret = -EINVAL;

	if (td_kdf_is_token(ks->kdf.id))
		goto out;
	ret = -ENOMEM;
	kek = td_secure_alloc(KEK_LEN);
	if (!kek)
		goto out;
	ret = td_kdf_derive(&ks->kdf, pass, passlen, ks->salt, kek, KEK_LEN);
	if (ret < 0)
		goto out;
	ret = open_slot(h, i, kek, out);
out:
	td_secure_free(kek);
	return ret;
}

int td_keyslot_unlock(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		      struct td_volkey **out, int *slot_used)
{
	struct td_unlock_plan plan;
	struct td_kdf_budget budget;
	struct td_volkey *vk = NULL;
	int hard_err = 0;
	int opened = -1;
	int ret = -EINVAL;

	if (out)
		*out = NULL;
	if (!h || !out || (!pass && passlen) || slot < -1 || slot >= TD_HDR_KEYSLOTS)
		goto out;
	ret = -ENOENT;
	if (slot >= 0 && h->slots[slot].state != TD_KEYSLOT_ACTIVE)
		goto out;
	ret = -ENOTSUP;
	if (slot >= 0 && td_kdf_is_token(h->slots[slot].kdf.id))
		goto out;
	/* before any KDF runs: only the slots the budget allows, cheapest first */
	budget = td_kdf_budget_get();
	td_keyslot_plan(h, slot, &budget, &plan);
	for (int k = 0; k < plan.ntry && opened < 0; k++) {
		int i = plan.order[k], rc;

		rc = try_slot(h, i, pass, passlen, &vk);
		if (rc == 0)
			opened = i;
		else if (rc != -EPERM && hard_err == 0)
			hard_err = rc;
	}
	ret = hard_err ? hard_err : plan.nskip ? -E2BIG : -EPERM;
	if (opened < 0)
		goto out;
	/* The passphrase was right; now the key can tell whether anyone
	 * changed the header (cipher, integrity, offsets, slots). */
	ret = td_hdr_verify_mac(h, vk);
	if (ret < 0)
		goto out;
	*out = vk;
	vk = NULL;
	if (slot_used)
		*slot_used = opened;
	ret = 0;
out:
	td_volkey_free(&vk);
	return ret;
}

int td_keyslot_add_token(struct td_crypt_hdr *h, int slot, const struct td_volkey *vk,
			 enum td_kdf_id kind, const uint8_t *token, size_t token_len,
			 const uint8_t *kek, size_t kek_len)
{
	struct td_keyslot ks;
	uint8_t aad[TD_HDR_AAD_MAX];
	int aadlen;
	int ret = -EINVAL;

	if (!h || !vk || !token || !kek || kek_len != KEK_LEN || !td_kdf_is_token(kind))
		goto out;
	if (token_len == 0 || token_len > TD_HDR_TOKEN_MAX || slot < -1 || slot >= TD_HDR_KEYSLOTS)
		goto out;
	/* a token slot is never the first: the digest comes from a passphrase
	 * slot, so a key is always recoverable by a person */
	ret = -EINVAL;
	if (td_keyslot_count_active(h) == 0 || td_hdr_check_volkey(h, vk) < 0)
		goto out;
	ret = slot = pick_slot(h, slot);
	if (ret < 0)
		goto out;
	memset(&ks, 0, sizeof(ks));
	ks.state = TD_KEYSLOT_ACTIVE;
	ks.kdf.id = kind;
	ks.token_len = (uint32_t)token_len;
	memcpy(ks.token, token, token_len);
	ret = aadlen = fresh_wrap(h, slot, &ks, aad);
	if (ret < 0)
		goto out;
	ret = td_aead_seal(kek, ks.nonce, aad, (size_t)aadlen, td_volkey_bytes(vk), TD_VOLKEY_LEN,
			   ks.wrapped, ks.tag);
	if (ret < 0)
		goto out;
	h->slots[slot] = ks;
	ret = slot;
out:
	td_wipe(&ks, sizeof(ks));
	return ret;
}

int td_keyslot_unlock_token(const struct td_crypt_hdr *h, int slot, const uint8_t *kek,
			    size_t kek_len, struct td_volkey **out)
{
	struct td_volkey *vk = NULL;
	int ret = -EINVAL;

	if (out)
		*out = NULL;
	if (!h || !out || !kek || kek_len != KEK_LEN || slot < 0 || slot >= TD_HDR_KEYSLOTS)
		goto out;
	ret = -ENOENT;
	if (h->slots[slot].state != TD_KEYSLOT_ACTIVE)
		goto out;
	ret = -EINVAL;
	if (!td_kdf_is_token(h->slots[slot].kdf.id))
		goto out;
	ret = open_slot(h, slot, kek, &vk);
	if (ret < 0)
		goto out;
	ret = td_hdr_verify_mac(h, vk);
	if (ret < 0)
		goto out;
	*out = vk;
	vk = NULL;
	ret = 0;
out:
	td_volkey_free(&vk);
	return ret;
}

int td_keyslot_remove(struct td_crypt_hdr *h, int slot)
{
	int ret = -EINVAL;

	if (!h || slot < 0 || slot >= TD_HDR_KEYSLOTS)
		goto out;
	ret = -ENOENT;
	if (h->slots[slot].state != TD_KEYSLOT_ACTIVE)
		goto out;
	ret = -EBUSY;
	if (td_keyslot_count_active(h) <= 1)
		goto out;
	memset(&h->slots[slot], 0, sizeof(h->slots[slot]));
	ret = 0;
out:
	return ret;
}

const char *td_keyslot_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EPERM:
		return "wrong passphrase (no keyslot opened)";
	case -EBADMSG:
		return "header authentication failed: the header was changed without the volume "
		       "key";
	case -ENOSPC:
		return "all " STR(TD_HDR_KEYSLOTS) " keyslots are in use";
	case -EBUSY:
		return "refusing to remove the last keyslot (the volume key would be lost)";
	case -ENOENT:
		return "no such active keyslot";
	case -EEXIST:
		return "keyslot already in use";
	case -EINVAL:
		return "invalid keyslot request (slot number, KDF parameters, empty passphrase, "
		       "or a key that does not belong to this image)";
	case -ENOMEM:
		return "out of memory (is the KDF memory cost too high for this machine?)";
	case -ENOTSUP:
		return "this keyslot opens with its TPM2 or Tang token, not a passphrase";
	case -E2BIG:
		return "no keyslot within this host's KDF budget opens with this passphrase "
		       "(keyslots over the budget were not tried)";
	default:
		return strerror(err < 0 ? -err : err);
	}
}

int td_keyslot_kek(const struct td_crypt_hdr *h, int slot, const void *pass, size_t passlen,
		   uint8_t *kek, size_t kek_len)
{
	const struct td_keyslot *ks;

	if (!h || !kek || kek_len != KEK_LEN || slot < 0 || slot >= TD_HDR_KEYSLOTS)
		return -EINVAL;
	ks = &h->slots[slot];
	if (ks->state != TD_KEYSLOT_ACTIVE)
		return -ENOENT;
	if (td_kdf_is_token(ks->kdf.id))
		return -EINVAL;
	return td_kdf_derive(&ks->kdf, pass, passlen, ks->salt, kek, KEK_LEN);
}

int td_keyslot_wrap_pending(struct td_crypt_hdr *h, int slot, const uint8_t *kek, size_t kek_len,
			    const struct td_volkey *next)
{
	struct td_volkey *cur = NULL;
	struct td_keyslot *ks;
	uint8_t aad[TD_HDR_AAD_MAX];
	int aadlen, ret = -EINVAL;

	if (!h || !kek || kek_len != KEK_LEN || !next || slot < 0 || slot >= TD_HDR_KEYSLOTS)
		return -EINVAL;
	ks = &h->slots[slot];
	if (ks->state != TD_KEYSLOT_ACTIVE)
		return -ENOENT;
	/* the KEK must be the slot's: it opens the slot's own wrap */
	ret = open_slot(h, slot, kek, &cur);
	td_volkey_free(&cur);
	if (ret < 0)
		return ret;
	ret = aadlen = td_hdr_keyslot_aad(h->uuid, slot, ks, aad);
	if (ret < 0)
		return ret;
	do {
		ret = td_random_bytes(ks->pending_nonce, TD_HDR_NONCE_LEN);
	} while (ret == 0 && !memcmp(ks->pending_nonce, ks->nonce, TD_HDR_NONCE_LEN));
	if (ret < 0)
		return ret;
	ret = td_aead_seal(kek, ks->pending_nonce, aad, (size_t)aadlen, td_volkey_bytes(next),
			   TD_VOLKEY_LEN, ks->pending_wrapped, ks->pending_tag);
	if (ret < 0) {
		memset(ks->pending_nonce, 0, TD_HDR_NONCE_LEN);
		return ret;
	}
	ks->pending = 1;
	return 0;
}

int td_keyslot_open_pending(const struct td_crypt_hdr *h, int slot, const uint8_t *kek,
			    size_t kek_len, const uint8_t digest[TD_HDR_DIGEST_LEN],
			    struct td_volkey **out)
{
	if (out)
		*out = NULL;
	if (!h || !kek || kek_len != KEK_LEN || !digest || !out || slot < 0 ||
	    slot >= TD_HDR_KEYSLOTS)
		return -EINVAL;
	if (h->slots[slot].state != TD_KEYSLOT_ACTIVE)
		return -ENOENT;
	return open_wrap(h, slot, kek, true, digest, out);
}
