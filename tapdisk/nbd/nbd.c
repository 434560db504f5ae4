#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/log.h"
#include "tapdisk/nbd/nbd.h"
#include "tapdisk/nbd/nbd_proto.h"

#define IN_BUF_SIZE (16u << 10) /* staging for headers and small payloads */
#define HS_OUT_SIZE 8192u	/* greeting + the largest reply to one option */
#define IOV_BATCH 128		/* iovecs per sendmsg */
#define RECV_ROUNDS 16		/* recv calls per wakeup before yielding */
#define ACCEPT_BATCH 32
#define ACCEPT_RETRY_NS (100ull * 1000000ull)
#define SHUTDOWN_GRACE_NS (5ull * 1000000000ull)
#define NS_PER_S 1000000000ull

_Static_assert(NBD_BLOCK_MAX == VBD_MAX_IO, "advertised maximum block size must match the VBD");

enum rd_state {
	RD_CLIENT_FLAGS,
	RD_OPT_HDR,
	RD_OPT_DATA,  /* buffering option data into opt_buf */
	RD_OPT_DRAIN, /* skipping option data we do not keep */
	RD_REQ_HDR,
	RD_REQ_DATA,  /* write payload into cur->buf */
	RD_REQ_DRAIN, /* skipping the payload of a refused write */
	RD_STOP,      /* no more input wanted */
};

enum consume_result { C_MORE, C_BLOCKED, C_STOP };
enum blocked_on { BLK_NONE, BLK_ROOM, BLK_OUTPUT };

struct nbd_conn;

/* One request: the vbd_io and our bookkeeping in one allocation, recycled
 * through the connection's free list. */
struct nbd_req {
	struct vbd_io io;
	struct nbd_conn *conn;
	struct nbd_req *next;
	uint64_t handle;
	void *buf; /* td_buf_get payload */
	size_t buf_len;
	uint32_t payload; /* bytes of buf sent after the reply header */
	uint8_t reply[NBD_SIMPLE_REPLY_LEN];
};

struct nbd_conn {
	struct nbd_server *srv;
	struct nbd_conn *prev, *next;
	int fd;
	struct td_watch *watch; /* NULL after a hangup or an abort */
	uint32_t events;
	struct td_defer kick;
	struct td_timer hs_timer;
	bool transmission;
	bool no_zeroes;
	bool rd_eof;  /* the peer will send nothing more */
	bool hup;     /* hung up: driven by kicks, not by epoll */
	bool wr_dead; /* replies can no longer be delivered */
	bool resume;  /* the next kick pumps input */
	enum blocked_on blocked;
	enum rd_state rd;

	uint8_t in[IN_BUF_SIZE];
	size_t in_start, in_end;

	unsigned nopts;
	struct nbd_opt_hdr opt;
	bool opt_too_big;
	uint8_t *opt_buf;
	size_t opt_got;
	uint64_t drain_left;

	struct nbd_req *cur; /* the write receiving its payload */
	size_t cur_got;
	struct nbd_req *free_reqs;
	unsigned nreqs;	  /* requests out of the free list */
	uint64_t nbytes;  /* payload bytes they hold */
	unsigned pending; /* submitted to the vbd, not completed */

	uint8_t hs_out[HS_OUT_SIZE];
	size_t hs_len, hs_off;
	struct nbd_req *outq, *outq_tail;
	size_t out_off; /* bytes of outq's head already sent */
};

struct nbd_server {
	struct td_loop *loop;
	struct vbd *vbd;
	int listen_fd;
	struct td_watch *lwatch;
	struct td_timer accept_timer;
	char *export_name;
	struct nbd_conn *conns;
	unsigned nconns;
	unsigned long refused;
	bool shutting_down;
	void (*shutdown_cb)(void *opaque);
	void *shutdown_opaque;
	struct td_defer shutdown_defer;
	struct td_timer shutdown_timer;
};

static void conn_kick(struct nbd_conn *c)
{
	td_loop_defer(c->srv->loop, &c->kick);
}

static bool conn_has_room(const struct nbd_conn *c)
{
	return c->nreqs < NBD_CONN_MAX_REQS && c->nbytes < NBD_CONN_MAX_BYTES;
}

static bool output_pending(const struct nbd_conn *c)
{
	return c->hs_off < c->hs_len || c->outq;
}

/* Called whenever requests or buffers are released. */
static void conn_room_freed(struct nbd_conn *c)
{
	if (c->blocked == BLK_ROOM && conn_has_room(c)) {
		c->blocked = BLK_NONE;
		c->resume = true;
		conn_kick(c);
	}
}

static struct nbd_req *req_get(struct nbd_conn *c)
{
	struct nbd_req *r = c->free_reqs;

	if (r)
		c->free_reqs = r->next;
	else if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->conn = c;
	r->next = NULL;
	r->buf = NULL;
	r->buf_len = 0;
	r->payload = 0;
	c->nreqs++;
	return r;
}

static void req_release_buf(struct nbd_conn *c, struct nbd_req *r)
{
	if (!r->buf)
		return;
	td_buf_put(r->buf, r->buf_len);
	c->nbytes -= r->buf_len;
	r->buf = NULL;
	r->buf_len = 0;
	r->payload = 0;
}

static void req_put(struct nbd_conn *c, struct nbd_req *r)
{
	req_release_buf(c, r);
	r->next = c->free_reqs;
	c->free_reqs = r;
	c->nreqs--;
	conn_room_freed(c);
}

static void drop_output(struct nbd_conn *c)
{
	c->hs_len = c->hs_off = 0;
	while (c->outq) {
		struct nbd_req *r = c->outq;

		c->outq = r->next;
		req_put(c, r);
	}
	c->outq_tail = NULL;
	c->out_off = 0;
}

/* Drops whatever input is staged or half received (a partially received
 * write is never submitted). */
static void conn_stop_input(struct nbd_conn *c)
{
	c->rd = RD_STOP;
	c->in_start = c->in_end = 0;
	free(c->opt_buf);
	c->opt_buf = NULL;
	if (c->cur) {
		req_put(c, c->cur);
		c->cur = NULL;
	}
	c->blocked = BLK_NONE;
}

/* Hard disconnect: the peer sees EOF at once; the object lives on until
 * its in-flight requests complete. */
static void conn_abort(struct nbd_conn *c, const char *why)
{
	td_dbg("nbd: fd %d: closing connection: %s", c->fd, why);
	conn_stop_input(c);
	c->wr_dead = true;
	drop_output(c);
	if (c->watch) {
		td_loop_del_fd(c->srv->loop, c->watch);
		c->watch = NULL;
	}
	shutdown(c->fd, SHUT_RDWR);
	conn_kick(c);
}

static bool conn_done(const struct nbd_conn *c)
{
	return c->pending == 0 && c->rd == RD_STOP && !c->cur && (c->wr_dead || !output_pending(c));
}

static void conn_free(struct nbd_conn *c)
{
	struct nbd_server *s = c->srv;

	td_loop_timer_cancel(s->loop, &c->hs_timer);
	if (c->watch)
		td_loop_del_fd(s->loop, c->watch);
	close(c->fd);
	free(c->opt_buf);
	c->blocked = BLK_NONE; /* releasing below must not kick a dying conn */
	drop_output(c);
	while (c->free_reqs) {
		struct nbd_req *r = c->free_reqs;

		c->free_reqs = r->next;
		free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	td_dbg("nbd: connection closed (%u left)", s->nconns);
	free(c);
	if (s->shutting_down && s->nconns == 0)
		td_loop_defer(s->loop, &s->shutdown_defer);
}

/* Sends the handshake bytes, then queued replies, as many per sendmsg as
 * fit in one iovec batch. Replies leave in completion order. */
static void conn_flush(struct nbd_conn *c)
{
	while (!c->wr_dead && output_pending(c)) {
		struct iovec iov[IOV_BATCH];
		struct msghdr msg = {.msg_iov = iov};
		size_t skip = c->out_off, take;
		struct nbd_req *r;
		ssize_t n;
		int cnt = 0;

		if (c->hs_off < c->hs_len)
			iov[cnt++] = (struct iovec){c->hs_out + c->hs_off, c->hs_len - c->hs_off};
		for (r = c->outq; r && cnt + 2 <= IOV_BATCH; r = r->next) {
			if (skip < NBD_SIMPLE_REPLY_LEN)
				iov[cnt++] =
				    (struct iovec){r->reply + skip, NBD_SIMPLE_REPLY_LEN - skip};
			if (r->payload) {
				size_t poff =
				    skip > NBD_SIMPLE_REPLY_LEN ? skip - NBD_SIMPLE_REPLY_LEN : 0;

				iov[cnt++] =
				    (struct iovec){(uint8_t *)r->buf + poff, r->payload - poff};
			}
			skip = 0;
		}
		msg.msg_iovlen = (size_t)cnt;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && !c->hup)
				return;
			conn_abort(c, "send failed");
			return;
		}
		take = (size_t)n < c->hs_len - c->hs_off ? (size_t)n : c->hs_len - c->hs_off;
		c->hs_off += take;
		n -= (ssize_t)take;
		if (c->hs_len && c->hs_off == c->hs_len) {
			c->hs_len = c->hs_off = 0;
			if (c->blocked == BLK_OUTPUT) {
				c->blocked = BLK_NONE;
				c->resume = true;
				conn_kick(c);
			}
		}
		while (n > 0) {
			size_t left;

			r = c->outq;
			left = NBD_SIMPLE_REPLY_LEN + r->payload - c->out_off;
			if ((size_t)n < left) {
				c->out_off += (size_t)n;
				break;
			}
			n -= (ssize_t)left;
			c->out_off = 0;
			c->outq = r->next;
			if (!c->outq)
				c->outq_tail = NULL;
			req_put(c, r);
		}
	}
}

static bool reading_wanted(const struct nbd_conn *c)
{
	return c->rd != RD_STOP && !c->rd_eof && c->blocked == BLK_NONE;
}

static void conn_update_events(struct nbd_conn *c)
{
	uint32_t want = 0;

	if (!c->watch)
		return;
	if (reading_wanted(c))
		want |= EPOLLIN;
	if (!c->wr_dead && output_pending(c))
		want |= EPOLLOUT;
	if (want != c->events && td_loop_mod_fd(c->srv->loop, c->watch, want) == 0)
		c->events = want;
}

static void queue_reply(struct nbd_conn *c, struct nbd_req *r, uint32_t err)
{
	nbd_encode_simple_reply(r->reply, err, r->handle);
	if (err)
		req_release_buf(c, r);
	if (c->wr_dead) {
		req_put(c, r);
		conn_kick(c);
		return;
	}
	r->next = NULL;
	if (c->outq_tail)
		c->outq_tail->next = r;
	else
		c->outq = r;
	c->outq_tail = r;
	conn_kick(c);
}

static void req_done(struct vbd_io *io, int err)
{
	struct nbd_req *r = io->opaque;
	struct nbd_conn *c = r->conn;
	uint32_t nerr = nbd_errno_to_nbd(err);

	c->pending--;
	if (io->op == TD_OP_READ && !nerr) {
		r->payload = (uint32_t)io->len;
	} else {
		/* Written data is no longer needed while the reply waits. */
		req_release_buf(c, r);
	}
	if (nerr)
		td_dbg("nbd: request op %d off %llu len %llu failed: %d", (int)io->op,
		       (unsigned long long)io->off, (unsigned long long)io->len, err);
	queue_reply(c, r, nerr);
}

static void submit(struct nbd_conn *c, struct nbd_req *r)
{
	c->pending++;
	vbd_submit(c->srv->vbd, &r->io);
}

/* ---- handshake ---- */

static bool hs_add(struct nbd_conn *c, size_t n)
{
	if (n == 0) {
		conn_abort(c, "handshake reply does not fit");
		return false;
	}
	c->hs_len += n;
	return true;
}

static bool opt_reply(struct nbd_conn *c, uint32_t type)
{
	return hs_add(c, nbd_encode_opt_reply(c->hs_out + c->hs_len, HS_OUT_SIZE - c->hs_len,
					      c->opt.option, type, 0));
}

static void enter_transmission(struct nbd_conn *c)
{
	c->transmission = true;
	c->rd = RD_REQ_HDR;
	td_loop_timer_cancel(c->srv->loop, &c->hs_timer);
	td_dbg("nbd: fd %d: transmission phase", c->fd);
}

static void opt_info_go(struct nbd_conn *c)
{
	struct nbd_server *s = c->srv;
	struct nbd_info_opt info;
	uint32_t opt = c->opt.option;
	uint8_t *out;
	size_t cap;
	int rc;

	if (c->opt_too_big) {
		opt_reply(c, NBD_REP_ERR_TOO_BIG);
		return;
	}
	rc = nbd_parse_info_opt(c->opt_buf, c->opt.length, &info);
	if (rc < 0) {
		opt_reply(c, nbd_opt_err_from_errno(rc));
		return;
	}
	if (!nbd_name_matches(info.name, info.name_len, s->export_name)) {
		opt_reply(c, NBD_REP_ERR_UNKNOWN);
		return;
	}
	out = c->hs_out + c->hs_len;
	cap = HS_OUT_SIZE - c->hs_len;
	if (!hs_add(c, nbd_encode_info_export(out, cap, opt, vbd_size(s->vbd),
					      nbd_transmission_flags(vbd_readonly(s->vbd)))))
		return;
	/* Block sizes are sent even unrequested (allowed by the spec): the
	 * VBD cannot take requests below 512-byte granularity. */
	out = c->hs_out + c->hs_len;
	cap = HS_OUT_SIZE - c->hs_len;
	if (!hs_add(c, nbd_encode_info_block_size(out, cap, opt, NBD_BLOCK_MIN, NBD_BLOCK_PREFERRED,
						  NBD_BLOCK_MAX)))
		return;
	if (info.want_name) {
		out = c->hs_out + c->hs_len;
		cap = HS_OUT_SIZE - c->hs_len;
		if (!hs_add(c, nbd_encode_info_string(out, cap, opt, NBD_INFO_NAME, info.name,
						      info.name_len)))
			return;
	}
	if (!opt_reply(c, NBD_REP_ACK))
		return;
	if (opt == NBD_OPT_GO)
		enter_transmission(c);
}

static void opt_list(struct nbd_conn *c)
{
	const char *name = c->srv->export_name;

	if (c->opt.length != 0) {
		opt_reply(c, NBD_REP_ERR_INVALID);
		return;
	}
	if (!hs_add(c, nbd_encode_rep_server(c->hs_out + c->hs_len, HS_OUT_SIZE - c->hs_len,
					     c->opt.option, NULL, 0)))
		return;
	if (name && *name &&
	    !hs_add(c, nbd_encode_rep_server(c->hs_out + c->hs_len, HS_OUT_SIZE - c->hs_len,
					     c->opt.option, (const uint8_t *)name, strlen(name))))
		return;
	opt_reply(c, NBD_REP_ACK);
}

static void opt_export_name(struct nbd_conn *c)
{
	struct nbd_server *s = c->srv;
	const uint8_t *name = c->opt_buf;
	size_t len = c->opt.length;

	/* This option cannot carry an error: the spec says hang up. */
	if (nbd_check_name(name, len) < 0 || !nbd_name_matches(name, len, s->export_name)) {
		conn_abort(c, "EXPORT_NAME for an unknown export");
		return;
	}
	if (!hs_add(c, nbd_encode_export_name_reply(
			   c->hs_out + c->hs_len, HS_OUT_SIZE - c->hs_len, vbd_size(s->vbd),
			   nbd_transmission_flags(vbd_readonly(s->vbd)), c->no_zeroes)))
		return;
	enter_transmission(c);
}

/* Runs once an option's data has been buffered (or drained). */
static void handle_option(struct nbd_conn *c)
{
	c->rd = RD_OPT_HDR;
	switch (c->opt.option) {
	case NBD_OPT_EXPORT_NAME:
		opt_export_name(c);
		break;
	case NBD_OPT_ABORT:
		if (opt_reply(c, NBD_REP_ACK))
			conn_stop_input(c);
		break;
	case NBD_OPT_LIST:
		opt_list(c);
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info_go(c);
		break;
	case NBD_OPT_STARTTLS:
		opt_reply(c, NBD_REP_ERR_POLICY);
		break;
	default: /* STRUCTURED_REPLY included: simple replies only */
		opt_reply(c, NBD_REP_ERR_UNSUP);
		break;
	}
	free(c->opt_buf);
	c->opt_buf = NULL;
}

static void option_header(struct nbd_conn *c, const uint8_t *p)
{
	struct nbd_opt_hdr h;
	bool keep;

	if (nbd_parse_opt_hdr(p, &h) < 0) {
		conn_abort(c, "bad option magic");
		return;
	}
	if (++c->nopts > NBD_MAX_OPTIONS) {
		conn_abort(c, "too many options");
		return;
	}
	c->opt = h;
	c->opt_got = 0;
	c->opt_too_big = false;
	keep =
	    h.option == NBD_OPT_EXPORT_NAME || h.option == NBD_OPT_INFO || h.option == NBD_OPT_GO;
	if (keep && h.length > NBD_OPT_DATA_MAX) {
		if (h.option == NBD_OPT_EXPORT_NAME) {
			conn_abort(c, "EXPORT_NAME too long");
			return;
		}
		c->opt_too_big = true;
		keep = false;
	}
	if (!keep) {
		/* Never allocate what the client declares: skip it. */
		c->drain_left = h.length;
		c->rd = RD_OPT_DRAIN;
		return;
	}
	if (h.length && !(c->opt_buf = malloc(h.length))) {
		conn_abort(c, "out of memory");
		return;
	}
	c->rd = RD_OPT_DATA;
}

/* ---- transmission ---- */

static void request_header(struct nbd_conn *c, const uint8_t *p)
{
	struct nbd_server *s = c->srv;
	struct nbd_export ex = {
	    .size = vbd_size(s->vbd),
	    .readonly = vbd_readonly(s->vbd),
	    .max_io = VBD_MAX_IO,
	    .align = NBD_BLOCK_MIN,
	};
	struct nbd_request rq;
	struct nbd_req *r;
	uint32_t err, payload;

	if (nbd_parse_request(p, &rq) < 0) {
		conn_abort(c, "bad request magic");
		return;
	}
	if (rq.type == NBD_CMD_DISC) {
		/* In-flight requests finish and their replies go out first. */
		conn_stop_input(c);
		return;
	}
	if (!(r = req_get(c))) {
		conn_abort(c, "out of memory");
		return;
	}
	r->handle = rq.handle;
	payload = nbd_request_payload_len(&rq);
	err = nbd_check_request(&rq, &ex);
	if (!err && rq.type != NBD_CMD_FLUSH && rq.length == 0) {
		queue_reply(c, r, 0); /* nothing to do */
		return;
	}
	memset(&r->io, 0, sizeof(r->io));
	r->io.off = rq.offset;
	r->io.len = rq.length;
	r->io.done = req_done;
	r->io.opaque = r;
	/* FUA only means something for commands that write. */
	if ((rq.flags & NBD_CMD_FLAG_FUA) && rq.type != NBD_CMD_READ && rq.type != NBD_CMD_FLUSH)
		r->io.flags |= TD_REQ_FUA;
	switch (rq.type) {
	case NBD_CMD_READ:
		r->io.op = TD_OP_READ;
		break;
	case NBD_CMD_WRITE:
		r->io.op = TD_OP_WRITE;
		break;
	case NBD_CMD_FLUSH:
		r->io.op = TD_OP_FLUSH;
		r->io.off = r->io.len = 0;
		break;
	case NBD_CMD_TRIM:
		r->io.op = TD_OP_DISCARD;
		break;
	default:
		r->io.op = TD_OP_WRITE_ZEROES;
		if (rq.flags & NBD_CMD_FLAG_NO_HOLE)
			r->io.flags |= TD_REQ_NO_UNMAP;
		break;
	}
	if (!err && (rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE)) {
		if ((r->buf = td_buf_get(rq.length))) {
			r->buf_len = rq.length;
			c->nbytes += rq.length;
			r->io.buf = r->buf;
		} else {
			err = NBD_ENOMEM;
		}
	}
	if (err) {
		queue_reply(c, r, err);
		if (payload) { /* keep the stream in sync: skip the data */
			c->drain_left = payload;
			c->rd = RD_REQ_DRAIN;
		}
		return;
	}
	if (rq.type == NBD_CMD_WRITE) {
		c->cur = r;
		c->cur_got = 0;
		c->rd = RD_REQ_DATA;
		return;
	}
	submit(c, r);
}

/* Advances the input state machine over the staged bytes as far as they,
 * the flow-control limits and the handshake output allow. */
static enum consume_result conn_consume(struct nbd_conn *c)
{
	for (;;) {
		size_t avail = c->in_end - c->in_start, take;
		const uint8_t *p = c->in + c->in_start;

		switch (c->rd) {
		case RD_STOP:
			c->in_start = c->in_end = 0;
			return C_STOP;
		case RD_CLIENT_FLAGS:
			if (avail < NBD_CLIENT_FLAGS_LEN)
				return C_MORE;
			c->in_start += NBD_CLIENT_FLAGS_LEN;
			if (nbd_parse_client_flags(p, &c->no_zeroes) < 0)
				conn_abort(c, "unknown client flags");
			else
				c->rd = RD_OPT_HDR;
			break;
		case RD_OPT_HDR:
			/* One option at a time: its replies must be out first. */
			if (output_pending(c)) {
				c->blocked = BLK_OUTPUT;
				return C_BLOCKED;
			}
			if (avail < NBD_OPT_HDR_LEN)
				return C_MORE;
			c->in_start += NBD_OPT_HDR_LEN;
			option_header(c, p);
			break;
		case RD_OPT_DATA:
			take = c->opt.length - c->opt_got;
			if (take > avail)
				take = avail;
			if (take) {
				memcpy(c->opt_buf + c->opt_got, p, take);
				c->opt_got += take;
				c->in_start += take;
			}
			if (c->opt_got < c->opt.length)
				return C_MORE;
			handle_option(c);
			break;
		case RD_OPT_DRAIN:
		case RD_REQ_DRAIN:
			take = c->drain_left < avail ? (size_t)c->drain_left : avail;
			c->in_start += take;
			c->drain_left -= take;
			if (c->drain_left)
				return C_MORE;
			if (c->rd == RD_OPT_DRAIN)
				handle_option(c);
			else
				c->rd = RD_REQ_HDR;
			break;
		case RD_REQ_HDR:
			if (!conn_has_room(c)) {
				c->blocked = BLK_ROOM;
				return C_BLOCKED;
			}
			if (avail < NBD_REQUEST_LEN)
				return C_MORE;
			c->in_start += NBD_REQUEST_LEN;
			request_header(c, p);
			break;
		case RD_REQ_DATA:
			take = c->cur->io.len - c->cur_got;
			if (take > avail)
				take = avail;
			if (take) {
				memcpy((uint8_t *)c->cur->buf + c->cur_got, p, take);
				c->cur_got += take;
				c->in_start += take;
			}
			if (c->cur_got < c->cur->io.len)
				return C_MORE;
			submit(c, c->cur);
			c->cur = NULL;
			c->rd = RD_REQ_HDR;
			break;
		}
	}
}

/* One recvmsg: the rest of a write payload goes straight into its I/O
 * buffer, and whatever follows (the next headers) into the staging
 * buffer, so small pipelined requests cost one syscall per batch. */
static ssize_t conn_recv(struct nbd_conn *c)
{
	struct iovec iov[2];
	struct msghdr msg = {.msg_iov = iov};
	ssize_t n;
	size_t direct = 0;
	int cnt = 0;

	if (c->in_start == c->in_end) {
		c->in_start = c->in_end = 0;
	} else if (c->in_start) {
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	if (c->rd == RD_REQ_DATA && c->in_end == 0) {
		direct = c->cur->io.len - c->cur_got;
		iov[cnt++] = (struct iovec){(uint8_t *)c->cur->buf + c->cur_got, direct};
	}
	if (c->in_end < IN_BUF_SIZE)
		iov[cnt++] = (struct iovec){c->in + c->in_end, IN_BUF_SIZE - c->in_end};
	msg.msg_iovlen = (size_t)cnt;
	do {
		n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n <= direct) {
		c->cur_got += (size_t)n;
	} else {
		c->cur_got += direct;
		c->in_end += (size_t)n - direct;
	}
	return n;
}

static void conn_pump(struct nbd_conn *c)
{
	int rounds = 0;
	ssize_t n;

	for (;;) {
		if (conn_consume(c) != C_MORE)
			return;
		if (c->rd_eof) {
			/* Mid-header or mid-payload: drop the partial request. */
			conn_stop_input(c);
			return;
		}
		if (rounds++ == RECV_ROUNDS) {
			if (c->hup) { /* no epoll event will come back */
				c->resume = true;
				conn_kick(c);
			}
			return;
		}
		n = conn_recv(c);
		if (n > 0)
			continue;
		if (n == 0 || c->hup) {
			c->rd_eof = true;
			continue;
		}
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return;
		conn_abort(c, "receive failed");
		return;
	}
}

static void conn_kick_cb(void *opaque)
{
	struct nbd_conn *c = opaque;

	if (c->resume) {
		c->resume = false;
		conn_pump(c);
	}
	conn_flush(c);
	conn_update_events(c);
	if (conn_done(c) && !c->kick.queued)
		conn_free(c);
}

static void conn_event(void *opaque, uint32_t events)
{
	struct nbd_conn *c = opaque;

	if (events & EPOLLERR) {
		conn_abort(c, "socket error");
		return;
	}
	if (events & EPOLLHUP) {
		/* Fully hung up: HUP stays raised whatever we ask for, so stop
		 * polling and drain what is left from kicks. */
		td_loop_del_fd(c->srv->loop, c->watch);
		c->watch = NULL;
		c->hup = true;
		c->resume = true;
		conn_kick(c);
		return;
	}
	if (events & EPOLLOUT)
		conn_flush(c);
	if (events & EPOLLIN)
		conn_pump(c);
	conn_update_events(c);
	if (conn_done(c))
		conn_kick(c);
}

static void conn_hs_timeout(void *opaque)
{
	struct nbd_conn *c = opaque;

	if (!c->transmission && c->rd != RD_STOP)
		conn_abort(c, "handshake timeout");
}

static int conn_new(struct nbd_server *s, int fd)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->srv = s;
	c->fd = fd;
	c->rd = RD_CLIENT_FLAGS;
	td_defer_init(&c->kick, conn_kick_cb, c);
	td_timer_init(&c->hs_timer, conn_hs_timeout, c);
	nbd_encode_greeting(c->hs_out);
	c->hs_len = NBD_GREETING_LEN;
	{
		int sz = 4 << 20;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	c->events = EPOLLIN;
	c->watch = td_loop_add_fd(s->loop, fd, c->events, conn_event, c);
	if (!c->watch) {
		int rc = -errno;

		free(c);
		return rc ? rc : -ENOMEM;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	td_loop_timer_arm(s->loop, &c->hs_timer, NBD_HANDSHAKE_TIMEOUT_S * NS_PER_S);
	td_dbg("nbd: fd %d: new connection (%u)", fd, s->nconns);
	conn_flush(c);
	conn_update_events(c);
	return 0;
}

/* ---- server ---- */

static void accept_resume(void *opaque)
{
	struct nbd_server *s = opaque;

	if (s->lwatch)
		td_loop_mod_fd(s->loop, s->lwatch, EPOLLIN);
}

static void srv_accept(void *opaque, uint32_t events)
{
	struct nbd_server *s = opaque;
	int i, fd;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of fds or memory: back off instead of spinning. */
			td_warn("nbd: accept: %s", strerror(errno));
			td_loop_mod_fd(s->loop, s->lwatch, 0);
			td_loop_timer_arm(s->loop, &s->accept_timer, ACCEPT_RETRY_NS);
			return;
		}
		if (s->nconns >= NBD_MAX_CONNS) {
			if (s->refused++ % 1000 == 0)
				td_warn("nbd: refusing connection: %d connections already",
					NBD_MAX_CONNS);
			close(fd);
			continue;
		}
		if (conn_new(s, fd) < 0) {
			td_warn("nbd: cannot set up a connection");
			close(fd);
		}
	}
}

static void shutdown_done(void *opaque)
{
	struct nbd_server *s = opaque;
	void (*cb)(void *) = s->shutdown_cb;

	td_loop_timer_cancel(s->loop, &s->shutdown_timer);
	s->shutdown_cb = NULL;
	if (cb)
		cb(s->shutdown_opaque);
}

/* Clients that do not read their last replies do not hold up shutdown
 * forever; requests still in the disk are waited for regardless. */
static void shutdown_grace_expired(void *opaque)
{
	struct nbd_server *s = opaque;
	struct nbd_conn *c;

	for (c = s->conns; c; c = c->next)
		if (!c->wr_dead)
			conn_abort(c, "shutdown: replies not read in time");
}

struct nbd_server *nbd_server_new(struct td_loop *loop, struct vbd *vbd, int listen_fd,
				  const char *export_name)
{
	struct nbd_server *s = NULL;
	int fl, err = EINVAL;

	if (export_name && strlen(export_name) > NBD_MAX_STRING)
		goto fail;
	err = ENOMEM;
	if (!(s = calloc(1, sizeof(*s))))
		goto fail;
	s->loop = loop;
	s->vbd = vbd;
	s->listen_fd = listen_fd;
	td_timer_init(&s->accept_timer, accept_resume, s);
	td_timer_init(&s->shutdown_timer, shutdown_grace_expired, s);
	td_defer_init(&s->shutdown_defer, shutdown_done, s);
	if (export_name && !(s->export_name = strdup(export_name)))
		goto fail;
	fl = fcntl(listen_fd, F_GETFL);
	if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		err = errno;
		goto fail;
	}
	s->lwatch = td_loop_add_fd(loop, listen_fd, EPOLLIN, srv_accept, s);
	if (!s->lwatch) {
		err = errno ? errno : ENOMEM;
		goto fail;
	}
	return s;
fail:
	if (s)
		free(s->export_name);
	free(s);
	errno = err;
	return NULL;
}

void nbd_server_shutdown(struct nbd_server *s, void (*cb)(void *opaque), void *opaque)
{
	struct nbd_conn *c;

	s->shutting_down = true;
	s->shutdown_cb = cb;
	s->shutdown_opaque = opaque;
	if (s->lwatch) {
		td_loop_del_fd(s->loop, s->lwatch);
		s->lwatch = NULL;
	}
	td_loop_timer_cancel(s->loop, &s->accept_timer);
	/* Connections are only freed from their kick, never here. */
	for (c = s->conns; c; c = c->next) {
		if (!c->transmission) {
			conn_abort(c, "server shutting down");
		} else {
			conn_stop_input(c);
			conn_kick(c);
		}
	}
	if (s->nconns == 0)
		td_loop_defer(s->loop, &s->shutdown_defer);
	else
		td_loop_timer_arm(s->loop, &s->shutdown_timer, SHUTDOWN_GRACE_NS);
}

void nbd_server_free(struct nbd_server *s)
{
	if (!s)
		return;
	if (s->nconns) {
		/* Their requests may still complete into them: leak, loudly. */
		td_err("nbd: server freed with %u connections open", s->nconns);
		return;
	}
	if (s->lwatch)
		td_loop_del_fd(s->loop, s->lwatch);
	td_loop_timer_cancel(s->loop, &s->accept_timer);
	td_loop_timer_cancel(s->loop, &s->shutdown_timer);
	free(s->export_name);
	free(s);
}

unsigned nbd_server_connections(const struct nbd_server *s)
{
	return s->nconns;
}
