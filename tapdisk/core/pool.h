/* Free lists of fixed-size objects (a driver's per-request state), so the
 * I/O path does not call malloc per request. One owner, the loop thread:
 * no locking. Objects are not cleared between uses. */
#ifndef TD_POOL_H
#define TD_POOL_H

#include <stddef.h>

struct td_pool {
	size_t size;
	void *free; /* the first bytes of a free object link the list */
	unsigned allocated;
};

/* size: the object's size (at least a pointer's). */
void td_pool_init(struct td_pool *p, size_t size);
/* A free object, or a new one; NULL when out of memory. */
void *td_pool_get(struct td_pool *p);
void td_pool_put(struct td_pool *p, void *obj);
/* Frees the free objects (those still out belong to their holders). */
void td_pool_drain(struct td_pool *p);

#endif
