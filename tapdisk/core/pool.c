#include <stdlib.h>

#include "tapdisk/core/pool.h"

void td_pool_init(struct td_pool *p, size_t size)
{
	p->size = size < sizeof(void *) ? sizeof(void *) : size;
	p->free = NULL;
	p->allocated = 0;
}

void *td_pool_get(struct td_pool *p)
{
	void *o = p->free;

	if (o) {
		p->free = *(void **)o;
		return o;
	}
	o = malloc(p->size);
	if (o)
		p->allocated++;
	return o;
}

void td_pool_put(struct td_pool *p, void *obj)
{
	*(void **)obj = p->free;
	p->free = obj;
}

void td_pool_drain(struct td_pool *p)
{
	while (p->free) {
		void *o = p->free;

		p->free = *(void **)o;
		free(o);
		p->allocated--;
	}
}
