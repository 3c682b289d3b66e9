/* vsched: a sched_t on virtual time, for tests and the simulation (header only).
 *
 * Time moves only when the test says so: vsched_advance fires the timers
 * due meanwhile in due order (ties in start order), with "now" set to their
 * due time; the simulation (tests/sim) steps one timer at a time across
 * several schedulers (vsched_next, vsched_fire_next) and sets "now" itself
 * (vsched_set_now) so that every node's clock shows the same time. What runs
 * on a timer of the code under test therefore replays exactly.
 *
 * Active timers are kept in a binary heap ordered by (due, start order), so
 * a start, a stop and the next timer cost O(log n). */
#ifndef SHARDRUN_TEST_VSCHED_H
#define SHARDRUN_TEST_VSCHED_H

#include <stdlib.h>

#include "base/sched.h"

typedef struct vsched {
    sched_t base;            /* first: a sched_t * is a vsched_t * */
    int64_t now;
    uint64_t order;
    sched_timer_t **heap;    /* active timers; t->slot is its index */
    size_t n, cap;
} vsched_t;

static inline int64_t vsched_now(sched_t *s)
{
    return ((vsched_t *)s)->now;
}

static inline int vsched_before(const sched_timer_t *a, const sched_timer_t *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->order < b->order);
}

static inline void vsched_place(vsched_t *vs, size_t i, sched_timer_t *t)
{
    vs->heap[i] = t;
    t->slot = i;
}

static inline void vsched_sift_up(vsched_t *vs, size_t i)
{
    sched_timer_t *t = vs->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!vsched_before(t, vs->heap[parent])) break;
        vsched_place(vs, i, vs->heap[parent]);
        i = parent;
    }
    vsched_place(vs, i, t);
}

static inline void vsched_sift_down(vsched_t *vs, size_t i)
{
    sched_timer_t *t = vs->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= vs->n) break;
        if (c + 1 < vs->n && vsched_before(vs->heap[c + 1], vs->heap[c])) c++;
        if (!vsched_before(vs->heap[c], t)) break;
        vsched_place(vs, i, vs->heap[c]);
        i = c;
    }
    vsched_place(vs, i, t);
}

static inline void vsched_stop(sched_t *s, sched_timer_t *t)
{
    vsched_t *vs = (vsched_t *)s;
    if (!t->active) return;
    size_t i = t->slot;
    t->active = 0;
    sched_timer_t *last = vs->heap[--vs->n];
    if (i == vs->n) return;
    vsched_place(vs, i, last);
    vsched_sift_up(vs, i);
    vsched_sift_down(vs, last->slot);
}

static inline void vsched_start(sched_t *s, sched_timer_t *t, int64_t after_ms)
{
    vsched_t *vs = (vsched_t *)s;
    vsched_stop(s, t);
    if (vs->n == vs->cap) {
        vs->cap = vs->cap ? vs->cap * 2 : 16;
        vs->heap = realloc(vs->heap, vs->cap * sizeof *vs->heap);
        if (!vs->heap) abort();
    }
    t->due_ms = vs->now + after_ms;
    t->order = ++vs->order;
    t->active = 1;
    vsched_place(vs, vs->n++, t);
    vsched_sift_up(vs, t->slot);
}

static const sched_ops_t vsched_ops = {vsched_now, vsched_start, vsched_stop};

static inline void vsched_init(vsched_t *vs, int64_t start_ms)
{
    *vs = (vsched_t){.base = {&vsched_ops}, .now = start_ms};
}

/* Forgets every active timer without firing it (a simulated crash: the
 * owners of the timers are freed next, and their stops are no-ops). */
static inline void vsched_drop_all(vsched_t *vs)
{
    for (size_t i = 0; i < vs->n; i++) vs->heap[i]->active = 0;
    vs->n = 0;
}

static inline void vsched_free(vsched_t *vs)
{
    vsched_drop_all(vs);
    free(vs->heap);
    vs->heap = NULL;
    vs->cap = 0;
}

/* The next timer to fire (earliest due, then earliest started), or NULL. */
static inline const sched_timer_t *vsched_next(const vsched_t *vs)
{
    return vs->n ? vs->heap[0] : NULL;
}

/* Fires the next timer; now moves to its due time unless it is past already
 * (a timer overdue fires late, at the time now shows). */
static inline void vsched_fire_next(vsched_t *vs)
{
    sched_timer_t *next = vs->heap[0];
    if (next->due_ms > vs->now) vs->now = next->due_ms;
    vsched_stop(&vs->base, next);
    next->cb(next);
}

static inline void vsched_set_now(vsched_t *vs, int64_t now)
{
    vs->now = now;
}

/* Fires every timer due within the next ms milliseconds, then sets now to
 * the end of that span. */
static inline void vsched_advance(vsched_t *vs, int64_t ms)
{
    int64_t end = vs->now + ms;
    while (vs->n && vs->heap[0]->due_ms <= end) vsched_fire_next(vs);
    vs->now = end;
}

#endif
