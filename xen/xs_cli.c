/*
 * xs_cli — a tiny xenstore client for tests, built on the real libxenstore
 * (point it at a store with XENSTORED_PATH).
 *
 *   xs_cli read PATH                  value on stdout; exit 1 if missing
 *   xs_cli write PATH VALUE [PATH VALUE...]   all in one transaction
 *   xs_cli rm PATH                    removes the subtree
 *   xs_cli ls PATH                    children, one a line
 *   xs_cli watch PATH [COUNT]         prints "PATH TOKEN" per event
 *   xs_cli wait PATH VALUE [SECONDS]  until PATH reads VALUE (default 10 s);
 *                                     exit 1 on timeout, printing the last value
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

static int usage(void)
{
	fprintf(stderr, "Usage: xs_cli read|write|rm|ls|watch|wait PATH [VALUE...]\n");
	return 2;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int do_write(struct xs_handle *h, int argc, char **argv)
{
	if (argc < 2 || argc % 2)
		return usage();
	for (int attempt = 0; attempt < 100; attempt++) {
		xs_transaction_t t = xs_transaction_start(h);
		if (t == XBT_NULL) {
			fprintf(stderr, "xs_cli: transaction start: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < argc; i += 2)
			if (!xs_write(h, t, argv[i], argv[i + 1], strlen(argv[i + 1]))) {
				fprintf(stderr, "xs_cli: write %s: %s\n", argv[i], strerror(errno));
				xs_transaction_end(h, t, true);
				return 1;
			}
		if (xs_transaction_end(h, t, false))
			return 0;
		if (errno != EAGAIN) {
			fprintf(stderr, "xs_cli: commit: %s\n", strerror(errno));
			return 1;
		}
	}
	fprintf(stderr, "xs_cli: commit: too many conflicts\n");
	return 1;
}

static int do_wait(struct xs_handle *h, const char *path, const char *want, double secs)
{
	double end = now() + secs;
	char *v = NULL;
	if (!xs_watch(h, path, "wait")) {
		fprintf(stderr, "xs_cli: watch %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		unsigned int len;
		free(v);
		v = xs_read(h, XBT_NULL, path, &len);
		if (v && !strcmp(v, want)) {
			free(v);
			return 0;
		}
		double left = end - now();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = xs_fileno(h), .events = POLLIN};
		if (poll(&p, 1, (int)(left * 1000) + 1) > 0) {
			char **ev;
			while ((ev = xs_check_watch(h)))
				free(ev);
		}
	}
	printf("%s\n", v ? v : "(missing)");
	fprintf(stderr, "xs_cli: %s is '%s' after %.0f s, not '%s'\n", path, v ? v : "(missing)",
		secs, want);
	free(v);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	struct xs_handle *h = xs_open(0);
	if (!h) {
		fprintf(stderr, "xs_cli: cannot connect to xenstore (XENSTORED_PATH=%s): %s\n",
			getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : "unset",
			strerror(errno));
		return 1;
	}
	const char *cmd = argv[1], *path = argv[2];
	int rc = 0;
	unsigned int n;
	if (!strcmp(cmd, "read")) {
		char *v = xs_read(h, XBT_NULL, path, &n);
		if (!v) {
			fprintf(stderr, "xs_cli: read %s: %s\n", path, strerror(errno));
			rc = 1;
		} else
			printf("%s\n", v);
		free(v);
	} else if (!strcmp(cmd, "write")) {
		rc = do_write(h, argc - 2, argv + 2);
	} else if (!strcmp(cmd, "rm")) {
		if (!xs_rm(h, XBT_NULL, path)) {
			fprintf(stderr, "xs_cli: rm %s: %s\n", path, strerror(errno));
			rc = 1;
		}
	} else if (!strcmp(cmd, "ls")) {
		char **d = xs_directory(h, XBT_NULL, path, &n);
		if (!d) {
			fprintf(stderr, "xs_cli: ls %s: %s\n", path, strerror(errno));
			rc = 1;
		}
		for (unsigned int i = 0; d && i < n; i++)
			printf("%s\n", d[i]);
		free(d);
	} else if (!strcmp(cmd, "watch")) {
		long count = argc > 3 ? atol(argv[3]) : -1;
		if (!xs_watch(h, path, "cli")) {
			fprintf(stderr, "xs_cli: watch %s: %s\n", path, strerror(errno));
			rc = 1;
		}
		while (!rc && count--) {
			char **ev = xs_read_watch(h, &n);
			if (!ev) {
				rc = 1;
				break;
			}
			printf("%s %s\n", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
			fflush(stdout);
			free(ev);
		}
	} else if (!strcmp(cmd, "wait")) {
		if (argc < 4)
			rc = usage();
		else
			rc = do_wait(h, path, argv[3], argc > 4 ? atof(argv[4]) : 10);
	} else {
		rc = usage();
	}
	xs_close(h);
	return rc;
}
