/* No unwiped copy of key material in a process's memory after the real
 * TPM2 keyslot path ran (issue 19, gap 1; SECURITY.md "vdkey's heap").
 *
 * This binary links vdkey's wiping allocator (keymgr/vdkey/wipe_heap.c),
 * starts a software TPM (swtpm), seals a fresh KEK through keymgr/tpm2.c,
 * wraps a volume key in a token keyslot with it, unseals the KEK again and
 * opens the slot, so libtss2 (ESYS, its TCTI), libcrypto and glibc all
 * handle both secrets. Every libtss2 context is finalized by then. It then
 * reads /proc/self/maps and searches every readable mapping for the KEK's
 * 32 bytes and the volume key's 64: the only places allowed to hold them
 * are the live secure buffers the test itself holds (the KEK it was handed,
 * the KEK unsealed, the two volume keys). Without the wiping allocator
 * libtss2's freed context and command buffer still hold the KEK. The
 * same for a Tang keyslot against a real tang server (libcurl, libjose,
 * jansson). Another test checks that a freed and a moved (realloc) block keep nothing, also
 * in another thread. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/header.h"
#include "keymgr/keyslot.h"
#include "keymgr/tang.h"
#include "keymgr/tpm2.h"
#include "keymgr/vdkey/wipe_heap.h"

/* ---- the memory scan ---------------------------------------------------- */

#define MAX_ALLOWED 8
#define MAX_HITS 32

struct scan {
	const uint8_t *needle; /* in secure memory */
	size_t len;
	const void *allowed[MAX_ALLOWED]; /* the live secure copies */
	int n_allowed;
	int hits;
	char where[MAX_HITS][160];
};

static bool allowed(const struct scan *s, const uint8_t *p)
{
	for (int i = 0; i < s->n_allowed; i++)
		if ((const void *)p == s->allowed[i])
			return true;
	return false;
}

/* A plain byte compare: no search algorithm that would copy the needle
 * into tables or onto the stack in a form we would then find. */
static void scan_range(struct scan *s, const uint8_t *lo, const uint8_t *hi, const char *name)
{
	const uint8_t first = s->needle[0];

	for (const uint8_t *p = lo; p + s->len <= hi; p++) {
		if (*p != first || memcmp(p, s->needle, s->len) != 0 || allowed(s, p))
			continue;
		if (s->hits < MAX_HITS)
			snprintf(s->where[s->hits], sizeof(s->where[0]), "%p in %s (+0x%zx)",
				 (const void *)p, name, (size_t)(p - lo));
		s->hits++;
	}
}

static char maps_buf[1 << 20];

/* Every readable mapping that a running program writes to: anonymous
 * memory, the heap, stacks, and the writable data of the binaries. */
static void scan_process(struct scan *s)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r;
	char *line, *save = NULL;

	assert_true(fd >= 0);
	while (n < sizeof(maps_buf) - 1 &&
	       (r = read(fd, maps_buf + n, sizeof(maps_buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	maps_buf[n] = 0;
	for (line = strtok_r(maps_buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long lo, hi;
		char perms[8] = "", name[128] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %127[^\n]", &lo, &hi, perms, name) < 3)
			continue;
		if (perms[0] != 'r' || perms[1] != 'w')
			continue;
		if (strstr(name, "[vvar") || strstr(name, "[vsyscall]"))
			continue;
		if (!name[0])
			snprintf(name, sizeof(name), "anonymous");
		scan_range(s, (const uint8_t *)lo, (const uint8_t *)hi, name);
	}
}

/* unused in sanitizer builds, which do not scan */
__attribute__((unused)) static void expect_no_copy(const char *what, const uint8_t *needle,
						   size_t len, const void *const *live, int n_live)
{
	struct scan *s = td_secure_alloc(sizeof(*s));

	assert_non_null(s);
	s->needle = needle;
	s->len = len;
	for (int i = 0; i < n_live && i < MAX_ALLOWED; i++)
		s->allowed[s->n_allowed++] = live[i];
	scan_process(s);
	for (int i = 0; i < s->hits && i < MAX_HITS; i++)
		print_message("  a copy of the %s at %s\n", what, s->where[i]);
	if (s->hits)
		fail_msg("%d unwiped cop%s of the %s outside the secure buffers", s->hits,
			 s->hits == 1 ? "y" : "ies", what);
	td_secure_free(s);
}

/* ---- a software TPM ----------------------------------------------------- */

static pid_t swtpm_pid;
static char tcti[128];
static char tpm_dir[] = "/tmp/td-heapwipe-XXXXXX";

static bool port_free(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static bool port_answers(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int start_swtpm(void **state)
{
	char server[96], ctrl[96], dir[96];
	int port = 0;

	if (access("/usr/bin/swtpm", X_OK) != 0) {
		print_message("swtpm is not installed (scripts/install-deps.sh installs it): "
			      "the TPM2 test is skipped\n");
		return 0;
	}
	assert_non_null(mkdtemp(tpm_dir));
	srandom((unsigned)getpid());
	for (int i = 0; i < 200 && !port; i++) {
		int p = 20000 + 2 * (int)(random() % 20000);

		if (port_free(p) && port_free(p + 1))
			port = p;
	}
	assert_true(port != 0);
	snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", port);
	snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", port + 1);
	snprintf(dir, sizeof(dir), "dir=%s", tpm_dir);
	swtpm_pid = fork();
	assert_true(swtpm_pid >= 0);
	if (swtpm_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl("/usr/bin/swtpm", "swtpm", "socket", "--tpm2", "--server", server, "--ctrl",
		      ctrl, "--tpmstate", dir, "--flags", "startup-clear,not-need-init",
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && !port_answers(port); i++)
		usleep(50000);
	assert_true(port_answers(port));
	snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", port);
	unsetenv("TPM2TOOLS_TCTI");
	unsetenv("TCTI");
	return 0;
}

static int stop_swtpm(void **state)
{
	char cmd[160];

	if (swtpm_pid > 0) {
		kill(swtpm_pid, SIGTERM);
		waitpid(swtpm_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tpm_dir);
	if (strncmp(tpm_dir, "/tmp/td-heapwipe-", 17) == 0 && system(cmd) != 0)
		return -1;
	return 0;
}

/* ---- the tests ---------------------------------------------------------- */

static void test_tpm2_path_leaves_no_copy(void **state)
{
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_volkey *vk = td_volkey_new_random(), *vk2 = NULL;
	uint8_t *kek = td_secure_alloc(TD_TPM2_KEK_LEN);
	uint8_t *kek2 = td_secure_alloc(TD_TPM2_KEK_LEN);
	uint8_t token[TD_HDR_TOKEN_MAX];
	size_t token_len = 0;
	char err[512] = "";
	int slot;

	if (!swtpm_pid)
		skip();
	assert_true(td_wipe_heap_active() || TD_WIPE_HEAP_SANITIZED);
	assert_non_null(h);
	assert_non_null(vk);
	assert_non_null(kek);
	assert_non_null(kek2);
	assert_int_equal(td_hdr_init_new(h, 1ULL << 30, "none"), 0);
	assert_int_equal(td_keyslot_add(h, 0, vk, "pw", 2, &kp), 0);
	if (td_tpm2_seal(tcti, 1u << 16, token, sizeof(token), &token_len, kek, err, sizeof(err)) !=
	    0)
		fail_msg("seal: %s", err);
	slot = td_keyslot_add_token(h, -1, vk, TD_KDF_TPM2, token, token_len, kek, TD_TPM2_KEK_LEN);
	assert_true(slot > 0);
	assert_int_equal(td_hdr_seal(h, vk), 0);
	if (td_tpm2_unseal(tcti, token, token_len, kek2, err, sizeof(err)) != 0)
		fail_msg("unseal: %s", err);
	assert_memory_equal(kek, kek2, TD_TPM2_KEK_LEN);
	assert_int_equal(td_keyslot_unlock_token(h, slot, kek2, TD_TPM2_KEK_LEN, &vk2), 0);
	assert_int_equal(td_volkey_equal(vk, vk2), 1);
	free(h);

#ifdef TD_SANITIZED
	/* the sanitizer's allocator is not ours to wipe (keymgr/vdkey/wipe_heap.c) */
	print_message("sanitizer build: the memory scan is not run\n");
#else
	{
		const void *kek_live[] = {kek, kek2};
		const void *vk_live[] = {td_volkey_bytes(vk), td_volkey_bytes(vk2)};

		expect_no_copy("TPM2 KEK", kek, TD_TPM2_KEK_LEN, kek_live, 2);
		expect_no_copy("volume key", td_volkey_bytes(vk), TD_VOLKEY_LEN, vk_live, 2);
	}
#endif
	td_volkey_free(&vk);
	td_volkey_free(&vk2);
	td_secure_free(kek);
	td_secure_free(kek2);
}

/* ---- a Tang server (tangd behind socat, as t-tang-keyslot.sh runs it) --- */

#define TANGD "/usr/libexec/tangd"
#define TANG_KEYGEN "/usr/libexec/tangd-keygen"

static pid_t tang_pid;
static char tang_url[64];
static char tang_dir[] = "/tmp/td-heapwipe-tang-XXXXXX";

static void start_tang(void)
{
	char listen[96], exec[160], cmd[200];
	int port = 0;

	if (access(TANGD, X_OK) != 0 || access(TANG_KEYGEN, X_OK) != 0 ||
	    access("/usr/bin/socat", X_OK) != 0) {
		print_message("tang or socat is not installed (scripts/install-deps.sh installs "
			      "them): the Tang test is skipped\n");
		return;
	}
	assert_non_null(mkdtemp(tang_dir));
	snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", TANG_KEYGEN, tang_dir);
	assert_int_equal(system(cmd), 0);
	for (int i = 0; i < 200 && !port; i++) {
		int p = 20000 + (int)(random() % 40000);

		if (port_free(p))
			port = p;
	}
	assert_true(port != 0);
	snprintf(listen, sizeof(listen), "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port);
	snprintf(exec, sizeof(exec), "EXEC:%s %s", TANGD, tang_dir);
	tang_pid = fork();
	assert_true(tang_pid >= 0);
	if (tang_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl("/usr/bin/socat", "socat", listen, exec, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && !port_answers(port); i++)
		usleep(50000);
	assert_true(port_answers(port));
	snprintf(tang_url, sizeof(tang_url), "http://127.0.0.1:%d", port);
}

static void stop_tang(void)
{
	char cmd[160];

	if (tang_pid > 0) {
		kill(tang_pid, SIGTERM);
		waitpid(tang_pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tang_dir);
	if (tang_pid > 0 && system(cmd) != 0)
		print_message("could not remove %s\n", tang_dir);
	tang_pid = 0;
}

/* The same for a Tang keyslot: provisioning (GET /adv, the ECMR exchange,
 * a test recovery) and a recovery, through libcurl, libjose, jansson and
 * libcrypto; then the KEK and the volume key are nowhere but in the test's
 * secure buffers. */
static void test_tang_path_leaves_no_copy(void **state)
{
	struct td_kdf_params kp = td_kdf_params_minimal(TD_KDF_PBKDF2_SHA256);
	struct td_tang_enroll a = {.trust = true, .timeout_s = 10};
	struct td_crypt_hdr *h;
	struct td_volkey *vk, *vk2 = NULL;
	uint8_t *kek, *kek2;
	uint8_t token[TD_HDR_TOKEN_MAX];
	size_t token_len = 0;
	char err[512] = "";
	int slot;

	(void)state;
	start_tang();
	if (!tang_pid)
		skip();
	a.url = tang_url;
	h = calloc(1, sizeof(*h));
	vk = td_volkey_new_random();
	kek = td_secure_alloc(TD_TANG_KEK_LEN);
	kek2 = td_secure_alloc(TD_TANG_KEK_LEN);
	assert_non_null(h);
	assert_non_null(vk);
	assert_non_null(kek);
	assert_non_null(kek2);
	assert_int_equal(td_hdr_init_new(h, 1ULL << 30, "none"), 0);
	assert_int_equal(td_keyslot_add(h, 0, vk, "pw", 2, &kp), 0);
	if (td_tang_provision(&a, token, sizeof(token), &token_len, kek, err, sizeof(err)) != 0)
		fail_msg("tang provision: %s", err);
	slot = td_keyslot_add_token(h, -1, vk, TD_KDF_TANG, token, token_len, kek, TD_TANG_KEK_LEN);
	assert_true(slot > 0);
	assert_int_equal(td_hdr_seal(h, vk), 0);
	if (td_tang_recover(token, token_len, 10, kek2, err, sizeof(err)) != 0)
		fail_msg("tang recover: %s", err);
	assert_memory_equal(kek, kek2, TD_TANG_KEK_LEN);
	assert_int_equal(td_keyslot_unlock_token(h, slot, kek2, TD_TANG_KEK_LEN, &vk2), 0);
	assert_int_equal(td_volkey_equal(vk, vk2), 1);
	free(h);
	stop_tang();
#ifdef TD_SANITIZED
	print_message("sanitizer build: the memory scan is not run\n");
#else
	{
		const void *kek_live[] = {kek, kek2};
		const void *vk_live[] = {td_volkey_bytes(vk), td_volkey_bytes(vk2)};

		expect_no_copy("Tang KEK", kek, TD_TANG_KEK_LEN, kek_live, 2);
		expect_no_copy("volume key", td_volkey_bytes(vk), TD_VOLKEY_LEN, vk_live, 2);
	}
#endif
	td_volkey_free(&vk);
	td_volkey_free(&vk2);
	td_secure_free(kek);
	td_secure_free(kek2);
}

/* freed, reallocated (moved and shrunk in place), freed by another
 * thread, and read through stdio (glibc frees its FILE buffer itself, from
 * inside libc): nothing of the marker stays */
static void *thread_free(void *p)
{
	free(p);
	return NULL;
}

static void test_free_and_realloc_wipe(void **state)
{
	uint8_t *marker = td_secure_alloc(48);
	uint8_t *a, *b, *c;
	pthread_t th;

	(void)state;
	assert_non_null(marker);
	for (int i = 0; i < 48; i++)
		marker[i] = (uint8_t)(0xc3 ^ (i * 29));
	a = malloc(40);
	b = calloc(1, 100);
	c = NULL;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(posix_memalign((void **)&c, 64, 200), 0);
	memcpy(a, marker, 40);
	memcpy(b + 10, marker, 40);
	memcpy(c + 100, marker, 40);
	a = realloc(a, 4000); /* moves: the old block is wiped */
	assert_non_null(a);
	a = realloc(a, 3000); /* shrinks in place */
	assert_non_null(a);
	free(a);
	assert_int_equal(pthread_create(&th, NULL, thread_free, b), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	c = reallocarray(c, 10, 1000);
	assert_non_null(c);
	free(c);
	{
		char path[] = "/tmp/td-heapwipe-stdio-XXXXXX";
		uint8_t pad[100] = {0};
		char got[8];
		int fd = mkstemp(path);
		FILE *f;

		assert_true(fd >= 0);
		assert_int_equal(write(fd, pad, sizeof(pad)), (ssize_t)sizeof(pad));
		assert_int_equal(write(fd, marker, 40), 40);
		close(fd);
		f = fopen(path, "r");
		assert_non_null(f);
		/* one read fills libc's buffer with the whole file */
		assert_int_equal(fread(got, 1, sizeof(got), f), sizeof(got));
		fclose(f);
		/* the page cache is the file's, not this process's */
		assert_int_equal(unlink(path), 0);
	}
#ifndef TD_SANITIZED
	{
		const void *live[] = {marker};

		expect_no_copy("marker", marker, 40, live, 1);
	}
#endif
	td_secure_free(marker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_free_and_realloc_wipe),
	    cmocka_unit_test(test_tpm2_path_leaves_no_copy),
	    cmocka_unit_test(test_tang_path_leaves_no_copy),
	};

	setenv("TSS2_LOG", "all+none", 1);
	return cmocka_run_group_tests(tests, start_swtpm, stop_swtpm);
}
