/* Parsing what follows "ram:" (tapdisk/drivers/ram.h): a size, or a name
 * with its options. A name never starts with a digit, so the two forms
 * cannot be mistaken for each other. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tapdisk/core/util.h"
#include "tapdisk/drivers/ram.h"

#define FORMS "ram:SIZE or ram:NAME,size=SIZE[,shm=GROUP], e.g. ram:1G or ram:vm1,size=512M"

static int size_of(const char *v, uint64_t *out, char *err, size_t errlen)
{
	int rc = td_parse_size(v, out);

	if (rc == -ERANGE || (rc == 0 && *out > TD_RAM_MAX_SIZE)) {
		snprintf(err, errlen, "ram: size '%.40s' is too large (at most %lluT)", v,
			 TD_RAM_MAX_SIZE >> 40);
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(err, errlen,
			 "ram: '%.40s' is not a size (digits with an optional K, M, G or T "
			 "suffix, e.g. 512M)",
			 v);
		return -EINVAL;
	}
	if (*out == 0 || *out % 4096) {
		snprintf(err, errlen,
			 "ram: size %llu is %s (a RAM disk is a whole number of 4K blocks, e.g. "
			 "ram:64M)",
			 (unsigned long long)*out, *out ? "not a multiple of 4096" : "empty");
		return -EINVAL;
	}
	return 0;
}

static bool name_char(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return true;
	return !first && ((c >= '0' && c <= '9') || c == '-' || c == '.');
}

static bool group_ok(const char *g)
{
	if (!*g)
		return false;
	for (; *g; g++)
		if (!name_char(*g, false) && !(*g >= '0' && *g <= '9'))
			return false;
	return true;
}

int td_ram_parse(const char *path, struct td_ram_spec *out, char *err, size_t errlen)
{
	char buf[512], *opt, *save = NULL;
	const char *comma = strchr(path, ',');
	size_t nlen = comma ? (size_t)(comma - path) : strlen(path);
	bool have_size = false;

	memset(out, 0, sizeof(*out));
	if (strlen(path) >= sizeof(buf)) {
		snprintf(err, errlen, "ram: the spec is too long (expected " FORMS ")");
		return -EINVAL;
	}
	if (nlen == 0) {
		snprintf(err, errlen, "ram: nothing before ',' (expected " FORMS ")");
		return -EINVAL;
	}
	if (path[0] >= '0' && path[0] <= '9') {
		/* an anonymous RAM disk: a size and nothing else */
		char head[64];
		uint64_t v;

		snprintf(head, sizeof(head), "%.*s", (int)(nlen < 63 ? nlen : 63), path);
		if (comma && td_parse_size(head, &v) < 0) {
			snprintf(err, errlen,
				 "ram: '%s' is not a size, nor a name (a name starts with a letter "
				 "or '_'; expected " FORMS ")",
				 head);
			return -EINVAL;
		}
		if (comma) {
			snprintf(err, errlen,
				 "ram: '%.80s': options need a named RAM disk (expected " FORMS ")",
				 path);
			return -EINVAL;
		}
		return size_of(path, &out->size, err, errlen);
	}
	for (size_t i = 0; i < nlen; i++) {
		if (!name_char(path[i], i == 0) || i >= TD_SHM_NAME_MAX) {
			snprintf(
			    err, errlen,
			    "ram: '%.*s' is neither a size nor a name (a name starts with a "
			    "letter or '_', holds letters, digits, '_', '-' and '.', at most %d "
			    "characters; expected " FORMS ")",
			    (int)(nlen > 80 ? 80 : nlen), path, TD_SHM_NAME_MAX);
			return -EINVAL;
		}
	}
	memcpy(out->name, path, nlen);
	if (!comma) {
		snprintf(err, errlen,
			 "ram: '%.80s' names a RAM disk without its size (ram:%.80s,size=SIZE, "
			 "e.g. ram:%.80s,size=1G)",
			 path, path, path);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", comma + 1);
	for (opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		if (!strncmp(opt, "size=", 5)) {
			if (have_size) {
				snprintf(err, errlen, "ram: size= is given twice");
				return -EINVAL;
			}
			if (size_of(opt + 5, &out->size, err, errlen) < 0)
				return -EINVAL;
			have_size = true;
		} else if (!strncmp(opt, "shm=", 4)) {
			if (out->group[0] || !group_ok(opt + 4) ||
			    strlen(opt + 4) >= sizeof(out->group)) {
				snprintf(err, errlen,
					 "ram: bad shm= '%.64s' (one group name or gid: the group "
					 "that may map the RAM disk read-only)",
					 opt + 4);
				return -EINVAL;
			}
			snprintf(out->group, sizeof(out->group), "%s", opt + 4);
		} else {
			snprintf(
			    err, errlen,
			    "ram: unknown option '%.64s' (a named RAM disk takes size=SIZE and "
			    "shm=GROUP)",
			    opt);
			return -EINVAL;
		}
	}
	if (!have_size || strstr(comma, ",,") || comma[strlen(comma) - 1] == ',') {
		snprintf(err, errlen,
			 have_size ? "ram: empty option in '%.80s' (expected " FORMS ")"
				   : "ram: '%.80s' has no size= (expected " FORMS ")",
			 path);
		return -EINVAL;
	}
	return 0;
}
