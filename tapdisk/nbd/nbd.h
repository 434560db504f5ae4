/* The NBD server: serves one VBD to any number of NBD clients.
 *
 * Fixed newstyle handshake, simple replies only, everything non-blocking
 * on the loop thread. A connection is a pair of state machines: input
 * (handshake options, then request headers and write payloads read
 * straight into I/O buffers) and output (a queue of replies sent with
 * one sendmsg per batch, in completion order). Per-connection limits on
 * requests and payload bytes in flight stop reading from a client that
 * floods, so memory stays bounded whatever a client sends.
 *
 * Behaviour choices (the NBD spec leaves these open):
 *  - WRITE longer than 32 MiB: the payload is read and discarded in
 *    bounded chunks, then EINVAL; the connection stays usable.
 *  - Requests past the end (or with offset + length overflowing):
 *    ENOSPC for WRITE and WRITE_ZEROES (the spec's SHOULD), EINVAL for
 *    READ and TRIM.
 *  - Option data longer than NBD_OPT_DATA_MAX: drained, NBD_REP_ERR_TOO_BIG
 *    (EXPORT_NAME cannot carry an error: the connection is closed).
 *  - Hard disconnect on: unknown client flags, bad option or request
 *    magic, more than NBD_MAX_OPTIONS options, unknown EXPORT_NAME, a
 *    handshake not finished within NBD_HANDSHAKE_TIMEOUT_S.
 *  - Connections over NBD_MAX_CONNS are accepted and closed at once.
 *  - Flow control: a connection stops being read while it holds
 *    NBD_CONN_MAX_REQS requests or NBD_CONN_MAX_BYTES of payload (received,
 *    in the disk, or replies not yet sent), so it holds at most one more
 *    request (<= 32 MiB) than the byte limit.
 *  - Shutdown: input stops, in-flight requests finish and their replies
 *    are sent; a client that does not read them within 5 s is cut off
 *    (its requests still in the disk are waited for regardless). */
#ifndef TD_NBD_H
#define TD_NBD_H

#include "tapdisk/core/loop.h"
#include "tapdisk/block/vbd.h"

#define NBD_MAX_CONNS 64
#define NBD_MAX_OPTIONS 1024
#define NBD_HANDSHAKE_TIMEOUT_S 30
#define NBD_CONN_MAX_REQS 64u	       /* requests in flight per connection */
#define NBD_CONN_MAX_BYTES (64u << 20) /* payload bytes in flight per connection */

struct nbd_server;

/* Serves vbd on the already-listening socket listen_fd (set O_NONBLOCK here;
 * the caller keeps ownership of the fd). export_name: the name accepted
 * besides "" (may be NULL). NULL with errno set on failure. */
struct nbd_server *nbd_server_new(struct td_loop *loop, struct vbd *vbd, int listen_fd,
				  const char *export_name);
/* Stops accepting, closes every connection once its in-flight requests have
 * completed (never frees a connection whose vbd_io is still pending), then
 * calls cb(opaque) from the loop. */
void nbd_server_shutdown(struct nbd_server *s, void (*cb)(void *opaque), void *opaque);
void nbd_server_free(struct nbd_server *s); /* after shutdown's cb */
unsigned nbd_server_connections(const struct nbd_server *s);

#endif
