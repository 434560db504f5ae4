/* tapdisk: serves one VBD over NBD. Normally started by tap-ctl create;
 * "tapdisk serve" runs it in the foreground for systemd and tests. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "tapdisk/block/driver.h"
#include "tapdisk/core/workers.h"
#include "tapdisk/registry/registry.h"
#include "tapdisk/core/log.h"
#include "tapdisk/daemon/notify.h"
#include "tapdisk/daemon/server.h"

#define TD_VERSION "0.1"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tapdisk serve SPEC --socket PATH [OPTIONS]\n"
		"       tapdisk drivers\n"
		"\n"
		"Serves one virtual disk (VBD) over NBD on a Unix socket, in the foreground.\n"
		"SPEC is [tap:]DRIVER[:DRIVER...]:PATH, e.g. aio:/srv/vm1.img or\n"
		"crypt:qcow2:/srv/vm1.qcow2. SIGTERM or SIGINT drains in-flight requests,\n"
		"flushes, releases the image and exits 0.\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH     NBD socket to listen on ('auto': "
		"$TAPDISK_RUNDIR/nbd.<minor>.sock)\n"
		"  -r, --readonly        open the image read-only and refuse writes\n"
		"  -m, --minor N         claim this minor number (default: the first free one)\n"
		"  -e, --export-name N   NBD export name accepted besides \"\"\n"
		"      --ready-fd FD     write \"ok minor=N socket=PATH pid=P\" or \"error: MSG\" "
		"to FD\n"
		"                        once serving or failed (used by tap-ctl)\n"
		"  -u, --user NAME       run as NAME once the image is open and the key read,\n"
		"                        instead of a uid of its own (started as root, a tapdisk\n"
		"                        takes a free uid of the host's VBD range, see\n"
		"                        scripts/setup-user.sh); nothing is chowned either way\n"
		"      --no-seccomp      do not install the system-call allow-list (debugging)\n"
		"      --workers N       crypto worker threads (default: one per CPU, at most 8;\n"
		"                        0 = all crypto on the event loop's thread)\n"
		"      --inline-bytes N  requests with at most N bytes of crypto work stay on the\n"
		"                        loop's thread (default 8192; 0 = always hand off)\n"
		"  -v, --verbose         debug logging\n"
		"      --xen             also serve a Xen guest's blkif ring, once tapback (or\n"
		"                        tap-ctl xen-connect) hands over its ring references and\n"
		"                        event channel; opens /dev/xen/gntdev and /dev/xen/evtchn\n"
		"      --ceph-conf PATH  ceph.conf for an rbd: SPEC (sets CEPH_CONF)\n"
		"      --ceph-id NAME    Ceph client id for an rbd: SPEC (sets CEPH_ID)\n"
		"  -h, --help            this text\n"
		"      --version         print the version\n"
		"\n"
		"Started as root, it opens the image (and its backing files, confined to the\n"
		"image's directory and the allowed ones), reads the key and creates its sockets\n"
		"(root's, mode 0600), then runs as a uid of its own under a seccomp filter.\n"
		"Backing files: beside the top image, or below a directory allowed by the\n"
		"qcow2 option backing-dir=DIR or by backing-dirs in /etc/tdcrypt/tapdisk.conf.\n"
		"\n"
		"Environment: TAPDISK_RUNDIR (default /run/tapdisk) holds the control socket\n"
		"tapdisk.<minor>.ctl; TDCRYPT_CONF names the host settings file (default\n"
		"/etc/tdcrypt/tapdisk.conf); TD_DEBUG=1 is the same as --verbose; CEPH_CONF,\n"
		"CEPH_ID and CEPH_ARGS configure the cluster connection of an rbd: SPEC;\n"
		"NOTIFY_SOCKET (set by systemd for Type=notify) receives READY=1 once the NBD\n"
		"socket is listening.\n");
}

static int list_drivers(void)
{
	const struct td_driver *const *d;

	for (d = td_driver_list(); *d; d++)
		printf("%-10s %-6s %s%s%s%s\n", (*d)->name, (*d)->is_image ? "image" : "layer",
		       (*d)->summary, (*d)->alias ? " (alias: " : "",
		       (*d)->alias ? (*d)->alias : "", (*d)->alias ? ")" : "");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"readonly", no_argument, NULL, 'r'},
	    {"minor", required_argument, NULL, 'm'},
	    {"export-name", required_argument, NULL, 'e'},
	    {"ready-fd", required_argument, NULL, 'R'},
	    {"user", required_argument, NULL, 'u'},
	    {"no-seccomp", no_argument, NULL, 'S'},
	    {"ceph-conf", required_argument, NULL, 'C'},
	    {"ceph-id", required_argument, NULL, 'I'},
	    {"workers", required_argument, NULL, 'W'},
	    {"inline-bytes", required_argument, NULL, 'B'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"xen", no_argument, NULL, 'X'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct td_server_opts o = {.minor = -1, .ready_fd = -1, .workers = -1};
	char *end;
	long v;
	int c, rc;

	/* before libcrypto allocates anything: its key schedules in locked, wiped memory */
	td_secure_crypto_heap();
	td_log_init("tapdisk");
	td_drivers_set(td_registry());
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("tapdisk %s\n", TD_VERSION);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "drivers"))
		return list_drivers();
	if (argc < 2 || strcmp(argv[1], "serve") != 0) {
		fprintf(stderr,
			"tapdisk: expected a command: serve or drivers (see tapdisk --help)\n");
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "s:rm:e:u:hv", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'r':
			o.readonly = true;
			break;
		case 'm':
			o.minor = atoi(optarg);
			break;
		case 'e':
			o.export_name = optarg;
			break;
		case 'R':
			o.ready_fd = atoi(optarg);
			break;
		case 'u':
			o.user = optarg;
			break;
		case 'S':
			o.no_seccomp = true;
			break;
		case 'C':
			setenv("CEPH_CONF", optarg, 1); /* read by the rbd driver */
			break;
		case 'I':
			setenv("CEPH_ID", optarg, 1);
			break;
		case 'W':
		case 'B':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 0 ||
			    v > (c == 'W' ? 64 : 32l << 20)) {
				fprintf(stderr, "tapdisk: bad --%s '%s' (0..%s)\n",
					c == 'W' ? "workers" : "inline-bytes", optarg,
					c == 'W' ? "64" : "33554432");
				return 2;
			}
			if (c == 'W')
				o.workers = (int)v;
			else
				td_workers_set_inline_max((uint64_t)v);
			break;
		case 'v':
			td_log_set_level(TD_LOG_DEBUG);
			break;
		case 'X':
			o.xen = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tapdisk %s\n", TD_VERSION);
			return 0;
		default:
			fprintf(stderr, "tapdisk: see tapdisk --help\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "tapdisk serve: expected exactly one SPEC (see tapdisk --help)\n");
		return 2;
	}
	o.spec = argv[optind];
	if (!o.socket) {
		fprintf(stderr, "tapdisk serve: --socket PATH is required (or --socket auto)\n");
		return 2;
	}
	/* systemd's Type=notify: connect now, while sockets may still be made */
	if ((rc = td_notify_open()) < 0)
		td_warn("cannot reach $NOTIFY_SOCKET (%s): readiness is not reported",
			strerror(-rc));
	return td_server_main(&o);
}
