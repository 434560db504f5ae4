/* Checkpoints (checkpoint.c): the tag table and the tree on disk catch
 * up with the journal, and a new epoch starts. Loop thread only. */
#ifndef TD_INTEGRITY_CHECKPOINT_H
#define TD_INTEGRITY_CHECKPOINT_H

#include "integrity/gen.h"
#include "integrity/journal.h"
#include "integrity/tagcache.h"

enum ti_ck_state { CK_IDLE, CK_DRAIN, CK_PREFLUSH, CK_PAGES, CK_FLUSH, CK_SUPER };

struct ti_ckpt {
	struct ti_core *c;
	struct ti_cache *tc;
	struct ti_journal *j;
	struct ti_gen *gen;
	enum ti_ck_state st;
	int pending; /* page writes in flight */
	int err;
	bool requested; /* due whatever the thresholds say (ti_ckpt_request) */
	/* ti_ckpt_sync for a volume-key rotation's rekey (reenc.c): run even
	 * with nothing pending, and leave the trusted generation alone */
	bool sync_force, sync_hold_gen;
	/* the online switch of a volume-key rotation (reenc.c): at_drain runs
	 * once, when the epoch is closed and nothing of it is in flight,
	 * before the pages are written (a negative return fails the
	 * checkpoint); held: from then until the header that names the new
	 * key is durable, no other checkpoint starts and the trusted
	 * generation is not advanced */
	int (*at_drain)(void *opaque);
	void *at_drain_opaque;
	bool held;
	uint8_t *super_buf;
	struct td_req req;
	struct iovec iov;
	uint8_t root[TI_HASH_LEN]; /* v2: the root the next superblock carries */
	struct ti_wait drained;	   /* parked on the journal while it drains */
	struct ti_waitq done;	   /* woken when a checkpoint ends (err) */
};

int ti_ckpt_init(struct ti_ckpt *ck, struct ti_core *c, struct ti_cache *tc, struct ti_journal *j,
		 struct ti_gen *gen);
void ti_ckpt_free(struct ti_ckpt *ck);

/* Starts a checkpoint when one is due: the journal is full, dirty pages
 * fill half the cache, or one was requested. Call it whenever one of
 * those may have changed (a request ended). */
void ti_ckpt_maybe(struct ti_ckpt *ck);
/* A checkpoint is due now (it starts unless one runs or the layer is
 * broken; one that runs counts): journal entries wait for room, the flush
 * points hand their waiters over, the quiesce asks for the final one. */
void ti_ckpt_request(struct ti_ckpt *ck);
static inline bool ti_ckpt_busy(const struct ti_ckpt *ck)
{
	return ck->st != CK_IDLE;
}
/* Anything for a checkpoint to write: journal blocks or dirty pages. */
bool ti_ckpt_pending(const struct ti_ckpt *ck);
/* w is woken when the running (or next) checkpoint ends: err 0 means the
 * new epoch is durable. */
void ti_ckpt_wait(struct ti_ckpt *ck, struct ti_wait *w);
/* Open paths only (recovery): a whole checkpoint with synchronous I/O,
 * when anything is pending. 0 or the error (the layer is then broken). */
int ti_ckpt_sync(struct ti_ckpt *ck);

#endif
