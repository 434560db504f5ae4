/* Writes the seed corpora of the fuzz targets into DIR/<target>/:
 *
 *	fuzz/run.sh --seeds          (builds this and runs it on fuzz/corpus)
 *
 * Every seed is a small valid (or deliberately borderline) input in the
 * framing its harness expects (see the comment at the top of each
 * fuzz/fuzz_*.c). Keyslot salts and nonces are random, so the binary
 * seeds differ from run to run; what they exercise does not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypt/backend/cipher.h"
#include "crypt/header.h"
#include "integrity/format.h"
#include "keymgr/keyslot.h"
#include "crypt/backend/volkey.h"
#include "tapdisk/nbd/nbd_proto.h"
#include "tapdisk/qcow2/qcow2_format.h"
#include "tapdisk/vmdk/vmdk_format.h"
#include <zlib.h>
#include "tapdisk/vhd/vhd_format.h"
#include "keymgr/tang.h"

#define FZ_PASSPHRASE "fuzz passphrase"		  /* fuzz_keyslot.c */
#define FZ_KEY "fuzz integrity mac key 32 bytes!" /* fuzz_integrity.c */
static const uint8_t fz_uuid[16] = {0xf0, 0x22, 0x1d, 0x3a, 0x55, 0x10, 0x4e, 0x7c,
				    0x9b, 0x01, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71};

static const char *root;

static void die(const char *what)
{
	fprintf(stderr, "gen_seeds: %s\n", what);
	exit(1);
}

static void put(const char *target, const char *name, const void *a, size_t alen, const void *b,
		size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/seed-%s", root, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
	    fclose(f) != 0)
		die(path);
}

static void put_str(const char *target, const char *name, const char *s)
{
	put(target, name, s, strlen(s), NULL, 0);
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	be16(p, (uint16_t)(v >> 16));
	be16(p + 2, (uint16_t)v);
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

/* ---- spec ---- */

static void gen_spec(void)
{
	static const char *s[] = {
	    "aio:/tmp/disk.img",
	    "tap:aio:/tmp/disk.img",
	    "qcow2:/var/lib/x.qcow2",
	    "qcow:/var/lib/x:with:colons.qcow2",
	    "crypt:aio:/dev/sdb",
	    "crypt:integrity:qcow2:/srv/img",
	    "fault,fail_at=3:aio:/tmp/x.img",
	    "fault,delay_ms=5,fail_at=2:crypt,key=foo:integrity:aio:/a b",
	    "fault:fault:fault:fault:fault:fault:fault:aio:/x",
	    "crypt,:aio:/x",
	    "nosuch:aio:/x",
	    "aio:",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		snprintf(name, sizeof(name), "%02zu", i);
		put_str("spec", name, s[i]);
	}
}

/* ---- crypt header / keyslot ---- */

static struct td_volkey *fixed_vk(void)
{
	uint8_t k[TD_VOLKEY_LEN];
	struct td_volkey *vk;

	for (int i = 0; i < TD_VOLKEY_LEN; i++)
		k[i] = (uint8_t)(0xa5 ^ i);
	vk = td_volkey_from_bytes(k, sizeof(k));
	if (!vk)
		die("volkey");
	return vk;
}

static void new_hdr(struct td_crypt_hdr *h, const char *integrity)
{
	if (td_hdr_init_new(h, 64ull << 20, integrity) < 0)
		die("td_hdr_init_new");
	memcpy(h->uuid, fz_uuid, sizeof(h->uuid));
}

static void add_slot(struct td_crypt_hdr *h, const struct td_volkey *vk, enum td_kdf_id kind)
{
	struct td_kdf_params kp = td_kdf_params_minimal(kind);

	if (td_keyslot_add(h, -1, vk, FZ_PASSPHRASE, strlen(FZ_PASSPHRASE), &kp) < 0)
		die("td_keyslot_add");
}

static void encode(struct td_crypt_hdr *h, const struct td_volkey *vk, uint8_t *buf)
{
	if (vk && td_hdr_seal(h, vk) < 0)
		die("td_hdr_seal");
	if (td_hdr_encode(h, buf) < 0)
		die("td_hdr_encode");
}

/* fuzz_crypt_header framing: mode, LE16 length of A, A, B */
static void put_pair(const char *name, int mode, const uint8_t *a, size_t alen, const uint8_t *b,
		     size_t blen)
{
	uint8_t *buf = malloc(3 + alen + blen);

	if (!buf)
		die("oom");
	buf[0] = (uint8_t)mode;
	buf[1] = (uint8_t)alen;
	buf[2] = (uint8_t)(alen >> 8);
	memcpy(buf + 3, a, alen);
	if (blen)
		memcpy(buf + 3 + alen, b, blen);
	put("crypt_header", name, buf, 3 + alen + blen, NULL, 0);
	free(buf);
}

static void gen_crypt(void)
{
	static uint8_t a[TD_HDR_COPY_SIZE], b[TD_HDR_COPY_SIZE];
	struct td_volkey *vk = fixed_vk();
	struct td_crypt_hdr h;
	uint8_t mode;
	int used_end = TD_HDR_KEYSLOTS_OFFSET;

	/* no keyslots, both copies identical */
	new_hdr(&h, TD_HDR_INTEGRITY_NONE);
	encode(&h, NULL, a);
	put_pair("bare-same", 0x00, a, sizeof(a), a, sizeof(a));
	/* the same, short: the harness pads with zeros and fixes the
	 * checksum, so only the interesting first KiB is kept */
	put_pair("bare-short-fixed", 0x05, a, used_end, NULL, 0);

	/* three keyslots (one per KDF), sealed; B one sequence older */
	new_hdr(&h, TD_HDR_INTEGRITY_HMAC_SHA256);
	add_slot(&h, vk, TD_KDF_ARGON2ID);
	add_slot(&h, vk, TD_KDF_PBKDF2_SHA256);
	add_slot(&h, vk, TD_KDF_SCRYPT);
	encode(&h, vk, b);
	h.seqno++;
	encode(&h, vk, a);
	put_pair("slots-stale-b", 0x00, a, sizeof(a), b, sizeof(b));
	used_end = TD_HDR_KEYSLOTS_OFFSET + 3 * TD_HDR_KEYSLOT_SIZE;
	put_pair("slots-short-fixed", 0x03, a, used_end, b, used_end);
	/* A corrupt (one bit), B good */
	a[100] ^= 1;
	put_pair("a-corrupt", 0x00, a, sizeof(a), b, sizeof(b));
	/* truncated length handed to the decoder */
	put_pair("truncated", 0x08, a, 4000, NULL, 0);
	/* a rotation under way (docs/FORMAT.md, "Pending wraps"): the record,
	 * pending wraps of the next key in slots 0 and 2, slot 1 dropped */
	{
		uint8_t k[TD_VOLKEY_LEN], kek[TD_AEAD_KEY_LEN];
		struct td_reenc_rec r = {0};
		struct td_volkey *nk;

		for (int i = 0; i < TD_VOLKEY_LEN; i++)
			k[i] = (uint8_t)(0x5a ^ i);
		nk = td_volkey_from_bytes(k, sizeof(k));
		if (!nk)
			die("volkey");
		new_hdr(&h, TD_HDR_INTEGRITY_NONE);
		add_slot(&h, vk, TD_KDF_PBKDF2_SHA256);
		add_slot(&h, vk, TD_KDF_SCRYPT);
		add_slot(&h, vk, TD_KDF_ARGON2ID);
		for (int i = 0; i < 3; i += 2)
			if (td_keyslot_kek(&h, i, FZ_PASSPHRASE, strlen(FZ_PASSPHRASE), kek,
					   sizeof(kek)) < 0 ||
			    td_keyslot_wrap_pending(&h, i, kek, sizeof(kek), nk) < 0)
				die("pending wrap");
		if (td_hdr_vk_digest(nk, r.new_digest) < 0)
			die("digest");
		r.boundary = 128;
		r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
		td_hdr_reenc_set(&h, &r);
		encode(&h, vk, a);
		put_pair("rotation-pending", 0x04, a, sizeof(a), NULL, 0);
		put_pair("rotation-pending-short-fixed", 0x05, a,
			 TD_HDR_KEYSLOTS_OFFSET + 3 * TD_HDR_KEYSLOT_SIZE, NULL, 0);
		td_volkey_free(&nk);
	}
	/* not a header at all */
	mode = 0x03;
	put_pair("zeros", mode, (const uint8_t *)"", 0, (const uint8_t *)"", 0);
	td_volkey_free(&vk);
}

static void put_keyslot(const char *name, int mode, const uint8_t *hdr)
{
	uint8_t m = (uint8_t)mode;

	put("keyslot", name, &m, 1, hdr, TD_HDR_COPY_SIZE);
}

static void gen_keyslot(void)
{
	static uint8_t buf[TD_HDR_COPY_SIZE];
	struct td_volkey *vk = fixed_vk();
	struct td_crypt_hdr h;
	const enum td_kdf_id kinds[] = {TD_KDF_ARGON2ID, TD_KDF_PBKDF2_SHA256, TD_KDF_SCRYPT};
	const char *names[] = {"argon2id", "pbkdf2", "scrypt"};

	for (int i = 0; i < 3; i++) {
		new_hdr(&h, TD_HDR_INTEGRITY_NONE);
		add_slot(&h, vk, kinds[i]);
		encode(&h, vk, buf);
		put_keyslot(names[i], 0x01, buf);
	}
	/* all three plus one with production costs (skipped by the harness) */
	new_hdr(&h, TD_HDR_INTEGRITY_HMAC_SHA256);
	for (int i = 0; i < 3; i++)
		add_slot(&h, vk, kinds[i]);
	encode(&h, vk, buf);
	put_keyslot("three", 0x07, buf);
	add_slot(&h, vk, TD_KDF_PBKDF2_SHA256);
	h.slots[3].kdf = td_kdf_params_default(TD_KDF_ARGON2ID);
	encode(&h, vk, buf);
	put_keyslot("expensive", 0x05, buf);
	/* right passphrase, header changed after sealing: MAC must fail */
	new_hdr(&h, TD_HDR_INTEGRITY_NONE);
	add_slot(&h, vk, TD_KDF_SCRYPT);
	encode(&h, vk, buf);
	h.data_size -= TD_HDR_SECTOR_SIZE;
	encode(&h, NULL, buf);
	put_keyslot("mac-mismatch", 0x01, buf);
	td_volkey_free(&vk);
}

/* ---- integrity ---- */

static void gen_integrity(void)
{
	static uint8_t blk[1 + 8 + TI_BLOCK];
	struct td_hmac *mac = td_hmac_new(FZ_KEY, 32);
	struct ti_params p;
	struct ti_super s = {.version = 2, .epoch = 3, .seq_base = 1000, .root = {1, 2, 3}};
	struct ti_rec recs[3];
	const uint64_t sizes[] = {64ull << 20, 1ull << 30, 5ull << 40};

	if (!mac)
		die("td_hmac_new");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char name[32];

		if (ti_layout(sizes[i], 1 << 20, i == 1 ? 16 : 0, &p) < 0)
			die("ti_layout");
		blk[0] = 0;
		le64(blk + 1, sizes[i]);
		ti_params_encode(&p, blk + 9);
		snprintf(name, sizeof(name), "params-%zu", i);
		put("integrity", name, blk, 9 + TI_PARAMS_LEN, NULL, 0);
	}
	blk[0] = 1;
	ti_super_encode(&s, fz_uuid, mac, blk + 1);
	put("integrity", "super", blk, 1 + TI_BLOCK, NULL, 0);
	blk[0] = 1 | 4;
	put("integrity", "super-fixmac", blk, 1 + 64, NULL, 0);

	memset(recs, 0, sizeof(recs));
	recs[0].block = 7;
	recs[0].seq = 1001;
	memset(recs[0].tag, 0x5a, TI_TAG_LEN);
	recs[1].block = 100;
	recs[1].seq = 1002 | TI_SEQ_ZERO_RANGE;
	recs[1].count = 16;
	recs[2].block = 8;
	recs[2].seq = 1003;
	blk[0] = 2;
	le64(blk + 1, 3);
	ti_jblock_encode(3, 0, recs, 3, fz_uuid, mac, blk + 9);
	put("integrity", "jblock", blk, 9 + TI_BLOCK, NULL, 0);
	blk[0] = 2 | 4;
	put("integrity", "jblock-fixmac", blk, 9 + TI_REC_OFF + 3 * TI_REC_LEN, NULL, 0);

	/* a flush point (below 1100, two exceptions below it, one addition)
	 * after one record */
	{
		static struct ti_fpoint fp = {
		    .below = 1100,
		    .n = 3,
		    .r = {{.start = 1001, .count = 1},
			  {.start = 1050, .count = 8},
			  {.start = 1200, .count = 4}},
		};

		blk[0] = 2;
		le64(blk + 1, 3);
		ti_jflush_encode(3, 5, recs, 1, &fp, fz_uuid, mac, blk + 9);
		put("integrity", "jflush", blk, 9 + TI_BLOCK, NULL, 0);
		blk[0] = 2 | 4;
		put("integrity", "jflush-fixmac", blk,
		    9 + TI_REC_OFF + TI_REC_LEN + 3 * TI_FP_RANGE_LEN, NULL, 0);
	}
	td_hmac_free(mac);
}

/* ---- nbd ---- */

static void gen_nbd(void)
{
	uint8_t b[256];
	size_t n;

	/* 0: client flags */
	b[0] = 0;
	be32(b + 1, 3);
	put("nbd_proto", "client-flags", b, 5, NULL, 0);
	/* 1: option header, NBD_OPT_GO */
	b[0] = 1;
	be64(b + 1, NBD_IHAVEOPT);
	be32(b + 9, 7);
	be32(b + 13, 14);
	put("nbd_proto", "opt-hdr", b, 17, NULL, 0);
	/* 2: INFO/GO payload: name "export", 3 info requests */
	b[0] = 2;
	be32(b + 1, 6);
	memcpy(b + 5, "export", 6);
	be16(b + 11, 3);
	be16(b + 13, 1);
	be16(b + 15, 2);
	be16(b + 17, 3);
	put("nbd_proto", "info-go", b, 19, NULL, 0);
	be32(b + 1, 0);
	be16(b + 5, 0);
	put("nbd_proto", "info-empty", b, 7, NULL, 0);
	/* 3: requests: READ, WRITE FUA, WRITE_ZEROES NO_HOLE, past the end */
	for (int i = 0; i < 4; i++) {
		static const uint16_t type[] = {0, 1, 6, 4};
		static const uint16_t flags[] = {0, 1, 3, 0};
		char name[32];

		n = 0;
		b[n++] = 3;
		be32(b + n, NBD_REQUEST_MAGIC);
		be16(b + n + 4, flags[i]);
		be16(b + n + 6, type[i]);
		be64(b + n + 8, 0x1122334455667788ull);
		be64(b + n + 16, i == 3 ? (64ull << 20) - 4096 : 8192);
		be32(b + n + 24, i == 3 ? 8192 : 4096);
		n += NBD_REQUEST_LEN;
		be64(b + n, 64ull << 20);
		be32(b + n + 8, 32u << 20);
		b[n + 12] = 0;
		b[n + 13] = 10; /* align 512 */
		n += 17;
		snprintf(name, sizeof(name), "request-%d", i);
		put("nbd_proto", name, b, n, NULL, 0);
	}
	/* 4: names */
	b[0] = 4;
	memcpy(b + 1, "export", 6);
	put("nbd_proto", "name", b, 7, NULL, 0);
	/* 5: encoders */
	b[0] = 5;
	be16(b + 1, 200);
	be32(b + 3, 7);
	be16(b + 7, 0);
	memcpy(b + 9, "a description", 13);
	put("nbd_proto", "encoders", b, 22, NULL, 0);
}

/* ---- qcow2 ---- */

static void put_qcow2(const char *name, int flags, uint64_t file_size, const uint8_t *img,
		      size_t len)
{
	uint8_t pre[9];

	pre[0] = (uint8_t)flags;
	be64(pre + 1, file_size);
	put("qcow2", name, pre, 9, img, len);
}

static void gen_qcow2(void)
{
	static uint8_t buf[1 << 16];
	struct qcow2_hdr h;
	size_t used;

	memset(&h, 0, sizeof(h));
	h.cluster_bits = 16;
	h.size = 1ull << 30;
	h.l1_size = 2;
	h.l1_offset = 3 << 16;
	h.rt_offset = 1 << 16;
	h.rt_clusters = 1;
	memset(buf, 0, sizeof(buf));
	if (qcow2_hdr_encode(&h, buf, sizeof(buf)) < 0)
		die("qcow2_hdr_encode");
	/* a few L1 / L2 style entries after the header, for the decoders */
	be64(buf + 512, (4ull << 16) | QCOW2_OFLAG_COPIED);
	be64(buf + 520, (5ull << 16) | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO);
	be64(buf + 528, QCOW2_OFLAG_ZERO);
	be64(buf + 536, 1ull << 16);
	used = 544;
	put_qcow2("plain-64k", 0, 6 << 16, buf, used);
	put_qcow2("plain-64k-rw", 1, 6 << 16, buf, used);

	memset(buf, 0, sizeof(buf));
	snprintf(h.backing, sizeof(h.backing), "base.qcow2");
	snprintf(h.backing_fmt, sizeof(h.backing_fmt), "qcow2");
	h.cluster_bits = 12;
	h.l1_size = 64;
	h.l1_offset = 2 << 12;
	h.rt_offset = 1 << 12;
	if (qcow2_hdr_encode(&h, buf, sizeof(buf)) < 0)
		die("qcow2_hdr_encode");
	put_qcow2("backing-4k", 0, 16 << 12, buf, 200);

	/* version 2 */
	buf[7] = 2;
	put_qcow2("v2-4k", 0, 16 << 12, buf, 200);
}

/* ---- vhd: [flags][file size be64] footer(512) header(1024) rest ---- */

static void put_vhd(const char *name, uint8_t flags, uint64_t file_size, const uint8_t *img,
		    size_t len)
{
	uint8_t pre[9];

	pre[0] = flags;
	be64(pre + 1, file_size);
	put("vhd", name, pre, 9, img, len);
}

static void gen_vhd(void)
{
	static uint8_t buf[VHD_FOOTER_LEN + VHD_HEADER_LEN + 1024];
	uint8_t *rest = buf + VHD_FOOTER_LEN + VHD_HEADER_LEN;
	struct vhd_footer f;
	struct vhd_header h;
	uint64_t size = 64ull << 20, file = 4 * 512 + 2 * ((2u << 20) + 512) + 512;
	int n;

	memset(&f, 0, sizeof(f));
	memcpy(f.creator_app, "qemu", 4);
	f.features = 2;
	f.version = 0x10000;
	f.data_offset = 512;
	f.orig_size = f.cur_size = size;
	vhd_chs(size, &f.cyls, &f.heads, &f.spt);
	f.type = VHD_TYPE_DYNAMIC;
	memcpy(f.uuid, fz_uuid, 16);
	memset(&h, 0, sizeof(h));
	h.data_offset = VHD_NO_OFFSET;
	h.table_offset = 1536;
	h.version = 0x10000;
	h.max_entries = 32;
	h.block_size = 2u << 20;
	memset(buf, 0, sizeof(buf));
	vhd_footer_encode(&f, buf);
	vhd_header_encode(&h, buf + VHD_FOOTER_LEN);
	/* BAT entries: two blocks after the BAT, then unused ones */
	memset(rest, 0xff, 128);
	be32(rest, 4);
	be32(rest + 4, 4 + 4097);
	put_vhd("dynamic", 0, file, buf, VHD_FOOTER_LEN + VHD_HEADER_LEN + 128);

	f.type = VHD_TYPE_FIXED;
	f.data_offset = VHD_NO_OFFSET;
	vhd_footer_encode(&f, buf);
	put_vhd("fixed", 0, size + 512, buf, VHD_FOOTER_LEN);

	/* differencing: parent name and a W2ru locator (UTF-16LE) after the BAT */
	f.type = VHD_TYPE_DIFF;
	f.data_offset = 512;
	vhd_footer_encode(&f, buf);
	memcpy(h.parent_uuid, fz_uuid, 16);
	n = vhd_utf16_encode("base.vhd", true, false, h.parent_name_raw, 512);
	if (n < 0)
		die("vhd_utf16_encode");
	h.loc[0].code = VHD_PLAT_W2RU;
	h.loc[0].space = 1;
	h.loc[0].off = 2048;
	memset(rest, 0, 1024);
	n = vhd_utf16_encode("./base.vhd", false, true, rest, 512);
	if (n < 0)
		die("vhd_utf16_encode");
	h.loc[0].len = (uint32_t)n;
	h.loc[1].code = VHD_PLAT_MACX;
	h.loc[1].space = 1;
	h.loc[1].off = 2560;
	h.loc[1].len = 25;
	memcpy(rest + 512, "file:///srv/vm/base%20.vhd", 26);
	vhd_header_encode(&h, buf + VHD_FOOTER_LEN);
	put_vhd("differencing", 4, file + 1024, buf, sizeof(buf));
	/* the same with checksums recomputed by the harness */
	buf[100] = 1;
	put_vhd("diff-fixsum", 4 | 3, file + 1024, buf, sizeof(buf));
}

/* ---- blkif: [mode][idx le32][disk sectors le64] ring page [indirect pages] ---- */

static void blkif_hdr(uint8_t *b, uint8_t mode, uint32_t idx, uint64_t disk)
{
	b[0] = mode;
	for (int i = 0; i < 4; i++)
		b[1 + i] = (uint8_t)(idx >> (8 * i));
	le64(b + 5, disk);
}

static void blkif_seg(uint8_t *p, uint32_t gref, uint8_t first, uint8_t last)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(gref >> (8 * i));
	p[4] = first;
	p[5] = last;
}

static void gen_blkif(void)
{
	/* field offsets of a request: x86_64 / x86_32 (blkif_proto.c) */
	static const struct {
		const char *abi;
		uint8_t mode;
		size_t id, sector, seg, ind_grefs;
	} L[] = {{"64", 0, 8, 16, 24, 28}, {"32", 1, 4, 12, 20, 24}};
	static uint8_t b[13 + 4096 + 4096];

	for (unsigned a = 0; a < 2; a++) {
		uint8_t *s = b + 13 + 64; /* slot 0 */
		char name[64];

		/* a read of 3 segments */
		memset(b, 0, sizeof(b));
		blkif_hdr(b, L[a].mode, 0, 1 << 20);
		s[0] = 0, s[1] = 3;
		le64(s + L[a].id, 0x1234);
		le64(s + L[a].sector, 64);
		for (int i = 0; i < 3; i++)
			blkif_seg(s + L[a].seg + 8 * i, 100 + i, 0, 7);
		snprintf(name, sizeof(name), "read-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		/* the same as a write, on a read-only disk, at a wrapped index */
		blkif_hdr(b, L[a].mode | 2, 32, 1 << 20);
		s[0] = 1;
		snprintf(name, sizeof(name), "write-ro-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		/* a write that ends past the disk */
		blkif_hdr(b, L[a].mode, 0, 66);
		snprintf(name, sizeof(name), "write-past-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		/* flush, barrier with one segment */
		memset(b, 0, sizeof(b));
		blkif_hdr(b, L[a].mode, 0, 1 << 20);
		s[0] = 3;
		le64(s + L[a].id, 7);
		snprintf(name, sizeof(name), "flush-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		s[0] = 2, s[1] = 1;
		blkif_seg(s + L[a].seg, 9, 2, 5);
		snprintf(name, sizeof(name), "barrier-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		/* discard (nr_sectors sits where the segments start) */
		memset(b, 0, sizeof(b));
		blkif_hdr(b, L[a].mode, 0, 1 << 20);
		s[0] = 5, s[1] = 1;
		le64(s + L[a].id, 8);
		le64(s + L[a].sector, 4096);
		le64(s + L[a].seg, 8192);
		snprintf(name, sizeof(name), "discard-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
		/* an indirect write of 256 segments in one indirect page */
		memset(b, 0, sizeof(b));
		blkif_hdr(b, L[a].mode, 5, 1 << 22);
		s = b + 13 + 64 + 5 * (a ? 108 : 112);
		s[0] = 6, s[1] = 1, s[2] = 0, s[3] = 1; /* 256 segments */
		le64(s + L[a].id, 9);
		le64(s + L[a].sector, 2048);
		s[L[a].ind_grefs] = 77;
		for (int i = 0; i < 256; i++)
			blkif_seg(b + 13 + 4096 + 8 * i, 1000 + i, 0, 7);
		snprintf(name, sizeof(name), "indirect-%s", L[a].abi);
		put("blkif", name, b, 13 + 8192, NULL, 0);
		/* the same slot in a ring of 16 pages (the input holds the
		 * first; the rest reads as zero) */
		b[0] |= 4 << 2;
		snprintf(name, sizeof(name), "ring16-%s", L[a].abi);
		put("blkif", name, b, 13 + 4096, NULL, 0);
	}
}

/* ---- vmdk: [mode][file size le64] file bytes (fuzz/fuzz_vmdk.c) ---- */

static void put_vmdk(const char *name, uint8_t mode, uint64_t file_size, const uint8_t *img,
		     size_t len)
{
	uint8_t pre[9];

	pre[0] = mode;
	le64(pre + 1, file_size);
	put("vmdk", name, pre, 9, img, len);
}

static void gen_vmdk(void)
{
	static uint8_t buf[8192], grain[4096];
	struct vmdk_hdr h;
	uLongf zlen;
	const char *desc = "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
			   "createType=\"twoGbMaxExtentSparse\"\n\n# Extent description\n"
			   "RW 4192256 SPARSE \"disk-s001.vmdk\"\nRW 2048 FLAT \"disk-f.vmdk\" 0\n"
			   "RDONLY 2048 ZERO\n\nddb.virtualHWVersion = \"4\"\n";

	/* a monolithicSparse header (QEMU's layout, 1 GiB), a GD, GTEs */
	memset(&h, 0, sizeof(h));
	h.version = 1;
	h.flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD;
	h.capacity = 2097152;
	h.grain_sectors = 128;
	h.desc_offset = 1;
	h.desc_size = 20;
	h.gtes_per_gt = 512;
	h.rgd_offset = 21;
	h.gd_offset = 30;
	h.overhead = 128;
	memset(buf, 0, sizeof(buf));
	vmdk_hdr_encode(&h, buf);
	for (int i = 0; i < 32; i++)
		le64(buf + 512 + 8 * i, (uint64_t)(31 + 4 * i) | (uint64_t)(128 + 128 * i) << 32);
	put_vmdk("sparse", 0, 1 << 20, buf, 1024);

	/* version 2 with zeroed grains */
	h.version = 2;
	h.flags |= VMDK_FLAG_ZERO_GRAIN;
	vmdk_hdr_encode(&h, buf);
	put_vmdk("zeroed-grain", 0, 1 << 20, buf, 1024);

	/* stream-optimized, GD at the end: footer marker and footer, then a
	 * grain marker with the deflate of one 4 KiB grain */
	h.version = 3;
	h.flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS;
	h.compress = VMDK_COMPRESS_DEFLATE;
	h.grain_sectors = 8;
	h.capacity = 8192;
	h.gtes_per_gt = 512;
	h.rgd_offset = 0;
	h.gd_offset = VMDK_GD_AT_END;
	memset(buf, 0, sizeof(buf));
	vmdk_hdr_encode(&h, buf);
	le64(buf + 512, 1);
	le64(buf + 512 + 8, (uint64_t)VMDK_MARKER_FOOTER << 32);
	h.gd_offset = 40;
	vmdk_hdr_encode(&h, buf + 1024);
	for (size_t i = 0; i < sizeof(grain); i++)
		grain[i] = (uint8_t)(i * 7 + (i >> 8));
	zlen = sizeof(buf) - 1536 - 12;
	if (compress2(buf + 1536 + 12, &zlen, grain, sizeof(grain), 6) != Z_OK)
		die("compress2");
	le64(buf + 1536, 0);
	buf[1536 + 8] = (uint8_t)zlen;
	buf[1536 + 9] = (uint8_t)(zlen >> 8);
	put_vmdk("stream-footer", 0, 1 << 20, buf, 1536 + 12 + zlen);
	put_vmdk("inflate-4k", 2, 0, buf + 1536 + 12, zlen);

	put_vmdk("descriptor", 1, 0, (const uint8_t *)desc, strlen(desc));
	put_vmdk("descriptor-embedded", 5, 0, (const uint8_t *)desc, strlen(desc));
}

/* ---- qos_ram: a mode byte (0 ram, 1 qos, 2 size), then the words ---- */

static void gen_qos_ram(void)
{
	static const char *s[] = {
	    "\0001G",
	    "\000vm1,size=512M",
	    "\000vm1,size=1M,shm=disk",
	    "\000../x,size=1M",
	    "\000vm1,size=1G,size=2G",
	    "\001iops=500,bps=10M,read-iops=7,write-bps-burst=64K,weight=3",
	    "\001iops=0",
	    "\001weight=10001",
	    "\001iops=1,,bps=2",
	    "\002",
	    "\00264K",
	    "\00218446744073709551616",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		snprintf(name, sizeof(name), "%02zu", i);
		put("qos_ram", name, s[i], 1 + strlen(s[i] + 1), NULL, 0);
	}
}

/* tang (fuzz/fuzz_tang.c): tokens of each curve, an advertisement a tangd
 * (Debian tang 11) signed (its signing key's thumbprint is the harness's
 * pin), /rec answers, URLs. Byte 0 is the harness's mode. */
static const char tang_adv[] =
    "{\"payload\": \"eyJrZXlzIjogW3siYWxnIjogIkVDTVIiLCAiY3J2IjogIlAtNTIxIiwgI"
    "mtleV9vcHMiOiBbImRlcml2ZUtleSJdLCAia3R5IjogIkVDIiwgIngiOiAiQUtvbUF4WC0"
    "1TDB2RGgtRjRaM0dLSDhSWE5PUzNDa2RabTRLSWhmWlJMeU54VlJjZVR1ZE50MlVkMHZzU"
    "GtQNy1XRTk2UTktOVRlWEJMdGJzcE9xMjBidCIsICJ5IjogIkFPay1JN1JUc05qWGJiSWw"
    "3cTFvZEJVdTdRVThRZndyS29qS0h4Z1ZXY1NxZGJsXzJvYWFadlo2eWxhemdFMjdqOEFFS"
    "zZJWnNhZnlFN3VJZ0IzT3hudFIifSwgeyJhbGciOiAiRVM1MTIiLCAiY3J2IjogIlAtNTI"
    "xIiwgImtleV9vcHMiOiBbInZlcmlmeSJdLCAia3R5IjogIkVDIiwgIngiOiAiQU14dDg5R"
    "29qbWhfbDhHekFsOFFYclJZSU55ei1tOXNSbjN0SDRQSExIbWphT2l6QVJOZjB1eVpRWGx"
    "3MzVtd1ZCZEtEN1NQNEhzY1cyZ3Q5ZzI0RDFEaCIsICJ5IjogIkFTNElKNFJLbGVxRjBqR"
    "nBqSS1rMUJCc2NHZDNaOS1YeGUwR1lER3REOFZJcENWT1ZCWGZnaWlIclBXWWRhZmd6WnM"
    "xR1dvTzlHTzN6RERaSzFVclB0eWoifV19\", \"protected\": \"eyJhbGciOiJFUzUxMiIs"
    "ImN0eSI6Imp3ay1zZXQranNvbiJ9\", \"signature\": \"AVm8B5O8xvMbbaJgZ42GGnpKh"
    "6NhTcB-ijmOzofmrSiw0GuaKnbutExKSJN-zU-8zQNkz-csJTZWCoqWpOqzXD4XAOfTnkd"
    "xNSIBw_eePCuQ8kyQnG4TaoaQ9P8wsAFDvnw3A11qCdSNcLY7IAnqCypHbmAwEdiNTJJzZ"
    "3P2S3tZHVOb\"}";

static void gen_tang(void)
{
	static const char *recs[] = {
	    "{\"alg\":\"ECMR\",\"crv\":\"P-256\",\"key_ops\":[\"deriveKey\"],\"kty\":\"EC\","
	    "\"x\":\"aHIsL0D-IMIwDtxLq3UzMv4xspZ4t3hcFxib_XAbTMY\","
	    "\"y\":\"fcNBDbYqHdhHexLjycX7VzFQV-t1kGD0109IzRQM_0U\"}",
	    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}",
	    "[]",
	};
	static const char *urls[] = {"http://127.0.0.1:7500", "http://tang.example/sub",
				     "https://tang.example", "http://a b"};
	struct td_tang_token t;
	uint8_t tok[1 + TD_TANG_TOKEN_MAX];
	char name[32];

	for (unsigned c = TD_TANG_P256; c <= TD_TANG_P521; c++) {
		int n;

		memset(&t, 0, sizeof(t));
		t.curve = (uint8_t)c;
		snprintf(t.url, sizeof(t.url), "http://127.0.0.1:%u", 7500 + c);
		for (size_t i = 0; i < sizeof(t.sx); i++)
			t.sx[i] = t.sy[i] = t.cx[i] = t.cy[i] = (uint8_t)(i * 13 + c);
		tok[0] = 0;
		n = td_tang_token_encode(&t, tok + 1, sizeof(tok) - 1);
		if (n < 0)
			die("tang token");
		snprintf(name, sizeof(name), "token-%u", c);
		put("tang", name, tok, (size_t)n + 1, NULL, 0);
	}
	put("tang", "adv", "\001", 1, tang_adv, sizeof(tang_adv) - 1);
	for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		snprintf(name, sizeof(name), "rec-%zu", i);
		put("tang", name, "\006", 1, recs[i], strlen(recs[i])); /* mode 2, curve 1 */
	}
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		snprintf(name, sizeof(name), "url-%zu", i);
		put("tang", name, "\003", 1, urls[i], strlen(urls[i]));
	}
}

/* TPM2 token payloads (docs/FORMAT.md, "TPM2 token"), written byte by byte
 * (no libtss2 here): 12 little-endian bytes, then a TPM2B_PUBLIC of a
 * sealed keyed-hash object and a TPM2B_PRIVATE, big-endian as the TPM
 * marshals them. */
static size_t tpm2_token(uint8_t *b, uint16_t bank, uint32_t pcrs, uint16_t priv_len)
{
	size_t n = 0;

	memset(b, 0, 640);
	b[0] = 1;	      /* version */
	b[2] = 1;	      /* primary template */
	b[4] = (uint8_t)bank; /* PCR bank */
	b[5] = (uint8_t)(bank >> 8);
	for (int i = 0; i < 4; i++)
		b[8 + i] = (uint8_t)(pcrs >> (8 * i));
	n = 12;
	be16(b + n, 78);	     /* TPM2B_PUBLIC size */
	be16(b + n + 2, 0x0008);     /* KEYEDHASH */
	be16(b + n + 4, 0x000b);     /* SHA-256 */
	be32(b + n + 6, 0x00000402); /* fixedTPM | fixedParent | noDA */
	be16(b + n + 10, 32);	     /* authPolicy */
	memset(b + n + 12, 0xa1, 32);
	be16(b + n + 44, 0x0010); /* scheme NULL */
	be16(b + n + 46, 32);	  /* unique */
	memset(b + n + 48, 0xb2, 32);
	n += 80;
	be16(b + n, priv_len);
	for (uint16_t i = 0; i < priv_len; i++)
		b[n + 2 + i] = (uint8_t)(i * 7 + 3);
	return n + 2 + priv_len;
}

static void gen_tpm2_token(void)
{
	uint8_t b[640];
	size_t n;

	n = tpm2_token(b, 0x000b, 1u << 7, 158);
	put("tpm2_token", "pcr7", b, n, NULL, 0);
	n = tpm2_token(b, 0x000b, 0x00ffffff, 400);
	put("tpm2_token", "all-pcrs-big-private", b, n, NULL, 0);
	n = tpm2_token(b, 0x0004, 1u << 16, 158);
	put("tpm2_token", "sha1-bank", b, n, NULL, 0);
	n = tpm2_token(b, 0x000b, 1u << 16, 158);
	put("tpm2_token", "truncated", b, n - 9, NULL, 0);
	put_str("tpm2_token", "pcr-list", "0-3+7,16");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_seeds DIR\n");
		return 2;
	}
	root = argv[1];
	mkdir(root, 0755);
	gen_spec();
	gen_crypt();
	gen_keyslot();
	gen_integrity();
	gen_nbd();
	gen_qcow2();
	gen_blkif();
	gen_vmdk();
	gen_qos_ram();
	gen_vhd();
	gen_tang();
	gen_tpm2_token();
	return 0;
}
