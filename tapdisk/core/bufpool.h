/* Aligned I/O buffers, recycled per power-of-two size class so the hot
 * path does not mmap/munmap large buffers per request. Loop thread only. */
#ifndef TD_BUFPOOL_H
#define TD_BUFPOOL_H

#include <stddef.h>

void *td_buf_get(size_t len); /* 4096-aligned, at least len bytes; NULL if out of memory */
void td_buf_put(void *buf, size_t len); /* len: the same len passed to get */
void td_buf_trim(void);			/* drop every cached buffer */

#endif
