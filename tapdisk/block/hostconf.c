#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tapdisk/block/hostconf.h"
#include "tapdisk/core/util.h"

int td_path_normalize(char *path)
{
	char *out = path, *p = path;

	if (path[0] != '/')
		return -EINVAL;
	while (*p) {
		char *seg, *end;
		size_t len;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		seg = p;
		end = strchr(seg, '/');
		len = end ? (size_t)(end - seg) : strlen(seg);
		p = seg + len;
		if (len == 1 && seg[0] == '.')
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			if (out == path)
				return -EINVAL; /* above the root */
			while (out > path && *--out != '/')
				;
			continue;
		}
		*out++ = '/';
		memmove(out, seg, len);
		out += len;
	}
	if (out == path)
		*out++ = '/';
	*out = 0;
	return 0;
}

void td_hostconf_clear(struct td_hostconf *c)
{
	for (int i = 0; i < c->ndirs; i++)
		free(c->backing_dirs[i]);
	memset(c, 0, sizeof(*c));
	c->uid_first = TD_UID_RANGE_FIRST;
	c->uid_last = TD_UID_RANGE_LAST;
	snprintf(c->qos_dir, sizeof(c->qos_dir), "%s", TD_QOS_DIR);
	c->ring_poll_us = TD_RING_POLL_US_DEFAULT;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static int parse_uid_range(char *v, struct td_hostconf *c)
{
	unsigned long long a, b;
	char *end;

	errno = 0;
	a = strtoull(v, &end, 10);
	if (errno || end == v || *end != '-')
		return -EINVAL;
	v = end + 1;
	b = strtoull(v, &end, 10);
	if (errno || end == v || *end)
		return -EINVAL;
	/* never root, never the overflow/nobody ids, at most 2^31 */
	if (a == 0 || b < a || b >= 0x7fffffffull)
		return -ERANGE;
	c->uid_first = (uid_t)a;
	c->uid_last = (uid_t)b;
	return 0;
}

static int parse_dirs(char *v, struct td_hostconf *c, char *why, size_t whylen)
{
	char *save = NULL, *d;

	for (d = strtok_r(v, " \t", &save); d; d = strtok_r(NULL, " \t", &save)) {
		char *copy;

		if (c->ndirs == TD_HOSTCONF_MAX_DIRS) {
			snprintf(why, whylen, "more than %d backing-dirs", TD_HOSTCONF_MAX_DIRS);
			return -E2BIG;
		}
		copy = strdup(d);
		if (!copy)
			return -ENOMEM;
		if (td_path_normalize(copy) < 0 || !strcmp(copy, "/")) {
			snprintf(why, whylen,
				 "backing-dirs entry '%.200s' is not an absolute "
				 "directory below /",
				 d);
			free(copy);
			return -EINVAL;
		}
		c->backing_dirs[c->ndirs++] = copy;
	}
	return 0;
}

static int parse_count(const char *v, uint64_t *out)
{
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static int parse_qos_dir(const char *v, struct td_hostconf *c, char *why, size_t whylen)
{
	char d[sizeof(c->qos_dir)];

	if (snprintf(d, sizeof(d), "%s", v) >= (int)sizeof(d) || td_path_normalize(d) < 0 ||
	    !strcmp(d, "/") || strpbrk(d, " \t")) {
		snprintf(why, whylen, "qos-dir '%.200s' is not an absolute directory below /", v);
		return -EINVAL;
	}
	snprintf(c->qos_dir, sizeof(c->qos_dir), "%s", d);
	return 0;
}

int td_hostconf_parse(const char *text, struct td_hostconf *out, char *err, size_t errlen)
{
	char *copy = strdup(text), *line, *next, why[300];
	int lineno = 0, rc = 0;

	td_hostconf_clear(out);
	if (!copy)
		return -ENOMEM;
	for (line = copy; line; line = next) {
		char *hash, *eq, *key, *val;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		hash = strchr(line, '#');
		lineno++;
		if (hash)
			*hash = 0;
		line = trim(line);
		if (!*line)
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, errlen, "line %d: expected 'setting = value'", lineno);
			rc = -EINVAL;
			break;
		}
		*eq = 0;
		key = trim(line);
		val = trim(eq + 1);
		why[0] = 0;
		if (!strcmp(key, "uid-range")) {
			rc = parse_uid_range(val, out);
			if (rc < 0)
				snprintf(
				    why, sizeof(why),
				    "uid-range must be FIRST-LAST, 0 < FIRST <= LAST < 2^31-1");
		} else if (!strcmp(key, "backing-dirs")) {
			rc = parse_dirs(val, out, why, sizeof(why));
		} else if (!strcmp(key, "qos-host-iops") || !strcmp(key, "qos-host-bps")) {
			uint64_t *v = key[9] == 'i' ? &out->qos_host_iops : &out->qos_host_bps;

			rc = key[9] == 'i' ? parse_count(val, v) : td_parse_size(val, v);
			if (rc < 0)
				snprintf(
				    why, sizeof(why), "%s must be %s (0: no host arbiter)", key,
				    key[9] == 'i' ? "a whole number"
						  : "bytes with an optional K, M, G or T suffix");
		} else if (!strcmp(key, "qos-dir")) {
			rc = parse_qos_dir(val, out, why, sizeof(why));
		} else if (!strcmp(key, "ring-poll-us")) {
			rc = parse_count(val, &out->ring_poll_us);
			if (rc == 0 && out->ring_poll_us > TD_RING_POLL_US_MAX)
				rc = -ERANGE;
			if (rc < 0)
				snprintf(why, sizeof(why),
					 "ring-poll-us must be a whole number of microseconds "
					 "from 0 (never poll) to %u",
					 TD_RING_POLL_US_MAX);
		} else {
			snprintf(why, sizeof(why),
				 "unknown setting '%.64s' (known: uid-range, backing-dirs, "
				 "qos-host-iops, qos-host-bps, qos-dir, ring-poll-us)",
				 key);
			rc = -EINVAL;
		}
		if (rc < 0) {
			snprintf(err, errlen, "line %d: %s", lineno, why[0] ? why : strerror(-rc));
			break;
		}
	}
	free(copy);
	if (rc < 0)
		td_hostconf_clear(out);
	return rc;
}

static struct td_hostconf conf;
static bool conf_loaded;

const struct td_hostconf *td_hostconf(char *err, size_t errlen)
{
	const char *path = getenv("TDCRYPT_CONF");
	char text[16384];
	struct stat st;
	ssize_t n;
	int fd, rc;

	if (conf_loaded)
		return &conf;
	if (!path || !*path)
		path = TD_HOSTCONF_PATH;
	td_hostconf_clear(&conf);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT) {
			conf_loaded = true;
			return &conf; /* the defaults */
		}
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_uid != 0 || (st.st_mode & 022)) {
		/* whoever can write it chooses the uids and the backing directories */
		snprintf(err, errlen,
			 "%s must belong to root and be writable by root only (it is uid %u, "
			 "mode %03o): refusing it",
			 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
		close(fd);
		return NULL;
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(text) - 1) {
		snprintf(err, errlen, "cannot read %s: %s", path,
			 n < 0 ? strerror(errno) : "too long");
		return NULL;
	}
	text[n] = 0;
	rc = td_hostconf_parse(text, &conf, err, errlen);
	if (rc < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", path, why);
		return NULL;
	}
	snprintf(conf.path, sizeof(conf.path), "%s", path);
	conf_loaded = true;
	return &conf;
}
