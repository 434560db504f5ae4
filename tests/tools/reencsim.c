/* reencsim: power-loss simulation of the end of a volume-key rotation of
 * an image with the integrity layer (docs/FORMAT.md, "Volume-key rotation
 * with the integrity layer"): the redo of a staged window and the switch
 * of the tree, superblock, journal and header to the new key.
 *
 *   reencsim [--seed N] [--dir DIR] [--integrity 1|2] [--online]
 *            [--break gen-early] [--verbose]
 *
 * 1. Formats a small raw image in DIR (a crypt header under a random
 *    volume key VK1, integrity metadata of version 2 or 1) and writes a
 *    pattern to every third data block (but those of every fourth tag
 *    page) through crypt:aio, then closes it cleanly.
 * 2. Leaves it as a rotation to VK2 that crashed right after commit point
 *    1 of its last window: the record says B = blocks - 128, W = 128, the
 *    window's VK1 ciphertext is in the staging area (flushed) under its
 *    digest; every block below B is moved (under VK2, tags under VK2's
 *    mac subkey: the blocks below B are rewritten through the chain first).
 * 3. Opens it through crypt -> integrity -> record -> aio with both keys:
 *    the open replays, redoes the window through the integrity layer,
 *    commits it, then switches (rekey checkpoint, final header) and
 *    records the trusted generation. The record layer logs every request;
 *    the trusted generation's writes are noted with their position.
 * 4. For every crash point k (the first k requests issued and completed)
 *    builds the images a power loss there can leave: every request before
 *    the last completed flush and every completed FUA write, and each
 *    subset, in issue order, of the other requests after it (all subsets
 *    when there are at most 8, else 256 random ones, 64 with --online),
 *    plus each of them torn at a random 512-byte boundary over the rest;
 *    the trusted generation is the last one written before point k. Each
 *    must open with both keys (the host holds both during a rotation),
 *    finish the rotation, and read every block with its pattern (or
 *    zeros), no error; after a clean close it must open with VK2 alone
 *    and read the same,
 *    and VK1 alone must open nothing.
 *
 * --online: the same, but the switch runs while a VBD would serve: the
 * rotation is left at B = blocks - 128 with no staged window, and the
 * recorded open (with ctx.rekey, as a tapdisk) moves the last window and
 * then switches on the loop (crypt/reencrypt.c, integrity/reenc.c's
 * ti_reenc_switch) before the chain is closed; every crash image is then
 * opened the same way and the loop run until the rotation ends (the
 * ctx.key_rotated hook) before its blocks are read.
 *
 * --break gen-early records the trusted generation of the rekey
 * checkpoint before the header commit (a test build's switch): the run
 * must then report violations (a false rollback alarm).
 *
 * Prints one summary line; exits 1 on any violation (with the seed). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/crypt.h"
#include "crypt/hdrio.h"
#include "integrity/integrity.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/stats.h"
#include "tapdisk/registry/registry.h"
#include "tests/drivers/record.h"
#include "tests/lib/simkit.h"

#define BS 4096u
#define IMAGE_SIZE (8u << 20)
#define MAGIC 0x4d49534e45455255ull /* "REENSIM" */
#define ALL_SUBSETS_MAX 8
#define RANDOM_SUBSETS 256

static struct {
	uint64_t seed;
	int integrity; /* 1, 2 */
	bool verbose;
	bool online;  /* --online */
	bool rotated; /* ctx.key_rotated was called */
	const char *dir;
	char img[4096], base[4096], crash[4096];
	struct td_volkey *vk, *vk2;
	struct td_volkey *key_now; /* what get_key hands out */
	bool next_key;		   /* get_next_key hands out vk2 */
	uint64_t old_size;
	uint64_t images, finished, violations, torn;
	uint64_t rng;
	/* the trusted generation: the host's store, outside the image */
	uint64_t trusted;
	bool recording;
	struct td_record_log *log;
	size_t ngw;
	struct {
		size_t after; /* written once this many requests were logged */
		uint64_t gen;
	} gw[64];
} G;

static uint64_t rnd(void)
{
	return simkit_rnd(&G.rng);
}

static int get_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		   const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	(void)opaque, (void)uuid, (void)id, (void)where;
	return simkit_key_copy(G.key_now, out, err, errlen);
}

static int get_next_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
			const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	(void)opaque, (void)uuid, (void)id, (void)where;
	if (!G.next_key) {
		snprintf(err, errlen, "no next key in this run");
		return -ENOKEY;
	}
	return simkit_key_copy(G.vk2, out, err, errlen);
}

static int gen_prepare(const uint8_t uuid[16], char *err, size_t errlen)
{
	(void)uuid, (void)err, (void)errlen;
	return 0;
}

static int gen_read(const uint8_t uuid[16], uint64_t *gen, char *err, size_t errlen)
{
	(void)uuid, (void)err, (void)errlen;
	*gen = G.trusted;
	return 0;
}

/* durable at once; while recording, noted with the number of requests
 * the image had seen by then */
static int gen_write(const uint8_t uuid[16], uint64_t gen, char *err, size_t errlen)
{
	(void)uuid, (void)err, (void)errlen;
	G.trusted = gen;
	if (G.recording && G.ngw < sizeof(G.gw) / sizeof(G.gw[0])) {
		G.gw[G.ngw].after = G.log->n;
		G.gw[G.ngw].gen = gen;
		G.ngw++;
	}
	return 0;
}

static const struct td_trust_ops trust = {gen_prepare, gen_read, gen_write};

static void key_rotated(void *opaque, const uint8_t uuid[16])
{
	(void)opaque, (void)uuid;
	G.rotated = true;
}

/* --online: runs the loop until the rotation ended (at the open already,
 * or on the loop); false after 20 s. */
static bool wait_rotated(struct simkit_env *e)
{
	int i;

	for (i = 0; !G.rotated && i < 20000; i++)
		td_loop_run_once(e->ctx.loop, 1);
	return G.rotated;
}

static int env_init(struct simkit_env *e)
{
	int rc = simkit_env_init(e);

	e->ctx.get_key = get_key;
	e->ctx.get_next_key = get_next_key;
	e->ctx.trust = &trust;
	e->ctx.key_rotated = key_rotated;
	return rc;
}

static void pattern(uint8_t *p, uint64_t b)
{
	simkit_pattern(p, MAGIC, b);
}

static void violation(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(const char *what, const char *fmt, ...)
{
	va_list ap;

	G.violations++;
	if (G.violations > 20)
		return;
	printf("VIOLATION seed=%llu %s: ", (unsigned long long)G.seed, what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* ---- 1. the image before the rotation ------------------------------------- */

static int format_image(struct simkit_env *e)
{
	return simkit_format(e, G.img, IMAGE_SIZE, G.integrity, G.vk, "reencsim");
}

/* ---- 2. the rotation, crashed after commit point 1 of its last window -------- */

static int start_rotation(struct simkit_env *e, uint64_t *nb)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_chain *c = NULL;
	struct td_reenc_rec r;
	char spec[4200], err[1024], note[256];
	uint8_t *buf = td_buf_get(128 * BS), *blk = td_buf_get(BS);
	uint64_t b, k;
	int rc, which, other;

	if (!h || !buf || !blk)
		return -ENOMEM;
	/* the blocks below B move first: a rotation with B = 0 and W = 0
	 * whose mover does not run here (ctx.rekey is false), then every
	 * block below B rewritten under VK2 through a chain that has both
	 * keys: the crypt layer enciphers, the integrity layer tags under the
	 * boundary's key. Set the record, rewrite, then set B. */
	snprintf(spec, sizeof(spec), "aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0)
		rc = td_hdr_load(c->top, h, &which, &other, note, sizeof(note), err, sizeof(err));
	*nb = h->data_size / BS;
	memset(&r, 0, sizeof(r));
	/* the new key's slot: a stand-in (this run never unwraps it) */
	memset(&h->slots[1], 0, sizeof(h->slots[1]));
	h->slots[1].state = TD_KEYSLOT_ACTIVE;
	h->slots[1].kdf.id = TD_KDF_PBKDF2_SHA256;
	h->slots[1].kdf.iterations = 1000;
	r.new_slot = 1;
	r.staging_off = TD_HDR_REENC_STAGING_DEFAULT;
	if (rc == 0)
		rc = td_hdr_vk_digest(G.vk2, r.new_digest);
	r.boundary = 0;
	td_hdr_reenc_set(h, &r);
	h->seqno++;
	if (rc == 0)
		rc = td_hdr_seal(h, G.vk);
	if (rc == 0)
		rc = td_hdr_store(c->top, h, which, err, sizeof(err));
	if (c)
		td_chain_close(c);
	c = NULL;
	if (rc < 0) {
		fprintf(stderr, "reencsim: start: %s (%s)\n", err, strerror(-rc));
		goto out;
	}
	/* B moves to nb - 128 in one step: the blocks below are rewritten
	 * through a chain that sees them as new (a second header write first,
	 * then the data: as if the mover had done it; no crash is simulated
	 * here) */
	snprintf(spec, sizeof(spec), "aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0)
		rc = td_hdr_load(c->top, h, &which, &other, note, sizeof(note), err, sizeof(err));
	r.boundary = *nb - 128;
	td_hdr_reenc_set(h, &r);
	h->seqno++;
	if (rc == 0)
		rc = td_hdr_seal(h, G.vk);
	if (rc == 0)
		rc = td_hdr_store(c->top, h, which, err, sizeof(err));
	/* the staging area: the window's VK1 ciphertext as the chain holds it */
	if (rc == 0)
		rc = td_layer_sync_io(c->top, TD_OP_READ, h->data_offset + r.boundary * BS, buf,
				      128 * BS, 0);
	if (c)
		td_chain_close(c);
	c = NULL;
	if (rc < 0) {
		fprintf(stderr, "reencsim: boundary: %s (%s)\n", err, strerror(-rc));
		goto out;
	}
	/* the moved blocks, rewritten with their plaintext through crypt (new
	 * key below B) and integrity (new tags below B) */
	G.next_key = true;
	snprintf(spec, sizeof(spec), "crypt:aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	for (b = 0; rc == 0 && b < r.boundary; b++) {
		if (!simkit_written(b))
			continue;
		pattern(blk, b);
		rc = td_layer_sync_io(c->top, TD_OP_WRITE, b * BS, blk, BS, 0);
	}
	if (rc == 0)
		rc = td_chain_close_sync(c);
	else if (c)
		td_chain_close(c);
	c = NULL;
	if (rc < 0) {
		fprintf(stderr, "reencsim: moving the blocks below B: %s (%s)\n", err,
			strerror(-rc));
		goto out;
	}
	if (G.online) /* the last window is the mover's, online */
		goto out;
	/* commit point 1 of the last window: staged (durable), then the
	 * header with W and the digest */
	snprintf(spec, sizeof(spec), "aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0)
		rc = td_layer_sync_io(c->top, TD_OP_WRITE, r.staging_off, buf, 128 * BS, 0);
	if (rc == 0)
		rc = td_layer_sync_io(c->top, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc == 0)
		rc = td_hdr_load(c->top, h, &which, &other, note, sizeof(note), err, sizeof(err));
	r.window = 128;
	if (rc == 0)
		rc = td_sha256(buf, 128 * BS, r.staging_digest);
	td_hdr_reenc_set(h, &r);
	h->seqno++;
	if (rc == 0)
		rc = td_hdr_seal(h, G.vk);
	if (rc == 0)
		rc = td_hdr_store(c->top, h, which, err, sizeof(err));
	if (c)
		td_chain_close(c);
	if (rc < 0)
		fprintf(stderr, "reencsim: commit point 1: %s (%s)\n", err, strerror(-rc));
	(void)k;
out:
	free(h);
	if (buf)
		td_buf_put(buf, 128 * BS);
	if (blk)
		td_buf_put(blk, BS);
	return rc;
}

/* ---- 3. the open that redoes and switches, recorded ---------------------------- */

static int switch_recorded(struct simkit_env *e, struct td_record_log *log)
{
	struct td_chain *c;
	char spec[4200], err[1024];
	int rc;

	G.log = log;
	G.recording = true;
	G.ngw = 0;
	G.next_key = true;
	G.key_now = G.vk;
	G.rotated = false;
	e->ctx.rekey = G.online;
	td_record_attach(log);
	snprintf(spec, sizeof(spec), "crypt:record:aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	td_record_attach(NULL);
	if (rc < 0) {
		G.recording = false;
		fprintf(stderr, "reencsim: open %s: %s\n", spec, err);
		return rc;
	}
	if (G.online) {
		/* the mover's last window and the switch, then the quiesce */
		if (!wait_rotated(e)) {
			fprintf(stderr, "reencsim: the online rotation did not end\n");
			rc = -ETIMEDOUT;
		}
		if (td_chain_close_sync(c) < 0 && rc == 0)
			rc = -EIO;
	} else {
		td_chain_close(c);
	}
	G.recording = false;
	return rc;
}

/* ---- 4. crash images and their checks ------------------------------------------ */

/* Reads every block; 0 or the number of bad ones (reported). */
static void read_all(struct td_layer *top, const char *what, const char *when)
{
	static const uint8_t zero[BS];
	uint8_t *buf = td_buf_get(64 * BS), want[BS];
	uint64_t blk, k, n, nb = top->size / BS;
	int rc;

	for (blk = 0; blk < nb; blk += 64) {
		n = nb - blk < 64 ? nb - blk : 64;
		rc = td_layer_sync_io(top, TD_OP_READ, blk * BS, buf, n * BS, 0);
		if (rc < 0) {
			violation(what, "%s: read of blocks %llu+%llu failed: %s", when,
				  (unsigned long long)blk, (unsigned long long)n, strerror(-rc));
			break;
		}
		for (k = 0; k < n; k++) {
			uint64_t b = blk + k;

			if (simkit_written(b)) {
				pattern(want, b);
				if (memcmp(buf + k * BS, want, BS))
					violation(what, "%s: block %llu lost its data", when,
						  (unsigned long long)b);
			} else if (memcmp(buf + k * BS, zero, BS)) {
				violation(what, "%s: block %llu does not read as zeros", when,
					  (unsigned long long)b);
			}
		}
	}
	td_buf_put(buf, 64 * BS);
}

static void check_image(struct simkit_env *e, const char *what, uint64_t trusted)
{
	struct td_chain *c;
	char spec[4200], err[1024];
	int rc;

	G.images++;
	G.trusted = trusted;
	snprintf(spec, sizeof(spec), "crypt:aio:%s", G.crash);
	/* the host during a rotation: both keys */
	G.key_now = G.vk;
	G.next_key = true;
	G.rotated = false;
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc < 0) {
		violation(what, "does not open with both keys: %s", err);
		return;
	}
	if (G.online && !wait_rotated(e)) {
		violation(what, "the rotation does not end online");
		td_chain_close(c);
		return;
	}
	read_all(c->top, what, "with both keys");
	rc = td_chain_close_sync(c);
	if (rc < 0) {
		violation(what, "clean close failed: %s", strerror(-rc));
		return;
	}
	/* finished: VK2 alone opens it and reads the same */
	G.key_now = G.vk2;
	G.next_key = false;
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc < 0) {
		violation(what, "does not open with the new key alone: %s", err);
	} else {
		G.finished++;
		read_all(c->top, what, "with the new key alone");
		td_chain_close(c);
	}
	/* and VK1 alone opens nothing */
	G.key_now = G.vk;
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0) {
		violation(what, "the old key alone opens the image");
		td_chain_close(c);
	}
}

/* The trusted generation a crash at point k leaves: the last one written
 * before request k was issued. */
static uint64_t trusted_at(size_t k, uint64_t before)
{
	uint64_t t = before;
	size_t i;

	for (i = 0; i < G.ngw; i++)
		if (G.gw[i].after <= k)
			t = G.gw[i].gen;
	return t;
}

static int build(const struct td_record_log *log, const bool *durable, size_t k, const size_t *pend,
		 unsigned npend, uint64_t mask, int torn, uint64_t tear)
{
	size_t i;
	int fd, rc;

	rc = simkit_copy_file(G.base, G.crash, 0);
	if (rc < 0)
		return rc;
	fd = open(G.crash, O_RDWR);
	if (fd < 0)
		return -errno;
	/* in issue order: the durable ones, and the chosen pending ones */
	for (i = 0; rc == 0 && i < k; i++) {
		unsigned j;
		bool in = durable[i];

		for (j = 0; !in && j < npend; j++)
			if (pend[j] == i) {
				if ((int)j == torn) {
					rc = simkit_apply(fd, &log->ops[i], tear);
					goto next;
				}
				in = mask >> j & 1;
			}
		if (in)
			rc = simkit_apply(fd, &log->ops[i], UINT64_MAX);
	next:;
	}
	close(fd);
	return rc;
}

static int crash_points(struct simkit_env *e, const struct td_record_log *log, uint64_t trusted0)
{
	char what[160];
	size_t k, i, last_flush, pend[64];
	bool *durable = calloc(log->n + 1, sizeof(*durable));
	unsigned npend;
	int rc = 0;

	if (!durable)
		return -ENOMEM;
	for (k = 0; k <= log->n && rc == 0; k++) {
		/* requests 0..k-1 issued and completed: those before the last
		 * flush among them are durable, and so is every FUA write */
		last_flush = 0;
		for (i = 0; i < k; i++)
			if (log->ops[i].op == TD_OP_FLUSH)
				last_flush = i;
		npend = 0;
		for (i = 0; i < k; i++) {
			durable[i] = i < last_flush || (log->ops[i].flags & TD_REQ_FUA);
			if (!durable[i] && log->ops[i].op != TD_OP_FLUSH) {
				if (npend == 64) {
					rc = -E2BIG;
					break;
				}
				pend[npend++] = i;
			}
		}
		if (rc)
			break;
		/* online: each image also runs the mover, so fewer random ones */
		uint64_t nsub = npend <= ALL_SUBSETS_MAX ? 1ull << npend
				: G.online		 ? RANDOM_SUBSETS / 4
							 : RANDOM_SUBSETS;
		uint64_t tr = trusted_at(k, trusted0);

		for (uint64_t sub = 0; sub < nsub && rc == 0; sub++) {
			uint64_t mask = npend <= ALL_SUBSETS_MAX ? sub : rnd();

			rc = build(log, durable, k, pend, npend, mask, -1, 0);
			snprintf(what, sizeof(what), "point %zu/%zu subset %#llx trusted %llu", k,
				 log->n, (unsigned long long)mask, (unsigned long long)tr);
			if (rc == 0)
				check_image(e, what, tr);
		}
		for (i = 0; i < npend && rc == 0; i++) {
			const struct td_record_op *op = &log->ops[pend[i]];
			uint64_t tear;

			if (op->op != TD_OP_WRITE || op->len < 1024)
				continue;
			tear = 512 * (1 + rnd() % (op->len / 512 - 1));
			rc = build(log, durable, k, pend, npend, (1ull << npend) - 1, (int)i, tear);
			G.torn++;
			snprintf(what, sizeof(what), "point %zu/%zu request %zu torn at %llu", k,
				 log->n, pend[i], (unsigned long long)tear);
			if (rc == 0)
				check_image(e, what, tr);
		}
	}
	free(durable);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: reencsim [--seed N] [--dir DIR] [--integrity 1|2] [--online] "
		   "[--break gen-early] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"seed", required_argument, NULL, 's'},
	    {"dir", required_argument, NULL, 'd'},
	    {"integrity", required_argument, NULL, 'i'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"break", required_argument, NULL, 'B'},
	    {"online", no_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	struct td_record_log *log;
	static struct simkit_env E;
	size_t i, writes = 0, flushes = 0;
	uint64_t nb = 0, trusted0;
	int opt, rc;

	td_drivers_set(td_registry());
	G.seed = (uint64_t)getpid() * 2654435761u;
	G.integrity = 2;
	G.dir = "/tmp";
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 's':
			G.seed = strtoull(optarg, NULL, 0);
			break;
		case 'd':
			G.dir = optarg;
			break;
		case 'i':
			G.integrity = atoi(optarg);
			if (G.integrity < 1 || G.integrity > 2) {
				usage(stderr);
				return 2;
			}
			break;
		case 'v':
			G.verbose = true;
			break;
		case 'o':
			G.online = true;
			break;
		case 'B':
			if (strcmp(optarg, "gen-early")) {
				usage(stderr);
				return 2;
			}
			td_crypt_reenc_test_gen_early(true);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!G.verbose)
		td_log_set_level(TD_LOG_WARN);
	G.rng = G.seed;
	snprintf(G.img, sizeof(G.img), "%s/reencsim.%d.img", G.dir, (int)getpid());
	snprintf(G.base, sizeof(G.base), "%s/reencsim.%d.base", G.dir, (int)getpid());
	snprintf(G.crash, sizeof(G.crash), "%s/reencsim.%d.crash", G.dir, (int)getpid());
	G.vk = td_volkey_new_random();
	G.vk2 = td_volkey_new_random();
	G.key_now = G.vk;
	log = td_record_log_new(true);
	if (!G.vk || !G.vk2 || !log || env_init(&E) < 0) {
		fprintf(stderr, "reencsim: out of memory\n");
		return 2;
	}
	rc = format_image(&E);
	if (rc == 0)
		rc = simkit_fill(&E, G.img, MAGIC, &G.old_size, "reencsim");
	if (rc == 0)
		rc = start_rotation(&E, &nb);
	if (rc == 0)
		rc = simkit_copy_file(G.img, G.base, 0);
	trusted0 = G.trusted;
	if (rc == 0)
		rc = switch_recorded(&E, log);
	if (rc == 0 && log->incomplete)
		rc = -ENOMEM;
	for (i = 0; i < log->n; i++) {
		writes += log->ops[i].op != TD_OP_FLUSH;
		flushes += log->ops[i].op == TD_OP_FLUSH;
		if (G.verbose)
			printf("request %zu: %s%s off %llu len %llu\n", i,
			       (const char *[]){"read", "write", "flush", "discard",
						"write-zeroes"}[log->ops[i].op],
			       log->ops[i].flags & TD_REQ_FUA ? " (FUA)" : "",
			       (unsigned long long)log->ops[i].off,
			       (unsigned long long)log->ops[i].len);
	}
	for (i = 0; G.verbose && i < G.ngw; i++)
		printf("trusted generation %llu written after request %zu\n",
		       (unsigned long long)G.gw[i].gen, G.gw[i].after);
	if (rc == 0)
		rc = crash_points(&E, log, trusted0);
	unlink(G.img);
	unlink(G.base);
	unlink(G.crash);
	if (rc < 0) {
		fprintf(stderr, "reencsim: setup failed: %s\n", strerror(-rc));
		return 2;
	}
	printf("reencsim: seed=%llu integrity=v%d%s blocks=%llu requests=%zu writes=%zu "
	       "flushes=%zu gen_writes=%zu crash_images=%llu finished=%llu torn=%llu "
	       "violations=%llu\n",
	       (unsigned long long)G.seed, G.integrity, G.online ? " online" : "",
	       (unsigned long long)nb, log->n, writes, flushes, G.ngw, (unsigned long long)G.images,
	       (unsigned long long)G.finished, (unsigned long long)G.torn,
	       (unsigned long long)G.violations);
	return G.violations ? 1 : 0;
}
