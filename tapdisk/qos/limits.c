#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tapdisk/core/util.h"
#include "tapdisk/qos/bucket.h"
#include "tapdisk/qos/limits.h"

enum kind { K_COUNT, K_BYTES, K_WEIGHT };

struct key {
	const char *name;
	enum kind kind;
	size_t off; /* of the uint64_t in struct td_qos_limits */
};

#define F(field, d) (offsetof(struct td_qos_limits, field) + (d) * sizeof(uint64_t))

static const struct key keys[] = {
    {"iops", K_COUNT, F(iops, TD_QOS_TOTAL)},
    {"read-iops", K_COUNT, F(iops, TD_QOS_READ)},
    {"write-iops", K_COUNT, F(iops, TD_QOS_WRITE)},
    {"bps", K_BYTES, F(bps, TD_QOS_TOTAL)},
    {"read-bps", K_BYTES, F(bps, TD_QOS_READ)},
    {"write-bps", K_BYTES, F(bps, TD_QOS_WRITE)},
    {"iops-burst", K_COUNT, F(iops_burst, TD_QOS_TOTAL)},
    {"read-iops-burst", K_COUNT, F(iops_burst, TD_QOS_READ)},
    {"write-iops-burst", K_COUNT, F(iops_burst, TD_QOS_WRITE)},
    {"bps-burst", K_BYTES, F(bps_burst, TD_QOS_TOTAL)},
    {"read-bps-burst", K_BYTES, F(bps_burst, TD_QOS_READ)},
    {"write-bps-burst", K_BYTES, F(bps_burst, TD_QOS_WRITE)},
    {"weight", K_WEIGHT, 0},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void td_qos_limits_default(struct td_qos_limits *q)
{
	memset(q, 0, sizeof(*q));
	q->weight = TD_QOS_WEIGHT_DEFAULT;
}

static int count_of(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* One KEY=VALUE; seen: the keys given so far (each at most once). */
static int one(const char *word, struct td_qos_limits *q, unsigned *seen, char *err, size_t errlen)
{
	const char *eq = strchr(word, '=');
	size_t nlen = eq ? (size_t)(eq - word) : strlen(word);
	uint64_t v = 0;
	int rc;

	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];

		if (strlen(k->name) != nlen || strncmp(k->name, word, nlen))
			continue;
		if (!eq) {
			snprintf(err, errlen, "qos: '%s' needs a value (%s=N)", k->name, k->name);
			return -EINVAL;
		}
		if (*seen & (1u << i)) {
			snprintf(err, errlen, "qos: '%s' is given twice", k->name);
			return -EINVAL;
		}
		*seen |= 1u << i;
		rc = k->kind == K_BYTES ? td_parse_size(eq + 1, &v) : count_of(eq + 1, &v);
		if (rc == 0 && k->kind == K_WEIGHT && (v < 1 || v > TD_QOS_WEIGHT_MAX))
			rc = -ERANGE;
		if (rc == 0 && v > TD_TB_MAX)
			rc = -ERANGE;
		if (rc < 0) {
			if (k->kind == K_WEIGHT)
				snprintf(err, errlen, "qos: bad weight '%.40s' (1 to %u)", eq + 1,
					 TD_QOS_WEIGHT_MAX);
			else
				snprintf(err, errlen, "qos: bad %s '%.40s' (%s, 0 for %s%s)",
					 k->name, eq + 1,
					 k->kind == K_BYTES
					     ? "bytes with an optional K, M, G or T suffix"
					     : "a whole number",
					 strstr(k->name, "-burst") ? "the default burst"
								   : "no limit",
					 rc == -ERANGE ? "; this one is too large" : "");
			return -EINVAL;
		}
		if (k->kind == K_WEIGHT)
			q->weight = (uint32_t)v;
		else
			*(uint64_t *)((char *)q + k->off) = v;
		return 0;
	}
	snprintf(err, errlen,
		 "qos: unknown setting '%.*s' (known: iops, read-iops, write-iops, bps, "
		 "read-bps, write-bps, their -burst forms, weight)",
		 (int)(nlen > 40 ? 40 : nlen), word);
	return -EINVAL;
}

int td_qos_limits_parse(const char *opts, struct td_qos_limits *q, char *err, size_t errlen)
{
	struct td_qos_limits n = *q;
	char buf[1024], *w, *save = NULL;
	unsigned seen = 0;

	if (!opts || !*opts)
		return 0;
	if (strlen(opts) >= sizeof(buf)) {
		snprintf(err, errlen, "qos: the settings are too long");
		return -EINVAL;
	}
	if (opts[0] == ',' || opts[strlen(opts) - 1] == ',' || strstr(opts, ",,")) {
		snprintf(err, errlen, "qos: empty setting in '%.80s'", opts);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
		if (one(w, &n, &seen, err, errlen) < 0)
			return -EINVAL;
	*q = n;
	return 0;
}

int td_qos_limits_format(const struct td_qos_limits *q, const char *prefix, const char *sep,
			 int underscores, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (size_t i = 0; i < NKEYS; i++) {
		char name[32];
		uint64_t v = keys[i].kind == K_WEIGHT
				 ? q->weight
				 : *(const uint64_t *)((const char *)q + keys[i].off);
		int w;

		snprintf(name, sizeof(name), "%s", keys[i].name);
		for (char *c = name; underscores && *c; c++)
			if (*c == '-')
				*c = '_';
		w = snprintf(buf + n, len - n, "%s%s%s=%llu", i ? sep : "", prefix, name,
			     (unsigned long long)v);
		if (w < 0 || (size_t)w >= len - n)
			return -ENOSPC;
		n += (size_t)w;
	}
	return 0;
}

int td_qos_limits_any(const struct td_qos_limits *q)
{
	for (int d = 0; d < TD_QOS_NDIR; d++)
		if (q->iops[d] || q->bps[d])
			return 1;
	return 0;
}
