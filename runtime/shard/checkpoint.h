/* checkpoint: one shard's checkpoint writer.
 *
 * Positions only move forward, in (sequence number, sub-sequence number)
 * order with SHARD_END after every record: a request at or before the last
 * position asked for is dropped, so an advance inside one KPL aggregate is
 * written and nothing ever goes backwards. Requests are written at once, or
 * coalesced to one write per checkpoint_interval_ms. One write is in flight
 * at a time; a newer request waits for it and is sent when it answers.
 *
 * Outputs first: the shard numbers the records its processor emits
 * (shard.emit) 0, 1, 2, ... and tells the writer how many were emitted
 * (checkpoint_emitted) and how many, counted from the first, are
 * acknowledged (checkpoint_acked). A request waits for every record emitted
 * before it was made: it is written only once those are acknowledged, so a
 * checkpoint never passes an input whose outputs may be lost. Requests that
 * wait are kept in order; when acknowledgements arrive, the newest request
 * they cover is written and the older ones are dropped (it covers them).
 *
 * The write itself is the owner's (through the lease coordinator): `write`
 * starts it, and the owner reports the answer with checkpoint_answered().
 * Loop thread only; timers from the shard's scheduler. */
#ifndef SHARDRUN_CHECKPOINT_H
#define SHARDRUN_CHECKPOINT_H

#include <stdint.h>

#include "base/sched.h"

typedef void (*checkpoint_write_fn)(void *ud, const char *seq, int64_t sub);

/* A position asked for, waiting for its interval or its outputs. */
typedef struct checkpoint_req {
    char *seq;
    int64_t sub;
    uint64_t needs;          /* records emitted when it was asked for: all must be acknowledged first */
    struct checkpoint_req *next;
} checkpoint_req_t;

typedef struct checkpoint {
    sched_t *sched;
    int64_t interval_ms;     /* 0: write every request at once */
    checkpoint_write_fn write;
    void *ud;
    char *written;           /* as last confirmed (or as the lease held it at the start) */
    int64_t written_sub;
    checkpoint_req_t *head, *tail;  /* asked for, not sent yet, oldest first (NULL: nothing) */
    char *sending;           /* in flight (NULL: nothing) */
    int64_t sending_sub;
    uint64_t emitted;        /* records the shard emitted so far */
    uint64_t acked;          /* records 0 .. acked-1 are acknowledged */
    int due;                 /* the interval has passed: write as soon as a request may be */
    int refused;             /* a write was refused: the lease is gone, nothing more is written */
    sched_timer_t timer;     /* coalescing */
} checkpoint_t;

/* start: the lease's checkpoint (a sequence number or a sentinel), copied. */
void checkpoint_init(checkpoint_t *c, sched_t *sched, int64_t interval_ms, const char *start, int64_t start_sub,
                     checkpoint_write_fn write, void *ud);
void checkpoint_clear(checkpoint_t *c);          /* frees; stops the timer */

/* Asks for a checkpoint at (seq, sub): a sequence number or SHARD_END. It
 * waits for every record emitted so far (checkpoint_emitted). */
void checkpoint_request(checkpoint_t *c, const char *seq, int64_t sub);
/* Sends the newest request its outputs allow now instead of at its timer. */
void checkpoint_flush(checkpoint_t *c);
/* The write started by `write` answered: ok = 1 written, 0 refused or failed
 * for good (the lease is lost: nothing more is written). */
void checkpoint_answered(checkpoint_t *c, int ok);
/* Forgets the requests not yet sent (the lease is lost or being given up without them). */
void checkpoint_drop(checkpoint_t *c);
void checkpoint_set_interval(checkpoint_t *c, int64_t interval_ms);

/* The shard has emitted `n` records in all (never less than before). */
void checkpoint_emitted(checkpoint_t *c, uint64_t n);
/* Records 0 .. n-1 are acknowledged (never less than before): requests
 * they cover may be written now. */
void checkpoint_acked(checkpoint_t *c, uint64_t n);
/* Record `lost` (and those after it) will never be acknowledged (their
 * output was given up on with the shard halting): drops every request that
 * waits for it. What is left (checkpoint_latest) is where processing may
 * resume without losing an output. */
void checkpoint_cut(checkpoint_t *c, uint64_t lost);

/* Nothing asked for and not written, and nothing in flight. */
int checkpoint_idle(const checkpoint_t *c);
/* Requests wait for outputs to be acknowledged (for status). */
int checkpoint_waiting_outputs(const checkpoint_t *c);
/* A write is in flight: its answer will call back into the owner. */
static inline int checkpoint_in_flight(const checkpoint_t *c) { return c->sending != NULL; }
/* The last confirmed position (sub in *sub). */
const char *checkpoint_written(const checkpoint_t *c, int64_t *sub);
/* The newest position asked for (waiting, in flight, or written). */
const char *checkpoint_latest(const checkpoint_t *c, int64_t *sub);

/* Orders two checkpoint positions: sentinels before every sequence number
 * (TRIM_HORIZON, LATEST, AT_TIMESTAMP) or after (SHARD_END). <0, 0, >0. */
int checkpoint_cmp(const char *a, int64_t asub, const char *b, int64_t bsub);

#endif
