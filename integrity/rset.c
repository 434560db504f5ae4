/* Sets of sequence numbers (fpoint.h): sorted, disjoint, non-touching
 * ranges, the shape a flush point's ranges have on disk. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/fpoint.h"

static int reserve(struct ti_rset *s, size_t n)
{
	size_t cap = s->cap ? s->cap : 16;
	struct ti_frange *r;

	if (n <= s->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	r = realloc(s->r, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	s->r = r;
	s->cap = cap;
	return 0;
}

void ti_rset_free(struct ti_rset *s)
{
	free(s->r);
	memset(s, 0, sizeof(*s));
}

/* Merges ranges that overlap or touch [a, a + c). */
int ti_rset_add(struct ti_rset *s, uint64_t a, uint64_t c)
{
	uint64_t e = a + c;
	size_t i, j;

	for (i = 0; i < s->n && s->r[i].start + s->r[i].count < a; i++)
		;
	for (j = i; j < s->n && s->r[j].start <= e; j++)
		;
	if (i < j) {
		uint64_t ns = s->r[i].start < a ? s->r[i].start : a;
		uint64_t ne = s->r[j - 1].start + s->r[j - 1].count;

		if (ne < e)
			ne = e;
		s->r[i].start = ns;
		s->r[i].count = ne - ns;
		memmove(s->r + i + 1, s->r + j, (s->n - j) * sizeof(*s->r));
		s->n -= j - i - 1;
		return 0;
	}
	if (reserve(s, s->n + 1) < 0)
		return -ENOMEM;
	memmove(s->r + i + 1, s->r + i, (s->n - i) * sizeof(*s->r));
	s->r[i].start = a;
	s->r[i].count = c;
	s->n++;
	return 0;
}

int ti_rset_remove(struct ti_rset *s, uint64_t a, uint64_t c)
{
	uint64_t e = a + c;
	size_t i = 0;

	while (i < s->n) {
		uint64_t rs = s->r[i].start, re = rs + s->r[i].count;

		if (re <= a) {
			i++;
			continue;
		}
		if (rs >= e)
			break;
		if (rs < a && re > e) { /* split in two */
			if (reserve(s, s->n + 1) < 0)
				return -ENOMEM;
			memmove(s->r + i + 1, s->r + i, (s->n - i) * sizeof(*s->r));
			s->r[i].count = a - rs;
			s->r[i + 1].start = e;
			s->r[i + 1].count = re - e;
			s->n++;
			return 0;
		}
		if (rs < a) {
			s->r[i].count = a - rs;
			i++;
		} else if (re > e) {
			s->r[i].start = e;
			s->r[i].count = re - e;
			return 0;
		} else {
			memmove(s->r + i, s->r + i + 1, (s->n - i - 1) * sizeof(*s->r));
			s->n--;
		}
	}
	return 0;
}
