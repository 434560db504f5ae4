/* Secret memory and the volume key object. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"

/* AddressSanitizer replaces mlock with a no-op that reports success, so
 * page locking cannot be observed in a sanitizer build. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_OBSERVABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_OBSERVABLE 0
#endif
#endif
#ifndef MLOCK_OBSERVABLE
#define MLOCK_OBSERVABLE 1
#endif

/* The VmFlags line of the /proc/self/smaps entry that contains p. */
static int vmflags_of(const void *p, char *flags, size_t flen)
{
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	int in_map = 0;
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in_map = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in_map && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(flags, flen, "%s", line + 8);
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static int has_flag(const char *flags, const char *flag)
{
	char padded[16];

	snprintf(padded, sizeof(padded), " %s", flag);
	return strstr(flags, padded) != NULL;
}

static void test_alloc_free(void **state)
{
	static const size_t sizes[] = {1, 32, 64, 4031, 4032, 4033, 100000};
	uint8_t zero[128] = {0};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		uint8_t *p = td_secure_alloc(n);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 64, 0);
		assert_int_equal(td_secure_size(p), n);
		/* Zero-filled, and all of it is writable. */
		assert_memory_equal(p, zero, n < sizeof(zero) ? n : sizeof(zero));
		assert_int_equal(p[n - 1], 0);
		memset(p, 0xa5, n);
		td_secure_free(p);
	}
	td_secure_free(NULL);
	assert_int_equal(td_secure_size(NULL), 0);

	errno = 0;
	assert_null(td_secure_alloc(0));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(td_secure_alloc(SIZE_MAX));
	assert_int_equal(errno, EINVAL);
}

/* The pages are excluded from core dumps and, when the limit allows it
 * (root in CI), locked. */
static void test_alloc_flags(void **state)
{
	char flags[512];
	void *p = td_secure_alloc(100);

	assert_non_null(p);
	assert_true(vmflags_of(p, flags, sizeof(flags)));
	assert_true(has_flag(flags, "dd"));
	if (!MLOCK_OBSERVABLE)
		print_message("sanitizer build: lock flag not checked\n");
	else if (td_secure_mlock_failures() != 0)
		print_message("mlock failed (RLIMIT_MEMLOCK); lock flag not checked\n");
	else
		assert_true(has_flag(flags, "lo"));
	td_secure_free(p);
}

/* A tiny RLIMIT_MEMLOCK makes mlock fail; allocation still succeeds and
 * the failure is counted.  Run in a child: it drops privileges. */
static void test_alloc_without_mlock(void **state)
{
	pid_t pid;
	int status = 0;

	if (!MLOCK_OBSERVABLE)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		unsigned before = td_secure_mlock_failures();
		void *p;

		if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(2);
		/* root ignores RLIMIT_MEMLOCK (CAP_IPC_LOCK); drop to nobody. */
		if (geteuid() == 0 && setuid(65534) != 0)
			_exit(3);
		p = td_secure_alloc(100);
		if (!p)
			_exit(4);
		memset(p, 1, 100);
		if (td_secure_mlock_failures() != before + 1)
			_exit(5);
		td_secure_free(p);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_wipe(void **state)
{
	uint8_t buf[100], zero[100] = {0};

	memset(buf, 0xff, sizeof(buf));
	td_wipe(buf + 10, 50);
	assert_memory_equal(buf + 10, zero, 50);
	assert_int_equal(buf[9], 0xff);
	assert_int_equal(buf[60], 0xff);
	td_wipe(NULL, 10);
	td_wipe(buf, 0);
}

static void test_harden_process(void **state)
{
	pid_t pid = fork();
	int status = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;

		if (td_secure_harden_process() != 0)
			_exit(2);
		if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
			_exit(3);
		if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
			_exit(4);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_volkey_lifecycle(void **state)
{
	uint8_t raw[TD_VOLKEY_LEN];
	struct td_volkey *a = td_volkey_new_random();
	struct td_volkey *b = td_volkey_new_random();
	struct td_volkey *c;

	assert_non_null(a);
	assert_non_null(b);
	assert_memory_not_equal(td_volkey_bytes(a), td_volkey_bytes(b), TD_VOLKEY_LEN);
	assert_int_equal(td_volkey_equal(a, b), 0);

	memcpy(raw, td_volkey_bytes(a), sizeof(raw));
	c = td_volkey_from_bytes(raw, sizeof(raw));
	td_wipe(raw, sizeof(raw));
	assert_non_null(c);
	assert_int_equal(td_volkey_equal(a, c), 1);
	assert_memory_equal(td_volkey_bytes(a), td_volkey_bytes(c), TD_VOLKEY_LEN);

	errno = 0;
	assert_null(td_volkey_from_bytes(raw, 32));
	assert_int_equal(errno, EINVAL);
	assert_null(td_volkey_from_bytes(NULL, TD_VOLKEY_LEN));
	assert_null(td_volkey_bytes(NULL));

	td_volkey_free(&a);
	assert_null(a);
	td_volkey_free(&a); /* idempotent */
	td_volkey_free(NULL);
	td_volkey_free(&b);
	td_volkey_free(&c);
	assert_null(b);
	assert_null(c);
}

static void test_volkey_derive(void **state)
{
	static const char *const purposes[] = {TD_SUBKEY_XTS, TD_SUBKEY_MAC, TD_SUBKEY_HEADER,
					       TD_SUBKEY_DIGEST, TD_SUBKEY_TREE};
	enum { NP = sizeof(purposes) / sizeof(purposes[0]) };
	uint8_t raw[TD_VOLKEY_LEN], sub[NP][32], again[64], other[32], manual[64];
	struct td_volkey *vk, *vk2;

	for (int i = 0; i < TD_VOLKEY_LEN; i++)
		raw[i] = (uint8_t)i;
	vk = td_volkey_from_bytes(raw, sizeof(raw));
	vk2 = td_volkey_new_random();
	assert_non_null(vk);
	assert_non_null(vk2);

	/* Different per purpose. */
	for (int i = 0; i < NP; i++)
		assert_int_equal(td_volkey_derive(vk, purposes[i], sub[i], 32), 0);
	for (int i = 0; i < NP; i++)
		for (int j = i + 1; j < NP; j++)
			assert_memory_not_equal(sub[i], sub[j], 32);

	/* Deterministic, and dependent on the key. */
	for (int i = 0; i < NP; i++) {
		assert_int_equal(td_volkey_derive(vk, purposes[i], again, 32), 0);
		assert_memory_equal(again, sub[i], 32);
		assert_int_equal(td_volkey_derive(vk2, purposes[i], other, 32), 0);
		assert_memory_not_equal(other, sub[i], 32);
	}

	/* Exactly HKDF-SHA256(salt = none, IKM = key, info = "tdcrypt v1 xts"),
	 * as docs/FORMAT.md says. */
	assert_int_equal(td_volkey_derive(vk, TD_SUBKEY_XTS, again, 64), 0);
	assert_int_equal(
	    td_hkdf_sha256(NULL, 0, raw, sizeof(raw), "tdcrypt v1 xts", 14, manual, 64), 0);
	assert_memory_equal(again, manual, 64);
	assert_memory_equal(again, sub[0], 32);

	/* Bad purposes and lengths are refused and the output wiped. */
	memset(other, 0xee, sizeof(other));
	assert_int_equal(td_volkey_derive(vk, "", other, 32), -EINVAL);
	assert_int_equal(td_volkey_derive(vk, "has space", other, 32), -EINVAL);
	assert_int_equal(td_volkey_derive(vk, NULL, other, 32), -EINVAL);
	assert_int_equal(td_volkey_derive(NULL, "xts", other, 32), -EINVAL);
	assert_int_equal(td_volkey_derive(vk, "xts", other, 0), -EINVAL);
	assert_int_equal(
	    td_volkey_derive(
		vk, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", other, 32),
	    -EINVAL);
	for (size_t i = 0; i < sizeof(other); i++)
		assert_int_equal(other[i], 0);

	td_volkey_free(&vk);
	td_volkey_free(&vk2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alloc_free),		cmocka_unit_test(test_alloc_flags),
	    cmocka_unit_test(test_alloc_without_mlock), cmocka_unit_test(test_wipe),
	    cmocka_unit_test(test_harden_process),	cmocka_unit_test(test_volkey_lifecycle),
	    cmocka_unit_test(test_volkey_derive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
