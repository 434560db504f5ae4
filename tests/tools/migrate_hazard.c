/* The migration write-after-write hazard, reproduced as a Xen frontend
 * would meet it:
 *   1. W1 (block B) is sent to the source tapdisk, whose fault layer holds
 *      it before it reaches the image (it is "in flight");
 *   2. migration: tap-ctl pause on the source, then the destination
 *      tapdisk opens the same image (it must get the lock);
 *   3. the frontend reissues W1 at the destination, then writes W2 to B;
 *   4. both tapdisks end. B must hold W2.
 * A correct pause drains W1 before releasing the image, so it lands
 * first. With --broken the source serves the image through the test
 * driver "hazard" (tests/drivers/drv_hazard.c), whose pause releases the
 * image at once while W1 is still held: W1 lands after W2, the hazard.
 *
 * usage: migrate_hazard IMAGE REPETITIONS [--broken]   (the test build's
 * tap-ctl on PATH, TAPDISK_RUNDIR set). Prints "N repetitions, H hazards";
 * exit 0 if no hazard, 3 if there were hazards, 1 on any other failure. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BS 4096

static void die(const char *what)
{
	fprintf(stderr, "migrate_hazard: %s: %s\n", what, nbd_get_error() ? nbd_get_error() : "");
	exit(1);
}

/* Runs a command and returns its first output line (the URI for create). */
static int run(const char *cmd, char *out, size_t len)
{
	FILE *f = popen(cmd, "r");
	int st;

	if (!f)
		return -1;
	if (out) {
		out[0] = 0;
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = 0;
	}
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void fill(uint8_t *b, uint32_t tag)
{
	uint32_t i;

	for (i = 0; i < BS; i += 4)
		memcpy(b + i, &tag, 4);
}

int main(int argc, char **argv)
{
	static uint8_t w1[BS], w2[BS], got[BS];
	char cmd[4096], uri1[1024], uri2[1024];
	const char *img;
	int reps, r, hazards = 0, fd;
	bool broken = argc == 4 && !strcmp(argv[3], "--broken");

	if (argc != 3 && !broken) {
		fprintf(stderr, "usage: %s IMAGE REPETITIONS [--broken]\n", argv[0]);
		return 1;
	}
	img = argv[1];
	reps = atoi(argv[2]);
	/* how long the source's fault layer holds W1 (MIGRATE_HAZARD_DELAY_MS,
	 * default 80: 80-160 ms). The broken-pause control needs the
	 * destination to write before W1 lands, so on a slow build (sanitizers)
	 * it asks for more. */
	int base = getenv("MIGRATE_HAZARD_DELAY_MS") ? atoi(getenv("MIGRATE_HAZARD_DELAY_MS")) : 80;
	if (base < 1)
		base = 80;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for (r = 0; r < reps; r++) {
		struct nbd_handle *h1 = nbd_create(), *h2 = nbd_create();
		uint64_t block = (uint64_t)(rand() % 1024), off = block * BS;
		int delay = base + rand() % (base + 1);
		int64_t c1;

		fill(w1, 0x10000000u | (uint32_t)r);
		fill(w2, 0x20000000u | (uint32_t)r);
		if (broken)
			snprintf(cmd, sizeof(cmd), "tap-ctl create -a 'hazard,delay_ms=%d:%s'",
				 delay, img);
		else
			snprintf(cmd, sizeof(cmd),
				 "tap-ctl create -a 'fault,delay_submit_ms=%d,op=write:aio:%s'",
				 delay, img);
		if (run(cmd, uri1, sizeof(uri1)) != 0)
			die("create source");
		if (!h1 || !h2 || nbd_connect_uri(h1, uri1) < 0)
			die("connect source");
		c1 = nbd_aio_pwrite(h1, w1, BS, off, NBD_NULL_COMPLETION, 0);
		if (c1 < 0)
			die("W1");
		/* make sure W1 reached the source before migration starts */
		while (nbd_aio_is_processing(h1) == 0 && nbd_aio_in_flight(h1) > 0 &&
		       nbd_aio_get_direction(h1) & LIBNBD_AIO_DIRECTION_WRITE)
			nbd_poll(h1, 1);
		usleep((useconds_t)(5000 + rand() % 20000));
		snprintf(cmd, sizeof(cmd), "tap-ctl pause -s '%s'",
			 uri1 + strlen("nbd+unix:///?socket="));
		if (run(cmd, NULL, 0) != 0)
			die("pause source");
		snprintf(cmd, sizeof(cmd), "tap-ctl create -a 'aio:%s'", img);
		if (run(cmd, uri2, sizeof(uri2)) != 0)
			die("create destination (image still locked by the source?)");
		if (nbd_connect_uri(h2, uri2) < 0)
			die("connect destination");
		if (nbd_pwrite(h2, w1, BS, off, 0) < 0 || nbd_pwrite(h2, w2, BS, off, 0) < 0)
			die("writes at the destination");
		/* the source's W1 ends one way or the other */
		while (nbd_aio_command_completed(h1, (uint64_t)c1) == 0)
			if (nbd_poll(h1, 1000) < 0)
				break;
		nbd_shutdown(h2, 0);
		nbd_close(h2);
		nbd_shutdown(h1, 0);
		nbd_close(h1);
		/* the broken source acknowledged W1 at once: give it the time to
		 * land before the source goes */
		if (broken)
			usleep((useconds_t)(2 * delay + 200) * 1000);
		snprintf(cmd, sizeof(cmd), "tap-ctl destroy -s '%s'",
			 uri2 + strlen("nbd+unix:///?socket="));
		if (run(cmd, NULL, 0) != 0)
			die("destroy destination");
		snprintf(cmd, sizeof(cmd), "tap-ctl destroy -s '%s'",
			 uri1 + strlen("nbd+unix:///?socket="));
		if (run(cmd, NULL, 0) != 0)
			die("destroy source");
		fd = open(img, O_RDONLY);
		if (fd < 0 || pread(fd, got, BS, (off_t)off) != BS)
			die("read image");
		close(fd);
		if (memcmp(got, w2, BS) != 0) {
			hazards++;
			fprintf(stderr,
				"repetition %d: block %" PRIu64 " holds %s after migration\n", r,
				block, memcmp(got, w1, BS) == 0 ? "the stale W1" : "neither write");
		}
	}
	printf("%d repetitions, %d hazards\n", reps, hazards);
	return hazards ? 3 : 0;
}
