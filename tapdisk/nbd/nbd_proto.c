#include <errno.h>
#include <string.h>

#include "tapdisk/nbd/nbd_proto.h"

uint16_t nbd_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t nbd_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t nbd_get64(const uint8_t *p)
{
	return ((uint64_t)nbd_get32(p) << 32) | nbd_get32(p + 4);
}

void nbd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void nbd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void nbd_put64(uint8_t *p, uint64_t v)
{
	nbd_put32(p, (uint32_t)(v >> 32));
	nbd_put32(p + 4, (uint32_t)v);
}

void nbd_encode_greeting(uint8_t out[NBD_GREETING_LEN])
{
	nbd_put64(out, NBD_MAGIC);
	nbd_put64(out + 8, NBD_IHAVEOPT);
	nbd_put16(out + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

/* The spec makes the server drop clients that set a flag it did not
 * offer; a client without FIXED_NEWSTYLE is still served (we only ever
 * speak fixed newstyle, and EXPORT_NAME works the same in both). */
int nbd_parse_client_flags(const uint8_t in[NBD_CLIENT_FLAGS_LEN], bool *no_zeroes)
{
	uint32_t f = nbd_get32(in);

	if (f & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return -EPROTO;
	*no_zeroes = (f & NBD_FLAG_C_NO_ZEROES) != 0;
	return 0;
}

int nbd_parse_opt_hdr(const uint8_t in[NBD_OPT_HDR_LEN], struct nbd_opt_hdr *out)
{
	if (nbd_get64(in) != NBD_IHAVEOPT)
		return -EPROTO;
	out->option = nbd_get32(in + 8);
	out->length = nbd_get32(in + 12);
	return 0;
}

int nbd_check_name(const uint8_t *name, size_t len)
{
	if (len > NBD_MAX_STRING)
		return -ENAMETOOLONG;
	if (len && memchr(name, 0, len))
		return -EINVAL;
	return 0;
}

/* Layout: 32-bit name length, name, 16-bit count N, N 16-bit info types.
 * Every length is checked against the bytes actually present, and the
 * total must match exactly: trailing garbage is as invalid as a short
 * payload. Unknown info types are ignored, as the spec asks. */
int nbd_parse_info_opt(const uint8_t *data, size_t len, struct nbd_info_opt *out)
{
	size_t rest;
	uint32_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len < 6)
		return -EINVAL;
	out->name_len = nbd_get32(data);
	if (out->name_len > len - 6)
		return -EINVAL;
	out->name = data + 4;
	rest = len - 6 - out->name_len;
	out->n_info = nbd_get16(data + 4 + out->name_len);
	if (rest != (size_t)out->n_info * 2)
		return -EINVAL;
	rc = nbd_check_name(out->name, out->name_len);
	if (rc < 0)
		return rc;
	for (i = 0; i < out->n_info; i++) {
		switch (nbd_get16(data + 6 + out->name_len + 2 * i)) {
		case NBD_INFO_NAME:
			out->want_name = true;
			break;
		case NBD_INFO_DESCRIPTION:
			out->want_description = true;
			break;
		case NBD_INFO_BLOCK_SIZE:
			out->want_block_size = true;
			break;
		default:
			break;
		}
	}
	return 0;
}

bool nbd_name_matches(const uint8_t *name, size_t len, const char *export_name)
{
	if (len == 0)
		return true;
	if (!export_name)
		return false;
	return strlen(export_name) == len && memcmp(name, export_name, len) == 0;
}

uint32_t nbd_opt_err_from_errno(int err)
{
	switch (err) {
	case -ENAMETOOLONG:
	case -E2BIG:
		return NBD_REP_ERR_TOO_BIG;
	case -ENOENT:
		return NBD_REP_ERR_UNKNOWN;
	case -ESHUTDOWN:
		return NBD_REP_ERR_SHUTDOWN;
	default:
		return NBD_REP_ERR_INVALID;
	}
}

size_t nbd_encode_opt_reply(uint8_t *out, size_t cap, uint32_t option, uint32_t type, uint32_t len)
{
	if (cap < NBD_OPT_REPLY_HDR_LEN)
		return 0;
	nbd_put64(out, NBD_REP_MAGIC);
	nbd_put32(out + 8, option);
	nbd_put32(out + 12, type);
	nbd_put32(out + 16, len);
	return NBD_OPT_REPLY_HDR_LEN;
}

size_t nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t option, const uint8_t *name,
			     size_t len)
{
	size_t total = NBD_OPT_REPLY_HDR_LEN + 4 + len;

	if (len > NBD_MAX_STRING || cap < total)
		return 0;
	nbd_encode_opt_reply(out, cap, option, NBD_REP_SERVER, (uint32_t)(4 + len));
	nbd_put32(out + NBD_OPT_REPLY_HDR_LEN, (uint32_t)len);
	if (len)
		memcpy(out + NBD_OPT_REPLY_HDR_LEN + 4, name, len);
	return total;
}

size_t nbd_encode_info_export(uint8_t *out, size_t cap, uint32_t option, uint64_t size,
			      uint16_t tflags)
{
	uint8_t *p = out + NBD_OPT_REPLY_HDR_LEN;

	if (cap < NBD_INFO_EXPORT_REPLY_LEN)
		return 0;
	nbd_encode_opt_reply(out, cap, option, NBD_REP_INFO, 12);
	nbd_put16(p, NBD_INFO_EXPORT);
	nbd_put64(p + 2, size);
	nbd_put16(p + 10, tflags);
	return NBD_INFO_EXPORT_REPLY_LEN;
}

size_t nbd_encode_info_block_size(uint8_t *out, size_t cap, uint32_t option, uint32_t min,
				  uint32_t pref, uint32_t max)
{
	uint8_t *p = out + NBD_OPT_REPLY_HDR_LEN;

	if (cap < NBD_INFO_BLOCK_SIZE_REPLY_LEN)
		return 0;
	nbd_encode_opt_reply(out, cap, option, NBD_REP_INFO, 14);
	nbd_put16(p, NBD_INFO_BLOCK_SIZE);
	nbd_put32(p + 2, min);
	nbd_put32(p + 6, pref);
	nbd_put32(p + 10, max);
	return NBD_INFO_BLOCK_SIZE_REPLY_LEN;
}

size_t nbd_encode_info_string(uint8_t *out, size_t cap, uint32_t option, uint16_t info,
			      const uint8_t *s, size_t len)
{
	size_t total = NBD_OPT_REPLY_HDR_LEN + 2 + len;

	if (len > NBD_MAX_STRING || cap < total)
		return 0;
	nbd_encode_opt_reply(out, cap, option, NBD_REP_INFO, (uint32_t)(2 + len));
	nbd_put16(out + NBD_OPT_REPLY_HDR_LEN, info);
	if (len)
		memcpy(out + NBD_OPT_REPLY_HDR_LEN + 2, s, len);
	return total;
}

size_t nbd_encode_export_name_reply(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
				    bool no_zeroes)
{
	size_t total = no_zeroes ? 10 : NBD_EXPORT_NAME_REPLY_MAX;

	if (cap < total)
		return 0;
	nbd_put64(out, size);
	nbd_put16(out + 8, tflags);
	if (!no_zeroes)
		memset(out + 10, 0, NBD_EXPORT_NAME_REPLY_MAX - 10);
	return total;
}

/* CAN_MULTI_CONN: one process serves every connection through one cache-
 * less chain, so a FLUSH on any connection covers writes completed on all
 * of them. */
uint16_t nbd_transmission_flags(bool readonly)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN;

	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	return f;
}

int nbd_parse_request(const uint8_t in[NBD_REQUEST_LEN], struct nbd_request *out)
{
	if (nbd_get32(in) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	out->flags = nbd_get16(in + 4);
	out->type = nbd_get16(in + 6);
	out->handle = nbd_get64(in + 8);
	out->offset = nbd_get64(in + 16);
	out->length = nbd_get32(in + 24);
	return 0;
}

uint32_t nbd_request_payload_len(const struct nbd_request *rq)
{
	return rq->type == NBD_CMD_WRITE ? rq->length : 0;
}

/* Flags each command may carry. FUA is accepted everywhere because the
 * spec says servers must tolerate it (some clients set it on reads). */
static bool flags_valid(uint16_t type, uint16_t flags)
{
	uint16_t ok = NBD_CMD_FLAG_FUA;

	if (type == NBD_CMD_WRITE_ZEROES)
		ok |= NBD_CMD_FLAG_NO_HOLE;
	return (flags & ~ok) == 0;
}

uint32_t nbd_check_request(const struct nbd_request *rq, const struct nbd_export *ex)
{
	bool writes = false;
	uint64_t mask = ex->align ? ex->align - 1 : 0;

	switch (rq->type) {
	case NBD_CMD_DISC:
		return 0;
	case NBD_CMD_READ:
		break;
	case NBD_CMD_FLUSH:
		return flags_valid(rq->type, rq->flags) ? 0 : NBD_EINVAL;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		writes = true;
		break;
	default: /* CACHE, BLOCK_STATUS (never negotiated), unknown */
		return NBD_EINVAL;
	}
	if (!flags_valid(rq->type, rq->flags))
		return NBD_EINVAL;
	if (writes && ex->readonly)
		return NBD_EPERM;
	if ((rq->offset & mask) || (rq->length & mask))
		return NBD_EINVAL;
	if ((rq->type == NBD_CMD_READ || rq->type == NBD_CMD_WRITE) && rq->length > ex->max_io)
		return NBD_EINVAL;
	/* Written this way so that offset + length cannot overflow. */
	if (rq->offset > ex->size || rq->length > ex->size - rq->offset) {
		if (rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_WRITE_ZEROES)
			return NBD_ENOSPC;
		return NBD_EINVAL;
	}
	return 0;
}

void nbd_encode_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_LEN], uint32_t error, uint64_t handle)
{
	nbd_put32(out, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(out + 4, error);
	nbd_put64(out + 8, handle);
}

uint32_t nbd_errno_to_nbd(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
	case EACCES:
		return NBD_EPERM;
	case EIO:
		return NBD_EIO;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default: /* EBADMSG (integrity failure) and everything else */
		return NBD_EIO;
	}
}
