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
};

uint64_t td_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
	uint64_t now = td_now_ns();

	while (loop->timers && loop->timers->deadline_ns <= now) {
		struct td_timer *t = loop->timers;

		loop->timers = t->next;
		t->next = NULL;
		t->armed = false;
		t->cb(t->opaque);
	}
}

int td_loop_run_once(struct td_loop *loop, int timeout_ms)
{
	struct epoll_event evs[64];
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
	n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
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
