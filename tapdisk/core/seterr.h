/* Formats a one-line error message into a caller's buffer (err may be
 * NULL). Shared by the pure parsers (crypt header, key-event log). */
#ifndef TD_SETERR_H
#define TD_SETERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4))) static inline void td_seterr(char *err, size_t errlen,
								   const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#endif
