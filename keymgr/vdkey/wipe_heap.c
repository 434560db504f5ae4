/* vdkey's wiping allocator and memory lock: keymgr/vdkey/wipe_heap.h.
 *
 * Why glibc's allocator underneath rather than an arena of our own: glibc's
 * malloc is thread-safe (libcurl's resolver thread, Argon2's lanes),
 * fork-safe (its own atfork handlers), fast (tcache) and maintained and
 * hardened by others; all vdkey needs on top is that nothing is handed
 * back unwiped. glibc exports its implementation under __libc_malloc,
 * __libc_free, ... for exactly this kind of wrapper, and its
 * malloc_usable_size keeps working on the blocks (so it is not wrapped).
 * dlsym(RTLD_NEXT, "malloc") would need an allocation before it exists.
 *
 * Defining these symbols in the executable interposes them for every
 * shared library, including ones loaded later with dlopen (libtss2's TCTI
 * modules), and for glibc's own internal callers (stdio buffers, getaddrinfo)
 * which call malloc and free through the PLT. */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "keymgr/vdkey/wipe_heap.h"

#ifndef TD_SANITIZED

extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t nmemb, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void *__libc_valloc(size_t n);
extern void *__libc_pvalloc(size_t n);

/* Before the block goes back: all of it, not just what was asked for (a
 * realloc that grew in place, a string built in the slack). The allocator
 * then writes its own list pointers into the first bytes. Memory glibc
 * later returns to the kernel (munmap, trimming) is wiped already. */
static void wipe_block(void *p)
{
	size_t n = malloc_usable_size(p);

	if (n)
		explicit_bzero(p, n);
}

void *malloc(size_t n)
{
	return __libc_malloc(n);
}

void free(void *p)
{
	if (!p)
		return;
	wipe_block(p);
	__libc_free(p);
}

void *calloc(size_t nmemb, size_t n)
{
	return __libc_calloc(nmemb, n);
}

/* Never glibc's realloc: it may move the block and free the old one, or
 * shrink it and free the tail, without a wipe. A block shrunk by at most
 * half stays where it is (no copy is made; free wipes all of it later);
 * otherwise allocate, copy, wipe, free. */
void *realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (!p)
		return __libc_malloc(n);
	if (n == 0) {
		free(p);
		return NULL;
	}
	old = malloc_usable_size(p);
	if (n <= old && n >= old / 2)
		return p;
	q = __libc_malloc(n);
	if (!q)
		return NULL; /* p is untouched, as realloc promises */
	memcpy(q, p, n < old ? n : old);
	free(p);
	return q;
}

/* glibc's reallocarray calls its realloc internally, not through the PLT:
 * it needs its own wrapper. */
void *reallocarray(void *p, size_t nmemb, size_t n)
{
	size_t total;

	if (__builtin_mul_overflow(nmemb, n, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, total);
}

void *memalign(size_t align, size_t n)
{
	return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	/* C11: a power of two; glibc 2.36's own aligned_alloc is memalign */
	if (align == 0 || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	p = __libc_memalign(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t n)
{
	return __libc_valloc(n);
}

void *pvalloc(size_t n)
{
	return __libc_pvalloc(n);
}

int td_wipe_heap_active(void)
{
	return 1;
}

#else /* TD_SANITIZED: the sanitizer's runtime is the allocator */

int td_wipe_heap_active(void)
{
	return 0;
}

#endif

/* CAP_IPC_LOCK in the effective set: mlock ignores RLIMIT_MEMLOCK (a
 * container's root often has it without CAP_SYS_RESOURCE). vdkey starts no
 * thread that changes its capabilities, so every thread has it. */
static bool may_lock_unlimited(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {{0}};

	if (syscall(SYS_capget, &hdr, data) != 0)
		return false;
	return (data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective & CAP_TO_MASK(CAP_IPC_LOCK)) != 0;
}

int td_vdkey_lock_memory(char *err, size_t errlen)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

#ifdef TD_SANITIZED
	snprintf(err, errlen, "sanitizer build: vdkey's memory is not locked");
	return -EOPNOTSUPP;
#endif
	if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0 && !may_lock_unlimited() &&
	    (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur != RLIM_INFINITY)) {
		snprintf(err, errlen,
			 "vdkey's heap is not locked in memory, only its secret buffers: the "
			 "locked-memory limit is %llu KiB and vdkey may not lift it (run it as "
			 "root, or with ulimit -l unlimited / LimitMEMLOCK=infinity)",
			 (unsigned long long)(rl.rlim_cur >> 10));
		return -EPERM;
	}
	/* ONFAULT: pages are locked as they are touched, so thread stacks and
	 * allocator reservations are not populated up front */
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
		int rc = -errno;

		snprintf(err, errlen,
			 "vdkey's heap is not locked in memory, only its secret buffers: "
			 "mlockall: %s",
			 strerror(errno));
		return rc;
	}
	return 0;
}
