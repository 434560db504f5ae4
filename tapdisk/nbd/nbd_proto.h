/* NBD wire format: constants and pure parse/encode functions.
 *
 * Nothing here does I/O or allocates, so every function can be fed
 * arbitrary bytes by the unit tests and a fuzzer. All multi-byte fields
 * are big-endian on the wire. Values come from the NBD protocol document
 * (NetworkBlockDevice/nbd doc/proto.md). The server (nbd.c) owns the state
 * machine; this file only says whether bytes are well formed and what to
 * answer. */
#ifndef TD_NBD_PROTO_H
#define TD_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Magics */
#define NBD_MAGIC 0x4e42444d41474943ull	    /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull  /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ull /* option replies */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

/* Handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* Transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_RESIZE (1u << 9)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* Options */
#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_PEEK_EXPORT 4u
#define NBD_OPT_STARTTLS 5u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u
#define NBD_OPT_EXTENDED_HEADERS 11u

/* Option reply types */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP (NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY (NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID (NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN (NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR | 9u)

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* Commands */
#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_CACHE 5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u

/* Command flags */
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Error values of the simple reply (fixed by the protocol, not errno) */
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

/* Sizes of fixed wire structures */
#define NBD_GREETING_LEN 18u /* NBDMAGIC, IHAVEOPT, 16-bit flags */
#define NBD_CLIENT_FLAGS_LEN 4u
#define NBD_OPT_HDR_LEN 16u	       /* IHAVEOPT, option, length */
#define NBD_OPT_REPLY_HDR_LEN 20u      /* magic, option, type, length */
#define NBD_EXPORT_NAME_REPLY_MAX 134u /* size, flags, 124 zeroes */
#define NBD_REQUEST_LEN 28u
#define NBD_SIMPLE_REPLY_LEN 16u
#define NBD_INFO_EXPORT_REPLY_LEN (NBD_OPT_REPLY_HDR_LEN + 12u)
#define NBD_INFO_BLOCK_SIZE_REPLY_LEN (NBD_OPT_REPLY_HDR_LEN + 14u)

/* The protocol's hard limit for strings (export names, messages). */
#define NBD_MAX_STRING 4096u
/* Our limit for option data we buffer (INFO/GO: name + info requests).
 * Anything longer is drained and refused, never allocated. */
#define NBD_OPT_DATA_MAX 16384u

/* Block sizes we advertise: the VBD takes 512-byte aligned requests,
 * prefers whole 4 KiB blocks, and takes at most 32 MiB of payload. */
#define NBD_BLOCK_MIN 512u
#define NBD_BLOCK_PREFERRED 4096u
#define NBD_BLOCK_MAX (32u << 20)

struct nbd_opt_hdr {
	uint32_t option;
	uint32_t length;
};

/* A parsed NBD_OPT_INFO / NBD_OPT_GO payload. name points into the
 * caller's buffer and is not NUL-terminated. */
struct nbd_info_opt {
	const uint8_t *name;
	uint32_t name_len;
	uint16_t n_info;
	bool want_name, want_description, want_block_size;
};

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t handle;
	uint64_t offset;
	uint32_t length;
};

/* What nbd_check_request judges a request against. */
struct nbd_export {
	uint64_t size;
	bool readonly;
	uint32_t max_io; /* largest READ/WRITE payload */
	uint32_t align;	 /* offsets and lengths must be multiples (power of 2) */
};

/* Big-endian helpers (also used by the tests and the hostile client). */
uint16_t nbd_get16(const uint8_t *p);
uint32_t nbd_get32(const uint8_t *p);
uint64_t nbd_get64(const uint8_t *p);
void nbd_put16(uint8_t *p, uint16_t v);
void nbd_put32(uint8_t *p, uint32_t v);
void nbd_put64(uint8_t *p, uint64_t v);

/* Handshake */
void nbd_encode_greeting(uint8_t out[NBD_GREETING_LEN]);
/* 0 (and *no_zeroes) or -EPROTO when a flag we did not offer is set. */
int nbd_parse_client_flags(const uint8_t in[NBD_CLIENT_FLAGS_LEN], bool *no_zeroes);
/* 0 or -EPROTO on a bad magic (the stream cannot be resynchronised). */
int nbd_parse_opt_hdr(const uint8_t in[NBD_OPT_HDR_LEN], struct nbd_opt_hdr *out);
/* Checks an export name as a protocol string: 0, -ENAMETOOLONG (> 4096)
 * or -EINVAL (contains NUL). */
int nbd_check_name(const uint8_t *name, size_t len);
/* Parses INFO/GO data of exactly len bytes. 0, -EINVAL (lengths do not
 * add up, NUL in the name) or -ENAMETOOLONG. */
int nbd_parse_info_opt(const uint8_t *data, size_t len, struct nbd_info_opt *out);
/* "" always names the export; export_name (may be NULL) too. */
bool nbd_name_matches(const uint8_t *name, size_t len, const char *export_name);
/* NBD_OPT_ERR_* for a negative errno from the parse functions above. */
uint32_t nbd_opt_err_from_errno(int err);

/* Option replies: each returns the number of bytes written to out, or 0
 * when out (cap bytes) is too small or an argument is out of range. */
size_t nbd_encode_opt_reply(uint8_t *out, size_t cap, uint32_t option, uint32_t type, uint32_t len);
size_t nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t option, const uint8_t *name,
			     size_t len);
size_t nbd_encode_info_export(uint8_t *out, size_t cap, uint32_t option, uint64_t size,
			      uint16_t tflags);
size_t nbd_encode_info_block_size(uint8_t *out, size_t cap, uint32_t option, uint32_t min,
				  uint32_t pref, uint32_t max);
/* NBD_INFO_NAME or NBD_INFO_DESCRIPTION carrying a string. */
size_t nbd_encode_info_string(uint8_t *out, size_t cap, uint32_t option, uint16_t info,
			      const uint8_t *s, size_t len);
size_t nbd_encode_export_name_reply(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
				    bool no_zeroes);
uint16_t nbd_transmission_flags(bool readonly);

/* Transmission */
/* 0 or -EPROTO on a bad magic. */
int nbd_parse_request(const uint8_t in[NBD_REQUEST_LEN], struct nbd_request *out);
/* Bytes of payload that follow this header on the wire (WRITE only). */
uint32_t nbd_request_payload_len(const struct nbd_request *rq);
/* 0 if the request may go to the disk, else the NBD error to reply with:
 * EINVAL for unknown commands or flags, misalignment, READ/WRITE over
 * max_io, reads/trims past the end; ENOSPC for writes past the end; EPERM
 * for writes to a read-only export. DISC and FLUSH ignore offset/length. */
uint32_t nbd_check_request(const struct nbd_request *rq, const struct nbd_export *ex);
void nbd_encode_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_LEN], uint32_t error, uint64_t handle);
/* Maps 0 / -errno (or errno) from the disk to an NBD error value. */
uint32_t nbd_errno_to_nbd(int err);

#endif
