#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/blkif/blkif.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/pool.h"

/* One request taken off the ring, until its response is on the ring. */
struct bio {
	struct vbd_io vio;
	struct td_blkif *b;
	struct td_blkif_req req;
	const struct td_blkif_seg *segs;
	void *buf;
	size_t buflen;
	uint64_t bytes;
	bool barrier_data;     /* a barrier: its flush is done, now its data */
	bool direct;	       /* the VBD reads or fills the guest's mapped pages (iov) */
	struct bio *next_copy; /* a read whose data waits for the next push, or a
				* write whose data waits for the end of the ring pass */
	/* last: not cleared between uses (only what a request reads) */
	struct td_blkif_seg isegs[TD_BLKIF_MAX_INDIRECT_SEGS]; /* an indirect request's */
	struct iovec iov[TD_BLKIF_MAX_INDIRECT_SEGS];	       /* a direct request's pages */
};

struct td_blkif {
	struct td_loop *loop;
	struct vbd *vbd;
	const struct td_xenio_ops *ops;
	struct td_xenio *x;
	uint32_t domid, port;
	enum td_blkif_abi abi;
	volatile uint8_t *ring;
	unsigned npages, slots;
	uint32_t req_cons, rsp_prod_pvt;
	struct td_watch *watch;
	struct td_defer push_defer, kick_defer, done_defer;
	bool push_pending;
	struct bio *copy_head, *copy_tail;   /* reads done, data not yet copied */
	struct bio *wcopy_head, *wcopy_tail; /* writes taken, data not yet copied */
	unsigned in_flight;		     /* taken off the ring, not yet answered */
	struct bio *barrier;		     /* waits for the requests before it */
	bool hostile, closing;
	void (*closed_cb)(void *opaque);
	void *closed_opaque;
	struct td_pool pool;
	struct td_blkif_stats st;
	unsigned log_left;
	/* persistent grants: NULL when not negotiated */
	struct pgnt *pg;
	unsigned pg_n, pg_fail;
	bool no_direct;		 /* the kernel refused I/O on a mapping: copy from now on */
	struct td_poller poller; /* the loop looks at req_prod before it sleeps */
};

static void lograte(struct td_blkif *b, const char *what, const char *why);

/* ---- persistent grants --------------------------------------------------------
 *
 * With feature-persistent the frontend keeps a pool of pages granted
 * read-write and reuses their grant references for every request. The
 * first time a reference is seen, its page is mapped (one gntdev ioctl and
 * an mmap) and kept in this table; from then on the segment's data is a
 * memcpy to or from the mapping, with no hypercall.
 *
 * What a hostile frontend can do with this, and why it is harmless:
 * - change the page while we copy: the page is the guest's own; a write
 *   gets whatever bytes were there when its data was copied once into our
 *   buffer (it is never read twice), a read's data is its own disk's;
 * - re-grant the reference to another page, or revoke it: Xen keeps the
 *   mapped frame referenced until we unmap it, so our copies go on landing
 *   in the old frame (still the guest's memory, never anyone else's) and
 *   the new page simply does not see them;
 * - name another domain's grants: the map is of (this domain, ref) only,
 *   and it fails like a grant copy would: the segment is grant-copied,
 *   which fails in turn, and the request gets BLKIF_RSP_ERROR;
 * - use ever more distinct references: at most TD_BLKIF_MAX_PERSISTENT are
 *   kept, the rest are grant-copied (bounded memory, no eviction); after
 *   PGNT_MAX_FAILURES refused maps no more maps are tried for this ring.
 * Everything is unmapped when the ring is let go. */
#define PGNT_HASH (2 * TD_BLKIF_MAX_PERSISTENT) /* open addressing, half full at most */
#define PGNT_MAX_FAILURES 64

struct pgnt {
	uint32_t gref;
	uint8_t *page; /* NULL: a free slot */
};

static struct pgnt *pgnt_slot(struct td_blkif *b, uint32_t gref)
{
	unsigned h = (gref * 2654435761u) & (PGNT_HASH - 1);

	/* terminates: the table never holds more than half its slots */
	while (b->pg[h].page && b->pg[h].gref != gref)
		h = (h + 1) & (PGNT_HASH - 1);
	return &b->pg[h];
}

/* The mapping of gref's page: kept from before, or mapped now; NULL when
 * the segment must be grant-copied (not negotiated, table full, refused). */
static uint8_t *pgnt_get(struct td_blkif *b, uint32_t gref)
{
	struct pgnt *e;

	if (!b->pg)
		return NULL;
	e = pgnt_slot(b, gref);
	if (e->page)
		return e->page;
	if (b->pg_n >= TD_BLKIF_MAX_PERSISTENT || b->pg_fail >= PGNT_MAX_FAILURES)
		return NULL;
	e->page = b->ops->map_page(b->x, b->domid, gref);
	if (!e->page) {
		b->st.pgnt_failures++;
		if (++b->pg_fail == PGNT_MAX_FAILURES)
			lograte(b, "persistent grants",
				"too many grants could not be mapped: grant copies from now on");
		return NULL;
	}
	e->gref = gref;
	b->pg_n++;
	b->st.pgnt_mapped++;
	return e->page;
}

static void pgnt_free(struct td_blkif *b)
{
	if (!b->pg)
		return;
	for (unsigned i = 0; i < PGNT_HASH; i++)
		if (b->pg[i].page)
			b->ops->unmap_page(b->x, b->pg[i].page);
	free(b->pg);
	b->pg = NULL;
	b->pg_n = 0;
}

/* Performs the n copies like ops->copy: through a kept mapping where there
 * is one, the rest in one grant-copy call. */
#define COPY_BATCH 1024
static int xcopy(struct td_blkif *b, struct td_xenio_copy *c, unsigned n)
{
	static struct td_xenio_copy rest[COPY_BATCH]; /* loop thread only */
	static unsigned at[COPY_BATCH];
	unsigned i, k = 0;
	int rc;

	if (!b->pg) {
		b->st.grant_copies += n;
		return b->ops->copy(b->x, b->domid, c, n);
	}
	for (i = 0; i < n; i++) {
		uint8_t *page = pgnt_get(b, c[i].gref);

		if (page && (unsigned)c[i].offset + c[i].len <= TD_BLKIF_PAGE) {
			if (c[i].to_guest)
				memcpy(page + c[i].offset, c[i].local, c[i].len);
			else
				memcpy(c[i].local, page + c[i].offset, c[i].len);
			c[i].status = 0;
			b->st.pgnt_copies++;
			continue;
		}
		rest[k] = c[i];
		at[k++] = i;
	}
	if (!k)
		return 0;
	b->st.grant_copies += k;
	rc = b->ops->copy(b->x, b->domid, rest, k);
	if (rc < 0)
		return rc;
	for (i = 0; i < k; i++)
		c[at[i]].status = rest[i].status;
	return 0;
}

static void process(struct td_blkif *b);

static void process_cb(void *opaque)
{
	process(opaque);
}

static volatile struct td_blkif_sring_hdr *hdr(struct td_blkif *b)
{
	return (volatile struct td_blkif_sring_hdr *)b->ring;
}

static void lograte(struct td_blkif *b, const char *what, const char *why)
{
	if (!b->log_left)
		return;
	b->log_left--;
	td_warn("blkif: domain %u: %s: %s%s", (unsigned)b->domid, what, why,
		b->log_left ? "" : " (further messages suppressed)");
}

/* ---- responses ----------------------------------------------------------- */

static void flush_reads(struct td_blkif *b);

static void push(void *opaque)
{
	struct td_blkif *b = opaque;
	uint32_t old, new;
	bool notify;

	if (!b->ring) {
		b->push_pending = false;
		return;
	}
	/* the reads of this turn: their data in one grant copy, then their
	 * answers (push_pending is still set: respond() queues nothing) */
	flush_reads(b);
	b->push_pending = false;
	old = hdr(b)->rsp_prod;
	new = b->rsp_prod_pvt;
	/* the frontend sees the responses before the index that covers them */
	__atomic_store_n(&hdr(b)->rsp_prod, new, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	notify = (uint32_t)(new - hdr(b)->rsp_event) < (uint32_t)(new - old);
	if (notify)
		b->ops->notify(b->x, b->port);
	/* a guest that was answered often asks again soon: look at the ring
	 * for a while before sleeping (td_loop_poll_soon, docs/XEN.md) */
	if (new != old)
		td_loop_poll_soon(b->loop);
}

static void finished(void *opaque);

static void queue_push(struct td_blkif *b)
{
	if (!b->push_pending) {
		b->push_pending = true;
		td_loop_defer(b->loop, &b->push_defer);
	}
}

static void respond(struct td_blkif *b, uint64_t id, uint8_t op, int16_t status)
{
	td_blkif_put_rsp(b->abi, b->ring, b->slots, b->rsp_prod_pvt++, id, op, status);
	if (status != TD_BLKIF_RSP_OKAY)
		b->st.errors++;
	queue_push(b);
}

static void bio_end(struct bio *io, int16_t status)
{
	struct td_blkif *b = io->b;

	/* an indirect request is answered with its indirect_op, as blkback
	 * does: Linux's blkfront disables a disk whose response carries
	 * BLKIF_OP_INDIRECT ("response has wrong operation (6 instead of 0)") */
	respond(b, io->req.id, io->req.op, status);
	if (io->buf)
		td_buf_put(io->buf, io->buflen);
	td_pool_put(&b->pool, io);
	b->in_flight--;
	if (b->barrier && b->in_flight == 1) {
		/* only the barrier itself is left: it may start */
		struct bio *bar = b->barrier;

		b->barrier = NULL;
		bar->vio.op = TD_OP_FLUSH;
		vbd_submit(b->vbd, &bar->vio);
		return;
	}
	if (b->closing && !b->in_flight) {
		td_loop_defer(b->loop, &b->done_defer);
		return;
	}
	/* a full ring waited for this slot; or the barrier is gone */
	if (!b->barrier) {
		td_loop_defer(b->loop, &b->kick_defer);
	}
}

/* ---- data ------------------------------------------------------------------ */

/* The grant copies of a request's data, one per segment, between the
 * guest's granted pages and io->buf; returns how many (its nseg). */
static unsigned fill_copies(struct bio *io, bool to_guest, struct td_xenio_copy *c)
{
	size_t at = 0;
	unsigned i;

	for (i = 0; i < io->req.nseg; i++) {
		const struct td_blkif_seg *s = &io->segs[i];
		size_t len = (size_t)(s->last - s->first + 1) * TD_BLKIF_SECTOR;

		c[i].gref = s->gref;
		c[i].offset = (uint16_t)(s->first * TD_BLKIF_SECTOR);
		c[i].len = (uint16_t)len;
		c[i].local = (uint8_t *)io->buf + at;
		c[i].to_guest = to_guest;
		c[i].status = 0;
		at += len;
	}
	return i;
}

/* Moves one request's data: all its segments in one call. */
static int copy_data(struct bio *io, bool to_guest)
{
	struct td_blkif *b = io->b;
	struct td_xenio_copy c[TD_BLKIF_MAX_INDIRECT_SEGS];
	unsigned i, n = fill_copies(io, to_guest, c);
	int rc = xcopy(b, c, n);

	for (i = 0; rc == 0 && i < n; i++)
		if (c[i].status)
			rc = -EFAULT;
	return rc;
}

/* Grant copies are batched: each call is a system call and hypercalls,
 * the dear part of a small request. COPY_BATCH holds the largest request
 * (TD_BLKIF_MAX_INDIRECT_SEGS) several times. */
_Static_assert(TD_BLKIF_MAX_INDIRECT_SEGS < COPY_BATCH, "a request fits one batch");

/* Copies the data of the requests queued on *head (linked by next_copy)
 * in as few grant-copy calls as fit, to the guest or from it, then calls
 * done(io, ok) for each, in queue order. */
static void flush_copies(struct td_blkif *b, struct bio **head, struct bio **tail, bool to_guest,
			 void (*done)(struct td_blkif *b, struct bio *io, bool ok))
{
	static struct td_xenio_copy c[COPY_BATCH]; /* loop thread only */

	while (*head) {
		struct bio *first = *head, *stop, *io;
		unsigned n = 0, k = 0;
		int rc;

		for (stop = first; stop && n + stop->req.nseg <= COPY_BATCH; stop = stop->next_copy)
			n += fill_copies(stop, to_guest, c + n);
		*head = stop;
		if (!stop)
			*tail = NULL;
		rc = xcopy(b, c, n);
		for (io = first; io != stop;) {
			struct bio *next = io->next_copy;
			bool ok = rc == 0;

			for (unsigned i = 0; i < io->req.nseg; i++)
				ok = ok && c[k + i].status == 0;
			k += io->req.nseg;
			done(b, io, ok);
			io = next;
		}
	}
}

static void read_copied(struct td_blkif *b, struct bio *io, bool ok)
{
	if (!ok)
		lograte(b, "read", "a granted page could not be written");
	bio_end(io, ok ? TD_BLKIF_RSP_OKAY : TD_BLKIF_RSP_ERROR);
}

static void write_copied(struct td_blkif *b, struct bio *io, bool ok)
{
	if (ok) {
		vbd_submit(b->vbd, &io->vio);
		return;
	}
	lograte(b, "write", "a granted page could not be read");
	bio_end(io, TD_BLKIF_RSP_ERROR);
}

/* The data of every read finished since the last push goes to the guest,
 * then the reads are answered. */
static void flush_reads(struct td_blkif *b)
{
	flush_copies(b, &b->copy_head, &b->copy_tail, true, read_copied);
}

/* The writes taken off the ring in this pass: their data from the guest,
 * then each goes to the VBD. */
static void flush_writes(struct td_blkif *b)
{
	flush_copies(b, &b->wcopy_head, &b->wcopy_tail, false, write_copied);
}

/* ---- in place ------------------------------------------------------------------
 *
 * With persistent grants the guest's data pages are mapped anyway. For a
 * chain that is the image driver alone (vbd_direct_ok: no crypt, no
 * integrity layer above it) a READ or WRITE of whole pages is handed to
 * the VBD as an I/O vector over those mappings: the file's read fills the
 * guest's pages, its write takes the data from them, and our copy goes.
 *
 * The read-once rule is kept where it matters. A layer that transforms or
 * authenticates the data (crypt encrypts it, integrity MACs it) must see
 * one stable copy, or a guest changing its page under the request would
 * get ciphertext and MAC that disagree, or use our layers as an oracle:
 * such chains say no and keep the copy. Without such a layer, the bytes
 * go to (or come from) the guest's own disk only, at offsets checked once
 * before anything runs; a guest that changes a page while its write is in
 * flight races only itself, as on a real disk, and nothing of ours parses
 * or keeps those bytes. docs/XEN.md, "In place". */
#define SEG_LAST (TD_BLKIF_PAGE / TD_BLKIF_SECTOR - 1)

/* The request's pages as an I/O vector, when it may go in place. */
static bool direct_setup(struct bio *io)
{
	struct td_blkif *b = io->b;
	unsigned i;

	if (!b->pg || b->no_direct || io->vio.off % TD_BLKIF_PAGE || !vbd_direct_ok(b->vbd))
		return false;
	for (i = 0; i < io->req.nseg; i++)
		if (io->segs[i].first != 0 || io->segs[i].last != SEG_LAST)
			return false;
	for (i = 0; i < io->req.nseg; i++) {
		uint8_t *page = pgnt_get(b, io->segs[i].gref);

		if (!page)
			return false; /* not kept: copied (grant copy) as before */
		io->iov[i].iov_base = page;
		io->iov[i].iov_len = TD_BLKIF_PAGE;
	}
	io->direct = true;
	io->vio.buf = NULL;
	io->vio.user_iov = io->iov;
	io->vio.user_iovcnt = (int)io->req.nseg;
	io->vio.len = io->bytes;
	b->st.direct_segs += io->req.nseg;
	return true;
}

/* The kernel would not do I/O on a mapping (EFAULT): this ring copies from
 * now on, and this request is done again through a buffer of ours. */
static void direct_redo(struct bio *io)
{
	struct td_blkif *b = io->b;

	b->no_direct = true;
	b->st.direct_refused++;
	lograte(b, "in-place I/O", "the kernel refused a mapped page: copying from now on");
	io->direct = false;
	io->vio.user_iov = NULL;
	io->vio.user_iovcnt = 0;
	io->buflen = (size_t)((io->bytes + 4095) & ~4095ull);
	io->buf = td_buf_get(io->buflen);
	if (!io->buf) {
		bio_end(io, TD_BLKIF_RSP_ERROR);
		return;
	}
	io->vio.buf = io->buf;
	if (io->req.op == TD_BLKIF_OP_WRITE && copy_data(io, false) < 0) {
		lograte(b, "write", "a granted page could not be read");
		bio_end(io, TD_BLKIF_RSP_ERROR);
		return;
	}
	vbd_submit(b->vbd, &io->vio);
}

static void vio_done_copied(struct bio *io, int err);

static void vio_done(struct vbd_io *vio, int err)
{
	struct bio *io = (struct bio *)vio;
	struct td_blkif *b = io->b;

	if (io->direct) {
		/* the data is already where it belongs */
		if (err == -EFAULT && !b->closing) {
			direct_redo(io);
			return;
		}
		if (err)
			lograte(b, "request failed", strerror(-err));
		bio_end(io, !err		 ? TD_BLKIF_RSP_OKAY
			    : err == -EOPNOTSUPP ? TD_BLKIF_RSP_EOPNOTSUPP
						 : TD_BLKIF_RSP_ERROR);
		return;
	}
	vio_done_copied(io, err);
}

static void vio_done_copied(struct bio *io, int err)
{
	struct td_blkif *b = io->b;

	if (err) {
		lograte(b, "request failed", strerror(-err));
		bio_end(io, err == -EOPNOTSUPP ? TD_BLKIF_RSP_EOPNOTSUPP : TD_BLKIF_RSP_ERROR);
		return;
	}
	if (io->req.op == TD_BLKIF_OP_READ) {
		/* its data goes with the other reads of this turn (push) */
		io->next_copy = NULL;
		if (b->copy_tail)
			b->copy_tail->next_copy = io;
		else
			b->copy_head = io;
		b->copy_tail = io;
		queue_push(b);
		return;
	} else if (io->req.op == TD_BLKIF_OP_WRITE_BARRIER && !io->barrier_data && io->req.nseg) {
		/* flushed: now the barrier's own data, durable before it answers */
		io->barrier_data = true;
		io->vio.op = TD_OP_WRITE;
		io->vio.flags = TD_REQ_FUA;
		io->vio.off = io->req.sector * TD_BLKIF_SECTOR;
		io->vio.len = io->bytes;
		io->vio.buf = io->buf;
		vbd_submit(b->vbd, &io->vio);
		return;
	}
	bio_end(io, TD_BLKIF_RSP_OKAY);
}

/* ---- requests ------------------------------------------------------------------ */

static int load_indirect(struct bio *io, char *why, size_t whylen)
{
	struct td_blkif *b = io->b;
	struct td_xenio_copy c[TD_BLKIF_MAX_INDIRECT_PAGES];
	static uint8_t pages[TD_BLKIF_MAX_INDIRECT_PAGES][TD_BLKIF_PAGE]; /* loop thread only */
	unsigned i, left = io->req.nseg;
	int rc;

	for (i = 0; i < io->req.nindirect; i++) {
		unsigned n =
		    left < TD_BLKIF_SEGS_PER_INDIRECT_PAGE ? left : TD_BLKIF_SEGS_PER_INDIRECT_PAGE;

		c[i].gref = io->req.indirect_grefs[i];
		c[i].offset = 0;
		c[i].len = (uint16_t)(n * 8);
		c[i].local = pages[i];
		c[i].to_guest = false;
		c[i].status = 0;
		left -= n;
	}
	rc = xcopy(b, c, io->req.nindirect);
	for (i = 0; rc == 0 && i < io->req.nindirect; i++)
		if (c[i].status)
			rc = -EFAULT;
	if (rc < 0) {
		snprintf(why, whylen, "an indirect page could not be read (grant %u)",
			 (unsigned)io->req.indirect_grefs[i < io->req.nindirect ? i : 0]);
		return rc;
	}
	left = io->req.nseg;
	for (i = 0; i < io->req.nindirect; i++) {
		unsigned n =
		    left < TD_BLKIF_SEGS_PER_INDIRECT_PAGE ? left : TD_BLKIF_SEGS_PER_INDIRECT_PAGE;

		td_blkif_indirect_segs(pages[i], n,
				       io->isegs + i * TD_BLKIF_SEGS_PER_INDIRECT_PAGE);
		left -= n;
	}
	io->segs = io->isegs;
	return 0;
}

/* Takes one request off the ring (its slot is read once) and starts it. */
static void start(struct td_blkif *b, uint32_t idx)
{
	uint64_t disk = vbd_size(b->vbd) / TD_BLKIF_SECTOR;
	struct bio *io = td_pool_get(&b->pool);
	char why[200];
	int rc;

	b->st.requests++;
	if (!io) {
		struct td_blkif_req r;

		/* no memory: answer the request with an error, never leave it */
		td_blkif_fetch(b->abi, b->ring, b->slots, idx, &r, why, sizeof(why));
		respond(b, r.id, r.op, TD_BLKIF_RSP_ERROR);
		return;
	}
	memset(io, 0, offsetof(struct bio, isegs));
	io->b = b;
	b->in_flight++;
	rc = td_blkif_fetch(b->abi, b->ring, b->slots, idx, &io->req, why, sizeof(why));
	io->segs = io->req.seg;
	if (rc == 0 && io->req.indirect)
		rc = load_indirect(io, why, sizeof(why));
	if (rc == 0)
		rc = td_blkif_check(&io->req, io->segs, disk, vbd_readonly(b->vbd), &io->bytes, why,
				    sizeof(why));
	if (rc < 0) {
		b->st.bad_requests++;
		lograte(b, "request refused", why);
		bio_end(io, rc == -EOPNOTSUPP ? TD_BLKIF_RSP_EOPNOTSUPP : TD_BLKIF_RSP_ERROR);
		return;
	}
	io->vio.done = vio_done;
	io->vio.opaque = io;
	io->vio.off = io->req.sector * TD_BLKIF_SECTOR;
	/* what came before it on the ring goes to the VBD before it */
	if (io->req.op != TD_BLKIF_OP_WRITE && io->req.op != TD_BLKIF_OP_READ)
		flush_writes(b);
	if ((io->req.op == TD_BLKIF_OP_READ || io->req.op == TD_BLKIF_OP_WRITE) &&
	    direct_setup(io)) {
		io->vio.op = io->req.op == TD_BLKIF_OP_READ ? TD_OP_READ : TD_OP_WRITE;
		vbd_submit(b->vbd, &io->vio);
		return;
	}
	if (io->bytes) {
		io->buflen = (size_t)((io->bytes + 4095) & ~4095ull);
		io->buf = td_buf_get(io->buflen);
		if (!io->buf) {
			bio_end(io, TD_BLKIF_RSP_ERROR);
			return;
		}
	}
	switch (io->req.op) {
	case TD_BLKIF_OP_READ:
		io->vio.op = TD_OP_READ;
		io->vio.len = io->bytes;
		io->vio.buf = io->buf;
		break;
	case TD_BLKIF_OP_WRITE:
		/* its data comes with the other writes of this pass (flush_writes) */
		io->vio.op = TD_OP_WRITE;
		io->vio.len = io->bytes;
		io->vio.buf = io->buf;
		io->next_copy = NULL;
		if (b->wcopy_tail)
			b->wcopy_tail->next_copy = io;
		else
			b->wcopy_head = io;
		b->wcopy_tail = io;
		return;
	case TD_BLKIF_OP_WRITE_BARRIER:
		if (io->bytes && copy_data(io, false) < 0) {
			lograte(b, "write", "a granted page could not be read");
			bio_end(io, TD_BLKIF_RSP_ERROR);
			return;
		}
		if (io->req.op == TD_BLKIF_OP_WRITE_BARRIER) {
			/* everything before it completes first (bio_end starts it) */
			if (b->in_flight > 1) {
				b->barrier = io;
				return;
			}
			io->vio.op = TD_OP_FLUSH;
			break;
		}
		io->vio.op = TD_OP_WRITE;
		io->vio.len = io->bytes;
		io->vio.buf = io->buf;
		break;
	case TD_BLKIF_OP_FLUSH_DISKCACHE:
		io->vio.op = TD_OP_FLUSH;
		io->vio.off = 0; /* the sector of a flush is meaningless */
		break;
	case TD_BLKIF_OP_DISCARD:
		io->vio.op = TD_OP_DISCARD;
		io->vio.len = io->req.nr_sectors * TD_BLKIF_SECTOR;
		break;
	}
	vbd_submit(b->vbd, &io->vio);
}

/* The consumer loop, Xen's way: take what the producer index covers, then
 * set req_event and look once more, so no notification is lost. */
static void process_ring(struct td_blkif *b)
{
	for (;;) {
		uint32_t rp;

		if (b->hostile || b->closing || b->barrier || !b->ring)
			return;
		rp = __atomic_load_n(&hdr(b)->req_prod, __ATOMIC_ACQUIRE);
		if ((uint32_t)(rp - b->req_cons) > b->slots) {
			/* more requests than slots: the index is garbage, and the
			 * slots behind it cannot be trusted either */
			char why[120];

			snprintf(why, sizeof(why),
				 "producer index %u is %u past our %u (the ring has %u slots)", rp,
				 rp - b->req_cons, b->req_cons, b->slots);
			b->log_left = b->log_left ? b->log_left : 1;
			lograte(b, "hostile frontend, ring no longer served", why);
			b->hostile = true;
			b->st.hostile = true;
			return;
		}
		while (b->req_cons != rp && !b->barrier && !b->closing) {
			/* a frontend can have at most one request per slot outstanding */
			if (b->in_flight >= b->slots)
				return;
			start(b, b->req_cons++);
		}
		if (b->barrier)
			return;
		__atomic_store_n(&hdr(b)->req_event, b->req_cons + 1, __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&hdr(b)->req_prod, __ATOMIC_ACQUIRE) == b->req_cons)
			return;
	}
}

static void process(struct td_blkif *b)
{
	process_ring(b);
	flush_writes(b); /* the pass's writes, whichever way it ended */
}

void td_blkif_kick(struct td_blkif *b)
{
	process(b);
}

/* The loop's poll: has the guest produced a request we have not taken?
 * Only an index is read; process() checks everything else. */
static bool poll_ready(void *opaque)
{
	struct td_blkif *b = opaque;

	return b->ring && !b->hostile && !b->closing && !b->barrier &&
	       __atomic_load_n(&hdr(b)->req_prod, __ATOMIC_ACQUIRE) != b->req_cons;
}

static void poll_run(void *opaque)
{
	struct td_blkif *b = opaque;

	b->st.polled++;
	process(b);
}

static void on_event(void *opaque, uint32_t events)
{
	struct td_blkif *b = opaque;
	uint32_t port;

	/* ours is the only port bound on this handle: one notification
	 * read (and unmasked) per wakeup; the descriptor is level-triggered,
	 * so one that came meanwhile wakes us again (a read that finds none
	 * would be one more system call per request) */
	b->ops->pending(b->x, &port);
	process(b);
}

/* ---- connect / disconnect -------------------------------------------------------- */

int td_blkif_params_parse(const char *s, struct td_blkif_params *p, char *err, size_t errlen)
{
	char refs[256], proto[32], feat[32];
	unsigned long domid, evtchn;
	char *tok, *save = NULL;

	memset(p, 0, sizeof(*p));
	proto[0] = feat[0] = 0;
	if (sscanf(s, "%lu %255s %lu %31s %31s", &domid, refs, &evtchn, proto, feat) < 3 ||
	    domid >= 0x7ff0 || evtchn > UINT32_MAX) {
		snprintf(err, errlen, "expected DOMID REFS EVTCHN [PROTOCOL [persistent]]");
		return -EINVAL;
	}
	if (feat[0] && strcmp(feat, "persistent")) {
		snprintf(err, errlen, "unknown ring feature '%s' (persistent)", feat);
		return -EINVAL;
	}
	p->persistent = feat[0] != 0;
	p->domid = (uint32_t)domid;
	p->evtchn = (uint32_t)evtchn;
	for (tok = strtok_r(refs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(tok, &end, 10);

		if (*end || end == tok || v > UINT32_MAX ||
		    p->nring == (1u << TD_BLKIF_MAX_RING_ORDER)) {
			snprintf(err, errlen, "bad ring references '%.100s' (at most %u)", s,
				 1u << TD_BLKIF_MAX_RING_ORDER);
			return -EINVAL;
		}
		p->ring_refs[p->nring++] = (uint32_t)v;
	}
	if (!p->nring || (p->nring & (p->nring - 1))) {
		snprintf(err, errlen, "%u ring pages: a power of two from 1 to %u", p->nring,
			 1u << TD_BLKIF_MAX_RING_ORDER);
		return -EINVAL;
	}
	if (td_blkif_abi_parse(proto, &p->abi) < 0) {
		snprintf(err, errlen, "unknown protocol '%s' (x86_64-abi, x86_32-abi)", proto);
		return -EINVAL;
	}
	return 0;
}

struct td_blkif *td_blkif_connect(struct td_loop *loop, struct vbd *vbd,
				  const struct td_xenio_ops *ops, struct td_xenio *x,
				  const struct td_blkif_params *p, char *err, size_t errlen)
{
	struct td_blkif *b = calloc(1, sizeof(*b));
	int rc;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->loop = loop;
	b->vbd = vbd;
	b->ops = ops;
	b->x = x;
	b->domid = p->domid;
	b->abi = p->abi;
	b->npages = p->nring;
	b->slots = td_blkif_ring_slots(p->abi, p->nring);
	b->log_left = 20;
	td_pool_init(&b->pool, sizeof(struct bio));
	/* set up once: td_defer_init on a queued call would cut the loop's
	 * list of deferred calls and lose those queued after it */
	td_defer_init(&b->push_defer, push, b);
	td_defer_init(&b->kick_defer, process_cb, b);
	td_defer_init(&b->done_defer, finished, b);
	if (p->persistent && ops->map_page && ops->unmap_page &&
	    !(b->pg = calloc(PGNT_HASH, sizeof(*b->pg)))) {
		snprintf(err, errlen, "out of memory");
		free(b);
		return NULL;
	}
	b->ring = ops->map(x, p->domid, p->ring_refs, p->nring);
	if (!b->ring) {
		snprintf(err, errlen, "cannot map the %u ring page(s) of domain %u", p->nring,
			 (unsigned)p->domid);
		free(b->pg);
		free(b);
		return NULL;
	}
	rc = ops->bind(x, p->domid, p->evtchn, &b->port);
	if (rc < 0) {
		snprintf(err, errlen, "cannot bind event channel %u of domain %u: %s",
			 (unsigned)p->evtchn, (unsigned)p->domid, strerror(-rc));
		ops->unmap(x, (void *)b->ring, b->npages);
		free(b->pg);
		free(b);
		return NULL;
	}
	/* the ring may hold requests already: start with the indexes we find */
	b->req_cons = hdr(b)->rsp_prod;
	b->rsp_prod_pvt = b->req_cons;
	b->watch = td_loop_add_fd(loop, ops->fd(x), EPOLLIN, on_event, b);
	if (!b->watch) {
		snprintf(err, errlen, "cannot watch the event channel");
		ops->unbind(x, b->port);
		ops->unmap(x, (void *)b->ring, b->npages);
		free(b->pg);
		free(b);
		return NULL;
	}
	td_poller_init(&b->poller, poll_ready, poll_run, b);
	td_loop_add_poller(loop, &b->poller);
	td_info("blkif: domain %u connected: %u ring page(s), %u slots, %s, event channel %u%s",
		(unsigned)p->domid, p->nring, b->slots,
		p->abi == TD_BLKIF_ABI_X86_32 ? "x86_32-abi" : "x86_64-abi", (unsigned)p->evtchn,
		b->pg ? ", persistent grants" : "");
	td_loop_defer(loop, &b->kick_defer);
	return b;
}

static void finished(void *opaque)
{
	struct td_blkif *b = opaque;
	void (*cb)(void *) = b->closed_cb;
	void *cb_opaque = b->closed_opaque;

	if (b->kick_defer.queued || b->push_defer.queued) {
		/* our other calls run first (FIFO): then b may go */
		td_loop_defer(b->loop, &b->done_defer);
		return;
	}
	if (b->push_pending)
		push(b);
	if (b->watch)
		td_loop_del_fd(b->loop, b->watch);
	td_loop_del_poller(b->loop, &b->poller);
	b->ops->unbind(b->x, b->port);
	pgnt_free(b);
	b->ops->unmap(b->x, (void *)b->ring, b->npages);
	b->ring = NULL;
	td_pool_drain(&b->pool);
	td_info("blkif: domain %u disconnected (%llu requests, %llu errors, %llu persistent grants "
		"kept, %llu segments copied through them, %llu in place, %llu grant-copied, %llu "
		"ring passes started by polling%s%s)",
		(unsigned)b->domid, (unsigned long long)b->st.requests,
		(unsigned long long)b->st.errors, (unsigned long long)b->st.pgnt_mapped,
		(unsigned long long)b->st.pgnt_copies, (unsigned long long)b->st.direct_segs,
		(unsigned long long)b->st.grant_copies, (unsigned long long)b->st.polled,
		b->no_direct ? ", in-place I/O refused by the kernel" : "",
		b->st.hostile ? ", hostile" : "");
	free(b);
	if (cb)
		cb(cb_opaque);
}

void td_blkif_disconnect(struct td_blkif *b, void (*cb)(void *opaque), void *opaque)
{
	b->closing = true;
	b->closed_cb = cb;
	b->closed_opaque = opaque;
	if (b->barrier && b->in_flight == 1) {
		/* a barrier that never started: answer it */
		struct bio *bar = b->barrier;

		b->barrier = NULL;
		bio_end(bar, TD_BLKIF_RSP_ERROR);
		return;
	}
	if (!b->in_flight) {
		td_loop_defer(b->loop, &b->done_defer);
	}
}

void td_blkif_get_stats(const struct td_blkif *b, struct td_blkif_stats *out)
{
	*out = b->st;
}
