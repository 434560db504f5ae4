#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/loop.h"

struct td_watch {
	int fd;
	td_fd_cb cb;
	void *opaque;
	bool dead;
	struct td_watch *next_dead;
};

struct td_loop {
	int epfd;
	bool stop;
	struct td_timer *timers; /* sorted by deadline */
	struct td_defer *defer_head, *defer_tail;
	struct td_watch *dead; /* freed after the current dispatch round */
	unsigned depth;	       /* inside td_loop_run_once: a callback may be running */
	struct td_task *tasks; /* for the top of td_loop_run */
	struct td_poller *pollers;
	uint64_t poll_ns;  /* the most one poll before a wait may last (0: never) */
	uint64_t poll_cur; /* the budget now, adapted between poll_ns/64 and poll_ns */
	bool poll_soon;	   /* td_loop_poll_soon since the last wait */
	uint64_t poll_hits, polls;
};

/* The last clock reading of this thread, and whether the loop has slept
 * since (td_now_turn_ns). */
static _Thread_local uint64_t clock_last;
static _Thread_local bool clock_stale = true;

uint64_t td_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	clock_last = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	clock_stale = false;
	return clock_last;
}

uint64_t td_now_turn_ns(void)
{
	return clock_stale ? td_now_ns() : clock_last;
}

struct td_loop *td_loop_new(void)
{
	struct td_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return NULL;
	}
	return loop;
}

static void reap_dead(struct td_loop *loop)
{
	while (loop->dead) {
		struct td_watch *w = loop->dead;

		loop->dead = w->next_dead;
		free(w);
	}
}

void td_loop_free(struct td_loop *loop)
{
	if (!loop)
		return;
	reap_dead(loop);
	close(loop->epfd);
	free(loop);
}

struct td_watch *td_loop_add_fd(struct td_loop *loop, int fd, uint32_t events, td_fd_cb cb,
				void *opaque)
{
	struct epoll_event ev = {.events = events};
	struct td_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->fd = fd;
	w->cb = cb;
	w->opaque = opaque;
	ev.data.ptr = w;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(w);
		return NULL;
	}
	return w;
}

int td_loop_mod_fd(struct td_loop *loop, struct td_watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void td_loop_del_fd(struct td_loop *loop, struct td_watch *w)
{
	if (!w || w->dead)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->dead = true;
	w->next_dead = loop->dead;
	loop->dead = w;
}

void td_timer_init(struct td_timer *t, td_call_cb cb, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->cb = cb;
	t->opaque = opaque;
}

void td_loop_timer_cancel(struct td_loop *loop, struct td_timer *t)
{
	struct td_timer **pp;

	if (!t->armed)
		return;
	for (pp = &loop->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
	t->next = NULL;
}

void td_loop_timer_arm(struct td_loop *loop, struct td_timer *t, uint64_t delay_ns)
{
	struct td_timer **pp;

	td_loop_timer_cancel(loop, t);
	t->deadline_ns = td_now_ns() + delay_ns;
	for (pp = &loop->timers; *pp && (*pp)->deadline_ns <= t->deadline_ns; pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

void td_defer_init(struct td_defer *d, td_call_cb cb, void *opaque)
{
	memset(d, 0, sizeof(*d));
	d->cb = cb;
	d->opaque = opaque;
}

void td_loop_defer(struct td_loop *loop, struct td_defer *d)
{
	if (d->queued)
		return;
	d->queued = true;
	d->next = NULL;
	if (loop->defer_tail)
		loop->defer_tail->next = d;
	else
		loop->defer_head = d;
	loop->defer_tail = d;
}

void td_loop_defer_cancel(struct td_loop *loop, struct td_defer *d)
{
	struct td_defer *prev = NULL, *it;

	if (!d->queued)
		return;
	for (it = loop->defer_head; it && it != d; it = it->next)
		prev = it;
	if (it) {
		if (prev)
			prev->next = d->next;
		else
			loop->defer_head = d->next;
		if (loop->defer_tail == d)
			loop->defer_tail = prev;
	}
	d->queued = false;
	d->next = NULL;
}

static int run_deferred(struct td_loop *loop)
{
	int n = 0;

	/* Calls queued while running are run in the same round, FIFO. */
	while (loop->defer_head) {
		struct td_defer *d = loop->defer_head;

		loop->defer_head = d->next;
		if (!loop->defer_head)
			loop->defer_tail = NULL;
		d->queued = false;
		d->next = NULL;
		d->cb(d->opaque);
		n++;
	}
	return n;
}

static void run_timers(struct td_loop *loop)
{
	uint64_t now;

	if (!loop->timers)
		return; /* no clock reading: one is a system call in a Xen PV dom0 */
	now = td_now_ns();
	while (loop->timers && loop->timers->deadline_ns <= now) {
		struct td_timer *t = loop->timers;

		loop->timers = t->next;
		t->next = NULL;
		t->armed = false;
		t->cb(t->opaque);
	}
}

void td_poller_init(struct td_poller *p, bool (*ready)(void *), void (*run)(void *), void *opaque)
{
	memset(p, 0, sizeof(*p));
	p->ready = ready;
	p->run = run;
	p->opaque = opaque;
}

void td_loop_add_poller(struct td_loop *loop, struct td_poller *p)
{
	if (p->added)
		return;
	p->next = loop->pollers;
	loop->pollers = p;
	p->added = true;
}

void td_loop_del_poller(struct td_loop *loop, struct td_poller *p)
{
	struct td_poller **pp;

	if (!p->added)
		return;
	for (pp = &loop->pollers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	p->added = false;
	p->next = NULL;
}

void td_loop_set_poll_ns(struct td_loop *loop, uint64_t ns)
{
	loop->poll_ns = ns;
	loop->poll_cur = ns;
}

void td_loop_poll_soon(struct td_loop *loop)
{
	loop->poll_soon = true;
}

void td_loop_poll_stats(const struct td_loop *loop, uint64_t *hits, uint64_t *polls,
			uint64_t *budget_ns)
{
	*hits = loop->poll_hits;
	*polls = loop->polls;
	*budget_ns = loop->poll_cur;
}

/* After a poll that found nothing, how long the wait that followed slept
 * adapts the budget (as QEMU's poll-max-ns does): woken within the most a
 * poll may last, a longer poll would have found the work, so the budget
 * doubles; asleep longer (a quiet guest), polling was waste, so it halves,
 * down to a 64th of the most. A poll that finds work keeps its budget. */
static void poll_adapt(struct td_loop *loop, uint64_t slept_ns)
{
	if (slept_ns < loop->poll_ns) {
		loop->poll_cur =
		    loop->poll_cur * 2 < loop->poll_ns ? loop->poll_cur * 2 : loop->poll_ns;
	} else {
		loop->poll_cur /= 2;
		if (loop->poll_cur < loop->poll_ns / 64)
			loop->poll_cur = loop->poll_ns / 64;
	}
	if (!loop->poll_cur)
		loop->poll_cur = 1;
}

/* Calls the pollers' ready() until one is ready (its run() is called:
 * true) or the budget (at most the wait's own timeout) is spent; *end is
 * then the clock when it gave up. The clock is read once per 64 rounds: a
 * reading can be a system call. */
static bool poll_before_wait(struct td_loop *loop, int timeout_ms, uint64_t *end)
{
	uint64_t budget = loop->poll_cur, deadline;

	if (timeout_ms > 0 && budget > (uint64_t)timeout_ms * 1000000u)
		budget = (uint64_t)timeout_ms * 1000000u;
	loop->polls++;
	deadline = td_now_ns() + budget;
	for (unsigned i = 1;; i++) {
		for (struct td_poller *p = loop->pollers; p; p = p->next) {
			if (p->ready(p->opaque)) {
				loop->poll_hits++;
				p->run(p->opaque);
				return true;
			}
		}
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		if (i % 64 == 0 && (*end = td_now_ns()) >= deadline)
			return false;
	}
}

int td_loop_run_once(struct td_loop *loop, int timeout_ms)
{
	struct epoll_event evs[64];
	uint64_t poll_end = 0;
	bool missed = false;
	int n, i;

	if (loop->depth) {
		/* a callback whose state would change under it: refuse */
		td_err("internal error: the event loop was run from inside one of its callbacks");
		return -EDEADLK;
	}
	loop->depth++;

	/* a deferred call may have finished what the caller waits for: do not
	 * sleep after running any */
	if (run_deferred(loop) || loop->defer_head)
		timeout_ms = 0;
	if (loop->timers) {
		uint64_t now = td_now_ns(), dl = loop->timers->deadline_ns;
		int tmo = dl <= now ? 0 : (int)((dl - now + 999999) / 1000000);

		if (timeout_ms < 0 || tmo < timeout_ms)
			timeout_ms = tmo;
	}
	/* a wait that will sleep: poll first when asked (a turn with work
	 * queued does not sleep and keeps the request for the next) */
	if (timeout_ms != 0 && loop->poll_soon) {
		loop->poll_soon = false;
		if (loop->poll_ns && loop->pollers) {
			if (poll_before_wait(loop, timeout_ms, &poll_end)) {
				run_deferred(loop);
				timeout_ms = 0; /* the descriptors are still looked at */
			} else {
				missed = true;
			}
		}
	}
	n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
	clock_stale = true; /* time passed: the next td_now_turn_ns reads the clock */
	if (missed)	    /* this reading is the turn's: td_now_turn_ns reuses it */
		poll_adapt(loop, td_now_ns() - poll_end);
	if (n < 0) {
		loop->depth--;
		if (errno == EINTR)
			return 0;
		return -errno;
	}
	for (i = 0; i < n; i++) {
		struct td_watch *w = evs[i].data.ptr;

		if (!w->dead)
			w->cb(w->opaque, evs[i].events);
		run_deferred(loop);
	}
	run_timers(loop);
	run_deferred(loop);
	reap_dead(loop);
	loop->depth--;
	return 0;
}

void td_task_init(struct td_task *t, td_call_cb cb, void *opaque)
{
	t->cb = cb;
	t->opaque = opaque;
	t->next = NULL;
	t->queued = false;
}

void td_loop_task(struct td_loop *loop, struct td_task *t)
{
	struct td_task **pp = &loop->tasks;

	if (t->queued)
		return;
	t->queued = true;
	t->next = NULL;
	while (*pp)
		pp = &(*pp)->next;
	*pp = t;
}

/* Tasks run here, at the top: no callback is on the stack below them. */
static void run_tasks(struct td_loop *loop)
{
	while (loop->tasks) {
		struct td_task *t = loop->tasks;

		loop->tasks = t->next;
		t->next = NULL;
		t->queued = false;
		t->cb(t->opaque);
	}
}

int td_loop_run(struct td_loop *loop)
{
	int rc = 0;

	loop->stop = false;
	while (!loop->stop && rc == 0) {
		rc = td_loop_run_once(loop, loop->tasks ? 0 : -1);
		run_tasks(loop);
	}
	return rc;
}

void td_loop_stop(struct td_loop *loop)
{
	loop->stop = true;
}

bool td_loop_stopped(struct td_loop *loop)
{
	return loop->stop;
}
