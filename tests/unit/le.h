/* Little-endian stores for the unit tests that build on-disk or on-ring
 * structures byte by byte (the code under test reads them its own way). */
#ifndef TESTS_UNIT_LE_H
#define TESTS_UNIT_LE_H

#include <stdint.h>

static inline void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put16(uint8_t *p, uint16_t v)
{
	put_le(p, v, 2);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put_le(p, v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put_le(p, v, 8);
}

#endif
