/* breaker: the poison-rate breaker of one stream (DESIGN.md section 5).
 *
 * Skipping and dead-lettering protect a stream from a few bad records; they
 * must not empty it when every record fails (a bad deploy, a broken
 * downstream). The breaker watches how the records of a stream end, over
 * all its shards: processed, or given up on (skipped, dead-lettered). Before
 * records are given up on, the shard asks: when the failing share of the
 * last `window` records, these included, would pass `threshold`, the breaker
 * trips instead, and nothing more is skipped or dead-lettered: the worker
 * rolls back a newly loaded script version, or halts the stream's shards.
 * It trips only once `window` records have ended since it was last reset (a
 * start, a new script version, a resume).
 *
 * Pure: counts in, a verdict out; no I/O. Loop thread only. */
#ifndef SHARDRUN_BREAKER_H
#define SHARDRUN_BREAKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct breaker {
    size_t window;           /* records looked at; 0: the breaker is off */
    double threshold;        /* failing share that trips, in (0, 1] */
    uint8_t *ring;           /* the last `window` outcomes: 1 failed, 0 processed */
    size_t pos, filled;
    size_t failing;          /* 1s in the ring */
    int64_t trips;           /* times it tripped, ever */
} breaker_t;

void breaker_init(breaker_t *b, size_t window, double threshold);
void breaker_clear(breaker_t *b);
/* Forgets every outcome (a new script version, a resume). */
void breaker_reset(breaker_t *b);

/* n records were processed. */
void breaker_processed(breaker_t *b, size_t n);
/* n records are about to be given up on: 1 if that trips the breaker (then
 * nothing is recorded, and they must not be given up on), else 0 and they
 * are recorded as failed. */
int breaker_give_up(breaker_t *b, size_t n);
/* The failing share of the records in the window now (0 when empty). */
double breaker_share(const breaker_t *b);

#endif
