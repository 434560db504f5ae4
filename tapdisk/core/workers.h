/* The worker pool: a few threads owned by the core that run CPU-heavy
 * work (XTS, MACs) for drivers. Drivers never start threads; they hand a
 * td_work to the pool and get `done` called back on the loop thread (the
 * pool wakes the loop through an eventfd).
 *
 * `fn` runs on a worker thread with that thread's index (0..n-1) so a
 * driver can keep one non-thread-safe context (an EVP_CIPHER_CTX, say)
 * per worker without locks. Index n is reserved for the loop thread. */
#ifndef TD_WORKERS_H
#define TD_WORKERS_H

#include <stdint.h>

#include "tapdisk/core/loop.h"

struct td_work {
	void (*fn)(struct td_work *w, int worker);
	void (*done)(struct td_work *w); /* on the loop thread */
	struct td_work *next;
};

struct td_workers;

/* nthreads 0 = run fn inline (on the loop thread) and defer done. */
struct td_workers *td_workers_new(struct td_loop *loop, int nthreads);
void td_workers_free(struct td_workers *p);
int td_workers_count(const struct td_workers *p);
void td_workers_submit(struct td_workers *p, struct td_work *w);
/* Runs w on the loop thread instead (fn gets index n, the loop's own
 * context slot; done is deferred like every completion). For jobs so
 * small that handing them to a thread and back costs more than doing
 * them: see td_workers_inline_max(). */
void td_workers_submit_inline(struct td_workers *p, struct td_work *w);
/* Bytes of crypto work below which a request stays on the loop thread. */
uint64_t td_workers_inline_max(void);
/* Default worker count: the online CPUs, at most 8. */
int td_workers_default_count(void);
/* Bytes of crypto work below which a request stays on the loop thread
 * (default 8192; 0 = always hand off). A tuning knob of the process
 * (tapdisk serve --inline-bytes), not of one request. */
void td_workers_set_inline_max(uint64_t bytes);

/* ---- fan-out: one job split into parts over the workers ---------------------
 * A request of n items (blocks) is cut into at most one part per worker
 * (and TD_FANOUT_MAX), each of at least min_items, so one large request
 * keeps every core busy; fn runs for each part on a worker thread, and
 * done once, on the loop thread, after the last part. A job whose whole
 * work is at most td_workers_inline_max() bytes runs as one part on the
 * loop thread (handing it to a thread and back would cost more). */
#define TD_FANOUT_MAX 8

struct td_fanout;

struct td_fanout_part {
	struct td_work w;
	struct td_fanout *f;
	uint64_t first, n; /* the part's items: [first, first + n) of the job */
	/* fn's results, per part (read them in done) */
	int err;
	uint64_t failed, first_failed;
};

struct td_fanout {
	/* set by the caller */
	void (*fn)(struct td_fanout_part *part, int worker);
	void (*done)(struct td_fanout *f);
	void *opaque;
	/* after done: the parts, and the first part error */
	int nparts;
	int err;
	struct td_fanout_part parts[TD_FANOUT_MAX];
	/* private */
	int pending;
};

void td_fanout_run(struct td_workers *p, struct td_fanout *f, uint64_t n, uint64_t min_items,
		   uint64_t item_bytes);

#endif
