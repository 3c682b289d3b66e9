/* policy: what happens to records whose processing failed.
 *
 * Pure decisions (no I/O), so they can be unit-tested:
 *   retry   the same records again after a jittered exponential backoff,
 *           up to `attempts` times (-1 = forever: nothing is ever skipped);
 *   bisect  split a failing batch in halves until single poison records are
 *           isolated; the good halves are processed and checkpointed in order;
 *   final   once retries (and bisection) are exhausted: skip, dead_letter or
 *           halt. Records older than max_record_age_s go to final at once.
 * The shard state machine (shard.c) carries these steps out. */
#ifndef SHARDRUN_POLICY_H
#define SHARDRUN_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum {
    POLICY_RETRY,    /* run the same records again after policy_backoff_ms */
    POLICY_BISECT,   /* split in halves, process each (no further retries) */
    POLICY_FINAL,    /* skip, dead-letter or halt, per policy->final */
} policy_step_t;

/* attempts_done: retries already made of these records; count: how many
 * records fail; bisected: they are a piece of a bisected batch; oldest_ms:
 * arrival time of the oldest of them; now_ms: wall clock. */
policy_step_t policy_next(const policy_config_t *p, int64_t attempts_done, size_t count, int bisected,
                          int64_t oldest_ms, int64_t now_ms);

/* Delay before retry number `attempt` (1-based): min(max, base * 2^(attempt-1))
 * scaled by a random factor in [0.5, 1]. `seed` is the caller's rand_r state. */
int64_t policy_backoff_ms(const policy_config_t *p, int64_t attempt, unsigned *seed);

const char *policy_step_name(policy_step_t s);

#endif
