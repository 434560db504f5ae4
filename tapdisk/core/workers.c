#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/workers.h"

struct td_workers {
	struct td_loop *loop;
	int n;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct td_work *q_head, *q_tail;       /* pending jobs */
	struct td_work *done_head, *done_tail; /* finished, for the loop */
	bool stopping;
	int efd;
	struct td_watch *watch;
	/* inline mode */
	struct td_defer inline_defer;
	struct td_work *inline_head, *inline_tail;
};

struct worker_arg {
	struct td_workers *p;
	int idx;
};

int td_workers_default_count(void)
{
	long n;

	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > 8 ? 8 : (int)n;
}

static void push(struct td_work **head, struct td_work **tail, struct td_work *w)
{
	w->next = NULL;
	if (*tail)
		(*tail)->next = w;
	else
		*head = w;
	*tail = w;
}

static void *worker_main(void *opaque)
{
	struct worker_arg *a = opaque;
	struct td_workers *p = a->p;
	int idx = a->idx;

	free(a);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct td_work *w;
		bool wake;

		while (!p->q_head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->q_head)
			break;
		w = p->q_head;
		p->q_head = w->next;
		if (!p->q_head)
			p->q_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		w->fn(w, idx);

		pthread_mutex_lock(&p->lock);
		wake = p->done_head == NULL;
		push(&p->done_head, &p->done_tail, w);
		if (wake) {
			uint64_t one = 1;

			if (write(p->efd, &one, sizeof(one)) < 0) {
				/* eventfd counter cannot overflow here */
			}
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void on_done_event(void *opaque, uint32_t events)
{
	struct td_workers *p = opaque;
	struct td_work *list;
	uint64_t v;

	if (read(p->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		td_err("worker eventfd read: %m");
	pthread_mutex_lock(&p->lock);
	list = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (list) {
		struct td_work *w = list;

		list = w->next;
		w->next = NULL;
		w->done(w);
	}
}

static void run_inline(void *opaque)
{
	struct td_workers *p = opaque;

	while (p->inline_head) {
		struct td_work *w = p->inline_head;

		p->inline_head = w->next;
		if (!p->inline_head)
			p->inline_tail = NULL;
		w->fn(w, p->n);
		w->done(w);
	}
}

struct td_workers *td_workers_new(struct td_loop *loop, int nthreads)
{
	struct td_workers *p = calloc(1, sizeof(*p));
	int i;

	if (!p)
		return NULL;
	p->loop = loop;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	td_defer_init(&p->inline_defer, run_inline, p);
	p->efd = -1;
	if (nthreads <= 0)
		return p;
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0)
		goto fail;
	p->watch = td_loop_add_fd(loop, p->efd, EPOLLIN, on_done_event, p);
	if (!p->watch)
		goto fail;
	p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
	if (!p->threads)
		goto fail;
	for (i = 0; i < nthreads; i++) {
		struct worker_arg *a = malloc(sizeof(*a));

		if (!a)
			goto fail;
		a->p = p;
		a->idx = i;
		if (pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
			free(a);
			goto fail;
		}
		p->n++;
	}
	return p;
fail:
	td_workers_free(p);
	return NULL;
}

void td_workers_free(struct td_workers *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	if (p->watch)
		td_loop_del_fd(p->loop, p->watch);
	if (p->efd >= 0)
		close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

int td_workers_count(const struct td_workers *p)
{
	return p->n;
}

void td_workers_submit_inline(struct td_workers *p, struct td_work *w)
{
	push(&p->inline_head, &p->inline_tail, w);
	td_loop_defer(p->loop, &p->inline_defer);
}

static uint64_t inline_max = 8192;

uint64_t td_workers_inline_max(void)
{
	return inline_max;
}

void td_workers_set_inline_max(uint64_t bytes)
{
	inline_max = bytes;
}

void td_workers_submit(struct td_workers *p, struct td_work *w)
{
	if (p->n == 0) {
		push(&p->inline_head, &p->inline_tail, w);
		td_loop_defer(p->loop, &p->inline_defer);
		return;
	}
	pthread_mutex_lock(&p->lock);
	push(&p->q_head, &p->q_tail, w);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* ---- fan-out ------------------------------------------------------------------ */

static void fanout_part_fn(struct td_work *w, int worker)
{
	struct td_fanout_part *part = (struct td_fanout_part *)w;

	part->f->fn(part, worker);
}

static void fanout_part_done(struct td_work *w)
{
	struct td_fanout_part *part = (struct td_fanout_part *)w;
	struct td_fanout *f = part->f;

	if (part->err && !f->err)
		f->err = part->err;
	if (--f->pending == 0)
		f->done(f);
}

void td_fanout_run(struct td_workers *p, struct td_fanout *f, uint64_t n, uint64_t min_items,
		   uint64_t item_bytes)
{
	int parts = td_workers_count(p), i;
	uint64_t per, at = 0;

	if (parts > TD_FANOUT_MAX)
		parts = TD_FANOUT_MAX;
	if (min_items && (uint64_t)parts > n / min_items)
		parts = (int)(n / min_items);
	if (parts < 1)
		parts = 1;
	per = (n + (uint64_t)parts - 1) / (uint64_t)parts;
	f->nparts = parts;
	f->pending = parts;
	f->err = 0;
	for (i = 0; i < parts; i++) {
		struct td_fanout_part *part = &f->parts[i];

		part->f = f;
		part->first = at;
		part->n = n - at < per ? n - at : per;
		part->err = 0;
		part->failed = 0;
		part->first_failed = 0;
		part->w.fn = fanout_part_fn;
		part->w.done = fanout_part_done;
		at += part->n;
	}
	if (parts == 1 && n * item_bytes <= td_workers_inline_max()) {
		td_workers_submit_inline(p, &f->parts[0].w);
		return;
	}
	for (i = 0; i < parts; i++)
		td_workers_submit(p, &f->parts[i].w);
}
