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
 * (mlockall MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT), when RLIMIT_MEMLOCK
 * is or can be made unlimited (root with CAP_SYS_RESOURCE). Otherwise
 * -EPERM with err saying so: then only the key material is locked (the
 * secret buffers of crypt/backend/secmem.c and libcrypto's heap, where the key
 * schedules live: td_secure_crypto_heap, set up first thing in main), and
 * the caller warns and serves anyway. Call it before the key is read. */
int td_sandbox_lock_memory(char *err, size_t errlen);
/* Leaves the current session keyring and becomes uid/gid for good, with
 * no supplementary groups and no capabilities; regaining root is checked
 * to fail. */
int td_sandbox_drop(uid_t uid, gid_t gid, char *err, size_t errlen);
/* PR_SET_NO_NEW_PRIVS and the seccomp filter (a no-op, logged, in
 * sanitizer builds, whose runtimes need system calls we do not allow). */
int td_sandbox_seccomp(char *err, size_t errlen);
/* The same allow-list plus what librados/librbd need (sockets to the
 * cluster, thread creation): for chains with an rbd layer only. */
int td_sandbox_seccomp_cluster(char *err, size_t errlen);

#define TD_SANDBOX_NETWORK 0x1u /* the image is reached over the network (rbd) */
#define TD_SANDBOX_XEN 0x2u	/* a blkif ring: the gntdev and evtchn ioctls */
/* The list for a profile: the file list, plus the cluster's and/or Xen's. */
int td_sandbox_seccomp_profile(unsigned profile, char *err, size_t errlen);

#endif
