#include "sched.h"

#include "clock.h"
#include "xalloc.h"

typedef struct sched_ev {
    sched_t base;            /* first: a sched_t * is a sched_ev_t * */
    struct ev_loop *loop;
} sched_ev_t;

static int64_t sched_ev_now(sched_t *s)
{
    (void)s;
    return clock_mono_ms();
}

static void sched_ev_fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sched_timer_t *t = w->data;
    t->active = 0;
    t->cb(t);
}

static void sched_ev_start(sched_t *s, sched_timer_t *t, int64_t after_ms)
{
    sched_ev_t *e = (sched_ev_t *)s;
    ev_timer_stop(e->loop, &t->ev);
    ev_timer_set(&t->ev, (double)after_ms / 1000.0, 0.0);
    t->ev.data = t;
    t->active = 1;
    ev_timer_start(e->loop, &t->ev);
}

static void sched_ev_stop(sched_t *s, sched_timer_t *t)
{
    sched_ev_t *e = (sched_ev_t *)s;
    ev_timer_stop(e->loop, &t->ev);
    t->active = 0;
}

static const sched_ops_t sched_ev_ops = {sched_ev_now, sched_ev_start, sched_ev_stop};

sched_t *sched_ev_new(struct ev_loop *loop)
{
    sched_ev_t *e = xcalloc(1, sizeof *e); /* the caller's: free() */
    e->base.ops = &sched_ev_ops;
    e->loop = loop;
    return &e->base;
}

void sched_timer_init(sched_timer_t *t, sched_cb cb, void *data)
{
    *t = (sched_timer_t){.cb = cb, .data = data};
    ev_timer_init(&t->ev, sched_ev_fire, 0.0, 0.0);
    t->ev.data = t;
}
