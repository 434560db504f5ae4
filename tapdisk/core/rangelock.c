#include <stddef.h>

#include "tapdisk/core/rangelock.h"

static bool conflicts(const struct td_rl_item *a, const struct td_rl_item *b)
{
	return (a->exclusive || b->exclusive) && a->first <= b->last && b->first <= a->last;
}

/* Blocked by a holder, or by a waiter that arrived before it (stop). */
static bool blocked(const struct td_rangelock *rl, const struct td_rl_item *it,
		    const struct td_rl_item *stop)
{
	const struct td_rl_item *h;

	for (h = rl->held; h; h = h->next_held)
		if (conflicts(h, it))
			return true;
	for (h = rl->wait_head; h && h != stop; h = h->next_wait)
		if (conflicts(h, it))
			return true;
	return false;
}

static void grant(struct td_rangelock *rl, struct td_rl_item *it)
{
	it->locked = true;
	it->next_held = rl->held;
	rl->held = it;
}

void td_rl_acquire(struct td_rangelock *rl, struct td_rl_item *it)
{
	it->locked = false;
	it->next_wait = NULL;
	if (blocked(rl, it, NULL)) {
		if (rl->wait_tail)
			rl->wait_tail->next_wait = it;
		else
			rl->wait_head = it;
		rl->wait_tail = it;
		return;
	}
	grant(rl, it);
	it->granted(it);
}

void td_rl_release(struct td_rangelock *rl, struct td_rl_item *it)
{
	struct td_rl_item **pp, *w, *prev = NULL, *ready = NULL, **rt = &ready;

	for (pp = &rl->held; *pp; pp = &(*pp)->next_held) {
		if (*pp == it) {
			*pp = it->next_held;
			break;
		}
	}
	it->locked = false;
	/* grant, in order, every waiter that conflicts with neither a holder
	 * nor an earlier waiter; run them after the scan */
	w = rl->wait_head;
	while (w) {
		struct td_rl_item *next = w->next_wait;

		if (!blocked(rl, w, w)) {
			if (prev)
				prev->next_wait = next;
			else
				rl->wait_head = next;
			if (rl->wait_tail == w)
				rl->wait_tail = prev;
			grant(rl, w);
			w->next_wait = NULL;
			*rt = w;
			rt = &w->next_wait;
		} else {
			prev = w;
		}
		w = next;
	}
	while (ready) {
		w = ready;
		ready = w->next_wait;
		w->next_wait = NULL;
		w->granted(w);
	}
}
