/* log: structured logging, one line per event.
 *
 * Every line is `ts=<RFC3339 ms> level=<lvl> event=<name> key=value ...`.
 * Values that contain spaces, quotes or '=' are quoted by log_kv_str(), so a
 * line can always be split back into fields. Never pass credentials here.
 * Thread-safe: a line is formatted into a local buffer and written with one
 * write(2) call. */
#ifndef SHARDRUN_LOG_H
#define SHARDRUN_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Sets the lowest level written (default LOG_INFO) and the output fd (default 2). */
void log_set_level(log_level_t level);
void log_set_fd(int fd);
/* 1: each line is one JSON object with the same fields (log_format = "json",
 * see logjson.h); 0: key=value (the default). */
void log_set_json(int json);

/* Writes one event line. `fmt` formats the key=value tail (may be NULL); use
 * log_quote() for values that come from outside (file names, errors, data). */
void log_event(log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_eventv(log_level_t level, const char *event, const char *fmt, va_list ap);

#define log_debug(ev, ...) log_event(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_event(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(LOG_ERROR, ev, __VA_ARGS__)

/* Quotes `s` for use as a value: returns `s` itself when it needs no quoting,
 * otherwise a "..." form with \" \\ \n escaped, written into `out` (truncated
 * to `outsz`, always NUL-terminated). The result is valid until `out` changes. */
const char *log_quote(const char *s, char *out, size_t outsz);

#endif
