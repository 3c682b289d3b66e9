/* checkpoint: one shard's checkpoint writer.
 *
 * Positions only move forward, in (sequence number, sub-sequence number)
 * order with SHARD_END after every record: a request at or before the last
 * position asked for is dropped, so an advance inside one KPL aggregate is
 * written and nothing ever goes backwards. Requests are written at once, or
 * coalesced to one write per checkpoint_interval_ms. One write is in flight
 * at a time; a newer request waits for it and is sent when it answers.
 *
 * The write itself is the owner's (through the lease coordinator): `write`
 * starts it, and the owner reports the answer with checkpoint_answered().
 * Loop thread only; timers from the shard's scheduler. */
#ifndef SHARDRUN_CHECKPOINT_H
#define SHARDRUN_CHECKPOINT_H

#include <stdint.h>

#include "base/sched.h"

typedef void (*checkpoint_write_fn)(void *ud, const char *seq, int64_t sub);

typedef struct checkpoint {
    sched_t *sched;
    int64_t interval_ms;     /* 0: write every request at once */
    checkpoint_write_fn write;
    void *ud;
    char *written;           /* as last confirmed (or as the lease held it at the start) */
    int64_t written_sub;
    char *wanted;            /* asked for, not sent yet (NULL: nothing) */
    int64_t wanted_sub;
    char *sending;           /* in flight (NULL: nothing) */
    int64_t sending_sub;
    int refused;             /* a write was refused: the lease is gone, nothing more is written */
    sched_timer_t timer;     /* coalescing */
} checkpoint_t;

/* start: the lease's checkpoint (a sequence number or a sentinel), copied. */
void checkpoint_init(checkpoint_t *c, sched_t *sched, int64_t interval_ms, const char *start, int64_t start_sub,
                     checkpoint_write_fn write, void *ud);
void checkpoint_clear(checkpoint_t *c);          /* frees; stops the timer */

/* Asks for a checkpoint at (seq, sub): a sequence number or SHARD_END. */
void checkpoint_request(checkpoint_t *c, const char *seq, int64_t sub);
/* Sends the coalesced request now instead of at its timer. */
void checkpoint_flush(checkpoint_t *c);
/* The write started by `write` answered: ok = 1 written, 0 refused or failed
 * for good (the lease is lost: nothing more is written). */
void checkpoint_answered(checkpoint_t *c, int ok);
/* Forgets a request not yet sent (the lease is lost or being given up without it). */
void checkpoint_drop(checkpoint_t *c);
void checkpoint_set_interval(checkpoint_t *c, int64_t interval_ms);

/* Nothing asked for and not written, and nothing in flight. */
int checkpoint_idle(const checkpoint_t *c);
/* A write is in flight: its answer will call back into the owner. */
static inline int checkpoint_in_flight(const checkpoint_t *c) { return c->sending != NULL; }
/* The last confirmed position (sub in *sub). */
const char *checkpoint_written(const checkpoint_t *c, int64_t *sub);
/* The newest position asked for (wanted, in flight, or written). */
const char *checkpoint_latest(const checkpoint_t *c, int64_t *sub);

/* Orders two checkpoint positions: sentinels before every sequence number
 * (TRIM_HORIZON, LATEST, AT_TIMESTAMP) or after (SHARD_END). <0, 0, >0. */
int checkpoint_cmp(const char *a, int64_t asub, const char *b, int64_t bsub);

#endif
