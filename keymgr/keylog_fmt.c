/* The key-event log's encoding, hash chain and verification: pure
 * functions, no I/O (docs/FORMAT.md, "Key-event log"). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "crypt/backend/cipher.h"
#include "keymgr/keylog.h"
#include "tapdisk/core/seterr.h"

#define UUID_STR_LEN 36
#define HEX_LEN (2 * TD_KEYLOG_HASH_LEN)

static void hex_put(char *out, const uint8_t *p, size_t n)
{
	static const char dig[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = dig[p[i] >> 4];
		out[2 * i + 1] = dig[p[i] & 15];
	}
	out[2 * n] = 0;
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is not canonical */
}

static void uuid_put(char out[UUID_STR_LEN + 1], const uint8_t u[16])
{
	char h[33];

	hex_put(h, u, 16);
	snprintf(out, UUID_STR_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
		 h + 20);
}

static bool op_ok(const char *op)
{
	size_t n = op ? strnlen(op, TD_KEYLOG_OP_MAX + 1) : 0;

	if (n < 1 || n > TD_KEYLOG_OP_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((op[i] >= 'a' && op[i] <= 'z') || (op[i] >= '0' && op[i] <= '9') ||
		      op[i] == '-'))
			return false;
	return true;
}

static bool outcome_ok(const char *o)
{
	return !strcmp(o, TD_KEYLOG_OK) || !strcmp(o, TD_KEYLOG_FAIL);
}

/* The line without " hash=...\n": what the hash covers. */
static int format_body(const struct td_keylog_entry *e, char *buf, size_t len)
{
	char u[UUID_STR_LEN + 1], prev[HEX_LEN + 1], slot[8];
	int n;

	if (!op_ok(e->op) || !outcome_ok(e->outcome) ||
	    (e->slot != TD_KEYLOG_SLOT_NONE && (e->slot < 0 || e->slot >= TD_HDR_KEYSLOTS)))
		return -EINVAL;
	uuid_put(u, e->uuid);
	hex_put(prev, e->prev, TD_KEYLOG_HASH_LEN);
	if (e->slot == TD_KEYLOG_SLOT_NONE)
		snprintf(slot, sizeof(slot), "-");
	else
		snprintf(slot, sizeof(slot), "%d", e->slot);
	n = snprintf(buf, len,
		     "seq=%" PRIu64 " time=%" PRIu64 " uid=%" PRIu32
		     " uuid=%s op=%s slot=%s outcome=%s prev=%s",
		     e->seq, e->time, e->uid, u, e->op, slot, e->outcome, prev);
	if (n < 0 || (size_t)n >= len)
		return -EINVAL;
	return n;
}

int td_keylog_genesis(const uint8_t uuid[16], uint8_t out[TD_KEYLOG_HASH_LEN])
{
	uint8_t msg[sizeof(TD_KEYLOG_GENESIS_DOMAIN) - 1 + 16];

	memcpy(msg, TD_KEYLOG_GENESIS_DOMAIN, sizeof(TD_KEYLOG_GENESIS_DOMAIN) - 1);
	memcpy(msg + sizeof(TD_KEYLOG_GENESIS_DOMAIN) - 1, uuid, 16);
	return td_sha256(msg, sizeof(msg), out);
}

int td_keylog_entry_hash(const struct td_keylog_entry *e, uint8_t out[TD_KEYLOG_HASH_LEN])
{
	char buf[sizeof(TD_KEYLOG_ENTRY_DOMAIN) - 1 + TD_KEYLOG_LINE_MAX];
	const size_t dl = sizeof(TD_KEYLOG_ENTRY_DOMAIN) - 1;
	int n;

	memcpy(buf, TD_KEYLOG_ENTRY_DOMAIN, dl);
	n = format_body(e, buf + dl, sizeof(buf) - dl);
	if (n < 0)
		return n;
	return td_sha256(buf, dl + (size_t)n, out);
}

int td_keylog_format(const struct td_keylog_entry *e, char *buf, size_t len)
{
	char hash[HEX_LEN + 1];
	size_t cap = len < TD_KEYLOG_LINE_MAX + 1 ? len : TD_KEYLOG_LINE_MAX + 1;
	int n, m;

	n = format_body(e, buf, cap);
	if (n < 0)
		return n;
	hex_put(hash, e->hash, TD_KEYLOG_HASH_LEN);
	m = snprintf(buf + n, cap - (size_t)n, " hash=%s\n", hash);
	if (m < 0 || (size_t)(n + m) >= cap)
		return -EINVAL;
	return n + m;
}

/* ---- parsing ---- */

struct cur {
	const char *p, *end;
	const char *start;
};

static size_t col(const struct cur *c)
{
	return (size_t)(c->p - c->start) + 1;
}

static bool lit(struct cur *c, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* A field value runs to the next space or the end of the line. */
static size_t vlen(const struct cur *c)
{
	const char *q = c->p;

	while (q < c->end && *q != ' ')
		q++;
	return (size_t)(q - c->p);
}

static int dec(struct cur *c, uint64_t max, uint64_t *out)
{
	size_t n = vlen(c);
	uint64_t v = 0;

	if (n == 0 || n > 20 || (n > 1 && c->p[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)c->p[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	c->p += n;
	*out = v;
	return 0;
}

static int hex(struct cur *c, uint8_t *out, size_t n)
{
	if (vlen(c) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_val(c->p[2 * i]), lo = hex_val(c->p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	c->p += 2 * n;
	return 0;
}

static int uuid_parse(struct cur *c, uint8_t out[16])
{
	char h[32];
	size_t k = 0;

	if (vlen(c) != UUID_STR_LEN)
		return -1;
	for (size_t i = 0; i < UUID_STR_LEN; i++) {
		char ch = c->p[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return -1;
			continue;
		}
		if (hex_val(ch) < 0)
			return -1;
		h[k++] = ch;
	}
	for (size_t i = 0; i < 16; i++)
		out[i] = (uint8_t)(hex_val(h[2 * i]) << 4 | hex_val(h[2 * i + 1]));
	c->p += UUID_STR_LEN;
	return 0;
}

/* One field: " name=" (no space before the first), then its value. */
#define FIELD(first, name)                                                                         \
	do {                                                                                       \
		if ((!(first) && !lit(&c, " ")) || !lit(&c, name "=")) {                           \
			td_seterr(err, errlen, "missing field '%s' at column %zu", name, col(&c)); \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)
#define BAD(name, what)                                                                            \
	do {                                                                                       \
		td_seterr(err, errlen, "bad %s at column %zu: %s", name, col(&c), what);           \
		goto out;                                                                          \
	} while (0)

int td_keylog_parse_line(const char *line, size_t len, struct td_keylog_entry *out, char *err,
			 size_t errlen)
{
	struct td_keylog_entry e;
	struct cur c = {line, line + len, line};
	char again[TD_KEYLOG_LINE_MAX + 1];
	uint64_t v;
	size_t n;
	int ret = -EBADMSG;

	memset(&e, 0, sizeof(e));
	if (len + 1 > TD_KEYLOG_LINE_MAX) {
		td_seterr(err, errlen, "line too long (%zu bytes, at most %d)", len,
			  TD_KEYLOG_LINE_MAX - 1);
		goto out;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e) {
			td_seterr(err, errlen, "byte 0x%02x at column %zu is not printable ASCII",
				  (unsigned char)line[i], i + 1);
			goto out;
		}
	FIELD(1, "seq");
	if (dec(&c, UINT64_MAX, &e.seq) < 0)
		BAD("seq", "not a canonical decimal number");
	FIELD(0, "time");
	if (dec(&c, UINT64_MAX, &e.time) < 0)
		BAD("time", "not a canonical decimal number");
	FIELD(0, "uid");
	if (dec(&c, UINT32_MAX, &v) < 0)
		BAD("uid", "not a canonical decimal number below 2^32");
	e.uid = (uint32_t)v;
	FIELD(0, "uuid");
	if (uuid_parse(&c, e.uuid) < 0)
		BAD("uuid", "not a lower-case 8-4-4-4-12 UUID");
	FIELD(0, "op");
	n = vlen(&c);
	if (n < 1 || n > TD_KEYLOG_OP_MAX)
		BAD("op", "1 to 32 characters expected");
	memcpy(e.op, c.p, n);
	e.op[n] = 0;
	if (!op_ok(e.op))
		BAD("op", "only a-z, 0-9 and '-' allowed");
	c.p += n;
	FIELD(0, "slot");
	if (lit(&c, "-")) {
		e.slot = TD_KEYLOG_SLOT_NONE;
	} else {
		if (dec(&c, TD_HDR_KEYSLOTS - 1, &v) < 0)
			BAD("slot", "'-' or 0..15 expected");
		e.slot = (int)v;
	}
	FIELD(0, "outcome");
	n = vlen(&c);
	if (n >= sizeof(e.outcome))
		BAD("outcome", "'ok' or 'fail' expected");
	memcpy(e.outcome, c.p, n);
	e.outcome[n] = 0;
	if (!outcome_ok(e.outcome))
		BAD("outcome", "'ok' or 'fail' expected");
	c.p += n;
	FIELD(0, "prev");
	if (hex(&c, e.prev, TD_KEYLOG_HASH_LEN) < 0)
		BAD("prev", "64 lower-case hex digits expected");
	FIELD(0, "hash");
	if (hex(&c, e.hash, TD_KEYLOG_HASH_LEN) < 0)
		BAD("hash", "64 lower-case hex digits expected");
	if (c.p != c.end) {
		td_seterr(err, errlen, "unexpected bytes after the hash at column %zu", col(&c));
		goto out;
	}
	/* exactly one encoding per entry */
	n = (size_t)td_keylog_format(&e, again, sizeof(again));
	if ((int)n < 0 || n != len + 1 || memcmp(again, line, len) != 0) {
		td_seterr(err, errlen, "not in canonical form");
		goto out;
	}
	*out = e;
	ret = 0;
out:
	return ret;
}

int td_keylog_next_line(const char *buf, size_t len, size_t *off, const char **line,
			size_t *linelen)
{
	const char *nl;

	if (*off >= len)
		return 0;
	nl = memchr(buf + *off, '\n', len - *off);
	*line = buf + *off;
	if (!nl) {
		*linelen = len - *off;
		*off = len;
		return -EBADMSG;
	}
	*linelen = (size_t)(nl - (buf + *off));
	*off += *linelen + 1;
	return 1;
}

int td_keylog_verify_buf(const char *buf, size_t len, const uint8_t uuid[16],
			 const struct td_keylog_anchor *anchor, struct td_keylog_result *res,
			 char *err, size_t errlen)
{
	struct td_keylog_entry e;
	uint8_t prev[TD_KEYLOG_HASH_LEN], h[TD_KEYLOG_HASH_LEN];
	char perr[200], us[UUID_STR_LEN + 1];
	const char *line;
	size_t off = 0, ll;
	uint64_t i = 0, base = 0, acount = anchor ? anchor->count : 0;
	int r, head_ok = 0, ret = -EBADMSG;
	bool reset;

	memset(res, 0, sizeof(*res));
	res->bad_seq = UINT64_MAX;
	res->reset_at = UINT64_MAX;
	res->anchored = acount;
	if (td_keylog_genesis(uuid, prev) < 0) {
		td_seterr(err, errlen, "cannot compute the genesis hash");
		ret = -EIO;
		goto out;
	}
	memcpy(res->head, prev, sizeof(prev));
	if (len > TD_KEYLOG_FILE_MAX) {
		td_seterr(err, errlen, "the log is %zu bytes, more than a log may hold (%u)", len,
			  TD_KEYLOG_FILE_MAX);
		goto out;
	}
	while ((r = td_keylog_next_line(buf, len, &off, &line, &ll)) != 0) {
		res->bad_seq = base + i;
		if (r < 0) {
			td_seterr(err, errlen,
				  "entry %" PRIu64
				  ": the last line is not terminated (torn write, or the "
				  "log was cut in the middle of an entry)",
				  i);
			goto out;
		}
		if (td_keylog_parse_line(line, ll, &e, perr, sizeof(perr)) < 0) {
			td_seterr(err, errlen, "entry %" PRIu64 " is malformed: %s", i, perr);
			goto out;
		}
		reset = strcmp(e.op, TD_KEYLOG_OP_RESET) == 0;
		if (reset && i > 0) {
			td_seterr(err, errlen,
				  "entry %" PRIu64 " is a reset, which may only start a log",
				  base + i);
			goto out;
		}
		if (reset) {
			/* a reset continues from the anchor it was made under: its
			 * seq and prev are taken as given, and it must be anchored
			 * (checked below) */
			base = e.seq;
			res->reset_at = base;
			res->bad_seq = base;
			memcpy(prev, e.prev, sizeof(prev));
		}
		if (e.seq != base + i) {
			td_seterr(err, errlen,
				  "entry removed or reordered at seq %" PRIu64 " (line %" PRIu64
				  " holds seq %" PRIu64 ")",
				  base + i, i + 1, e.seq);
			goto out;
		}
		if (memcmp(e.uuid, uuid, 16) != 0) {
			uuid_put(us, e.uuid);
			td_seterr(err, errlen,
				  "entry %" PRIu64 " belongs to image %s, not this one", base + i,
				  us);
			goto out;
		}
		if (!td_ct_memeq(e.prev, prev, sizeof(prev))) {
			td_seterr(err, errlen,
				  "prev-hash mismatch at seq %" PRIu64
				  " (an entry before it was removed, reordered or modified)",
				  base + i);
			goto out;
		}
		if (td_keylog_entry_hash(&e, h) < 0 || !td_ct_memeq(e.hash, h, sizeof(h))) {
			td_seterr(err, errlen, "hash mismatch at seq %" PRIu64 " (entry modified)",
				  base + i);
			goto out;
		}
		memcpy(prev, h, sizeof(h));
		i++;
		if (base + i == acount)
			head_ok = td_ct_memeq(h, anchor->head, sizeof(h));
	}
	res->bad_seq = UINT64_MAX;
	i += base; /* from here on: the next seq */
	res->entries = i;
	memcpy(res->head, prev, sizeof(prev));
	if (res->reset_at != UINT64_MAX && anchor && acount <= res->reset_at) {
		res->bad_seq = res->reset_at;
		td_seterr(err, errlen,
			  "the log was reset at seq %" PRIu64
			  " but the reset is not anchored in the "
			  "header (the header anchors %" PRIu64 " entries): an interrupted "
			  "'vdkey log --reset' (run it again), or a reset forged without the key",
			  res->reset_at, acount);
		goto out;
	}
	if (acount > i) {
		res->bad_seq = i;
		td_seterr(err, errlen,
			  "the anchor points past the end of the log: the header anchors %" PRIu64
			  " entries, the log has %" PRIu64
			  " (its tail was cut, or it was deleted or replaced)",
			  acount, i);
		goto out;
	}
	if (acount > 0 && !head_ok) {
		res->bad_seq = acount - 1;
		td_seterr(err, errlen,
			  "head hash mismatch at the anchored entry seq %" PRIu64
			  ": the anchored history was rewritten",
			  acount - 1);
		goto out;
	}
	res->unanchored = i - acount;
	ret = 0;
out:
	return ret;
}
