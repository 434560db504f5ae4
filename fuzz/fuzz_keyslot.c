/* libFuzzer harness for the keyslot loader (keymgr/keyslot.c):
 * td_hdr_decode, then td_keyslot_unlock with a fixed passphrase.
 *
 * Input: byte 0 mode, then one header copy (zero-padded or cut to 16 KiB).
 * Mode bits: 0x01 recompute the checksum (see fuzz_crypt_header.c);
 * 0x02 also try the empty passphrase; 0x04 try every slot at once (-1)
 * besides each slot on its own.
 *
 * KDF cost bound. The decoder accepts whatever a legitimate header may
 * carry (argon2id up to 64 passes over 4 GiB, PBKDF2 up to 2^31 rounds,
 * scrypt up to 4 GiB), and running those is the point of a KDF: one
 * execution would take seconds to hours and blow libFuzzer's RSS limit,
 * which reports as a timeout/OOM "finding" that is really the intended
 * work factor. The KDFs themselves are libargon2 and OpenSSL, not our
 * parser. So a slot whose cost exceeds CHEAP_* below is not unlocked; the
 * seeds use td_kdf_params_minimal, which is well inside the bound, so the
 * fuzzer still reaches the AAD construction, AES-GCM unwrap, volume key
 * digest and header MAC paths with a passphrase that is actually right. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/header.h"
#include "fuzz/fuzz_common.h"
#include "keymgr/keyslot.h"
#include "crypt/backend/volkey.h"

#define FZ_PASSPHRASE "fuzz passphrase" /* the seeds' slots use it too */
#define CHEAP_ARGON2_KIB_PASSES 256	/* t_cost * m_cost_kib */
#define CHEAP_ARGON2_LANES 2
#define CHEAP_PBKDF2_ITER 4096
#define CHEAP_SCRYPT_NR 2048 /* N * r, i.e. 256 KiB of memory */
#define CHEAP_SCRYPT_P 2

static int cheap(const struct td_kdf_params *k)
{
	switch (k->id) {
	case TD_KDF_ARGON2ID:
		return (uint64_t)k->t_cost * k->m_cost_kib <= CHEAP_ARGON2_KIB_PASSES &&
		       k->parallelism <= CHEAP_ARGON2_LANES;
	case TD_KDF_PBKDF2_SHA256:
		return k->iterations <= CHEAP_PBKDF2_ITER;
	case TD_KDF_SCRYPT:
		return k->n * k->r <= CHEAP_SCRYPT_NR && k->p <= CHEAP_SCRYPT_P;
	default:
		return 1; /* refused before any work */
	}
}

static void try_unlock(const struct td_crypt_hdr *h, int slot, const char *pass, size_t passlen)
{
	struct td_volkey *vk = (struct td_volkey *)1;
	int used = -1;
	int rc = td_keyslot_unlock(h, slot, pass, passlen, &vk, &used);

	if (rc == 0) {
		/* opened: the key matches the digest and the header MAC */
		assert(vk);
		assert(used >= 0 && used < TD_HDR_KEYSLOTS);
		assert(h->slots[used].state == TD_KEYSLOT_ACTIVE);
		assert(slot < 0 || used == slot);
		assert(td_hdr_check_volkey(h, vk) == 0);
		assert(td_hdr_verify_mac(h, vk) == 0);
		td_volkey_free(&vk);
		assert(!vk);
	} else {
		assert(vk == NULL); /* never a key on failure */
		assert(rc == -EPERM || rc == -ENOENT || rc == -EBADMSG || rc == -EINVAL ||
		       rc == -ENOMEM);
		assert(td_keyslot_strerror(rc)[0]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct td_crypt_hdr h;
	uint8_t *buf;
	char err[256];
	int mode, all_cheap = 1;

	if (size < 1)
		return 0;
	mode = data[0];
	buf = calloc(1, TD_HDR_COPY_SIZE);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1 < TD_HDR_COPY_SIZE ? size - 1 : TD_HDR_COPY_SIZE);
	if (mode & 0x01)
		fz_hdr_fix_checksum(buf);
	if (td_hdr_decode(buf, TD_HDR_COPY_SIZE, &h, err, sizeof(err)) < 0)
		goto out;
	(void)td_keyslot_count_active(&h);
	for (int i = 0; i < TD_HDR_KEYSLOTS; i++) {
		if (h.slots[i].state != TD_KEYSLOT_ACTIVE) {
			try_unlock(&h, i, FZ_PASSPHRASE, strlen(FZ_PASSPHRASE)); /* -ENOENT */
			continue;
		}
		if (!cheap(&h.slots[i].kdf)) {
			all_cheap = 0;
			continue;
		}
		try_unlock(&h, i, FZ_PASSPHRASE, strlen(FZ_PASSPHRASE));
		if (mode & 0x02)
			try_unlock(&h, i, "", 0);
	}
	if ((mode & 0x04) && all_cheap)
		try_unlock(&h, -1, FZ_PASSPHRASE, strlen(FZ_PASSPHRASE));
out:
	free(buf);
	return 0;
}
