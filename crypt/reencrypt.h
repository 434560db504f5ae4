/* Volume-key rotation inside the crypt layer (docs/FORMAT.md, "Volume-key
 * rotation"): while the header carries a reencryption record, blocks
 * below the boundary are under the new key and the others under the old
 * one; the mover walks windows of at most TD_HDR_REENC_WINDOW_MAX blocks
 * under an exclusive range lock, staging each window's old ciphertext
 * before it rewrites it in place, and commits the boundary in the header.
 *
 * The crypt layer (crypt/drv_crypt.c) owns one of these while a rotation
 * is under way: it routes every guest request through crypt_reenc_lock /
 * crypt_reenc_unlock (a shared range lock) and picks the key of each block
 * with crypt_reenc_is_new. */
#ifndef TD_CRYPT_REENCRYPT_H
#define TD_CRYPT_REENCRYPT_H

#include <stdbool.h>
#include <stdint.h>

#include "crypt/header.h"
#include "tapdisk/block/driver.h"
#include "tapdisk/core/rangelock.h"

struct crypt_reenc;
struct td_volkey;

/* At open (synchronous I/O allowed). h: the header as loaded and
 * authenticated with vk_old (it is copied); which: the copy it came from.
 * Redoes a staged window, or finishes a pass whose boundary reached the
 * end. Returns 0 with *out set (a rotation is under way), 1 with *out
 * NULL when it finished here (the header is now vk_new's), or -errno with
 * a message. The keys are copied. */
/* raw: the layer that holds the header and the staging area (below the
 * integrity layer when integ); l->below takes the data I/O. */
int crypt_reenc_open(struct td_layer *l, struct td_layer *raw, bool integ,
		     const struct td_crypt_hdr *h, int which, const struct td_volkey *vk_old,
		     const struct td_volkey *vk_new, uint64_t data_offset, struct crypt_reenc **out,
		     char *err, size_t errlen);

/* Called once, on the loop, when the pass completes and the header is the
 * new key's, with the whole disk locked: the crypt layer switches to the
 * new key's contexts before any request runs again. */
void crypt_reenc_set_finished(struct crypt_reenc *m, void (*fn)(void *opaque), void *opaque);

/* Starts the mover (only where ctx->rekey is set), from the loop. */
void crypt_reenc_start(struct crypt_reenc *m);

/* Whether block b is under the new key. Stable for a block its caller
 * holds a lock on; callable from worker threads. */
bool crypt_reenc_is_new(const struct crypt_reenc *m, uint64_t b);

/* Whether blocks [first, last] overlap a window whose move failed half-way
 * (the header on disk may say either key for it): guest I/O to it fails
 * with EIO until the next open redoes or commits it. */
bool crypt_reenc_fenced(const struct crypt_reenc *m, uint64_t first, uint64_t last);

/* Shared lock over [first, last] for a guest request; granted runs now or
 * once the mover's window is out of the way. */
void crypt_reenc_lock(struct crypt_reenc *m, struct td_rl_item *it, uint64_t first, uint64_t last,
		      void (*granted)(struct td_rl_item *it));
void crypt_reenc_unlock(struct crypt_reenc *m, struct td_rl_item *it);

/* The layer's quiesce: the window in flight completes, no new one
 * starts; done(opaque, err) runs from the loop. */
void crypt_reenc_quiesce(struct crypt_reenc *m, void (*done)(void *opaque, int err), void *opaque);

/* Whether the pass has completed (then the layer no longer needs m). */
bool crypt_reenc_done(const struct crypt_reenc *m);

/* Frees (no I/O may be in flight: after a quiesce, or a failed open). */
void crypt_reenc_free(struct crypt_reenc *m);

#endif
