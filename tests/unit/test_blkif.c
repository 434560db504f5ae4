/* The Xen blkif front end (tapdisk/blkif/) without a hypervisor: a fake
 * xenio (a grant table of local pages, an eventfd for the event channel)
 * lets this test play the guest's blkfront. It writes requests into the
 * shared ring in both x86 ABIs and checks the responses and the data:
 * every request type (direct and indirect reads and writes, flush, barrier,
 * discard), a multi-page ring of 256 slots full of indirect requests, and a
 * hostile frontend (too many segments, bad grant references, sectors past
 * the disk or the page, garbage indirect pages, unknown operations, writes
 * to a read-only disk, a producer index that jumps past the ring), which
 * gets errors or a ring no longer served, never a crash or a hang. The
 * same layouts are checked against Xen's own header (x86_64). With
 * feature-persistent (test_persistent_*) the fake also maps single pages
 * and holds them like Xen does; a frontend that changes, re-grants or
 * revokes a mapped page, names unmappable grants or too many of them
 * gets correct data or errors, bounded mappings, all unmapped at the end. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/le.h"

#include <xen/io/blkif.h>

#include "tapdisk/blkif/blkif.h"
#include "tapdisk/block/vbd.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/workers.h"
#include "tapdisk/qcow2/qcow2.h"
#include "tapdisk/registry/registry.h"

/* ---- the fake Xen ----------------------------------------------------------- */

#define NGRANTS 8192

struct td_xenio {
	uint8_t *page[NGRANTS];
	int efd;	   /* frontend -> backend events */
	unsigned notified; /* backend -> frontend notifications */
	bool bound;
	unsigned copies;
	/* persistent grants: maps asked for, maps alive, grants that refuse
	 * to be mapped (another domain's, or granted read-only) */
	unsigned pmap_calls, pmaps;
	bool nomap[NGRANTS];
};

static void *fx_map(struct td_xenio *x, uint32_t domid, const uint32_t *refs, unsigned n)
{
	/* the test grants ring pages as one contiguous run */
	for (unsigned i = 0; i < n; i++)
		if (refs[i] >= NGRANTS || !x->page[refs[i]] ||
		    x->page[refs[i]] != x->page[refs[0]] + (size_t)i * 4096)
			return NULL;
	return x->page[refs[0]];
}

static void fx_unmap(struct td_xenio *x, void *addr, unsigned n)
{
}

/* Like Xen: the mapping holds the frame the grant named when it was
 * mapped, whatever the guest does with the grant afterwards (the tests
 * that re-grant a reference keep the old page alive until the end). */
static void *fx_map_page(struct td_xenio *x, uint32_t domid, uint32_t ref)
{
	x->pmap_calls++;
	if (ref >= NGRANTS || !x->page[ref] || x->nomap[ref])
		return NULL;
	x->pmaps++;
	return x->page[ref];
}

static void fx_unmap_page(struct td_xenio *x, void *addr)
{
	assert_non_null(addr);
	assert_true(x->pmaps > 0);
	x->pmaps--;
}

static int fx_copy(struct td_xenio *x, uint32_t domid, struct td_xenio_copy *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		x->copies++;
		if (c[i].gref >= NGRANTS || !x->page[c[i].gref] ||
		    (unsigned)c[i].offset + c[i].len > 4096) {
			c[i].status = -4; /* GNTST_bad_gntref */
			continue;
		}
		if (c[i].to_guest)
			memcpy(x->page[c[i].gref] + c[i].offset, c[i].local, c[i].len);
		else
			memcpy(c[i].local, x->page[c[i].gref] + c[i].offset, c[i].len);
		c[i].status = 0;
	}
	return 0;
}

static int fx_bind(struct td_xenio *x, uint32_t domid, uint32_t remote, uint32_t *local)
{
	x->bound = true;
	*local = 7;
	return 0;
}

static void fx_unbind(struct td_xenio *x, uint32_t local)
{
	x->bound = false;
}

static int fx_notify(struct td_xenio *x, uint32_t local)
{
	x->notified++;
	return 0;
}

static int fx_fd(struct td_xenio *x)
{
	return x->efd;
}

static int fx_pending(struct td_xenio *x, uint32_t *port)
{
	uint64_t v;

	if (read(x->efd, &v, sizeof(v)) != sizeof(v))
		return -EAGAIN;
	*port = 7;
	return 0;
}

static const struct td_xenio_ops fake_ops = {
    .map = fx_map,
    .unmap = fx_unmap,
    .map_page = fx_map_page,
    .unmap_page = fx_unmap_page,
    .copy = fx_copy,
    .bind = fx_bind,
    .unbind = fx_unbind,
    .notify = fx_notify,
    .fd = fx_fd,
    .pending = fx_pending,
};

/* ---- the guest ---------------------------------------------------------------- */

struct env {
	struct td_ctx ctx;
	struct vbd *vbd;
	struct td_xenio x;
	struct td_blkif *b;
	enum td_blkif_abi abi;
	unsigned npages, slots;
	uint8_t *ring; /* grants 0..npages-1 */
	uint32_t next_grant;
	uint32_t req_prod, rsp_cons;
	char dir[64], img[128];
};

static char err[1024];
static bool g_qcow2;	       /* env_up: a qcow2 image instead of a raw one */
static bool g_persistent;      /* env_up: feature-persistent negotiated */
static const char *g_layer;    /* env_up: a layer stacked above the image ("fault,...") */
static unsigned g_last_copies; /* env_down: the grant copies the fake did */

static uint32_t grant_page(struct env *e)
{
	uint32_t g = e->next_grant++;

	assert_true(g < NGRANTS);
	if (!e->x.page[g])
		assert_int_equal(posix_memalign((void **)&e->x.page[g], 4096, 4096), 0);
	return g;
}

static uint8_t *slot(struct env *e, uint32_t idx)
{
	return e->ring + 64 + (size_t)(idx & (e->slots - 1)) * td_blkif_slot_size(e->abi);
}

/* offsets of the ABI the test speaks (see tapdisk/blkif/blkif_proto.c) */
static size_t off_id(const struct env *e)
{
	return e->abi == TD_BLKIF_ABI_X86_64 ? 8 : 4;
}

static void req_rw(struct env *e, uint8_t op, uint64_t id, uint64_t sector, unsigned nseg,
		   const uint32_t *grefs, const uint8_t *first, const uint8_t *last)
{
	uint8_t *s = slot(e, e->req_prod++);
	size_t seg = e->abi == TD_BLKIF_ABI_X86_64 ? 24 : 20;

	memset(s, 0, td_blkif_slot_size(e->abi));
	s[0] = op;
	s[1] = (uint8_t)nseg;
	put16(s + 2, 0x51);
	put64(s + off_id(e), id);
	put64(s + off_id(e) + 8, sector);
	for (unsigned i = 0; i < nseg && i < 11; i++) {
		put32(s + seg + 8 * i, grefs[i]);
		s[seg + 8 * i + 4] = first ? first[i] : 0;
		s[seg + 8 * i + 5] = last ? last[i] : 7;
	}
}

static void req_discard(struct env *e, uint64_t id, uint64_t sector, uint64_t n)
{
	uint8_t *s = slot(e, e->req_prod++);

	memset(s, 0, td_blkif_slot_size(e->abi));
	s[0] = TD_BLKIF_OP_DISCARD;
	put64(s + off_id(e), id);
	put64(s + off_id(e) + 8, sector);
	put64(s + off_id(e) + 16, n);
}

/* An indirect request of nseg whole pages (grants data[0..nseg-1]). */
static void req_indirect(struct env *e, uint8_t op, uint64_t id, uint64_t sector, unsigned nseg,
			 const uint32_t *data)
{
	uint8_t *s = slot(e, e->req_prod++);
	size_t grefs = e->abi == TD_BLKIF_ABI_X86_64 ? 28 : 24;
	unsigned pages = (nseg + 511) / 512, i;

	memset(s, 0, td_blkif_slot_size(e->abi));
	s[0] = TD_BLKIF_OP_INDIRECT;
	s[1] = op;
	put16(s + 2, (uint16_t)nseg);
	put64(s + off_id(e), id);
	put64(s + off_id(e) + 8, sector);
	for (i = 0; i < pages; i++) {
		uint32_t g = grant_page(e);

		memset(e->x.page[g], 0, 4096);
		for (unsigned k = 0; k < 512 && i * 512 + k < nseg; k++) {
			put32(e->x.page[g] + 8 * k, data[i * 512 + k]);
			e->x.page[g][8 * k + 4] = 0;
			e->x.page[g][8 * k + 5] = 7;
		}
		put32(s + grefs + 4 * i, g);
	}
}

static void ring_push(struct env *e)
{
	uint64_t one = 1;

	__atomic_store_n((uint32_t *)e->ring, e->req_prod, __ATOMIC_RELEASE);
	assert_int_equal(write(e->x.efd, &one, sizeof(one)), sizeof(one));
}

/* Runs the loop until n more responses are on the ring (bounded). */
static void wait_rsp(struct env *e, unsigned n)
{
	for (int i = 0; i < 20000; i++) {
		uint32_t rp = __atomic_load_n((uint32_t *)(e->ring + 8), __ATOMIC_ACQUIRE);

		if ((uint32_t)(rp - e->rsp_cons) >= n)
			return;
		td_loop_run_once(e->ctx.loop, 10);
	}
	fail_msg("no %u responses (have %u)", n,
		 (unsigned)(*(uint32_t *)(e->ring + 8) - e->rsp_cons));
}

static uint8_t last_rsp_op;

/* The next response: its id and status (its operation in last_rsp_op). */
static int16_t rsp(struct env *e, uint64_t *id)
{
	uint8_t *s = slot(e, e->rsp_cons++);

	last_rsp_op = s[8];
	*id = (uint64_t)s[0] | (uint64_t)s[1] << 8 | (uint64_t)s[2] << 16 | (uint64_t)s[3] << 24 |
	      (uint64_t)s[4] << 32 | (uint64_t)s[5] << 40 | (uint64_t)s[6] << 48 |
	      (uint64_t)s[7] << 56;
	return (int16_t)(s[10] | s[11] << 8);
}

/* ... and with the operation a Linux blkfront insists on: an indirect
 * request's indirect_op, never BLKIF_OP_INDIRECT (it disables the disk) */
static void expect_rsp_op(struct env *e, uint64_t want_id, int16_t want, uint8_t op)
{
	uint64_t id;
	int16_t st;

	wait_rsp(e, 1);
	st = rsp(e, &id);
	assert_int_equal(id, want_id);
	assert_int_equal(st, want);
	if (last_rsp_op != op)
		fail_msg("request %llu: response operation %u, want %u", (unsigned long long)id,
			 last_rsp_op, op);
}

static void expect_rsp(struct env *e, uint64_t want_id, int16_t want)
{
	uint64_t id;
	int16_t st;

	wait_rsp(e, 1);
	st = rsp(e, &id);
	assert_int_equal(id, want_id);
	if (st != want)
		fail_msg("request %llu: status %d, want %d", (unsigned long long)id, st, want);
}

static void env_up(struct env *e, enum td_blkif_abi abi, unsigned npages, bool readonly)
{
	struct td_blkif_params p;
	char spec[200];
	int fd;

	memset(e, 0, sizeof(*e));
	e->abi = abi;
	e->npages = npages;
	snprintf(e->dir, sizeof(e->dir), "/tmp/tdblkif.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->img, sizeof(e->img), "%s/disk.img", e->dir);
	if (g_qcow2) {
		assert_int_equal(td_qcow2_create(e->img, 64 << 20, 65536, err, sizeof(err)), 0);
	} else {
		fd = open(e->img, O_RDWR | O_CREAT, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 64 << 20), 0);
		close(fd);
	}
	e->ctx.loop = td_loop_new();
	e->ctx.io = td_io_new(e->ctx.loop, 256);
	e->ctx.workers = td_workers_new(e->ctx.loop, 0);
	e->ctx.readonly = readonly;
	snprintf(spec, sizeof(spec), "%s%s%s:%s", g_layer ? g_layer : "", g_layer ? ":" : "",
		 g_qcow2 ? "qcow2" : "aio", e->img);
	assert_int_equal(vbd_open(&e->ctx, spec, &e->vbd, err, sizeof(err)), 0);
	e->x.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(e->x.efd >= 0);
	/* the ring: npages contiguous pages, granted as 0..npages-1 */
	assert_int_equal(posix_memalign((void **)&e->ring, 4096, (size_t)npages * 4096), 0);
	memset(e->ring, 0, (size_t)npages * 4096);
	/* SHARED_RING_INIT: both event indexes at 1 */
	((uint32_t *)e->ring)[1] = 1;
	((uint32_t *)e->ring)[3] = 1;
	for (unsigned i = 0; i < npages; i++)
		e->x.page[i] = e->ring + (size_t)i * 4096;
	e->next_grant = npages;
	e->slots = td_blkif_ring_slots(abi, npages);
	memset(&p, 0, sizeof(p));
	p.domid = 3;
	p.nring = npages;
	for (unsigned i = 0; i < npages; i++)
		p.ring_refs[i] = i;
	p.evtchn = 9;
	p.abi = abi;
	p.persistent = g_persistent;
	e->b = td_blkif_connect(e->ctx.loop, e->vbd, &fake_ops, &e->x, &p, err, sizeof(err));
	assert_non_null(e->b);
	td_loop_run_once(e->ctx.loop, 0);
}

static void closed(void *opaque)
{
	*(bool *)opaque = true;
}

static void env_down(struct env *e)
{
	bool done = false;

	td_blkif_disconnect(e->b, closed, &done);
	for (int i = 0; i < 1000 && !done; i++)
		td_loop_run_once(e->ctx.loop, 10);
	assert_true(done);
	assert_false(e->x.bound);
	assert_int_equal(e->x.pmaps, 0); /* every persistent grant was unmapped */
	if (!g_persistent)
		assert_int_equal(e->x.pmap_calls, 0); /* not negotiated: nothing mapped */
	g_last_copies = e->x.copies;
	vbd_close(e->vbd);
	td_workers_free(e->ctx.workers);
	td_io_free(e->ctx.io);
	td_loop_free(e->ctx.loop);
	for (unsigned i = e->npages; i < NGRANTS; i++)
		free(e->x.page[i]);
	free(e->ring);
	close(e->x.efd);
	unlink(e->img);
	rmdir(e->dir);
}

static void fill_pages(struct env *e, const uint32_t *g, unsigned n, uint8_t seed)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < 4096; k++)
			e->x.page[g[i]][k] = (uint8_t)(seed + i * 7 + k);
}

static void check_pages(struct env *e, const uint32_t *g, unsigned n, uint8_t seed)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < 4096; k++)
			if (e->x.page[g[i]][k] != (uint8_t)(seed + i * 7 + k))
				fail_msg("page %u byte %u: %02x, want %02x", i, k,
					 e->x.page[g[i]][k], (uint8_t)(seed + i * 7 + k));
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_layout_matches_xen(void **state)
{
	(void)state;
	/* x86_64 is the native ABI here: Xen's own header tells its layout */
	assert_int_equal(td_blkif_slot_size(TD_BLKIF_ABI_X86_64), sizeof(union blkif_sring_entry));
	assert_int_equal(offsetof(struct blkif_request, id), 8);
	assert_int_equal(offsetof(struct blkif_request, seg), 24);
	assert_int_equal(offsetof(struct blkif_request_indirect, indirect_grefs), 28);
	assert_int_equal(offsetof(struct blkif_request_discard, nr_sectors), 24);
	assert_int_equal(offsetof(struct blkif_sring, ring), TD_BLKIF_RING_HDR);
	assert_int_equal(td_blkif_ring_slots(TD_BLKIF_ABI_X86_64, 1),
			 __CONST_RING_SIZE(blkif, 4096));
	assert_int_equal(td_blkif_ring_slots(TD_BLKIF_ABI_X86_64, 8), 256);
	/* i386: 108-byte requests, still 32 slots in a page */
	assert_int_equal(td_blkif_slot_size(TD_BLKIF_ABI_X86_32), 108);
	assert_int_equal(td_blkif_ring_slots(TD_BLKIF_ABI_X86_32, 1), 32);
}

static void roundtrip(enum td_blkif_abi abi)
{
	struct env e;
	uint32_t w[11], r[11];
	uint32_t iw[256], ir[256];
	uint64_t id;

	env_up(&e, abi, 1, false);
	for (int i = 0; i < 11; i++) {
		w[i] = grant_page(&e);
		r[i] = grant_page(&e);
	}
	fill_pages(&e, w, 11, 0x21);
	req_rw(&e, TD_BLKIF_OP_WRITE, 100, 2048, 11, w, NULL, NULL);
	ring_push(&e);
	expect_rsp_op(&e, 100, TD_BLKIF_RSP_OKAY, TD_BLKIF_OP_WRITE);
	req_rw(&e, TD_BLKIF_OP_READ, 101, 2048, 11, r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 101, TD_BLKIF_RSP_OKAY);
	check_pages(&e, r, 11, 0x21);
	assert_true(e.x.notified > 0);

	/* partial pages: sectors 3..5 of a page, 512-byte aligned on the disk */
	{
		uint8_t first = 3, last = 5;
		uint32_t g = grant_page(&e), g2 = grant_page(&e);

		memset(e.x.page[g], 0x77, 4096);
		req_rw(&e, TD_BLKIF_OP_WRITE, 102, 7, 1, &g, &first, &last);
		ring_push(&e);
		expect_rsp(&e, 102, TD_BLKIF_RSP_OKAY);
		memset(e.x.page[g2], 0, 4096);
		req_rw(&e, TD_BLKIF_OP_READ, 103, 7, 1, &g2, &first, &last);
		ring_push(&e);
		expect_rsp(&e, 103, TD_BLKIF_RSP_OKAY);
		for (int k = 0; k < 4096; k++)
			assert_int_equal(e.x.page[g2][k], k >= 3 * 512 && k < 6 * 512 ? 0x77 : 0);
	}

	/* indirect: 256 pages (1 MiB) written, read back */
	for (int i = 0; i < 256; i++) {
		iw[i] = grant_page(&e);
		ir[i] = grant_page(&e);
	}
	fill_pages(&e, iw, 256, 0x5a);
	req_indirect(&e, TD_BLKIF_OP_WRITE, 200, 8192, 256, iw);
	ring_push(&e);
	expect_rsp_op(&e, 200, TD_BLKIF_RSP_OKAY, TD_BLKIF_OP_WRITE);
	req_indirect(&e, TD_BLKIF_OP_READ, 201, 8192, 256, ir);
	ring_push(&e);
	expect_rsp_op(&e, 201, TD_BLKIF_RSP_OKAY, TD_BLKIF_OP_READ);
	check_pages(&e, ir, 256, 0x5a);

	/* the empty flush of a Linux blkfront: its sector is (sector_t)-1
	 * (blk_rq_init), and it is still a good flush; an empty barrier too */
	req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 298, UINT64_MAX, 0, NULL, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_WRITE_BARRIER, 299, UINT64_MAX, 0, NULL, NULL, NULL);
	ring_push(&e);
	expect_rsp_op(&e, 298, TD_BLKIF_RSP_OKAY, TD_BLKIF_OP_FLUSH_DISKCACHE);
	expect_rsp_op(&e, 299, TD_BLKIF_RSP_OKAY, TD_BLKIF_OP_WRITE_BARRIER);

	/* flush, barrier with data, discard */
	req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 300, 0, 0, NULL, NULL, NULL);
	fill_pages(&e, w, 2, 0x33);
	req_rw(&e, TD_BLKIF_OP_WRITE_BARRIER, 301, 4096, 2, w, NULL, NULL);
	req_discard(&e, 302, 2048, 88);
	ring_push(&e);
	wait_rsp(&e, 3);
	for (int i = 0; i < 3; i++) {
		int16_t st = rsp(&e, &id);

		assert_true(id >= 300 && id <= 302);
		assert_int_equal(st, TD_BLKIF_RSP_OKAY);
	}
	req_rw(&e, TD_BLKIF_OP_READ, 303, 4096, 2, r, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 304, 2048, 9, r + 2, NULL, NULL);
	ring_push(&e);
	wait_rsp(&e, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
	check_pages(&e, r, 2, 0x33);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(e.x.page[r[2]][k], 0); /* discarded: reads zeros */
	env_down(&e);
}

static void test_roundtrip_x86_64(void **state)
{
	(void)state;
	roundtrip(TD_BLKIF_ABI_X86_64);
}

static void test_roundtrip_x86_32(void **state)
{
	(void)state;
	roundtrip(TD_BLKIF_ABI_X86_32);
}

/* 8 ring pages: 256 slots, every one an indirect write of 16 pages at a
 * place of its own, all pushed at once; then read back. */
static void test_full_ring_indirect(void **state)
{
	static uint32_t g[256][16];
	struct env e;
	uint64_t id;
	unsigned i;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 8, false);
	assert_int_equal(e.slots, 256);
	for (i = 0; i < 256; i++) {
		for (int k = 0; k < 16; k++)
			g[i][k] = grant_page(&e);
		fill_pages(&e, g[i], 16, (uint8_t)i);
		req_indirect(&e, TD_BLKIF_OP_WRITE, 1000 + i, (uint64_t)i * 128, 16, g[i]);
	}
	ring_push(&e);
	wait_rsp(&e, 256);
	for (i = 0; i < 256; i++)
		assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
	for (i = 0; i < 256; i++)
		for (int k = 0; k < 16; k++)
			memset(e.x.page[g[i][k]], 0, 4096);
	for (i = 0; i < 256; i++)
		req_indirect(&e, TD_BLKIF_OP_READ, 2000 + i, (uint64_t)i * 128, 16, g[i]);
	ring_push(&e);
	wait_rsp(&e, 256);
	for (i = 0; i < 256; i++)
		assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
	for (i = 0; i < 256; i++)
		check_pages(&e, g[i], 16, (uint8_t)i);
	env_down(&e);
}

static void test_hostile(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t g[11], bad = 99999;
	uint8_t first = 5, last = 2, big = 9;
	uint64_t disk = (64 << 20) / 512;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	for (int i = 0; i < 11; i++)
		g[i] = grant_page(&e);

	/* 12 segments in a direct request */
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 0, 11, g, NULL, NULL);
	slot(&e, e.req_prod - 1)[1] = 12;
	ring_push(&e);
	expect_rsp(&e, 1, TD_BLKIF_RSP_ERROR);
	/* a grant that does not exist */
	req_rw(&e, TD_BLKIF_OP_WRITE, 2, 0, 1, &bad, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 3, 0, 1, &bad, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 2, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 3, TD_BLKIF_RSP_ERROR);
	/* sectors reversed, and past the page */
	req_rw(&e, TD_BLKIF_OP_WRITE, 4, 0, 1, g, &first, &last);
	req_rw(&e, TD_BLKIF_OP_WRITE, 5, 0, 1, g, NULL, &big);
	ring_push(&e);
	expect_rsp(&e, 4, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 5, TD_BLKIF_RSP_ERROR);
	/* past the end of the disk, and wrapping around */
	req_rw(&e, TD_BLKIF_OP_READ, 6, disk - 4, 1, g, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 7, UINT64_MAX - 2, 1, g, NULL, NULL);
	req_discard(&e, 8, disk - 1, 2);
	req_discard(&e, 9, 8, UINT64_MAX);
	ring_push(&e);
	expect_rsp(&e, 6, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 7, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 8, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 9, TD_BLKIF_RSP_ERROR);
	/* the last sector itself is fine */
	req_rw(&e, TD_BLKIF_OP_READ, 10, disk - 8, 1, g, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 10, TD_BLKIF_RSP_OKAY);
	/* unknown operations; a read without segments; a flush with some */
	req_rw(&e, 77, 11, 0, 1, g, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 12, 0, 0, g, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 13, 0, 1, g, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 11, TD_BLKIF_RSP_EOPNOTSUPP);
	expect_rsp(&e, 12, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 13, TD_BLKIF_RSP_ERROR);
	/* indirect: 0 and 257 segments; an indirect flush; garbage pages */
	req_indirect(&e, TD_BLKIF_OP_WRITE, 14, 0, 2, g);
	put16(slot(&e, e.req_prod - 1) + 2, 0);
	req_indirect(&e, TD_BLKIF_OP_WRITE, 15, 0, 2, g);
	put16(slot(&e, e.req_prod - 1) + 2, 257);
	req_indirect(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 16, 0, 2, g);
	req_indirect(&e, TD_BLKIF_OP_WRITE, 17, 0, 2, g);
	{
		/* the indirect page the request names, overwritten with garbage */
		uint32_t ip = (uint32_t)slot(&e, e.req_prod - 1)[28] |
			      (uint32_t)slot(&e, e.req_prod - 1)[29] << 8;

		for (int k = 0; k < 4096; k++)
			e.x.page[ip][k] = (uint8_t)(k * 131 + 17);
	}
	req_indirect(&e, TD_BLKIF_OP_READ, 18, 0, 2, g);
	put32(slot(&e, e.req_prod - 1) + 28, bad); /* an indirect page not granted */
	ring_push(&e);
	for (uint64_t id = 14; id <= 18; id++)
		expect_rsp(&e, id, id == 16 ? TD_BLKIF_RSP_ERROR : TD_BLKIF_RSP_ERROR);
	td_blkif_get_stats(e.b, &st);
	assert_false(st.hostile);
	assert_true(st.bad_requests >= 15);

	/* the producer index jumps past the ring: no longer served */
	req_rw(&e, TD_BLKIF_OP_READ, 19, 0, 1, g, NULL, NULL);
	e.req_prod += 1000;
	ring_push(&e);
	for (int i = 0; i < 20; i++)
		td_loop_run_once(e.ctx.loop, 5);
	td_blkif_get_stats(e.b, &st);
	assert_true(st.hostile);
	assert_int_equal(*(uint32_t *)(e.ring + 8), e.rsp_cons); /* nothing answered */
	env_down(&e);

	/* writes, barriers and discards to a read-only disk */
	env_up(&e, TD_BLKIF_ABI_X86_32, 1, true);
	for (int i = 0; i < 2; i++)
		g[i] = grant_page(&e);
	req_rw(&e, TD_BLKIF_OP_WRITE, 30, 0, 1, g, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_WRITE_BARRIER, 31, 0, 1, g, NULL, NULL);
	req_discard(&e, 32, 0, 8);
	req_rw(&e, TD_BLKIF_OP_READ, 33, 0, 1, g + 1, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 30, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 31, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 32, TD_BLKIF_RSP_ERROR);
	expect_rsp(&e, 33, TD_BLKIF_RSP_OKAY);
	env_down(&e);
}

/* A disconnect while requests are in flight answers them first. */
static void test_disconnect_in_flight(void **state)
{
	struct env e;
	uint32_t g[8];
	bool done = false;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	for (int i = 0; i < 8; i++)
		g[i] = grant_page(&e);
	for (int i = 0; i < 8; i++)
		req_rw(&e, TD_BLKIF_OP_WRITE, 40 + i, (uint64_t)i * 8, 1, g + i, NULL, NULL);
	ring_push(&e);
	td_loop_run_once(e.ctx.loop, 0); /* taken off the ring, not done yet */
	td_blkif_disconnect(e.b, closed, &done);
	for (int i = 0; i < 1000 && !done; i++)
		td_loop_run_once(e.ctx.loop, 10);
	assert_true(done);
	assert_int_equal(*(uint32_t *)(e.ring + 8), 8); /* every request answered */
	e.b = NULL;
	vbd_close(e.vbd);
	td_workers_free(e.ctx.workers);
	td_io_free(e.ctx.io);
	td_loop_free(e.ctx.loop);
	for (unsigned i = e.npages; i < NGRANTS; i++)
		free(e.x.page[i]);
	free(e.ring);
	close(e.x.efd);
	unlink(e.img);
	rmdir(e.dir);
}

/* Completions of every kind in one loop turn: discards complete through
 * the loop's deferred calls (the aio driver has no discard), reads and
 * writes through the I/O events, flushes in between. The ring's own
 * deferred calls must not be queued twice: re-initialising a queued one
 * cut the loop's list and lost calls queued after it (the response push:
 * on real Xen the guest hung in mke2fs). */
static void test_mixed_completions(void **state)
{
	struct env e;
	uint32_t g[16];
	uint64_t id;
	unsigned n = 0;

	(void)state;
	g_qcow2 = true; /* its metadata work runs through deferred calls too */
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	g_qcow2 = false;
	for (int i = 0; i < 16; i++)
		g[i] = grant_page(&e);
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 8; i++) {
			switch (i % 4) {
			case 0:
				req_discard(&e, n++, (uint64_t)(round * 8 + i) * 128, 128);
				break;
			case 1:
				req_rw(&e, TD_BLKIF_OP_WRITE, n++, (uint64_t)(round * 8 + i) * 128,
				       1, g + i, NULL, NULL);
				break;
			case 2:
				req_rw(&e, TD_BLKIF_OP_READ, n++, (uint64_t)i * 64, 1, g + 8 + i,
				       NULL, NULL);
				break;
			default:
				req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, n++, 0, 0, NULL, NULL,
				       NULL);
				break;
			}
		}
		ring_push(&e);
		for (int k = 0; k < 2000; k++) {
			uint32_t rp = __atomic_load_n((uint32_t *)(e.ring + 8), __ATOMIC_ACQUIRE);

			if ((uint32_t)(rp - e.rsp_cons) >= 8)
				break;
			td_loop_run_once(e.ctx.loop, 1);
		}
		if ((uint32_t)(*(uint32_t *)(e.ring + 8) - e.rsp_cons) < 8)
			fail_msg("round %d: %u of 8 responses", round,
				 (unsigned)(*(uint32_t *)(e.ring + 8) - e.rsp_cons));
		for (int i = 0; i < 8; i++)
			assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
	}
	env_down(&e);
}

/* A refused request is answered at once, from inside the consumer loop;
 * a discard on a raw image completes through the loop's deferred calls.
 * [refused, discard, refused] in one push: the second answer must not
 * re-queue the ring's deferred call over the discard's (that cut the
 * loop's list: the discard was never answered). */
static void test_refused_around_deferred(void **state)
{
	struct env e;
	uint32_t g;
	uint64_t disk = (64 << 20) / 512;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	g = grant_page(&e);
	req_rw(&e, TD_BLKIF_OP_READ, 1, disk, 1, &g, NULL, NULL);
	req_discard(&e, 2, 0, 8);
	req_rw(&e, TD_BLKIF_OP_READ, 3, disk, 1, &g, NULL, NULL);
	req_discard(&e, 4, 8, 8);
	req_rw(&e, TD_BLKIF_OP_READ, 5, disk, 1, &g, NULL, NULL);
	ring_push(&e);
	for (int k = 0; k < 200; k++) {
		if ((uint32_t)(*(uint32_t *)(e.ring + 8) - e.rsp_cons) >= 5)
			break;
		td_loop_run_once(e.ctx.loop, 1);
	}
	if ((uint32_t)(*(uint32_t *)(e.ring + 8) - e.rsp_cons) < 5)
		fail_msg("%u of 5 responses", (unsigned)(*(uint32_t *)(e.ring + 8) - e.rsp_cons));
	for (int i = 0; i < 5; i++) {
		uint64_t id;
		int16_t st = rsp(&e, &id);

		assert_int_equal(st, id % 2 ? TD_BLKIF_RSP_ERROR : TD_BLKIF_RSP_OKAY);
	}
	env_down(&e);
}

/* The writes of one ring pass share one grant copy: a bad grant in one of
 * them fails that write only; a flush behind them is submitted after them. */
static void test_write_batch(void **state)
{
	struct env e;
	uint32_t w[3], r[3], bad = 99999;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	for (int i = 0; i < 3; i++) {
		w[i] = grant_page(&e);
		r[i] = grant_page(&e);
	}
	fill_pages(&e, w, 3, 0x3c);
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 0, 1, &w[0], NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_WRITE, 2, 8, 1, &bad, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_WRITE, 3, 16, 1, &w[2], NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 4, 0, 0, NULL, NULL, NULL);
	ring_push(&e);
	wait_rsp(&e, 4);
	for (int i = 0; i < 4; i++) {
		uint64_t id;
		int16_t st = rsp(&e, &id);

		assert_int_equal(st, id == 2 ? TD_BLKIF_RSP_ERROR : TD_BLKIF_RSP_OKAY);
	}
	req_rw(&e, TD_BLKIF_OP_READ, 5, 0, 1, &r[0], NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 6, 16, 1, &r[2], NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 5, TD_BLKIF_RSP_OKAY);
	expect_rsp(&e, 6, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++) {
		assert_int_equal(e.x.page[r[0]][k], e.x.page[w[0]][k]);
		assert_int_equal(e.x.page[r[2]][k], e.x.page[w[2]][k]);
	}
	env_down(&e);
}

/* ---- polling before sleep ---------------------------------------------------------- */

/* Puts the requests written so far on the ring without a notification: only
 * a look at req_prod can find them. */
static void ring_publish_quietly(struct env *e)
{
	__atomic_store_n((uint32_t *)e->ring, e->req_prod, __ATOMIC_RELEASE);
}

static unsigned rsp_prod(struct env *e)
{
	return __atomic_load_n((uint32_t *)(e->ring + 8), __ATOMIC_ACQUIRE);
}

/* After an answer, the loop looks at the ring before it sleeps (the poll
 * budget of the host's ring-poll-us): a request published without a
 * notification is served. With a budget of 0 it waits for the
 * notification, as before; a ring with nothing new never makes the loop
 * poll past its budget; and a jumped producer index the poll finds ends
 * the ring. */
static void test_poll_finds_request(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t w, r;
	unsigned have;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	td_loop_set_poll_ns(e.ctx.loop, 5000000000ull); /* capped by each wait's timeout */
	w = grant_page(&e);
	r = grant_page(&e);
	fill_pages(&e, &w, 1, 0x6d);
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 64, 1, &w, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 1, TD_BLKIF_RSP_OKAY);
	/* the answer asked the loop to poll: the next wait finds the read */
	req_rw(&e, TD_BLKIF_OP_READ, 2, 64, 1, &r, NULL, NULL);
	ring_publish_quietly(&e);
	expect_rsp(&e, 2, TD_BLKIF_RSP_OKAY);
	assert_memory_equal(e.x.page[r], e.x.page[w], 4096);
	td_blkif_get_stats(e.b, &st);
	assert_true(st.polled >= 1);
	/* a budget of 0: the quiet request waits for its notification */
	td_loop_set_poll_ns(e.ctx.loop, 0);
	req_rw(&e, TD_BLKIF_OP_READ, 3, 64, 1, &r, NULL, NULL);
	ring_publish_quietly(&e);
	have = rsp_prod(&e);
	for (int i = 0; i < 5; i++)
		td_loop_run_once(e.ctx.loop, 5);
	assert_int_equal(rsp_prod(&e), have);
	ring_push(&e);
	expect_rsp(&e, 3, TD_BLKIF_RSP_OKAY);
	/* nothing new on the ring: the poll ends at the wait's timeout */
	td_loop_set_poll_ns(e.ctx.loop, 5000000000ull);
	for (int i = 0; i < 3; i++)
		td_loop_run_once(e.ctx.loop, 5);
	assert_int_equal(rsp_prod(&e), have + 1);
	/* a hostile guest: a producer index that jumps past the ring, found by
	 * the poll, ends the ring as an event-driven pass does, and the poll
	 * stops looking at it */
	req_rw(&e, TD_BLKIF_OP_READ, 4, 64, 1, &r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 4, TD_BLKIF_RSP_OKAY);
	e.req_prod += e.slots + 5;
	ring_publish_quietly(&e);
	for (int i = 0; i < 5; i++)
		td_loop_run_once(e.ctx.loop, 5);
	td_blkif_get_stats(e.b, &st);
	assert_true(st.hostile);
	assert_int_equal(rsp_prod(&e), have + 2);
	env_down(&e);
}

/* ---- persistent grants ------------------------------------------------------------ */

/* Every request type and both ABIs with feature-persistent: the same data
 * as with grant copies, and not one grant copy (every page is mapped). */
static void test_persistent_roundtrip(void **state)
{
	(void)state;
	g_persistent = true;
	roundtrip(TD_BLKIF_ABI_X86_64);
	assert_int_equal(g_last_copies, 0);
	roundtrip(TD_BLKIF_ABI_X86_32);
	assert_int_equal(g_last_copies, 0);
	g_persistent = false;
}

/* A frontend that reuses its grants (Linux's blkfront): each is mapped
 * once, then used in place. */
static void test_persistent_reuse(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t w[11], r[11];

	(void)state;
	g_persistent = true;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	for (int i = 0; i < 11; i++) {
		w[i] = grant_page(&e);
		r[i] = grant_page(&e);
	}
	for (int round = 0; round < 10; round++) {
		fill_pages(&e, w, 11, (uint8_t)(0x40 + round));
		req_rw(&e, TD_BLKIF_OP_WRITE, 10 + round, 88 * round, 11, w, NULL, NULL);
		ring_push(&e);
		expect_rsp(&e, 10 + round, TD_BLKIF_RSP_OKAY);
		req_rw(&e, TD_BLKIF_OP_READ, 100 + round, 88 * round, 11, r, NULL, NULL);
		ring_push(&e);
		expect_rsp(&e, 100 + round, TD_BLKIF_RSP_OKAY);
		check_pages(&e, r, 11, (uint8_t)(0x40 + round));
	}
	td_blkif_get_stats(e.b, &st);
	assert_int_equal(e.x.pmap_calls, 22); /* each grant mapped once */
	assert_int_equal(e.x.pmaps, 22);
	assert_int_equal(st.pgnt_mapped, 22);
	/* aio alone, whole pages at 4 KiB offsets: the file's I/O reads and
	 * fills the mapped pages in place, nothing is copied */
	assert_int_equal(st.direct_segs, 10 * 22);
	assert_int_equal(st.pgnt_copies, 0);
	assert_int_equal(st.grant_copies, 0);
	assert_int_equal(e.x.copies, 0);
	env_down(&e);
	g_persistent = false;
}

/* A hostile frontend against the kept mappings: it changes a page after it
 * was mapped, re-grants a reference to another page, revokes a grant
 * while it is mapped, names grants that cannot be mapped (another
 * domain's, read-only ones), and many of them. No crash, no data of
 * another request, every mapping let go at the end. */
static void test_persistent_hostile(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t w, r, g, bad = 99999;
	uint8_t *old, *fresh = NULL, *held;

	(void)state;
	g_persistent = true;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	w = grant_page(&e);
	r = grant_page(&e);

	/* the page changes after it was mapped and written from: the disk has
	 * what the page held when the write was taken, the next write what it
	 * holds then (nothing is cached from the page) */
	memset(e.x.page[w], 0xa1, 4096);
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 0, 1, &w, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 1, TD_BLKIF_RSP_OKAY);
	memset(e.x.page[w], 0xb2, 4096);
	req_rw(&e, TD_BLKIF_OP_READ, 2, 0, 1, &r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 2, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(e.x.page[r][k], 0xa1);
	req_rw(&e, TD_BLKIF_OP_WRITE, 3, 0, 1, &w, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 3, TD_BLKIF_RSP_OKAY);
	req_rw(&e, TD_BLKIF_OP_READ, 4, 0, 1, &r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 4, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(e.x.page[r][k], 0xb2);

	/* the reference is re-granted to another page while mapped: the
	 * mapping keeps the old frame (Xen holds it), the read lands there,
	 * the new page is not touched */
	old = e.x.page[r];
	assert_int_equal(posix_memalign((void **)&fresh, 4096, 4096), 0);
	memset(fresh, 0xee, 4096);
	e.x.page[r] = fresh;
	memset(old, 0, 4096);
	req_rw(&e, TD_BLKIF_OP_READ, 5, 0, 1, &r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 5, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++) {
		assert_int_equal(old[k], 0xb2);
		assert_int_equal(fresh[k], 0xee);
	}

	/* a grant revoked while mapped: the mapping still serves (the frame
	 * is held); a grant that was never mapped and is gone fails */
	g = grant_page(&e);
	memset(e.x.page[g], 0xc3, 4096);
	req_rw(&e, TD_BLKIF_OP_WRITE, 6, 8, 1, &g, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 6, TD_BLKIF_RSP_OKAY);
	held = e.x.page[g];
	e.x.page[g] = NULL;
	memset(held, 0, 4096);
	req_rw(&e, TD_BLKIF_OP_READ, 7, 8, 1, &g, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 7, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(held[k], 0xc3);
	req_rw(&e, TD_BLKIF_OP_READ, 8, 8, 1, &bad, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 8, TD_BLKIF_RSP_ERROR);

	/* grants that refuse to be mapped are grant-copied: still correct; and
	 * after PGNT_MAX_FAILURES (64) refusals no more maps are tried */
	{
		uint32_t nm[100];
		unsigned calls0;

		for (int i = 0; i < 100; i++) {
			nm[i] = grant_page(&e);
			e.x.nomap[nm[i]] = true;
			memset(e.x.page[nm[i]], i, 4096);
		}
		calls0 = e.x.pmap_calls;
		for (int i = 0; i < 100; i++) {
			uint64_t id;

			/* 20 at a time: the ring has 32 slots */
			req_rw(&e, TD_BLKIF_OP_WRITE, 1000 + i, 64 + 8 * i, 1, &nm[i], NULL, NULL);
			if (i % 20 != 19)
				continue;
			ring_push(&e);
			wait_rsp(&e, 20);
			for (int k = 0; k < 20; k++)
				assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
		}
		assert_true(e.x.pmap_calls - calls0 <= 64);
		td_blkif_get_stats(e.b, &st);
		assert_true(st.pgnt_failures >= 64);
		for (int i = 0; i < 100; i += 33) {
			req_rw(&e, TD_BLKIF_OP_READ, 2000 + i, 64 + 8 * i, 1, &r, NULL, NULL);
			ring_push(&e);
			expect_rsp(&e, 2000 + i, TD_BLKIF_RSP_OKAY);
			for (int k = 0; k < 4096; k++)
				assert_int_equal(old[k], (uint8_t)i);
		}
	}
	env_down(&e);
	free(old);
	free(held);
	g_persistent = false;
}

/* More distinct grants than the table keeps: the first
 * TD_BLKIF_MAX_PERSISTENT are mapped, the rest grant-copied; memory stays
 * bounded and every byte is right. */
static void test_persistent_table_full(void **state)
{
	static uint32_t g[10][256];
	struct env e;
	struct td_blkif_stats st;

	(void)state;
	g_persistent = true;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	for (int i = 0; i < 10; i++) {
		for (int k = 0; k < 256; k++)
			g[i][k] = grant_page(&e);
		fill_pages(&e, g[i], 256, (uint8_t)(i * 13));
		req_indirect(&e, TD_BLKIF_OP_WRITE, 10 + i, (uint64_t)i * 2048, 256, g[i]);
		ring_push(&e);
		expect_rsp(&e, 10 + i, TD_BLKIF_RSP_OKAY);
		assert_true(e.x.pmaps <= TD_BLKIF_MAX_PERSISTENT);
	}
	for (int i = 0; i < 10; i++) {
		for (int k = 0; k < 256; k++)
			memset(e.x.page[g[i][k]], 0, 4096);
		req_indirect(&e, TD_BLKIF_OP_READ, 100 + i, (uint64_t)i * 2048, 256, g[i]);
		ring_push(&e);
		expect_rsp(&e, 100 + i, TD_BLKIF_RSP_OKAY);
		check_pages(&e, g[i], 256, (uint8_t)(i * 13));
	}
	td_blkif_get_stats(e.b, &st);
	assert_int_equal(e.x.pmaps, TD_BLKIF_MAX_PERSISTENT);
	assert_int_equal(st.pgnt_mapped, TD_BLKIF_MAX_PERSISTENT);
	assert_true(st.grant_copies > 0);
	env_down(&e);
	g_persistent = false;
}

/* The older tests again, with feature-persistent: the hostile ring, a
 * disconnect with requests in flight, a full ring of indirect requests. */
static void test_persistent_again(void **state)
{
	g_persistent = true;
	test_hostile(state);
	test_disconnect_in_flight(state);
	test_full_ring_indirect(state);
	test_write_batch(state);
	g_persistent = false;
}

/* ---- in place (persistent grants handed to the VBD as its I/O vector) ----------- */

/* A layer above the image (here the test driver fault, holding each write
 * 150 ms before passing it down, as crypt holds it while it encrypts): the
 * data must be read from the guest exactly once, into our buffer. The
 * guest rewrites its page while the write is in flight; the disk gets
 * what the page held when the request was taken, and nothing goes in
 * place. */
static void test_inplace_layered_read_once(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t w, r;

	(void)state;
	g_persistent = true;
	g_layer = "fault,op=write,delay_submit_ms=150";
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	assert_false(vbd_direct_ok(e.vbd));
	w = grant_page(&e);
	r = grant_page(&e);
	memset(e.x.page[w], 0xa1, 4096);
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 0, 1, &w, NULL, NULL);
	ring_push(&e);
	for (int i = 0; i < 100; i++) {
		td_blkif_get_stats(e.b, &st);
		if (st.requests)
			break;
		td_loop_run_once(e.ctx.loop, 1);
	}
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.direct_segs, 0);
	/* taken, not yet answered: the hostile guest changes its page */
	memset(e.x.page[w], 0xb2, 4096);
	expect_rsp(&e, 1, TD_BLKIF_RSP_OKAY);
	req_rw(&e, TD_BLKIF_OP_READ, 2, 0, 1, &r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 2, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(e.x.page[r][k], 0xa1);
	td_blkif_get_stats(e.b, &st);
	assert_int_equal(st.direct_segs, 0);
	assert_int_equal(st.pgnt_copies, 2);
	env_down(&e);
	g_layer = NULL;
	g_persistent = false;
}

/* One ring pass mixing what goes in place with everything that does not:
 * whole pages at 4 KiB offsets (in place), a partial page and a write at
 * an odd sector (copied; the VBD's read-modify-write), a grant that cannot
 * be mapped (grant copy, then an error), a flush, a discard, an unknown
 * operation, a read past the disk. Every request is answered, with the
 * right status, in one push; the data is right afterwards. */
static void test_inplace_batch(void **state)
{
	struct env e;
	struct td_blkif_stats st;
	uint32_t w[4], r[4], bad = 99999, g;
	uint8_t first = 2, last = 4;
	uint64_t id;
	int16_t want[20];

	(void)state;
	g_persistent = true;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	assert_true(vbd_direct_ok(e.vbd));
	for (int i = 0; i < 4; i++) {
		w[i] = grant_page(&e);
		r[i] = grant_page(&e);
	}
	g = grant_page(&e);
	fill_pages(&e, w, 4, 0x61);
	memset(e.x.page[g], 0x5e, 4096);
	req_rw(&e, TD_BLKIF_OP_WRITE, 1, 64, 2, w, NULL, NULL);	    /* in place */
	req_rw(&e, TD_BLKIF_OP_WRITE, 2, 80, 1, &g, &first, &last); /* partial page */
	req_rw(&e, TD_BLKIF_OP_WRITE, 3, 97, 1, &w[2], NULL, NULL); /* odd sector */
	req_rw(&e, TD_BLKIF_OP_WRITE, 4, 120, 1, &bad, NULL, NULL); /* unmappable */
	req_rw(&e, TD_BLKIF_OP_FLUSH_DISKCACHE, 5, 0, 0, NULL, NULL, NULL);
	req_discard(&e, 6, 256, 64);
	req_rw(&e, 99, 7, 0, 0, NULL, NULL, NULL);				 /* unknown */
	req_rw(&e, TD_BLKIF_OP_READ, 8, (64 << 20) / 512, 1, &r[3], NULL, NULL); /* past the end */
	req_rw(&e, TD_BLKIF_OP_WRITE, 9, 128, 1, &w[3], NULL, NULL);		 /* in place */
	ring_push(&e);
	wait_rsp(&e, 9);
	want[1] = want[2] = want[3] = want[5] = want[6] = want[9] = TD_BLKIF_RSP_OKAY;
	want[4] = want[8] = TD_BLKIF_RSP_ERROR;
	want[7] = TD_BLKIF_RSP_EOPNOTSUPP;
	for (int i = 0; i < 9; i++) {
		int16_t st_ = rsp(&e, &id);

		assert_true(id >= 1 && id <= 9);
		if (st_ != want[id])
			fail_msg("request %llu: status %d, want %d", (unsigned long long)id, st_,
				 want[id]);
	}
	/* read back, in place and copied in one pass */
	req_rw(&e, TD_BLKIF_OP_READ, 10, 64, 2, r, NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 11, 80, 1, &r[2], NULL, NULL);
	req_rw(&e, TD_BLKIF_OP_READ, 12, 97, 1, &r[3], NULL, NULL);
	ring_push(&e);
	wait_rsp(&e, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rsp(&e, &id), TD_BLKIF_RSP_OKAY);
	check_pages(&e, r, 2, 0x61);
	for (int k = 0; k < 4096; k++) {
		assert_int_equal(e.x.page[r[2]][k], k < 3 * 512 ? 0x5e : 0); /* sectors 80..82 */
		assert_int_equal(e.x.page[r[3]][k], e.x.page[w[2]][k]);
	}
	req_rw(&e, TD_BLKIF_OP_READ, 13, 128, 1, r, NULL, NULL);
	ring_push(&e);
	expect_rsp(&e, 13, TD_BLKIF_RSP_OKAY);
	for (int k = 0; k < 4096; k++)
		assert_int_equal(e.x.page[r[0]][k], e.x.page[w[3]][k]);
	td_blkif_get_stats(e.b, &st);
	assert_int_equal(st.direct_segs, 2 + 1 + 2 + 1 + 1); /* writes 1, 9; reads 10, 11, 13 */
	assert_int_equal(st.pgnt_copies, 3);		     /* writes 2, 3; read 12 */
	assert_int_equal(st.direct_refused, 0);
	env_down(&e);
	g_persistent = false;
}

static void vio_cb(struct vbd_io *io, int e)
{
	*(int *)io->opaque = e;
}

/* The VBD takes an I/O vector only of whole, aligned blocks adding up to
 * the length, and never beside a buffer. */
static void test_inplace_vbd_checks(void **state)
{
	struct env e;
	struct vbd_io io;
	struct iovec iov[2];
	uint8_t *mem = NULL;
	int rc;

	(void)state;
	env_up(&e, TD_BLKIF_ABI_X86_64, 1, false);
	assert_int_equal(posix_memalign((void **)&mem, 4096, 3 * 4096), 0);
	memset(mem, 0x42, 3 * 4096);
	for (int c = 0; c < 6; c++) {
		memset(&io, 0, sizeof(io));
		iov[0].iov_base = mem;
		iov[0].iov_len = 4096;
		iov[1].iov_base = mem + 8192;
		iov[1].iov_len = 4096;
		io.op = TD_OP_WRITE;
		io.off = 4096;
		io.len = 8192;
		io.user_iov = iov;
		io.user_iovcnt = 2;
		io.done = vio_cb;
		io.opaque = &rc;
		switch (c) {
		case 1: /* misaligned address */
			iov[1].iov_base = mem + 512;
			break;
		case 2: /* a partial block */
			iov[0].iov_len = 3584;
			io.len = 4096 + 3584;
			break;
		case 3: /* lengths that do not add up */
			io.len = 12288;
			break;
		case 4: /* a buffer too */
			io.buf = mem;
			break;
		case 5: /* an odd offset */
			io.off = 512;
			break;
		}
		rc = 1;
		vbd_submit(e.vbd, &io);
		for (int i = 0; i < 100 && rc == 1; i++)
			td_loop_run_once(e.ctx.loop, 10);
		assert_int_equal(rc, c == 0 ? 0 : -EINVAL);
	}
	free(mem);
	env_down(&e);
}

static void test_params(void **state)
{
	struct td_blkif_params p;

	(void)state;
	assert_int_equal(td_blkif_params_parse("3 8 15 x86_64-abi", &p, err, sizeof(err)), 0);
	assert_int_equal(p.nring, 1);
	assert_int_equal(td_blkif_params_parse("3 8,9,10,11 15", &p, err, sizeof(err)), 0);
	assert_int_equal(p.nring, 4);
	assert_int_equal(p.abi, TD_BLKIF_ABI_X86_64);
	assert_int_equal(td_blkif_params_parse("3 8,9,10 15", &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(td_blkif_params_parse("3 8 15 x86_33-abi", &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(td_blkif_params_parse("70000 8 15", &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(td_blkif_params_parse("1 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 2", &p,
					       err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(td_blkif_params_parse("garbage", &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(td_blkif_params_parse("3 8 15 x86_64-abi", &p, err, sizeof(err)), 0);
	assert_false(p.persistent);
	assert_int_equal(
	    td_blkif_params_parse("3 8 15 x86_64-abi persistent", &p, err, sizeof(err)), 0);
	assert_true(p.persistent);
	assert_int_equal(td_blkif_params_parse("3 8 15 x86_64-abi sticky", &p, err, sizeof(err)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_matches_xen),
	    cmocka_unit_test(test_params),
	    cmocka_unit_test(test_roundtrip_x86_64),
	    cmocka_unit_test(test_roundtrip_x86_32),
	    cmocka_unit_test(test_full_ring_indirect),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_disconnect_in_flight),
	    cmocka_unit_test(test_mixed_completions),
	    cmocka_unit_test(test_refused_around_deferred),
	    cmocka_unit_test(test_write_batch),
	    cmocka_unit_test(test_persistent_roundtrip),
	    cmocka_unit_test(test_persistent_reuse),
	    cmocka_unit_test(test_persistent_hostile),
	    cmocka_unit_test(test_persistent_table_full),
	    cmocka_unit_test(test_persistent_again),
	    cmocka_unit_test(test_inplace_layered_read_once),
	    cmocka_unit_test(test_inplace_batch),
	    cmocka_unit_test(test_inplace_vbd_checks),
	    cmocka_unit_test(test_poll_finds_request),
	};

	td_drivers_set(td_registry());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
