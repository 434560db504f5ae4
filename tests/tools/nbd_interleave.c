/* Two NBD connections write interleaved 512-byte sectors of the same
 * 4 KiB blocks at the same time (even sectors on one, odd on the other),
 * all requests in flight together; then every sector must hold what its
 * writer wrote. A lost read-modify-write update shows up as a sector with
 * the other connection's or the old contents.
 *
 * usage: nbd_interleave URI ROUNDS */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 64
#define SECT 512

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, nbd_get_error());
	exit(1);
}

static void fill(uint8_t *b, unsigned round, unsigned blk, unsigned sec)
{
	unsigned i;

	for (i = 0; i < SECT; i += 8) {
		uint64_t v =
		    ((uint64_t)round << 40) | ((uint64_t)blk << 20) | ((uint64_t)sec << 12) | i;

		memcpy(b + i, &v, 8);
	}
}

int main(int argc, char **argv)
{
	struct nbd_handle *h[2];
	static uint8_t bufs[2][BLOCKS * 4][SECT];
	static uint8_t rd[BLOCKS * 4096], want[SECT];
	unsigned rounds, r, b, s, bad = 0;
	int c;

	if (argc != 3) {
		fprintf(stderr, "usage: %s URI ROUNDS\n", argv[0]);
		return 2;
	}
	rounds = (unsigned)atoi(argv[2]);
	for (c = 0; c < 2; c++) {
		h[c] = nbd_create();
		if (!h[c] || nbd_connect_uri(h[c], argv[1]) < 0)
			die("connect");
	}
	for (r = 1; r <= rounds; r++) {
		/* queue everything on both connections before polling either */
		for (b = 0; b < BLOCKS; b++) {
			/* shift the sector order per round so arrival order varies */
			for (s = 0; s < 8; s++) {
				unsigned sec = (s + r + b) % 8, conn = sec % 2;
				uint8_t *buf = bufs[conn][b * 4 + sec / 2];

				fill(buf, r, b, sec);
				if (nbd_aio_pwrite(h[conn], buf, SECT,
						   (uint64_t)b * 4096 + sec * SECT,
						   NBD_NULL_COMPLETION, 0) < 0)
					die("aio_pwrite");
			}
		}
		while (nbd_aio_in_flight(h[0]) > 0 || nbd_aio_in_flight(h[1]) > 0) {
			for (c = 0; c < 2; c++)
				if (nbd_aio_in_flight(h[c]) > 0 && nbd_poll(h[c], 1) < 0)
					die("poll");
		}
		/* collect command results (errors) */
		for (c = 0; c < 2; c++) {
			int64_t ck;

			while ((ck = nbd_aio_peek_command_completed(h[c])) > 0)
				if (nbd_aio_command_completed(h[c], (uint64_t)ck) < 0)
					die("write failed");
		}
		if (nbd_pread(h[0], rd, sizeof(rd), 0, 0) < 0)
			die("pread");
		for (b = 0; b < BLOCKS; b++)
			for (s = 0; s < 8; s++) {
				fill(want, r, b, s);
				if (memcmp(rd + b * 4096 + s * SECT, want, SECT) != 0) {
					if (bad < 10)
						fprintf(
						    stderr,
						    "round %u block %u sector %u: lost update\n", r,
						    b, s);
					bad++;
				}
			}
	}
	for (c = 0; c < 2; c++) {
		nbd_shutdown(h[c], 0);
		nbd_close(h[c]);
	}
	printf("%u rounds x %u blocks x 8 sectors from 2 connections: %u lost updates\n", rounds,
	       BLOCKS, bad);
	return bad ? 1 : 0;
}
