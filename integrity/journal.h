/* The MAC journal (journal.c): the records of concurrent writes packed
 * into 4 KiB journal blocks written with FUA (group commit), flush-point
 * blocks, the epoch and the sequence numbers. Loop thread only. */
#ifndef TD_INTEGRITY_JOURNAL_H
#define TD_INTEGRITY_JOURNAL_H

#include "integrity/integ.h"

#define TI_JOURNAL_INFLIGHT 4 /* journal writes in flight, at most */

/* One request's records on their way to the journal: a write's tags (one
 * record per block) or a zeroing's range (one zero-range record). */
struct ti_jent {
	uint64_t b0, n, seq0;
	bool zero;
	const uint8_t *tags; /* writes: n * TI_TAG_LEN */
	/* woken when every record is durable; err: a journal write failed
	 * (the records may or may not be durable) or memory ran out */
	struct ti_wait w;
	/* private to journal.c */
	unsigned pending;
	int err;
	bool live; /* journaled this epoch, not released yet */
	struct ti_jent *next;
};

struct ti_jblock;
struct ti_jbatch;

struct ti_journal {
	struct ti_core *c;
	uint64_t epoch;			   /* also the image's generation */
	uint64_t next_seq;		   /* the next write sequence number */
	uint32_t pos;			   /* next journal block index of this epoch */
	struct ti_jblock *open;		   /* being filled */
	struct ti_jblock *q_head, *q_tail; /* sealed, waiting to be written */
	unsigned writing;		   /* journal writes in flight */
	unsigned partial;		   /* see ti_tuning.journal_partial */
	uint64_t records_since;		   /* records of this epoch */
	unsigned live;			   /* entries journaled, not released */
	/* v2: journal blocks release their writes in index order */
	struct ti_jbatch *done; /* completed, waiting for lower indexes */
	uint32_t release;	/* next index to release */
	int fail;		/* a journal write failed this epoch */
	/* closed for a checkpoint: new entries wait for the next epoch */
	bool closed;
	struct ti_jent *park_head, *park_tail; /* waiting for the next epoch */
	struct ti_waitq drained;	       /* closed, and nothing in flight */
	struct ti_waitq written;	       /* a journal write completed */
};

void ti_journal_init(struct ti_journal *j, struct ti_core *c, unsigned partial);
/* Frees what is queued (no I/O). */
void ti_journal_free(struct ti_journal *j);

/* n sequence numbers for a request. */
uint64_t ti_journal_seq(struct ti_journal *j, uint64_t n);
/* Queues e's records (a write's after its MACs are computed); e->w is
 * woken when all of them are durable. With no room in this epoch, or the
 * journal closed, e waits for the next epoch (ti_journal_has_parked). */
void ti_journal_add(struct ti_journal *j, struct ti_jent *e);
/* e's tags are in the table (or it failed): a checkpoint no longer waits
 * for it. Idempotent. */
void ti_journal_release(struct ti_journal *j, struct ti_jent *e);
/* Queues a flush point: in the half-filled records block when it fits,
 * else in a block of its own at the next index (the half-filled records
 * block first); w is woken when it is durable (v2: in journal order).
 * -ENOSPC when the journal has no free block. */
int ti_journal_flush_point(struct ti_journal *j, const struct ti_fpoint *fp, struct ti_wait *w);
/* w is woken after the next journal write completes. */
void ti_journal_written_wait(struct ti_journal *j, struct ti_wait *w);
static inline unsigned ti_journal_writing(const struct ti_journal *j)
{
	return j->writing;
}
static inline bool ti_journal_has_parked(const struct ti_journal *j)
{
	return j->park_head != NULL;
}
/* A checkpoint is due: the journal is three-quarters full, or it holds 64
 * records per journal block (bounds what recovery re-reads after a
 * crash; 65536 with the default journal). */
bool ti_journal_full(const struct ti_journal *j);

/* ---- the checkpoint's side ---- */
/* Closes the epoch: new entries park, the half-filled block goes out.
 * true when nothing of the epoch is in flight; else w is parked until. */
bool ti_journal_close(struct ti_journal *j, struct ti_wait *w);
/* Opens it again: a new, empty epoch when advanced (the checkpoint's
 * superblock is durable), the same one when the checkpoint failed. */
void ti_journal_reopen(struct ti_journal *j, bool advanced);
/* Journals the parked entries again (fails them with -EIO when the layer
 * is broken). */
void ti_journal_resume(struct ti_journal *j);

#endif
