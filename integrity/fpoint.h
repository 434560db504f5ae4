/* Flush points (fpoint.c, docs/FORMAT.md "Flush points"): which
 * journaled writes are known to be durable, written into the journal
 * when a guest FLUSH or FUA write needs it. Loop thread only. */
#ifndef TD_INTEGRITY_FPOINT_H
#define TD_INTEGRITY_FPOINT_H

#include "integrity/checkpoint.h"
#include "integrity/journal.h"

/* A set of sequence numbers: sorted, disjoint, non-touching ranges
 * (rset.c). */
struct ti_rset {
	struct ti_frange *r;
	size_t n, cap;
};

void ti_rset_free(struct ti_rset *s);
/* s := s + [a, a + c): 0 or -ENOMEM */
int ti_rset_add(struct ti_rset *s, uint64_t a, uint64_t c);
/* s := s - [a, a + c): 0 or -ENOMEM */
int ti_rset_remove(struct ti_rset *s, uint64_t a, uint64_t c);

/* A write that holds sequence numbers [seq0, seq0 + n), from the MAC
 * computation until its data write has completed: the flush points never
 * claim it meanwhile. A FUA write then waits for a flush point holding it:
 * w is woken when one is durable (or with the error that ends it). */
struct ti_fpw {
	struct ti_wait w;
	uint64_t seq0, n;
	bool linked;
	struct ti_fpw *prev, *next;
};

struct ti_fp {
	struct ti_core *c;
	struct ti_journal *j;
	struct ti_ckpt *ck;
#ifdef TD_TEST_BUILD
	bool off, early, noexcl; /* broken on purpose (testbreak.c) */
	bool early_flushed;	 /* "early": the lower flush issued */
#endif
	/* the claim: F = { s : (s < below) XOR (s in x) } */
	uint64_t below;
	struct ti_rset x;
	bool bad;		 /* out of memory: claims frozen until a checkpoint */
	bool dirty;		 /* a write completed since the last snapshot */
	bool changed;		 /* the claim moved since the last flush-point block */
	struct ti_fpw *inflight; /* writes with a sequence number, data not complete */
	struct ti_rset failed;	 /* writes of this epoch that failed */
	struct ti_waitq wait;	 /* waiting for the next cycle */
	unsigned wait_flushes;	 /* guest FLUSHes among them */
	struct ti_waitq cycle;	 /* waiters of the cycle in flight */
	struct ti_waitq ckq;	 /* waiters a checkpoint answers */
	bool busy;		 /* a cycle in flight */
	bool snap_live;		 /* a snapshot waits for its lower flush */
	bool cycle_flush;	 /* this cycle flushes the lower image */
	bool deferred;		 /* the cycle waits for a journal write */
	unsigned fua_data;	 /* FUA writes whose data write is in flight */
	bool snap_dirty;
	uint64_t snap_below, snap_epoch;
	struct ti_rset snap_x;
	struct ti_fpoint *enc;	  /* encoding buffer */
	struct td_req req;	  /* the lower flush */
	uint64_t blocks;	  /* flush-point blocks written */
	struct ti_wait block_w;	  /* parked in the journal: our block is durable */
	struct ti_wait written_w; /* parked on the journal: a journal write completed */
	struct ti_wait ckpt_w;	  /* parked on the checkpoint, always: one ended */
};

int ti_fp_open(struct ti_fp *fp, struct ti_core *c, struct ti_journal *j, struct ti_ckpt *ck);
void ti_fp_free(struct ti_fp *fp);
/* A write got its sequence numbers. */
void ti_fp_track(struct ti_fp *fp, struct ti_fpw *t, uint64_t seq0, uint64_t n);
/* A FUA write's data write is issued / ended without joining the claim
 * (it failed). */
void ti_fp_fua_begin(struct ti_fp *fp);
void ti_fp_fua_end(struct ti_fp *fp);
/* A write's data write completed without error (its tags are applied).
 * true: a FUA write, which waits for a flush point (t->w is woken). */
bool ti_fp_data_done(struct ti_fp *fp, struct ti_fpw *t, bool fua);
/* A write ends: if still tracked, it failed (err) or never wrote data. */
void ti_fp_untrack(struct ti_fp *fp, struct ti_fpw *t, int err);
/* The driver's flush. */
void ti_fp_flush(struct ti_fp *fp, struct td_req *req);

#endif
