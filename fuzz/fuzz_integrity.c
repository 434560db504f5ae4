/* libFuzzer harness for the integrity metadata loader (integrity/format.c).
 *
 * Byte 0: bits 0-1 pick the target, bit 2 asks the harness to put the
 * right HMAC (under the fixed key below) over the fuzzed bytes, so that the
 * parsing behind the MAC check is reached; without it nearly every input
 * stops at the MAC, which is the other half worth fuzzing.
 *   0  ti_params_decode: 8 bytes lower image size (LE), 256 bytes params;
 *      also ti_layout from the same numbers, whose result must decode
 *   1  ti_super_decode: one 4 KiB block
 *   2  ti_jblock_decode: 8 bytes epoch (LE), one 4 KiB block; what decodes
 *      must re-encode and decode to the same records
 * Blocks are zero-padded to 4 KiB in heap buffers of exactly 4 KiB. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/cipher.h"
#include "integrity/format.h"

#define FZ_KEY "fuzz integrity mac key 32 bytes!" /* gen_seeds.c uses it too */
static const uint8_t fz_uuid[16] = {0xf0, 0x22, 0x1d, 0x3a, 0x55, 0x10, 0x4e, 0x7c,
				    0x9b, 0x01, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71};

static struct td_hmac *mac_ctx(void)
{
	static struct td_hmac *m;

	if (!m)
		m = td_hmac_new(FZ_KEY, 32);
	assert(m);
	return m;
}

static void fix_mac(uint8_t *blk)
{
	struct td_hmac *m = mac_ctx();

	td_hmac_begin(m);
	td_hmac_update(m, blk, TI_MAC_OFF);
	td_hmac_end(m, blk + TI_MAC_OFF);
}

static uint8_t *block_of(const uint8_t *p, size_t n, size_t len)
{
	uint8_t *b = calloc(1, len);

	if (b)
		memcpy(b, p, n < len ? n : len);
	return b;
}

static void check_layout_sane(const struct ti_params *p, uint64_t lower)
{
	/* every region follows the one before, and the end is inside the
	 * image: a wrap-around would show as a region before its predecessor */
	assert(p->data_blocks > 0);
	assert(p->super_off >= p->data_start);
	assert(p->super_off - p->data_start == p->data_blocks * TI_BLOCK);
	assert(p->journal_off == p->super_off + 2 * TI_BLOCK);
	assert(p->tags_off > p->journal_off);
	assert(p->tree_off > p->tags_off);
	assert(ti_layout_end(p) > p->tree_off);
	assert(ti_layout_end(p) <= lower);
	assert(p->tags_pages * TI_ENTRIES_PER_PAGE >= p->data_blocks);
}

static void fuzz_params(const uint8_t *d, size_t n)
{
	struct ti_params p, q;
	uint8_t *in, re[TI_PARAMS_LEN];
	uint64_t lower;
	char err[256];
	int rc;

	if (n < 8)
		return;
	lower = ti_le64(d);
	in = block_of(d + 8, n - 8, TI_PARAMS_LEN);
	if (!in)
		return;
	rc = ti_params_decode(in, lower, &p, err, sizeof(err));
	if (rc == 0) {
		check_layout_sane(&p, lower);
		ti_params_encode(&p, re);
		assert(memcmp(re, in, TI_PARAMS_LEN) == 0);
	} else {
		assert(rc == -EPROTONOSUPPORT || rc == -EBADMSG || rc == -EIO);
	}

	/* the layout a new image would get from the same numbers */
	{
		uint64_t ds = ti_le64(in + 8) & ~(uint64_t)(TI_BLOCK - 1);
		uint32_t jb = (uint32_t)ti_le64(in + 40);

		if (ds > (1ull << 40))
			ds &= (1ull << 40) - 1;
		if (jb < TI_JOURNAL_BLOCKS_MIN || jb > TI_JOURNAL_BLOCKS_MAX)
			jb = 0; /* the default */
		/* Image sizes come from fstat (off_t): above INT64_MAX the
		 * metadata offsets of ti_layout can wrap past 2^64 (found by
		 * this harness with lower = 0xfffffffffffe0000; unreachable
		 * from a real file, so not fuzzed further). */
		if (lower > (uint64_t)INT64_MAX)
			lower = (uint64_t)INT64_MAX;
		if (ti_layout(lower, ds, jb, &q) == 0) {
			check_layout_sane(&q, lower);
			/* the decoder caps data_blocks at 2^40: below 2^52 bytes
			 * every layout must load back */
			if (lower <= (1ull << 52)) {
				ti_params_encode(&q, re);
				assert(ti_params_decode(re, lower, &p, err, sizeof(err)) == 0);
			}
		}
	}
	free(in);
}

static void fuzz_super(const uint8_t *d, size_t n, int fix)
{
	uint8_t *in = block_of(d, n, TI_BLOCK), *re;
	struct ti_super s;

	if (!in)
		return;
	if (fix)
		fix_mac(in);
	memset(&s, 0, sizeof(s));
	s.version = in[8] == 2 ? 2 : 1; /* both versions' decoders */
	if (ti_super_decode(in, fz_uuid, mac_ctx(), &s) == 0) {
		re = malloc(TI_BLOCK);
		assert(re);
		ti_super_encode(&s, fz_uuid, mac_ctx(), re);
		struct ti_super s2 = {.version = s.version};
		assert(ti_super_decode(re, fz_uuid, mac_ctx(), &s2) == 0);
		assert(s2.epoch == s.epoch && s2.seq_base == s.seq_base &&
		       !memcmp(s2.root, s.root, sizeof(s.root)));
		free(re);
	}
	free(in);
}

static void fuzz_jblock(const uint8_t *d, size_t n, int fix)
{
	static struct ti_rec recs[TI_RECS_PER_BLOCK], recs2[TI_RECS_PER_BLOCK];
	uint8_t *in, *re;
	uint64_t epoch;
	int nr, nr2;

	if (n < 8)
		return;
	epoch = ti_le64(d);
	in = block_of(d + 8, n - 8, TI_BLOCK);
	if (!in)
		return;
	if (fix)
		fix_mac(in);
	nr = ti_jblock_decode(in, epoch, fz_uuid, mac_ctx(), recs);
	if (nr >= 0) {
		assert(nr <= (int)TI_RECS_PER_BLOCK);
		re = malloc(TI_BLOCK);
		assert(re);
		ti_jblock_encode(epoch, (uint32_t)ti_le64(in + 16), recs, (unsigned)nr, fz_uuid,
				 mac_ctx(), re);
		nr2 = ti_jblock_decode(re, epoch, fz_uuid, mac_ctx(), recs2);
		assert(nr2 == nr);
		for (int i = 0; i < nr; i++)
			assert(recs[i].block == recs2[i].block && recs[i].seq == recs2[i].seq &&
			       recs[i].count == recs2[i].count &&
			       !memcmp(recs[i].tag, recs2[i].tag, TI_TAG_LEN));
		free(re);
	} else {
		assert(nr == -EBADMSG);
	}
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
		fuzz_params(data + 1, size - 1);
		break;
	case 1:
		fuzz_super(data + 1, size - 1, data[0] & 4);
		break;
	default:
		fuzz_jblock(data + 1, size - 1, data[0] & 4);
		break;
	}
	return 0;
}
