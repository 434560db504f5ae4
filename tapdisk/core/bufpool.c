#include <stdint.h>
#include <stdlib.h>

#include "tapdisk/core/bufpool.h"

#define MIN_SHIFT 12
#define MAX_SHIFT 26 /* 64 MiB */
#define NCLASS (MAX_SHIFT - MIN_SHIFT + 1)

struct free_buf {
	struct free_buf *next;
};

static struct free_buf *pool[NCLASS];
static unsigned pool_count[NCLASS];

static int class_of(size_t len)
{
	int c = 0;

	while (c < NCLASS && ((size_t)1 << (MIN_SHIFT + c)) < len)
		c++;
	return c;
}

/* Bounded cache: many small buffers, a few large ones (RSS budget). */
static unsigned class_cap(int c)
{
	size_t sz = (size_t)1 << (MIN_SHIFT + c);

	if (sz <= (64u << 10))
		return 64;
	if (sz <= (1u << 20))
		return 24;
	return 2;
}

void *td_buf_get(size_t len)
{
	int c = class_of(len);
	void *p = NULL;

	if (c >= NCLASS) {
		if (posix_memalign(&p, 4096, len) != 0)
			return NULL;
		return p;
	}
	if (pool[c]) {
		struct free_buf *f = pool[c];

		pool[c] = f->next;
		pool_count[c]--;
		return f;
	}
	if (posix_memalign(&p, 4096, (size_t)1 << (MIN_SHIFT + c)) != 0)
		return NULL;
	return p;
}

void td_buf_put(void *buf, size_t len)
{
	int c = class_of(len);
	struct free_buf *f = buf;

	if (!buf)
		return;
	if (c >= NCLASS || pool_count[c] >= class_cap(c)) {
		free(buf);
		return;
	}
	f->next = pool[c];
	pool[c] = f;
	pool_count[c]++;
}

void td_buf_trim(void)
{
	int c;

	for (c = 0; c < NCLASS; c++) {
		while (pool[c]) {
			struct free_buf *f = pool[c];

			pool[c] = f->next;
			free(f);
		}
		pool_count[c] = 0;
	}
}
