/* Secret memory: see crypt/backend/secmem.h. */
#include <errno.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "crypt/backend/secmem.h"

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

#define WIPE_STACK_BYTES (64 * 1024)

__attribute__((noinline)) void td_wipe_stack(void)
{
	unsigned char below[WIPE_STACK_BYTES];

	explicit_bzero(below, sizeof(below));
	/* the array must exist where the callees' frames were */
	__asm__ __volatile__("" : : "r"(below) : "memory");
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

/* ---- libcrypto's heap ----------------------------------------------------
 * malloc's blocks, with the pages under each one mlocked as it is handed
 * out (a page already locked is remembered, so a context allocated again
 * costs no system call) and every block wiped before it goes back. Pages
 * stay locked once locked: they are few (contexts are made once per layer
 * and worker), and unlocking a page another live block shares would
 * expose that block. */

#define LOCKED_PAGES 8192 /* remembered; beyond, mlock is simply called again */

static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t locked_pages[LOCKED_PAGES]; /* open addressing, 0 = empty */

static bool page_known(uintptr_t pg)
{
	size_t i = (pg * 0x9e3779b97f4a7c15ull) % LOCKED_PAGES, n;

	for (n = 0; n < LOCKED_PAGES; n++, i = (i + 1) % LOCKED_PAGES) {
		if (locked_pages[i] == pg)
			return true;
		if (!locked_pages[i]) {
			locked_pages[i] = pg;
			return false;
		}
	}
	return false; /* full: lock again, harmless */
}

/* The pages this thread saw locked last: libcrypto allocates and frees the
 * same few blocks over and over (a KDF's HMAC contexts, per iteration), and
 * these answer without the lock. */
static __thread uintptr_t recent[8];
static __thread unsigned recent_next;

static bool page_recent(uintptr_t pg)
{
	for (unsigned i = 0; i < 8; i++)
		if (recent[i] == pg)
			return true;
	return false;
}

static void lock_range(const void *p, size_t n)
{
	uintptr_t page = 4096, a, first, last;

	if (!p || !n)
		return;
	first = (uintptr_t)p & ~(page - 1);
	last = ((uintptr_t)p + n - 1) & ~(page - 1);
	if (first == last && page_recent(first))
		return;
	pthread_mutex_lock(&heap_lock);
	for (a = first; a <= last; a += page) {
		if (!page_known(a) && mlock((void *)a, page) < 0)
			atomic_fetch_add(&mlock_failures, 1);
		recent[recent_next++ % 8] = a;
	}
	pthread_mutex_unlock(&heap_lock);
}

static void *heap_malloc(size_t n, const char *file, int line)
{
	void *p = malloc(n);

	(void)file;
	(void)line;
	if (p)
		lock_range(p, malloc_usable_size(p));
	return p;
}

static void heap_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!p)
		return;
	td_wipe(p, malloc_usable_size(p));
	free(p);
}

static void *heap_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (!p)
		return heap_malloc(n, file, line);
	if (!n) {
		heap_free(p, file, line);
		return NULL;
	}
	q = heap_malloc(n, file, line);
	if (!q)
		return NULL;
	old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	heap_free(p, file, line);
	return q;
}

int td_secure_crypto_heap(void)
{
#ifdef TD_SANITIZED
	/* the sanitizer's runtime makes mlock a no-op and every allocation
	 * slow: a KDF's per-iteration contexts would cost ten times as much */
	return 0;
#endif
	return CRYPTO_set_mem_functions(heap_malloc, heap_realloc, heap_free) ? 0 : -EBUSY;
}
