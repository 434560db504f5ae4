#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapdisk/core/log.h"

static const char *td_prog = "tapdisk";
static enum td_log_level td_level = TD_LOG_INFO;

void td_log_init(const char *prog)
{
	const char *env = getenv("TD_DEBUG");

	td_prog = prog;
	if (env && *env && strcmp(env, "0") != 0)
		td_level = TD_LOG_DEBUG;
}

void td_log_set_level(enum td_log_level lvl)
{
	td_level = lvl;
}

void td_log(enum td_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	char line[1024];
	va_list ap;
	int n;

	if (lvl > td_level)
		return;
	n = snprintf(line, sizeof(line), "%s[%d]: %s: ", td_prog, (int)getpid(), names[lvl]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* one write per line so lines from several processes do not interleave */
	n = (int)strlen(line);
	if (n < (int)sizeof(line) - 1)
		line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
