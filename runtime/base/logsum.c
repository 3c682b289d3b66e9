#include "logsum.h"

#include <stdio.h>

#include "log.h"

int logsum_failed(logsum_t *s, int64_t now_ms, const char *what, const char *scope, const char *error)
{
    if (!s->start_ms) {
        *s = (logsum_t){.start_ms = now_ms ? now_ms : 1, .line_ms = now_ms, .failures = 1};
        return 1;
    }
    s->failures++;
    s->unreported++;
    if (now_ms - s->line_ms >= LOGSUM_INTERVAL_MS) {
        char event[64], q[1024];
        snprintf(event, sizeof event, "%s_outage", what);
        log_warn(event, "%s failures=%lld new_failures=%lld outage_s=%.1f last_error=%s", scope,
                 (long long)s->failures, (long long)s->unreported, (double)(now_ms - s->start_ms) / 1000.0,
                 log_quote(error ? error : "-", q, sizeof q));
        s->line_ms = now_ms;
        s->unreported = 0;
    }
    return 0;
}

void logsum_ok(logsum_t *s, int64_t now_ms, const char *what, const char *scope)
{
    if (!s->start_ms) return;
    char event[64];
    snprintf(event, sizeof event, "%s_recovered", what);
    log_info(event, "%s outage_s=%.1f failures=%lld", scope, (double)(now_ms - s->start_ms) / 1000.0,
             (long long)s->failures);
    *s = (logsum_t){0};
}
