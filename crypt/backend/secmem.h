/* Memory for secrets: locked into RAM where the limits allow, left out of
 * core dumps, zero-filled on allocation and wiped on free.  Use it for
 * every buffer that holds a passphrase, a volume key or a subkey. */
#ifndef TD_KEYMGR_SECMEM_H
#define TD_KEYMGR_SECMEM_H

#include <stddef.h>

/* Defined in AddressSanitizer builds, whose runtime makes mlock a no-op and
 * needs system calls a seccomp filter would refuse. */
#if defined(__SANITIZE_ADDRESS__)
#define TD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TD_SANITIZED 1
#endif
#endif

/* Page-granular mmap, mlock (an EPERM/ENOMEM failure is tolerated and
 * counted, see td_secure_mlock_failures), MADV_DONTDUMP, zero-filled.
 * Returns NULL with errno set on failure.  Not for hot paths: every call
 * is a system call or three. */
void *td_secure_alloc(size_t n);
/* Wipes the whole mapping, unlocks and unmaps it.  NULL is a no-op.  A
 * pointer that td_secure_alloc did not return aborts the process. */
void td_secure_free(void *p);
/* The size asked for when p was allocated. */
size_t td_secure_size(const void *p);
/* Allocations so far whose pages could not be locked (RLIMIT_MEMLOCK). */
unsigned td_secure_mlock_failures(void);

/* Routes every allocation of OpenSSL's libcrypto (its cipher and MAC
 * contexts: the expanded AES-XTS key schedules, the HMAC states) through
 * an allocator that mlocks the pages it hands out and wipes each block when
 * it is freed. Must run before libcrypto allocates anything (first thing
 * in main); 0, or -EBUSY when it was too late. Locking is best effort
 * under a small RLIMIT_MEMLOCK (td_secure_mlock_failures counts). */
int td_secure_crypto_heap(void);

/* explicit_bzero behind a call the compiler cannot see through. */
void td_wipe(void *p, size_t n);

/* Wipes the 64 KiB of stack below the caller's frame: where the frames of
 * the library calls it just made (libtss2 marshalling a sealed key,
 * libcrypto decrypting it) left their locals. Call it after such calls,
 * from the function that made them. */
void td_wipe_stack(void);

/* No core dumps, no ptrace by other same-uid processes, no
 * /proc/<pid>/mem reads: PR_SET_DUMPABLE 0 and RLIMIT_CORE 0.  Call it
 * before the first secret enters the process.  Returns 0 or -errno; the
 * result may be ignored. */
int td_secure_harden_process(void);

#endif
