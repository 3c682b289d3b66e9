#include "policy.h"

#include <stdlib.h>

policy_step_t policy_next(const policy_config_t *p, int64_t attempts_done, size_t count, int bisected,
                          int64_t oldest_ms, int64_t now_ms)
{
    int too_old = p->max_record_age_s > 0 && now_ms - oldest_ms > p->max_record_age_s * 1000;
    if (!too_old && !bisected && (p->attempts < 0 || attempts_done < p->attempts)) return POLICY_RETRY;
    if (p->bisect && count > 1 && !too_old) return POLICY_BISECT;
    return POLICY_FINAL;
}

int64_t policy_backoff_ms(const policy_config_t *p, int64_t attempt, unsigned *seed)
{
    int64_t d = p->backoff_ms;
    for (int64_t i = 1; i < attempt && d < p->max_backoff_ms; i++) d *= 2;
    if (d > p->max_backoff_ms) d = p->max_backoff_ms;
    /* full range [d/2, d]: retries of many shards do not fire in step */
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(rand_r(seed) % (unsigned)(d - half + 1)) : 0);
}

const char *policy_step_name(policy_step_t s)
{
    switch (s) {
    case POLICY_RETRY: return "retry";
    case POLICY_BISECT: return "bisect";
    case POLICY_FINAL: return "final";
    }
    return "unknown";
}
