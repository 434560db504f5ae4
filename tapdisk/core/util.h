/* Small helpers every layer uses: arithmetic, scatter-gather lists, whole
 * writes, UUID and JSON string text. One copy each, here. */
#ifndef TD_UTIL_H
#define TD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* a / b rounded up (b > 0). */
/* Whether the n bytes at p are all zero (zero-block detection on the data
 * path: early exit, word at a time on aligned buffers; not for secrets). */
static inline bool td_all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i = 0;

	if (((uintptr_t)b & 7) == 0)
		for (; i + 8 <= n; i += 8)
			if (*(const uint64_t *)(const void *)(b + i))
				return false;
	for (; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static inline uint64_t td_div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* Address of byte off of a scatter-gather list, NULL past its end. The
 * chain's segments are multiples of the block size, so a block never
 * straddles two. */
static inline uint8_t *td_iov_at(const struct iovec *iov, int iovcnt, uint64_t off)
{
	for (int i = 0; i < iovcnt; i++) {
		if (off < iov[i].iov_len)
			return (uint8_t *)iov[i].iov_base + off;
		off -= iov[i].iov_len;
	}
	return NULL;
}

/* Bytes [off, off + len) of a scatter-gather list (any segment sizes):
 * zeroed, copied out to dst, or filled from src. Past the list's end
 * nothing happens. */
void td_iov_zero(const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len);
void td_iov_copy_out(const struct iovec *iov, int iovcnt, uint64_t off, void *dst, uint64_t len);
void td_iov_copy_in(const struct iovec *iov, int iovcnt, uint64_t off, const void *src,
		    uint64_t len);

/* pwrite of all len bytes at off (retrying short writes and EINTR): 0 or
 * -errno. For open-time and tool code: it blocks. */
int td_write_all(int fd, const void *buf, size_t len, uint64_t off);
/* pread of len bytes at off into buf, retrying short reads and EINTR; what
 * lies past the end of the file reads as zeros: 0 or -errno. Blocks. */
int td_read_zeroed(int fd, void *buf, size_t len, uint64_t off);
/* The same, but a file that ends before len bytes is -ENODATA. */
int td_read_exact(int fd, void *buf, size_t len, uint64_t off);

/* A spec's driver options ("a=1,b,c=2"): fn(tok, opaque) for each
 * comma-separated token, on a copy (fn may cut tok up), in order. Stops at
 * the first non-zero return and returns it; 0 for NULL opts; -ENOMEM. */
int td_opts_each(const char *opts, int (*fn)(char *tok, void *opaque), void *opaque);

/* The canonical text of a UUID: 36 characters and a NUL. */
void td_uuid_str(const uint8_t uuid[16], char out[37]);

/* s as a JSON string literal, quotes included, escaped; cut short (still
 * quoted) when out is too small. */
void td_json_str(char *out, size_t len, const char *s);

/* A byte count: decimal digits and an optional suffix K, M, G or T (either
 * case, powers of 1024), e.g. "4096", "64K", "1G". 0, or -EINVAL for
 * anything else (empty, signs, spaces, other suffixes) and -ERANGE when it
 * does not fit 64 bits. */
int td_parse_size(const char *s, uint64_t *out);

#endif
