/* The crypt header and keyslots: encoding pinned to the documented byte
 * offsets, every corruption refused with a clear reason, copy selection,
 * the header MAC, and keyslot add / unlock / remove. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/le.h"

#include "crypt/backend/cipher.h"
#include "crypt/header.h"
#include "keymgr/keyslot.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"

/* The offsets of docs/FORMAT.md, written out again on purpose: if the
 * code drifts from the document, these tests fail. */
#define SLOT(i) (1024u + 256u * (i))
#define CHECKSUM_OFF 16352u
#define MAC_OFF 16320u

static const char PASS1[] = "correct horse battery staple";
static const char PASS2[] = "another passphrase, for slot two";

static uint8_t buf[TD_HDR_COPY_SIZE];
static uint8_t buf2[TD_HDR_COPY_SIZE];

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* What an attacker without the key can do: recompute the checksum. */
static void forge_checksum(uint8_t *b)
{
	assert_int_equal(td_sha256(b, CHECKSUM_OFF, b + CHECKSUM_OFF), 0);
}

/* A sealed header with one argon2id slot (cheap parameters) for PASS1. */
static void make_header(struct td_crypt_hdr *h, struct td_volkey **vk, const char *integrity)
{
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_ARGON2ID);

	assert_int_equal(td_hdr_init_new(h, 1ULL << 30, integrity), 0);
	*vk = td_volkey_new_random();
	assert_non_null(*vk);
	assert_int_equal(td_keyslot_add(h, -1, *vk, PASS1, strlen(PASS1), &kp), 0);
	assert_int_equal(td_hdr_seal(h, *vk), 0);
}

static void test_init_new(void **state)
{
	struct td_crypt_hdr a, b;
	char s[TD_HDR_UUID_STR_LEN];

	assert_int_equal(td_hdr_init_new(&a, (1ULL << 30) + 5000, "none"), 0);
	assert_int_equal(td_hdr_init_new(&b, 1ULL << 30, "hmac-sha256"), 0);
	assert_memory_not_equal(a.uuid, b.uuid, 16);
	assert_int_equal(a.uuid[6] >> 4, 4);
	assert_int_equal(a.uuid[8] >> 6, 2);
	assert_int_equal(a.seqno, 1);
	assert_string_equal(a.cipher, "aes-xts-plain64");
	assert_int_equal(a.key_bits, 512);
	assert_int_equal(a.sector_size, 4096);
	assert_int_equal(a.tweak_mode, 1);
	assert_int_equal(a.data_offset, 1048576);
	assert_int_equal(a.data_size, (1ULL << 30) + 4096 - 1048576);
	assert_string_equal(a.integrity, "none");
	assert_int_equal(a.tag_size, 0);
	assert_string_equal(b.integrity, "hmac-sha256");
	assert_int_equal(b.tag_size, 24);
	assert_int_equal(td_keyslot_count_active(&a), 0);

	assert_int_equal(td_hdr_init_new(&a, 1ULL << 30, "sha1"), -EINVAL);
	assert_int_equal(td_hdr_init_new(&a, 1ULL << 30, NULL), -EINVAL);
	assert_int_equal(td_hdr_init_new(&a, 1048576 + 4095, "none"), -ENOSPC);
	assert_int_equal(td_hdr_init_new(&a, 1048576 + 4096, "none"), 0);

	td_hdr_uuid_str((const uint8_t *)"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd"
					 "\xee\xff",
			s);
	assert_string_equal(s, "00112233-4455-6677-8899-aabbccddeeff");
}

/* The bytes land where docs/FORMAT.md says. */
static void test_encode_layout(void **state)
{
	struct td_crypt_hdr h;
	struct td_volkey *vk = NULL;
	uint8_t sum[32];

	make_header(&h, &vk, "hmac-sha256");
	h.seqno = 0x0102030405060708ULL;
	h.integrity_params[0] = 0xab;
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf), 0);

	assert_memory_equal(buf, "TDCRYPT\0", 8);
	assert_int_equal(get32(buf + 8), 1);
	assert_int_equal(get32(buf + 12), 16384);
	assert_memory_equal(buf + 16, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);
	assert_memory_equal(buf + 24, h.uuid, 16);
	assert_int_equal(get64(buf + 40), 0);
	assert_string_equal((const char *)buf + 48, "aes-xts-plain64");
	assert_int_equal(get32(buf + 80), 512);
	assert_int_equal(get32(buf + 84), 4096);
	assert_int_equal(get32(buf + 88), 1);
	assert_int_equal(get64(buf + 96), 1048576);
	assert_int_equal(get64(buf + 104), h.data_size);
	assert_string_equal((const char *)buf + 112, "hmac-sha256");
	assert_int_equal(get32(buf + 144), 24);
	assert_int_equal(get32(buf + 148), 16);
	assert_int_equal(get32(buf + 152), 256);
	assert_int_equal(get32(buf + 156), 1024);
	assert_memory_equal(buf + 160, h.vk_digest, 32);
	assert_int_equal(buf[256], 0xab);
	/* keyslot 0: active argon2id t=1, m=8 KiB, p=1, 64-byte key */
	assert_int_equal(get32(buf + SLOT(0) + 0), 1);
	assert_int_equal(get32(buf + SLOT(0) + 4), 1);
	assert_int_equal(get64(buf + SLOT(0) + 8), 1);
	assert_int_equal(get32(buf + SLOT(0) + 16), 8);
	assert_int_equal(get32(buf + SLOT(0) + 20), 1);
	assert_int_equal(get32(buf + SLOT(0) + 24), 64);
	assert_memory_equal(buf + SLOT(0) + 32, h.slots[0].salt, 32);
	assert_memory_equal(buf + SLOT(0) + 64, h.slots[0].nonce, 12);
	assert_memory_equal(buf + SLOT(0) + 80, h.slots[0].wrapped, 64);
	assert_memory_equal(buf + SLOT(0) + 144, h.slots[0].tag, 16);
	assert_int_equal(get32(buf + SLOT(1)), 0);
	assert_memory_equal(buf + MAC_OFF, h.mac, 32);
	assert_int_equal(td_sha256(buf, CHECKSUM_OFF, sum), 0);
	assert_memory_equal(buf + CHECKSUM_OFF, sum, 32);
	td_volkey_free(&vk);
}

static void test_roundtrip(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk = NULL;
	struct td_kdf_params kp2 = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	struct td_kdf_params kp3 = td_kdf_params_minimal(TD_KDF_SCRYPT);
	char err[160];

	make_header(&h, &vk, "none");
	assert_int_equal(td_keyslot_add(&h, 7, vk, PASS2, strlen(PASS2), &kp2), 7);
	assert_int_equal(td_keyslot_add(&h, -1, vk, PASS2, strlen(PASS2), &kp3), 1);
	h.flags = 1ULL << 40; /* a compatible feature bit: kept */
	h.freshness[5] = 9;
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	memset(&d, 0xab, sizeof(d));
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);

	assert_int_equal(d.seqno, h.seqno);
	assert_memory_equal(d.uuid, h.uuid, 16);
	assert_int_equal(d.flags, h.flags);
	assert_string_equal(d.cipher, h.cipher);
	assert_int_equal(d.data_offset, h.data_offset);
	assert_int_equal(d.data_size, h.data_size);
	assert_string_equal(d.integrity, h.integrity);
	assert_memory_equal(d.vk_digest, h.vk_digest, 32);
	assert_memory_equal(d.freshness, h.freshness, sizeof(h.freshness));
	assert_memory_equal(d.mac, h.mac, 32);
	assert_int_equal(td_keyslot_count_active(&d), 3);
	assert_int_equal(d.slots[0].kdf.id, TD_KDF_ARGON2ID);
	assert_int_equal(d.slots[0].kdf.m_cost_kib, 8);
	assert_int_equal(d.slots[7].kdf.id, TD_KDF_PBKDF2_SHA256);
	assert_int_equal(d.slots[7].kdf.iterations, 1000);
	assert_int_equal(d.slots[1].kdf.id, TD_KDF_SCRYPT);
	assert_int_equal(d.slots[1].kdf.n, 16);
	assert_memory_equal(d.slots[7].wrapped, h.slots[7].wrapped, 64);

	/* Decode then encode gives the same bytes; the MAC still verifies. */
	assert_int_equal(td_hdr_encode(&d, buf2), 0);
	assert_memory_equal(buf, buf2, sizeof(buf));
	assert_int_equal(td_hdr_verify_mac(&d, vk), 0);

	/* A longer buffer (a whole 64 KiB slot) is fine; a shorter one is not. */
	assert_int_equal(td_hdr_decode(buf, sizeof(buf) - 1, &d, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "truncated"));
	td_volkey_free(&vk);
}

/* ---- corruption ---- */

struct mut {
	unsigned off;
	char kind; /* 'x' xor a byte, '4' / '8' set a LE integer, 's' set a string field */
	uint64_t val;
	const char *str;
};

struct corruption {
	const char *what;
	struct mut m[3];
	int keep_checksum; /* 1: leave the (now wrong) checksum alone */
	int want;
	const char *msg;
};

static const struct corruption corruptions[] = {
    {"magic", {{0, 'x', 0x20, NULL}}, 0, -ENOMSG, "magic"},
    {"version", {{8, '4', 2, NULL}}, 0, -EPROTONOSUPPORT, "version 2"},
    {"header size", {{12, '4', 8192, NULL}}, 0, -EBADMSG, "header size"},
    {"body bit flip, checksum not fixed", {{200, 'x', 1, NULL}}, 1, -EBADMSG, "checksum"},
    {"checksum field", {{CHECKSUM_OFF + 3, 'x', 1, NULL}}, 1, -EBADMSG, "checksum"},
    {"MAC bit flip, checksum not fixed", {{MAC_OFF, 'x', 1, NULL}}, 1, -EBADMSG, "checksum"},
    {"unknown incompatible flag", {{40, '8', 2, NULL}}, 0, -EBADMSG, "incompatible"},
    {"cipher", {{48, 's', 0, "aes-cbc-essiv:sha256"}}, 0, -EBADMSG, "unsupported cipher"},
    {"cipher empty", {{48, 's', 0, ""}}, 0, -EBADMSG, "unsupported cipher"},
    {"cipher unprintable", {{48, 's', 0, "aes\x01xts"}}, 0, -EBADMSG, "printable"},
    {"cipher without NUL",
     {{48, 's', 0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},
     0,
     -EBADMSG,
     "printable"},
    {"cipher junk after NUL", {{48 + 20, 'x', 'x', NULL}}, 0, -EBADMSG, "printable"},
    {"key bits", {{80, '4', 256, NULL}}, 0, -EBADMSG, "key size"},
    {"sector size", {{84, '4', 512, NULL}}, 0, -EBADMSG, "sector size"},
    {"tweak mode", {{88, '4', 2, NULL}}, 0, -EBADMSG, "tweak mode"},
    {"reserved after tweak mode", {{92, 'x', 1, NULL}}, 0, -EBADMSG, "offset 92"},
    {"data offset inside header area", {{96, '8', 65536, NULL}}, 0, -EBADMSG, "data offset"},
    {"data offset zero", {{96, '8', 0, NULL}}, 0, -EBADMSG, "data offset"},
    {"data offset unaligned", {{96, '8', 1048576 + 512, NULL}}, 0, -EBADMSG, "data offset"},
    {"data offset huge", {{96, '8', 1ULL << 40, NULL}}, 0, -EBADMSG, "data offset"},
    {"data size zero", {{104, '8', 0, NULL}}, 0, -EBADMSG, "data size"},
    {"data size unaligned", {{104, '8', 4097, NULL}}, 0, -EBADMSG, "data size"},
    {"data size overflows", {{104, '8', (1ULL << 63) - 4096, NULL}}, 0, -EBADMSG, "data size"},
    {"integrity unknown", {{112, 's', 0, "sha1"}}, 0, -EBADMSG, "unsupported integrity"},
    {"integrity none with tags", {{144, '4', 32, NULL}}, 0, -EBADMSG, "tag size"},
    {"integrity hmac without tags", {{112, 's', 0, "hmac-sha256"}}, 0, -EBADMSG, "tag size"},
    {"integrity params with none", {{300, 'x', 1, NULL}}, 0, -EBADMSG, "integrity parameters"},
    {"keyslot count", {{148, '4', 8, NULL}}, 0, -EBADMSG, "geometry"},
    {"keyslot size", {{152, '4', 128, NULL}}, 0, -EBADMSG, "geometry"},
    {"keyslot offset", {{156, '4', 2048, NULL}}, 0, -EBADMSG, "geometry"},
    {"reserved after digest", {{192, 'x', 1, NULL}}, 0, -EBADMSG, "offset 192"},
    {"reserved before keyslots", {{1000, 'x', 1, NULL}}, 0, -EBADMSG, "offset 768"},
    {"token on a passphrase slot", {{6000, 'x', 1, NULL}}, 0, -EBADMSG, "slot that has no token"},
    {"reserved after tokens", {{15360, 'x', 1, NULL}}, 0, -EBADMSG, "offset 15360"},
    {"reserved before MAC", {{MAC_OFF - 1, 'x', 1, NULL}}, 0, -EBADMSG, "offset 15360"},
    {"inactive slot not zeroed",
     {{SLOT(1) + 40, 'x', 1, NULL}},
     0,
     -EBADMSG,
     "keyslot 1: inactive but not zeroed"},
    {"last slot not zeroed", {{SLOT(15) + 255, 'x', 1, NULL}}, 0, -EBADMSG, "keyslot 15: inactive"},
    {"slot state", {{SLOT(0), '4', 2, NULL}}, 0, -EBADMSG, "keyslot 0: unknown state 2"},
    {"slot KDF id", {{SLOT(0) + 4, '4', 9, NULL}}, 0, -EBADMSG, "unknown KDF id 9"},
    {"slot KDF id none", {{SLOT(0) + 4, '4', 0, NULL}}, 0, -EBADMSG, "unknown KDF id 0"},
    {"slot key length", {{SLOT(0) + 24, '4', 32, NULL}}, 0, -EBADMSG, "key length 32"},
    {"slot reserved 28", {{SLOT(0) + 28, 'x', 1, NULL}}, 0, -EBADMSG, "reserved bytes at 28"},
    {"slot reserved 76", {{SLOT(0) + 76, 'x', 1, NULL}}, 0, -EBADMSG, "reserved bytes at 76"},
    {"pending bytes without a pending state",
     {{SLOT(0) + 200, 'x', 1, NULL}},
     0,
     -EBADMSG,
     "keyslot 0: malformed pending wrap"},
    {"pending state 2", {{SLOT(0) + 172, '4', 2, NULL}}, 0, -EBADMSG, "malformed pending wrap"},
    {"pending wrap without a rotation",
     {{SLOT(0) + 172, '4', 1, NULL}},
     0,
     -EBADMSG,
     "keyslot 0: a pending wrap without a rotation"},
    {"pending wrap on an inactive slot",
     {{SLOT(3) + 172, '4', 1, NULL}},
     0,
     -EBADMSG,
     "keyslot 3: inactive but not zeroed"},
    {"argon2id t=0", {{SLOT(0) + 8, '8', 0, NULL}}, 0, -EBADMSG, "passes 0"},
    {"argon2id t=65", {{SLOT(0) + 8, '8', 65, NULL}}, 0, -EBADMSG, "passes 65"},
    {"argon2id t=2^40", {{SLOT(0) + 8, '8', 1ULL << 40, NULL}}, 0, -EBADMSG, "passes"},
    {"argon2id m too small", {{SLOT(0) + 16, '4', 7, NULL}}, 0, -EBADMSG, "memory 7 KiB"},
    {"argon2id m huge", {{SLOT(0) + 16, '4', 0xffffffff, NULL}}, 0, -EBADMSG, "memory"},
    {"argon2id m below 8 per lane",
     {{SLOT(0) + 20, '4', 2, NULL}},
     0,
     -EBADMSG,
     "memory 8 KiB out of range 16"},
    {"argon2id p=0", {{SLOT(0) + 20, '4', 0, NULL}}, 0, -EBADMSG, "parallelism 0"},
    {"argon2id p=17", {{SLOT(0) + 20, '4', 17, NULL}}, 0, -EBADMSG, "parallelism 17"},
    {"pbkdf2 with leftover params",
     {{SLOT(0) + 4, '4', 2, NULL}, {SLOT(0) + 8, '8', 1000, NULL}},
     0,
     -EBADMSG,
     "malformed pbkdf2"},
    {"pbkdf2 zero iterations",
     {{SLOT(0) + 4, '4', 2, NULL}, {SLOT(0) + 8, '8', 0, NULL}, {SLOT(0) + 16, '8', 0, NULL}},
     0,
     -EBADMSG,
     "pbkdf2 iterations 0"},
    {"pbkdf2 iterations above 2^32",
     {{SLOT(0) + 4, '4', 2, NULL},
      {SLOT(0) + 8, '8', 1ULL << 32, NULL},
      {SLOT(0) + 16, '8', 0, NULL}},
     0,
     -EBADMSG,
     "malformed pbkdf2"},
    {"scrypt N not a power of two",
     {{SLOT(0) + 4, '4', 3, NULL}, {SLOT(0) + 8, '8', 1000, NULL}},
     0,
     -EBADMSG,
     "scrypt N 1000"},
    {"scrypt N=1",
     {{SLOT(0) + 4, '4', 3, NULL}, {SLOT(0) + 8, '8', 1, NULL}},
     0,
     -EBADMSG,
     "scrypt N 1"},
    {"scrypt r=0",
     {{SLOT(0) + 4, '4', 3, NULL}, {SLOT(0) + 8, '8', 16, NULL}, {SLOT(0) + 16, '4', 0, NULL}},
     0,
     -EBADMSG,
     "scrypt r 0"},
    {"scrypt over 4 GiB",
     {{SLOT(0) + 4, '4', 3, NULL}, {SLOT(0) + 8, '8', 1ULL << 30, NULL}},
     0,
     -EBADMSG,
     "4 GiB"},
};

static void apply(uint8_t *b, const struct mut *m)
{
	switch (m->kind) {
	case 'x':
		b[m->off] ^= (uint8_t)m->val;
		break;
	case '4':
		put32(b + m->off, (uint32_t)m->val);
		break;
	case '8':
		put64(b + m->off, m->val);
		break;
	case 's':
		memset(b + m->off, 0, 32);
		memcpy(b + m->off, m->str, strlen(m->str));
		break;
	default:
		break;
	}
}

static void test_corruptions_refused(void **state)
{
	struct td_crypt_hdr h, d, sentinel;
	struct td_volkey *vk = NULL;
	char err[200];

	make_header(&h, &vk, "none");
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	memset(&sentinel, 0x5a, sizeof(sentinel));
	for (size_t c = 0; c < sizeof(corruptions) / sizeof(corruptions[0]); c++) {
		const struct corruption *tc = &corruptions[c];
		int rc;

		memcpy(buf2, buf, sizeof(buf));
		for (int i = 0; i < 3 && tc->m[i].kind; i++)
			apply(buf2, &tc->m[i]);
		if (!tc->keep_checksum)
			forge_checksum(buf2);
		memcpy(&d, &sentinel, sizeof(d));
		err[0] = '\0';
		rc = td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err));
		print_message("%-36s -> %d %s\n", tc->what, rc, err);
		if (rc != tc->want || !strstr(err, tc->msg))
			fail_msg("%s: got %d '%s', want %d '...%s...'", tc->what, rc, err, tc->want,
				 tc->msg);
		assert_memory_equal(&d, &sentinel, sizeof(d)); /* out untouched */
	}
	td_volkey_free(&vk);
}

/* Any single-byte change without a forged checksum is caught; random
 * changes with a forged checksum are either refused or decode to
 * something that re-encodes to exactly the same bytes.  Never a crash
 * (run this under ASan). */
static void test_fuzz_decode(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk = NULL;
	char err[200];
	unsigned accepted = 0;

	make_header(&h, &vk, "hmac-sha256");
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	for (unsigned off = 0; off < TD_HDR_COPY_SIZE; off++) {
		memcpy(buf2, buf, sizeof(buf));
		buf2[off] ^= 0x01;
		assert_true(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)) < 0);
	}
	srand(12345);
	for (int iter = 0; iter < 20000; iter++) {
		int nmut = 1 + rand() % 4;

		memcpy(buf2, buf, sizeof(buf));
		for (int i = 0; i < nmut; i++) {
			/* Mostly the interesting first 5 KiB. */
			unsigned off = (unsigned)rand() % (rand() % 8 ? 5120 : TD_HDR_COPY_SIZE);

			buf2[off] = (uint8_t)(rand() % 3 ? rand() : 0);
		}
		forge_checksum(buf2);
		if (td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)) == 0) {
			uint8_t re[TD_HDR_COPY_SIZE];

			accepted++;
			assert_int_equal(td_hdr_encode(&d, re), 0);
			assert_memory_equal(re, buf2, sizeof(re));
		} else {
			assert_true(strlen(err) > 0);
		}
	}
	print_message("%u of 20000 random mutations decoded (and re-encoded identically)\n",
		      accepted);
	td_volkey_free(&vk);
}

/* ---- choosing a copy ---- */

static void test_pick(void **state)
{
	struct td_crypt_hdr h, p;
	struct td_volkey *vk = NULL;
	uint8_t zero[TD_HDR_COPY_SIZE] = {0};
	char err[400];
	int which = -1, other = -1;

	make_header(&h, &vk, "none");
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	memcpy(buf2, buf, sizeof(buf));

	/* Both good and identical: A. */
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 0);
	assert_int_equal(other, TD_HDR_OTHER_OK);
	assert_memory_equal(p.uuid, h.uuid, 16);

	/* A corrupt: B, and the reason for A is reported. */
	buf[100] ^= 0xff;
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 1);
	assert_int_equal(other, TD_HDR_OTHER_CORRUPT);
	assert_non_null(strstr(err, "primary header copy unusable"));
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(p.seqno, h.seqno);

	/* A unreadable (NULL): B. */
	assert_int_equal(td_hdr_pick(NULL, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 1);
	assert_int_equal(other, TD_HDR_OTHER_CORRUPT);

	/* B corrupt too: refused, both reasons given. */
	buf2[SLOT(0) + 100] ^= 0x01;
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "both header copies are unusable"));
	assert_non_null(strstr(err, "primary: checksum mismatch"));
	assert_non_null(strstr(err, "secondary: checksum mismatch"));

	/* No header at all. */
	assert_int_equal(
	    td_hdr_pick(zero, zero, sizeof(zero), &p, &which, &other, err, sizeof(err)), -ENOMSG);
	assert_non_null(strstr(err, "no tdcrypt header"));

	/* B corrupt only: A. */
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 0);
	assert_int_equal(other, TD_HDR_OTHER_CORRUPT);
	assert_non_null(strstr(err, "secondary header copy unusable"));

	/* The higher sequence number wins, either way round. */
	h.seqno = 7;
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf2), 0);
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 1);
	assert_int_equal(p.seqno, 7);
	assert_int_equal(other, TD_HDR_OTHER_STALE);
	assert_non_null(strstr(err, "primary header copy is stale"));
	assert_int_equal(td_hdr_pick(buf2, buf, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 0);
	assert_int_equal(p.seqno, 7);

	/* Same sequence, different contents: A, and B flagged for rewrite. */
	h.seqno = 1;
	h.slots[0].tag[0] ^= 1;
	assert_int_equal(td_hdr_encode(&h, buf2), 0);
	assert_int_equal(td_hdr_pick(buf, buf2, sizeof(buf), &p, &which, &other, err, sizeof(err)),
			 0);
	assert_int_equal(which, 0);
	assert_int_equal(other, TD_HDR_OTHER_STALE);
	td_volkey_free(&vk);
}

/* ---- the header MAC ---- */

static void test_mac_detects_forgery(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk = NULL, *other = NULL, *got = NULL;
	char err[200];

	make_header(&h, &vk, "none");
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_verify_mac(&d, vk), 0);
	other = td_volkey_new_random();
	assert_int_equal(td_hdr_verify_mac(&d, other), -EBADMSG);

	/* Turn integrity on... */
	memcpy(buf2, buf, sizeof(buf));
	memset(buf2 + 112, 0, 32);
	memcpy(buf2 + 112, "hmac-sha256", 11);
	put32(buf2 + 144, 24);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_verify_mac(&d, vk), -EBADMSG);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EBADMSG);
	assert_null(got);

	/* ... or off (on a header that had it), move the data, bump the
	 * sequence number, or change the compatible flags: each one is
	 * caught once the key is known. */
	{
		struct td_crypt_hdr hi;
		struct td_volkey *vki = NULL;

		make_header(&hi, &vki, "hmac-sha256");
		assert_int_equal(td_hdr_encode(&hi, buf2), 0);
		memset(buf2 + 112, 0, 32);
		memcpy(buf2 + 112, "none", 4);
		put32(buf2 + 144, 0);
		forge_checksum(buf2);
		assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
		assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL),
				 -EBADMSG);
		td_volkey_free(&vki);
	}
	memcpy(buf2, buf, sizeof(buf));
	put64(buf2 + 96, 2 * 1048576);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EBADMSG);

	memcpy(buf2, buf, sizeof(buf));
	put64(buf2 + 16, 1000);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_verify_mac(&d, vk), -EBADMSG);

	memcpy(buf2, buf, sizeof(buf));
	put64(buf2 + 40, 1ULL << 33);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_verify_mac(&d, vk), -EBADMSG);

	/* The untouched header still unlocks. */
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), 0);
	assert_int_equal(td_volkey_equal(got, vk), 1);
	td_volkey_free(&got);
	td_volkey_free(&other);
	td_volkey_free(&vk);
}

/* ---- keyslots ---- */

static void test_keyslot_unlock(void **state)
{
	struct td_crypt_hdr h;
	struct td_volkey *vk = NULL, *got = NULL;
	struct td_kdf_params kp2 = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	int used = -1;

	make_header(&h, &vk, "none");
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1), &got, &used), 0);
	assert_non_null(got);
	assert_int_equal(used, 0);
	assert_int_equal(td_volkey_equal(got, vk), 1);
	td_volkey_free(&got);

	/* Wrong passphrase (also: a prefix, and empty). */
	got = (struct td_volkey *)&h; /* must be reset to NULL */
	assert_int_equal(td_keyslot_unlock(&h, -1, "wrong", 5, &got, &used), -EPERM);
	assert_null(got);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1) - 1, &got, &used), -EPERM);
	assert_int_equal(td_keyslot_unlock(&h, -1, "", 0, &got, &used), -EPERM);

	/* A second slot with another KDF and passphrase; either opens. */
	assert_int_equal(td_keyslot_add(&h, -1, vk, PASS2, strlen(PASS2), &kp2), 1);
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS2, strlen(PASS2), &got, &used), 0);
	assert_int_equal(used, 1);
	assert_int_equal(td_volkey_equal(got, vk), 1);
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock(&h, 0, PASS1, strlen(PASS1), &got, &used), 0);
	assert_int_equal(used, 0);
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock(&h, 1, PASS1, strlen(PASS1), &got, &used), -EPERM);
	assert_int_equal(td_keyslot_unlock(&h, 5, PASS1, strlen(PASS1), &got, &used), -ENOENT);
	assert_int_equal(td_keyslot_unlock(&h, 16, PASS1, strlen(PASS1), &got, &used), -EINVAL);

	/* Changing the slots without re-sealing: the MAC says so. */
	assert_int_equal(td_keyslot_remove(&h, 1), 0);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1), &got, &used), -EBADMSG);
	assert_null(got);
	td_volkey_free(&vk);
}

static void test_keyslot_add_remove(void **state)
{
	struct td_crypt_hdr h, before;
	struct td_volkey *vk = NULL, *stranger = NULL, *got = NULL;
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_ARGON2ID);
	struct td_kdf_params kp3 = td_kdf_params_minimal(TD_KDF_SCRYPT);
	struct td_kdf_params bad = kp;
	int used = -1;

	make_header(&h, &vk, "none");
	assert_int_equal(td_keyslot_add(&h, 3, vk, PASS2, strlen(PASS2), &kp3), 3);
	assert_int_equal(td_keyslot_count_active(&h), 2);

	/* Refusals leave the header as it was. */
	memcpy(&before, &h, sizeof(h));
	assert_int_equal(td_keyslot_add(&h, 3, vk, PASS2, strlen(PASS2), &kp), -EEXIST);
	assert_int_equal(td_keyslot_add(&h, 16, vk, PASS2, strlen(PASS2), &kp), -EINVAL);
	assert_int_equal(td_keyslot_add(&h, -2, vk, PASS2, strlen(PASS2), &kp), -EINVAL);
	assert_int_equal(td_keyslot_add(&h, -1, vk, PASS2, 0, &kp), -EINVAL);
	bad.m_cost_kib = 4;
	assert_int_equal(td_keyslot_add(&h, -1, vk, PASS2, strlen(PASS2), &bad), -EINVAL);
	stranger = td_volkey_new_random();
	assert_int_equal(td_keyslot_add(&h, -1, stranger, PASS2, strlen(PASS2), &kp), -EINVAL);
	assert_memory_equal(&before, &h, sizeof(h));

	/* Remove the first; its passphrase stops working, the other does not. */
	assert_int_equal(td_keyslot_remove(&h, 0), 0);
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1), &got, &used), -EPERM);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS2, strlen(PASS2), &got, &used), 0);
	assert_int_equal(used, 3);
	td_volkey_free(&got);

	/* The last slot cannot go; bad indices are refused. */
	assert_int_equal(td_keyslot_remove(&h, 3), -EBUSY);
	assert_int_equal(td_keyslot_remove(&h, 0), -ENOENT);
	assert_int_equal(td_keyslot_remove(&h, -1), -EINVAL);
	assert_int_equal(td_keyslot_remove(&h, 16), -EINVAL);
	assert_int_equal(td_keyslot_count_active(&h), 1);

	/* The freed slot is reused first. */
	assert_int_equal(td_keyslot_add(&h, -1, vk, PASS1, strlen(PASS1), &kp), 0);
	td_volkey_free(&stranger);
	td_volkey_free(&vk);
}

static void test_keyslots_full(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk = NULL, *got = NULL;
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_ARGON2ID);
	char pass[32], err[200];
	int used = -1;

	make_header(&h, &vk, "none");
	for (int i = 1; i < TD_HDR_KEYSLOTS; i++) {
		snprintf(pass, sizeof(pass), "passphrase number %d", i);
		assert_int_equal(td_keyslot_add(&h, -1, vk, pass, strlen(pass), &kp), i);
	}
	assert_int_equal(td_keyslot_count_active(&h), 16);
	assert_int_equal(td_keyslot_add(&h, -1, vk, "one more", 8, &kp), -ENOSPC);

	/* A full header encodes, decodes and opens with its last slot. */
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	snprintf(pass, sizeof(pass), "passphrase number %d", 15);
	assert_int_equal(td_keyslot_unlock(&d, -1, pass, strlen(pass), &got, &used), 0);
	assert_int_equal(used, 15);
	assert_int_equal(td_volkey_equal(got, vk), 1);
	td_volkey_free(&got);
	td_volkey_free(&vk);
}

/* What the AAD binds: a slot's KDF parameters, its index, the image. */
static void test_keyslot_binding(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk = NULL, *got = NULL;
	char err[200];

	make_header(&h, &vk, "none");
	assert_int_equal(td_hdr_encode(&h, buf), 0);

	/* Different (still valid) KDF parameters: the slot no longer opens,
	 * so nobody can weaken a slot's KDF behind the owner's back. */
	memcpy(buf2, buf, sizeof(buf));
	put64(buf2 + SLOT(0) + 8, 2);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EPERM);

	/* Same slot moved to another index. */
	memcpy(buf2, buf, sizeof(buf));
	memcpy(buf2 + SLOT(4), buf2 + SLOT(0), 256);
	memset(buf2 + SLOT(0), 0, 256);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EPERM);

	/* Same slot under another image UUID. */
	memcpy(buf2, buf, sizeof(buf));
	buf2[24] ^= 1;
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EPERM);

	/* A wrong volume key digest: the slot opens but the key is refused. */
	memcpy(buf2, buf, sizeof(buf));
	buf2[160] ^= 1;
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, NULL), -EPERM);
	assert_int_equal(td_hdr_check_volkey(&d, vk), -EPERM);
	assert_null(got);
	td_volkey_free(&vk);
}

/* Keyslot tokens (docs/FORMAT.md "Keyslot tokens"): the 640 bytes at
 * 5120 + 640 * i, opened by a KEK, bound into the AAD, and every
 * malformed token refused by the decoder. */
#define TOKEN(i) (5120u + 640u * (i))

static void test_keyslot_tokens(void **state)
{
	struct td_crypt_hdr h, d, before;
	struct td_volkey *vk = NULL, *got = NULL;
	uint8_t kek[32], kek2[32], tok[40];
	char err[200];
	int used = -1;

	for (unsigned i = 0; i < sizeof(kek); i++) {
		kek[i] = (uint8_t)(i * 7 + 1);
		kek2[i] = (uint8_t)(i * 7 + 2);
	}
	for (unsigned i = 0; i < sizeof(tok); i++)
		tok[i] = (uint8_t)(0xa0 + i);
	/* never the first slot: a person must always be able to recover the key */
	assert_int_equal(td_hdr_init_new(&h, 1ULL << 30, "none"), 0);
	vk = td_volkey_new_random();
	assert_non_null(vk);
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_TPM2, tok, sizeof(tok), kek, 32),
			 -EINVAL);
	td_volkey_free(&vk);

	make_header(&h, &vk, "none");
	memcpy(&before, &h, sizeof(h));
	/* refusals: bad kind, empty or oversized token, short KEK */
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_ARGON2ID, tok, 8, kek, 32),
			 -EINVAL);
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_TPM2, tok, 0, kek, 32), -EINVAL);
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_TPM2, tok, 633, kek, 32), -EINVAL);
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_TPM2, tok, 8, kek, 16), -EINVAL);
	assert_memory_equal(&before, &h, sizeof(h));
	/* a passphrase cannot be enrolled as a token kind */
	{
		struct td_kdf_params tk = {.id = TD_KDF_TANG};

		assert_int_equal(td_keyslot_add(&h, -1, vk, PASS2, strlen(PASS2), &tk), -EINVAL);
	}
	assert_int_equal(td_keyslot_add_token(&h, 2, vk, TD_KDF_TPM2, tok, sizeof(tok), kek, 32),
			 2);
	assert_int_equal(td_keyslot_add_token(&h, -1, vk, TD_KDF_TANG, tok, 5, kek2, 32), 1);
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf), 0);

	/* the documented bytes */
	assert_int_equal(get32(buf + SLOT(2) + 4), 4);
	assert_int_equal(get64(buf + SLOT(2) + 8), 0);
	assert_int_equal(get32(buf + TOKEN(2)), 4);
	assert_int_equal(get32(buf + TOKEN(2) + 4), sizeof(tok));
	assert_memory_equal(buf + TOKEN(2) + 8, tok, sizeof(tok));
	assert_int_equal(get32(buf + TOKEN(1)), 5);
	for (unsigned o = TOKEN(0); o < TOKEN(1); o++)
		assert_int_equal(buf[o], 0); /* passphrase slot 0: no token */
	for (unsigned o = TOKEN(16); o < MAC_OFF; o++)
		assert_int_equal(buf[o], 0);

	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	assert_int_equal(d.slots[2].token_len, sizeof(tok));
	/* the KEK opens its slot, and only its slot */
	assert_int_equal(td_keyslot_unlock_token(&d, 2, kek, 32, &got), 0);
	assert_int_equal(td_volkey_equal(got, vk), 1);
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock_token(&d, 1, kek2, 32, &got), 0);
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock_token(&d, 2, kek2, 32, &got), -EPERM);
	assert_null(got);
	assert_int_equal(td_keyslot_unlock_token(&d, 0, kek, 32, &got), -EINVAL);
	assert_int_equal(td_keyslot_unlock_token(&d, 3, kek, 32, &got), -ENOENT);
	/* a passphrase never tries a token slot */
	assert_int_equal(td_keyslot_unlock(&d, 2, PASS1, strlen(PASS1), &got, &used), -ENOTSUP);
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS1, strlen(PASS1), &got, &used), 0);
	assert_int_equal(used, 0);
	td_volkey_free(&got);

	/* an edited token (same length, one byte changed; checksum forged)
	 * decodes, but its slot no longer opens: the token is in the AAD */
	memcpy(buf2, buf, sizeof(buf));
	buf2[TOKEN(2) + 8 + 3] ^= 1;
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock_token(&d, 2, kek, 32, &got), -EPERM);
	/* a slot and its token moved together to another index */
	memcpy(buf2, buf, sizeof(buf));
	memcpy(buf2 + SLOT(7), buf2 + SLOT(2), 256);
	memcpy(buf2 + TOKEN(7), buf2 + TOKEN(2), 640);
	memset(buf2 + SLOT(2), 0, 256);
	memset(buf2 + TOKEN(2), 0, 640);
	forge_checksum(buf2);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)), 0);
	assert_int_equal(td_keyslot_unlock_token(&d, 7, kek, 32, &got), -EPERM);

	/* malformed tokens are refused by the decoder */
	{
		static const struct {
			unsigned off;
			uint32_t val;
			int is32;
			const char *why;
		} bad[] = {
		    {TOKEN(2), 5, 1, "differs from the KDF id"},
		    {TOKEN(2) + 4, 0, 1, "out of range"},
		    {TOKEN(2) + 4, 633, 1, "out of range"},
		    {TOKEN(2) + 8 + sizeof(tok), 1, 0, "after the token payload"},
		    {TOKEN(0) + 100, 1, 0, "has no token"},
		    {TOKEN(9), 4, 1, "has no token"},
		    {SLOT(2) + 8, 1, 0, "has KDF parameters"},
		    {TOKEN(16) + 4, 1, 0, "reserved bytes"},
		};
		for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			memcpy(buf2, buf, sizeof(buf));
			if (bad[k].is32)
				put32(buf2 + bad[k].off, bad[k].val);
			else
				buf2[bad[k].off] = (uint8_t)bad[k].val;
			forge_checksum(buf2);
			err[0] = 0;
			assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &d, err, sizeof(err)),
					 -EBADMSG);
			if (!strstr(err, bad[k].why))
				fail_msg("case %u: '%s' lacks '%s'", k, err, bad[k].why);
		}
	}
	td_volkey_free(&vk);
}

static void test_kdf_params(void **state)
{
	static const enum td_kdf_id ids[] = {TD_KDF_ARGON2ID, TD_KDF_PBKDF2_SHA256, TD_KDF_SCRYPT};
	static const char *const names[] = {"argon2id", "pbkdf2-sha256", "scrypt"};
	struct td_kdf_params p;
	uint8_t salt[32] = {1}, a[32], b[32];
	char err[160];

	for (size_t i = 0; i < 3; i++) {
		p = td_kdf_params_default(ids[i]);
		assert_int_equal(p.id, ids[i]);
		assert_int_equal(td_kdf_params_check(&p, err, sizeof(err)), 0);
		p = td_kdf_params_minimal(ids[i]);
		assert_int_equal(td_kdf_params_check(&p, err, sizeof(err)), 0);
		/* Deterministic, passphrase-dependent. */
		assert_int_equal(td_kdf_derive(&p, "pw", 2, salt, a, sizeof(a)), 0);
		assert_int_equal(td_kdf_derive(&p, "pw", 2, salt, b, sizeof(b)), 0);
		assert_memory_equal(a, b, sizeof(a));
		assert_int_equal(td_kdf_derive(&p, "pW", 2, salt, b, sizeof(b)), 0);
		assert_memory_not_equal(a, b, sizeof(a));
		assert_string_equal(td_kdf_name(ids[i]), names[i]);
		assert_int_equal(td_kdf_from_name(td_kdf_name(ids[i])), ids[i]);
	}
	p = td_kdf_params_default(TD_KDF_ARGON2ID);
	assert_int_equal(p.t_cost, 3);
	assert_int_equal(p.m_cost_kib, 262144);
	assert_int_equal(td_kdf_params_default(TD_KDF_PBKDF2_SHA256).iterations, 600000);
	assert_int_equal(td_kdf_params_default(TD_KDF_SCRYPT).n, 1u << 17);
	assert_int_equal(td_kdf_params_default(TD_KDF_NONE).id, TD_KDF_NONE);
	assert_int_equal(td_kdf_from_name("pbkdf2"), TD_KDF_PBKDF2_SHA256);
	assert_int_equal(td_kdf_from_name("bcrypt"), TD_KDF_NONE);
	assert_string_equal(td_kdf_name(TD_KDF_NONE), "unknown");
	assert_string_equal(td_keyslot_strerror(-ENOSPC), "all 16 keyslots are in use");
	assert_non_null(strstr(td_keyslot_strerror(-EPERM), "wrong passphrase"));
	assert_non_null(strstr(td_keyslot_strerror(-EBUSY), "last keyslot"));
	assert_string_equal(td_keyslot_strerror(-EIO), strerror(EIO));

	/* Hostile parameters never reach a KDF. */
	p = td_kdf_params_minimal(TD_KDF_SCRYPT);
	p.n = 1ULL << 30;
	p.r = 8;
	assert_int_equal(td_kdf_derive(&p, "pw", 2, salt, a, sizeof(a)), -EINVAL);
	p.id = 42;
	assert_int_equal(td_kdf_params_check(&p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown KDF id 42"));
}

/* The KDF budget: costs, refusals before any KDF runs, the unlock plan. */
static void test_kdf_budget(void **state)
{
	static const enum td_kdf_id ids[] = {TD_KDF_ARGON2ID, TD_KDF_PBKDF2_SHA256, TD_KDF_SCRYPT};
	struct td_kdf_budget def = td_kdf_budget_default(), small;
	struct td_kdf_params p, hostile_mem, hostile_time;
	struct td_unlock_plan plan;
	struct td_crypt_hdr h;
	struct td_volkey *vk = NULL, *got = NULL;
	uint8_t salt[32] = {1}, k[32];
	char why[256];
	int used = -1;

	/* cost = KiB through the KDF's core; memory in bytes */
	p = td_kdf_params_default(TD_KDF_ARGON2ID);
	assert_int_equal(td_kdf_cost(&p), 3 * 262144);
	assert_int_equal(td_kdf_memory(&p), 256u << 20);
	p = td_kdf_params_default(TD_KDF_PBKDF2_SHA256);
	assert_int_equal(td_kdf_cost(&p), 75000);
	assert_int_equal(td_kdf_memory(&p), 0);
	p = td_kdf_params_default(TD_KDF_SCRYPT);
	assert_int_equal(td_kdf_cost(&p), 262144);
	assert_int_equal(td_kdf_memory(&p), 128ull * 8 * ((1u << 17) + 3));
	/* every default slot fits, sixteen of them within the total */
	assert_true(def.max_memory <= TD_KDF_BUDGET_MEMORY && def.max_memory >= (256u << 20));
	for (size_t i = 0; i < 3; i++) {
		p = td_kdf_params_default(ids[i]);
		assert_int_equal(td_kdf_budget_check(&def, &p, why, sizeof(why)), TD_KDF_FITS);
		assert_true(16 * td_kdf_cost(&p) <= def.max_total_cost);
	}
	/* the largest header values are refused, naming what and the budget */
	memset(&hostile_mem, 0, sizeof(hostile_mem));
	hostile_mem.id = TD_KDF_ARGON2ID;
	hostile_mem.t_cost = TD_KDF_ARGON2_T_MAX;
	hostile_mem.m_cost_kib = TD_KDF_ARGON2_M_MAX;
	hostile_mem.parallelism = TD_KDF_ARGON2_P_MAX;
	assert_int_equal(td_kdf_params_check(&hostile_mem, why, sizeof(why)), 0);
	assert_int_equal(td_kdf_budget_check(&def, &hostile_mem, why, sizeof(why)),
			 TD_KDF_OVER_MEMORY);
	assert_non_null(strstr(why, "argon2id t=64 m=4194304 KiB p=16 needs 4096 MiB of memory"));
	hostile_time = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	hostile_time.iterations = TD_KDF_PBKDF2_ITER_MAX;
	assert_int_equal(td_kdf_budget_check(&def, &hostile_time, why, sizeof(why)),
			 TD_KDF_OVER_COST);
	assert_non_null(strstr(why, "costs 256.00 reference seconds of work; the budget is 16.00"));
	/* ... and never run: this would take minutes */
	assert_int_equal(td_kdf_derive(&hostile_time, "pw", 2, salt, k, sizeof(k)), -E2BIG);

	/* a header with a cheap argon2id slot 0, a cheaper-to-run pbkdf2 slot
	 * 1 and two hostile slots: the plan tries 0 and 1, cheapest first */
	make_header(&h, &vk, "none");
	p = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	assert_int_equal(td_keyslot_add(&h, 1, vk, PASS2, strlen(PASS2), &p), 1);
	h.slots[2] = h.slots[1];
	h.slots[2].kdf = hostile_mem;
	h.slots[3] = h.slots[1];
	h.slots[3].kdf = hostile_time;
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	td_keyslot_plan(&h, -1, &def, &plan);
	assert_int_equal(plan.ntry, 2);
	assert_int_equal(plan.order[0], 0); /* argon2id 8 KiB x 1: 8 units */
	assert_int_equal(plan.order[1], 1); /* pbkdf2 1000: 125 units */
	assert_int_equal(plan.nskip, 2);
	assert_int_equal(plan.skipped[0], 2);
	assert_int_equal(plan.over[0], TD_KDF_OVER_MEMORY);
	assert_int_equal(plan.skipped[1], 3);
	assert_int_equal(plan.over[1], TD_KDF_OVER_COST);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS2, strlen(PASS2), &got, &used), 0);
	assert_int_equal(used, 1);
	td_volkey_free(&got);
	/* the wrong passphrase: some slots were not tried, so not "wrong" */
	assert_int_equal(td_keyslot_unlock(&h, -1, "wrong", 5, &got, &used), -E2BIG);
	assert_int_equal(td_keyslot_unlock(&h, 3, PASS1, strlen(PASS1), &got, &used), -E2BIG);
	/* a total budget that admits slot 0 only */
	small = def;
	small.max_total_cost = 100;
	td_keyslot_plan(&h, -1, &small, &plan);
	assert_int_equal(plan.ntry, 1);
	assert_int_equal(plan.nskip, 3);
	assert_int_equal(plan.skipped[2], 1);
	assert_int_equal(plan.over[2], TD_KDF_OVER_TOTAL_COST);
	/* the process-wide budget is what unlock obeys */
	small = def;
	small.max_memory = 4096; /* slot 0's 8 KiB no longer fits */
	td_kdf_budget_set(&small);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1), &got, &used), -E2BIG);
	assert_null(got);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS2, strlen(PASS2), &got, &used), 0);
	td_volkey_free(&got);
	p = td_kdf_params_minimal(TD_KDF_ARGON2ID);
	assert_int_equal(td_keyslot_add(&h, 5, vk, PASS2, strlen(PASS2), &p), -E2BIG);
	td_kdf_budget_set(NULL);
	assert_int_equal(td_keyslot_unlock(&h, -1, PASS1, strlen(PASS1), &got, &used), 0);
	assert_int_equal(used, 0);
	td_volkey_free(&got);
	td_volkey_free(&vk);
}

/* The reencryption record (docs/FORMAT.md, "Volume-key rotation"): set,
 * encoded at copy offset 640 with flag bit 0, decoded back; every field out
 * of range, a flag without a record and a record without the flag are
 * refused. */
static void test_reenc_record(void **state)
{
	struct td_crypt_hdr h, d;
	struct td_volkey *vk;
	struct td_reenc_rec r = {0}, got;
	char err[256];
	uint64_t blocks;

	(void)state;
	make_header(&h, &vk, "none");
	blocks = h.data_size / 4096;
	assert_int_equal(td_hdr_reenc_get(&h, &got, err, sizeof(err)), 0);
	r.new_slot = 0;
	r.boundary = 256;
	r.window = 128;
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	memset(r.new_digest, 0xab, sizeof(r.new_digest));
	memset(r.staging_digest, 0xcd, sizeof(r.staging_digest));
	td_hdr_reenc_set(&h, &r);
	assert_true(h.flags & TD_HDR_FLAG_REENCRYPT);
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	assert_memory_equal(buf + 640, "TDREENC1", 8);
	assert_int_equal(get64(buf + 40) & 1, 1);
	assert_int_equal(get64(buf + 640 + 16), 256);
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), 1);
	assert_int_equal(got.boundary, 256);
	assert_int_equal(got.window, 128);
	assert_memory_equal(got.staging_digest, r.staging_digest, 32);

	d = h;
	r.boundary = blocks + 1; /* boundary past the end */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.boundary = blocks - 64; /* window past the end */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.boundary = 0;
	r.window = TD_HDR_REENC_WINDOW_MAX + 1;
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.window = 0; /* no window, yet a staging digest */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	memset(r.staging_digest, 0, 32);
	r.new_slot = 3; /* an inactive slot */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.new_slot = 16;
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.new_slot = 0;
	r.staging_off = 65536; /* inside the header copies */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.staging_off = d.data_offset - 4096; /* runs into the data */
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	td_hdr_reenc_set(&d, &r);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), 1);
	d.freshness[128] ^= 1; /* magic */
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	d.freshness[128] ^= 1;
	d.freshness[128 + 12] = 1; /* reserved */
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	d.freshness[128 + 12] = 0;
	d.flags &= ~TD_HDR_FLAG_REENCRYPT; /* a record without the flag */
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "without the flag"));
	td_hdr_reenc_set(&d, NULL);
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), 0);
	assert_false(d.flags & TD_HDR_FLAG_REENCRYPT);
	d.flags |= TD_HDR_FLAG_REENCRYPT; /* a flag without a record */
	assert_int_equal(td_hdr_reenc_get(&d, &got, err, sizeof(err)), -EBADMSG);
	td_volkey_free(&vk);
}

/* Pending wraps (docs/FORMAT.md, "Pending wraps"): each kept slot wraps
 * the next key under its own KEK (passphrase or token) in bytes 160..255,
 * only with a rotation's record; a wrong KEK adds none; the encoding
 * round-trips; each opens the next key and only under the record's digest;
 * the switch copies them over the slots' wraps (every kept slot then
 * opens the new key, a slot without one is dropped, a record's new slot
 * without one is kept as it is). */
static void test_pending_wraps(void **state)
{
	struct td_crypt_hdr h, d, sw;
	struct td_volkey *vk, *nk, *got = NULL;
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	struct td_reenc_rec r = {0};
	uint8_t kek0[32], kek1[32], kek2[32], tok[40], dig[32];
	char err[256];
	int used = -1;

	(void)state;
	make_header(&h, &vk, "none");
	memset(tok, 0x42, sizeof(tok));
	assert_int_equal(td_random_bytes(kek1, sizeof(kek1)), 0);
	assert_int_equal(td_keyslot_add_token(&h, 1, vk, TD_KDF_TPM2, tok, sizeof(tok), kek1, 32),
			 1);
	assert_int_equal(td_keyslot_add(&h, 2, vk, PASS2, strlen(PASS2), &kp), 2);
	assert_int_equal(td_keyslot_add(&h, 3, vk, "dropped", 7, &kp), 3);
	nk = td_volkey_new_random();
	assert_non_null(nk);
	assert_int_equal(td_keyslot_kek(&h, 0, PASS1, strlen(PASS1), kek0, 32), 0);
	assert_int_equal(td_keyslot_kek(&h, 2, PASS2, strlen(PASS2), kek2, 32), 0);
	assert_int_equal(td_keyslot_kek(&h, 1, PASS2, strlen(PASS2), kek2 + 0, 32), -EINVAL);
	assert_int_equal(td_keyslot_kek(&h, 2, PASS2, strlen(PASS2), kek2, 32), 0);
	/* the wrong KEK (slot 0's for slot 2) adds nothing */
	assert_int_equal(td_keyslot_wrap_pending(&h, 2, kek0, 32, nk), -EPERM);
	assert_int_equal(h.slots[2].pending, 0);
	assert_int_equal(td_keyslot_wrap_pending(&h, 0, kek0, 32, nk), 0);
	assert_int_equal(td_keyslot_wrap_pending(&h, 1, kek1, 32, nk), 0);
	assert_int_equal(td_keyslot_wrap_pending(&h, 2, kek2, 32, nk), 0);
	assert_int_equal(td_keyslot_wrap_pending(&h, 5, kek2, 32, nk), -ENOENT);
	assert_int_equal(td_hdr_pending_slots(&h), 3);
	assert_memory_not_equal(h.slots[0].pending_nonce, h.slots[0].nonce, 12);
	/* without the rotation's flag the header does not encode */
	assert_int_equal(td_hdr_encode(&h, buf), -EINVAL);
	assert_int_equal(td_hdr_vk_digest(nk, r.new_digest), 0);
	r.new_slot = 0;
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	td_hdr_reenc_set(&h, &r);
	assert_int_equal(td_hdr_seal(&h, vk), 0);
	assert_int_equal(td_hdr_encode(&h, buf), 0);
	assert_int_equal(get32(buf + SLOT(0) + 172), 1);
	assert_memory_equal(buf + SLOT(0) + 160, h.slots[0].pending_nonce, 12);
	assert_memory_equal(buf + SLOT(1) + 176, h.slots[1].pending_wrapped, 64);
	assert_memory_equal(buf + SLOT(2) + 240, h.slots[2].pending_tag, 16);
	for (int i = 160; i < 256; i++)
		assert_int_equal(buf[SLOT(3) + i], 0);
	assert_int_equal(td_hdr_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_verify_mac(&d, vk), 0);
	assert_int_equal(d.slots[1].pending, 1);
	assert_memory_equal(d.slots[1].pending_wrapped, h.slots[1].pending_wrapped, 64);
	/* the header still opens the old key with every slot */
	assert_int_equal(td_keyslot_unlock(&d, -1, PASS2, strlen(PASS2), &got, &used), 0);
	assert_int_equal(used, 2);
	assert_true(td_volkey_equal(got, vk));
	td_volkey_free(&got);
	/* each pending wrap opens the next key, under the record's digest only */
	assert_int_equal(td_keyslot_open_pending(&d, 0, kek0, 32, r.new_digest, &got), 0);
	assert_true(td_volkey_equal(got, nk));
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_open_pending(&d, 1, kek1, 32, r.new_digest, &got), 0);
	assert_true(td_volkey_equal(got, nk));
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_open_pending(&d, 2, kek2, 32, d.vk_digest, &got), -EPERM);
	assert_int_equal(td_keyslot_open_pending(&d, 2, kek1, 32, r.new_digest, &got), -EPERM);
	assert_int_equal(td_keyslot_open_pending(&d, 3, kek2, 32, r.new_digest, &got), -EPERM);
	assert_null(got);
	/* a pending wrap moved to another slot fails its AAD */
	sw = d;
	memcpy(sw.slots[2].pending_nonce, d.slots[0].pending_nonce, 12);
	memcpy(sw.slots[2].pending_wrapped, d.slots[0].pending_wrapped, 64);
	memcpy(sw.slots[2].pending_tag, d.slots[0].pending_tag, 16);
	memcpy(sw.slots[2].salt, d.slots[0].salt, 32);
	assert_int_equal(td_keyslot_open_pending(&sw, 2, kek0, 32, r.new_digest, &got), -EPERM);

	/* the switch: slots 0, 1, 2 open the new key, slot 3 is gone */
	sw = d;
	memcpy(sw.vk_digest, r.new_digest, 32);
	td_hdr_reenc_switch_slots(&sw, r.new_slot);
	td_hdr_reenc_set(&sw, NULL);
	sw.seqno++;
	assert_int_equal(td_hdr_seal(&sw, nk), 0);
	assert_int_equal(td_hdr_encode(&sw, buf2), 0);
	assert_int_equal(td_hdr_decode(buf2, sizeof(buf2), &sw, err, sizeof(err)), 0);
	assert_int_equal(td_hdr_pending_slots(&sw), 0);
	assert_int_equal(sw.slots[3].state, TD_KEYSLOT_INACTIVE);
	assert_int_equal(td_keyslot_count_active(&sw), 3);
	assert_int_equal(td_keyslot_unlock(&sw, 0, PASS1, strlen(PASS1), &got, NULL), 0);
	assert_true(td_volkey_equal(got, nk));
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock(&sw, 2, PASS2, strlen(PASS2), &got, NULL), 0);
	assert_true(td_volkey_equal(got, nk));
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock_token(&sw, 1, kek1, 32, &got), 0);
	assert_true(td_volkey_equal(got, nk));
	td_volkey_free(&got);
	assert_int_equal(td_keyslot_unlock(&sw, -1, "dropped", 7, &got, NULL), -EPERM);
	assert_int_equal(td_hdr_vk_digest(vk, dig), 0);
	assert_memory_not_equal(dig, sw.vk_digest, 32);

	/* a record from before pending wraps: its new slot keeps its wrap */
	sw = d;
	sw.slots[3].pending = 0;
	td_hdr_reenc_switch_slots(&sw, 3);
	assert_int_equal(sw.slots[3].state, TD_KEYSLOT_ACTIVE);
	assert_memory_equal(sw.slots[3].wrapped, d.slots[3].wrapped, 64);
	assert_memory_equal(sw.slots[0].wrapped, d.slots[0].pending_wrapped, 64);
	td_volkey_free(&nk);
	td_volkey_free(&vk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_new),
	    cmocka_unit_test(test_reenc_record),
	    cmocka_unit_test(test_pending_wraps),
	    cmocka_unit_test(test_encode_layout),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_corruptions_refused),
	    cmocka_unit_test(test_fuzz_decode),
	    cmocka_unit_test(test_pick),
	    cmocka_unit_test(test_mac_detects_forgery),
	    cmocka_unit_test(test_keyslot_unlock),
	    cmocka_unit_test(test_keyslot_add_remove),
	    cmocka_unit_test(test_keyslots_full),
	    cmocka_unit_test(test_keyslot_binding),
	    cmocka_unit_test(test_keyslot_tokens),
	    cmocka_unit_test(test_kdf_params),
	    cmocka_unit_test(test_kdf_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
