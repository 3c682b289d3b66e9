/* ticker: onTimer's clock for one shard (timer_interval_ms).
 *
 * Every interval the ticker becomes due; the shard's step runs onTimer
 * when it is due and the shard's one job slot is free, between batches, so
 * onTimer never runs beside processRecords in the same Lua state. Ticks that
 * come while one is due are one tick (a slow onTimer is not called back to
 * back to catch up). Idle shards tick too: nothing here waits for records.
 * Loop thread only; the timer from the shard's scheduler. */
#ifndef SHARDRUN_TICKER_H
#define SHARDRUN_TICKER_H

#include <stdint.h>

#include "base/sched.h"

typedef struct ticker {
    sched_t *sched;
    int64_t interval_ms;      /* 0: never due */
    int due;
    void (*tick)(void *ud);   /* became due: look at the shard again */
    void *ud;
    sched_timer_t timer;
} ticker_t;

void ticker_init(ticker_t *t, sched_t *sched, int64_t interval_ms, void (*tick)(void *ud), void *ud);
/* A new interval (SIGHUP): the next tick is one new interval from now. */
void ticker_set_interval(ticker_t *t, int64_t interval_ms);
/* 1 when onTimer is due; ticker_take says it is being run. */
static inline int ticker_due(const ticker_t *t) { return t->due; }
static inline void ticker_take(ticker_t *t) { t->due = 0; }
/* No more ticks (the shard stops); stops the timer. */
void ticker_stop(ticker_t *t);

#endif
