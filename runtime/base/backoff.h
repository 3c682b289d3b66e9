/* backoff: jittered exponential delays between retries.
 *
 * "Equal jitter": attempt n (1-based) waits uniformly in [d/2, d] with
 * d = min(max_ms, base_ms * 2^(n-1)): never at once again, yet peers that
 * failed together spread apart. The random number is the caller's, so each
 * retrier draws from its own generator (rand_r with its seed, or another). */
#ifndef SHARDRUN_BACKOFF_H
#define SHARDRUN_BACKOFF_H

#include <stdint.h>
#include <stdlib.h>

/* The delay for `attempt` with `random` as the jitter's draw. A base of 0 or
 * less counts as 1 ms (callers for which 0 means "at once" say so first). */
static inline int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t random)
{
    int64_t d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempt && d < max_ms; i++) d *= 2;
    if (d > max_ms) d = max_ms;
    int64_t half = d / 2;
    return half + (int64_t)(random % (uint64_t)(d - half + 1));
}

static inline int64_t backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, unsigned *seed)
{
    return backoff_delay_ms(base_ms, max_ms, attempt, (uint64_t)rand_r(seed));
}

#endif
