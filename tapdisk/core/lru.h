/* For the image drivers' metadata caches: an intrusive
 * least-recently-used list (an entry embeds a struct td_lru_link and is
 * found back from it with td_lru_entry) and the size of their hash
 * tables. One owner, the loop thread: no locking. */
#ifndef TD_LRU_H
#define TD_LRU_H

#include <stddef.h>
#include <stdint.h>

struct td_lru_link {
	struct td_lru_link *prev, *next;
};

/* head: most recently used; tail: the next to evict. */
struct td_lru {
	struct td_lru_link *head, *tail;
};

/* The entry of type `type` whose `member` is link (NULL for NULL). */
#define td_lru_entry(link, type, member)                                                           \
	((link) ? (type *)(void *)((char *)(link)-offsetof(type, member)) : (type *)NULL)

static inline void td_lru_unlink(struct td_lru *l, struct td_lru_link *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
}

static inline void td_lru_push_head(struct td_lru *l, struct td_lru_link *e)
{
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	else
		l->tail = e;
	l->head = e;
}

/* e (in the list) becomes the most recently used. */
static inline void td_lru_touch(struct td_lru *l, struct td_lru_link *e)
{
	if (l->head != e) {
		td_lru_unlink(l, e);
		td_lru_push_head(l, e);
	}
}

/* Hash buckets for a cache of budget bytes of entries of about
 * entry_bytes: a power of two, 64 to 65536. */
static inline unsigned td_cache_buckets(uint64_t budget, uint64_t entry_bytes)
{
	uint64_t want = budget / entry_bytes;
	unsigned n = 64;

	while (n < want && n < 65536)
		n *= 2;
	return n;
}

#endif
