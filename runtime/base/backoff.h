/* backoff: jittered exponential delays between retries.
 *
 * "Equal jitter": attempt n (1-based) waits uniformly in [d/2, d] with
 * d = min(max_ms, base_ms * 2^(n-1)): never at once again, yet peers that
 * failed together spread apart. The seed is the caller's (rand_r), so each
 * retrier draws its own sequence. */
#ifndef SHARDRUN_BACKOFF_H
#define SHARDRUN_BACKOFF_H

#include <stdint.h>
#include <stdlib.h>

static inline int64_t backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, unsigned *seed)
{
    int64_t d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempt && d < max_ms; i++) d *= 2;
    if (d > max_ms) d = max_ms;
    int64_t half = d / 2;
    return half + (int64_t)rand_r(seed) % (d - half + 1);
}

#endif
