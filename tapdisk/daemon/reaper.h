/* Removing a tapdisk's socket files when it ends.
 *
 * A tapdisk that became a uid of its own (tapdisk/daemon/uidalloc.h) cannot
 * remove its sockets from a directory of root's, and a stale socket file
 * makes the next client fail with "connection refused" until a new server
 * replaces it. So a tapdisk started as root first forks a small helper,
 * before any image, key or client is touched. The helper stays root and
 * does one thing: it learns the socket paths (and their inodes) while the
 * tapdisk is still root, takes no more once the tapdisk seals the list,
 * and when the tapdisk says it is done, or dies (kill -9 included),
 * removes each path that is still that very socket. Nothing else reaches
 * it from the tapdisk. */
#ifndef TD_REAPER_H
#define TD_REAPER_H

/* Forks the helper (root only; a no-op otherwise). 0 or -errno. */
int td_reaper_start(void);
/* Registers a socket path (before td_reaper_seal). */
void td_reaper_add(const char *path);
/* No more paths: whatever comes later is ignored. */
void td_reaper_seal(void);
/* At a clean exit: the helper removes the sockets now; returns when done. */
void td_reaper_finish(void);
/* Is a helper running (so the caller need not unlink itself)? */
int td_reaper_active(void);

#endif
