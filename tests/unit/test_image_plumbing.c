/* The plumbing the image drivers share (tapdisk/block/image.h, fio.h,
 * tapdisk/core/lru.h): the spec options every driver reads the same way
 * (with each driver's own words in its messages), the request's
 * scatter-gather list (merging, slices, its cap), the LRU list. The I/O
 * itself is proven through the drivers: t-qcow2-*, t-vhd-*, t-vmdk-*. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/block/fio.h"
#include "tapdisk/block/image.h"
#include "tapdisk/core/lru.h"

static struct td_image_opts qopts(void)
{
	return (struct td_image_opts){.drv = "qcow2", .dir_key = "backing-dir", .cache = 123};
}

static void test_opts_good(void **state)
{
	struct td_image_opts o = qopts();
	char err[256] = "";

	(void)state;
	assert_int_equal(td_image_opts_parse(&o, NULL, err, sizeof(err)), 0);
	assert_int_equal(o.cache, 123);
	assert_int_equal(
	    td_image_opts_parse(&o, "cache=64K,backing-dir=/a,backing-dir=/b/c", err, sizeof(err)),
	    0);
	assert_int_equal(o.cache, 64 << 10);
	assert_int_equal(o.ndirs, 2);
	assert_string_equal(o.dirs[0], "/a");
	assert_string_equal(o.dirs[1], "/b/c");
	assert_int_equal(td_image_opts_parse(&o, "cache=4G", err, sizeof(err)), 0);
	assert_int_equal(o.cache, 4ull << 30);
	assert_int_equal(td_image_opts_parse(&o, "cache=16m", err, sizeof(err)), 0);
	assert_int_equal(o.cache, 16 << 20);
	td_image_opts_free(&o);
	assert_int_equal(o.ndirs, 0);
}

static void test_opts_bad(void **state)
{
	const char *bad_cache[] = {"cache=",   "cache=1K",	    "cache=65535", "cache=5G",
				   "cache=1T", "cache=64KB",	    "cache=-64K",  "cache= 64K",
				   "cache=x",  "cache=17179869184G"};
	struct td_image_opts o = qopts();
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_cache) / sizeof(bad_cache[0]); i++) {
		char want[256];

		err[0] = 0;
		assert_int_equal(td_image_opts_parse(&o, bad_cache[i], err, sizeof(err)), -EINVAL);
		snprintf(want, sizeof(want), "qcow2: bad option '%s' (cache=64K..4G)",
			 bad_cache[i]);
		assert_string_equal(err, want);
	}
	assert_int_equal(td_image_opts_parse(&o, "cachex=1M", err, sizeof(err)), -EINVAL);
	assert_string_equal(err,
			    "qcow2: bad option 'cachex=1M' (known: cache=SIZE, backing-dir=DIR)");
	assert_int_equal(td_image_opts_parse(&o, "backing-dir=rel", err, sizeof(err)), -EINVAL);
	assert_string_equal(err,
			    "qcow2: bad option 'backing-dir=rel' (backing-dir=ABSOLUTE_DIR, at "
			    "most 8)");
	assert_int_equal(td_image_opts_parse(&o,
					     "backing-dir=/1,backing-dir=/2,backing-dir=/3,"
					     "backing-dir=/4,backing-dir=/5,backing-dir=/6,"
					     "backing-dir=/7,backing-dir=/8,backing-dir=/9",
					     err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(o.ndirs, 8);
	assert_string_equal(err, "qcow2: bad option 'backing-dir=/9' (backing-dir=ABSOLUTE_DIR, at "
				 "most 8)");
	td_image_opts_free(&o);
}

/* vmdk's words: extent-dir=, with backing-dir= as a second name. */
static void test_opts_alias(void **state)
{
	struct td_image_opts o = {
	    .drv = "vmdk", .dir_key = "extent-dir", .dir_alias = "backing-dir"};
	char err[256];

	(void)state;
	assert_int_equal(td_image_opts_parse(&o, "extent-dir=/x,backing-dir=/y", err, sizeof(err)),
			 0);
	assert_int_equal(o.ndirs, 2);
	assert_string_equal(o.dirs[1], "/y");
	assert_int_equal(td_image_opts_parse(&o, "extent-dirx=/x", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vmdk: bad option 'extent-dirx=/x' (known: cache=SIZE, "
				 "extent-dir=DIR)");
	assert_int_equal(td_image_opts_parse(&o, "backing-dir=y", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vmdk: bad option 'backing-dir=y' (extent-dir=ABSOLUTE_DIR, at "
				 "most 8)");
	td_image_opts_free(&o);
}

static void test_path_beside(void **state)
{
	char out[64], why[64];

	(void)state;
	assert_int_equal(
	    td_image_path_beside("/img/top.qcow2", "base.raw", out, sizeof(out), why, sizeof(why)),
	    0);
	assert_string_equal(out, "/img/base.raw");
	assert_int_equal(
	    td_image_path_beside("/img/top.qcow2", "/other/b", out, sizeof(out), why, sizeof(why)),
	    0);
	assert_string_equal(out, "/other/b");
	assert_int_equal(td_image_path_beside("/img/top",
					      "a-name-much-longer-than-the-buffer-is-"
					      "long-enough-for-at-all",
					      out, 32, why, sizeof(why)),
			 -ENAMETOOLONG);
	assert_string_equal(why, "path is too long");
}

static void test_fio_iov(void **state)
{
	static uint8_t buf[3 * 8192];
	struct td_fio_pool p;
	struct td_fio *o;
	struct iovec src[3] = {{buf, 100}, {buf + 100, 200}, {buf + 8192, 50}};

	(void)state;
	td_fio_pool_init(&p, NULL, &p, TD_FIO_SHORT_EIO);
	o = td_fio_get(&p, NULL, NULL);
	assert_non_null(o);
	assert_ptr_equal(o->drv, &p);
	/* contiguous pieces merge */
	assert_int_equal(td_fio_add(o, buf, 10), 0);
	assert_int_equal(td_fio_add(o, buf + 10, 10), 0);
	assert_int_equal(o->iovcnt, 1);
	assert_int_equal(o->len, 20);
	/* bytes [50, 330) of src: the rest of src[0], all of src[1] (merged), 30 of src[2] */
	assert_int_equal(td_fio_add_slice(o, src, 3, 50, 280), 0);
	assert_int_equal(o->iovcnt, 3);
	assert_ptr_equal(o->iov[1].iov_base, buf + 50);
	assert_int_equal(o->iov[1].iov_len, 250);
	assert_ptr_equal(o->iov[2].iov_base, buf + 8192);
	assert_int_equal(o->iov[2].iov_len, 30);
	assert_int_equal(o->len, 300);
	assert_int_equal(td_fio_add_slice(o, src, 3, 340, 20), -EINVAL); /* past its end */
	td_fio_put(o);

	/* the list grows to TD_FIO_MAX_IOV iovecs, no further */
	o = td_fio_get(&p, NULL, NULL);
	assert_non_null(o);
	assert_int_equal(o->iovcnt, 0);
	for (int i = 0; i < TD_FIO_MAX_IOV; i++) {
		assert_int_equal(td_fio_add(o, buf + 2 * (i % 4096), 1), 0);
		assert_int_equal(td_fio_full(o), i + 1 >= TD_FIO_FULL_IOV);
	}
	assert_int_equal(o->iovcnt, TD_FIO_MAX_IOV);
	assert_int_equal(td_fio_add(o, buf + 8193, 1), -E2BIG);
	td_fio_put(o);
	td_fio_pool_drain(&p);
}

struct ent {
	int id;
	struct td_lru_link lru;
};

static void test_lru(void **state)
{
	struct td_lru l = {0};
	struct ent e[3] = {{.id = 0}, {.id = 1}, {.id = 2}};

	(void)state;
	assert_null(td_lru_entry(l.head, struct ent, lru));
	for (int i = 0; i < 3; i++)
		td_lru_push_head(&l, &e[i].lru);
	assert_int_equal(td_lru_entry(l.head, struct ent, lru)->id, 2);
	assert_int_equal(td_lru_entry(l.tail, struct ent, lru)->id, 0);
	td_lru_touch(&l, &e[0].lru);
	assert_int_equal(td_lru_entry(l.head, struct ent, lru)->id, 0);
	assert_int_equal(td_lru_entry(l.tail, struct ent, lru)->id, 1);
	td_lru_touch(&l, &e[0].lru); /* already the head */
	assert_int_equal(td_lru_entry(l.head, struct ent, lru)->id, 0);
	td_lru_unlink(&l, &e[1].lru);
	assert_int_equal(td_lru_entry(l.tail, struct ent, lru)->id, 2);
	assert_int_equal(td_lru_entry(l.tail->prev, struct ent, lru)->id, 0);
	td_lru_unlink(&l, &e[0].lru);
	td_lru_unlink(&l, &e[2].lru);
	assert_null(l.head);
	assert_null(l.tail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_opts_good),  cmocka_unit_test(test_opts_bad),
	    cmocka_unit_test(test_opts_alias), cmocka_unit_test(test_path_beside),
	    cmocka_unit_test(test_fio_iov),    cmocka_unit_test(test_lru),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
