/* The event loop: one per tapdisk process, owns all I/O.
 *
 * epoll for file descriptors, a sorted list of one-shot timers, and a
 * deferred-call queue so that code which completes a request "immediately"
 * never calls back into its caller's stack (every completion is delivered
 * from the loop). Not thread-safe: only the loop thread calls these, except
 * td_loop_wake-style eventfds owned by other modules (see workers.h). */
#ifndef TD_LOOP_H
#define TD_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct td_loop;

typedef void (*td_fd_cb)(void *opaque, uint32_t events);
typedef void (*td_call_cb)(void *opaque);

struct td_watch; /* opaque fd registration */

struct td_timer {
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	td_call_cb cb;
	void *opaque;
	struct td_timer *next;
	bool armed;
};

struct td_defer {
	td_call_cb cb;
	void *opaque;
	struct td_defer *next;
	bool queued;
};

struct td_loop *td_loop_new(void);
void td_loop_free(struct td_loop *loop);

/* Watch fd for `events` (EPOLLIN/EPOLLOUT...). Returns NULL on failure. */
struct td_watch *td_loop_add_fd(struct td_loop *loop, int fd, uint32_t events, td_fd_cb cb,
				void *opaque);
int td_loop_mod_fd(struct td_loop *loop, struct td_watch *w, uint32_t events);
/* Safe to call from inside the watch's own callback. */
void td_loop_del_fd(struct td_loop *loop, struct td_watch *w);

/* CLOCK_MONOTONIC in ns. Where the vDSO cannot serve it (a Xen PV dom0
 * whose TSC Xen does not call stable) each reading is a system call, so:
 * td_now_ns reads the clock; td_now_turn_ns returns the last reading of
 * this thread unless the loop has waited for events since, and reads the
 * clock then. A time taken with it is at most one loop turn early. */
uint64_t td_now_ns(void);
uint64_t td_now_turn_ns(void);
void td_timer_init(struct td_timer *t, td_call_cb cb, void *opaque);
void td_loop_timer_arm(struct td_loop *loop, struct td_timer *t, uint64_t delay_ns);
void td_loop_timer_cancel(struct td_loop *loop, struct td_timer *t);

/* Polling before sleeping, for work that arrives in shared memory (a Xen
 * guest's ring) rather than on a descriptor. Waking a sleeping process
 * costs far more than checking a word of memory, above all in a Xen PV
 * dom0 under load, so after td_loop_poll_soon() the loop's next wait
 * first calls each poller's ready() (a look at memory, no system call)
 * for up to the loop's poll budget; the first poller that is ready has
 * run() called, and the loop does not sleep that turn. Without a call to
 * td_loop_poll_soon since the last wait, or with a budget of 0, the loop
 * never polls: an idle tapdisk sleeps at once. The budget is CPU time
 * spent on the chance of a request: it starts at the most set with
 * td_loop_set_poll_ns and adapts to how soon work comes after a poll that
 * found none (loop.c, poll_adapt); docs/XEN.md says how it is set. */
struct td_poller {
	bool (*ready)(void *opaque);
	void (*run)(void *opaque);
	void *opaque;
	struct td_poller *next;
	bool added;
};
void td_poller_init(struct td_poller *p, bool (*ready)(void *), void (*run)(void *), void *opaque);
void td_loop_add_poller(struct td_loop *loop, struct td_poller *p);
/* Safe from inside the poller's own run(). */
void td_loop_del_poller(struct td_loop *loop, struct td_poller *p);
void td_loop_set_poll_ns(struct td_loop *loop, uint64_t ns);
void td_loop_poll_soon(struct td_loop *loop);
/* How many polls found work, how many there were, and the budget now. */
void td_loop_poll_stats(const struct td_loop *loop, uint64_t *hits, uint64_t *polls,
			uint64_t *budget_ns);

/* Run cb(opaque) from the loop soon, after the current callback returns. */
void td_defer_init(struct td_defer *d, td_call_cb cb, void *opaque);
void td_loop_defer(struct td_loop *loop, struct td_defer *d);
/* Takes a queued call off the queue (a no-op when it is not queued): an
 * owner that frees the memory of its td_defer cancels it first. */
void td_loop_defer_cancel(struct td_loop *loop, struct td_defer *d);

/* Work that must not run inside a callback: work that runs the loop
 * itself (a chain opened with synchronous I/O at unpause or snapshot).
 * td_loop_run calls it between two rounds, at the top, where no callback
 * is on the stack. */
struct td_task {
	td_call_cb cb;
	void *opaque;
	struct td_task *next;
	bool queued;
};
void td_task_init(struct td_task *t, td_call_cb cb, void *opaque);
void td_loop_task(struct td_loop *loop, struct td_task *t);

/* Run until td_loop_stop(); returns 0 or negative errno. */
int td_loop_run(struct td_loop *loop);
/* One iteration: wait at most timeout_ms (-1 forever) and dispatch. Never
 * from inside a callback of this loop: it then refuses with -EDEADLK (a
 * callback's half-changed state must not see other callbacks run). Open
 * paths, tools and tasks run it at the top. */
int td_loop_run_once(struct td_loop *loop, int timeout_ms);
void td_loop_stop(struct td_loop *loop);
bool td_loop_stopped(struct td_loop *loop);

#endif
