/* vdkey's heap: every block wiped when it is freed or moved, and the whole
 * process locked in RAM where the locked-memory limit allows
 * (SECURITY.md, "vdkey's heap").
 *
 * keymgr/vdkey/wipe_heap.c defines malloc, free, calloc, realloc,
 * reallocarray, posix_memalign, aligned_alloc, memalign, valloc and pvalloc
 * for the whole process: the libraries vdkey links (libtss2, libcurl,
 * libjose, jansson, libcrypto, glibc itself) call them instead of glibc's.
 * Each one is glibc's own allocator (__libc_malloc, ...) plus a wipe: free
 * clears the block's whole usable size first, realloc never leaves the old
 * block behind unwiped. It is linked only into vdkey and the unit test that
 * checks it (the Makefile keeps it out of libtd: tapdisk does not get it),
 * never into a sanitizer build, whose runtime owns malloc. */
#ifndef TD_VDKEY_WIPE_HEAP_H
#define TD_VDKEY_WIPE_HEAP_H

#include <stddef.h>

#include "crypt/backend/secmem.h"

#ifdef TD_SANITIZED
#define TD_WIPE_HEAP_SANITIZED 1
#else
#define TD_WIPE_HEAP_SANITIZED 0
#endif

/* 1 when this process's free and realloc are the wiping ones (0 in a
 * sanitizer build). */
int td_wipe_heap_active(void);

/* Locks all of the process's memory, now and later (mlockall MCL_CURRENT |
 * MCL_FUTURE | MCL_ONFAULT), after lifting RLIMIT_MEMLOCK where it may
 * (CAP_SYS_RESOURCE, or a limit already unlimited), or when the limit does
 * not apply to it (CAP_IPC_LOCK: root, even in a container). Under a finite
 * limit it locks nothing more (with MCL_FUTURE every later mapping would
 * count against the limit: an Argon2 keyslot's 256 MiB, a resolver
 * thread's stack, and fail at random) and returns -EPERM with a message
 * saying what to do; the caller goes on (the fallback of SECURITY.md:
 * secrets stay in td_secure_alloc's locked buffers, the heap is wiped but
 * may reach swap). 0 when locked. */
int td_vdkey_lock_memory(char *err, size_t errlen);

#endif
