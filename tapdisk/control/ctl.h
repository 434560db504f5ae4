/* The control channel between tap-ctl and a tapdisk.
 *
 * Each tapdisk listens on $TAPDISK_RUNDIR/tapdisk.<minor>.ctl (mode 0600);
 * binding that name is how a tapdisk claims its minor number. A client
 * connects, sends one command line, and reads the reply until EOF:
 *   "ok\n" followed by "key=value\n" lines, or "error: message\n".
 * Commands: info, stats, qos [SETTINGS], pause, unpause [SPEC], snapshot ARG,
 * destroy, next-key (one descriptor: a pipe holding a volume-key rotation's
 * new key, for the next open).
 * Only root, or the user who started the tapdisk, may talk to it
 * (SO_PEERCRED) — never the uid the tapdisk itself runs as. Files travel
 * with a command as descriptors (SCM_RIGHTS) named at the end of its line:
 * "COMMAND\tHOW:PATH..." (tapdisk/daemon/server.c). */
#ifndef TD_CTL_H
#define TD_CTL_H

#include <stddef.h>

#define TD_CTL_MAX_MINOR 4096

/* $TAPDISK_RUNDIR or /run/tapdisk (created 0755 if missing). */
const char *td_rundir(void);
int td_rundir_ensure(char *err, size_t errlen);
void td_ctl_path(int minor, char *buf, size_t len);

/* One key=value reply, parsed. */
struct td_kv {
	int n;
	char *key[64];
	char *val[64];
	char *buf;
};

/* Sends cmd to the control socket at path; on "ok" fills kv (may be NULL).
 * Returns 0, -ECONNREFUSED/-ENOENT for a dead socket, -EREMOTEIO with the
 * tapdisk's message in err for "error:", other -errno. */
int td_ctl_call(const char *path, const char *cmd, struct td_kv *kv, int timeout_ms, char *err,
		size_t errlen);
/* The same, passing nfds descriptors with the command. */
int td_ctl_call_fds(const char *path, const char *cmd, const int *fds, int nfds, struct td_kv *kv,
		    int timeout_ms, char *err, size_t errlen);
const char *td_kv_get(const struct td_kv *kv, const char *key);
void td_kv_free(struct td_kv *kv);

#endif
