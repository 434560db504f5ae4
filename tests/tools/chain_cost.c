/* The CPU cost of the crypt + integrity chain, for an instruction-count
 * regression guard (tests/integration/t-perf-guard.sh runs it under
 * callgrind). Two modes:
 *
 *   chain_cost chain SPEC MIB   write MIB MiB through the chain (1 MiB
 *                               requests, 8 in flight), read it back
 *   chain_cost baseline MIB     the same bytes through bare XTS + block
 *                               MACs (the unavoidable cost)
 *
 * The guard compares the two: the chain may cost only a little more than
 * the primitives it must run, so a per-block allocation or a cipher/MAC
 * context re-created per block shows up as a ratio jump. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "integrity/format.h"
#include "keymgr/keyring.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/registry/registry.h"

#define REQ (1u << 20)
#define QD 8

struct slot {
	struct td_req req;
	struct iovec iov;
	uint8_t *buf;
	bool busy;
};

static int failures;

static void done(struct td_req *req, int err)
{
	struct slot *s = req->opaque;

	if (err)
		failures++;
	s->busy = false;
}

static int run_chain(const char *spec, unsigned mib)
{
	struct td_stats_shared st = {0};
	struct td_ctx ctx = {0};
	struct td_chain *c;
	struct slot slots[QD];
	char err[1024];
	unsigned pass, next, completed, i;

	ctx.loop = td_loop_new();
	ctx.io = td_io_new(ctx.loop, 64);
	ctx.workers = td_workers_new(ctx.loop, 0); /* everything on this thread */
	ctx.get_key = td_keyring_key_fn;	   /* the key vdkey loaded for the image */
	ctx.stats = &st;
	if (td_chain_open(&ctx, spec, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "chain_cost: %s\n", err);
		return 1;
	}
	if ((uint64_t)mib * REQ > c->top->size) {
		fprintf(stderr, "chain_cost: image too small\n");
		return 1;
	}
	for (i = 0; i < QD; i++) {
		slots[i].buf = td_buf_get(REQ);
		memset(slots[i].buf, (int)i + 1, REQ);
		slots[i].busy = false;
	}
	for (pass = 0; pass < 2; pass++) {
		next = completed = 0;
		while (completed < mib) {
			for (i = 0; i < QD && next < mib; i++) {
				struct slot *s = &slots[i];

				if (s->busy)
					continue;
				memset(&s->req, 0, sizeof(s->req));
				s->iov.iov_base = s->buf;
				s->iov.iov_len = REQ;
				s->req.op = pass ? TD_OP_READ : TD_OP_WRITE;
				s->req.off = (uint64_t)next * REQ;
				s->req.len = REQ;
				s->req.iov = &s->iov;
				s->req.iovcnt = 1;
				s->req.done = done;
				s->req.opaque = s;
				s->busy = true;
				next++;
				td_layer_submit(c->top, &s->req);
			}
			td_loop_run_once(ctx.loop, 1000);
			completed = next;
			for (i = 0; i < QD; i++)
				if (slots[i].busy)
					completed--;
		}
	}
	for (i = 0; i < QD; i++)
		td_buf_put(slots[i].buf, REQ);
	td_chain_close_sync(c);
	td_workers_free(ctx.workers);
	td_io_free(ctx.io);
	td_loop_free(ctx.loop);
	printf("chain: %u MiB written and read, %d failures\n", mib, failures);
	return failures ? 1 : 0;
}

static int run_baseline(unsigned mib)
{
	uint8_t key[64], mk[32], uuid[16] = {0}, tag[TI_TAG_LEN];
	uint8_t *in = td_buf_get(REQ), *out = td_buf_get(REQ);
	struct td_xts *x;
	struct td_hmac *h;
	uint64_t blk = 0;
	unsigned m, b, pass;

	for (m = 0; m < sizeof(key); m++)
		key[m] = (uint8_t)(m * 37 + 11); /* two different XTS halves */
	memset(mk, 9, sizeof(mk));
	memset(in, 1, REQ);
	x = td_xts_new(key);
	h = td_hmac_new(mk, sizeof(mk));
	if (!x || !h) {
		fprintf(stderr, "chain_cost: cannot set up the primitives\n");
		return 1;
	}
	for (pass = 0; pass < 2; pass++)
		for (m = 0; m < mib; m++)
			for (b = 0; b < REQ / 4096; b++, blk++) {
				if (pass == 0)
					td_xts_encrypt(x, blk, in + b * 4096, out + b * 4096, 4096);
				ti_block_tag(h, uuid, blk, blk + 1, out + b * 4096, tag);
				if (pass == 1)
					td_xts_decrypt(x, blk, out + b * 4096, in + b * 4096, 4096);
			}
	td_xts_free(x);
	td_hmac_free(h);
	td_buf_put(in, REQ);
	td_buf_put(out, REQ);
	printf("baseline: %u MiB through XTS + MAC twice\n", mib);
	return 0;
}

int main(int argc, char **argv)
{
	td_drivers_set(td_registry());
	if (argc == 4 && !strcmp(argv[1], "chain"))
		return run_chain(argv[2], (unsigned)atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "baseline"))
		return run_baseline((unsigned)atoi(argv[2]));
	fprintf(stderr, "usage: chain_cost chain SPEC MIB | chain_cost baseline MIB\n");
	return 2;
}
