/* nbd_storm: a random-write storm over NBD that remembers what must have
 * survived, for kill -9 tests.
 *
 *   nbd_storm storm  URI STATE [SECONDS]   write until the server dies (or
 *                                          SECONDS pass), save STATE
 *   nbd_storm verify URI STATE             read the whole disk, check it
 *                                          against STATE, update STATE
 *
 * Every 4 KiB block written holds (block, version) with a version unique
 * across the whole run, so anything read back can be attributed. STATE
 * keeps per block the lowest acceptable version `lo` (the newest one
 * acknowledged before the issue of a flush that completed) and the highest
 * one ever issued `hi`. verify accepts a block that holds a version v with
 * lo <= v <= hi, or zeros when lo is 0; any read error fails it. Writes
 * are 4-64 KiB at queue depth 16, never two in flight on one block, with a
 * flush every 16 writes (some FUA: those count as durable when acked).
 *
 * Exit status: 0 ok (storm: the server went away or time ran out), 1 a
 * check failed, 2 usage or setup error. */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BS 4096u
#define MAGIC 0x4d524f5453444e42ull /* "BNDSTORM" */
#define STATE_MAGIC 0x31455441545342ull
#define QD 16
#define MAX_BLOCKS 16

struct state {
	uint64_t nblocks, next_version;
	uint64_t *lo, *hi;
};

struct done_write { /* acked, waiting for a flush to make it durable */
	uint64_t b0, n;
	uint64_t v[MAX_BLOCKS];
	struct done_write *next;
};

struct wop {
	bool used, fua;
	struct done_write w;
	uint8_t *buf;
};

struct flush_op {
	bool used;
	struct done_write *covered; /* acked before this flush was issued */
};

static struct state S;
static struct wop ops[QD];
static struct flush_op flushes[4];
static struct done_write *acked_list; /* acked since the last flush issue */
static uint8_t *busy;
static unsigned inflight, failures;
static uint64_t n_acked, n_flushed, n_issued;

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void pattern(uint8_t *p, uint64_t b, uint64_t v)
{
	uint64_t w[BS / 8], i;

	w[0] = MAGIC;
	w[1] = b;
	w[2] = v;
	for (i = 3; i < BS / 8; i++)
		w[i] = (b * 0x9e3779b97f4a7c15ull) ^ (v * 0xbf58476d1ce4e5b9ull) ^ (i << 48) ^ i;
	memcpy(p, w, BS);
}

static int load_state(const char *path, uint64_t nblocks)
{
	FILE *f = fopen(path, "rb");
	uint64_t hdr[3];

	S.nblocks = nblocks;
	S.next_version = 1;
	S.lo = calloc(nblocks, 8);
	S.hi = calloc(nblocks, 8);
	if (!S.lo || !S.hi)
		return -1;
	if (!f)
		return 0; /* a fresh disk: nothing written yet */
	if (fread(hdr, 8, 3, f) != 3 || hdr[0] != STATE_MAGIC || hdr[1] != nblocks ||
	    fread(S.lo, 8, nblocks, f) != nblocks || fread(S.hi, 8, nblocks, f) != nblocks) {
		fprintf(stderr, "nbd_storm: %s is not a state file for this disk\n", path);
		fclose(f);
		return -1;
	}
	S.next_version = hdr[2];
	fclose(f);
	return 0;
}

static int save_state(const char *path)
{
	char tmp[4096];
	uint64_t hdr[3] = {STATE_MAGIC, S.nblocks, S.next_version};
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "wb");
	if (!f || fwrite(hdr, 8, 3, f) != 3 || fwrite(S.lo, 8, S.nblocks, f) != S.nblocks ||
	    fwrite(S.hi, 8, S.nblocks, f) != S.nblocks || fclose(f) != 0 || rename(tmp, path) < 0) {
		perror("nbd_storm: save state");
		return -1;
	}
	return 0;
}

static void make_durable(const struct done_write *w)
{
	uint64_t k;

	for (k = 0; k < w->n; k++)
		if (w->v[k] > S.lo[w->b0 + k])
			S.lo[w->b0 + k] = w->v[k];
}

static int write_done(void *opaque, int *error)
{
	struct wop *o = opaque;
	struct done_write *d;
	uint64_t k;

	inflight--;
	o->used = false;
	for (k = 0; k < o->w.n; k++)
		busy[o->w.b0 + k] = 0;
	if (*error)
		return 1; /* the server died or failed it: it may or may not have landed */
	n_acked++;
	if (o->fua) {
		make_durable(&o->w);
		return 1;
	}
	d = malloc(sizeof(*d));
	if (!d)
		abort();
	*d = o->w;
	d->next = acked_list;
	acked_list = d;
	return 1;
}

static int flush_done(void *opaque, int *error)
{
	struct flush_op *f = opaque;
	struct done_write *d;

	inflight--;
	while ((d = f->covered)) {
		f->covered = d->next;
		if (!*error)
			make_durable(d);
		free(d);
	}
	if (!*error)
		n_flushed++;
	f->used = false;
	return 1;
}

static int issue_write(struct nbd_handle *h)
{
	struct wop *o = NULL;
	uint64_t n = 1 + rnd() % MAX_BLOCKS, b0, k;
	int i, tries;

	for (i = 0; i < QD && !o; i++)
		if (!ops[i].used)
			o = &ops[i];
	if (!o)
		return 0;
	for (tries = 0; tries < 8; tries++) {
		/* half of the writes go to the first 1024 blocks: many versions */
		uint64_t span = rnd() % 2 && S.nblocks > 1024 ? 1024 : S.nblocks;

		b0 = rnd() % (span - n + 1);
		for (k = 0; k < n && !busy[b0 + k]; k++)
			;
		if (k == n)
			break;
	}
	if (tries == 8)
		return 0;
	o->used = true;
	o->w.b0 = b0;
	o->w.n = n;
	o->w.next = NULL;
	o->fua = rnd() % 10 == 0;
	for (k = 0; k < n; k++) {
		o->w.v[k] = S.next_version++;
		if (o->w.v[k] > S.hi[b0 + k])
			S.hi[b0 + k] = o->w.v[k];
		busy[b0 + k] = 1;
		pattern(o->buf + k * BS, b0 + k, o->w.v[k]);
	}
	if (nbd_aio_pwrite(h, o->buf, n * BS, b0 * BS,
			   (nbd_completion_callback){.callback = write_done, .user_data = o},
			   o->fua ? LIBNBD_CMD_FLAG_FUA : 0) < 0)
		return -1;
	inflight++;
	n_issued++;
	return 1;
}

static int issue_flush(struct nbd_handle *h)
{
	struct flush_op *f = NULL;
	int i;

	for (i = 0; i < 4 && !f; i++)
		if (!flushes[i].used)
			f = &flushes[i];
	if (!f)
		return 0;
	f->used = true;
	f->covered = acked_list;
	acked_list = NULL;
	if (nbd_aio_flush(h, (nbd_completion_callback){.callback = flush_done, .user_data = f}, 0) <
	    0) {
		acked_list = f->covered;
		f->used = false;
		return -1;
	}
	inflight++;
	return 1;
}

static int storm(struct nbd_handle *h, const char *state, double seconds)
{
	struct timespec t0, t;
	unsigned since_flush = 0;
	int i;

	busy = calloc(S.nblocks, 1);
	for (i = 0; i < QD; i++)
		ops[i].buf = aligned_alloc(BS, MAX_BLOCKS * BS);
	if (!busy)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >
		    seconds)
			break;
		while (inflight < QD) {
			int r = since_flush >= 16 ? issue_flush(h) : issue_write(h);

			if (r < 0)
				goto dead;
			if (r == 0)
				break;
			since_flush = since_flush >= 16 ? 0 : since_flush + 1;
		}
		if (nbd_poll(h, 1000) < 0 || nbd_aio_is_dead(h))
			goto dead;
	}
	/* time is up and the server is still there: drain and flush */
	while (inflight)
		if (nbd_poll(h, 1000) < 0)
			goto dead;
	if (issue_flush(h) < 0)
		goto dead;
	while (inflight)
		if (nbd_poll(h, 1000) < 0)
			goto dead;
	printf("nbd_storm: time is up: %" PRIu64 " writes acked, %" PRIu64 " flushes\n", n_acked,
	       n_flushed);
	return save_state(state) < 0 ? 2 : 0;
dead:
	printf("nbd_storm: the server went away (%s) after %" PRIu64 " writes issued, %" PRIu64
	       " acked, %" PRIu64 " flushes completed\n",
	       nbd_get_error() ? nbd_get_error() : "closed", n_issued, n_acked, n_flushed);
	return save_state(state) < 0 ? 2 : 0;
}

static int verify(struct nbd_handle *h, const char *state)
{
	const uint64_t chunk = 256;
	uint8_t *buf = aligned_alloc(BS, chunk * BS), want[BS];
	static const uint8_t zero[BS];
	uint64_t b, k, durable = 0, zeros = 0, newer = 0;

	if (!buf)
		return 2;
	for (b = 0; b < S.nblocks; b += chunk) {
		uint64_t n = S.nblocks - b < chunk ? S.nblocks - b : chunk;

		if (nbd_pread(h, buf, n * BS, b * BS, 0) < 0) {
			printf("FAIL: read of blocks %" PRIu64 "+%" PRIu64 ": %s\n", b, n,
			       nbd_get_error());
			failures++;
			continue;
		}
		for (k = 0; k < n; k++) {
			const uint8_t *p = buf + k * BS;
			uint64_t w[3], blk = b + k;

			if (!memcmp(p, zero, BS)) {
				if (S.lo[blk]) {
					printf("FAIL: block %" PRIu64
					       " reads as zeros, version %" PRIu64 " was flushed\n",
					       blk, S.lo[blk]);
					failures++;
				}
				S.lo[blk] = S.hi[blk] = 0;
				zeros++;
				continue;
			}
			memcpy(w, p, sizeof(w));
			pattern(want, blk, w[2]);
			if (w[0] != MAGIC || w[1] != blk || memcmp(want, p, BS)) {
				printf("FAIL: block %" PRIu64 " holds data nobody wrote there\n",
				       blk);
				failures++;
				continue;
			}
			if (w[2] < S.lo[blk] || w[2] > S.hi[blk]) {
				printf("FAIL: block %" PRIu64 " holds version %" PRIu64
				       ", expected %" PRIu64 "..%" PRIu64 "\n",
				       blk, w[2], S.lo[blk], S.hi[blk]);
				failures++;
				continue;
			}
			if (w[2] > S.lo[blk])
				newer++;
			/* what the restarted server returns is now the floor */
			S.lo[blk] = S.hi[blk] = w[2];
			durable++;
		}
	}
	printf("nbd_storm: verified %" PRIu64 " blocks: %" PRIu64 " written (%" PRIu64
	       " newer than their last flush), %" PRIu64 " zero, %u failures\n",
	       S.nblocks, durable, newer, zeros, failures);
	free(buf);
	if (save_state(state) < 0)
		return 2;
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct nbd_handle *h;
	int64_t size;
	int rc;

	if (argc < 4 || (strcmp(argv[1], "storm") && strcmp(argv[1], "verify"))) {
		fprintf(stderr, "usage: nbd_storm storm|verify URI STATE [SECONDS]\n");
		return 2;
	}
	rng ^= (uint64_t)time(NULL) * 2654435761u;
	h = nbd_create();
	if (!h || nbd_connect_uri(h, argv[2]) < 0) {
		fprintf(stderr, "nbd_storm: connect: %s\n", nbd_get_error());
		return 2;
	}
	size = nbd_get_size(h);
	if (size < (int64_t)(MAX_BLOCKS * BS) || load_state(argv[3], (uint64_t)size / BS) < 0)
		return 2;
	if (!strcmp(argv[1], "storm"))
		rc = storm(h, argv[3], argc > 4 ? atof(argv[4]) : 30);
	else
		rc = verify(h, argv[3]);
	if (!nbd_aio_is_dead(h))
		nbd_shutdown(h, 0);
	nbd_close(h);
	return rc;
}
