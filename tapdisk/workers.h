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

#include "tapdisk/loop.h"

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
/* Bytes of crypto work below which a request stays on the loop thread:
 * TD_INLINE_BYTES, default 8192 (0 = always hand off). */
uint64_t td_workers_inline_max(void);
/* Default worker count: TD_WORKERS env or online CPUs (at most 8). */
int td_workers_default_count(void);

#endif
