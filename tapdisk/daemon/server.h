/* One tapdisk process: a VBD, its NBD listener and its control socket. */
#ifndef TD_SERVER_H
#define TD_SERVER_H

#include <stdbool.h>

struct td_server_opts {
	const char *spec;
	const char *socket; /* NBD socket path, or "auto" for $RUNDIR/nbd.<minor>.sock */
	int minor;	    /* -1 = first free */
	int ready_fd;	    /* -1 = none; gets "ok minor=N socket=P pid=P" or "error: ..." */
	bool readonly;
	const char *export_name;
	const char *user; /* run as this user once the image is open (NULL: stay) */
	bool no_seccomp;
	int workers; /* crypto worker threads; -1 = one per CPU, at most 8 */
	bool xen;    /* serve a Xen blkif ring too (xen-connect): open the Xen devices */
};

/* Runs until SIGTERM/SIGINT or a destroy command; returns the exit code. */
int td_server_main(const struct td_server_opts *o);

#endif
