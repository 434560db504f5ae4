/* What the power-loss simulators (tests/tools/growsim.c, reencsim.c) share:
 * a loop and its context, the data pattern and which blocks hold it, a file
 * copy, formatting a crypt image (crypt header under a given key, no
 * keyslot; integrity metadata of version 1 or 2, or none) and filling it,
 * and replaying a recorded request onto a crash image. Test code only. */
#ifndef TD_TESTS_SIMKIT_H
#define TD_TESTS_SIMKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/driver.h"
#include "tapdisk/core/loop.h"
#include "tapdisk/core/stats.h"

struct td_volkey;
struct td_record_op;

struct simkit_env {
	struct td_ctx ctx;
	struct td_stats_shared stats;
	struct td_timer tick;
};

/* splitmix64 over *state */
uint64_t simkit_rnd(uint64_t *state);
/* A loop with aio and workers in e->ctx, and a 1 ms timer that bounds every
 * wait of td_loop_run_once (see crashsim.c); the caller sets the key
 * sources. 0 or -ENOMEM. */
int simkit_env_init(struct simkit_env *e);
/* *out = a copy of k (for a td_ctx key source). */
int simkit_key_copy(const struct td_volkey *k, struct td_volkey **out, char *err, size_t errlen);
/* 4096 bytes that name block b and the run's magic. */
void simkit_pattern(uint8_t *p, uint64_t magic, uint64_t b);
/* The blocks the simulators write before the operation they crash: every
 * third block, except in every fourth tag page's range (128 blocks), so
 * some tag pages stay all zero (which a grow need not copy). */
bool simkit_written(uint64_t b);
/* Opens crypt:aio:img with e's key source, writes the pattern (magic) to
 * every simkit_written block, closes it; *size = its data size. Errors go
 * to stderr, prefixed with prog. 0 or a negative errno. */
int simkit_fill(struct simkit_env *e, const char *img, uint64_t magic, uint64_t *size,
		const char *prog);
/* Replays the first `upto` bytes of a recorded write (zeros for
 * write-zeroes and discard; nothing for other requests) onto fd. 0 or
 * -EIO. */
int simkit_apply(int fd, const struct td_record_op *op, uint64_t upto);
/* from -> to, then to truncated to size (unless 0). 0 or a negative errno. */
int simkit_copy_file(const char *from, const char *to, uint64_t size);
/* A new raw image at img of size bytes with a crypt header sealed under vk
 * (integrity 0 = none, else that metadata version); errors go to stderr,
 * prefixed with prog. */
int simkit_format(struct simkit_env *e, const char *img, uint64_t size, int integrity,
		  const struct td_volkey *vk, const char *prog);

#endif
