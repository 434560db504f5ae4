/* libFuzzer harness for the integrity metadata loader (integrity/format.c).
 *
 * Byte 0: bits 0-1 pick the target, bit 2 asks the harness to put the
 * right HMAC (under the fixed key below) over the fuzzed bytes, so that the
 * parsing behind the MAC check is reached; without it nearly every input
 * stops at the MAC, which is the other half worth fuzzing.
 *   0  ti_params_decode: 8 bytes lower image size (LE), 256 bytes params;
 *      also ti_layout from the same numbers, whose result must decode
 *   1  ti_super_decode: one 4 KiB block
 *   2  ti_jblock_decode: 8 bytes epoch (LE), one 4 KiB block, decoded at
 *      the position its index field names (and at the next one, where a
 *      valid block must be refused as misplaced); a records block or a
 *      flush point that decodes must re-encode to the same bytes, and
 *      ti_fpoint_has must agree with a plain scan of the ranges
 * Blocks are zero-padded to 4 KiB in heap buffers of exactly 4 KiB. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
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
	/* right after the data area, or past a gap after an online grow */
	assert(p->super_off - p->data_start >= p->data_blocks * TI_BLOCK);
	assert(p->super_off % TI_BLOCK == 0 && p->super_off <= TI_META_MAX);
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
		/* an online grow from it (by an amount the input picks): never
		 * over the metadata in use, and it loads back */
		if (ti_grow_layout(&p, p.data_blocks + 1 + (lower & 0xfffff), &q) == 0) {
			assert(q.super_off >= ti_layout_end(&p));
			check_layout_sane(&q, ti_layout_end(&q));
			ti_params_encode(&q, re);
			assert(ti_params_decode(re, ti_layout_end(&q), &q, err, sizeof(err)) == 0);
		}
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

/* ti_fpoint_has against the definition, at the edges that matter. */
static void check_fpoint(const struct ti_fpoint *fp)
{
	uint64_t probe[6];
	unsigned i, j, k;

	for (i = 0; i < fp->n; i++) {
		probe[0] = fp->r[i].start;
		probe[1] = fp->r[i].start + fp->r[i].count - 1;
		probe[2] = fp->r[i].start + fp->r[i].count;
		probe[3] = fp->r[i].start ? fp->r[i].start - 1 : 0;
		probe[4] = fp->below;
		probe[5] = fp->below ? fp->below - 1 : 0;
		for (k = 0; k < 6; k++) {
			bool listed = false;

			for (j = 0; j < fp->n; j++)
				if (probe[k] >= fp->r[j].start &&
				    probe[k] - fp->r[j].start < fp->r[j].count)
					listed = true;
			assert(ti_fpoint_has(fp, probe[k]) == ((probe[k] < fp->below) != listed));
		}
	}
}

static void fuzz_jblock(const uint8_t *d, size_t n, int fix)
{
	static struct ti_rec recs[TI_RECS_PER_BLOCK];
	static struct ti_fpoint fp;
	struct ti_jinfo info, info2;
	uint8_t *in, *re;
	uint64_t epoch;
	uint32_t pos;
	int nr, nr2;

	if (n < 8)
		return;
	epoch = ti_le64(d);
	in = block_of(d + 8, n - 8, TI_BLOCK);
	if (!in)
		return;
	if (fix)
		fix_mac(in);
	pos = (uint32_t)ti_le64(in + 16);
	nr = ti_jblock_decode(in, epoch, pos, fz_uuid, mac_ctx(), recs, &fp, &info);
	if (nr >= 0) {
		assert(nr <= (int)TI_RECS_PER_BLOCK);
		assert(info.index == pos);
		assert(info.kind == TI_JB_RECORDS || info.kind == TI_JB_FLUSH);
		re = malloc(TI_BLOCK);
		assert(re);
		if (info.kind == TI_JB_FLUSH) {
			assert(fp.n <= TI_FP_MAX_RANGES);
			check_fpoint(&fp);
			ti_jflush_encode(epoch, pos, recs, (unsigned)nr, &fp, fz_uuid, mac_ctx(),
					 re);
		} else {
			ti_jblock_encode(epoch, pos, recs, (unsigned)nr, fz_uuid, mac_ctx(), re);
		}
		/* one encoding per block: the decoder accepts canonical bytes only */
		assert(memcmp(re, in, TI_BLOCK) == 0);
		/* the same block anywhere else is refused as copied or moved */
		nr2 = ti_jblock_decode(in, epoch, pos + 1, fz_uuid, mac_ctx(), recs, &fp, &info2);
		assert(nr2 == -TI_EMISPLACED && info2.index == pos);
		free(re);
	} else {
		assert(nr == -EBADMSG || nr == -TI_EMISPLACED);
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
