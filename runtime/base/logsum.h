/* logsum: an outage told in a few lines instead of one per failure.
 *
 * A caller that fails again and again (HTTP retries against a host that is
 * down, lease writes while the store is unreachable) feeds each failure and
 * each success to a logsum_t embedded in its own state:
 *   - the first failure of an outage: logsum_failed returns 1 and the caller
 *     writes its own detailed line;
 *   - later failures are counted; once per LOGSUM_INTERVAL_MS logsum writes
 *     `<what>_outage <scope> failures=N new_failures=M outage_s=S last_error=...`;
 *   - the first success after failures writes
 *     `<what>_recovered <scope> outage_s=S failures=N`.
 * So a 30 s outage costs some five lines, whatever the retry rate. Loop
 * thread (one owner); no allocation. */
#ifndef SHARDRUN_LOGSUM_H
#define SHARDRUN_LOGSUM_H

#include <stdint.h>

#define LOGSUM_INTERVAL_MS 10000

typedef struct logsum {
    int64_t start_ms;    /* first failure of the outage; 0: none going on */
    int64_t line_ms;     /* when the last line about it was written */
    int64_t failures;    /* in this outage */
    int64_t unreported;  /* since that line */
} logsum_t;

/* A failure at now_ms (monotonic). `what` names the lines ("aws_http"),
 * `scope` is their key=value context ("host=127.0.0.1:4568"), `error` the
 * failure (quoted here). Returns 1 when the caller should log it in full. */
int logsum_failed(logsum_t *s, int64_t now_ms, const char *what, const char *scope, const char *error);

/* A success at now_ms: ends an outage (one `<what>_recovered` line). */
void logsum_ok(logsum_t *s, int64_t now_ms, const char *what, const char *scope);

#endif
