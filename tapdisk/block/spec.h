/* VBD spec strings: [tap:]DRIVER[,OPT=VAL...][:DRIVER...]:PATH
 *
 * Drivers are read left to right; the first image driver (aio, qcow2)
 * ends the list and everything after its colon is the path (which may
 * itself contain colons). Options after a comma go to that driver, e.g.
 * "fault,fail_at=3:aio:/tmp/x.img". */
#ifndef TD_SPEC_H
#define TD_SPEC_H

#include <stddef.h>

#include "tapdisk/block/driver.h"

#define TD_SPEC_MAX_LAYERS 8
#define TD_SPEC_MAX_LEN 4096

struct td_spec_layer {
	const struct td_driver *drv;
	char *opts; /* NULL when none */
};

struct td_spec {
	int nlayers; /* layers[0] is the top, layers[nlayers-1] the image driver */
	struct td_spec_layer layers[TD_SPEC_MAX_LAYERS];
	char *path;
};

/* 0 or -EINVAL with a one-line reason in err. out must be freed with
 * td_spec_free on success only. */
int td_spec_parse(const char *s, struct td_spec *out, char *err, size_t errlen);
void td_spec_free(struct td_spec *s);
/* Do specs a and b stack the same drivers (options and path aside)? A
 * paused VBD accepts a new spec only then: otherwise `unpause -a
 * aio:PLAIN` would strip the encryption. 0, or -EINVAL with a message. */
int td_spec_same_layers(const char *a, const char *b, char *err, size_t errlen);
/* Writes the canonical form (no "tap:", aliases resolved) into buf. */
int td_spec_format(const struct td_spec *s, char *buf, size_t len);

#endif
