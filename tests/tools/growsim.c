/* growsim: power-loss simulation of an online grow (tap-ctl resize) of a
 * crypt image, with and without integrity (docs/FORMAT.md "Growing").
 *
 *   growsim [--seed N] [--dir DIR] [--integrity none|1|2] [--grow BYTES]
 *           [--break header-first] [--verbose]
 *
 * 1. Formats a small raw image in DIR (a crypt header under a random
 *    volume key, no keyslot; integrity metadata of version 1 or 2, or
 *    none) and writes a pattern to every third data block (but those
 *    of every fourth tag page, which stay all zero) through
 *    crypt:aio, then closes it cleanly: the "old" image.
 * 2. Grows it by BYTES (default 6 MiB; 4 KiB puts the new integrity
 *    metadata past a gap) through crypt -> [integrity ->] record -> aio:
 *    the record layer logs every write, write-zeroes and flush the grow
 *    sends to the image, with its data. The grow is synchronous, so each
 *    request completes before the next is issued.
 * 3. For every crash point k (the first k requests issued and completed,
 *    nothing after) builds the images a power loss there can leave: the
 *    old image extended to the grown file size (the file grows first,
 *    synced), every request before the last completed flush, and each
 *    subset, in issue order, of the requests after it (all subsets when
 *    there are at most 8, else 256 random ones), plus, for each of those
 *    requests, the image in which it is torn at a random 512-byte boundary
 *    (only its first part landed) over the rest of them. The file has its
 *    new size from the point the image layer's grow (logged as a flush:
 *    aio syncs the file) was issued, the old size before.
 * 4. Opens each with a fresh crypt:aio chain (the key from memory) and
 *    checks: the open succeeds; the size is the old or the new one (the
 *    new one once the whole grow completed, the old one before anything
 *    was written); every block reads without an error; the old blocks hold
 *    their pattern (or zeros where none was written); every block past the
 *    old size reads as zeros. On a grown image it writes the first and the
 *    last new block, closes cleanly, reopens and reads them back.
 *
 * --break header-first runs against a crypt layer broken on purpose (a
 * switch of the test build): it commits the new size in the header before
 * the layers below have grown; the run must then report violations.
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
#define MAGIC 0x4d49535754524f47ull /* "GROWSIM" */
#define ALL_SUBSETS_MAX 8
#define RANDOM_SUBSETS 256

static struct {
	uint64_t seed, grow;
	int integrity; /* 0 none, 1, 2 */
	bool verbose;
	const char *dir;
	char img[4096], base[4096], crash[4096];
	struct td_volkey *vk;
	uint64_t old_size, new_size, new_file;
	uint64_t images, grown, violations, torn;
	uint64_t rng;
} G;

static uint64_t rnd(void)
{
	return simkit_rnd(&G.rng);
}

static int get_key(void *opaque, const uint8_t uuid[16], const uint8_t id[TD_IMAGE_ID_LEN],
		   const char *where, struct td_volkey **out, char *err, size_t errlen)
{
	(void)opaque, (void)uuid, (void)id, (void)where;
	return simkit_key_copy(G.vk, out, err, errlen);
}

static int env_init(struct simkit_env *e)
{
	int rc = simkit_env_init(e);

	e->ctx.nolock = true;
	e->ctx.get_key = get_key;
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

/* ---- 1. the old image ------------------------------------------------------- */

static int format_image(struct simkit_env *e)
{
	return simkit_format(e, G.img, IMAGE_SIZE, G.integrity, G.vk, "growsim");
}

/* ---- 2. the grow, recorded ------------------------------------------------- */

static int grow_recorded(struct simkit_env *e, struct td_record_log *log)
{
	struct td_chain *c;
	char spec[4200], err[1024];
	struct stat st;
	int rc;

	td_record_attach(log);
	snprintf(spec, sizeof(spec), "crypt:record:aio:%s", G.img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	td_record_attach(NULL);
	if (rc < 0) {
		fprintf(stderr, "growsim: open %s: %s\n", spec, err);
		return rc;
	}
	G.new_size = G.old_size + G.grow;
	rc = td_layer_grow(c->top, G.new_size, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "growsim: grow: %s\n", err);
	td_chain_close(c);
	if (rc == 0 && stat(G.img, &st) < 0)
		rc = -errno;
	G.new_file = (uint64_t)st.st_size;
	return rc;
}

/* ---- 3./4. crash images and their checks ------------------------------------ */

static int read_block(struct td_layer *top, uint64_t blk, uint8_t *buf)
{
	return td_layer_sync_io(top, TD_OP_READ, blk * BS, buf, BS, 0);
}

/* Opens the crash image and checks it; must_old / must_new say what the
 * point allows. */
static void check_image(struct simkit_env *e, const char *what, bool must_old, bool must_new)
{
	static const uint8_t zero[BS];
	struct td_chain *c;
	char spec[4200], err[1024];
	uint8_t *buf = td_buf_get(256 * 1024), want[BS];
	uint64_t size, blk, k;
	int rc;

	G.images++;
	snprintf(spec, sizeof(spec), "crypt:aio:%s", G.crash);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc < 0) {
		violation(what, "does not open: %s", err);
		goto out;
	}
	size = c->top->size;
	if (size != G.old_size && size != G.new_size)
		violation(what, "size %llu is neither the old nor the new one",
			  (unsigned long long)size);
	else if (must_old && size != G.old_size)
		violation(what, "grown before anything was written");
	else if (must_new && size != G.new_size)
		violation(what, "not grown after the whole grow completed");
	if (size == G.new_size)
		G.grown++;
	for (blk = 0; blk < size / BS; blk += 64) {
		uint64_t n = size / BS - blk < 64 ? size / BS - blk : 64;

		rc = td_layer_sync_io(c->top, TD_OP_READ, blk * BS, buf, n * BS, 0);
		if (rc < 0) {
			violation(what, "read of blocks %llu+%llu failed: %s",
				  (unsigned long long)blk, (unsigned long long)n, strerror(-rc));
			break;
		}
		for (k = 0; k < n; k++) {
			uint64_t b = blk + k;
			const uint8_t *got = buf + k * BS;

			if (b < G.old_size / BS && simkit_written(b)) {
				pattern(want, b);
				if (memcmp(got, want, BS))
					violation(what, "old block %llu lost its data",
						  (unsigned long long)b);
			} else if (memcmp(got, zero, BS)) {
				violation(what, "block %llu does not read as zeros",
					  (unsigned long long)b);
			}
		}
	}
	if (size == G.new_size) {
		/* the new range takes writes, and they survive a clean reopen */
		uint64_t first = G.old_size / BS, last = G.new_size / BS - 1;

		pattern(want, first);
		rc = td_layer_sync_io(c->top, TD_OP_WRITE, first * BS, want, BS, 0);
		pattern(buf, last);
		if (rc == 0)
			rc = td_layer_sync_io(c->top, TD_OP_WRITE, last * BS, buf, BS, 0);
		if (rc == 0)
			rc = td_chain_close_sync(c);
		else
			td_chain_close(c);
		c = NULL;
		if (rc == 0)
			rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
		if (rc == 0 && c->top->size != G.new_size)
			rc = -EUCLEAN;
		if (rc == 0 && (rc = read_block(c->top, first, buf)) == 0 && memcmp(buf, want, BS))
			rc = -EUCLEAN;
		pattern(want, last);
		if (rc == 0 && (rc = read_block(c->top, last, buf)) == 0 && memcmp(buf, want, BS))
			rc = -EUCLEAN;
		if (rc < 0)
			violation(what, "the grown image does not keep writes to the new range: %s",
				  strerror(-rc));
	}
	if (c)
		td_chain_close(c);
out:
	td_buf_put(buf, 256 * 1024);
}

/* The image for crash point k with the pending requests in mask applied,
 * and request `torn` (>= 0) applied only up to `tear` bytes. */
static int build(const struct td_record_log *log, size_t k, size_t durable_end, const size_t *pend,
		 unsigned npend, uint64_t mask, int torn, uint64_t tear)
{
	uint64_t size = IMAGE_SIZE;
	int fd, rc;

	/* the file has its new size once the grow below was issued (it is
	 * synced before it returns) */
	for (size_t i = 0; i < k; i++)
		if (log->ops[i].grow)
			size = G.new_file;
	rc = simkit_copy_file(G.base, G.crash, size);
	size_t i;

	if (rc < 0)
		return rc;
	fd = open(G.crash, O_RDWR);
	if (fd < 0)
		return -errno;
	for (i = 0; rc == 0 && i < durable_end; i++)
		rc = simkit_apply(fd, &log->ops[i], UINT64_MAX);
	for (i = 0; rc == 0 && i < npend; i++) {
		if ((int)i == torn)
			rc = simkit_apply(fd, &log->ops[pend[i]], tear);
		else if (mask >> i & 1)
			rc = simkit_apply(fd, &log->ops[pend[i]], UINT64_MAX);
	}
	close(fd);
	return rc;
}

static int crash_points(struct simkit_env *e, const struct td_record_log *log)
{
	char what[128];
	size_t k, i, durable_end, pend[64];
	unsigned npend;
	int rc;

	for (k = 0; k <= log->n; k++) {
		/* requests 0..k-1 issued and completed; the last flush among
		 * them makes everything issued before it durable */
		durable_end = 0;
		for (i = 0; i < k; i++)
			if (log->ops[i].op == TD_OP_FLUSH)
				durable_end = i;
		npend = 0;
		for (i = durable_end; i < k && npend < 64; i++)
			if (log->ops[i].op != TD_OP_FLUSH)
				pend[npend++] = i;
		if (npend == 64)
			return -E2BIG;
		uint64_t nsub = npend <= ALL_SUBSETS_MAX ? 1ull << npend : RANDOM_SUBSETS;

		for (uint64_t sub = 0; sub < nsub; sub++) {
			uint64_t mask = npend <= ALL_SUBSETS_MAX ? sub : rnd();
			bool complete = k == log->n && (npend == 0 || mask == (1ull << npend) - 1);

			rc = build(log, k, durable_end, pend, npend, mask, -1, 0);
			if (rc < 0)
				return rc;
			snprintf(what, sizeof(what), "point %zu/%zu subset %#llx", k, log->n,
				 (unsigned long long)mask);
			check_image(e, what, k == 0, k == log->n && complete);
		}
		/* one of them torn over all the others */
		for (i = 0; i < npend; i++) {
			const struct td_record_op *op = &log->ops[pend[i]];
			uint64_t tear;

			if (op->op != TD_OP_WRITE || op->len < 1024)
				continue;
			tear = 512 * (1 + rnd() % (op->len / 512 - 1));
			rc = build(log, k, durable_end, pend, npend, (1ull << npend) - 1, (int)i,
				   tear);
			if (rc < 0)
				return rc;
			G.torn++;
			snprintf(what, sizeof(what), "point %zu/%zu request %zu torn at %llu", k,
				 log->n, pend[i], (unsigned long long)tear);
			check_image(e, what, false, false);
		}
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: growsim [--seed N] [--dir DIR] [--integrity none|1|2] [--grow BYTES] "
		   "[--break header-first] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"seed", required_argument, NULL, 's'},	 {"dir", required_argument, NULL, 'd'},
	    {"integrity", required_argument, NULL, 'i'}, {"grow", required_argument, NULL, 'g'},
	    {"verbose", no_argument, NULL, 'v'},	 {"help", no_argument, NULL, 'h'},
	    {"break", required_argument, NULL, 'B'},	 {NULL, 0, NULL, 0},
	};
	struct td_record_log *log;
	static struct simkit_env E;
	size_t i, writes = 0, flushes = 0;
	int opt, rc;

	td_drivers_set(td_registry());
	G.seed = (uint64_t)getpid() * 2654435761u;
	G.grow = 6u << 20;
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
			G.integrity = !strcmp(optarg, "none") ? 0 : atoi(optarg);
			if (G.integrity < 0 || G.integrity > 2) {
				usage(stderr);
				return 2;
			}
			break;
		case 'g':
			G.grow = strtoull(optarg, NULL, 0);
			if (!G.grow || G.grow % BS) {
				usage(stderr);
				return 2;
			}
			break;
		case 'v':
			G.verbose = true;
			break;
		case 'B':
			if (strcmp(optarg, "header-first")) {
				usage(stderr);
				return 2;
			}
			td_crypt_grow_test_break(true);
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
	snprintf(G.img, sizeof(G.img), "%s/growsim.%d.img", G.dir, (int)getpid());
	snprintf(G.base, sizeof(G.base), "%s/growsim.%d.base", G.dir, (int)getpid());
	snprintf(G.crash, sizeof(G.crash), "%s/growsim.%d.crash", G.dir, (int)getpid());
	G.vk = td_volkey_new_random();
	log = td_record_log_new(true);
	if (!G.vk || !log || env_init(&E) < 0) {
		fprintf(stderr, "growsim: out of memory\n");
		return 2;
	}
	rc = format_image(&E);
	if (rc == 0)
		rc = simkit_fill(&E, G.img, MAGIC, &G.old_size, "growsim");
	if (rc == 0)
		rc = simkit_copy_file(G.img, G.base, 0);
	if (rc == 0)
		rc = grow_recorded(&E, log);
	if (rc == 0 && log->incomplete)
		rc = -ENOMEM;
	for (i = 0; i < log->n; i++) {
		writes += log->ops[i].op != TD_OP_FLUSH;
		flushes += log->ops[i].op == TD_OP_FLUSH;
		if (G.verbose)
			printf("request %zu: %s off %llu len %llu\n", i,
			       log->ops[i].grow
				   ? "grow"
				   : (const char *[]){"read", "write", "flush", "discard",
						      "write-zeroes"}[log->ops[i].op],
			       (unsigned long long)log->ops[i].off,
			       (unsigned long long)log->ops[i].len);
	}
	if (rc == 0)
		rc = crash_points(&E, log);
	unlink(G.img);
	unlink(G.base);
	unlink(G.crash);
	if (rc < 0) {
		fprintf(stderr, "growsim: setup failed: %s\n", strerror(-rc));
		return 2;
	}
	printf("growsim: seed=%llu integrity=%s old=%llu new=%llu requests=%zu writes=%zu "
	       "flushes=%zu crash_images=%llu grown=%llu torn=%llu violations=%llu\n",
	       (unsigned long long)G.seed, G.integrity ? (G.integrity == 1 ? "v1" : "v2") : "none",
	       (unsigned long long)G.old_size, (unsigned long long)G.new_size, log->n, writes,
	       flushes, (unsigned long long)G.images, (unsigned long long)G.grown,
	       (unsigned long long)G.torn, (unsigned long long)G.violations);
	return G.violations ? 1 : 0;
}
