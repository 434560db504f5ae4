#include <errno.h>
#include <grp.h>
#include <keyutils.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <xen/xen.h> /* domid_t, for the ioctl headers */
#include <xen/sys/evtchn.h>
#include <xen/sys/gntdev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "crypt/backend/secmem.h" /* TD_SANITIZED */
#include "tapdisk/core/log.h"
#include "tapdisk/daemon/sandbox.h"

int td_sandbox_lookup(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	char *end;
	long v;

	if (pw) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
		return 0;
	}
	v = strtol(user, &end, 10);
	if (*user && !*end && v > 0 && v < 0x7fffffff) {
		*uid = (uid_t)v;
		*gid = (gid_t)v;
		return 0;
	}
	snprintf(err, errlen, "no such user '%s' (create it, e.g. scripts/setup-user.sh)", user);
	return -ENOENT;
}

/* ---- locked memory ------------------------------------------------------- */

/* set by td_sandbox_lock_memory: every mapping is locked, now and later */
static void fmt_limit(rlim_t v, char *buf, size_t len)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else if (v >= (1u << 20))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(v >> 20));
	else
		snprintf(buf, len, "%llu KiB", (unsigned long long)(v >> 10));
}

int td_sandbox_lock_memory(char *err, size_t errlen)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	char cur[32], max[32];

#ifdef TD_SANITIZED
	/* the sanitizer's runtime turns mlock and mlockall into no-ops */
	snprintf(err, errlen, "sanitizer build: memory is not locked");
	return -EOPNOTSUPP;
#endif
	/* With MCL_FUTURE every later mapping counts against RLIMIT_MEMLOCK,
	 * and the count is of address space, not of resident pages: thread
	 * stacks, the allocator's 64 MiB arenas, librados' threads. Under a
	 * finite limit some later malloc or thread would fail at a random
	 * time, in whichever thread lacks CAP_IPC_LOCK (capabilities are per
	 * thread, and the uid change clears them in every one). So the whole
	 * process is locked only when the limit can be lifted (root with
	 * CAP_SYS_RESOURCE, or a limit already unlimited); otherwise only the
	 * secrets are: crypt/backend/secmem.c's buffers and libcrypto's heap
	 * (td_secure_crypto_heap), where the key schedules live. */
	if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0) {
		if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
			rl.rlim_cur = rl.rlim_max = 0;
		if (rl.rlim_cur != RLIM_INFINITY) {
			fmt_limit(rl.rlim_cur, cur, sizeof(cur));
			fmt_limit(rl.rlim_max, max, sizeof(max));
			snprintf(err, errlen,
				 "only the key material is locked in memory (the key schedules "
				 "and secret buffers), not the data buffers: the locked-memory "
				 "limit is %s (hard limit %s) and this process may not lift it "
				 "(ulimit -l unlimited; systemd: LimitMEMLOCK=infinity)",
				 cur, max);
			return -EPERM;
		}
	}
	/* ONFAULT: pages are locked as they are touched, so thread stacks and
	 * large reservations are not populated */
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
		int rc = -errno;

		snprintf(err, errlen, "only the key material is locked in memory: mlockall: %s",
			 strerror(errno));
		return rc;
	}
	td_info("all of this tapdisk's memory is locked (mlockall)");
	return 0;
}

int td_sandbox_drop(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	/* an anonymous session keyring: the keys of the session that started
	 * us (other VBDs' among them) are no longer possessed */
	if (keyctl_join_session_keyring(NULL) < 0) {
		snprintf(err, errlen, "cannot leave the session keyring: %s", strerror(errno));
		return -errno;
	}
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0) {
		snprintf(err, errlen, "cannot become uid %u: %s", (unsigned)uid, strerror(errno));
		return -errno;
	}
	if (setuid(0) == 0) {
		snprintf(err, errlen, "privileges could be regained after dropping them");
		return -EPERM;
	}
	/* setuid clears the flag; the process holds key material */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	return 0;
}

/* What librados/librbd need on top of the file-based list, for chains with
 * an rbd layer (td_sandbox_seccomp_cluster): TCP to the monitors and OSDs
 * (reconnects happen at any time), the messenger's and librbd's thread
 * creation and timers (an image reopened at unpause or for a snapshot
 * starts threads after the filter is in place), and the odd query of
 * resources and CPU affinity. Measured with strace -f over open, I/O,
 * pause/unpause, snapshot and a monitor outage. Threads, not processes:
 * clone only with CLONE_THREAD, and clone3 (whose flags a filter cannot
 * read) fails with ENOSYS, so glibc's pthread_create falls back to clone. */
static const char *const cluster_allow[] = {
    /* librados and librbd open configuration, keyrings and /proc files
     * whenever they reconnect or start threads */
    "open",
    "openat",
    "access",
    "faccessat",
    "faccessat2",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "fchmod",
    "fchown",
    "socket",
    "connect",
    "bind",
    "getpeername",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "pipe",
    "pipe2",
    "epoll_create",
    "epoll_create1",
    "eventfd",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "sendmmsg",
    "recvmmsg",
    "rseq",
    "set_tid_address",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_min",
    "sched_get_priority_max",
    "getrusage",
    "sysinfo",
    "prlimit64",
    "getrlimit",
    "getppid",
    "getpgrp",
    "getdents64",
    "membarrier",
    "times",
    "rt_sigtimedwait",
    "ioprio_get",
    "ioprio_set",
    "capget",
    "mkdir",
    "mkdirat",
    "msync",
    "mincore",
    "get_mempolicy",
    "sched_yield",
};

/* The only ioctl requests a tapdisk makes once the filter is in place, in
 * either profile: the aio driver on a block device, reading its size when
 * the image is reopened (unpause, snapshot) and serving discard and write
 * zeroes. Measured with strace -f over aio on files and on a loop device,
 * qcow2, crypt, rbd, NBD clients (qemu-io, qemu-img, nbdcopy, nbdinfo,
 * fio), pause/unpause, snapshots and a terminal on fds 0-2: no other
 * request appears. Every other request fails with EPERM; TIOCSTI (typing
 * into the terminal a tapdisk was started from) in particular. */
static const unsigned long ioctl_allow[] = {
    BLKGETSIZE64,
    BLKDISCARD,
    BLKZEROOUT,
};

/* A Xen tapdisk's ring (tapdisk/blkif): grant mapping and copies on
 * /dev/xen/gntdev, the event channel on /dev/xen/evtchn. */
static const unsigned long xen_ioctl_allow[] = {
    IOCTL_GNTDEV_MAP_GRANT_REF,
    IOCTL_GNTDEV_UNMAP_GRANT_REF,
    IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
    IOCTL_GNTDEV_SET_MAX_GRANTS,
    IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
    IOCTL_GNTDEV_GRANT_COPY,
    IOCTL_EVTCHN_BIND_INTERDOMAIN,
    IOCTL_EVTCHN_UNBIND,
    IOCTL_EVTCHN_NOTIFY,
    IOCTL_EVTCHN_RESET,
};

static int load_filter(const char *const *extra, size_t nextra, bool xen, char *err, size_t errlen);

int td_sandbox_seccomp(char *err, size_t errlen)
{
	return load_filter(NULL, 0, false, err, errlen);
}

int td_sandbox_seccomp_profile(unsigned profile, char *err, size_t errlen)
{
	bool xen = (profile & TD_SANDBOX_XEN) != 0;

	if (profile & TD_SANDBOX_NETWORK)
		return load_filter(cluster_allow, sizeof(cluster_allow) / sizeof(cluster_allow[0]),
				   xen, err, errlen);
	return load_filter(NULL, 0, xen, err, errlen);
}

int td_sandbox_seccomp_cluster(char *err, size_t errlen)
{
	return load_filter(cluster_allow, sizeof(cluster_allow) / sizeof(cluster_allow[0]), false,
			   err, errlen);
}

static int allow_list(scmp_filter_ctx ctx, const char *const *names, size_t n, char *err,
		      size_t errlen)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0) {
			snprintf(err, errlen, "seccomp rule for %s: %s", names[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* ioctl only with the requests of ioctl_allow. The kernel reads the
 * request as a 32-bit number, so only the low 32 bits are compared: a
 * request with junk in the upper half is the same request to the kernel. */
static int allow_ioctls(scmp_filter_ctx ctx, const unsigned long *list, size_t n, char *err,
			size_t errlen)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = seccomp_rule_add(
		    ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, list[i] & 0xffffffffu));
		if (rc < 0) {
			snprintf(err, errlen, "seccomp rule for ioctl 0x%lx: %s", list[i],
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int load_filter(const char *const *extra, size_t nextra, bool xen, char *err, size_t errlen)
{
	/* what the event loop, libaio, the NBD and control sockets, the worker
	 * threads, the allocators, logging, pause/unpause (reopening the image
	 * from the file table) and snapshots (writing an overlay into a file
	 * root passed) use; everything else fails with EPERM. No system call
	 * that opens, creates, removes or renames a file by path is here: a
	 * file chain's tapdisk gets files only as descriptors (tapdisk/block/files.h),
	 * so code running inside it cannot open another VBD's image, however
	 * its mode. (readlink stays: the identity of an open file is read from
	 * /proc/self/fd.) */
	static const char *const allow[] = {
	    "read",
	    "write",
	    "readv",
	    "writev",
	    "pread64",
	    "pwrite64",
	    "preadv",
	    "pwritev",
	    "preadv2",
	    "pwritev2",
	    "close",
	    "fstat",
	    "newfstatat",
	    "statx",
	    "stat",
	    "lstat",
	    "lseek",
	    "readlink",
	    "ftruncate",
	    "fallocate",
	    "fdatasync",
	    "fsync",
	    "fcntl",
	    "getcwd",
	    "fstatfs",
	    "statfs",
	    "readlinkat",
	    "dup",
	    "dup3",
	    "uname",
	    "mmap",
	    "munmap",
	    "mprotect",
	    "madvise",
	    "brk",
	    "mremap",
	    "mlock",
	    "munlock",
	    "futex",
	    "set_robust_list",
	    "sched_yield",
	    "nanosleep",
	    "clock_nanosleep",
	    "clock_gettime",
	    "gettimeofday",
	    "getrandom",
	    "epoll_wait",
	    "epoll_pwait",
	    "epoll_ctl",
	    "eventfd2",
	    "accept4",
	    "accept",
	    "recvmsg",
	    "sendmsg",
	    "recvfrom",
	    "sendto",
	    "shutdown",
	    "getsockopt",
	    "setsockopt",
	    "getsockname",
	    "io_setup",
	    "io_destroy",
	    "io_submit",
	    "io_getevents",
	    "io_cancel",
	    "rt_sigprocmask",
	    "rt_sigreturn",
	    "rt_sigaction",
	    "sigaltstack",
	    "getpid",
	    "gettid",
	    "getuid",
	    "geteuid",
	    "getgid",
	    "getegid",
	    "prctl",
	    "tgkill",
	    "exit",
	    "exit_group",
	    "restart_syscall",
	    /* a worker thread started just before the filter may still be
	     * registering itself with the kernel when the filter reaches it
	     * (glibc aborts when this fails) */
	    "rseq",
	};
	scmp_filter_ctx ctx;
	int rc;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -errno;
	}
#ifdef TD_SANITIZED
	td_warn("sanitizer build: the seccomp filter is not installed");
	return 0;
#endif
	ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -ENOMEM;
	}
	rc = allow_list(ctx, allow, sizeof(allow) / sizeof(allow[0]), err, errlen);
	if (rc == 0 && extra)
		rc = allow_list(ctx, extra, nextra, err, errlen);
	if (rc == 0)
		rc = allow_ioctls(ctx, ioctl_allow, sizeof(ioctl_allow) / sizeof(ioctl_allow[0]),
				  err, errlen);
	if (rc == 0 && xen)
		rc =
		    allow_ioctls(ctx, xen_ioctl_allow,
				 sizeof(xen_ioctl_allow) / sizeof(xen_ioctl_allow[0]), err, errlen);
	if (rc == 0 && extra) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
		if (rc < 0)
			snprintf(err, errlen, "seccomp rule for clone: %s", strerror(-rc));
	}
	/* Every thread, not only the caller: the worker threads (and librados'
	 * threads) exist before the filter is loaded, and without this they
	 * would run unconfined in the same address space. */
	if (rc == 0 && (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0)
		snprintf(err, errlen, "seccomp thread synchronisation: %s", strerror(-rc));
	if (rc < 0) {
		seccomp_release(ctx);
		return rc;
	}
	rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		snprintf(err, errlen, "cannot load the seccomp filter: %s", strerror(-rc));
		return rc;
	}
	return 0;
}
