/* A uid of its own for every VBD, like systemd's DynamicUser=.
 *
 * Root reserves a range of uids no account uses (tapdisk.conf uid-range,
 * tapdisk/block/hostconf.h; scripts/setup-user.sh checks it). A tapdisk started
 * as root takes the first free uid of the range, trying from a random
 * point: free means no passwd or group entry names it and nobody holds
 * its lock file, TD_UID_LOCK_DIR/<uid>, which the tapdisk locks (flock)
 * and keeps open for its whole life. The kernel drops the lock when the
 * process ends, however it ends: the uid is released at destroy, at a
 * crash, at kill -9. Files are never chowned to these uids; a tapdisk
 * reaches its image through descriptors opened before it switched. */
#ifndef TD_UIDALLOC_H
#define TD_UIDALLOC_H

#include <stddef.h>
#include <sys/types.h>

#include "tapdisk/block/hostconf.h"

#define TD_UID_LOCK_DIR "/run/tdcrypt/uids"

/* 0 with *uid and *lock_fd (keep it open), or -errno with a message. */
int td_uid_allocate(const struct td_hostconf *hc, uid_t *uid, int *lock_fd, char *err,
		    size_t errlen);

#endif
