/*
 * wlog — the guest's checker for xl save / xl restore under a write load
 * (tests/xen/rig.sh, phase "wlog"). Built static; runs inside the PV guest.
 *
 *   wlog DEVICE STOP-DEVICE [THREADS] [SLOTS-PER-THREAD] [MAX-SECONDS]
 *
 * THREADS writers (default 8) each own SLOTS-PER-THREAD 4 KiB slots of
 * DEVICE (default 64) and rewrite them in turn, forever: record n of a
 * writer goes to its slot n % SLOTS, holding the writer, the slot, n and a
 * checksum over the whole block, written with O_DIRECT and acknowledged by
 * fdatasync (a FLUSH on the ring). Before the write the writer notes n as
 * issued for the slot, after the fdatasync as acknowledged. It stops when
 * /sys/block/STOP-DEVICE exists (the rig attaches that disk once the guest
 * has been saved and restored) or after MAX-SECONDS (default 600), then
 * reads every slot back with O_DIRECT and checks:
 *   - the block is whole (magic, owner, checksum): no torn or foreign write;
 *   - its record is at least the last acknowledged one for the slot (no
 *     acknowledged write lost) and at most the last issued one (nothing from
 *     nowhere); a record older than the acknowledged one would be an old
 *     write replayed over a newer one (write-after-write hazard).
 * Prints "WLOG progress ..." every 2 s, and "WLOG-OK ..." or "WLOG-FAIL ...".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define MAGIC 0x574c4f47u /* "WLOG" */

struct writer {
	pthread_t th;
	unsigned id;
	uint64_t *issued, *acked; /* per slot */
	uint64_t writes;
	int err;
};

static int g_fd;
static unsigned g_slots, g_threads;
static volatile int g_stop;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* block: magic, writer, slot, record, then filler from the record, then a
 * checksum of everything before it in the last 8 bytes */
static void fill(uint8_t *b, unsigned w, unsigned slot, uint64_t rec)
{
	uint32_t *h = (uint32_t *)b;
	uint64_t *q = (uint64_t *)b, sum = 0;

	h[0] = MAGIC;
	h[1] = w;
	h[2] = slot;
	h[3] = 0;
	q[2] = rec;
	for (unsigned i = 3; i < BS / 8 - 1; i++)
		q[i] = mix(rec * 1000003u + i + ((uint64_t)w << 40));
	for (unsigned i = 0; i < BS / 8 - 1; i++)
		sum = mix(sum ^ q[i]);
	q[BS / 8 - 1] = sum;
}

static int check(const uint8_t *b, unsigned w, unsigned slot, uint64_t *rec)
{
	const uint32_t *h = (const uint32_t *)b;
	const uint64_t *q = (const uint64_t *)b;
	uint64_t sum = 0;

	if (h[0] != MAGIC || h[1] != w || h[2] != slot)
		return -1;
	for (unsigned i = 0; i < BS / 8 - 1; i++)
		sum = mix(sum ^ q[i]);
	if (sum != q[BS / 8 - 1])
		return -2;
	*rec = q[2];
	return 0;
}

static void *run(void *arg)
{
	struct writer *w = arg;
	uint8_t *b;

	if (posix_memalign((void **)&b, BS, BS)) {
		w->err = ENOMEM;
		return NULL;
	}
	for (uint64_t rec = 1; !g_stop; rec++) {
		unsigned s = (unsigned)(rec % g_slots);
		off_t off = ((off_t)w->id * g_slots + s) * BS;

		fill(b, w->id, s, rec);
		w->issued[s] = rec;
		if (pwrite(g_fd, b, BS, off) != BS || fdatasync(g_fd)) {
			w->err = errno ? errno : EIO;
			fprintf(stderr, "WLOG writer %u: record %llu: %s\n", w->id,
				(unsigned long long)rec, strerror(w->err));
			break;
		}
		w->acked[s] = rec;
		w->writes++;
	}
	free(b);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char stop[128];
	struct writer *w;
	uint8_t *b;
	double t0, last, max;
	unsigned bad = 0, checked = 0;
	uint64_t total = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: wlog DEVICE STOP-DEVICE [THREADS] [SLOTS] [MAX-SECONDS]\n");
		return 2;
	}
	g_threads = argc > 3 ? (unsigned)atoi(argv[3]) : 8;
	g_slots = argc > 4 ? (unsigned)atoi(argv[4]) : 64;
	max = argc > 5 ? atof(argv[5]) : 600;
	if (!g_threads || g_threads > 64 || !g_slots || g_slots > 4096)
		return 2;
	snprintf(stop, sizeof(stop), "/sys/block/%s", argv[2]);
	g_fd = open(argv[1], O_RDWR | O_DIRECT);
	if (g_fd < 0) {
		printf("WLOG-FAIL open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	w = calloc(g_threads, sizeof(*w));
	for (unsigned i = 0; i < g_threads; i++) {
		w[i].id = i;
		w[i].issued = calloc(g_slots, 8);
		w[i].acked = calloc(g_slots, 8);
		pthread_create(&w[i].th, NULL, run, &w[i]);
	}
	t0 = last = now();
	while (access(stop, F_OK) != 0 && now() - t0 < max) {
		int errs = 0;

		usleep(200000);
		for (unsigned i = 0; i < g_threads; i++)
			errs |= w[i].err;
		if (errs)
			break;
		if (now() - last >= 2) {
			total = 0;
			for (unsigned i = 0; i < g_threads; i++)
				total += w[i].writes;
			printf("WLOG progress writes=%llu t=%.0f\n", (unsigned long long)total,
			       now() - t0);
			fflush(stdout);
			last = now();
		}
	}
	g_stop = 1;
	total = 0;
	for (unsigned i = 0; i < g_threads; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].writes;
		if (w[i].err) {
			printf("WLOG-FAIL writer %u stopped: %s\n", i, strerror(w[i].err));
			return 1;
		}
	}
	if (posix_memalign((void **)&b, BS, BS))
		return 1;
	for (unsigned i = 0; i < g_threads; i++)
		for (unsigned s = 0; s < g_slots; s++) {
			off_t off = ((off_t)i * g_slots + s) * BS;
			uint64_t rec = 0;
			int rc;

			if (!w[i].issued[s])
				continue; /* never written */
			checked++;
			if (pread(g_fd, b, BS, off) != BS) {
				printf("WLOG-FAIL read slot %u/%u: %s\n", i, s, strerror(errno));
				return 1;
			}
			rc = check(b, i, s, &rec);
			if (rc < 0) {
				printf(
				    "WLOG-FAIL writer %u slot %u: %s block (acked record %llu)\n",
				    i, s, rc == -1 ? "foreign or empty" : "torn",
				    (unsigned long long)w[i].acked[s]);
				bad++;
			} else if (rec < w[i].acked[s] || rec > w[i].issued[s]) {
				printf(
				    "WLOG-FAIL writer %u slot %u: record %llu, acknowledged %llu, "
				    "issued %llu%s\n",
				    i, s, (unsigned long long)rec,
				    (unsigned long long)w[i].acked[s],
				    (unsigned long long)w[i].issued[s],
				    rec < w[i].acked[s]
					? " (an acknowledged write lost or overwritten "
					  "by an older one)"
					: "");
				bad++;
			}
		}
	if (bad) {
		printf("WLOG-FAIL %u of %u slots wrong after %llu writes\n", bad, checked,
		       (unsigned long long)total);
		return 1;
	}
	printf("WLOG-OK writes=%llu slots=%u threads=%u seconds=%.1f\n", (unsigned long long)total,
	       checked, g_threads, now() - t0);
	return 0;
}
