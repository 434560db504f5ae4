/* The integrity layer's spec options, which crypt passes on when it
 * inserts the layer (crypt,journal-partial=2,tag-cache=64M:aio:/img):
 * tuning only, never the format or the checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integrity/integrity.h"
#include "tapdisk/core/util.h"

/* One option: 1 when it is one of ours, 0 when not, -EINVAL. */
static int option(const char *tok, struct ti_tuning *t, const char *who, char *err, size_t errlen)
{
	uint64_t v;

	if (!strncmp(tok, "journal-partial=", 16)) {
		if (td_parse_size(tok + 16, &v) < 0 || strpbrk(tok + 16, "KkMmGg") || v < 1 ||
		    v > TI_JOURNAL_PARTIAL_MAX) {
			snprintf(err, errlen,
				 "%s: bad option '%s' (journal-partial=1..%u: journal writes in "
				 "flight before a half-filled journal block waits)",
				 who, tok, TI_JOURNAL_PARTIAL_MAX);
			return -EINVAL;
		}
		t->journal_partial = (unsigned)v;
		return 1;
	}
	if (!strncmp(tok, "tag-cache=", 10)) {
		if (td_parse_size(tok + 10, &v) < 0 || v < TI_TAG_CACHE_MIN ||
		    v > TI_TAG_CACHE_MAX) {
			snprintf(err, errlen,
				 "%s: bad option '%s' (tag-cache=1M..4G: bytes of integrity tags "
				 "cached, K/M/G suffixes)",
				 who, tok);
			return -EINVAL;
		}
		t->tag_cache = v;
		return 1;
	}
#ifdef TD_TEST_BUILD
	if (!strcmp(tok, "test-switch-stall=1")) {
		t->test_switch_stall = true;
		return 1;
	}
#endif
	return 0;
}

struct parse_ctx {
	struct ti_tuning *t;
	const char *who;
	char *err;
	size_t errlen;
};

static int one_option(char *tok, void *opaque)
{
	struct parse_ctx *c = opaque;
	int rc = option(tok, c->t, c->who, c->err, c->errlen);

	if (rc == 0) {
		snprintf(c->err, c->errlen,
			 "%s: unknown option '%s' (known: journal-partial=N, tag-cache=SIZE)",
			 c->who, tok);
		return -EINVAL;
	}
	return rc < 0 ? rc : 0;
}

int ti_tuning_parse(const char *opts, struct ti_tuning *t, const char *who, char *err,
		    size_t errlen)
{
	struct parse_ctx c = {t, who, err, errlen};

	return td_opts_each(opts, one_option, &c);
}
