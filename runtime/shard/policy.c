#include "policy.h"

#include <limits.h>
#include <stdlib.h>

#include "base/backoff.h"

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
    if (p->backoff_ms <= 0) return 0; /* backoff_ms = 0: retry at once */
    return backoff_ms(p->backoff_ms, p->max_backoff_ms, retry > INT_MAX ? INT_MAX : (int)retry, seed);
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
