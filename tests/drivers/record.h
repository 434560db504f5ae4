/* record: a stacking driver that passes every request down unchanged and
 * logs what the layer above asked of the layer below, for the power-loss
 * simulator (tests/tools/crashsim.c).
 *
 * A program that links libtd creates a log, attaches it, and opens a chain
 * with a record layer in it ("record:aio:/img"); the layer then appends one
 * entry per write, write-zeroes, discard and flush, stamped with numbers of
 * one process-wide event counter at issue and at completion (the program
 * stamps its own events, e.g. client acks, on the same counter through
 * td_record_tick()). Writes keep a copy of their data as it was at issue.
 *
 * The layer can also hold completions back and hand them up in a seeded
 * random order: every request below then looks "in flight" for as long as
 * the program wants, which is what makes reorderings visible, and the
 * whole run becomes a function of the seeds (no timing in it).
 *
 * Without an attached log (a record layer in a tapdisk spec) the layer is a
 * pure pass-through. Loop thread only. */
#ifndef TD_RECORD_H
#define TD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"

struct td_record_op {
	enum td_op op;	    /* TD_OP_WRITE, _FLUSH, _WRITE_ZEROES or _DISCARD */
	unsigned flags;	    /* TD_REQ_FUA, TD_REQ_NO_UNMAP as sent */
	uint64_t off, len;  /* bytes; 0/0 for a flush */
	uint8_t *data;	    /* writes: copy taken at issue (NULL unless keep_data) */
	uint64_t issued;    /* event number when the layer above sent it */
	uint64_t completed; /* event number when the layer above saw it end; 0 = never */
	int err;	    /* its result (valid once completed) */
	bool grow;	    /* a grow of the layer below to `off` bytes (op is TD_OP_FLUSH) */
};

enum td_record_mode {
	TD_RECORD_PASS,	       /* completions go up as they arrive */
	TD_RECORD_HOLD_AUTO,   /* held; whenever nothing is in flight below, one random
				* held completion goes up (works under synchronous I/O) */
	TD_RECORD_HOLD_MANUAL, /* held until td_record_release() */
};

struct rec_child;

struct td_record_log {
	struct td_record_op *ops; /* in issue order */
	size_t n, cap;
	bool keep_data;
	bool incomplete; /* an allocation failed: entries are missing */
	/* private */
	enum td_record_mode mode;
	uint64_t rng;
	struct td_loop *loop;
	unsigned below; /* sent down, not back yet */
	uint64_t submitted;
	struct rec_child **held; /* back from below, not yet handed up */
	unsigned nheld, capheld;
	struct td_defer auto_defer;
};

/* One counter for the whole process: returns the next event number (>= 1). */
uint64_t td_record_tick(void);
/* The last number handed out (0 before the first). */
uint64_t td_record_now(void);

struct td_record_log *td_record_log_new(bool keep_data);
/* Close every layer that logs into it first. */
void td_record_log_free(struct td_record_log *log);

/* Record layers opened from now on log into `log` (NULL: they keep none). */
void td_record_attach(struct td_record_log *log);
/* The log of the record layer opened last, or NULL. */
struct td_record_log *td_record_last_log(void);

/* Switching to TD_RECORD_PASS hands up everything held (from the loop). */
void td_record_set_mode(struct td_record_log *log, enum td_record_mode mode, uint64_t seed);
static inline unsigned td_record_below(const struct td_record_log *log)
{
	return log->below;
}
static inline unsigned td_record_held(const struct td_record_log *log)
{
	return log->nheld;
}
/* Hands up to n held completions, picked at random, to the layer above
 * (delivered from the loop: run it afterwards). Returns how many. */
unsigned td_record_release(struct td_record_log *log, unsigned n);

#endif
