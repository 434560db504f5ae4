/* Logging: one line per event on stderr (systemd/journald picks it up),
 * prefixed with the program name and pid.  Never log key material. */
#ifndef TD_LOG_H
#define TD_LOG_H

#include <stdarg.h>

enum td_log_level { TD_LOG_ERR, TD_LOG_WARN, TD_LOG_INFO, TD_LOG_DEBUG };

void td_log_init(const char *prog);
void td_log_set_level(enum td_log_level lvl);
void td_log(enum td_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define td_err(...) td_log(TD_LOG_ERR, __VA_ARGS__)
#define td_warn(...) td_log(TD_LOG_WARN, __VA_ARGS__)
#define td_info(...) td_log(TD_LOG_INFO, __VA_ARGS__)
#define td_dbg(...) td_log(TD_LOG_DEBUG, __VA_ARGS__)

#endif
