#include "policy.h"

#include <stdlib.h>

static int policy_too_old(const policy_config_t *p, const policy_failure_t *f)
{
    return p->max_record_age_s > 0 && f->now_ms - f->oldest_ms > p->max_record_age_s * 1000;
}

policy_step_t policy_next(const policy_config_t *p, const policy_failure_t *f)
{
    int too_old = policy_too_old(p, f);
    if (!too_old && (p->retries < 0 || f->failures <= p->retries)) return POLICY_RETRY;
    if (p->isolate && f->count > 1) return POLICY_SPLIT;
    return POLICY_FINAL;
}

int64_t policy_split_failures(const policy_config_t *p, size_t count)
{
    if (count > 1 && p->retries >= 0) return p->retries + 1; /* retries spent: the next failure cuts again */
    return 0;
}

int64_t policy_backoff_ms(const policy_config_t *p, int64_t retry, unsigned *seed)
{
    int64_t d = p->backoff_ms;
    for (int64_t i = 1; i < retry && d < p->max_backoff_ms; i++) d *= 2;
    if (d > p->max_backoff_ms) d = p->max_backoff_ms;
    /* full range [d/2, d]: retries of many shards do not fire in step */
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(rand_r(seed) % (unsigned)(d - half + 1)) : 0);
}

const char *policy_step_name(policy_step_t s)
{
    switch (s) {
    case POLICY_RETRY: return "retry";
    case POLICY_SPLIT: return "bisect";
    case POLICY_FINAL: return "final";
    }
    return "unknown";
}
