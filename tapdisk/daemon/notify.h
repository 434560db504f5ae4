/* The service manager's readiness protocol (systemd's sd_notify), without
 * libsystemd: one datagram, "READY=1", to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
 *
 * The socket is created and connected early, as root and before the
 * seccomp filter (which forbids creating sockets); td_notify_ready()
 * later only sends on it. Without $NOTIFY_SOCKET both do nothing. */
#ifndef TD_DAEMON_NOTIFY_H
#define TD_DAEMON_NOTIFY_H

/* Connects to $NOTIFY_SOCKET and unsets it (nothing we start inherits it).
 * Returns 0, or -errno: the caller warns and carries on unannounced. */
int td_notify_open(void);

/* Sends "READY=1" and a STATUS= line made from fmt, then closes the socket. */
void td_notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
