/* Secret memory: see keymgr/secmem.h. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "keymgr/secmem.h"

#define SECMEM_MAGIC 0x53454b52u /* "SEKR" */
#define SECMEM_HDR 64		 /* keeps the caller's pointer 64-byte aligned */

/* Hidden in front of the caller's bytes, inside the same locked mapping. */
struct secmem_hdr {
	uint32_t magic;
	uint32_t locked;
	size_t map_len;
	size_t user_len;
};

_Static_assert(sizeof(struct secmem_hdr) <= SECMEM_HDR, "secmem header too big");

static atomic_uint mlock_failures;

__attribute__((noinline)) void td_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void *td_secure_alloc(size_t n)
{
	struct secmem_hdr *h = NULL;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = 0;
	void *map = MAP_FAILED;
	void *ret = NULL;
	int err = EINVAL;

	if (n == 0 || n > SIZE_MAX - SECMEM_HDR - page)
		goto out;
	len = (n + SECMEM_HDR + page - 1) / page * page;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		err = errno;
		goto out;
	}
	h = map;
	/* Not fatal: an unprivileged process may have a tiny RLIMIT_MEMLOCK.
	 * The key still stays out of core dumps; the count lets callers warn. */
	if (mlock(map, len) == 0) {
		h->locked = 1;
	} else if (errno == EPERM || errno == ENOMEM || errno == EAGAIN) {
		atomic_fetch_add(&mlock_failures, 1);
	} else {
		err = errno;
		goto out;
	}
	/* EINVAL only on kernels older than 3.4, which have no such flag. */
	if (madvise(map, len, MADV_DONTDUMP) != 0 && errno != EINVAL) {
		err = errno;
		goto out;
	}
	h->magic = SECMEM_MAGIC;
	h->map_len = len;
	h->user_len = n;
	ret = (uint8_t *)map + SECMEM_HDR;
	map = MAP_FAILED;
	err = 0;
out:
	if (map != MAP_FAILED) {
		if (h && h->locked)
			munlock(map, len);
		munmap(map, len);
	}
	if (!ret)
		errno = err;
	return ret;
}

static struct secmem_hdr *hdr_of(const void *p)
{
	struct secmem_hdr *h = (struct secmem_hdr *)((uintptr_t)p - SECMEM_HDR);

	/* A wrong pointer here would unmap someone else's memory. */
	if (((uintptr_t)h & (uintptr_t)(sysconf(_SC_PAGESIZE) - 1)) != 0 ||
	    h->magic != SECMEM_MAGIC)
		abort();
	return h;
}

void td_secure_free(void *p)
{
	struct secmem_hdr *h;
	size_t len;
	uint32_t locked;

	if (!p)
		return;
	h = hdr_of(p);
	len = h->map_len;
	locked = h->locked;
	td_wipe(h, len); /* the header too: the magic must not outlive the block */
	if (locked)
		munlock(h, len);
	munmap(h, len);
}

size_t td_secure_size(const void *p)
{
	if (!p)
		return 0;
	return hdr_of(p)->user_len;
}

unsigned td_secure_mlock_failures(void)
{
	return atomic_load(&mlock_failures);
}

int td_secure_harden_process(void)
{
	struct rlimit rl = {0, 0};
	int dump_err = 0;
	int core_err = 0;

	/* Both are attempted even if the first fails: half hardened beats not
	 * at all.  The first failure is reported. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		dump_err = -errno;
	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		core_err = -errno;
	return dump_err ? dump_err : core_err;
}
