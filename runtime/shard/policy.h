/* policy: what happens to records whose processing failed (DESIGN.md
 * section 5). Pure decisions, no I/O, so they are unit-tested and the
 * simulation drives them as they are.
 *
 * The shard keeps its records in pieces, processed in order. When a call on
 * a piece fails, policy_next says what to do with that piece:
 *   retry   the same records again after policy_backoff_ms, while the
 *           piece's failed calls are within `retries` (-1: forever);
 *   split   (isolation, `bisect`) cut a piece of several records in halves:
 *           the good records are processed, the failing ones narrowed down;
 *           a half that fails is halved again at once, without retries;
 *   final   skip, dead-letter or halt (policy->final).
 * A single record gets its own retries before `final`: nothing is skipped
 * or dead-lettered that did not fail alone retries + 1 times, with backoff
 * between the tries, so a transient outage during isolation costs time, not
 * records. Records older than max_record_age_s skip the retries.
 *
 * The cost of isolating k failing records in a piece of n: its retries + 1
 * calls, then at most 2k * ceil(log2(n)) calls of halves, then `retries`
 * calls for each of the k records. */
#ifndef SHARDRUN_POLICY_H
#define SHARDRUN_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum {
    POLICY_RETRY,    /* run the same records again after policy_backoff_ms */
    POLICY_SPLIT,    /* cut in halves, process each (failing halves are cut again at once) */
    POLICY_FINAL,    /* skip, dead-letter or halt, per policy->final */
} policy_step_t;

typedef struct policy_failure {
    size_t count;         /* records in the failing piece */
    int64_t failures;     /* failed calls of exactly these records, this one included (>= 1) */
    int64_t oldest_ms;    /* arrival time of the oldest of them (wall clock, ms) */
    int64_t now_ms;       /* wall clock */
} policy_failure_t;

policy_step_t policy_next(const policy_config_t *p, const policy_failure_t *f);

/* The failures a new piece starts with after a split: a half of several
 * records is cut again at its first failure, a single record starts its own
 * retries. */
int64_t policy_split_failures(const policy_config_t *p, size_t count);

/* Delay before retry number `retry` (1-based): min(max, base * 2^(retry-1))
 * scaled by a random factor in [0.5, 1]. `seed` is the caller's rand_r state. */
int64_t policy_backoff_ms(const policy_config_t *p, int64_t retry, unsigned *seed);

const char *policy_step_name(policy_step_t s);

#endif
