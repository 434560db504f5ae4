/* The volume-key rotation's mover (crypt/reencrypt.h; the protocol and
 * why it is crash-safe: docs/FORMAT.md, "Volume-key rotation").
 *
 * One window at a time, on the loop thread, as a chain of requests to the
 * layer below the crypt layer:
 *
 *	lock [B, B+W) exclusive -> read -> write staging -> flush
 *	-> header (W, staging digest)            commit point 1
 *	-> re-encrypt in memory -> write in place -> flush
 *	-> header (B+W, W = 0)                   commit point 2 -> unlock
 *
 * A header write is the update protocol: the copy that is not the
 * reader's choice first, flush, then the other, flush. At open a staged
 * window is redone synchronously from the staging area.
 *
 * With the integrity layer below (docs/FORMAT.md, "Volume-key rotation
 * with the integrity layer"): the header and the staging area are on the
 * layer below it (m->raw), the window is read and written through it
 * (its tags move with the data: the tag boundary goes to B+W after commit
 * point 1), zero blocks are not written, and the final switch (tree,
 * superblock and journal under the new key, then the header) runs here
 * too, as the last step of the pass, with the whole disk locked:
 *
 *	lock [0, end) exclusive -> zero staging -> flush
 *	-> integrity: checkpoint(s) under the old keys, rekey checkpoint
 *	   (superblock of e+1 under the new key, trusted generation held)
 *	-> final header (new key)                the commit point
 *	-> trusted generation e+1 -> unlock
 *
 * the same writes in the same order as the switch at open (finish_sync),
 * which stays the recovery path of a crash anywhere in it. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/hdrio.h"
#include "crypt/crypt.h"
#include "crypt/reencrypt.h"
#include "integrity/integrity.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/loop.h"
#include "tapdisk/core/util.h"

#define WIN_MAX TD_HDR_REENC_WINDOW_MAX
#define WIN_BYTES ((size_t)WIN_MAX * TD_BLOCK_SIZE)

struct crypt_reenc {
	struct td_layer *l;   /* the crypt layer; l->below takes the data I/O */
	struct td_layer *raw; /* the header and the staging area */
	bool integ;	      /* l->below is the integrity layer */
	bool switched;	      /* integ: the integrity layer is under the new key, the
			       * header not yet known to be */
	uint64_t run;	      /* integ: the next block of the window to write in place */
	struct td_crypt_hdr h;
	struct td_reenc_rec r;
	int valid; /* the header copy a reader picks: written second */
	struct td_volkey *vk_old, *vk_new;
	struct td_xts *x_old, *x_new; /* the mover's, loop thread only */
	uint64_t data_offset, nblocks;
	uint64_t boundary; /* atomic: blocks below are under the new key */
	struct td_rangelock rl;
	struct td_rl_item item;
	uint8_t *buf;  /* one window */
	uint8_t *hbuf; /* one encoded header copy */
	struct td_req req;
	struct iovec iov;
	void (*next)(struct crypt_reenc *m);
	int hstep;
	void (*hdone)(struct crypt_reenc *m);
	struct td_defer kick;
	bool busy, stopping, done, failed;
	/* after a failure inside a window: which header the disk holds is not
	 * known, so guest I/O to the window fails until the next open */
	bool fenced;
	uint64_t fence_first, fence_last;
	void (*finished)(void *opaque);
	void *fin_opaque;
	void (*quiesced)(void *opaque, int err);
	void *q_opaque;
	struct td_defer qdefer;
	uint64_t t0_ns, last_log_ns, moved;
	uint64_t fin_ns; /* when the end's whole-disk lock was granted */
	char uuid[TD_HDR_UUID_STR_LEN];
};

static void win_start(void *opaque);
static void q_now(void *opaque);
static void win_locked(struct td_rl_item *it);

/* Old ciphertext -> new ciphertext, in place, for n blocks from first. */
static int rekey_blocks(struct crypt_reenc *m, uint8_t *buf, uint64_t first, uint64_t n)
{
	uint64_t k;

	for (k = 0; k < n; k++) {
		uint8_t *b = buf + k * TD_BLOCK_SIZE;

		if (td_all_zero(b, TD_BLOCK_SIZE))
			continue; /* unwritten: reads as zeros under either key */
		if (td_xts_decrypt(m->x_old, first + k, b, b, TD_BLOCK_SIZE) < 0 ||
		    td_xts_encrypt(m->x_new, first + k, b, b, TD_BLOCK_SIZE) < 0)
			return -EIO;
	}
	return 0;
}

static struct td_xts *xts_of(const struct td_volkey *vk)
{
	uint8_t *k = td_secure_alloc(TD_XTS_KEY_LEN);
	struct td_xts *x = NULL;

	if (k && td_volkey_derive(vk, TD_SUBKEY_XTS, k, TD_XTS_KEY_LEN) == 0)
		x = td_xts_new(k);
	if (k)
		td_secure_free(k);
	return x;
}

/* The header of the finished pass: the new key's digest, the kept slots
 * (their pending wraps: td_hdr_reenc_switch_slots), no record; sealed with
 * the new key. */
static int final_header(struct crypt_reenc *m, struct td_crypt_hdr *h)
{
	*h = m->h;
	memcpy(h->vk_digest, m->r.new_digest, TD_HDR_DIGEST_LEN);
	td_hdr_reenc_switch_slots(h, m->r.new_slot);
	td_hdr_reenc_set(h, NULL);
	h->seqno++;
	return td_hdr_seal(h, m->vk_new);
}

void crypt_reenc_free(struct crypt_reenc *m)
{
	if (!m)
		return;
	td_loop_defer_cancel(m->l->ctx->loop, &m->kick);
	td_loop_defer_cancel(m->l->ctx->loop, &m->qdefer);
	td_xts_free(m->x_old);
	td_xts_free(m->x_new);
	td_volkey_free(&m->vk_old);
	td_volkey_free(&m->vk_new);
	if (m->buf)
		td_buf_put(m->buf, WIN_BYTES);
	if (m->hbuf)
		td_buf_put(m->hbuf, TD_HDR_COPY_SIZE);
	td_wipe(m, sizeof(*m));
	free(m);
}

/* Redoes the staged window (open, synchronous). */
static int redo_window(struct crypt_reenc *m, char *err, size_t errlen)
{
	struct td_layer *below = m->l->below;
	uint64_t w = m->r.window, b = m->r.boundary, k, e;
	uint8_t dig[TD_SHA256_LEN];
	int rc = 0;

	rc = td_layer_sync_io(m->raw, TD_OP_READ, m->r.staging_off, m->buf, w * TD_BLOCK_SIZE, 0);
	if (rc < 0) {
		snprintf(err, errlen, "image %s: cannot read the reencryption staging area: %s",
			 m->uuid, strerror(-rc));
		return rc;
	}
	if (td_sha256(m->buf, w * TD_BLOCK_SIZE, dig) < 0 ||
	    !td_ct_memeq(dig, m->r.staging_digest, TD_SHA256_LEN)) {
		snprintf(err, errlen,
			 "image %s: the reencryption staging area does not match its digest in "
			 "the header (blocks %llu..%llu): it was changed after it was written; "
			 "refusing to open",
			 m->uuid, (unsigned long long)b, (unsigned long long)(b + w - 1));
		return -EBADMSG;
	}
	if (rekey_blocks(m, m->buf, b, w) < 0) {
		snprintf(err, errlen, "image %s: cipher failure", m->uuid);
		return -EIO;
	}
	if (!m->integ) {
		rc = td_layer_sync_io(below, TD_OP_WRITE, m->data_offset + b * TD_BLOCK_SIZE,
				      m->buf, w * TD_BLOCK_SIZE, 0);
	} else {
		/* through the integrity layer, whose tag boundary is at b+w
		 * already; zero blocks stay zero entries */
		for (k = 0; rc == 0 && k < w; k = e) {
			for (e = k;
			     e < w && !td_all_zero(m->buf + e * TD_BLOCK_SIZE, TD_BLOCK_SIZE); e++)
				;
			if (e > k)
				rc = td_layer_sync_io(
				    below, TD_OP_WRITE, m->data_offset + (b + k) * TD_BLOCK_SIZE,
				    m->buf + k * TD_BLOCK_SIZE, (e - k) * TD_BLOCK_SIZE, 0);
			else
				e++;
		}
	}
	if (rc == 0)
		rc = td_layer_sync_io(below, TD_OP_FLUSH, 0, NULL, 0, 0);
	if (rc < 0) {
		snprintf(err, errlen, "image %s: cannot redo the reencryption window: %s", m->uuid,
			 strerror(-rc));
		return rc;
	}
	m->r.boundary = b + w;
	m->r.window = 0;
	memset(m->r.staging_digest, 0, sizeof(m->r.staging_digest));
	td_hdr_reenc_set(&m->h, &m->r);
	m->h.seqno++;
	if ((rc = td_hdr_seal(&m->h, m->vk_old)) < 0 ||
	    (rc = td_hdr_store(m->raw, &m->h, m->valid, err, errlen)) < 0)
		return rc;
	td_info("crypt: image %s: redid the reencryption window %llu..%llu left by a crash",
		m->uuid, (unsigned long long)b, (unsigned long long)(b + w - 1));
	return 0;
}

#ifdef TD_TEST_BUILD
static bool test_gen_early;

void td_crypt_reenc_test_gen_early(bool on)
{
	test_gen_early = on;
}
#define GEN_EARLY test_gen_early
#else
#define GEN_EARLY false
#endif

/* Finishes at open (synchronous): the boundary is at the end. */
static int finish_sync(struct crypt_reenc *m, char *err, size_t errlen)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return -ENOMEM;
	memset(m->buf, 0, WIN_BYTES);
	rc = td_layer_sync_io(m->raw, TD_OP_WRITE, m->r.staging_off, m->buf, WIN_BYTES, 0);
	if (rc == 0)
		rc = td_layer_sync_io(m->raw, TD_OP_FLUSH, 0, NULL, 0, 0);
	/* integrity: tree, superblock and journal under the new key (a new
	 * epoch the old header cannot verify), the trusted generation not
	 * advanced yet */
	if (rc == 0 && m->integ && (rc = ti_reenc_rekey_sync(m->l->below, err, errlen)) < 0) {
		free(h);
		return rc;
	}
	if (rc == 0 && m->integ && GEN_EARLY)
		ti_reenc_gen_commit(m->l->below); /* broken on purpose */
	if (rc == 0)
		rc = final_header(m, h);
	if (rc == 0)
		rc = td_hdr_store(m->raw, h, m->valid, err, errlen); /* the commit point */
	else
		snprintf(err, errlen, "image %s: cannot finish the reencryption: %s", m->uuid,
			 strerror(-rc));
	if (rc == 0 && m->integ)
		ti_reenc_gen_commit(m->l->below);
	free(h);
	if (rc == 0)
		td_info("crypt: image %s: volume-key rotation finished; the old key opens "
			"nothing now",
			m->uuid);
	return rc;
}

int crypt_reenc_open(struct td_layer *l, struct td_layer *raw, bool integ,
		     const struct td_crypt_hdr *h, int which, const struct td_volkey *vk_old,
		     const struct td_volkey *vk_new, uint64_t data_offset, struct crypt_reenc **out,
		     char *err, size_t errlen)
{
	struct crypt_reenc *m = calloc(1, sizeof(*m));
	int rc = -ENOMEM;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->l = l;
	m->raw = raw;
	m->integ = integ;
	td_defer_init(&m->kick, win_start, m);
	td_defer_init(&m->qdefer, q_now, m);
	m->h = *h;
	m->valid = which;
	m->data_offset = data_offset;
	m->nblocks = h->data_size / TD_BLOCK_SIZE;
	td_hdr_uuid_str(h->uuid, m->uuid);
	if (td_hdr_reenc_get(h, &m->r, err, errlen) != 1) {
		rc = -EBADMSG;
		goto fail;
	}
	m->vk_old = td_volkey_from_bytes(td_volkey_bytes(vk_old), TD_VOLKEY_LEN);
	m->vk_new = td_volkey_from_bytes(td_volkey_bytes(vk_new), TD_VOLKEY_LEN);
	m->buf = td_buf_get(WIN_BYTES);
	m->hbuf = td_buf_get(TD_HDR_COPY_SIZE);
	if (!m->vk_old || !m->vk_new || !m->buf || !m->hbuf || !(m->x_old = xts_of(vk_old)) ||
	    !(m->x_new = xts_of(vk_new))) {
		snprintf(err, errlen, "out of (secure) memory");
		goto fail;
	}
	if (m->r.window && l->ctx->readonly) {
		rc = -EROFS;
		snprintf(err, errlen,
			 "image %s: a reencryption window is pending (blocks %llu..): open it "
			 "read-write once to finish it",
			 m->uuid, (unsigned long long)m->r.boundary);
		goto fail;
	}
	if (m->r.window && (rc = redo_window(m, err, errlen)) < 0)
		goto fail;
	if (m->r.boundary == m->nblocks && !l->ctx->readonly) {
		rc = finish_sync(m, err, errlen);
		crypt_reenc_free(m);
		return rc < 0 ? rc : 1;
	}
	__atomic_store_n(&m->boundary, m->r.boundary, __ATOMIC_RELEASE);
	*out = m;
	return 0;
fail:
	crypt_reenc_free(m);
	return rc;
}

void crypt_reenc_set_finished(struct crypt_reenc *m, void (*fn)(void *opaque), void *opaque)
{
	m->finished = fn;
	m->fin_opaque = opaque;
}

bool crypt_reenc_is_new(const struct crypt_reenc *m, uint64_t b)
{
	return b < __atomic_load_n(&m->boundary, __ATOMIC_ACQUIRE);
}

bool crypt_reenc_done(const struct crypt_reenc *m)
{
	return m->done;
}

bool crypt_reenc_fenced(const struct crypt_reenc *m, uint64_t first, uint64_t last)
{
	return m->fenced && first <= m->fence_last && last >= m->fence_first;
}

void crypt_reenc_lock(struct crypt_reenc *m, struct td_rl_item *it, uint64_t first, uint64_t last,
		      void (*granted)(struct td_rl_item *it))
{
	it->first = first;
	it->last = last;
	it->exclusive = false;
	it->granted = granted;
	td_rl_acquire(&m->rl, it);
}

void crypt_reenc_unlock(struct crypt_reenc *m, struct td_rl_item *it)
{
	td_rl_release(&m->rl, it);
}

/* ---- the asynchronous steps --------------------------------------------------- */

static void io_done(struct td_req *req, int err)
{
	struct crypt_reenc *m = req->opaque;

	if (err) {
		td_err("crypt: image %s: volume-key rotation stopped at block %llu: I/O error "
		       "(%s); it resumes at the next open",
		       m->uuid, (unsigned long long)m->r.boundary, strerror(-err));
		m->failed = true;
		if (m->switched) {
			/* the final header may or may not be on disk */
			ti_reenc_switch_abort(m->l->below, err);
			m->switched = false;
		}
		if (m->item.granted == win_locked) {
			m->fenced = true;
			m->fence_first = m->item.first;
			m->fence_last = m->item.last;
		}
		td_rl_release(&m->rl, &m->item);
		m->busy = false;
		if (m->quiesced)
			m->quiesced(m->q_opaque, 0);
		m->quiesced = NULL;
		return;
	}
	m->next(m);
}

static void io_on(struct crypt_reenc *m, struct td_layer *to, enum td_op op, uint64_t off,
		  void *buf, uint64_t len, void (*next)(struct crypt_reenc *m))
{
	m->next = next;
	td_req_init1(&m->req, &m->iov, op, off, buf, len, io_done, m);
	td_layer_submit(to, &m->req);
}

/* data I/O: through the layer below (the integrity layer, if any) */
static void io(struct crypt_reenc *m, enum td_op op, uint64_t off, void *buf, uint64_t len,
	       void (*next)(struct crypt_reenc *m))
{
	io_on(m, m->l->below, op, off, buf, len, next);
}

/* header and staging I/O */
static void io_raw(struct crypt_reenc *m, enum td_op op, uint64_t off, void *buf, uint64_t len,
		   void (*next)(struct crypt_reenc *m))
{
	io_on(m, m->raw, op, off, buf, len, next);
}

/* Header write: copy not picked first, flush, the other, flush. */
static void hdr_step(struct crypt_reenc *m)
{
	uint64_t first = m->valid == 1 ? TD_HDR_OFFSET_A : TD_HDR_OFFSET_B;
	uint64_t second = m->valid == 1 ? TD_HDR_OFFSET_B : TD_HDR_OFFSET_A;

	switch (m->hstep++) {
	case 0:
		io_raw(m, TD_OP_WRITE, first, m->hbuf, TD_HDR_COPY_SIZE, hdr_step);
		break;
	case 1:
	case 3:
		io_raw(m, TD_OP_FLUSH, 0, NULL, 0, hdr_step);
		break;
	case 2:
		io_raw(m, TD_OP_WRITE, second, m->hbuf, TD_HDR_COPY_SIZE, hdr_step);
		break;
	default:
		m->hdone(m);
	}
}

static void hdr_write(struct crypt_reenc *m, const struct td_crypt_hdr *h,
		      void (*done)(struct crypt_reenc *m))
{
	if (td_hdr_encode(h, m->hbuf) < 0) {
		td_err("crypt: image %s: cannot encode the header", m->uuid);
		m->req.opaque = m;
		io_done(&m->req, -EINVAL);
		return;
	}
	m->hstep = 0;
	m->hdone = done;
	hdr_step(m);
}

static void fin_done(struct crypt_reenc *m)
{
	uint64_t now = td_now_ns(), s = (now - m->t0_ns) / 1000000000ull;

	m->done = true;
	td_info("crypt: image %s: volume-key rotation finished (%llu blocks moved in %llu s; "
		"guest I/O held %llu ms for the end); the header is the new key's and the old "
		"key opens nothing",
		m->uuid, (unsigned long long)m->moved, (unsigned long long)s,
		(unsigned long long)((now - m->fin_ns) / 1000000ull));
	if (m->finished)
		m->finished(m->fin_opaque); /* switches the layer's keys */
	if (m->l->ctx->key_rotated)
		m->l->ctx->key_rotated(m->l->ctx->key_opaque, m->h.uuid);
	m->busy = false;
	td_rl_release(&m->rl, &m->item);
	if (m->quiesced)
		m->quiesced(m->q_opaque, 0);
	m->quiesced = NULL;
}

static void fin_staging_clean(struct crypt_reenc *m)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));

	if (!h || final_header(m, h) < 0) {
		free(h);
		m->req.opaque = m;
		io_done(&m->req, -ENOMEM);
		return;
	}
	hdr_write(m, h, fin_done);
	free(h);
}

/* integ: the header that names the new key is durable */
static void fin_integ_committed(struct crypt_reenc *m)
{
	m->switched = false;
	ti_reenc_switch_commit(m->l->below);
	fin_done(m);
}

/* integ: the integrity layer's rekey checkpoint ended */
static void fin_integ_switched(void *opaque, int err)
{
	struct crypt_reenc *m = opaque;
	struct td_crypt_hdr *h;

	if (err) {
		m->req.opaque = m;
		io_done(&m->req, err);
		return;
	}
	m->switched = true;
	if (GEN_EARLY)
		ti_reenc_gen_commit(m->l->below); /* broken on purpose */
	h = calloc(1, sizeof(*h));
	if (!h || final_header(m, h) < 0) {
		free(h);
		m->req.opaque = m;
		io_done(&m->req, -ENOMEM);
		return;
	}
	hdr_write(m, h, fin_integ_committed); /* the commit point */
	free(h);
}

static void fin_integ(struct crypt_reenc *m)
{
	int rc = ti_reenc_switch(m->l->below, fin_integ_switched, m);
	if (rc < 0) {
		m->req.opaque = m;
		io_done(&m->req, rc);
	}
}

static void fin_zeroed(struct crypt_reenc *m)
{
	io_raw(m, TD_OP_FLUSH, 0, NULL, 0, m->integ ? fin_integ : fin_staging_clean);
}

static void fin_locked(struct td_rl_item *it)
{
	struct crypt_reenc *m =
	    (struct crypt_reenc *)((char *)it - offsetof(struct crypt_reenc, item));

	m->fin_ns = td_now_ns();
	memset(m->buf, 0, WIN_BYTES);
	io_raw(m, TD_OP_WRITE, m->r.staging_off, m->buf, WIN_BYTES, fin_zeroed);
}

static void win_committed(struct crypt_reenc *m)
{
	uint64_t now = td_now_ns();

	m->moved += m->item.last - m->item.first + 1;
	/* the window is the new key's now, on disk and here */
	__atomic_store_n(&m->boundary, m->r.boundary, __ATOMIC_RELEASE);
	td_rl_release(&m->rl, &m->item);
	m->busy = false;
	if (now - m->last_log_ns > 5000000000ull) {
		m->last_log_ns = now;
		td_info("crypt: image %s: volume-key rotation at block %llu of %llu", m->uuid,
			(unsigned long long)m->r.boundary, (unsigned long long)m->nblocks);
	}
	if (m->stopping) {
		if (m->quiesced)
			m->quiesced(m->q_opaque, 0);
		m->quiesced = NULL;
		return;
	}
	/* let guest requests that waited for the window in first */
	td_loop_defer(m->l->ctx->loop, &m->kick);
}

static void win_inplace_flushed(struct crypt_reenc *m)
{
	m->r.boundary += m->r.window;
	m->r.window = 0;
	memset(m->r.staging_digest, 0, sizeof(m->r.staging_digest));
	td_hdr_reenc_set(&m->h, &m->r);
	m->h.seqno++;
	if (td_hdr_seal(&m->h, m->vk_old) < 0) {
		m->req.opaque = m;
		io_done(&m->req, -ENOMEM);
		return;
	}
	hdr_write(m, &m->h, win_committed); /* commit point 2 */
}

static void win_inplace_written(struct crypt_reenc *m)
{
	io(m, TD_OP_FLUSH, 0, NULL, 0, win_inplace_flushed);
}

/* integ: the next run of non-zero blocks of the window, in place through
 * the integrity layer (a zero block stays a zero entry: no write, no tag) */
static void win_next_run(struct crypt_reenc *m)
{
	uint64_t b = m->r.boundary, w = m->r.window, k = m->run, e;

	while (k < w && td_all_zero(m->buf + k * TD_BLOCK_SIZE, TD_BLOCK_SIZE))
		k++;
	if (k == w) {
		win_inplace_written(m);
		return;
	}
	for (e = k; e < w && !td_all_zero(m->buf + e * TD_BLOCK_SIZE, TD_BLOCK_SIZE); e++)
		;
	m->run = e;
	io(m, TD_OP_WRITE, m->data_offset + (b + k) * TD_BLOCK_SIZE, m->buf + k * TD_BLOCK_SIZE,
	   (e - k) * TD_BLOCK_SIZE, win_next_run);
}

static void win_staged(struct crypt_reenc *m)
{
	uint64_t b = m->r.boundary, w = m->r.window;

	if (rekey_blocks(m, m->buf, b, w) < 0) {
		m->req.opaque = m;
		io_done(&m->req, -EIO);
		return;
	}
	if (m->integ) {
		/* commit point 1 is durable: the window's tags are the new
		 * key's from here on (the window is locked exclusively) */
		ti_reenc_set_boundary(m->l->below, b + w);
		m->run = 0;
		win_next_run(m);
		return;
	}
	io(m, TD_OP_WRITE, m->data_offset + b * TD_BLOCK_SIZE, m->buf, w * TD_BLOCK_SIZE,
	   win_inplace_written);
}

static void win_staging_flushed(struct crypt_reenc *m)
{
	uint64_t w = m->item.last - m->item.first + 1;

	m->r.window = w;
	td_hdr_reenc_set(&m->h, &m->r);
	m->h.seqno++;
	if (td_sha256(m->buf, w * TD_BLOCK_SIZE, m->r.staging_digest) < 0 ||
	    (td_hdr_reenc_set(&m->h, &m->r), td_hdr_seal(&m->h, m->vk_old)) < 0) {
		m->req.opaque = m;
		io_done(&m->req, -ENOMEM);
		return;
	}
	hdr_write(m, &m->h, win_staged); /* commit point 1 */
}

static void win_staging_written(struct crypt_reenc *m)
{
	io_raw(m, TD_OP_FLUSH, 0, NULL, 0, win_staging_flushed);
}

static void win_read(struct crypt_reenc *m)
{
	uint64_t w = m->item.last - m->item.first + 1;

	io_raw(m, TD_OP_WRITE, m->r.staging_off, m->buf, w * TD_BLOCK_SIZE, win_staging_written);
}

static void win_locked(struct td_rl_item *it)
{
	struct crypt_reenc *m =
	    (struct crypt_reenc *)((char *)it - offsetof(struct crypt_reenc, item));
	uint64_t w = it->last - it->first + 1;

	io(m, TD_OP_READ, m->data_offset + it->first * TD_BLOCK_SIZE, m->buf, w * TD_BLOCK_SIZE,
	   win_read);
}

static void win_start(void *opaque)
{
	struct crypt_reenc *m = opaque;
	uint64_t b = m->r.boundary, w;

	if (m->stopping || m->failed || m->done || m->busy)
		return;
	if (b >= m->nblocks && m->integ)
		td_info("crypt: image %s: volume-key rotation moved every block; switching the "
			"integrity metadata and the header to the new key",
			m->uuid);
	m->busy = true;
	m->item.exclusive = true;
	if (b >= m->nblocks) {
		m->item.first = 0;
		m->item.last = m->nblocks - 1;
		m->item.granted = fin_locked;
	} else {
		w = m->nblocks - b < WIN_MAX ? m->nblocks - b : WIN_MAX;
		m->item.first = b;
		m->item.last = b + w - 1;
		m->item.granted = win_locked;
	}
	td_rl_acquire(&m->rl, &m->item);
}

void crypt_reenc_start(struct crypt_reenc *m)
{
	if (!m->l->ctx->rekey || m->l->ctx->readonly)
		return;
	m->t0_ns = m->last_log_ns = td_now_ns();
	td_info("crypt: image %s: volume-key rotation running from block %llu of %llu", m->uuid,
		(unsigned long long)m->r.boundary, (unsigned long long)m->nblocks);
	td_loop_defer(m->l->ctx->loop, &m->kick);
}

static void q_now(void *opaque)
{
	struct crypt_reenc *m = opaque;
	void (*fn)(void *, int) = m->quiesced;

	m->quiesced = NULL;
	if (fn)
		fn(m->q_opaque, 0);
}

void crypt_reenc_quiesce(struct crypt_reenc *m, void (*done)(void *opaque, int err), void *opaque)
{
	m->stopping = true;
	m->quiesced = done;
	m->q_opaque = opaque;
	td_loop_defer_cancel(m->l->ctx->loop, &m->kick);
	if (!m->busy) {
		td_loop_defer(m->l->ctx->loop, &m->qdefer);
	}
}
