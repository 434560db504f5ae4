/* libFuzzer harness for the VBD spec parser (tapdisk/block/spec.c).
 *
 * The input is a spec string. Whatever parses must format to a canonical
 * form that parses back to the same layers and path and formats to the
 * same string again; formatting into too small a buffer must fail cleanly.
 *
 * The real registry (tapdisk/registry/registry.c) pulls in every driver and their
 * I/O code, so this file sets a list of stand-ins with the same names and
 * shapes (td_drivers_set): spec.c only looks at name, alias and is_image. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/spec.h"

static const struct td_driver fake_aio = {.name = "aio", .summary = "raw", .is_image = true};
static const struct td_driver fake_qcow2 = {
    .name = "qcow2", .alias = "qcow", .summary = "qcow2", .is_image = true};
static const struct td_driver fake_crypt = {.name = "crypt", .summary = "xts"};
static const struct td_driver fake_integrity = {.name = "integrity", .summary = "hmac"};
static const struct td_driver fake_fault = {.name = "fault", .summary = "errors"};

static const struct td_driver *const drivers[] = {
    &fake_aio, &fake_fault, &fake_crypt, &fake_qcow2, &fake_integrity, NULL,
};

static void same_spec(const struct td_spec *a, const struct td_spec *b)
{
	assert(a->nlayers == b->nlayers);
	for (int i = 0; i < a->nlayers; i++) {
		assert(a->layers[i].drv == b->layers[i].drv);
		assert(!a->layers[i].opts == !b->layers[i].opts);
		if (a->layers[i].opts)
			assert(!strcmp(a->layers[i].opts, b->layers[i].opts));
	}
	assert(!strcmp(a->path, b->path));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char canon[2 * TD_SPEC_MAX_LEN], again[2 * TD_SPEC_MAX_LEN];
	struct td_spec s, s2;
	char err[512];
	char *str = malloc(size + 1);

	td_drivers_set(drivers);
	size_t clen;

	if (!str)
		return 0;
	memcpy(str, data, size);
	str[size] = 0;
	err[0] = 0;
	if (td_spec_parse(str, &s, err, sizeof(err)) < 0) {
		assert(err[0]); /* every refusal says why */
		goto out;
	}
	assert(s.nlayers >= 1 && s.nlayers <= TD_SPEC_MAX_LAYERS);
	assert(s.layers[s.nlayers - 1].drv->is_image);
	for (int i = 0; i < s.nlayers - 1; i++)
		assert(!s.layers[i].drv->is_image);
	assert(s.path && s.path[0]);

	assert(td_spec_format(&s, canon, sizeof(canon)) == 0);
	clen = strlen(canon);
	/* exactly enough room (with the NUL) works, one byte less does not */
	assert(td_spec_format(&s, again, clen + 1) == 0 && !strcmp(again, canon));
	assert(td_spec_format(&s, again, clen) == -ENAMETOOLONG);
	assert(td_spec_format(&s, again, clen / 2) == -ENAMETOOLONG);

	/* The canonical form of a spec can be one byte per alias longer than
	 * the input ("qcow:" -> "qcow2:") and so exceed the length limit;
	 * that is the only reason it may fail to parse back. */
	if (td_spec_parse(canon, &s2, err, sizeof(err)) < 0) {
		assert(clen >= TD_SPEC_MAX_LEN);
	} else {
		same_spec(&s, &s2);
		assert(td_spec_format(&s2, again, sizeof(again)) == 0 && !strcmp(again, canon));
		td_spec_free(&s2);
	}
	td_spec_free(&s);
out:
	free(str);
	return 0;
}
