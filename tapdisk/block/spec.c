#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/block/spec.h"

static const struct td_driver *const no_drivers[] = {NULL};
static const struct td_driver *const *drivers = no_drivers;

void td_drivers_set(const struct td_driver *const *list)
{
	drivers = list ? list : no_drivers;
}

const struct td_driver *const *td_driver_list(void)
{
	return drivers;
}

const struct td_driver *td_driver_find(const char *name)
{
	const struct td_driver *const *d;

	for (d = drivers; *d; d++)
		if (!strcmp((*d)->name, name) || ((*d)->alias && !strcmp((*d)->alias, name)))
			return *d;
	return NULL;
}

void td_spec_free(struct td_spec *s)
{
	int i;

	for (i = 0; i < s->nlayers; i++)
		free(s->layers[i].opts);
	free(s->path);
	memset(s, 0, sizeof(*s));
}

static void known_drivers(char *buf, size_t len)
{
	const struct td_driver *const *d;
	size_t n = 0;

	buf[0] = 0;
	for (d = td_driver_list(); *d && n < len; d++) {
		int w = snprintf(buf + n, len - n, "%s%s%s%s", n ? ", " : "", (*d)->name,
				 (*d)->alias ? "/" : "", (*d)->alias ? (*d)->alias : "");
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static int valid_opts(const char *o)
{
	for (; *o; o++)
		if (*o < 0x21 || *o > 0x7e)
			return 0;
	return 1;
}

int td_spec_parse(const char *s, struct td_spec *out, char *err, size_t errlen)
{
	char known[256];
	const char *p, *colon;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!s || !*s) {
		snprintf(err, errlen, "empty VBD spec (expected [tap:]DRIVER[:DRIVER...]:PATH)");
		goto fail;
	}
	if (strlen(s) >= TD_SPEC_MAX_LEN) {
		snprintf(err, errlen, "VBD spec is too long (%zu bytes, limit %d)", strlen(s),
			 TD_SPEC_MAX_LEN - 1);
		goto fail;
	}
	p = s;
	if (strncmp(p, "tap:", 4) == 0)
		p += 4;
	for (;;) {
		const struct td_driver *drv;
		char name[64];
		const char *comma;
		size_t tok;

		colon = strchr(p, ':');
		if (!colon) {
			if (out->nlayers == 0)
				snprintf(
				    err, errlen,
				    "spec '%s' names no driver (expected [tap:]DRIVER:PATH, e.g. "
				    "aio:%s)",
				    s, p);
			else
				snprintf(
				    err, errlen,
				    "spec '%s' has no image driver before the path (add aio: or "
				    "qcow2:, e.g. %.*saio:%s)",
				    s, (int)(p - s), s, p);
			goto fail;
		}
		tok = (size_t)(colon - p);
		comma = memchr(p, ',', tok);
		if (comma)
			tok = (size_t)(comma - p);
		if (tok == 0 || tok >= sizeof(name)) {
			snprintf(err, errlen,
				 "spec '%s': empty or overlong driver name at offset %zu", s,
				 (size_t)(p - s));
			goto fail;
		}
		memcpy(name, p, tok);
		name[tok] = 0;
		drv = td_driver_find(name);
		if (!drv) {
			known_drivers(known, sizeof(known));
			snprintf(err, errlen, "unknown driver '%s' in spec '%s' (known: %s)", name,
				 s, known);
			goto fail;
		}
		if (out->nlayers == TD_SPEC_MAX_LAYERS) {
			snprintf(err, errlen, "spec '%s' stacks more than %d drivers", s,
				 TD_SPEC_MAX_LAYERS);
			goto fail;
		}
		out->layers[out->nlayers].drv = drv;
		if (comma) {
			size_t olen = (size_t)(colon - comma - 1);

			if (olen == 0) {
				snprintf(err, errlen, "spec '%s': empty option list after '%s,'", s,
					 name);
				goto fail;
			}
			out->layers[out->nlayers].opts = strndup(comma + 1, olen);
			if (!out->layers[out->nlayers].opts) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			if (!valid_opts(out->layers[out->nlayers].opts)) {
				out->nlayers++;
				snprintf(err, errlen,
					 "spec '%s': options of '%s' contain spaces or "
					 "control characters",
					 s, name);
				goto fail;
			}
		}
		out->nlayers++;
		p = colon + 1;
		if (drv->is_image)
			break;
	}
	if (!*p) {
		snprintf(err, errlen, "spec '%s' has an empty path after '%s:'", s,
			 out->layers[out->nlayers - 1].drv->name);
		goto fail;
	}
	for (colon = p; *colon; colon++) {
		if ((unsigned char)*colon < 0x20) {
			snprintf(err, errlen, "spec '%s': path contains control characters", s);
			goto fail;
		}
	}
	out->path = strdup(p);
	if (!out->path) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return 0;
fail:
	td_spec_free(out);
	return rc;
}

int td_spec_format(const struct td_spec *s, char *buf, size_t len)
{
	size_t n = 0;
	int i, w;

	for (i = 0; i < s->nlayers; i++) {
		w = snprintf(buf + n, len - n, "%s%s%s:", s->layers[i].drv->name,
			     s->layers[i].opts ? "," : "",
			     s->layers[i].opts ? s->layers[i].opts : "");
		if (w < 0 || (size_t)w >= len - n)
			return -ENAMETOOLONG;
		n += (size_t)w;
	}
	w = snprintf(buf + n, len - n, "%s", s->path);
	if (w < 0 || (size_t)w >= len - n)
		return -ENAMETOOLONG;
	return 0;
}

int td_spec_same_layers(const char *old, const char *new, char *err, size_t errlen)
{
	struct td_spec a, b;
	int rc, i;

	rc = td_spec_parse(old, &a, err, errlen);
	if (rc < 0)
		return rc;
	rc = td_spec_parse(new, &b, err, errlen);
	if (rc < 0) {
		td_spec_free(&a);
		return rc;
	}
	rc = a.nlayers == b.nlayers ? 0 : -EINVAL;
	for (i = 0; rc == 0 && i < a.nlayers; i++)
		if (a.layers[i].drv != b.layers[i].drv)
			rc = -EINVAL;
	if (rc < 0) {
		char names[256];
		size_t n = 0;

		names[0] = 0;
		for (i = 0; i < a.nlayers && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n,
					      "%s:", a.layers[i].drv->name);
		snprintf(err, errlen,
			 "the new spec must stack the same drivers as the VBD (%s...): refusing to "
			 "change the layers of a running disk",
			 names);
	}
	td_spec_free(&a);
	td_spec_free(&b);
	return rc;
}
