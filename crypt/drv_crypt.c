/* crypt: AES-256-XTS of every 4 KiB block, tweak = the block's number in
 * this layer's exported range.
 *
 * The crypt header (crypt/header.h) sits at the start of the lower
 * range; the layer exports [data_offset, data_offset + data_size) of the
 * layer below as blocks 0.. . The volume key comes from the kernel
 * keyring (keymgr/keyring.h), is checked against the header's digest and
 * authenticates the header before anything is served.
 *
 * Writes are encrypted into a bounce buffer (never in the caller's
 * buffer); reads are decrypted in place. The cipher work runs on the
 * core's worker threads, split into chunks so one large request keeps
 * every core busy, with one XTS context per worker (no per-block setup).
 *
 * An all-zero ciphertext block reads as plaintext zeros: that is what an
 * unwritten, discarded or zeroed block of the lower image holds, so
 * WRITE_ZEROES and DISCARD can pass straight down. (Real ciphertext is
 * all zeros with probability 2^-32768.) */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "crypt/crypt.h"
#include "crypt/hdrio.h"
#include "crypt/reencrypt.h"
#include "integrity/integrity.h"
#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/log.h"
#include "tapdisk/core/pool.h"
#include "tapdisk/core/util.h"

#define MIN_PART_BLOCKS 16 /* a worker's share of one request, at least */

struct crypt_priv;

struct crypt_req;

struct crypt_req {
	struct td_req child;
	struct iovec iov;
	struct td_req *parent;
	struct td_layer *l;
	void *bounce;
	size_t bounce_len;
	struct td_fanout fan; /* the cipher work, split over the workers */
	struct td_rl_item rl; /* during a volume-key rotation */
	bool locked;
	void (*go)(struct crypt_req *cr); /* once the lock is granted */
};

struct crypt_priv {
	uint64_t data_offset;
	int nctx;
	struct td_xts **xts; /* one per worker thread */
	/* a volume-key rotation under way (crypt/reencrypt.h): the new key's
	 * contexts, used for the blocks below the boundary */
	struct td_xts **xts_new;
	struct crypt_reenc *re;
	bool integ; /* the integrity layer is below us */
	struct td_defer qdefer;
	struct td_pool reqs;
	char uuid[TD_HDR_UUID_STR_LEN];
	uint8_t uuid_raw[16];
};

static void free_ctxs(struct crypt_priv *p, struct td_xts ***v)
{
	int i;

	for (i = 0; *v && i < p->nctx; i++)
		td_xts_free((*v)[i]);
	free(*v);
	*v = NULL;
}

/* The pass completed (crypt/reencrypt.c, with the whole disk locked):
 * from now on every block is under the new key. */
static void reenc_finished(void *opaque)
{
	struct crypt_priv *p = opaque;

	free_ctxs(p, &p->xts);
	p->xts = p->xts_new;
	p->xts_new = NULL;
}

/* The header's reencryption record (*r) and the new key the chain's key
 * source holds for it (*nk, checked against the record's digest): 1 with
 * both, 0 without a rotation, or a negative errno with err. */
static int reenc_new_key(struct td_layer *l, const struct td_crypt_hdr *h,
			 const uint8_t id[TD_IMAGE_ID_LEN], const char *where,
			 struct td_reenc_rec *r, struct td_volkey **nk, char *err, size_t errlen)
{
	struct crypt_priv *p = l->priv;
	uint8_t dig[TD_HDR_DIGEST_LEN];
	int rc;

	*nk = NULL;
	rc = td_hdr_reenc_get(h, r, err, errlen);
	if (rc <= 0) {
		if (rc < 0)
			snprintf(err + strlen(err), errlen - strlen(err), " (image %s)", p->uuid);
		return rc;
	}
	if (!l->ctx->get_next_key) {
		snprintf(err, errlen,
			 "image %s is being re-encrypted and this program cannot get its new key",
			 p->uuid);
		return -ENOKEY;
	}
	rc = l->ctx->get_next_key(l->ctx->key_opaque, h->uuid, id, where, nk, err, errlen);
	if (rc < 0)
		return rc;
	if (td_hdr_vk_digest(*nk, dig) < 0 || !td_ct_memeq(dig, r->new_digest, sizeof(dig))) {
		td_volkey_free(nk);
		snprintf(err, errlen,
			 "image %s: the new key loaded does not match the one the reencryption "
			 "record names: run 'vdkey load SPEC' again",
			 p->uuid);
		return -EPERM;
	}
	return 1;
}

/* A volume-key rotation recorded in the header of an image with the
 * integrity layer: the new key's mac and tree subkeys (*nmk, 64 bytes of
 * secure memory; NULL without a rotation) and the tag boundary, for the
 * integrity layer's open (docs/FORMAT.md, "Volume-key rotation with the
 * integrity layer"). The new key must match the record. */
static int reenc_integrity_keys(struct td_layer *l, const struct td_crypt_hdr *h,
				const uint8_t id[TD_IMAGE_ID_LEN], const char *where, uint8_t **nmk,
				uint64_t *boundary, char *err, size_t errlen)
{
	struct td_reenc_rec r;
	struct td_volkey *nk = NULL;
	int rc;

	*nmk = NULL;
	*boundary = 0;
	rc = reenc_new_key(l, h, id, where, &r, &nk, err, errlen);
	if (rc <= 0)
		return rc;
	*nmk = td_volkey_integrity_keys(nk);
	td_volkey_free(&nk);
	if (!*nmk)
		return -ENOMEM;
	/* a staged window (commit point 1 durable) is the new key's: the
	 * redo rewrites it from the staging area under the new key */
	*boundary = r.boundary + r.window;
	return 0;
}

/* A volume-key rotation recorded in the header (docs/FORMAT.md): checks
 * the new key the chain's key source has, redoes or finishes what a crash
 * left (crypt_reenc_open) and sets p->re while the pass goes on. When it
 * finished here, *vk becomes the new key. */
static int reenc_open(struct td_layer *l, const struct td_crypt_hdr *h, int which,
		      const uint8_t id[TD_IMAGE_ID_LEN], const char *where, struct td_volkey **vk,
		      char *err, size_t errlen)
{
	struct crypt_priv *p = l->priv;
	struct td_reenc_rec r;
	struct td_volkey *nk = NULL;
	int rc;

	rc = reenc_new_key(l, h, id, where, &r, &nk, err, errlen);
	if (rc <= 0)
		return rc;
	rc = crypt_reenc_open(l, p->integ ? l->below->below : l->below, p->integ, h, which, *vk, nk,
			      p->data_offset, &p->re, err, errlen);
	if (rc == 1) {
		td_volkey_free(vk);
		*vk = nk;
		if (l->ctx->key_rotated)
			l->ctx->key_rotated(l->ctx->key_opaque, h->uuid);
		return 0;
	}
	td_volkey_free(&nk);
	return rc;
}

static int crypt_open(struct td_layer *l, const char *path, const char *opts, char *err,
		      size_t errlen)
{
	struct crypt_priv *p = l->priv;
	struct td_crypt_hdr *h = NULL;
	struct td_volkey *vk = NULL;
	uint8_t *xkey = NULL, id[TD_IMAGE_ID_LEN];
	char note[512], where[512];
	struct ti_tuning tuning = {0}; /* options: the integrity layer's, passed on */
	int rc, which, other_bad, i;

	rc = ti_tuning_parse(opts, &tuning, "crypt", err, errlen);
	if (rc < 0)
		return rc;
	if (td_layer_ephemeral(l->below)) {
		/* no header vdkey wrote can be on it */
		snprintf(err, errlen, "crypt: refused: %s", td_layer_ephemeral(l->below));
		return -EINVAL;
	}
	td_pool_init(&p->reqs, sizeof(struct crypt_req));
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	rc = td_hdr_load(l->below, h, &which, &other_bad, note, sizeof(note), err, errlen);
	if (rc < 0)
		goto out;
	td_hdr_uuid_str(h->uuid, p->uuid);
	if (other_bad != TD_HDR_OTHER_OK)
		td_warn("crypt: image %s: the %s header copy %s (%s); opened from the %s copy. "
			"'vdkey repair SPEC' rewrites it",
			p->uuid, which ? "primary" : "secondary",
			other_bad == TD_HDR_OTHER_CORRUPT ? "is corrupt" : "is stale", note,
			which ? "secondary" : "primary");
	memcpy(p->uuid_raw, h->uuid, 16);
	/* the key is asked for this image and this file: a loaded key opens
	 * only the file it was loaded for, whatever UUID a copy carries */
	rc = td_layer_identity(l->below, id, where, sizeof(where));
	if (rc < 0) {
		snprintf(err, errlen, "image %s: cannot tell which image this is: %s", p->uuid,
			 strerror(-rc));
		goto out;
	}
	rc = -ENOKEY;
	if (!l->ctx->get_key) {
		snprintf(err, errlen, "image %s: no key source in this program", p->uuid);
		goto out;
	}
	rc = l->ctx->get_key(l->ctx->key_opaque, h->uuid, id, where, &vk, err, errlen);
	if (rc < 0)
		goto out;
	/* from here on this process holds key material */
	td_secure_harden_process();
	rc = -EPERM;
	if (td_hdr_check_volkey(h, vk) != 0 && l->ctx->get_next_key) {
		/* a volume-key rotation finished since this key was loaded */
		struct td_volkey *nk = NULL;
		char e2[256];

		if (l->ctx->get_next_key(l->ctx->key_opaque, h->uuid, id, where, &nk, e2,
					 sizeof(e2)) == 0 &&
		    td_hdr_check_volkey(h, nk) == 0) {
			td_volkey_free(&vk);
			vk = nk;
			nk = NULL;
			if (l->ctx->key_rotated)
				l->ctx->key_rotated(l->ctx->key_opaque, h->uuid);
		}
		td_volkey_free(&nk);
	}
	if (td_hdr_check_volkey(h, vk) != 0) {
		snprintf(err, errlen,
			 "the key loaded for image %s does not match its header (was the image "
			 "re-formatted? run 'vdkey unload' and 'vdkey load' again)",
			 p->uuid);
		goto out;
	}
	rc = -EBADMSG;
	if (td_hdr_verify_mac(h, vk) != 0) {
		snprintf(err, errlen,
			 "header authentication failed for image %s: its settings were changed "
			 "without the volume key; refusing to open",
			 p->uuid);
		goto out;
	}
	rc = -EINVAL;
	if (h->data_offset % TD_BLOCK_SIZE || h->data_size % TD_BLOCK_SIZE ||
	    h->sector_size != TD_BLOCK_SIZE || strcmp(h->cipher, TD_HDR_CIPHER_XTS) != 0) {
		snprintf(err, errlen, "image %s: unsupported cipher layout (%s, sector %u)",
			 p->uuid, h->cipher, h->sector_size);
		goto out;
	}
	p->data_offset = h->data_offset;
	if (strcmp(h->integrity, TD_HDR_INTEGRITY_HMAC_SHA256) == 0) {
		/* the MAC layer the header records goes in below us; nobody can
		 * switch it off: the header is authenticated */
		struct ti_open_arg a;
		uint8_t *mk = td_volkey_integrity_keys(vk); /* mac key, then tree key */
		uint8_t *nmk = NULL;

		memset(&a, 0, sizeof(a));
		rc = -ENOMEM;
		if (!mk)
			goto out;
		/* a rotation under way: the layer needs the new key's subkeys
		 * and the tag boundary before its recovery runs */
		rc = reenc_integrity_keys(l, h, id, where, &nmk, &a.tag_boundary, err, errlen);
		if (rc < 0) {
			td_secure_free(mk);
			goto out;
		}
		if (nmk) {
			a.new_mac_key = nmk;
			a.new_tree_key = nmk + 32;
		}
		rc = ti_params_decode(h->integrity_params, l->below->size, &a.params, err, errlen);
		if (rc == 0 && (a.params.data_start != h->data_offset ||
				a.params.data_blocks * TD_BLOCK_SIZE != h->data_size)) {
			rc = -EBADMSG;
			snprintf(err, errlen,
				 "image %s: integrity layout disagrees with the header", p->uuid);
		}
		memcpy(a.uuid, h->uuid, 16);
		a.mac_key = mk;
		a.tree_key = mk + 32;
		a.tuning = tuning;
		if (rc == 0)
			rc = td_chain_insert_below(l, &td_drv_integrity, NULL, &a, err, errlen);
		td_secure_free(mk);
		if (nmk)
			td_secure_free(nmk);
		if (rc < 0)
			goto out;
		p->data_offset = 0; /* the integrity layer exports the data area from 0 */
		p->integ = true;
	} else if (strcmp(h->integrity, TD_HDR_INTEGRITY_NONE) != 0) {
		rc = -EOPNOTSUPP;
		snprintf(err, errlen, "image %s: unknown integrity mode '%s'", p->uuid,
			 h->integrity);
		goto out;
	}
	rc = -EIO;
	if (p->data_offset > l->below->size || h->data_size > l->below->size - p->data_offset) {
		snprintf(err, errlen,
			 "image %s is truncated: the header says %llu data bytes at offset %llu, "
			 "the image has %llu",
			 p->uuid, (unsigned long long)h->data_size,
			 (unsigned long long)h->data_offset, (unsigned long long)l->below->size);
		goto out;
	}
	l->size = h->data_size;
	rc = reenc_open(l, h, which, id, where, &vk, err, errlen);
	if (rc < 0)
		goto out;

	rc = -ENOMEM;
	xkey = td_secure_alloc(TD_XTS_KEY_LEN);
	if (!xkey || td_volkey_derive(vk, TD_SUBKEY_XTS, xkey, TD_XTS_KEY_LEN) < 0)
		goto out;
	/* one context per worker thread, and one for the loop thread (small
	 * requests are enciphered inline) */
	p->nctx = td_workers_count(l->ctx->workers) + 1;
	p->xts = calloc((size_t)p->nctx, sizeof(*p->xts));
	if (!p->xts)
		goto out;
	for (i = 0; i < p->nctx; i++) {
		p->xts[i] = td_xts_new(xkey);
		if (!p->xts[i])
			goto out;
	}
	if (p->re) {
		/* the rotation's new key, for the blocks below the boundary */
		struct td_volkey *nk = NULL;
		char e2[256];

		if (l->ctx->get_next_key(l->ctx->key_opaque, h->uuid, id, where, &nk, e2,
					 sizeof(e2)) < 0 ||
		    td_volkey_derive(nk, TD_SUBKEY_XTS, xkey, TD_XTS_KEY_LEN) < 0 ||
		    !(p->xts_new = calloc((size_t)p->nctx, sizeof(*p->xts_new)))) {
			td_volkey_free(&nk);
			goto out;
		}
		td_volkey_free(&nk);
		for (i = 0; i < p->nctx; i++)
			if (!(p->xts_new[i] = td_xts_new(xkey)))
				goto out;
		crypt_reenc_set_finished(p->re, reenc_finished, p);
		crypt_reenc_start(p->re);
	}
	td_info("crypt: image %s unlocked (aes-xts-plain64, integrity %s)", p->uuid, h->integrity);
	rc = 0;
out:
	if (rc < 0 && p->xts) {
		for (i = 0; i < p->nctx; i++)
			td_xts_free(p->xts[i]);
		free(p->xts);
		p->xts = NULL;
	}
	if (rc < 0) {
		free_ctxs(p, &p->xts_new);
		crypt_reenc_free(p->re);
		p->re = NULL;
	}
	if (xkey)
		td_secure_free(xkey);
	td_volkey_free(&vk);
	if (h) {
		td_wipe(h, sizeof(*h));
		free(h);
	}
	return rc;
}

static int crypt_uuid(const struct td_layer *l, uint8_t uuid[16])
{
	const struct crypt_priv *p = l->priv;

	memcpy(uuid, p->uuid_raw, 16);
	return 0;
}

static void crypt_close(struct td_layer *l)
{
	struct crypt_priv *p = l->priv;
	int i;

	for (i = 0; p->xts && i < p->nctx; i++)
		td_xts_free(p->xts[i]);
	free(p->xts);
	p->xts = NULL;
	free_ctxs(p, &p->xts_new);
	crypt_reenc_free(p->re);
	p->re = NULL;
	td_pool_drain(&p->reqs);
}

static void quiesced_cb(void *opaque, int err)
{
	td_layer_quiesced(opaque, err);
}

static void quiesced_now(void *opaque)
{
	td_layer_quiesced(opaque, 0);
}

/* Only a volume-key rotation's window in flight to wait for. */
static void crypt_quiesce(struct td_layer *l)
{
	struct crypt_priv *p = l->priv;

	if (p->re && !crypt_reenc_done(p->re)) {
		crypt_reenc_quiesce(p->re, quiesced_cb, l);
		return;
	}
	td_defer_init(&p->qdefer, quiesced_now, l);
	td_loop_defer(l->ctx->loop, &p->qdefer);
}

static struct crypt_req *cr_get(struct td_layer *l, struct td_req *parent)
{
	struct crypt_priv *p = l->priv;
	struct crypt_req *cr = td_pool_get(&p->reqs);

	if (!cr)
		return NULL;
	cr->parent = parent;
	cr->l = l;
	cr->bounce = NULL;
	cr->bounce_len = 0;
	cr->locked = false;
	return cr;
}

static void cr_put(struct crypt_req *cr)
{
	struct crypt_priv *p = cr->l->priv;

	if (cr->locked)
		crypt_reenc_unlock(p->re, &cr->rl);
	cr->locked = false;
	if (cr->bounce)
		td_buf_put(cr->bounce, cr->bounce_len);
	td_pool_put(&p->reqs, cr);
}

static uint8_t *iov_at(const struct td_req *r, uint64_t off)
{
	return td_iov_at(r->iov, r->iovcnt, off);
}

/* The context of block b: the new key's below a rotation's boundary. */
static struct td_xts *xts_for(struct crypt_priv *p, int worker, uint64_t b)
{
	if (p->xts_new && crypt_reenc_is_new(p->re, b))
		return p->xts_new[worker % p->nctx];
	return p->xts[worker % p->nctx];
}

static void encrypt_fn(struct td_fanout_part *part, int worker)
{
	struct crypt_req *cr = part->f->opaque;
	struct crypt_priv *p = cr->l->priv;
	struct td_xts *x;
	uint64_t first = cr->parent->off / TD_BLOCK_SIZE + part->first, k;

	for (k = 0; k < part->n; k++) {
		uint64_t off = (part->first + k) * TD_BLOCK_SIZE;

		x = xts_for(p, worker, first + k);
		if (td_xts_encrypt(x, first + k, iov_at(cr->parent, off),
				   (uint8_t *)cr->bounce + off, TD_BLOCK_SIZE) < 0)
			part->err = -EIO;
	}
}

static void decrypt_fn(struct td_fanout_part *part, int worker)
{
	struct crypt_req *cr = part->f->opaque;
	struct crypt_priv *p = cr->l->priv;
	uint64_t first = cr->parent->off / TD_BLOCK_SIZE + part->first, k;

	for (k = 0; k < part->n; k++) {
		uint8_t *b = iov_at(cr->parent, (part->first + k) * TD_BLOCK_SIZE);

		if (td_all_zero(b, TD_BLOCK_SIZE))
			continue; /* never written: reads as zeros */
		if (td_xts_decrypt(xts_for(p, worker, first + k), first + k, b, b, TD_BLOCK_SIZE) <
		    0)
			part->err = -EIO;
	}
}

static void cipher_done(struct td_fanout *f);

/* The request's blocks, split over the workers. */
static void run_cipher(struct crypt_req *cr, void (*fn)(struct td_fanout_part *, int))
{
	cr->fan.fn = fn;
	cr->fan.done = cipher_done;
	cr->fan.opaque = cr;
	td_fanout_run(cr->l->ctx->workers, &cr->fan, cr->parent->len / TD_BLOCK_SIZE,
		      MIN_PART_BLOCKS, TD_BLOCK_SIZE);
}

static void write_done(struct td_req *child, int err)
{
	struct crypt_req *cr = child->opaque;
	struct td_req *parent = cr->parent;

	cr_put(cr);
	td_req_complete(parent, err);
}

static void cipher_done(struct td_fanout *f)
{
	struct crypt_req *cr = f->opaque;
	struct td_req *parent = cr->parent;
	struct crypt_priv *p = cr->l->priv;

	if (parent->op == TD_OP_READ || f->err) {
		int err = f->err;

		if (err)
			td_err("crypt: cipher failure on image %s", p->uuid);
		cr_put(cr);
		td_req_complete(parent, err);
		return;
	}
	/* encrypted: write the bounce buffer below */
	memset(&cr->child, 0, sizeof(cr->child));
	cr->child.op = TD_OP_WRITE;
	cr->child.flags = parent->flags;
	cr->child.off = parent->off + p->data_offset;
	cr->child.len = parent->len;
	cr->iov.iov_base = cr->bounce;
	cr->iov.iov_len = (size_t)parent->len;
	cr->child.iov = &cr->iov;
	cr->child.iovcnt = 1;
	cr->child.done = write_done;
	cr->child.opaque = cr;
	td_layer_submit(cr->l->below, &cr->child);
}

static void read_done(struct td_req *child, int err)
{
	struct crypt_req *cr = child->opaque;

	if (err) {
		struct td_req *parent = cr->parent;

		cr_put(cr);
		td_req_complete(parent, err);
		return;
	}
	run_cipher(cr, decrypt_fn);
}

static void go_submit(struct crypt_req *cr)
{
	td_layer_submit(cr->l->below, &cr->child);
}

static void go_encrypt(struct crypt_req *cr)
{
	run_cipher(cr, encrypt_fn);
}

static void lock_granted(struct td_rl_item *it)
{
	struct crypt_req *cr = (struct crypt_req *)((char *)it - offsetof(struct crypt_req, rl));
	struct crypt_priv *p = cr->l->priv;
	struct td_ctx *ctx = cr->l->ctx;

	if (crypt_reenc_fenced(p->re, it->first, it->last)) {
		struct td_req *parent = cr->parent;

		cr_put(cr); /* releases the lock */
		td_req_complete_later(ctx, parent, -EIO);
		return;
	}
	cr->go(cr);
}

/* Runs go(cr) now, or while a volume-key rotation is under way, once a
 * shared lock over the request's blocks is granted (the mover's window
 * holds an exclusive one). */
static void with_lock(struct crypt_req *cr, void (*go)(struct crypt_req *cr))
{
	struct crypt_priv *p = cr->l->priv;
	struct td_req *r = cr->parent;

	if (!p->re || crypt_reenc_done(p->re) || !r->len) {
		go(cr);
		return;
	}
	cr->go = go;
	cr->locked = true;
	crypt_reenc_lock(p->re, &cr->rl, r->off / TD_BLOCK_SIZE,
			 (r->off + r->len) / TD_BLOCK_SIZE - 1, lock_granted);
}

/* Sends req below as a child shifted into the data area; done runs when
 * the child completes. */
static void submit_shifted(struct td_layer *l, struct td_req *req,
			   void (*done)(struct td_req *child, int err))
{
	struct crypt_priv *p = l->priv;
	struct crypt_req *cr = cr_get(l, req);

	if (!cr) {
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	cr->child = *req;
	cr->child.off = req->off + p->data_offset;
	cr->child.done = done;
	cr->child.opaque = cr;
	with_lock(cr, go_submit);
}

/* read below in place, then decrypt (read_done) */
static void crypt_read(struct td_layer *l, struct td_req *req)
{
	submit_shifted(l, req, read_done);
}

static void crypt_write(struct td_layer *l, struct td_req *req)
{
	struct crypt_req *cr = cr_get(l, req);

	if (!cr || !(cr->bounce = td_buf_get((size_t)req->len))) {
		if (cr)
			cr_put(cr);
		td_req_complete_later(l->ctx, req, -ENOMEM);
		return;
	}
	cr->bounce_len = (size_t)req->len;
	with_lock(cr, go_encrypt);
}

static void passthru_done(struct td_req *child, int err)
{
	struct crypt_req *cr = child->opaque;
	struct td_req *parent = cr->parent;

	cr_put(cr);
	td_req_complete(parent, err);
}

/* discard and write-zeroes: shift into the data area and pass down */
static void crypt_shift(struct td_layer *l, struct td_req *req)
{
	submit_shifted(l, req, passthru_done);
}

const struct td_driver td_drv_crypt = {
    .name = "crypt",
    .summary =
	"AES-256-XTS encryption of each 4 KiB block (+ the integrity layer its header records)",
    .priv_size = sizeof(struct crypt_priv),
    .open = crypt_open,
    .close = crypt_close,
    .quiesce = crypt_quiesce,
    .read = crypt_read,
    .write = crypt_write,
    .discard = crypt_shift,
    .write_zeroes = crypt_shift,
    .uuid = crypt_uuid,
    .needs_key = true,
    .grow = td_crypt_grow,
};
