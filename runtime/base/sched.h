/* sched: timers and the monotonic clock, behind one small interface.
 *
 * The modules whose logic decides who owns what and when a checkpoint may
 * move (the lease coordinator, the shard state machine) take their time and
 * their timers from a sched_t instead of calling libev and the clock
 * directly. In the worker the scheduler is libev's loop (sched_ev_new); in
 * the deterministic simulation (tests/sim) it is virtual time driven by a
 * seed, so a rare interleaving replays exactly.
 *
 * Timers are embedded in their owner (no allocation) and one-shot: a
 * repeating timer restarts itself from its callback. Loop thread only. */
#ifndef SHARDRUN_SCHED_H
#define SHARDRUN_SCHED_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sched sched_t;
typedef struct sched_timer sched_timer_t;
typedef void (*sched_cb)(sched_timer_t *t);

struct sched_timer {
    sched_cb cb;
    void *data;              /* the owner's */
    /* private to the scheduler */
    int active;
    ev_timer ev;             /* libev scheduler */
    int64_t due_ms;          /* virtual-time scheduler */
    uint64_t order;          /* virtual-time scheduler: ties fire in start order */
    size_t slot;
};

typedef struct sched_ops {
    int64_t (*now_ms)(sched_t *s);
    void (*start)(sched_t *s, sched_timer_t *t, int64_t after_ms);
    void (*stop)(sched_t *s, sched_timer_t *t);
} sched_ops_t;

struct sched {
    const sched_ops_t *ops;
};

/* A scheduler on a libev loop: now_ms is the monotonic clock (clock_mono_ms).
 * The caller owns it and frees it with free() once no timer is active. */
sched_t *sched_ev_new(struct ev_loop *loop);

void sched_timer_init(sched_timer_t *t, sched_cb cb, void *data);

static inline int64_t sched_now_ms(sched_t *s) { return s->ops->now_ms(s); }

/* Fires t once, after_ms from now (0: on the next turn of the loop). A timer
 * already active is moved. */
static inline void sched_timer_start(sched_t *s, sched_timer_t *t, int64_t after_ms)
{
    s->ops->start(s, t, after_ms < 0 ? 0 : after_ms);
}

/* No-op when t is not active. */
static inline void sched_timer_stop(sched_t *s, sched_timer_t *t)
{
    if (t->active) s->ops->stop(s, t);
}

static inline int sched_timer_active(const sched_timer_t *t) { return t->active; }

#endif
