/*
 * iobench — O_DIRECT throughput in the guest (tests/xen/rig.sh, phase
 * "bench"). Built static; runs inside the PV guest.
 *
 *   iobench DEVICE LABEL SECONDS [QD] [SPAN-MIB]
 *
 * For SECONDS each: sequential 1 MiB reads, sequential 1 MiB writes, random
 * 4 KiB reads, random 4 KiB writes, over the first SPAN-MIB (default 192)
 * of DEVICE, with QD threads (default 1) each keeping one request in
 * flight. One line per test:
 *   IOBENCH label=L test=seqread bs=1048576 qd=1 secs=5.00 ops=N MBps=X IOPS=Y
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

struct job {
	pthread_t th;
	int fd;
	int write, random;
	size_t bs;
	uint64_t span, start;
	double end;
	uint64_t ops;
	unsigned seed;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct job *j = arg;
	uint8_t *buf;
	uint64_t blocks = j->span / j->bs, pos = j->start / j->bs;

	if (posix_memalign((void **)&buf, 4096, j->bs)) {
		j->err = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < j->bs; i++)
		buf[i] = (uint8_t)(i * 31 + j->seed);
	while (now() < j->end) {
		uint64_t b = j->random ? (uint64_t)rand_r(&j->seed) % blocks : pos++ % blocks;
		ssize_t n = j->write ? pwrite(j->fd, buf, j->bs, (off_t)(b * j->bs))
				     : pread(j->fd, buf, j->bs, (off_t)(b * j->bs));

		if (n != (ssize_t)j->bs) {
			j->err = n < 0 ? errno : EIO;
			break;
		}
		j->ops++;
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int write, random;
		size_t bs;
	} tests[] = {
	    {"seqread", 0, 0, 1 << 20},
	    {"seqwrite", 1, 0, 1 << 20},
	    {"randread", 0, 1, 4096},
	    {"randwrite", 1, 1, 4096},
	};
	double secs;
	unsigned qd;
	uint64_t span;
	int fd;

	if (argc < 4) {
		fprintf(stderr, "usage: iobench DEVICE LABEL SECONDS [QD] [SPAN-MIB]\n");
		return 2;
	}
	secs = atof(argv[3]);
	qd = argc > 4 ? (unsigned)atoi(argv[4]) : 1;
	span = (argc > 5 ? (uint64_t)atoi(argv[5]) : 192) << 20;
	if (qd < 1 || qd > 32 || secs <= 0)
		return 2;
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0) {
		printf("IOBENCH-FAIL open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (unsigned t = 0; t < sizeof(tests) / sizeof(tests[0]); t++) {
		struct job j[32];
		uint64_t ops = 0;
		double t0 = now(), el;
		int err = 0;

		memset(j, 0, sizeof(j));
		for (unsigned i = 0; i < qd; i++) {
			j[i].fd = fd;
			j[i].write = tests[t].write;
			j[i].random = tests[t].random;
			j[i].bs = tests[t].bs;
			j[i].span = span;
			j[i].start = span / qd * i;
			j[i].end = t0 + secs;
			j[i].seed = 12345u + i * 7919u + t;
			pthread_create(&j[i].th, NULL, run, &j[i]);
		}
		for (unsigned i = 0; i < qd; i++) {
			pthread_join(j[i].th, NULL);
			ops += j[i].ops;
			if (j[i].err)
				err = j[i].err;
		}
		el = now() - t0;
		if (err) {
			printf("IOBENCH-FAIL label=%s test=%s: %s\n", argv[2], tests[t].name,
			       strerror(err));
			return 1;
		}
		printf("IOBENCH label=%s test=%s bs=%zu qd=%u secs=%.2f ops=%llu MBps=%.2f "
		       "IOPS=%.1f\n",
		       argv[2], tests[t].name, tests[t].bs, qd, el, (unsigned long long)ops,
		       ops * (double)tests[t].bs / el / 1e6, ops / el);
		fflush(stdout);
	}
	return 0;
}
