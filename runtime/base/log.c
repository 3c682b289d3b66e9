#include "log.h"

#include "logjson.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static log_level_t log_min_level = LOG_INFO;
static int log_fd = 2;
static int log_json;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level_t level) { log_min_level = level; }
void log_set_fd(int fd) { log_fd = fd; }
void log_set_json(int json) { log_json = json; }

const char *log_quote(const char *s, char *out, size_t outsz)
{
    if (!s) return "-";
    int plain = *s != '\0';
    for (const char *p = s; *p && plain; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20) plain = 0;
    if (plain) return s;
    size_t o = 0;
    if (outsz < 3) return "\"\"";
    out[o++] = '"';
    for (const char *p = s; *p && o + 3 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else if (c == '\t') { out[o++] = '\\'; out[o++] = 't'; }
        else if (c < 0x20) out[o++] = '?';
        else out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* The key=value line just formatted, as a JSON object (logjson.h): the
 * ts, level and event are the line's first three fields. Leaves room for
 * the newline. */
static size_t log_event_json(char *line, size_t len, char *out, size_t outsz)
{
    line[len] = '\0';
    char ts[40] = "", level[8] = "", event[128] = "";
    int n = 0;
    if (sscanf(line, "ts=%39s level=%7s event=%127s%n", ts, level, event, &n) < 3) n = 0;
    return logjson_format(out, outsz - 1, ts, level, event, line + n);
}

void log_eventv(log_level_t level, const char *event, const char *fmt, va_list ap)
{
    if (level < log_min_level) return;
    char line[8192];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), log_level_names[level], event);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fmt && *fmt && len + 2 < sizeof line) {
        line[len++] = ' ';
        int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
        if (m > 0) len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
    }
    if (len + 1 >= sizeof line) len = sizeof line - 2;
    char json[8192];
    if (log_json) len = log_event_json(line, len, json, sizeof json);
    char *text = log_json ? json : line;
    text[len++] = '\n';
    /* one write per line keeps lines whole across threads and processes */
    if (write(log_fd, text, len) < 0) {
        /* stderr gone: nothing sensible to do */
    }
}

void log_event(log_level_t level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_eventv(level, event, fmt, ap);
    va_end(ap);
}
