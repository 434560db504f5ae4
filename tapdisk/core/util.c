#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/util.h"

int td_write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		    pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* pread of len bytes at off, retrying short reads and EINTR: 0, -errno,
 * or at the end of the file: 0 (zeroed: the rest was cleared) or -ENODATA. */
static int read_all(int fd, void *buf, size_t len, uint64_t off, bool zeroed)
{
	size_t done = 0;

	if (zeroed)
		memset(buf, 0, len);
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return zeroed ? 0 : -ENODATA; /* past the end of the file */
		done += (size_t)n;
	}
	return 0;
}

int td_read_zeroed(int fd, void *buf, size_t len, uint64_t off)
{
	return read_all(fd, buf, len, off, true);
}

int td_read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	return read_all(fd, buf, len, off, false);
}

void td_uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

void td_json_str(char *out, size_t len, const char *s)
{
	size_t n = 0;

	if (len < 3) {
		if (len)
			out[0] = 0;
		return;
	}
	out[n++] = '"';
	for (; s && *s && n + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, len - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n++] = '"';
	out[n] = 0;
}

int td_opts_each(const char *opts, int (*fn)(char *tok, void *opaque), void *opaque)
{
	char *copy, *tok, *save = NULL;
	int rc = 0;

	if (!opts)
		return 0;
	copy = strdup(opts);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save))
		rc = fn(tok, opaque);
	free(copy);
	return rc;
}

int td_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case 0:
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		break;
	default:
		return -EINVAL;
	}
	if (*p && p[1])
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

enum iov_op { IOV_ZERO, IOV_OUT, IOV_IN };

static void iov_walk(const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len,
		     enum iov_op op, uint8_t *mem)
{
	for (int i = 0; i < iovcnt && len; i++) {
		uint8_t *p;
		uint64_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		p = (uint8_t *)iov[i].iov_base + off;
		n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		if (op == IOV_ZERO)
			memset(p, 0, (size_t)n);
		else if (op == IOV_OUT)
			memcpy(mem, p, (size_t)n);
		else
			memcpy(p, mem, (size_t)n);
		if (mem)
			mem += n;
		len -= n;
		off = 0;
	}
}

void td_iov_zero(const struct iovec *iov, int iovcnt, uint64_t off, uint64_t len)
{
	iov_walk(iov, iovcnt, off, len, IOV_ZERO, NULL);
}

void td_iov_copy_out(const struct iovec *iov, int iovcnt, uint64_t off, void *dst, uint64_t len)
{
	iov_walk(iov, iovcnt, off, len, IOV_OUT, dst);
}

void td_iov_copy_in(const struct iovec *iov, int iovcnt, uint64_t off, const void *src,
		    uint64_t len)
{
	iov_walk(iov, iovcnt, off, len, IOV_IN, (uint8_t *)src);
}
