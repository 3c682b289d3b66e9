/* vsched: a sched_t on virtual time, for tests (header only).
 *
 * Time moves only when the test calls vsched_advance; timers due meanwhile
 * fire in due order (ties in start order), with "now" set to their due time.
 * What runs on a timer of the code under test therefore replays exactly. */
#ifndef SHARDRUN_TEST_VSCHED_H
#define SHARDRUN_TEST_VSCHED_H

#include <stdlib.h>

#include "base/sched.h"

typedef struct vsched {
    sched_t base;            /* first: a sched_t * is a vsched_t * */
    int64_t now;
    uint64_t order;
    sched_timer_t **active;
    size_t n, cap;
} vsched_t;

static inline int64_t vsched_now(sched_t *s)
{
    return ((vsched_t *)s)->now;
}

static inline void vsched_stop(sched_t *s, sched_timer_t *t)
{
    vsched_t *vs = (vsched_t *)s;
    if (!t->active) return;
    vs->active[t->slot] = vs->active[--vs->n];
    vs->active[t->slot]->slot = t->slot;
    t->active = 0;
}

static inline void vsched_start(sched_t *s, sched_timer_t *t, int64_t after_ms)
{
    vsched_t *vs = (vsched_t *)s;
    vsched_stop(s, t);
    if (vs->n == vs->cap) {
        vs->cap = vs->cap ? vs->cap * 2 : 16;
        vs->active = realloc(vs->active, vs->cap * sizeof *vs->active);
        if (!vs->active) abort();
    }
    t->due_ms = vs->now + after_ms;
    t->order = ++vs->order;
    t->active = 1;
    t->slot = vs->n;
    vs->active[vs->n++] = t;
}

static const sched_ops_t vsched_ops = {vsched_now, vsched_start, vsched_stop};

static inline void vsched_init(vsched_t *vs, int64_t start_ms)
{
    *vs = (vsched_t){.base = {&vsched_ops}, .now = start_ms};
}

static inline void vsched_free(vsched_t *vs)
{
    free(vs->active);
    vs->active = NULL;
    vs->n = vs->cap = 0;
}

/* Fires every timer due within the next ms milliseconds, then sets now to
 * the end of that span. */
static inline void vsched_advance(vsched_t *vs, int64_t ms)
{
    int64_t end = vs->now + ms;
    for (;;) {
        sched_timer_t *next = NULL;
        for (size_t i = 0; i < vs->n; i++) {
            sched_timer_t *t = vs->active[i];
            if (t->due_ms <= end &&
                (!next || t->due_ms < next->due_ms || (t->due_ms == next->due_ms && t->order < next->order)))
                next = t;
        }
        if (!next) break;
        if (next->due_ms > vs->now) vs->now = next->due_ms;
        vsched_stop(&vs->base, next);
        next->cb(next);
    }
    vs->now = end;
}

#endif
