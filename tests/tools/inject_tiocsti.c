/* inject_tiocsti: makes every thread of a running process call
 * ioctl(FD, TIOCSTI, "X") -- push one keystroke into the input of the
 * terminal FD refers to -- as code injected into it would, and reports
 * what the kernel (and the process's seccomp filter) answered.
 *
 *   inject_tiocsti PID [FD]        FD defaults to 0
 *
 * One line per thread: "thread TID: ok" or "thread TID: <strerror text>".
 * Exit status 0 when the call could be made in every thread (whatever it
 * returned), 1 otherwise, 2 usage. Needs the right to ptrace PID (root).
 *
 * How: x86-64 only. Each thread is seized and interrupted (PTRACE_SEIZE,
 * PTRACE_INTERRUPT: no signal, the other threads run on) while it waits
 * in a system call, so the two bytes before its instruction pointer are a
 * `syscall` instruction; the byte 'X' is written below its stack red zone,
 * the registers are pointed at that instruction with the ioctl's number
 * and arguments, one instruction is single-stepped, the result is read
 * from rax, and memory and registers are put back (orig_rax included, so
 * the interrupted wait restarts as after any signal). Only the general
 * registers are touched. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(__x86_64__)
int main(void)
{
	fprintf(stderr, "inject_tiocsti: x86-64 only\n");
	return 1;
}
#else

#define SCRATCH_BELOW_SP 512 /* well below the 128-byte red zone */

/* waits until tid is in a ptrace stop; 0 or -errno */
static int wait_stopped(pid_t tid)
{
	int st;

	for (;;) {
		if (waitpid(tid, &st, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (WIFSTOPPED(st))
			return 0;
		if (WIFEXITED(st) || WIFSIGNALED(st))
			return -ESRCH;
	}
}

/* The ioctl's result in *result (0 or -errno); the function returns 0
 * when the call could be made, -errno otherwise. */
static int inject(pid_t tid, int fd, long *result)
{
	struct user_regs_struct saved, r;
	unsigned long code, word, addr;
	int rc, attached = 0, restore_mem = 0;

	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -errno;
	attached = 1;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0) {
		rc = -errno;
		goto out;
	}
	rc = wait_stopped(tid);
	if (rc < 0)
		goto out;
	rc = -errno;
	if (ptrace(PTRACE_GETREGS, tid, NULL, &saved) < 0)
		goto out;
	errno = 0;
	code = (unsigned long)ptrace(PTRACE_PEEKTEXT, tid, (void *)(saved.rip - 2), NULL);
	if (errno) {
		rc = -errno;
		goto out;
	}
	if ((code & 0xffff) != 0x050f) { /* 0f 05: syscall */
		rc = -EAGAIN;		 /* not waiting in a system call: try again */
		goto out;
	}
	addr = (saved.rsp - SCRATCH_BELOW_SP) & ~7ul;
	errno = 0;
	word = (unsigned long)ptrace(PTRACE_PEEKDATA, tid, (void *)addr, NULL);
	if (errno) {
		rc = -errno;
		goto out;
	}
	if (ptrace(PTRACE_POKEDATA, tid, (void *)addr, (void *)((word & ~0xfful) | 'X')) < 0) {
		rc = -errno;
		goto out;
	}
	restore_mem = 1;
	r = saved;
	r.rip = saved.rip - 2;
	r.rax = SYS_ioctl;
	r.orig_rax = (unsigned long)-1; /* no syscall restart on the way back */
	r.rdi = (unsigned long)fd;
	r.rsi = TIOCSTI;
	r.rdx = addr;
	if (ptrace(PTRACE_SETREGS, tid, NULL, &r) < 0 ||
	    ptrace(PTRACE_SINGLESTEP, tid, NULL, NULL) < 0) {
		rc = -errno;
		goto restore;
	}
	rc = wait_stopped(tid);
	if (rc < 0)
		goto out;
	if (ptrace(PTRACE_GETREGS, tid, NULL, &r) < 0) {
		rc = -errno;
		goto restore;
	}
	*result = (long)r.rax;
	rc = 0;
restore:
	if (ptrace(PTRACE_SETREGS, tid, NULL, &saved) < 0 && rc == 0)
		rc = -errno;
out:
	if (restore_mem && ptrace(PTRACE_POKEDATA, tid, (void *)addr, (void *)word) < 0 && rc == 0)
		rc = -errno;
	if (attached)
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
	return rc;
}

int main(int argc, char **argv)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	pid_t pid;
	int fd = 0, failed = 0;

	if (argc < 2 || argc > 3 || (pid = (pid_t)atoi(argv[1])) <= 0) {
		fprintf(stderr, "Usage: inject_tiocsti PID [FD]\n");
		return 2;
	}
	if (argc == 3)
		fd = atoi(argv[2]);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "inject_tiocsti: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);
		long res = 0;
		int rc = -EAGAIN, tries;

		if (tid <= 0)
			continue;
		/* a thread caught outside a system call is let go and caught again */
		for (tries = 0; tries < 50 && rc == -EAGAIN; tries++) {
			rc = inject(tid, fd, &res);
			if (rc == -EAGAIN)
				usleep(10000);
		}
		if (rc < 0) {
			printf("thread %d: cannot inject: %s\n", (int)tid, strerror(-rc));
			failed = 1;
		} else {
			printf("thread %d: %s\n", (int)tid, res ? strerror((int)-res) : "ok");
		}
		fflush(stdout);
	}
	closedir(d);
	return failed;
}
#endif
