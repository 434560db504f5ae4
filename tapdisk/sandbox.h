/* Confining a tapdisk once its image is open and its key read: a new
 * session keyring (it no longer possesses the keys of the session that
 * started it), an unprivileged user, no new privileges, and a seccomp
 * allow-list of the system calls the I/O path needs. */
#ifndef TD_SANDBOX_H
#define TD_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

/* Looks up user NAME (or a numeric uid). */
int td_sandbox_lookup(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen);
/* Locks every page of the process, now and from now on, as it is touched
 * (mlockall MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT), so that the key
 * schedules the crypto library keeps in its ordinary heap (and every other
 * copy of key material) never reach swap. Call it as root, before the key
 * is read and before td_sandbox_drop: it lifts RLIMIT_MEMLOCK when it may
 * (CAP_SYS_RESOURCE), else locks with CAP_IPC_LOCK, which td_sandbox_drop
 * then keeps. 0 when memory is locked; -errno when it is not (an
 * unprivileged user's finite limit, mlockall failing), with err saying why
 * and how to allow it: the caller warns and serves anyway. */
int td_sandbox_lock_memory(char *err, size_t errlen);
/* Leaves the current session keyring and becomes uid/gid for good (no
 * capabilities; only CAP_IPC_LOCK is kept when td_sandbox_lock_memory
 * locked memory under a limit root could not lift). */
int td_sandbox_drop(uid_t uid, gid_t gid, char *err, size_t errlen);
/* PR_SET_NO_NEW_PRIVS and the seccomp filter (a no-op, logged, in
 * sanitizer builds, whose runtimes need system calls we do not allow). */
int td_sandbox_seccomp(char *err, size_t errlen);
/* The same allow-list plus what librados/librbd need (sockets to the
 * cluster, thread creation): for chains with an rbd layer only. */
int td_sandbox_seccomp_cluster(char *err, size_t errlen);

#endif
