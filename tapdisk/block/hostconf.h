/* The host's settings for every tapdisk: /etc/tdcrypt/tapdisk.conf
 * (TDCRYPT_CONF names another file, e.g. for tests).
 *
 *   # comment
 *   uid-range    = FIRST-LAST     per-VBD uids (default TD_UID_RANGE_*)
 *   backing-dirs = DIR [DIR...]   where backing files may live besides the
 *                                 top image's own directory
 *   qos-host-iops = N             the host's capacity the QoS arbiter shares
 *   qos-host-bps  = BYTES         between VBDs by weight (0 or absent: none;
 *                                 tapdisk/qos/arbiter.h), bytes with K/M/G/T
 *   qos-dir       = DIR           the arbiter's table (default TD_QOS_DIR)
 *   ring-poll-us  = N             how long a tapdisk serving a Xen guest's
 *                                 ring looks at it for the next request
 *                                 before sleeping (default
 *                                 TD_RING_POLL_US_DEFAULT; 0: never)
 *
 * The file decides who a tapdisk runs as and which files it may open, so
 * it must belong to root and not be writable by anyone else; a missing
 * file means the defaults. An unknown setting is an error (a typo must
 * not silently leave the default in place). */
#ifndef TD_HOSTCONF_H
#define TD_HOSTCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TD_HOSTCONF_PATH "/etc/tdcrypt/tapdisk.conf"
/* 65536 uids that systemd's uid allocation plan leaves unused
 * (0x71000000-0x7100ffff: above the container ranges, below 2^31). */
#define TD_UID_RANGE_FIRST 0x71000000u
#define TD_UID_RANGE_LAST 0x7100ffffu
#define TD_HOSTCONF_MAX_DIRS 16
#define TD_QOS_DIR "/run/tdcrypt/qos"
/* docs/XEN.md, "Polling": what it buys and costs */
#define TD_RING_POLL_US_DEFAULT 1000
#define TD_RING_POLL_US_MAX 100000

struct td_hostconf {
	uid_t uid_first, uid_last;
	int ndirs;
	char *backing_dirs[TD_HOSTCONF_MAX_DIRS]; /* absolute, normalized */
	char path[256];				  /* the file read, or "" for defaults */
	uint64_t qos_host_iops, qos_host_bps;	  /* 0: no host arbiter */
	char qos_dir[256];			  /* absolute, normalized */
	uint64_t ring_poll_us;
};

/* The settings, read once per process (later calls return the same).
 * NULL with a one-line reason in err when the file is unsafe or wrong. */
const struct td_hostconf *td_hostconf(char *err, size_t errlen);

/* Parses the text of a settings file (exposed for the unit test).
 * 0, or -EINVAL with "LINE: reason" in err. */
int td_hostconf_parse(const char *text, struct td_hostconf *out, char *err, size_t errlen);
void td_hostconf_clear(struct td_hostconf *c);

/* Lexically normalizes an absolute path in place: collapses "//", "/./"
 * and "dir/.." (no symlinks are looked at). -EINVAL for a relative path
 * or one that climbs above "/". */
int td_path_normalize(char *path);

#endif
